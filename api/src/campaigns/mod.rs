//! Campaigns (issue #7; seed 001 `Campaign`, mapped in
//! `schemas::campaign`): the campaign with its ad platforms, creatives,
//! budget, objectives and the smartlinks it promotes; daily ad KPIs per
//! platform entered as JSON or imported as CSV, with CTR, CPC, CPM, CPV and
//! ROAS computed here from the counters (input carrying them is refused);
//! and the performance of a campaign per day, where the ad platforms'
//! numbers sit beside the pipeline's own click-outs for the campaign's
//! links, read through the analytics engine (rollups for closed days, raw
//! events for the open one).
mod handlers;

pub use handlers::{parse_kpi_csv, IMPORT_MAX_LINES};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use utoipa::OpenApi;

use crate::state::AppState;

/// The campaign routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", post(handlers::create).get(handlers::list_campaigns))
        .route("/v1/campaigns/{id}", get(handlers::get).patch(handlers::patch))
        .route("/v1/campaigns/{id}/kpis", put(handlers::put_kpis).get(handlers::list_kpis))
        .route(
            "/v1/campaigns/{id}/kpis/import",
            post(handlers::import_kpis).layer(DefaultBodyLimit::max(handlers::IMPORT_MAX_BYTES)),
        )
        .route("/v1/campaigns/{id}/performance", get(handlers::performance))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::create,
    handlers::list_campaigns,
    handlers::get,
    handlers::patch,
    handlers::put_kpis,
    handlers::list_kpis,
    handlers::import_kpis,
    handlers::performance
))]
pub struct Doc;
