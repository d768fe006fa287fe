//! Campaign documents in MongoDB (issue #7; seed 001 `Campaign`).
//!
//! ## Mapping of seed 001
//! - The campaign document keeps seed 001's blocks (status, type, lead,
//!   `clientInfo`, `team`, `platforms[].config` with targeting, budget and
//!   schedule, `creatives`, `budget`, `timeline`, `objectives`, `notes`);
//!   money is integer minor units, the commission basis points.
//! - `dailyKpis[]` moves to its own collection `campaign_kpis`, one
//!   document per (campaign, date, ad platform) with `_id`
//!   `{campaignId}:{YYYY-MM-DD}:{platform}`, so a day can be re-entered or
//!   re-imported without duplicates and a long campaign does not grow one
//!   document without bound.
//! - Derived metrics (`ctr`, `cpc`, `cpm`, `cpv`, `roas`) are not stored:
//!   the API computes them from the raw counters on every read.
//! - `streamClicks` and conversions are not entered: they are the
//!   pipeline's click-outs for the campaign's `smartlinkIds` (rollups).

use bson::{oid::ObjectId, DateTime, Document};
use serde::{Deserialize, Serialize};

/// Ad platforms a campaign runs on (seed 001 `platforms[].name`).
pub const AD_PLATFORMS: [&str; 5] = ["youtube", "spotify", "meta", "tiktok", "google"];

/// Status of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    /// Being prepared.
    Draft,
    /// Running.
    Active,
    /// Stopped for now.
    Paused,
    /// Ended.
    Completed,
    /// Abandoned.
    Cancelled,
}

impl CampaignStatus {
    /// Allowed moves: draft → active | cancelled; active ↔ paused;
    /// active | paused → completed | cancelled. Completed and cancelled are final.
    pub fn can_move_to(self, to: CampaignStatus) -> bool {
        use CampaignStatus::*;
        self == to
            || matches!(
                (self, to),
                (Draft, Active)
                    | (Draft, Cancelled)
                    | (Active, Paused)
                    | (Paused, Active)
                    | (Active, Completed)
                    | (Paused, Completed)
                    | (Active, Cancelled)
                    | (Paused, Cancelled)
            )
    }
}

/// Audience targeting of one ad platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Targeting {
    /// Minimum age.
    pub age_min: Option<i32>,
    /// Maximum age.
    pub age_max: Option<i32>,
    /// Genders.
    pub genders: Vec<String>,
    /// Languages (ISO 639-1).
    pub languages: Vec<String>,
    /// Interests.
    pub interests: Vec<String>,
    /// Countries (ISO 3166-1 alpha-2).
    pub countries: Vec<String>,
    /// Cities.
    pub cities: Vec<String>,
    /// Lookalike audience enabled.
    pub lookalike: bool,
}

/// Configuration of one ad platform of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformConfig {
    /// One of [`AD_PLATFORMS`].
    pub name: String,
    /// Running on it.
    pub is_active: bool,
    /// Ad account id.
    #[serde(default)]
    pub ad_account: String,
    /// Pixel id.
    #[serde(default)]
    pub pixel_id: String,
    /// Objective on the platform.
    #[serde(default)]
    pub objective: String,
    /// Targeting.
    #[serde(default)]
    pub targeting: Targeting,
    /// Daily budget, minor units.
    #[serde(default)]
    pub daily_budget_minor: i64,
    /// Total budget, minor units.
    #[serde(default)]
    pub total_budget_minor: i64,
    /// Bid strategy.
    #[serde(default)]
    pub bid_strategy: String,
    /// First day, UTC midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime>,
    /// Last day, UTC midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime>,
}

/// Performance of a creative as reported by its platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreativePerformance {
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Conversions.
    pub conversions: i64,
    /// Spend, minor units.
    pub spend_minor: i64,
}

/// An ad creative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Creative {
    /// Creative id.
    pub id: ObjectId,
    /// Name.
    pub name: String,
    /// `image`, `video`, `carousel`, `story`.
    pub kind: String,
    /// Ad platform.
    pub platform: String,
    /// Asset URL.
    #[serde(default)]
    pub url: String,
    /// Running.
    pub is_active: bool,
    /// Reported performance.
    #[serde(default)]
    pub performance: CreativePerformance,
}

/// Budget of a campaign.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CampaignBudget {
    /// Allocated, minor units.
    pub allocated_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// `fixed`, `percentage`, `performance`.
    pub billing_model: String,
    /// Agency commission, basis points of the spend.
    pub commission_bp: i64,
}

/// Objectives and KPI targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Objectives {
    /// Main objective.
    pub primary: String,
    /// Other objectives.
    pub secondary: Vec<String>,
    /// Target streams.
    pub target_streams: Option<i64>,
    /// Target followers.
    pub target_followers: Option<i64>,
    /// Target ROAS.
    pub target_roas: Option<f64>,
    /// Target cost per acquisition, minor units.
    pub target_cpa_minor: Option<i64>,
}

/// The artist and release promoted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientInfo {
    /// Artist.
    pub artist_name: String,
    /// Song or release.
    pub song_title: String,
    /// Genres.
    pub genres: Vec<String>,
    /// Label.
    pub label: String,
    /// ISRC.
    pub isrc: String,
}

/// A campaign note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignNote {
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<ObjectId>,
    /// `note`, `optimization`, `issue`, `review`.
    pub kind: String,
    /// Text.
    pub content: String,
    /// Written at, UTC.
    pub created_at: DateTime,
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Campaign id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Status.
    pub status: CampaignStatus,
    /// `acquisition`, `conversion`, `retention`, `branding`.
    pub kind: String,
    /// Lead it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<ObjectId>,
    /// Contact (the client) it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ObjectId>,
    /// Artist and release.
    #[serde(default)]
    pub client_info: ClientInfo,
    /// Project manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ObjectId>,
    /// Team.
    #[serde(default)]
    pub team: Vec<ObjectId>,
    /// Ad platforms.
    #[serde(default)]
    pub platforms: Vec<PlatformConfig>,
    /// Creatives.
    #[serde(default)]
    pub creatives: Vec<Creative>,
    /// Budget.
    #[serde(default)]
    pub budget: CampaignBudget,
    /// First day, UTC midnight.
    pub start_date: DateTime,
    /// Last day (inclusive), UTC midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime>,
    /// Objectives.
    #[serde(default)]
    pub objectives: Objectives,
    /// Smartlinks promoted; their click-outs are the campaign's stream clicks.
    #[serde(default)]
    pub smartlink_ids: Vec<ObjectId>,
    /// Notes.
    #[serde(default)]
    pub notes: Vec<CampaignNote>,
    /// Creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<ObjectId>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// One day of one ad platform's numbers for a campaign (entered or
/// imported; derived ratios are computed on read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyKpi {
    /// `{campaignId}:{YYYY-MM-DD}:{platform}`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Tenant.
    pub client_id: ObjectId,
    /// Campaign.
    pub campaign_id: ObjectId,
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Ad platform.
    pub platform: String,
    /// Impressions.
    pub impressions: i64,
    /// Video views.
    pub views: i64,
    /// Ad clicks.
    pub clicks: i64,
    /// Reach.
    pub reach: i64,
    /// Spend, minor units.
    pub spend_minor: i64,
    /// Conversions reported by the platform.
    pub conversions: i64,
    /// Value of those conversions, minor units.
    pub conversion_value_minor: i64,
    /// Platform-specific counters (seed 001 `platformSpecific`), numbers by name.
    #[serde(default)]
    pub platform_specific: Document,
    /// Entered at, UTC.
    pub updated_at: DateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves() {
        use CampaignStatus::*;
        assert!(
            Draft.can_move_to(Active)
                && Active.can_move_to(Paused)
                && Paused.can_move_to(Active)
                && Paused.can_move_to(Completed)
        );
        assert!(!Completed.can_move_to(Active) && !Cancelled.can_move_to(Draft) && !Draft.can_move_to(Completed));
    }
}
