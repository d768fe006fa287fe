//! `/v1/analytics/*`: overview, time series, breakdowns, realtime, tracking
//! health and CSV export, each for one tenant (`client_id`) or one link
//! (`smartlink_id`) over `[from, to)` (RFC 3339; default the last 7 days).
//! The numbers come from [`Engine`].
//!
//! [`engine`] answers every question from rollups for closed windows and
//! from raw events for the rest; the handlers resolve the scope and range.

pub mod engine;
mod handlers;

use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

pub use engine::{Dimension, Engine, Scope};
pub use handlers::{
    breakdown_with, engine_for, overview_with, timeseries_with, AnalyticsQuery, BreakdownView, OverviewView,
    TimeseriesView,
};

use crate::state::AppState;

/// The analytics routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/analytics/overview", get(handlers::overview))
        .route("/v1/analytics/timeseries", get(handlers::timeseries))
        .route("/v1/analytics/breakdown", get(handlers::breakdown))
        .route("/v1/analytics/realtime", get(handlers::realtime))
        .route("/v1/analytics/health", get(handlers::health))
        .route("/v1/analytics/export", get(handlers::export))
        .route("/v1/analytics/agency", get(handlers::agency))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::overview,
    handlers::timeseries,
    handlers::breakdown,
    handlers::realtime,
    handlers::health,
    handlers::export,
    handlers::agency
))]
pub struct Doc;
