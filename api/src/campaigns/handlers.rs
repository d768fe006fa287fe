//! The `campaigns` handlers: request and response types, validation and the
//! operations behind each route of [`super::router`].

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::TryStreamExt;
use schemas::campaign::{
    Campaign, CampaignBudget, CampaignNote, CampaignStatus, ClientInfo, Creative, CreativePerformance, DailyKpi,
    Objectives, PlatformConfig, Targeting, AD_PLATFORMS,
};
use schemas::mongo::{collections, Smartlink};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::analytics::Scope;
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::billing::money::round_div;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::identity::assignee;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, day, one_of, rfc, wire};
use crate::validate::{currency, hex, money};

/// One ad platform of a campaign, in requests and answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformInput {
    /// `youtube`, `spotify`, `meta`, `tiktok`, `google`.
    #[schema(schema_with = ad_platform_schema)]
    pub name: String,
    /// Running on it (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Ad account id, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub ad_account: String,
    /// Pixel id, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub pixel_id: String,
    /// Objective on the platform, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub objective: String,
    /// Targeting: `age_min`, `age_max` (13..=99), `genders`, `languages`,
    /// `interests`, `countries` (ISO alpha-2), `cities`, `lookalike`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub targeting: serde_json::Value,
    /// Daily budget, minor units, 0..=10^12.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub daily_budget_minor: i64,
    /// Total budget, minor units, 0..=10^12.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub total_budget_minor: i64,
    /// Bid strategy, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub bid_strategy: String,
    /// First day `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::date)]
    pub start_date: Option<String>,
    /// Last day `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::date)]
    pub end_date: Option<String>,
}

fn yes() -> bool {
    true
}

/// Schema of an ad platform name ([`AD_PLATFORMS`]).
fn ad_platform_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&AD_PLATFORMS)
}

/// The kinds of creatives.
const CREATIVE_KINDS: [&str; 4] = ["image", "video", "carousel", "story"];

/// Schema of [`CreativeInput::kind`] ([`CREATIVE_KINDS`]).
fn creative_kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&CREATIVE_KINDS)
}

/// A campaign's statuses on the wire ([`schemas::campaign::CampaignStatus`]).
const STATUSES: [&str; 5] = ["draft", "active", "paused", "completed", "cancelled"];

/// Schema of a campaign status ([`STATUSES`]).
fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&STATUSES)
}

/// Schema of [`KpiInput::platform_specific`]: counters named by 1 to 40
/// of `a-z`, `0-9`, `_`, each a number ≥ 0.
fn platform_specific_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{schema::AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[a-z0-9_]{1,40}$"))))
        .additional_properties(Some(AdditionalProperties::RefOr(
            ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0.0)).build().into(),
        )))
        .build()
}

/// A campaign's kinds.
const KINDS: [&str; 4] = ["acquisition", "conversion", "retention", "branding"];

/// Schema of [`CampaignInput::kind`] ([`KINDS`]).
fn kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&KINDS)
}

/// How the agency bills a campaign.
const BILLING_MODELS: [&str; 3] = ["fixed", "percentage", "performance"];

/// Schema of [`CampaignInput::billing_model`] ([`BILLING_MODELS`]).
fn billing_model_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&BILLING_MODELS)
}

/// Schema of a count reported by an ad platform, 0..=10^12.
fn count_schema() -> utoipa::openapi::Object {
    crate::openapi::money()
}

/// A creative, in requests and answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreativeInput {
    /// Id (answers; ignored on input).
    #[serde(default)]
    pub id: Option<String>,
    /// Name, 1..=100.
    #[schema(schema_with = crate::openapi::text_100)]
    pub name: String,
    /// `image`, `video`, `carousel`, `story`.
    #[schema(schema_with = creative_kind_schema)]
    pub kind: String,
    /// Ad platform.
    #[schema(schema_with = ad_platform_schema)]
    pub platform: String,
    /// Asset URL (http/https).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::http_url)]
    pub url: String,
    /// Running (default true).
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Reported impressions.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub impressions: i64,
    /// Reported clicks.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub clicks: i64,
    /// Reported conversions.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub conversions: i64,
    /// Reported spend, minor units.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub spend_minor: i64,
}

/// `POST /v1/campaigns` body (also the shape of `PATCH`, all optional there).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    /// Tenant; required with the operator key (create only).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Name, 1..=150.
    #[schema(schema_with = crate::openapi::text_150)]
    pub name: Option<String>,
    /// Description, 0..=2000.
    #[schema(schema_with = crate::openapi::opt_text_2000)]
    pub description: Option<String>,
    /// `draft` (default on create), `active`, `paused`, `completed`, `cancelled`; moves are validated.
    #[schema(schema_with = status_schema)]
    pub status: Option<String>,
    /// `acquisition`, `conversion`, `retention`, `branding` (default `acquisition`).
    #[schema(schema_with = kind_schema)]
    pub kind: Option<String>,
    /// Lead it came from (the tenant's).
    pub lead_id: Option<String>,
    /// Contact it is for (the tenant's).
    pub contact_id: Option<String>,
    /// Artist, 0..=100.
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub artist_name: Option<String>,
    /// Song or release title, 0..=200.
    #[schema(schema_with = crate::openapi::opt_text_200)]
    pub song_title: Option<String>,
    /// Genres, at most 10 of 1..=40 characters.
    #[schema(schema_with = crate::openapi::genres)]
    pub genres: Option<Vec<String>>,
    /// Label, 0..=100.
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub label: Option<String>,
    /// ISRC (12 characters A-Z 0-9; `""` clears it).
    #[schema(schema_with = crate::openapi::isrc_or_empty)]
    pub isrc: Option<String>,
    /// Project manager (a user of the tenant).
    pub manager: Option<String>,
    /// Team (users of the tenant).
    pub team: Option<Vec<String>>,
    /// Ad platforms (replace the list), at most 10.
    #[schema(max_items = 10)]
    pub platforms: Option<Vec<PlatformInput>>,
    /// Creatives (replace the list), at most 100.
    #[schema(max_items = 100)]
    pub creatives: Option<Vec<CreativeInput>>,
    /// Allocated budget, minor units, 0..=10^12.
    #[schema(schema_with = crate::openapi::money)]
    pub budget_minor: Option<i64>,
    /// ISO 4217 currency (default `EUR`).
    #[schema(schema_with = crate::openapi::currency)]
    pub currency: Option<String>,
    /// `fixed`, `percentage`, `performance`.
    #[schema(schema_with = billing_model_schema)]
    pub billing_model: Option<String>,
    /// Agency commission, basis points 0..=10000.
    #[schema(schema_with = crate::openapi::basis_points)]
    pub commission_bp: Option<i64>,
    /// First day `YYYY-MM-DD` (required on create).
    #[schema(schema_with = crate::openapi::date)]
    pub start_date: Option<String>,
    /// Last day `YYYY-MM-DD`, inclusive, not before `start_date`.
    #[schema(schema_with = crate::openapi::date)]
    pub end_date: Option<String>,
    /// Main objective, 0..=200.
    #[schema(schema_with = crate::openapi::opt_text_200)]
    pub objective: Option<String>,
    /// Target streams, 0..=10^12.
    #[schema(schema_with = count_schema)]
    pub target_streams: Option<i64>,
    /// Target ROAS, ≥ 0.
    #[schema(minimum = 0)]
    pub target_roas: Option<f64>,
    /// Smartlinks promoted (ids of the tenant's links), at most 50.
    #[schema(max_items = 50)]
    pub smartlink_ids: Option<Vec<String>>,
    /// A note to append: `{kind: note|optimization|issue|review, content}`.
    #[schema(value_type = Option<Object>)]
    pub add_note: Option<serde_json::Value>,
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    /// Campaign id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: String,
    /// Type.
    pub kind: String,
    /// Lead.
    pub lead_id: Option<String>,
    /// Contact.
    pub contact_id: Option<String>,
    /// Artist, song, genres, label, ISRC.
    #[schema(value_type = Object)]
    pub client_info: serde_json::Value,
    /// Manager.
    pub manager: Option<String>,
    /// Team.
    pub team: Vec<String>,
    /// Ad platforms.
    pub platforms: Vec<PlatformInput>,
    /// Creatives with their reported performance and derived CTR/CPC.
    #[schema(value_type = Vec<Object>)]
    pub creatives: Vec<serde_json::Value>,
    /// Budget: allocated, currency, billing model, commission.
    #[schema(value_type = Object)]
    pub budget: serde_json::Value,
    /// First day.
    pub start_date: String,
    /// Last day.
    pub end_date: Option<String>,
    /// Objectives and targets.
    #[schema(value_type = Object)]
    pub objectives: serde_json::Value,
    /// Smartlinks promoted.
    pub smartlink_ids: Vec<String>,
    /// Notes, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub notes: Vec<serde_json::Value>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

fn view(c: &Campaign) -> CampaignView {
    CampaignView {
        id: c.id.to_hex(),
        client_id: c.client_id.to_hex(),
        name: c.name.clone(),
        description: c.description.clone(),
        status: wire(&c.status),
        kind: c.kind.clone(),
        lead_id: hex(c.lead_id),
        contact_id: hex(c.contact_id),
        client_info: serde_json::json!({"artist_name": c.client_info.artist_name, "song_title": c.client_info.song_title, "genres": c.client_info.genres,
            "label": c.client_info.label, "isrc": c.client_info.isrc}),
        manager: hex(c.manager),
        team: c.team.iter().map(|t| t.to_hex()).collect(),
        platforms: c
            .platforms
            .iter()
            .map(|p| PlatformInput {
                name: p.name.clone(),
                is_active: p.is_active,
                ad_account: p.ad_account.clone(),
                pixel_id: p.pixel_id.clone(),
                objective: p.objective.clone(),
                targeting: serde_json::json!({"age_min": p.targeting.age_min, "age_max": p.targeting.age_max, "genders": p.targeting.genders,
                    "languages": p.targeting.languages, "interests": p.targeting.interests, "countries": p.targeting.countries, "cities": p.targeting.cities,
                    "lookalike": p.targeting.lookalike}),
                daily_budget_minor: p.daily_budget_minor,
                total_budget_minor: p.total_budget_minor,
                bid_strategy: p.bid_strategy.clone(),
                start_date: p.start_date.map(day),
                end_date: p.end_date.map(day),
            })
            .collect(),
        creatives: c
            .creatives
            .iter()
            .map(|k| {
                let perf = &k.performance;
                let d = derived(perf.impressions, 0, perf.clicks, perf.spend_minor, 0);
                serde_json::json!({"id": k.id.to_hex(), "name": k.name, "kind": k.kind, "platform": k.platform, "url": k.url, "is_active": k.is_active,
                    "impressions": perf.impressions, "clicks": perf.clicks, "conversions": perf.conversions, "spend_minor": perf.spend_minor, "ctr": d.ctr, "cpc_minor": d.cpc_minor})
            })
            .collect(),
        budget: serde_json::json!({"allocated_minor": c.budget.allocated_minor, "currency": c.budget.currency, "billing_model": c.budget.billing_model, "commission_bp": c.budget.commission_bp}),
        start_date: day(c.start_date),
        end_date: c.end_date.map(day),
        objectives: serde_json::json!({"primary": c.objectives.primary, "target_streams": c.objectives.target_streams, "target_roas": c.objectives.target_roas}),
        smartlink_ids: c.smartlink_ids.iter().map(|t| t.to_hex()).collect(),
        notes: c.notes.iter().map(|n| serde_json::json!({"author": hex(n.author), "kind": n.kind, "content": n.content, "created_at": rfc(n.created_at)})).collect(),
        created_at: rfc(c.created_at),
        updated_at: rfc(c.updated_at),
    }
}

fn count(field: &str, v: i64) -> Result<i64, ApiError> {
    if (0..=1_000_000_000_000).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(field, "must be 0 to 10^12"))
    }
}

fn targeting(field: &str, v: &serde_json::Value) -> Result<Targeting, ApiError> {
    if v.is_null() {
        return Ok(Targeting::default());
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[derive(Default)]
    struct T {
        age_min: Option<i32>,
        age_max: Option<i32>,
        genders: Vec<String>,
        languages: Vec<String>,
        interests: Vec<String>,
        countries: Vec<String>,
        cities: Vec<String>,
        lookalike: bool,
    }
    let t: T = serde_json::from_value(v.clone()).map_err(|e| ApiError::invalid(field, format!("malformed: {e}")))?;
    for (name, age) in [("age_min", t.age_min), ("age_max", t.age_max)] {
        if age.is_some_and(|a| !(13..=99).contains(&a)) {
            return Err(ApiError::invalid(format!("{field}.{name}"), "must be 13 to 99"));
        }
    }
    if let (Some(lo), Some(hi)) = (t.age_min, t.age_max) {
        if lo > hi {
            return Err(ApiError::invalid(format!("{field}.age_max"), "must be at least age_min"));
        }
    }
    if let Some((i, _)) = t.countries.iter().enumerate().find(|(_, c)| !validate::is_country(c)) {
        return Err(ApiError::invalid(format!("{field}.countries[{i}]"), "must be an ISO 3166-1 alpha-2 code"));
    }
    Ok(Targeting {
        age_min: t.age_min,
        age_max: t.age_max,
        genders: validate::texts(&format!("{field}.genders"), &t.genders, 5, 20)?,
        languages: validate::texts(&format!("{field}.languages"), &t.languages, 30, 10)?,
        interests: validate::texts(&format!("{field}.interests"), &t.interests, 50, 60)?,
        countries: t.countries,
        cities: validate::texts(&format!("{field}.cities"), &t.cities, 50, 60)?,
        lookalike: t.lookalike,
    })
}

fn platform(i: usize, p: &PlatformInput) -> Result<PlatformConfig, ApiError> {
    let at = |n: &str| format!("platforms[{i}].{n}");
    Ok(PlatformConfig {
        name: one_of(&at("name"), &p.name, &AD_PLATFORMS)?,
        is_active: p.is_active,
        ad_account: validate::opt_text(&at("ad_account"), Some(&p.ad_account), 100)?.unwrap_or_default(),
        pixel_id: validate::opt_text(&at("pixel_id"), Some(&p.pixel_id), 100)?.unwrap_or_default(),
        objective: validate::opt_text(&at("objective"), Some(&p.objective), 100)?.unwrap_or_default(),
        targeting: targeting(&at("targeting"), &p.targeting)?,
        daily_budget_minor: money(&at("daily_budget_minor"), Some(p.daily_budget_minor))?.unwrap_or(0),
        total_budget_minor: money(&at("total_budget_minor"), Some(p.total_budget_minor))?.unwrap_or(0),
        bid_strategy: validate::opt_text(&at("bid_strategy"), Some(&p.bid_strategy), 100)?.unwrap_or_default(),
        start_date: p.start_date.as_deref().map(|d| validate::date(&at("start_date"), d)).transpose()?,
        end_date: p.end_date.as_deref().map(|d| validate::date(&at("end_date"), d)).transpose()?,
    })
}

fn creative(i: usize, k: &CreativeInput) -> Result<Creative, ApiError> {
    let at = |n: &str| format!("creatives[{i}].{n}");
    Ok(Creative {
        id: k.id.as_deref().and_then(|h| ObjectId::parse_str(h).ok()).unwrap_or_default(),
        name: validate::text(&at("name"), &k.name, 1, 100)?,
        kind: one_of(&at("kind"), &k.kind, &CREATIVE_KINDS)?,
        platform: one_of(&at("platform"), &k.platform, &AD_PLATFORMS)?,
        url: if k.url.is_empty() { String::new() } else { validate::http_url(&at("url"), &k.url)? },
        is_active: k.is_active,
        performance: CreativePerformance {
            impressions: count(&at("impressions"), k.impressions)?,
            clicks: count(&at("clicks"), k.clicks)?,
            conversions: count(&at("conversions"), k.conversions)?,
            spend_minor: money(&at("spend_minor"), Some(k.spend_minor))?.unwrap_or(0),
        },
    })
}

async fn owned(st: &AppState, client_id: ObjectId, field: &str, coll: &str, id: &str) -> Result<ObjectId, ApiError> {
    let id = validate::object_id(field, id)?;
    if st.mongo.collection::<Document>(coll).count_documents(doc! { "_id": id, "clientId": client_id }).await? == 0 {
        return Err(ApiError::unknown(field, "record"));
    }
    Ok(id)
}

/// Applies `b` onto `c` (all fields optional), validating each.
async fn apply_input(st: &AppState, p: &Principal, c: &mut Campaign, b: &CampaignInput) -> Result<(), ApiError> {
    if let Some(v) = &b.name {
        c.name = validate::text("name", v, 1, 150)?;
    }
    if let Some(v) = &b.description {
        c.description = validate::opt_text("description", Some(v), 2000)?.unwrap_or_default();
    }
    if let Some(v) = &b.kind {
        c.kind = one_of("kind", v, &KINDS)?;
    }
    if let Some(s) = &b.status {
        let to: CampaignStatus =
            validate::parse_enum("status", s, "must be draft, active, paused, completed or cancelled")?;
        if !c.status.can_move_to(to) {
            return Err(ApiError::Conflict {
                code: "invalid_transition",
                message: format!("a campaign cannot go from {} to {}", wire(&c.status), wire(&to)),
            });
        }
        c.status = to;
    }
    if let Some(v) = &b.lead_id {
        c.lead_id = Some(owned(st, c.client_id, "lead_id", collections::LEADS, v).await?);
    }
    if let Some(v) = &b.contact_id {
        c.contact_id = Some(owned(st, c.client_id, "contact_id", collections::CONTACTS, v).await?);
    }
    let ci = &mut c.client_info;
    if let Some(v) = &b.artist_name {
        ci.artist_name = validate::opt_text("artist_name", Some(v), 100)?.unwrap_or_default();
    }
    if let Some(v) = &b.song_title {
        ci.song_title = validate::opt_text("song_title", Some(v), 200)?.unwrap_or_default();
    }
    if let Some(v) = &b.genres {
        ci.genres = validate::texts("genres", v, 10, 40)?;
    }
    if let Some(v) = &b.label {
        ci.label = validate::opt_text("label", Some(v), 100)?.unwrap_or_default();
    }
    if let Some(v) = &b.isrc {
        if !(v.is_empty() || validate::is_isrc(v)) {
            return Err(ApiError::invalid("isrc", "must be 12 characters A-Z 0-9 (ISO 3901)"));
        }
        ci.isrc = v.clone();
    }
    if let Some(v) = &b.manager {
        c.manager = assignee(st, c.client_id, v).await.map_err(|e| e.on_field("manager"))?;
    }
    if let Some(v) = &b.team {
        let mut team = Vec::new();
        for (i, u) in v.iter().enumerate() {
            team.extend(assignee(st, c.client_id, u).await.map_err(|e| e.on_field(&format!("team[{i}]")))?);
        }
        c.team = team;
    }
    if let Some(v) = &b.platforms {
        if v.len() > 10 {
            return Err(ApiError::invalid("platforms", "at most 10"));
        }
        c.platforms = v.iter().enumerate().map(|(i, p)| platform(i, p)).collect::<Result<_, _>>()?;
    }
    if let Some(v) = &b.creatives {
        if v.len() > 100 {
            return Err(ApiError::invalid("creatives", "at most 100"));
        }
        c.creatives = v.iter().enumerate().map(|(i, k)| creative(i, k)).collect::<Result<_, _>>()?;
    }
    if b.budget_minor.is_some() {
        c.budget.allocated_minor = money("budget_minor", b.budget_minor)?.unwrap_or(0);
    }
    if b.currency.is_some() || c.budget.currency.is_empty() {
        c.budget.currency = currency(b.currency.as_deref())?;
    }
    if let Some(v) = &b.billing_model {
        c.budget.billing_model = one_of("billing_model", v, &BILLING_MODELS)?;
    }
    if let Some(v) = b.commission_bp {
        if !(0..=10_000).contains(&v) {
            return Err(ApiError::invalid("commission_bp", "must be 0 to 10000 basis points"));
        }
        c.budget.commission_bp = v;
    }
    if let Some(v) = &b.start_date {
        c.start_date = validate::date("start_date", v)?;
    }
    if let Some(v) = &b.end_date {
        c.end_date = if v.is_empty() { None } else { Some(validate::date("end_date", v)?) };
    }
    if c.end_date.is_some_and(|e| e < c.start_date) {
        return Err(ApiError::invalid("end_date", "must not be before start_date"));
    }
    if let Some(v) = &b.objective {
        c.objectives.primary = validate::opt_text("objective", Some(v), 200)?.unwrap_or_default();
    }
    if let Some(v) = b.target_streams {
        c.objectives.target_streams = Some(count("target_streams", v)?);
    }
    if let Some(v) = b.target_roas {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ApiError::invalid("target_roas", "must be a number ≥ 0"));
        }
        c.objectives.target_roas = Some(v);
    }
    if let Some(v) = &b.smartlink_ids {
        if v.len() > 50 {
            return Err(ApiError::invalid("smartlink_ids", "at most 50"));
        }
        let mut ids = Vec::new();
        for (i, l) in v.iter().enumerate() {
            let id = owned(st, c.client_id, &format!("smartlink_ids[{i}]"), collections::SMARTLINKS, l).await?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        c.smartlink_ids = ids;
    }
    if let Some(n) = &b.add_note {
        let kind = n.get("kind").and_then(|k| k.as_str()).unwrap_or("note");
        let content = n
            .get("content")
            .and_then(|k| k.as_str())
            .ok_or_else(|| ApiError::invalid("add_note.content", "required text"))?;
        c.notes.push(CampaignNote {
            author: p.user_id(),
            kind: one_of("add_note.kind", kind, &["note", "optimization", "issue", "review"])?,
            content: validate::text("add_note.content", content, 1, 5000)?,
            created_at: DateTime::now(),
        });
    }
    // New creatives get ids; known ones keep theirs.
    for k in &mut c.creatives {
        if k.id == ObjectId::default() {
            k.id = ObjectId::new();
        }
    }
    Ok(())
}

/// Creates a campaign (status `draft` unless given).
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", request_body = CampaignInput,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<CampaignInput>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    p.can(Resource::Campaigns, Action::Create)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let now = DateTime::now();
    let start = validate::date(
        "start_date",
        b.start_date.as_deref().ok_or_else(|| ApiError::invalid("start_date", "required"))?,
    )?;
    let mut c = Campaign {
        id: ObjectId::new(),
        client_id: tenant.id,
        name: String::new(),
        description: String::new(),
        status: CampaignStatus::Draft,
        kind: "acquisition".into(),
        lead_id: None,
        contact_id: None,
        client_info: ClientInfo::default(),
        manager: None,
        team: Vec::new(),
        platforms: Vec::new(),
        creatives: Vec::new(),
        budget: CampaignBudget::default(),
        start_date: start,
        end_date: None,
        objectives: Objectives::default(),
        smartlink_ids: Vec::new(),
        notes: Vec::new(),
        created_by: p.user_id(),
        created_at: now,
        updated_at: now,
    };
    if b.name.is_none() {
        return Err(ApiError::invalid("name", "required"));
    }
    let initial = CampaignInput { status: None, ..b.clone() };
    apply_input(&st, &p, &mut c, &initial).await?;
    if let Some(s) = &b.status {
        apply_input(&st, &p, &mut c, &CampaignInput { status: Some(s.clone()), ..Default::default() }).await?;
    }
    st.mongo.collection::<Campaign>(collections::CAMPAIGNS).insert_one(&c).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: tenant.id, action: "create", resource: "campaigns", id: c.id },
        None,
        Some(&c),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&c))))
}

async fn load(st: &AppState, p: &Principal, id: &str) -> Result<Campaign, ApiError> {
    crate::store::load_owned(st, p, collections::CAMPAIGNS, "campaign", id, |d: &Campaign| d.client_id).await
}

/// Reads a campaign.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    p.can(Resource::Campaigns, Action::Read)?;
    Ok(Json(view(&load(&st, &p, &id).await?)))
}

/// Changes a campaign; status moves are validated (409 `invalid_transition`).
#[utoipa::path(patch, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")), request_body = CampaignInput,
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<CampaignInput>,
) -> Result<Json<CampaignView>, ApiError> {
    p.can(Resource::Campaigns, Action::Update)?;
    if b.client_id.is_some() {
        return Err(ApiError::invalid("client_id", "a campaign does not change tenant"));
    }
    let old = load(&st, &p, &id).await?;
    let mut c = old.clone();
    apply_input(&st, &p, &mut c, &b).await?;
    c.updated_at = DateTime::now();
    st.mongo
        .collection::<Campaign>(collections::CAMPAIGNS)
        .replace_one(doc! { "_id": c.id, "clientId": c.client_id }, &c)
        .await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: c.client_id, action: "update", resource: "campaigns", id: c.id },
        Some(&old),
        Some(&c),
    )
    .await?;
    Ok(Json(view(&c)))
}

/// `GET /v1/campaigns` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CampaignQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Lead.
    pub lead_id: Option<String>,
}

/// Lists campaigns, newest first (at most 500).
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", params(CampaignQuery),
    responses((status = 200, body = Vec<CampaignView>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_campaigns(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<CampaignQuery>,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    p.can(Resource::Campaigns, Action::Read)?;
    let tenant = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let mut f = doc! { "clientId": tenant.id };
    if let Some(s) = &q.status {
        f.insert("status", one_of("status", s, &["draft", "active", "paused", "completed", "cancelled"])?);
    }
    if let Some(l) = &q.lead_id {
        f.insert("leadId", validate::object_id("lead_id", l)?);
    }
    let rows: Vec<Campaign> = st
        .mongo
        .collection::<Campaign>(collections::CAMPAIGNS)
        .find(f)
        .sort(doc! { "_id": -1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    Ok(Json(rows.iter().map(view).collect()))
}

/// Ratios derived from ad counters (never taken from input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Derived {
    /// clicks / impressions.
    pub ctr: Option<f64>,
    /// spend / clicks, minor units, rounded half away from zero.
    pub cpc_minor: Option<i64>,
    /// spend × 1000 / impressions, minor units.
    pub cpm_minor: Option<i64>,
    /// spend / views, minor units.
    pub cpv_minor: Option<i64>,
    /// conversion value / spend.
    pub roas: Option<f64>,
}

/// CTR, CPC, CPM, CPV and ROAS of the counters; `None` where the
/// denominator is 0.
pub fn derived(impressions: i64, views: i64, clicks: i64, spend_minor: i64, conversion_value_minor: i64) -> Derived {
    let per = |num: i64, mul: i64, den: i64| {
        (den > 0).then(|| round_div(i128::from(num) * i128::from(mul), i128::from(den)) as i64)
    };
    Derived {
        ctr: (impressions > 0).then(|| clicks as f64 / impressions as f64),
        cpc_minor: per(spend_minor, 1, clicks),
        cpm_minor: per(spend_minor, 1000, impressions),
        cpv_minor: per(spend_minor, 1, views),
        roas: (spend_minor > 0).then(|| conversion_value_minor as f64 / spend_minor as f64),
    }
}

/// One day of one platform's KPIs, in requests.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KpiInput {
    /// Day `YYYY-MM-DD`, within the campaign.
    #[schema(schema_with = crate::openapi::date)]
    pub date: String,
    /// Ad platform.
    #[schema(schema_with = ad_platform_schema)]
    pub platform: String,
    /// Impressions.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub impressions: i64,
    /// Video views.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub views: i64,
    /// Ad clicks.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub clicks: i64,
    /// Reach.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub reach: i64,
    /// Spend, minor units.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub spend_minor: i64,
    /// Conversions reported by the platform.
    #[serde(default)]
    #[schema(schema_with = count_schema)]
    pub conversions: i64,
    /// Their value, minor units.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub conversion_value_minor: i64,
    /// Platform-specific counters by name (`watch_time`, `saves`, ...), numbers ≥ 0.
    #[serde(default)]
    #[schema(schema_with = platform_specific_schema)]
    pub platform_specific: BTreeMap<String, f64>,
}

/// One day of one platform's KPIs with the derived ratios.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KpiView {
    /// Day.
    pub date: String,
    /// Ad platform.
    pub platform: String,
    /// Counters and derived ratios.
    #[serde(flatten)]
    pub totals: AdTotals,
    /// Platform-specific counters.
    #[schema(value_type = Object)]
    pub platform_specific: serde_json::Value,
}

fn kpi_view(k: &DailyKpi) -> KpiView {
    let mut totals = AdTotals::default();
    totals.add(k);
    KpiView {
        date: k.date.clone(),
        platform: k.platform.clone(),
        totals,
        platform_specific: Bson::Document(k.platform_specific.clone()).into_relaxed_extjson(),
    }
}

fn kpi(c: &Campaign, at: &str, k: &KpiInput) -> Result<DailyKpi, ApiError> {
    let f = |n: &str| format!("{at}.{n}");
    let day = validate::date(&f("date"), &k.date)?;
    if day < c.start_date || c.end_date.is_some_and(|end| day > end) {
        let end = c.end_date.map(validate::day).unwrap_or_else(|| "open".into());
        return Err(ApiError::invalid(
            f("date"),
            format!("outside the campaign ({} to {end})", validate::day(c.start_date)),
        ));
    }
    let platform = one_of(&f("platform"), &k.platform, &AD_PLATFORMS)?;
    let mut specific = Document::new();
    for (name, v) in &k.platform_specific {
        if !(1..=40).contains(&name.len())
            || !name.bytes().all(|b| b == b'_' || b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ApiError::invalid(
                f(&format!("platform_specific.{name}")),
                "names are 1 to 40 of a-z, 0-9 and _",
            ));
        }
        if !(v.is_finite() && *v >= 0.0) {
            return Err(ApiError::invalid(f(&format!("platform_specific.{name}")), "must be a number ≥ 0"));
        }
        specific.insert(name.clone(), *v);
    }
    Ok(DailyKpi {
        id: format!("{}:{}:{platform}", c.id.to_hex(), k.date),
        client_id: c.client_id,
        campaign_id: c.id,
        date: k.date.clone(),
        platform,
        impressions: count(&f("impressions"), k.impressions)?,
        views: count(&f("views"), k.views)?,
        clicks: count(&f("clicks"), k.clicks)?,
        reach: count(&f("reach"), k.reach)?,
        spend_minor: money(&f("spend_minor"), Some(k.spend_minor))?.unwrap_or(0),
        conversions: count(&f("conversions"), k.conversions)?,
        conversion_value_minor: money(&f("conversion_value_minor"), Some(k.conversion_value_minor))?.unwrap_or(0),
        platform_specific: specific,
        updated_at: DateTime::now(),
    })
}

/// Validates every row, then upserts them all (a row replaces the same day and platform).
async fn store_kpis(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    c: &Campaign,
    rows: Vec<DailyKpi>,
    action: &str,
) -> Result<usize, ApiError> {
    let coll = st.mongo.collection::<DailyKpi>(collections::CAMPAIGN_KPIS);
    for k in &rows {
        coll.replace_one(doc! { "_id": &k.id }, k).upsert(true).await?;
    }
    let entry = audit::Entry {
        client_id: Some(c.client_id),
        action,
        resource: "campaigns",
        resource_id: Some(c.id.to_hex()),
        changes: vec![schemas::crm::FieldChange {
            field: "kpis".into(),
            old: Bson::Null,
            new: Bson::Int64(rows.len() as i64),
        }],
        outcome: Ok(()),
    };
    audit::record(st, Some(p), meta, entry).await?;
    Ok(rows.len())
}

/// How many KPI rows were stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KpiStored {
    /// Rows written (inserted or replaced).
    pub rows: usize,
}

/// Enters daily KPIs (at most 1000 rows; all are validated before any is written).
#[utoipa::path(put, path = "/v1/campaigns/{id}/kpis", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")), request_body = Vec<KpiInput>,
    responses((status = 200, body = KpiStored), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_kpis(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<Vec<KpiInput>>,
) -> Result<Json<KpiStored>, ApiError> {
    p.can(Resource::Campaigns, Action::Update)?;
    let c = load(&st, &p, &id).await?;
    if b.is_empty() || b.len() > 1000 {
        return Err(ApiError::invalid("body", "1 to 1000 rows"));
    }
    let rows = b.iter().enumerate().map(|(i, k)| kpi(&c, &format!("[{i}]"), k)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(KpiStored { rows: store_kpis(&st, &p, &meta, &c, rows, "kpis").await? }))
}

/// Most data lines of one KPI import (a platform's export of a year of days).
pub const IMPORT_MAX_LINES: usize = 5000;

/// Largest KPI import body, bytes (5000 lines of about 200 bytes).
pub const IMPORT_MAX_BYTES: usize = 1024 * 1024;

/// Imports daily KPIs from CSV (`text/csv`, header row first). Columns:
/// `date,platform,impressions,views,clicks,reach,spend_minor,conversions,conversion_value_minor`
/// (only `date` and `platform` required, any order); other columns are
/// platform-specific counters; derived columns (`ctr`, `cpc`, `cpm`,
/// `cpv`, `roas`) are refused; dates must fall within the campaign. At
/// most [`IMPORT_MAX_LINES`] lines and [`IMPORT_MAX_BYTES`]. Errors name
/// `line N.column`; nothing is written unless every line is valid.
#[utoipa::path(post, path = "/v1/campaigns/{id}/kpis/import", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = KpiStored), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn import_kpis(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<KpiStored>, ApiError> {
    p.can(Resource::Campaigns, Action::Update)?;
    let body = body.map_err(|r| ApiError::Malformed { code: "malformed_body", message: r.body_text() })?;
    let c = load(&st, &p, &id).await?;
    let rows = parse_kpi_csv(&c, &body)?;
    Ok(Json(KpiStored { rows: store_kpis(&st, &p, &meta, &c, rows, "import_kpis").await? }))
}

/// The daily KPI rows of CSV `body` for campaign `c` (the format of
/// `POST /v1/campaigns/{id}/kpis/import`), every line validated; 400 naming `line N.column` at
/// the first invalid one, or `body` when it has no data line or more than
/// [`IMPORT_MAX_LINES`]. Pure: fuzzed by `fuzz/fuzz_targets/kpi_csv.rs`.
pub fn parse_kpi_csv(c: &Campaign, body: &str) -> Result<Vec<DailyKpi>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::invalid("line 1", e.to_string()))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    for h in &headers {
        if ["ctr", "cpc", "cpm", "cpv", "roas", "cpc_minor", "cpm_minor", "cpv_minor"].contains(&h.as_str()) {
            return Err(ApiError::invalid(format!("line 1.{h}"), "derived metrics are computed, not imported"));
        }
    }
    for need in ["date", "platform"] {
        if !headers.iter().any(|h| h == need) {
            return Err(ApiError::invalid(format!("line 1.{need}"), "column required"));
        }
    }
    let mut rows = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| ApiError::invalid(format!("line {line}"), e.to_string()))?;
        let mut input = KpiInput {
            date: String::new(),
            platform: String::new(),
            impressions: 0,
            views: 0,
            clicks: 0,
            reach: 0,
            spend_minor: 0,
            conversions: 0,
            conversion_value_minor: 0,
            platform_specific: BTreeMap::new(),
        };
        for (h, v) in headers.iter().zip(rec.iter()) {
            let int =
                || v.parse::<i64>().map_err(|_| ApiError::invalid(format!("line {line}.{h}"), "must be an integer"));
            match h.as_str() {
                "date" => input.date = v.to_string(),
                "platform" => input.platform = v.to_string(),
                "impressions" => input.impressions = int()?,
                "views" => input.views = int()?,
                "clicks" => input.clicks = int()?,
                "reach" => input.reach = int()?,
                "spend_minor" => input.spend_minor = int()?,
                "conversions" => input.conversions = int()?,
                "conversion_value_minor" => input.conversion_value_minor = int()?,
                _ if v.is_empty() => {}
                other => {
                    let x = v
                        .parse::<f64>()
                        .map_err(|_| ApiError::invalid(format!("line {line}.{other}"), "must be a number"))?;
                    input.platform_specific.insert(other.to_string(), x);
                }
            }
        }
        rows.push(kpi(c, &format!("line {line}"), &input)?);
        if rows.len() > IMPORT_MAX_LINES {
            return Err(ApiError::invalid("body", format!("at most {IMPORT_MAX_LINES} lines")));
        }
    }
    if rows.is_empty() {
        return Err(ApiError::invalid("body", "no data line"));
    }
    Ok(rows)
}

/// `from` / `to` of KPI and performance reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DayRange {
    /// First day `YYYY-MM-DD` (default the campaign's start, or 365 days
    /// before `to` for a longer campaign).
    #[param(schema_with = crate::openapi::date)]
    pub from: Option<String>,
    /// Last day, inclusive (default the campaign's end, or today; at most
    /// 365 days after `from` when only `from` is given). Both given: at
    /// most 366 days apart.
    #[param(schema_with = crate::openapi::date)]
    pub to: Option<String>,
}

/// The longest range a default may span, ms (365 days): what a request
/// that names no day gets, so that it never answers 400.
const DEFAULT_SPAN_MS: i64 = 365 * 86_400_000;

fn range(c: &Campaign, q: &DayRange) -> Result<(DateTime, DateTime), ApiError> {
    let default_to =
        || c.end_date.unwrap_or_else(|| validate::date("to", &day(DateTime::now())).unwrap_or(c.start_date));
    let (from, to) = match (&q.from, &q.to) {
        (Some(f), Some(t)) => (validate::date("from", f)?, validate::date("to", t)?),
        (Some(f), None) => {
            let from = validate::date("from", f)?;
            (from, default_to().min(DateTime::from_millis(from.timestamp_millis() + DEFAULT_SPAN_MS)))
        }
        (None, t) => {
            let to = match t {
                Some(t) => validate::date("to", t)?,
                None => default_to(),
            };
            (c.start_date.max(DateTime::from_millis(to.timestamp_millis() - DEFAULT_SPAN_MS)), to)
        }
    };
    if to < from {
        return Err(ApiError::invalid("to", "must not be before from"));
    }
    if (to.timestamp_millis() - from.timestamp_millis()) / 86_400_000 > 366 {
        return Err(ApiError::invalid("to", "at most 366 days"));
    }
    Ok((from, to))
}

async fn kpis_in(st: &AppState, c: &Campaign, from: DateTime, to: DateTime) -> Result<Vec<DailyKpi>, ApiError> {
    Ok(st
        .mongo
        .collection::<DailyKpi>(collections::CAMPAIGN_KPIS)
        .find(doc! { "campaignId": c.id, "date": { "$gte": day(from), "$lte": day(to) } })
        .sort(doc! { "date": 1, "platform": 1 })
        .await?
        .try_collect()
        .await?)
}

/// The campaign's daily KPIs with derived ratios, by day then platform.
#[utoipa::path(get, path = "/v1/campaigns/{id}/kpis", tag = "campaigns", params(("id" = String, Path, description = "Campaign id"), DayRange),
    responses((status = 200, body = Vec<KpiView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_kpis(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DayRange>,
) -> Result<Json<Vec<KpiView>>, ApiError> {
    p.can(Resource::Campaigns, Action::Read)?;
    let c = load(&st, &p, &id).await?;
    let (from, to) = range(&c, &q)?;
    Ok(Json(kpis_in(&st, &c, from, to).await?.iter().map(kpi_view).collect()))
}

/// Ad numbers summed over platforms (or one platform), with derived ratios.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AdTotals {
    /// Impressions.
    pub impressions: i64,
    /// Views.
    pub views: i64,
    /// Ad clicks.
    pub clicks: i64,
    /// Reach (summed over platforms: an upper bound of the distinct reach).
    pub reach: i64,
    /// Spend, minor units.
    pub spend_minor: i64,
    /// Conversions reported by the platforms.
    pub conversions: i64,
    /// Conversion value, minor units.
    pub conversion_value_minor: i64,
    /// Derived ratios.
    pub derived: Derived,
}

impl AdTotals {
    fn add(&mut self, k: &DailyKpi) {
        self.merge(&AdTotals {
            impressions: k.impressions,
            views: k.views,
            clicks: k.clicks,
            reach: k.reach,
            spend_minor: k.spend_minor,
            conversions: k.conversions,
            conversion_value_minor: k.conversion_value_minor,
            derived: Derived::default(),
        });
    }

    fn merge(&mut self, o: &AdTotals) {
        self.impressions += o.impressions;
        self.views += o.views;
        self.clicks += o.clicks;
        self.reach += o.reach;
        self.spend_minor += o.spend_minor;
        self.conversions += o.conversions;
        self.conversion_value_minor += o.conversion_value_minor;
        self.derived =
            derived(self.impressions, self.views, self.clicks, self.spend_minor, self.conversion_value_minor);
    }
}

/// The pipeline's own numbers for the campaign's smartlinks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PipelineTotals {
    /// Landing-page views (humans).
    pub views: i64,
    /// Click-outs to streaming services (seed 001 `streamClicks`).
    pub stream_clicks: i64,
    /// Sessions with a click-out, summed over the links.
    pub conversions: i64,
    /// Click-outs by streaming platform.
    pub stream_clicks_by_platform: BTreeMap<String, i64>,
}

/// One day of a campaign's performance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DayPerformance {
    /// Day `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Ad platforms' numbers, summed.
    pub ad: AdTotals,
    /// Ad numbers by platform.
    pub ad_by_platform: BTreeMap<String, AdTotals>,
    /// Our click-outs for the campaign's links.
    pub pipeline: PipelineTotals,
    /// spend / stream clicks, minor units (`null` without clicks).
    pub cost_per_stream_click_minor: Option<i64>,
}

/// `GET /v1/campaigns/{id}/performance`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    /// Campaign id.
    pub campaign_id: String,
    /// Currency of the amounts.
    pub currency: String,
    /// Smartlinks counted.
    pub smartlink_ids: Vec<String>,
    /// Every day of the range, oldest first (days without data are zeros).
    pub days: Vec<DayPerformance>,
    /// Sums over the range.
    pub total: DayPerformance,
}

/// Ad spend and KPIs beside the pipeline's click-outs, per day: the ad
/// side from the entered KPIs, the pipeline side from the analytics
/// engine for each of the campaign's smartlinks (rollups for closed days,
/// raw events for the rest; bots excluded).
#[utoipa::path(get, path = "/v1/campaigns/{id}/performance", tag = "campaigns", params(("id" = String, Path, description = "Campaign id"), DayRange),
    responses((status = 200, body = Performance), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn performance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DayRange>,
) -> Result<Json<Performance>, ApiError> {
    p.can(Resource::Campaigns, Action::Read)?;
    p.can(Resource::Analytics, Action::Read)?;
    let c = load(&st, &p, &id).await?;
    let (from, to) = range(&c, &q)?;
    let mut days: BTreeMap<String, DayPerformance> = BTreeMap::new();
    let mut t = from;
    while t <= to {
        days.insert(
            day(t),
            DayPerformance {
                date: day(t),
                ad: AdTotals::default(),
                ad_by_platform: BTreeMap::new(),
                pipeline: PipelineTotals::default(),
                cost_per_stream_click_minor: None,
            },
        );
        t = DateTime::from_millis(t.timestamp_millis() + 86_400_000);
    }
    for k in kpis_in(&st, &c, from, to).await? {
        if let Some(d) = days.get_mut(&k.date) {
            d.ad.add(&k);
            d.ad_by_platform.entry(k.platform.clone()).or_default().add(&k);
        }
    }
    let engine = crate::analytics::engine_for(&st, None).await?;
    let (lo, hi) = ((from.timestamp_millis() / 1000) as u32, (to.timestamp_millis() / 1000) as u32 + 86_400);
    // Links archived or deleted since still count for the days they ran.
    let links: Vec<Smartlink> = st
        .mongo
        .collection::<Smartlink>(collections::SMARTLINKS)
        .find(doc! { "_id": { "$in": &c.smartlink_ids }, "clientId": c.client_id })
        .await?
        .try_collect()
        .await?;
    for link in &links {
        let scope = Scope { tenant_id: c.client_id.to_hex(), link_id: Some(link.id.to_hex()) };
        for point in engine.timeseries(&scope, lo, hi, rollup::Grain::Day, false).await? {
            let date = validate::day(DateTime::from_millis(i64::from(point.start) * 1000));
            if let Some(d) = days.get_mut(&date) {
                d.pipeline.views += point.metrics.total_views;
                d.pipeline.stream_clicks += point.metrics.total_clicks;
                d.pipeline.conversions += point.metrics.total_conversions;
                for (platform, n) in &point.platforms {
                    *d.pipeline.stream_clicks_by_platform.entry(platform.clone()).or_default() += n;
                }
            }
        }
    }
    let mut total = DayPerformance {
        date: format!("{}..{}", day(from), day(to)),
        ad: AdTotals::default(),
        ad_by_platform: BTreeMap::new(),
        pipeline: PipelineTotals::default(),
        cost_per_stream_click_minor: None,
    };
    let cost = |spend: i64, clicks: i64| (clicks > 0).then(|| round_div(i128::from(spend), i128::from(clicks)) as i64);
    let mut out = Vec::new();
    for (_, mut d) in days {
        d.cost_per_stream_click_minor = cost(d.ad.spend_minor, d.pipeline.stream_clicks);
        total.ad.merge(&d.ad);
        for (name, a) in &d.ad_by_platform {
            total.ad_by_platform.entry(name.clone()).or_default().merge(a);
        }
        total.pipeline.views += d.pipeline.views;
        total.pipeline.stream_clicks += d.pipeline.stream_clicks;
        total.pipeline.conversions += d.pipeline.conversions;
        for (name, n) in &d.pipeline.stream_clicks_by_platform {
            *total.pipeline.stream_clicks_by_platform.entry(name.clone()).or_default() += n;
        }
        out.push(d);
    }
    total.cost_per_stream_click_minor = cost(total.ad.spend_minor, total.pipeline.stream_clicks);
    Ok(Json(Performance {
        campaign_id: c.id.to_hex(),
        currency: c.budget.currency.clone(),
        smartlink_ids: c.smartlink_ids.iter().map(|i| i.to_hex()).collect(),
        days: out,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_statuses_are_the_statuses_the_api_reads() {
        for s in STATUSES {
            let parsed: schemas::campaign::CampaignStatus = validate::parse_enum("status", s, "").unwrap();
            assert_eq!(wire(&parsed), s);
        }
    }

    #[test]
    fn derived_ratios_are_computed_with_integer_money() {
        let d = derived(20_000, 5_000, 300, 12_345, 30_000);
        assert_eq!(d.ctr, Some(0.015));
        assert_eq!(d.cpc_minor, Some(41), "123.45 / 300 = 0.4115 → 0.41");
        assert_eq!(d.cpm_minor, Some(617), "12345 × 1000 / 20000 = 617.25 → 617");
        assert_eq!(d.cpv_minor, Some(2), "12345 / 5000 = 2.469 → 2");
        assert!((d.roas.unwrap() - 2.430_133).abs() < 1e-6);
        assert_eq!(derived(0, 0, 0, 0, 0), Derived::default(), "no division by zero");
    }
}
