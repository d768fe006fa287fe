//! Tenants (`/v1/clients`): the labels and artists an agency serves, each
//! with its domain, pixels, branding and settings (seed 000 `clients`).
//! Creating and listing tenants is the operator's; a tenant key or session
//! reads its own tenant only, and a tenant admin changes its look and
//! pixels (`PATCH`), not its plan or limits ([`limits`]). [`Tenant`] resolves the tenant every other
//! route acts on.

mod handlers;
pub mod limits;
mod scope;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

pub use handlers::ClientView;
pub use scope::{ClientScope, Tenant};

use crate::state::AppState;

/// The tenant routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/clients", post(handlers::create).get(handlers::list))
        .route("/v1/clients/{id}", get(handlers::get).patch(handlers::patch))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(
    paths(handlers::create, handlers::list, handlers::get, handlers::patch),
    // Named by `BrandingDto::texts`' hand-written schema, so not collected.
    components(schemas(handlers::PageTextsDto))
)]
pub struct Doc;
