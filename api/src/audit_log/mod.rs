//! `GET /v1/audit`: the audit log, for admins (and the operator), newest
//! first, with filters. There is no route that changes or deletes records.
//! The records are written by [`crate::audit`].

mod handlers;

use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::state::AppState;

/// The audit log route (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(handlers::list))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(handlers::list))]
pub struct Doc;
