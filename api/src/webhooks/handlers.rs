//! The webhook routes: endpoints (create, list, read, change, delete),
//! their delivery log and manual replay.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::mongo::collections;
use schemas::webhooks::{DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dispatch::secret_field;
use super::signing::new_secret;
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc};

/// Most endpoints per tenant.
pub const MAX_ENDPOINTS: u64 = 10;

/// An endpoint as `POST` takes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Where messages are POSTed (https).
    #[schema(schema_with = crate::openapi::https_url)]
    pub url: String,
    /// Events sent: `link.created`, `link.updated`, `link.archived`,
    /// `alert.firing`, `alert.resolved`, `digest.daily`, `clicks.batch`.
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
    /// A note for people, at most 200 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_200)]
    pub description: Option<String>,
    /// Receives messages when true. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change of an endpoint: each field given replaces the stored one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// New URL (https).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::https_url)]
    pub url: Option<String>,
    /// New events.
    #[serde(default)]
    #[schema(schema_with = events_schema)]
    pub events: Option<Vec<String>>,
    /// New note.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_200)]
    pub description: Option<String>,
    /// Pause (false) or resume (true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new signing secret, answered once in `secret`.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// An endpoint as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// Endpoint id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// URL.
    pub url: String,
    /// Events sent.
    pub events: Vec<String>,
    /// Note.
    pub description: String,
    /// Receiving or paused.
    pub enabled: bool,
    /// The signing secret (`whsec_…`, Standard Webhooks): only in the
    /// answer that created or rotated it; never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

fn view(e: &WebhookEndpoint, secret: Option<String>) -> EndpointView {
    EndpointView {
        id: e.id.to_hex(),
        client_id: e.client_id.to_hex(),
        url: e.url.clone(),
        events: e.events.iter().map(|k| k.as_str().to_string()).collect(),
        description: e.description.clone(),
        enabled: e.enabled,
        secret,
        created_at: rfc(e.created_at),
        updated_at: rfc(e.updated_at),
    }
}

fn events_schema() -> utoipa::openapi::schema::Array {
    let name = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(WebhookEvent::ALL.iter().map(|e| e.as_str())));
    utoipa::openapi::schema::ArrayBuilder::new().items(name).min_items(Some(1)).unique_items(true).build()
}

fn events(v: &[String]) -> Result<Vec<WebhookEvent>, ApiError> {
    let mut out = Vec::new();
    for (i, name) in v.iter().enumerate() {
        let e = WebhookEvent::parse(name).ok_or_else(|| {
            ApiError::invalid(
                format!("events[{i}]"),
                "must be link.created, link.updated, link.archived, alert.firing, alert.resolved, digest.daily or clicks.batch",
            )
        })?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid("events", "must name at least one event"));
    }
    Ok(out)
}

fn url(st: &AppState, v: &str) -> Result<String, ApiError> {
    let u = validate::opt_http_url("url", Some(v))?.ok_or_else(|| ApiError::invalid("url", "required"))?;
    if !u.starts_with("https://") && !st.cfg.alerts_allow_http_webhooks {
        return Err(ApiError::invalid("url", "must be an https URL"));
    }
    Ok(u)
}

async fn load(st: &AppState, p: &Principal, id: &str) -> Result<WebhookEndpoint, ApiError> {
    crate::store::load_owned(st, p, collections::WEBHOOK_ENDPOINTS, "webhook", id, |e: &WebhookEndpoint| e.client_id)
        .await
}

/// Registers an endpoint; the answer holds its signing secret, shown once.
/// A tenant has at most 10 (409 `webhook_limit`).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = EndpointInput,
    responses((status = 201, body = EndpointView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<EndpointInput>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    p.can(Resource::Webhooks, Action::Create)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let url = url(&st, &b.url)?;
    let kinds = events(&b.events)?;
    let description = validate::opt_text("description", b.description.as_deref(), 200)?.unwrap_or_default();
    let coll = st.mongo.collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS);
    if coll.count_documents(doc! { "clientId": tenant.id }).await? >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict {
            code: "webhook_limit",
            message: format!("a tenant has at most {MAX_ENDPOINTS} webhook endpoints"),
        });
    }
    let id = ObjectId::new();
    let secret = new_secret()?;
    let now = DateTime::now();
    let e = WebhookEndpoint {
        id,
        client_id: tenant.id,
        url,
        secret_enc: st.pii()?.encrypt(&secret, secret_field(id))?,
        events: kinds,
        description,
        enabled: b.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    coll.insert_one(&e).await?;
    let target = Target { client_id: tenant.id, action: "create", resource: "webhooks", id };
    audit::changed(&st, &p, &meta, target, None, Some(&e)).await?;
    Ok((StatusCode::CREATED, Json(view(&e, Some(secret)))))
}

/// `GET /v1/webhooks` filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
}

/// The tenant's endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(ListQuery),
    responses((status = 200, body = Vec<EndpointView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    p.can(Resource::Webhooks, Action::Read)?;
    let tenant = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let found: Vec<WebhookEndpoint> = st
        .mongo
        .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
        .find(doc! { "clientId": tenant.id })
        .sort(doc! { "_id": -1 })
        .limit(MAX_ENDPOINTS as i64)
        .await?
        .try_collect()
        .await?;
    Ok(Json(found.iter().map(|e| view(e, None)).collect()))
}

/// One endpoint (never its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    p.can(Resource::Webhooks, Action::Read)?;
    Ok(Json(view(&load(&st, &p, &id).await?, None)))
}

/// Changes an endpoint (URL, events, note, paused or not); `rotate_secret`
/// makes a new signing secret, answered once.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id")),
    request_body = EndpointPatch,
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<EndpointPatch>,
) -> Result<Json<EndpointView>, ApiError> {
    p.can(Resource::Webhooks, Action::Update)?;
    let old = load(&st, &p, &id).await?;
    let mut e = old.clone();
    if let Some(u) = &b.url {
        e.url = url(&st, u)?;
    }
    if let Some(v) = &b.events {
        e.events = events(v)?;
    }
    if let Some(d) = &b.description {
        e.description = validate::opt_text("description", Some(d), 200)?.unwrap_or_default();
    }
    if let Some(en) = b.enabled {
        e.enabled = en;
    }
    let mut secret = None;
    if b.rotate_secret {
        let s = new_secret()?;
        e.secret_enc = st.pii()?.encrypt(&s, secret_field(e.id))?;
        secret = Some(s);
    }
    e.updated_at = DateTime::now();
    st.mongo
        .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
        .replace_one(doc! { "_id": e.id, "clientId": e.client_id }, &e)
        .await?;
    let target = Target { client_id: e.client_id, action: "update", resource: "webhooks", id: e.id };
    audit::changed(&st, &p, &meta, target, Some(&old), Some(&e)).await?;
    Ok(Json(view(&e, secret)))
}

/// Deletes an endpoint; its pending messages fail at their next attempt.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.can(Resource::Webhooks, Action::Delete)?;
    let old = load(&st, &p, &id).await?;
    let target = Target { client_id: old.client_id, action: "delete", resource: "webhooks", id: old.id };
    crate::store::delete_owned(&st, &p, &meta, collections::WEBHOOK_ENDPOINTS, target, &old).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of an endpoint's delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this status: `pending`, `delivered`, `failed`.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Newest first, at most this many, 1..=200. Default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&["pending", "delivered", "failed"])
}

/// One message in the delivery log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryView {
    /// Message id: the `webhook-id` header of every attempt and replay.
    pub id: String,
    /// The event (`link.created`, ...).
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status, if an answer came.
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The JSON body sent (`{"type", "timestamp", "data"}`).
    pub payload: String,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Accepted by the endpoint, RFC 3339.
    pub delivered_at: Option<String>,
    /// Next attempt of a pending one, RFC 3339.
    pub next_attempt_at: Option<String>,
}

fn delivery_view(d: WebhookDelivery) -> WebhookDeliveryView {
    WebhookDeliveryView {
        id: d.id.to_hex(),
        event: d.event.as_str().into(),
        status: validate::wire(&d.status),
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error,
        payload: d.payload,
        created_at: rfc(d.created_at),
        delivered_at: d.delivered_at.map(rfc),
        next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| rfc(d.next_attempt_at)),
    }
}

/// An endpoint's messages and their attempts, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), DeliveriesQuery),
    responses((status = 200, body = Vec<WebhookDeliveryView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Vec<WebhookDeliveryView>>, ApiError> {
    p.can(Resource::Webhooks, Action::Read)?;
    let e = load(&st, &p, &id).await?;
    let limit = validate::log_limit(q.limit)?;
    let mut f = doc! { "clientId": e.client_id, "endpointId": e.id };
    if let Some(s) = &q.status {
        let s: DeliveryStatus = validate::parse_enum("status", s, "must be pending, delivered or failed")?;
        f.insert("status", validate::wire(&s));
    }
    let found: Vec<WebhookDelivery> = st
        .mongo
        .collection::<WebhookDelivery>(collections::WEBHOOK_DELIVERIES)
        .find(f)
        .sort(doc! { "createdAt": -1, "_id": -1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(Json(found.into_iter().map(delivery_view).collect()))
}

/// Sends a message again (delivered or failed), with its id and body:
/// pending again, due at once, its attempts counted from zero.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), ("delivery_id" = String, Path, description = "Message id")),
    responses((status = 202, body = WebhookDeliveryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replay(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<WebhookDeliveryView>), ApiError> {
    p.can(Resource::Webhooks, Action::Update)?;
    let e = load(&st, &p, &id).await?;
    let did = validate::object_id("delivery_id", &delivery_id).map_err(|_| ApiError::NotFound("webhook delivery"))?;
    let coll = st.mongo.collection::<WebhookDelivery>(collections::WEBHOOK_DELIVERIES);
    let filter = doc! { "_id": did, "clientId": e.client_id, "endpointId": e.id };
    coll.find_one(filter.clone()).await?.ok_or(ApiError::NotFound("webhook delivery"))?;
    let now = DateTime::now();
    coll.update_one(
        filter.clone(),
        doc! { "$set": { "status": "pending", "attempts": 0, "nextAttemptAt": now, "lastError": null } },
    )
    .await?;
    let d = coll.find_one(filter).await?.ok_or(ApiError::NotFound("webhook delivery"))?;
    let target = Target { client_id: e.client_id, action: "replay", resource: "webhook_deliveries", id: did };
    audit::changed::<WebhookDelivery>(&st, &p, &meta, target, None, None).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(d))))
}
