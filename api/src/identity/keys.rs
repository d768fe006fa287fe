//! API keys of a tenant (`/v1/clients/{id}/api-keys`): created by the
//! operator and shown once (stored as SHA-256), listed without the key,
//! revoked (refused from the next request on).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::mongo::{collections, ApiKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, Entry, Meta, Target};
use crate::auth::{generate_key, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Path};
use crate::rbac;
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc};

/// `POST /v1/clients/{id}/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// Label, 1..=100 characters.
    pub name: String,
    /// Scopes: `links:read`, `links:write`, `analytics:read`, `crm:read`, `crm:write`; at least one.
    pub scopes: Vec<String>,
}

/// A key as listed (never the key itself).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// Key id.
    pub id: String,
    /// Label.
    pub name: String,
    /// First 12 characters of the key.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Revocation time, RFC 3339 UTC, if revoked.
    pub revoked_at: Option<String>,
}

/// A key just created: the only time `key` is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The bearer key; store it now, it cannot be shown again.
    pub key: String,
    /// Its listing.
    #[serde(flatten)]
    pub info: ApiKeyView,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        ApiKeyView {
            id: k.id.to_hex(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            created_at: rfc(k.created_at),
            revoked_at: k.revoked_at.map(rfc),
        }
    }
}

/// Creates a tenant key (operator only); the answer holds the key, shown once.
#[utoipa::path(post, path = "/v1/clients/{id}/api-keys", tag = "tenants", params(("id" = String, Path, description = "Tenant id")),
    request_body = ApiKeyCreate,
    responses((status = 201, body = ApiKeyCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_key(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(body): Body<ApiKeyCreate>,
) -> Result<(StatusCode, Json<ApiKeyCreated>), ApiError> {
    p.require_operator()?;
    let client_id = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("client"))?;
    Tenant::load(&st, &p, client_id).await?;
    let name = validate::text("name", &body.name, 1, 100)?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "at least one scope"));
    }
    let mut scopes = Vec::new();
    for (i, s) in body.scopes.iter().enumerate() {
        if !rbac::SCOPES.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                format!("scopes[{i}]"),
                format!("must be one of {}", rbac::SCOPES.join(", ")),
            ));
        }
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    let (key, prefix, key_hash) = generate_key()?;
    let doc = ApiKey {
        id: ObjectId::new(),
        client_id,
        name,
        prefix,
        key_hash,
        scopes,
        created_at: DateTime::now(),
        revoked_at: None,
    };
    st.mongo.collection::<ApiKey>(collections::API_KEYS).insert_one(&doc).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id, action: "create", resource: "api_keys", id: doc.id },
        None,
        Some(&doc),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ApiKeyCreated { key, info: ApiKeyView::from(&doc) })))
}

/// Lists a tenant's keys (operator only), newest first, without the keys.
#[utoipa::path(get, path = "/v1/clients/{id}/api-keys", tag = "tenants", params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Vec<ApiKeyView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_keys(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    p.require_operator()?;
    let client_id = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("client"))?;
    Tenant::load(&st, &p, client_id).await?;
    let keys: Vec<ApiKey> = st
        .mongo
        .collection::<ApiKey>(collections::API_KEYS)
        .find(doc! { "clientId": client_id })
        .sort(doc! { "_id": -1 })
        .await?
        .try_collect()
        .await?;
    Ok(Json(keys.iter().map(ApiKeyView::from).collect()))
}

/// Revokes a key (operator only); it is refused from the next request on.
#[utoipa::path(delete, path = "/v1/clients/{id}/api-keys/{key_id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_key(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require_operator()?;
    let client_id = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("client"))?;
    let key_id = validate::object_id("key_id", &key_id).map_err(|_| ApiError::NotFound("api key"))?;
    let r = st
        .mongo
        .collection::<ApiKey>(collections::API_KEYS)
        .update_one(doc! { "_id": key_id, "clientId": client_id }, doc! { "$set": { "revokedAt": DateTime::now() } })
        .await?;
    if r.matched_count == 0 {
        return Err(ApiError::NotFound("api key"));
    }
    let entry = Entry {
        client_id: Some(client_id),
        action: "revoke",
        resource: "api_keys",
        resource_id: Some(key_id.to_hex()),
        changes: Vec::new(),
        outcome: Ok(()),
    };
    audit::record(&st, Some(&p), &meta, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}
