//! The tenant a request acts on, resolved once for every route: the
//! [`Tenant`] extractor reads `?client_id=` (documented as [`ClientScope`]),
//! and [`Tenant::resolve`] does the same for a `client_id` from a body.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bson::{doc, oid::ObjectId};
use schemas::mongo::{collections, Client};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;
use crate::validate;

/// `?client_id=`: the tenant a tenant-scoped route acts on.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientScope {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
}

/// The tenant (`clients` document) a request acts on: `client_id` when
/// given (404 when the caller may not see it, 400 when it is not an id),
/// else the key's or session's own; the operator must name one (400).
///
/// As an extractor it reads `?client_id=` and needs the [`Principal`] the
/// auth middleware put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Tenant(pub Client);

impl Tenant {
    /// The tenant named by `client_id` (from a body or query), or the
    /// caller's own; errors as described on [`Tenant`].
    pub async fn resolve(st: &AppState, p: &Principal, client_id: Option<&str>) -> Result<Client, ApiError> {
        let id = match (client_id, p.own_client()) {
            (Some(s), _) => validate::object_id("client_id", s)?,
            (None, Some(own)) => own,
            (None, None) => return Err(ApiError::invalid("client_id", "required with the operator key")),
        };
        Self::load(st, p, id).await
    }

    /// Loads tenant `id` if the caller may see it; 404 `not_found` otherwise.
    pub async fn load(st: &AppState, p: &Principal, id: ObjectId) -> Result<Client, ApiError> {
        p.check_tenant(id, "client")?;
        st.mongo
            .collection::<Client>(collections::CLIENTS)
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(ApiError::NotFound("client"))
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let Query(scope) = Query::<ClientScope>::from_request_parts(parts, st).await?;
        let p = parts.extensions.get::<Principal>().cloned().ok_or(ApiError::Unauthorized)?;
        Ok(Tenant(Self::resolve(st, &p, scope.client_id.as_deref()).await?))
    }
}
