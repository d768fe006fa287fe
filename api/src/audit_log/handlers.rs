//! The `/v1/audit` handler: query, filters and the record view.

use axum::extract::State;
use axum::{Extension, Json};
use bson::doc;
use futures::TryStreamExt;
use schemas::crm::AuditRecord;
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate;

/// `GET /v1/audit` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Resource (`leads`, `smartlinks`, `users`, `auth`, ...).
    pub resource: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Action (`create`, `update`, `delete`, `login`, ...).
    pub action: Option<String>,
    /// Actor (user or key id).
    pub actor_id: Option<String>,
    /// Only successes (`true`) or failures (`false`).
    pub success: Option<bool>,
    /// From, RFC 3339, inclusive.
    pub from: Option<String>,
    /// To, RFC 3339, exclusive.
    pub to: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One change in a record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// Dotted field path.
    pub field: String,
    /// Old value: any JSON (`"[redacted]"` for secrets).
    pub old: serde_json::Value,
    /// New value: any JSON.
    pub new: serde_json::Value,
}

/// One audit record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Record id.
    pub id: String,
    /// `operator`, `api_key`, `user` or `anonymous`.
    pub actor_kind: String,
    /// Key or user id.
    pub actor_id: Option<String>,
    /// Role (or key scopes) at the time.
    pub actor_role: String,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Changed fields.
    pub changes: Vec<ChangeView>,
    /// Client IP.
    pub ip: String,
    /// User agent.
    pub user_agent: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Success.
    pub success: bool,
    /// Error code of a failure.
    pub error_code: Option<String>,
}

/// A page of records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Records, newest first.
    pub items: Vec<AuditView>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

fn view(r: AuditRecord) -> AuditView {
    let json = |b: bson::Bson| b.into_relaxed_extjson();
    AuditView {
        id: r.id.to_hex(),
        actor_kind: r.actor.kind,
        actor_id: r.actor.id.map(|i| i.to_hex()),
        actor_role: r.actor.role,
        action: r.action,
        resource: r.resource,
        resource_id: r.resource_id,
        changes: r
            .changes
            .into_iter()
            .map(|c| ChangeView { field: c.field, old: json(c.old), new: json(c.new) })
            .collect(),
        ip: r.ip,
        user_agent: r.user_agent,
        at: r.at.try_to_rfc3339_string().unwrap_or_default(),
        success: r.success,
        error_code: r.error_code,
    }
}

/// Reads the audit log of a tenant.
#[utoipa::path(get, path = "/v1/audit", tag = "users", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    p.can(Resource::Audit, Action::Read)?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    let mut f = doc! { "clientId": client.id };
    for (field, key, v) in [
        ("resource", "resource", &q.resource),
        ("resource_id", "resourceId", &q.resource_id),
        ("action", "action", &q.action),
    ] {
        if let Some(v) = v {
            f.insert(key, validate::text(field, v, 1, 100)?);
        }
    }
    if let Some(a) = &q.actor_id {
        f.insert("actor.id", validate::object_id("actor_id", a)?);
    }
    if let Some(s) = q.success {
        f.insert("success", s);
    }
    let mut at = bson::Document::new();
    if let Some(v) = &q.from {
        at.insert("$gte", bson::DateTime::from_millis(i64::from(validate::rfc3339("from", v)?) * 1000));
    }
    if let Some(v) = &q.to {
        at.insert("$lt", bson::DateTime::from_millis(i64::from(validate::rfc3339("to", v)?) * 1000));
    }
    if !at.is_empty() {
        f.insert("at", at);
    }
    if let Some(c) = &q.cursor {
        f.insert("_id", doc! { "$lt": validate::object_id("cursor", c)? });
    }
    let mut rows: Vec<AuditRecord> = st
        .mongo
        .collection::<AuditRecord>(collections::AUDIT_LOGS)
        .find(f)
        .sort(doc! { "_id": -1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_hex())
    } else {
        None
    };
    Ok(Json(AuditPage { items: rows.into_iter().map(view).collect(), next_cursor }))
}
