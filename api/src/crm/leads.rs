//! The CRM (issue #6; seeds 001, 003, 004, mapped in `schemas::crm`):
//! leads with their pipeline, notes and assignment history, conversion of
//! a lead into a contact and an opportunity, contacts, opportunities (the
//! 8 stages of seed 003 plus `LOST`), and the pipeline dashboard.
//!
//! Emails, phones and addresses are encrypted at rest; email lookups and
//! uniqueness (per tenant) go through the blind index. Every change is
//! audited with its diff (encrypted fields redacted).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use schemas::crm::{ArtistInfo, AssignmentChange, BusinessInfo, Lead, LeadSource, LeadStage, Note, Pipeline};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::fields::{custom_json, percent, priority, tags};
use super::person::{self, Address, PersonInput, PersonView};
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::identity::assignee;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc, wire};
use crate::validate::{currency, hex, money};
use crypto::Pii;

/// `POST /v1/leads` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadCreate {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// First name, 1..=50.
    #[schema(schema_with = crate::openapi::text_50)]
    pub first_name: String,
    /// Last name, 1..=50.
    #[schema(schema_with = crate::openapi::text_50)]
    pub last_name: String,
    /// Email; unique among the tenant's leads.
    pub email: String,
    /// Phone, E.164 (`+33612345678`).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::phone)]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(default)]
    pub address: Option<Address>,
    /// Artist name, 1..=100.
    #[schema(schema_with = crate::openapi::text_100)]
    pub artist_name: String,
    /// Genres, at most 10 of 1..=40 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::genres)]
    pub genres: Vec<String>,
    /// Label, at most 100 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub label: Option<String>,
    /// Profile URLs by name (`spotify`, `instagram`, ...), http(s).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::profile_urls)]
    pub links: BTreeMap<String, String>,
    /// Budget, minor units, 0..=10^12.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money)]
    pub budget_minor: Option<i64>,
    /// ISO 4217 currency, default `EUR`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::currency)]
    pub currency: Option<String>,
    /// Stage: an open one (`new` default, `contacted`, `qualified`, `proposal`, `negotiation`).
    #[serde(default)]
    #[schema(schema_with = super::fields::open_lead_stage_schema)]
    pub stage: Option<String>,
    /// `low`, `medium` (default), `high`, `urgent`.
    #[serde(default)]
    #[schema(schema_with = super::fields::priority_schema)]
    pub priority: Option<String>,
    /// Score, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::percent)]
    pub score: Option<i64>,
    /// Probability, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::percent)]
    pub probability: Option<i64>,
    /// Tags, at most 20 of 1..=30 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Vec<String>,
    /// Channel: one of the tenant's lead sources (CRM settings; by default
    /// `website`, `social`, `referral`, `direct`, `ads`, `event`, `other`
    /// (the default)).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::text_30)]
    pub source: Option<String>,
    /// UTM source, at most 100 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub utm_source: Option<String>,
    /// UTM medium, at most 100 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub utm_medium: Option<String>,
    /// UTM campaign, at most 100 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub utm_campaign: Option<String>,
    /// Assignee: a user of the tenant.
    #[serde(default)]
    pub assigned_to: Option<String>,
    /// Values of the tenant's lead custom fields (CRM settings), by key.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
}

/// `PATCH /v1/leads/{id}` body; present fields replace.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadPatch {
    /// First name.
    #[schema(schema_with = crate::openapi::text_50)]
    pub first_name: Option<String>,
    /// Last name.
    #[schema(schema_with = crate::openapi::text_50)]
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone, E.164 (`""` clears it).
    #[schema(schema_with = crate::openapi::phone_or_empty)]
    pub phone: Option<String>,
    /// Artist name.
    #[schema(schema_with = crate::openapi::text_100)]
    pub artist_name: Option<String>,
    /// Stage (transitions: `schemas::crm::LeadStage::can_move_to`; `lost` needs `lost_reason`).
    #[schema(schema_with = super::fields::lead_stage_schema)]
    pub stage: Option<String>,
    /// Why lost, 1..=500 characters.
    #[schema(schema_with = crate::openapi::text_500)]
    pub lost_reason: Option<String>,
    /// Priority.
    #[schema(schema_with = super::fields::priority_schema)]
    pub priority: Option<String>,
    /// Score, 0..=100.
    #[schema(schema_with = crate::openapi::percent)]
    pub score: Option<i64>,
    /// Probability, 0..=100.
    #[schema(schema_with = crate::openapi::percent)]
    pub probability: Option<i64>,
    /// Budget, minor units, 0..=10^12.
    #[schema(schema_with = crate::openapi::money)]
    pub budget_minor: Option<i64>,
    /// Tags, at most 20 of 1..=30 characters.
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Option<Vec<String>>,
    /// Assignee (a user id of the tenant; empty string unassigns).
    pub assigned_to: Option<String>,
    /// Custom field values to set (`null` removes one).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
}

/// A note on a lead.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NoteView {
    /// Note id.
    pub id: String,
    /// Author user id.
    pub author: Option<String>,
    /// `note`, `call`, `email`, `meeting`, `follow_up`.
    pub kind: String,
    /// Text.
    pub content: String,
    /// Due, for follow-ups (RFC 3339).
    pub due_at: Option<String>,
    /// Written at (RFC 3339).
    pub created_at: String,
}

/// The kinds of a note on a lead.
const NOTE_KINDS: [&str; 5] = ["note", "call", "email", "meeting", "follow_up"];

/// Schema of a note's kind ([`NOTE_KINDS`]).
fn note_kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&NOTE_KINDS)
}

/// `POST /v1/leads/{id}/notes` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteCreate {
    /// `note`, `call`, `email`, `meeting`, `follow_up`.
    #[schema(schema_with = note_kind_schema)]
    pub kind: String,
    /// Text, 1..=5000.
    #[schema(schema_with = crate::openapi::text_5000)]
    pub content: String,
    /// Due time of a follow-up, RFC 3339.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::time)]
    pub due_at: Option<String>,
}

/// A lead as the API shows it (personal data decrypted).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeadView {
    /// Lead id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// Names, email, phone and address.
    #[serde(flatten)]
    pub person: PersonView,
    /// Artist name.
    pub artist_name: String,
    /// Genres.
    pub genres: Vec<String>,
    /// Label.
    pub label: Option<String>,
    /// Profile URLs.
    pub links: BTreeMap<String, String>,
    /// Budget, minor units.
    pub budget_minor: Option<i64>,
    /// Currency.
    pub currency: String,
    /// Stage.
    pub stage: String,
    /// Priority.
    pub priority: String,
    /// Score.
    pub score: i64,
    /// Probability.
    pub probability: i64,
    /// Why lost.
    pub lost_reason: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Channel.
    pub source: String,
    /// UTM source.
    pub utm_source: Option<String>,
    /// Assignee.
    pub assigned_to: Option<String>,
    /// Assignment changes, oldest first: `{from, to, by, at}`.
    #[schema(value_type = Vec<Object>)]
    pub assignment_history: Vec<serde_json::Value>,
    /// Notes and follow-ups.
    pub notes: Vec<NoteView>,
    /// Contact made by conversion.
    pub contact_id: Option<String>,
    /// Opportunity opened by conversion.
    pub opportunity_id: Option<String>,
    /// Custom field values by key.
    #[schema(value_type = Object)]
    pub custom_fields: serde_json::Value,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// Where lead `id`'s personal data is bound.
pub fn owner(id: ObjectId) -> person::Owner<'static> {
    person::Owner { collection: collections::LEADS, id }
}

/// `l` as the API shows it, personal data decrypted.
pub fn lead_view(pii: &Pii, l: &Lead) -> Result<LeadView, ApiError> {
    Ok(LeadView {
        id: l.id.to_hex(),
        client_id: l.client_id.to_hex(),
        person: person::view(pii, owner(l.id), &l.personal)?,
        artist_name: l.artist.name.clone(),
        genres: l.artist.genres.clone(),
        label: l.artist.label.clone(),
        links: l.artist.links.clone(),
        budget_minor: l.business.budget_minor,
        currency: l.business.currency.clone(),
        stage: l.pipeline.stage.name().into(),
        priority: wire(&l.pipeline.priority),
        score: l.pipeline.score,
        probability: l.pipeline.probability,
        lost_reason: l.pipeline.lost_reason.clone(),
        tags: l.pipeline.tags.clone(),
        source: l.source.channel.clone(),
        utm_source: l.source.utm_source.clone(),
        assigned_to: hex(l.assignment.assigned_to),
        assignment_history: l
            .assignment
            .history
            .iter()
            .map(|h| serde_json::json!({"from": hex(h.from), "to": hex(h.to), "by": hex(h.by), "at": rfc(h.at)}))
            .collect(),
        notes: l
            .notes
            .iter()
            .map(|n| NoteView {
                id: n.id.to_hex(),
                author: hex(n.author),
                kind: n.kind.clone(),
                content: n.content.clone(),
                due_at: n.due_at.map(rfc),
                created_at: rfc(n.created_at),
            })
            .collect(),
        contact_id: l.conversion.as_ref().filter(|c| c.completed_at.is_some()).map(|c| c.contact_id.to_hex()),
        opportunity_id: l.conversion.as_ref().filter(|c| c.completed_at.is_some()).map(|c| c.opportunity_id.to_hex()),
        custom_fields: custom_json(&l.custom_fields),
        created_at: rfc(l.created_at),
        updated_at: rfc(l.updated_at),
    })
}

fn email_taken() -> ApiError {
    ApiError::Conflict { code: "email_taken", message: "the tenant already has a lead with this email".into() }
}

/// Creates a lead. 409 `email_taken` when the tenant has one with this email.
#[utoipa::path(post, path = "/v1/leads", tag = "crm", request_body = LeadCreate,
    responses((status = 201, body = LeadView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_lead(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<LeadCreate>,
) -> Result<(StatusCode, Json<LeadView>), ApiError> {
    p.can(Resource::Leads, Action::Create)?;
    let client = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let stage = match b.stage.as_deref() {
        None => LeadStage::New,
        Some(s) => LeadStage::parse(s)
            .filter(|s| !matches!(s, LeadStage::Won | LeadStage::Lost))
            .ok_or_else(|| ApiError::invalid("stage", "must be an open stage"))?,
    };
    if b.genres.len() > 10 {
        return Err(ApiError::invalid("genres", "at most 10"));
    }
    let mut links = BTreeMap::new();
    for (k, v) in &b.links {
        links.insert(validate::slug(&format!("links.{k}"), k)?, validate::http_url(&format!("links.{k}"), v)?);
    }
    let settings = super::settings::load(&st, client.id).await?;
    let channel = match b.source.as_deref() {
        Some(s) => s,
        None if settings.lead_sources.iter().any(|s| s == "other") => "other",
        None => settings.lead_sources.first().map(String::as_str).unwrap_or("other"),
    };
    if !settings.lead_sources.iter().any(|s| s == channel) {
        return Err(ApiError::invalid(
            "source",
            format!("must be one of the tenant's sources: {}", settings.lead_sources.join(", ")),
        ));
    }
    let custom_fields = super::settings::custom_values(&settings, "lead", &b.custom_fields, &Document::new(), true)?;
    let now = DateTime::now();
    let assigned = match b.assigned_to.as_deref() {
        Some(a) => assignee(&st, client.id, a).await?,
        None => None,
    };
    let id = ObjectId::new();
    let lead = Lead {
        id,
        client_id: client.id,
        personal: person::create(
            pii,
            owner(id),
            PersonInput {
                first_name: Some(&b.first_name),
                last_name: Some(&b.last_name),
                email: Some(&b.email),
                phone: b.phone.as_deref(),
                address: b.address.as_ref(),
            },
        )?,
        artist: ArtistInfo {
            name: validate::text("artist_name", &b.artist_name, 1, 100)?,
            genres: b
                .genres
                .iter()
                .enumerate()
                .map(|(i, g)| validate::text(&format!("genres[{i}]"), g, 1, 40))
                .collect::<Result<_, _>>()?,
            label: validate::opt_text("label", b.label.as_deref(), 100)?,
            links,
        },
        business: BusinessInfo {
            budget_minor: money("budget_minor", b.budget_minor)?,
            currency: currency(b.currency.as_deref())?,
            platforms: Vec::new(),
            goals: Vec::new(),
        },
        pipeline: Pipeline {
            stage,
            priority: priority(b.priority.as_deref())?,
            score: percent("score", b.score, 0)?,
            probability: percent("probability", b.probability, 10)?,
            expected_close_date: None,
            lost_reason: None,
            tags: tags("tags", &b.tags)?,
        },
        source: LeadSource {
            channel: channel.into(),
            utm_source: validate::opt_text("utm_source", b.utm_source.as_deref(), 100)?,
            utm_medium: validate::opt_text("utm_medium", b.utm_medium.as_deref(), 100)?,
            utm_campaign: validate::opt_text("utm_campaign", b.utm_campaign.as_deref(), 100)?,
        },
        assignment: schemas::crm::Assignment {
            assigned_to: assigned,
            assigned_at: assigned.map(|_| now),
            history: assigned
                .map(|to| AssignmentChange { from: None, to: Some(to), by: p.user_id(), at: now })
                .into_iter()
                .collect(),
        },
        notes: Vec::new(),
        conversion: None,
        custom_fields,
        created_by: p.user_id(),
        created_at: now,
        updated_at: now,
    };
    match st.mongo.collection::<Lead>(collections::LEADS).insert_one(&lead).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    }
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: client.id, action: "create", resource: "leads", id: lead.id },
        None,
        Some(&lead),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(lead_view(pii, &lead)?)))
}

pub async fn load_lead(st: &AppState, p: &Principal, id: &str) -> Result<Lead, ApiError> {
    crate::store::load_owned(st, p, collections::LEADS, "lead", id, |d: &Lead| d.client_id).await
}

/// Reads a lead.
#[utoipa::path(get, path = "/v1/leads/{id}", tag = "crm", params(("id" = String, Path, description = "Lead id")),
    responses((status = 200, body = LeadView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_lead(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<LeadView>, ApiError> {
    p.can(Resource::Leads, Action::Read)?;
    let l = load_lead(&st, &p, &id).await?;
    Ok(Json(lead_view(st.pii()?, &l)?))
}

/// Changes a lead; stage transitions are validated, assignments keep their history.
#[utoipa::path(patch, path = "/v1/leads/{id}", tag = "crm", params(("id" = String, Path, description = "Lead id")), request_body = LeadPatch,
    responses((status = 200, body = LeadView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_lead(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<LeadPatch>,
) -> Result<Json<LeadView>, ApiError> {
    p.can(Resource::Leads, Action::Update)?;
    crate::lock::lead(&st, &id, || patch_lead_locked(&st, &p, &meta, &id, b)).await
}

/// [`patch_lead`] under the lead's lock.
async fn patch_lead_locked(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    id: &str,
    b: LeadPatch,
) -> Result<Json<LeadView>, ApiError> {
    let pii = st.pii()?;
    let old = load_lead(st, p, id).await?;
    let mut l = old.clone();
    let now = DateTime::now();
    person::patch(
        pii,
        owner(l.id),
        &mut l.personal,
        PersonInput {
            first_name: b.first_name.as_deref(),
            last_name: b.last_name.as_deref(),
            email: b.email.as_deref(),
            phone: b.phone.as_deref(),
            address: None,
        },
    )?;
    if let Some(v) = &b.artist_name {
        l.artist.name = validate::text("artist_name", v, 1, 100)?;
    }
    if let Some(s) = &b.stage {
        let to = LeadStage::parse(s).ok_or_else(|| ApiError::invalid("stage", "unknown stage"))?;
        if !l.pipeline.stage.can_move_to(to) {
            let hint = if to == LeadStage::Won { "; convert the lead instead" } else { "" };
            return Err(ApiError::invalid(
                "stage",
                format!("cannot move from {} to {}{hint}", l.pipeline.stage.name(), to.name()),
            ));
        }
        l.pipeline.stage = to;
    }
    if let Some(r) = &b.lost_reason {
        l.pipeline.lost_reason = validate::opt_text("lost_reason", Some(r), 500)?;
    }
    if l.pipeline.stage == LeadStage::Lost && l.pipeline.lost_reason.is_none() {
        return Err(ApiError::invalid("lost_reason", "required when the stage is lost"));
    }
    if let Some(v) = &b.priority {
        l.pipeline.priority = priority(Some(v))?;
    }
    if b.score.is_some() {
        l.pipeline.score = percent("score", b.score, 0)?;
    }
    if b.probability.is_some() {
        l.pipeline.probability = percent("probability", b.probability, 0)?;
    }
    if b.budget_minor.is_some() {
        l.business.budget_minor = money("budget_minor", b.budget_minor)?;
    }
    if let Some(t) = &b.tags {
        l.pipeline.tags = tags("tags", t)?;
    }
    if !b.custom_fields.is_empty() {
        let settings = super::settings::load(st, l.client_id).await?;
        l.custom_fields = super::settings::custom_values(&settings, "lead", &b.custom_fields, &l.custom_fields, false)?;
    }
    if let Some(a) = &b.assigned_to {
        let to = assignee(st, l.client_id, a).await?;
        if to != l.assignment.assigned_to {
            l.assignment.history.push(AssignmentChange {
                from: l.assignment.assigned_to,
                to,
                by: p.user_id(),
                at: now,
            });
            l.assignment.assigned_to = to;
            l.assignment.assigned_at = Some(now);
        }
    }
    l.updated_at = now;
    match st
        .mongo
        .collection::<Lead>(collections::LEADS)
        .replace_one(doc! { "_id": l.id, "clientId": l.client_id }, &l)
        .await
    {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    }
    audit::changed(
        st,
        p,
        meta,
        Target { client_id: l.client_id, action: "update", resource: "leads", id: l.id },
        Some(&old),
        Some(&l),
    )
    .await?;
    Ok(Json(lead_view(pii, &l)?))
}

/// Deletes a lead (managers and admins).
#[utoipa::path(delete, path = "/v1/leads/{id}", tag = "crm", params(("id" = String, Path, description = "Lead id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_lead(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.can(Resource::Leads, Action::Delete)?;
    let l = load_lead(&st, &p, &id).await?;
    st.mongo.collection::<Lead>(collections::LEADS).delete_one(doc! { "_id": l.id, "clientId": l.client_id }).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: l.client_id, action: "delete", resource: "leads", id: l.id },
        Some(&l),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a note, call log or follow-up to a lead.
#[utoipa::path(post, path = "/v1/leads/{id}/notes", tag = "crm", params(("id" = String, Path, description = "Lead id")), request_body = NoteCreate,
    responses((status = 201, body = LeadView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_note(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<NoteCreate>,
) -> Result<(StatusCode, Json<LeadView>), ApiError> {
    p.can(Resource::Leads, Action::Update)?;
    crate::lock::lead(&st, &id, || add_note_locked(&st, &p, &meta, &id, b)).await
}

/// [`add_note`] under the lead's lock.
async fn add_note_locked(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    id: &str,
    b: NoteCreate,
) -> Result<(StatusCode, Json<LeadView>), ApiError> {
    let old = load_lead(st, p, id).await?;
    validate::one_of("kind", &b.kind, &NOTE_KINDS)?;
    let due_at = b.due_at.as_deref().map(|d| validate::instant("due_at", d)).transpose()?;
    let now = DateTime::now();
    let note = Note {
        id: ObjectId::new(),
        author: p.user_id(),
        kind: b.kind.clone(),
        content: validate::text("content", &b.content, 1, 5000)?,
        due_at,
        created_at: now,
    };
    let mut l = old.clone();
    l.notes.push(note);
    l.updated_at = now;
    st.mongo
        .collection::<Lead>(collections::LEADS)
        .replace_one(doc! { "_id": l.id, "clientId": l.client_id }, &l)
        .await?;
    audit::changed(
        st,
        p,
        meta,
        Target { client_id: l.client_id, action: "add_note", resource: "leads", id: l.id },
        Some(&old),
        Some(&l),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(lead_view(st.pii()?, &l)?)))
}

/// `GET /v1/leads` filters, sorting and paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeadQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Stage.
    #[param(schema_with = super::fields::lead_stage_schema)]
    pub stage: Option<String>,
    /// Priority.
    #[param(schema_with = super::fields::priority_schema)]
    pub priority: Option<String>,
    /// Assignee user id.
    pub assigned_to: Option<String>,
    /// Source channel.
    #[param(schema_with = crate::openapi::text_30)]
    pub source: Option<String>,
    /// Tag.
    #[param(schema_with = crate::openapi::text_30)]
    pub tag: Option<String>,
    /// Text in first, last or artist name (case-insensitive), 1..=100 characters.
    #[param(schema_with = crate::openapi::text_100)]
    pub q: Option<String>,
    /// `created` (newest first, default) or `score` (highest first).
    #[param(schema_with = sort_schema)]
    pub sort: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (the id of its last lead).
    pub cursor: Option<String>,
}

/// How leads can be listed: newest first, or by score.
const SORTS: [&str; 2] = ["created", "score"];

/// Schema of [`LeadQuery::sort`].
fn sort_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&SORTS)
}

/// A page of leads.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeadPage {
    /// Leads.
    pub items: Vec<LeadView>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// `s` with every regex metacharacter escaped, so user text matches literally.
pub fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Lists leads with filters, sorted, by pages.
#[utoipa::path(get, path = "/v1/leads", tag = "crm", params(LeadQuery),
    responses((status = 200, body = LeadPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_leads(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<LeadQuery>,
) -> Result<Json<LeadPage>, ApiError> {
    p.can(Resource::Leads, Action::Read)?;
    let pii = st.pii()?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    let mut f = doc! { "clientId": client.id };
    if let Some(s) = &q.stage {
        f.insert(
            "pipeline.stage",
            LeadStage::parse(s).ok_or_else(|| ApiError::invalid("stage", "unknown stage"))?.name(),
        );
    }
    if let Some(v) = &q.priority {
        f.insert("pipeline.priority", wire(&priority(Some(v))?));
    }
    if let Some(a) = &q.assigned_to {
        f.insert("assignment.assignedTo", validate::object_id("assigned_to", a)?);
    }
    if let Some(s) = &q.source {
        f.insert("source.channel", validate::text("source", s, 1, 30)?);
    }
    if let Some(t) = &q.tag {
        f.insert("pipeline.tags", validate::text("tag", t, 1, 30)?);
    }
    let mut and: Vec<Document> = Vec::new();
    if let Some(text) = &q.q {
        let re = regex_literal(&validate::text("q", text, 1, 100)?);
        and.push(doc! { "$or": [
            { "personal.firstName": { "$regex": &re, "$options": "i" } },
            { "personal.lastName": { "$regex": &re, "$options": "i" } },
            { "artist.name": { "$regex": &re, "$options": "i" } },
        ] });
    }
    let by_score = validate::one_of("sort", q.sort.as_deref().unwrap_or("created"), &SORTS)? == "score";
    if let Some(c) = &q.cursor {
        let id = validate::object_id("cursor", c)?;
        if by_score {
            // The page after lead `id`: lower scores, or its score and lower ids.
            let after = st
                .mongo
                .collection::<Lead>(collections::LEADS)
                .find_one(doc! { "_id": id, "clientId": client.id })
                .await?
                .ok_or(ApiError::NotFound("lead"))?;
            let score = after.pipeline.score;
            and.push(doc! { "$or": [ { "pipeline.score": { "$lt": score } }, { "pipeline.score": score, "_id": { "$lt": id } } ] });
        } else {
            f.insert("_id", doc! { "$lt": id });
        }
    }
    if !and.is_empty() {
        f.insert("$and", and);
    }
    let sort = if by_score {
        doc! { "pipeline.score": -1, "_id": -1 }
    } else {
        doc! { "_id": -1 }
    };
    let mut leads: Vec<Lead> = st
        .mongo
        .collection::<Lead>(collections::LEADS)
        .find(f)
        .sort(sort)
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    let next_cursor = if leads.len() as i64 > limit {
        leads.truncate(limit as usize);
        leads.last().map(|l| l.id.to_hex())
    } else {
        None
    };
    Ok(Json(LeadPage { items: leads.iter().map(|l| lead_view(pii, l)).collect::<Result<_, _>>()?, next_cursor }))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::phone;

    #[test]
    fn user_text_never_becomes_a_pattern_and_fields_validate() {
        assert_eq!(regex_literal("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(regex_literal("^$"), "\\^\\$");
        assert_eq!(phone("phone", "+33 6 12-34-56-78").unwrap(), "+33612345678");
        assert!(phone("phone", "0612345678").is_err());
        assert!(currency(Some("eur")).is_err() && currency(None).unwrap() == "EUR");
        assert!(percent("score", Some(101), 0).is_err());
        assert!(money("budget_minor", Some(-1)).is_err());
    }
}
