//! CRM and audit documents in MongoDB (issue #6).
//!
//! ## Mapping of the seeds
//! The seeds disagree; the richer model wins:
//! - **Leads**: seed 001 `Lead` (personal, artist, business, pipeline,
//!   source, assignment, communication, notes, follow-ups, conversion) is
//!   the base. Seed 003/004's flat `status` (NEW/CONTACTED/MEETING_SCHEDULED/
//!   CONVERTED/LOST) maps onto `pipeline.stage`: NEW→new, CONTACTED→contacted,
//!   MEETING_SCHEDULED→qualified, CONVERTED→won, LOST→lost; their priority
//!   A/B/C maps to high/medium/low; their `source` and `utm_*` go to
//!   `source.{channel, utmSource, utmMedium, utmCampaign}`; `brand`/
//!   `brand_name` is `artist.name`; `owner_email`/`assigned_to` is
//!   `assignment.assignedTo` (a user id).
//! - **Contacts** and **opportunities**: seed 003 (8 opportunity stages),
//!   with seed 004's `lead_id`, `next_step`, `is_closed`/`is_won` derived
//!   from the stage (`WON`, or `LOST` which we add so a deal can end).
//! - Emails, phones and addresses are stored encrypted (`…Enc`, AES-256-GCM)
//!   with a blind index on emails (`…Index`) for lookups and uniqueness:
//!   no collection holds them in clear.
//! - Money is integer minor units with an ISO 4217 currency.

use bson::{oid::ObjectId, Bson, DateTime};
use serde::{Deserialize, Serialize};

/// Pipeline stage of a lead (seed 001; seed 003 statuses mapped above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeadStage {
    /// Just in.
    New,
    /// First contact made.
    Contacted,
    /// Qualified (budget, need, timing).
    Qualified,
    /// Proposal sent.
    Proposal,
    /// Negotiating.
    Negotiation,
    /// Closed, won (converted).
    Won,
    /// Closed, lost (with a reason).
    Lost,
}

impl LeadStage {
    /// Every stage, in pipeline order.
    pub const ALL: [LeadStage; 7] = [
        LeadStage::New,
        LeadStage::Contacted,
        LeadStage::Qualified,
        LeadStage::Proposal,
        LeadStage::Negotiation,
        LeadStage::Won,
        LeadStage::Lost,
    ];

    /// The wire name (`proposal`).
    pub fn name(self) -> &'static str {
        match self {
            LeadStage::New => "new",
            LeadStage::Contacted => "contacted",
            LeadStage::Qualified => "qualified",
            LeadStage::Proposal => "proposal",
            LeadStage::Negotiation => "negotiation",
            LeadStage::Won => "won",
            LeadStage::Lost => "lost",
        }
    }

    /// The stage named `s`.
    pub fn parse(s: &str) -> Option<LeadStage> {
        LeadStage::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether a lead may move from `self` to `to`: one step forward or
    /// back among the open stages (skipping forward is allowed), to `lost`
    /// from any open stage, `lost` reopens to `new` or `contacted`; `won`
    /// is reached only by conversion and is final.
    pub fn can_move_to(self, to: LeadStage) -> bool {
        use LeadStage::*;
        let open = |s: LeadStage| !matches!(s, Won | Lost);
        match (self, to) {
            (a, b) if a == b => true,
            (Won, _) | (_, Won) => false,
            (a, Lost) => open(a),
            (Lost, b) => matches!(b, New | Contacted),
            (a, b) => open(a) && open(b) && (b as u8 > a as u8 || a as u8 - b as u8 == 1),
        }
    }
}

/// Priority (seed 001; seed 003's A/B/C = high/medium/low).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

/// The personal data of a person the CRM knows (a lead's `personal`, a
/// contact's top-level fields); email, phone and address are encrypted
/// (AES-256-GCM, `enc:v1:…`), the email also kept as a blind index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email, encrypted.
    pub email_enc: String,
    /// Blind index of the email; unique per tenant.
    pub email_index: String,
    /// Phone (E.164), encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_enc: Option<String>,
    /// Postal address as JSON, encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_enc: Option<String>,
}

/// The artist a lead is about (seed 001 `artistInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArtistInfo {
    /// Artist name.
    pub name: String,
    /// Genres.
    pub genres: Vec<String>,
    /// Label.
    pub label: Option<String>,
    /// Spotify, YouTube, Instagram, TikTok, website URLs by name: a
    /// document (FerretDB refuses the nested arrays of `[name, url]` pairs
    /// earlier releases wrote; those still read).
    #[serde(deserialize_with = "links_map_or_pairs")]
    pub links: std::collections::BTreeMap<String, String>,
}

/// [`ArtistInfo::links`] from a document, or from `[name, url]` pairs.
fn links_map_or_pairs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Links {
        Map(std::collections::BTreeMap<String, String>),
        Pairs(Vec<(String, String)>),
    }
    Ok(match Links::deserialize(d)? {
        Links::Map(m) => m,
        Links::Pairs(p) => p.into_iter().collect(),
    })
}

/// Budget and targets (seed 001 `businessInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BusinessInfo {
    /// Budget, minor units.
    pub budget_minor: Option<i64>,
    /// ISO 4217 currency (`EUR`).
    pub currency: String,
    /// Targeted platforms.
    pub platforms: Vec<String>,
    /// Goals.
    pub goals: Vec<String>,
}

/// Pipeline state (seed 001 `pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// Stage.
    pub stage: LeadStage,
    /// Priority.
    pub priority: Priority,
    /// Qualification score, 0..=100.
    pub score: i64,
    /// Close probability, 0..=100.
    pub probability: i64,
    /// Expected close, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_close_date: Option<DateTime>,
    /// Why it was lost (required for `lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_reason: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Where a lead came from (seed 001 `source`, seed 004 `utm_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeadSource {
    /// `website`, `social`, `referral`, `direct`, `ads`, `event`, `other`.
    pub channel: String,
    /// UTM source.
    pub utm_source: Option<String>,
    /// UTM medium.
    pub utm_medium: Option<String>,
    /// UTM campaign.
    pub utm_campaign: Option<String>,
}

/// One change of assignee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentChange {
    /// Previous assignee.
    pub from: Option<ObjectId>,
    /// New assignee.
    pub to: Option<ObjectId>,
    /// Who changed it.
    pub by: Option<ObjectId>,
    /// When, UTC.
    pub at: DateTime,
}

/// Assignment with its history (seed 001 `assignment`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Assignment {
    /// Current assignee (a user of the tenant).
    pub assigned_to: Option<ObjectId>,
    /// Since when, UTC.
    pub assigned_at: Option<DateTime>,
    /// Every change, oldest first.
    pub history: Vec<AssignmentChange>,
}

/// A note or follow-up on a lead (seed 001 `notes`, `followUps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// Note id.
    pub id: ObjectId,
    /// Author (user), if a user wrote it.
    pub author: Option<ObjectId>,
    /// `note`, `call`, `email`, `meeting`, `follow_up`.
    pub kind: String,
    /// Text.
    pub content: String,
    /// For follow-ups: when, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime>,
    /// Written at, UTC.
    pub created_at: DateTime,
}

/// The result of converting a lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    /// The contact made from the lead.
    pub contact_id: ObjectId,
    /// The opportunity opened.
    pub opportunity_id: ObjectId,
    /// Started at, UTC.
    pub started_at: DateTime,
    /// Finished at, UTC; absent while in progress (a retry completes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime>,
}

/// A lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    /// Lead id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Personal data.
    pub personal: Person,
    /// Artist.
    #[serde(default)]
    pub artist: ArtistInfo,
    /// Business.
    #[serde(default)]
    pub business: BusinessInfo,
    /// Pipeline.
    pub pipeline: Pipeline,
    /// Source.
    #[serde(default)]
    pub source: LeadSource,
    /// Assignment.
    #[serde(default)]
    pub assignment: Assignment,
    /// Notes and follow-ups.
    #[serde(default)]
    pub notes: Vec<Note>,
    /// Conversion, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
    /// Values of the tenant's custom fields ([`CrmSettings::custom_fields`]),
    /// by key.
    #[serde(default, skip_serializing_if = "bson::Document::is_empty")]
    pub custom_fields: bson::Document,
    /// Creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<ObjectId>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// A contact (seed 003 `contacts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Contact id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Names, email, phone and address, stored as top-level fields
    /// (`firstName`, `emailEnc`, …) as seed 003 lays a contact out.
    #[serde(flatten)]
    pub person: Person,
    /// Company or artist name.
    #[serde(default)]
    pub company: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The lead it was converted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_lead_id: Option<ObjectId>,
    /// Assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<ObjectId>,
    /// Values of the tenant's custom fields for contacts, by key.
    #[serde(default, skip_serializing_if = "bson::Document::is_empty")]
    pub custom_fields: bson::Document,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// A display label for a fixed key (a lead stage, a priority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The key (`qualified`, `high`).
    pub key: String,
    /// What the tenant calls it (`Meeting scheduled`, `A`).
    pub label: String,
}

/// Type of a custom field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// A string (at most 500 characters).
    Text,
    /// A finite number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// One of `options`.
    Select,
}

/// A tenant-defined field on leads or contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    /// Key in `customFields` (`[a-z0-9_]`, 1..=40).
    pub key: String,
    /// Display label.
    pub label: String,
    /// `lead` or `contact`.
    pub entity: String,
    /// Value type.
    pub kind: FieldKind,
    /// Allowed values of a `select`.
    #[serde(default)]
    pub options: Vec<String>,
    /// Must be present on create.
    #[serde(default)]
    pub required: bool,
}

/// A tenant's CRM settings (seed 003 `crm_settings`, one per tenant, `_id`
/// = the tenant id). Seed 003's free `lead_statuses`/`lead_priorities`
/// become labels on the fixed pipeline stages and priorities, since stage
/// transitions are validated ([`LeadStage::can_move_to`]); sources and
/// task types are free lists; custom fields are typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmSettings {
    /// The tenant id.
    #[serde(rename = "_id")]
    pub client_id: ObjectId,
    /// Labels of the lead stages, pipeline order.
    pub stage_labels: Vec<Label>,
    /// Labels of the priorities (`low` … `urgent`).
    pub priority_labels: Vec<Label>,
    /// Lead source channels a lead may have.
    pub lead_sources: Vec<String>,
    /// Task kinds a task may have.
    pub task_types: Vec<String>,
    /// Custom fields.
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

impl CrmSettings {
    /// Lead sources of a tenant that never changed its settings.
    pub const DEFAULT_SOURCES: [&'static str; 7] = ["website", "social", "referral", "direct", "ads", "event", "other"];
    /// Task kinds of a tenant that never changed its settings (seed 003).
    pub const DEFAULT_TASK_TYPES: [&'static str; 5] = ["CALL", "EMAIL", "MEETING", "TODO", "FOLLOWUP"];

    /// The settings a tenant has before it changes them: stage and
    /// priority keys as labels, the default sources and task types, no
    /// custom field.
    pub fn defaults(client_id: ObjectId) -> Self {
        let label = |k: &str| Label { key: k.into(), label: k.into() };
        CrmSettings {
            client_id,
            stage_labels: LeadStage::ALL.iter().map(|s| label(s.name())).collect(),
            priority_labels: ["low", "medium", "high", "urgent"].iter().map(|p| label(p)).collect(),
            lead_sources: Self::DEFAULT_SOURCES.iter().map(|s| s.to_string()).collect(),
            task_types: Self::DEFAULT_TASK_TYPES.iter().map(|s| s.to_string()).collect(),
            custom_fields: Vec::new(),
            updated_at: DateTime::from_millis(0),
        }
    }
}

/// Stage of an opportunity: seed 003's 8 stages, plus `LOST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpportunityStage {
    /// Initial interest.
    InitialInterest,
    /// Information requested.
    InfoRequested,
    /// First call scheduled.
    FirstCallScheduled,
    /// Pitch delivered.
    PitchDelivered,
    /// Proposal sent.
    ProposalSent,
    /// Negotiation.
    Negotiation,
    /// Verbal commitment.
    VerbalCommitment,
    /// Won (closed).
    Won,
    /// Lost (closed).
    Lost,
}

/// An opportunity (seed 003 `opportunities`, seed 004 links).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Opportunity {
    /// Opportunity id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Title.
    pub title: String,
    /// Contact.
    pub contact_id: ObjectId,
    /// Lead it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<ObjectId>,
    /// Value, minor units.
    pub value_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Stage.
    pub stage: OpportunityStage,
    /// Probability, 0..=100.
    pub probability: i64,
    /// Assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<ObjectId>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// What a task or activity is about (seed 003 `related_to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Related {
    /// `lead`, `contact` or `opportunity`.
    pub kind: String,
    /// Its id.
    pub id: ObjectId,
}

/// A task (seed 003 `tasks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Task id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// `CALL`, `EMAIL`, `MEETING`, `TODO`, `FOLLOWUP`.
    pub kind: String,
    /// `LOW`, `MEDIUM`, `HIGH`, `URGENT`.
    pub priority: String,
    /// `PENDING`, `IN_PROGRESS`, `COMPLETED`, `CANCELLED`.
    pub status: String,
    /// Due, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime>,
    /// The record it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Related>,
    /// Assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<ObjectId>,
    /// Creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<ObjectId>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Completion time, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime>,
}

/// A manual timeline entry (call, email, meeting, note) on a CRM record;
/// changes are on the timeline from the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Activity id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// `call`, `email`, `meeting`, `note`.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// The record it is about.
    pub related: Related,
    /// Who recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<ObjectId>,
    /// When it happened, UTC.
    pub at: DateTime,
}

/// Who did something, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `operator`, `api_key` or `user`.
    pub kind: String,
    /// Key or user id (absent for the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Role of a user at the time, or the key's scopes joined by spaces.
    pub role: String,
}

/// One changed field: dotted path, old and new value (secrets and
/// encrypted fields as `"[redacted]"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path (`pipeline.stage`).
    pub field: String,
    /// Value before (null when created).
    pub old: Bson,
    /// Value after (null when deleted).
    pub new: Bson,
}

/// An audit record (seed 001 `AuditLog`): written once, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Record id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ObjectId>,
    /// Who.
    pub actor: Actor,
    /// `create`, `update`, `delete`, `login`, `convert`, ... or `METHOD /route`
    /// for refused requests.
    pub action: String,
    /// Resource (`leads`, `smartlinks`, `api_keys`, `auth`).
    pub resource: String,
    /// Resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Changed fields.
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    /// Client IP (as seen by the API, `X-Forwarded-For` from trusted proxies).
    pub ip: String,
    /// User agent.
    pub user_agent: String,
    /// When, UTC.
    pub at: DateTime,
    /// Whether it succeeded.
    pub success: bool,
    /// Error code when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artist_links_are_a_document_and_old_pairs_still_read() {
        let mut a = ArtistInfo { name: "Jiro".into(), ..ArtistInfo::default() };
        a.links.insert("spotify".into(), "https://open.spotify.com/artist/1".into());
        let doc = bson::to_document(&a).unwrap();
        assert!(doc.get_document("links").is_ok(), "a document, not nested arrays: {doc}");
        let old = bson::doc! { "name": "Jiro", "links": [["spotify", "https://open.spotify.com/artist/1"]] };
        assert_eq!(bson::from_document::<ArtistInfo>(old).unwrap(), a);
    }

    #[test]
    fn lead_stage_transitions() {
        use LeadStage::*;
        assert!(New.can_move_to(Contacted) && New.can_move_to(Proposal), "forward, skipping allowed");
        assert!(Proposal.can_move_to(Qualified), "one step back");
        assert!(!Negotiation.can_move_to(New), "not far back");
        assert!(Qualified.can_move_to(Lost) && Lost.can_move_to(New));
        assert!(!Lost.can_move_to(Proposal));
        assert!(!Negotiation.can_move_to(Won), "won only by conversion");
        assert!(!Won.can_move_to(Lost) && !Won.can_move_to(New));
        assert_eq!(LeadStage::parse("proposal"), Some(Proposal));
        assert_eq!(serde_json::to_value(OpportunityStage::FirstCallScheduled).unwrap(), "FIRST_CALL_SCHEDULED");
    }
}
