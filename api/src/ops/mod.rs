//! `/v1/ops/*`: operations (issue #16). `POST /v1/ops/alerts` is
//! Alertmanager's webhook receiver (deploy/prometheus/alertmanager.yml.in):
//! each notification is emailed to the operators (`API_OPS_ALERT_EMAILS`)
//! through the api's mail transport (a file outbox locally, SMTP in
//! production), logged in `email_logs` and counted in
//! `api_ops_alerts_total{status}`. Operator key only.
mod handlers;

use axum::routing::post;
use axum::Router;
use utoipa::OpenApi;

pub use handlers::{AlertItem, AlertNotification, AlertReceipt};

use crate::state::AppState;

/// The operations routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/ops/alerts", post(handlers::receive_alerts))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(handlers::receive_alerts))]
pub struct Doc;
