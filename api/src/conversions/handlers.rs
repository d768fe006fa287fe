//! The destination routes: create, list, read, change, delete, delivery log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use crypto::Field;
use futures::TryStreamExt;
use schemas::conversions::{DeliveryLog, Destination, Platform, CREDENTIAL_FIELD};
use schemas::event::EventKind;
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc};

/// Most destinations per tenant.
pub const MAX_DESTINATIONS: u64 = 20;

/// A destination as `POST` takes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationInput {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// `meta`, `ga4` or `tiktok`.
    #[schema(schema_with = platform_schema)]
    pub platform: String,
    /// A name for people, 1..=100 characters.
    #[schema(schema_with = crate::openapi::text_100)]
    pub name: String,
    /// The platform's account id: Meta pixel id (digits), GA4 measurement
    /// id (`G-…`), TikTok pixel code (capitals and digits).
    #[schema(schema_with = crate::openapi::destination_account)]
    pub pixel_id: String,
    /// The credential: Meta access token, GA4 API secret, TikTok access
    /// token (8..=512 printable ASCII characters). Stored encrypted, never returned.
    #[schema(schema_with = crate::openapi::destination_credential)]
    pub credential: String,
    /// Event kinds sent: `view`, `click`. Default both.
    #[serde(default)]
    #[schema(schema_with = events_schema)]
    pub events: Option<Vec<String>>,
    /// The platform's test code (Meta, TikTok): events show in its test tool only.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::test_event_code)]
    pub test_event_code: Option<String>,
    /// Sends when true. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change of a destination: each field given replaces the stored one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::text_100)]
    pub name: Option<String>,
    /// New account id (the platform does not change).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::destination_account)]
    pub pixel_id: Option<String>,
    /// New credential (replaces the stored one).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::destination_credential)]
    pub credential: Option<String>,
    /// New event kinds.
    #[serde(default)]
    #[schema(schema_with = events_schema)]
    pub events: Option<Vec<String>>,
    /// New test code; `""` removes it.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::test_event_code)]
    pub test_event_code: Option<String>,
    /// Pause (false) or resume (true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A destination as the API shows it (never its credential).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DestinationView {
    /// Destination id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// `meta`, `ga4` or `tiktok`.
    pub platform: String,
    /// Name.
    pub name: String,
    /// The platform's account id.
    pub pixel_id: String,
    /// Always true: a credential is stored (it is never shown).
    pub credential_set: bool,
    /// Event kinds sent.
    pub events: Vec<String>,
    /// The platform's test code, if any.
    pub test_event_code: Option<String>,
    /// Sending or paused.
    pub enabled: bool,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

fn view(d: &Destination) -> DestinationView {
    DestinationView {
        id: d.id.to_hex(),
        client_id: d.client_id.to_hex(),
        platform: d.platform.as_str().into(),
        name: d.name.clone(),
        pixel_id: d.pixel_id.clone(),
        credential_set: !d.credential_enc.is_empty(),
        events: d.events.iter().map(|k| k.as_str().to_string()).collect(),
        test_event_code: d.test_event_code.clone(),
        enabled: d.enabled,
        created_at: rfc(d.created_at),
        updated_at: rfc(d.updated_at),
    }
}

fn platform_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&Platform::ALL.map(Platform::as_str))
}

fn events_schema() -> utoipa::openapi::schema::Array {
    let kind = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["view", "click"]));
    utoipa::openapi::schema::ArrayBuilder::new().items(kind).min_items(Some(1)).unique_items(true).build()
}

/// The account id of `platform`, checked (Meta digits, GA4 `G-`, TikTok capitals and digits).
fn account(platform: Platform, v: &str) -> Result<String, ApiError> {
    let (prefix, digits) = match platform {
        Platform::Meta => ("", true),
        Platform::Ga4 => ("G-", false),
        Platform::Tiktok => ("", false),
    };
    validate::tag_id("pixel_id", Some(v), prefix, digits)?.ok_or_else(|| ApiError::invalid("pixel_id", "required"))
}

fn credential(v: &str) -> Result<&str, ApiError> {
    if (8..=512).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(v)
    } else {
        Err(ApiError::invalid("credential", "must be 8 to 512 printable ASCII characters without spaces"))
    }
}

fn test_code(v: &str) -> Result<Option<String>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(Some(v.to_string()))
    } else {
        Err(ApiError::invalid("test_event_code", "must be at most 64 letters, digits, '_' or '-'"))
    }
}

fn events(v: &[String]) -> Result<Vec<EventKind>, ApiError> {
    let mut out = Vec::new();
    for (i, k) in v.iter().enumerate() {
        let field = format!("events[{i}]");
        let k: EventKind = validate::parse_enum(&field, k, "must be view or click")?;
        if k == EventKind::Engagement {
            return Err(ApiError::invalid(field, "must be view or click"));
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid("events", "must name at least one kind"));
    }
    Ok(out)
}

fn credential_field(id: ObjectId) -> Field<'static> {
    Field::new(collections::CONVERSION_DESTINATIONS, id, CREDENTIAL_FIELD)
}

async fn load(st: &AppState, p: &Principal, id: &str) -> Result<Destination, ApiError> {
    crate::store::load_owned(st, p, collections::CONVERSION_DESTINATIONS, "destination", id, |d: &Destination| {
        d.client_id
    })
    .await
}

/// Adds a destination; its credential is encrypted and never shown again.
/// A tenant has at most 20 (409 `destination_limit`).
#[utoipa::path(post, path = "/v1/destinations", tag = "destinations", request_body = DestinationInput,
    responses((status = 201, body = DestinationView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<DestinationInput>,
) -> Result<(StatusCode, Json<DestinationView>), ApiError> {
    p.can(Resource::Destinations, Action::Create)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let platform: Platform = validate::parse_enum("platform", &b.platform, "must be meta, ga4 or tiktok")?;
    let name = validate::text("name", &b.name, 1, 100)?;
    let pixel_id = account(platform, &b.pixel_id)?;
    let secret = credential(&b.credential)?;
    let kinds = match &b.events {
        Some(v) => events(v)?,
        None => vec![EventKind::View, EventKind::Click],
    };
    let test_event_code = test_code(b.test_event_code.as_deref().unwrap_or(""))?;
    let coll = st.mongo.collection::<Destination>(collections::CONVERSION_DESTINATIONS);
    if coll.count_documents(doc! { "clientId": tenant.id }).await? >= MAX_DESTINATIONS {
        return Err(ApiError::Conflict {
            code: "destination_limit",
            message: format!("a tenant has at most {MAX_DESTINATIONS} destinations"),
        });
    }
    let id = ObjectId::new();
    let now = DateTime::now();
    let d = Destination {
        id,
        client_id: tenant.id,
        platform,
        name,
        pixel_id,
        credential_enc: st.pii()?.encrypt(secret, credential_field(id))?,
        events: kinds,
        test_event_code,
        enabled: b.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    coll.insert_one(&d).await?;
    let target = Target { client_id: tenant.id, action: "create", resource: "destinations", id };
    audit::changed(&st, &p, &meta, target, None, Some(&d)).await?;
    Ok((StatusCode::CREATED, Json(view(&d))))
}

/// `GET /v1/destinations` filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
}

/// The tenant's destinations, newest first.
#[utoipa::path(get, path = "/v1/destinations", tag = "destinations", params(ListQuery),
    responses((status = 200, body = Vec<DestinationView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<DestinationView>>, ApiError> {
    p.can(Resource::Destinations, Action::Read)?;
    let tenant = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let found: Vec<Destination> = st
        .mongo
        .collection::<Destination>(collections::CONVERSION_DESTINATIONS)
        .find(doc! { "clientId": tenant.id })
        .sort(doc! { "_id": -1 })
        .limit(MAX_DESTINATIONS as i64)
        .await?
        .try_collect()
        .await?;
    Ok(Json(found.iter().map(view).collect()))
}

/// One destination.
#[utoipa::path(get, path = "/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, body = DestinationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    p.can(Resource::Destinations, Action::Read)?;
    Ok(Json(view(&load(&st, &p, &id).await?)))
}

/// Changes a destination (name, account id, credential, events, test code,
/// paused or not). The forwarder applies it within its refresh period.
#[utoipa::path(patch, path = "/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    request_body = DestinationPatch,
    responses((status = 200, body = DestinationView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<DestinationPatch>,
) -> Result<Json<DestinationView>, ApiError> {
    p.can(Resource::Destinations, Action::Update)?;
    let old = load(&st, &p, &id).await?;
    let mut d = old.clone();
    if let Some(n) = &b.name {
        d.name = validate::text("name", n, 1, 100)?;
    }
    if let Some(a) = &b.pixel_id {
        d.pixel_id = account(d.platform, a)?;
    }
    if let Some(c) = &b.credential {
        d.credential_enc = st.pii()?.encrypt(credential(c)?, credential_field(d.id))?;
    }
    if let Some(e) = &b.events {
        d.events = events(e)?;
    }
    if let Some(t) = &b.test_event_code {
        d.test_event_code = test_code(t)?;
    }
    if let Some(e) = b.enabled {
        d.enabled = e;
    }
    d.updated_at = DateTime::now();
    st.mongo
        .collection::<Destination>(collections::CONVERSION_DESTINATIONS)
        .replace_one(doc! { "_id": d.id, "clientId": d.client_id }, &d)
        .await?;
    let target = Target { client_id: d.client_id, action: "update", resource: "destinations", id: d.id };
    audit::changed(&st, &p, &meta, target, Some(&old), Some(&d)).await?;
    Ok(Json(view(&d)))
}

/// Deletes a destination (its delivery log stays until it ages out).
#[utoipa::path(delete, path = "/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.can(Resource::Destinations, Action::Delete)?;
    let old = load(&st, &p, &id).await?;
    let target = Target { client_id: old.client_id, action: "delete", resource: "destinations", id: old.id };
    crate::store::delete_owned(&st, &p, &meta, collections::CONVERSION_DESTINATIONS, target, &old).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of a destination's delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this outcome: `delivered`, `rejected`, `abandoned`.
    #[param(schema_with = outcome_schema)]
    pub outcome: Option<String>,
    /// Newest first, at most this many, 1..=200. Default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn outcome_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&["delivered", "rejected", "abandoned"])
}

/// One request to a destination, after its last attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversionDeliveryView {
    /// Log entry id.
    pub id: String,
    /// `delivered`, `rejected` (refused by the platform, dead-lettered) or
    /// `abandoned` (still failing after the retries, dead-lettered).
    pub outcome: String,
    /// The last HTTP status; null when no answer came.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// Events carried.
    pub events: usize,
    /// Their ids (the pixels' event ids).
    pub event_ids: Vec<String>,
    /// The platform's last answer (at most 2 KiB).
    pub answer: Option<String>,
    /// When the last attempt ended, RFC 3339.
    pub at: String,
}

/// A destination's delivery log, newest first (kept 30 days).
#[utoipa::path(get, path = "/v1/destinations/{id}/deliveries", tag = "destinations",
    params(("id" = String, Path, description = "Destination id"), DeliveriesQuery),
    responses((status = 200, body = Vec<ConversionDeliveryView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Vec<ConversionDeliveryView>>, ApiError> {
    p.can(Resource::Destinations, Action::Read)?;
    let d = load(&st, &p, &id).await?;
    let limit = validate::log_limit(q.limit)?;
    let mut f = doc! { "clientId": d.client_id, "destinationId": d.id };
    if let Some(o) = &q.outcome {
        let o: schemas::conversions::DeliveryOutcome =
            validate::parse_enum("outcome", o, "must be delivered, rejected or abandoned")?;
        f.insert("outcome", o.as_str());
    }
    let found: Vec<DeliveryLog> = st
        .mongo
        .collection::<DeliveryLog>(collections::CONVERSION_DELIVERIES)
        .find(f)
        .sort(doc! { "at": -1, "_id": -1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(Json(
        found
            .into_iter()
            .map(|l| ConversionDeliveryView {
                id: l.id.to_hex(),
                outcome: l.outcome.as_str().into(),
                status: l.status,
                attempts: l.attempts,
                events: l.event_ids.len(),
                event_ids: l.event_ids,
                answer: l.answer,
                at: rfc(l.at),
            })
            .collect(),
    ))
}
