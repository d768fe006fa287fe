//! `api`: the HTTP API of dashboards and back-office tools (127.0.0.1:8081,
//! admin 127.0.0.1:9183). One module per domain, each with its router,
//! handlers, operations and types; this file only merges their routers:
//!
//! | domain | routes |
//! |---|---|
//! | [`tenants`] | `/v1/clients` (and [`tenants::Tenant`], the tenant a request acts on) |
//! | [`identity`] | `/v1/users`, `/v1/auth/*`, `/v1/clients/{id}/api-keys` |
//! | [`links`] | `/v1/smartlinks` |
//! | [`analytics`] | `/v1/analytics/*` (rollups for closed windows, raw events for the rest) |
//! | [`crm`] | `/v1/leads`, `/v1/contacts`, `/v1/opportunities`, `/v1/tasks`, `/v1/activities`, `/v1/crm/*` |
//! | [`campaigns`] | `/v1/campaigns` |
//! | [`billing`] | `/v1/invoices` |
//! | [`gdpr`] | `/v1/gdpr/*`, `/v1/newsletter` |
//! | [`alerts`] | `/v1/alerts` (tenants' tracking-health alerts, and the notifier sending them) |
//! | [`conversions`] | `/v1/destinations` (ad platforms the `forwarder` sends consented conversions to, its delivery log) |
//! | [`webhooks`] | `/v1/webhooks` (tenants' signed webhooks: endpoints, delivery log, replay, and the dispatcher) |
//! | [`audit_log`] | `/v1/audit` (records written by [`audit`], which every mutation goes through) |
//!
//! The dashboard's single-page app is served under `/app/` ([`app`]).
//!
//! Shared by all: [`auth`] (bearer keys and sessions) and [`rbac`] (who may
//! do what), [`error`] (JSON errors with a stable code), [`extract`] and
//! [`validate`] (request parsing and field rules), [`store`], [`lock`],
//! [`delivery`] (messages sent with retries),
//! the `crypto` library (PII and secrets at rest), [`mail`], [`metrics`], [`state`], [`config`].
//!
//! JSON over HTTP under `/v1`, OpenAPI at `/v1/openapi.json`
//! ([`openapi::document`]). Every `/v1` route but the OpenAPI document,
//! login, email verification and password reset needs `Authorization:
//! Bearer <key>`: the operator key, a tenant key or a session, which only
//! ever sees its tenant (another tenant's ids answer 404).
//!
//! Reads and writes MongoDB (tenants, links, keys, users, CRM, billing,
//! GDPR, audit, rollup mirrors) and reads ClickHouse (`rollups`, `events`).

pub mod alerts;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod audit_log;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod campaigns;
pub mod config;
pub mod conversions;
pub mod crm;
pub mod delivery;
pub mod error;
pub mod extract;
pub mod gdpr;
pub mod identity;
pub mod links;
pub mod lock;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod rbac;
pub mod rewrap;
pub mod state;
pub mod store;
pub mod tenants;
pub mod validate;
pub mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Json, Router};
use common::admin::Health;
use common::shutdown::CancellationToken;
use hyper::body::Incoming;
use prometheus::Registry;

pub use config::Config;
use error::ApiError;
pub use state::AppState;

/// Largest request body, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI document, built once per process (it does not change while
/// the process runs, and building it reads the DTOs' sources).
static OPENAPI: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(openapi::document);

async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(&OPENAPI)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The API's routes over `state`: every domain's router merged, the
/// authenticated ones behind [`auth::middleware`] and [`audit::trail`],
/// all counted by [`metrics::track`].
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .merge(tenants::router())
        .merge(identity::router())
        .merge(links::router())
        .merge(analytics::router())
        .merge(crm::router())
        .merge(campaigns::router())
        .merge(billing::router())
        .merge(gdpr::router())
        .merge(audit_log::router())
        .merge(ops::router())
        .merge(alerts::router())
        .merge(conversions::router())
        .merge(webhooks::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::trail))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::middleware));
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .merge(identity::public_router(state.clone()))
        .merge(authed)
        .merge(app::router(&state.cfg.app_dir))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(middleware::from_fn(metrics::request_id))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A running API.
pub struct Api {
    /// Address of the HTTP API.
    pub addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    /// Readiness (`mongodb`, `clickhouse`).
    pub health: Health,
    /// Shared state (stores, limiter, metrics).
    pub state: AppState,
    done: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Waits until the server has drained after `shutdown`.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Binds the API and its admin listener and serves until `shutdown`;
/// in-flight requests finish first. Errors when a listener cannot bind,
/// the operator key is too short, or the MongoDB URI does not parse.
pub async fn start(cfg: Config, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<Api> {
    if !cfg.operator_key.is_empty() && cfg.operator_key.expose().len() < 24 {
        anyhow::bail!("API_OPERATOR_KEY must have at least 24 characters");
    }
    let metrics = metrics::Metrics::register(&registry).context("registering metrics")?;
    let mongo = cfg.mongo.database().await.context("MongoDB URI")?;
    let state = AppState::new(cfg.clone(), mongo, metrics)?;
    if state.pii.is_none() {
        tracing::warn!("API_PII_KEYS and API_BLIND_INDEX_KEY are empty: users and CRM routes answer 503");
    }
    let health = Health::new();
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(probe(state.clone(), health.clone(), shutdown.clone()));
    if cfg.overdue_sweep_secs > 0 && state.pii.is_some() {
        tokio::spawn(sweep_overdue(
            state.clone(),
            Duration::from_secs(u64::from(cfg.overdue_sweep_secs)),
            shutdown.clone(),
        ));
    }
    if cfg.alerts_eval_secs > 0 && state.pii.is_some() {
        let notifier = alerts::Notifier::new(state.clone()).context("building the alert notifier's HTTP client")?;
        tokio::spawn(alerts::run(
            notifier,
            state.clone(),
            Duration::from_secs(u64::from(cfg.alerts_eval_secs)),
            shutdown.clone(),
        ));
    }
    if cfg.webhooks_secs > 0 && state.pii.is_some() {
        let dispatcher = webhooks::dispatch::Dispatcher::new(state.clone())
            .context("building the webhook dispatcher's HTTP client")?;
        tokio::spawn(webhooks::dispatch::run(
            dispatcher,
            Duration::from_secs(u64::from(cfg.webhooks_secs)),
            shutdown.clone(),
        ));
    }
    let app = router(state.clone());
    let limits = common::http::HttpLimits {
        max_header_bytes: 16 * 1024,
        header_timeout: Duration::from_millis(cfg.header_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        max_connections: cfg.max_connections,
    };
    let refused = state.metrics.connections_refused.clone();
    let stop = shutdown.clone();
    let done = tokio::spawn(async move {
        // Each connection's requests carry its peer (`ConnectInfo`, read by
        // the audit log and the auth rate limit), as axum::serve would add.
        let make = |peer: SocketAddr| {
            let app = tower::ServiceExt::map_request(app.clone(), move |mut req: axum::extract::Request<Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            });
            hyper_util::service::TowerToHyperService::new(app)
        };
        common::http::serve(listener, make, limits, stop, Duration::from_secs(10), refused).await;
    });
    Ok(Api { addr, admin_addr, health, state, done })
}

/// Marks overdue invoices of every tenant every `every`, audited as the
/// operator with user agent `overdue-sweep` (the service acting on its own).
async fn sweep_overdue(state: AppState, every: Duration, shutdown: CancellationToken) {
    let meta = audit::Meta { ip: String::new(), user_agent: "overdue-sweep".into() };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match billing::sweep_overdue(&state, &auth::Principal::Operator, &meta, None, bson::DateTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(invoices = n, "marked overdue"),
            Err(e) => tracing::warn!(error = %e, "overdue sweep failed; retrying at the next interval"),
        }
    }
}

/// Pings both stores every 5 s and reports them on `/readyz`.
async fn probe(state: AppState, health: Health, shutdown: CancellationToken) {
    loop {
        match state.mongo.run_command(bson::doc! { "ping": 1 }).await {
            Ok(_) => health.ready("mongodb"),
            Err(e) => health.not_ready("mongodb", e.to_string()),
        }
        match state.ch.query("SELECT 1").fetch_one::<u8>().await {
            Ok(_) => health.ready("clickhouse"),
            Err(e) => health.degraded("clickhouse", format!("analytics unavailable: {e}")),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
