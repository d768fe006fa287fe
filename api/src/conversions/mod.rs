//! `/v1/destinations`: the ad platforms a tenant sends its server-side
//! conversions to (issue #19), and what was sent.
//!
//! The `forwarder` stage reads these destinations and sends each
//! consented view and click-out of the tenant to them (Meta Conversions
//! API, GA4 Measurement Protocol, TikTok Events API) with the page
//! pixels' event ids; each request's outcome is in the delivery log
//! (`GET /v1/destinations/{id}/deliveries`).
//!
//! Credentials (Meta and TikTok access tokens, GA4 API secrets) are stored
//! encrypted (`crypto`, bound to the destination) and never returned: the
//! API answers `credential_set`.
//!
//! Permissions: resource `destinations` (admins create, change and delete,
//! managers read; keys: `destinations:write`).
pub mod handlers;

use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::state::AppState;

/// The destination routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/destinations", get(handlers::list).post(handlers::create))
        .route("/v1/destinations/{id}", get(handlers::get).patch(handlers::patch).delete(handlers::delete))
        .route("/v1/destinations/{id}/deliveries", get(handlers::deliveries))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::list,
    handlers::create,
    handlers::get,
    handlers::patch,
    handlers::delete,
    handlers::deliveries
))]
pub struct Doc;
