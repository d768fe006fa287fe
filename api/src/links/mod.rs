//! Smartlinks (`/v1/smartlinks`): create, list, read, change, archive.
//!
//! Every write bumps `metadata.updatedAt`, which the edge polls: a change is
//! served within about a second. Slugs are unique per tenant (MongoDB
//! unique index `clientId, slug` → 409 `slug_taken`); destinations are
//! http(s) URLs only. `DELETE` archives: the edge answers 410 Gone, the
//! analytics stay. `GET /v1/smartlinks/{id}/qr` draws a link's QR code
//! ([`qr`]); `POST /v1/smartlinks/import` creates links from CSV, all or
//! none ([`import`]). Links carry tags; the list filters by tag and text.
//! Links route visitors by device, OS, browser, country, language and A/B
//! split ([`routing`]; evaluated by the edge).
mod handlers;
pub mod import;
pub mod qr;
pub mod routing;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

pub use handlers::{build, load_link, SmartlinkCreate, SmartlinkPatch, SmartlinkView};

use crate::state::AppState;

/// The smartlink routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/smartlinks", post(handlers::create).get(handlers::list))
        .route("/v1/smartlinks/{id}", get(handlers::get).patch(handlers::patch).delete(handlers::archive))
        .route("/v1/smartlinks/{id}/qr", get(qr::qr))
        .route("/v1/smartlinks/import", post(import::import).layer(DefaultBodyLimit::max(import::IMPORT_MAX_BYTES)))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::create,
    handlers::list,
    handlers::get,
    handlers::patch,
    handlers::archive,
    qr::qr,
    import::import
))]
pub struct Doc;
