//! `/v1/alerts`: tracking-health alerts to tenants (seed 002 "Alertes
//! automatiques", issue #16).
//!
//! Seed 002 promises tenants an alert when tracking falls under 95%, on
//! unusual traffic, and when client tracking fails. Here, for each tenant:
//! - [`health`] measures the last 24 h and the last complete hour on
//!   ClickHouse `events` and judges four alerts
//!   ([`schemas::alerts::AlertKind`]) against the tenant's thresholds;
//! - [`notifier`] runs every `API_ALERTS_EVAL_SECS` in each api process:
//!   records each alert's state, notifies each change once (emails through
//!   the api's mail transport, a signed webhook) with retries and a
//!   delivery log, and exports per-tenant gauges for Prometheus
//!   (`api_tenant_*`, the per-tenant Grafana dashboard and the operators'
//!   `Tenant*` rules);
//! - the routes: `GET`/`PUT /v1/alerts/settings` (recipients, thresholds),
//!   `GET /v1/alerts` (health now and the alerts' states: the dashboard's
//!   notifications), `GET /v1/alerts/deliveries` (the delivery log).
//!
//! Permissions: resource `alerts` (admins and managers update, everyone
//! reads; keys: `alerts:write`, and `analytics:read` reads).
pub mod handlers;
pub mod health;
pub mod notifier;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::shutdown::CancellationToken;
use utoipa::OpenApi;

pub use notifier::{Evaluation, Notifier, Sent};

use crate::state::AppState;

/// The alert routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(handlers::get_health))
        .route("/v1/alerts/settings", get(handlers::get_settings).put(handlers::put_settings))
        .route("/v1/alerts/deliveries", get(handlers::deliveries))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(handlers::get_health, handlers::get_settings, handlers::put_settings, handlers::deliveries))]
pub struct Doc;

/// Runs `n` until `shutdown`: every `every`, judges every tenant (slot =
/// the time, rounded down to `every`) and sends the notifications due.
/// Failures are logged, counted and retried at the next round.
pub async fn run(n: Notifier, st: AppState, every: Duration, shutdown: CancellationToken) {
    let step = every.as_secs().max(1);
    loop {
        let now = bson::DateTime::now();
        let slot = ((now.timestamp_millis() / 1000) as u64 / step * step) as u32;
        match n.evaluate(slot).await {
            Ok(e) => {
                st.metrics.alert_evaluations.with_label_values(&["ok"]).inc();
                st.metrics.alert_last_evaluation.set(bson::DateTime::now().timestamp_millis() / 1000);
                if e.deliveries > 0 {
                    tracing::info!(
                        fired = e.fired.len(),
                        resolved = e.resolved.len(),
                        deliveries = e.deliveries,
                        "tenant alerts judged"
                    );
                }
            }
            Err(e) => {
                st.metrics.alert_evaluations.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "judging tenant alerts failed; retrying at the next round");
            }
        }
        match n.deliver_due(bson::DateTime::now()).await {
            Ok(s) if s.delivered + s.retried + s.failed > 0 => {
                tracing::info!(
                    delivered = s.delivered,
                    retried = s.retried,
                    failed = s.failed,
                    "alert notifications sent"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sending alert notifications failed; retrying at the next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
