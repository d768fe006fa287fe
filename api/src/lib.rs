//! `api`: the HTTP API of dashboards and back-office tools (127.0.0.1:8081,
//! admin 127.0.0.1:9183): tenants and API keys ([`routes::clients`]),
//! smartlinks ([`routes::smartlinks`]) and analytics
//! ([`routes::analytics`], computed by [`analytics::Engine`]).
//!
//! JSON over HTTP under `/v1`, OpenAPI at `/v1/openapi.json`
//! ([`openapi::ApiDoc`]), errors as JSON with a stable code
//! ([`error::ApiError`]). Every `/v1` route but the OpenAPI document needs
//! `Authorization: Bearer <key>` ([`auth`]): the operator key, or a tenant
//! key that only ever sees its tenant (another tenant's ids answer 404).
//!
//! Reads and writes: MongoDB `clients`, `smartlinks`, `api_keys`,
//! `aggregator_state` (read); ClickHouse `rollups` and `events` (read).

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod config;
pub mod crypto;
pub mod error;
pub mod extract;
pub mod lock;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod pdf;
pub mod rbac;
pub mod routes;
pub mod state;
pub mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use common::admin::Health;
use common::shutdown::CancellationToken;
use prometheus::Registry;
use utoipa::OpenApi;

pub use config::Config;
use error::ApiError;
use routes::{
    account, analytics as a, audit_log, campaigns, clients, contacts, crm, crm_settings, gdpr, invoices, smartlinks,
    tasks, users,
};
pub use state::AppState;

/// Largest request body, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi::ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/clients", post(clients::create).get(clients::list))
        .route("/v1/clients/{id}", get(clients::get))
        .route("/v1/clients/{id}/api-keys", post(clients::create_key).get(clients::list_keys))
        .route("/v1/clients/{id}/api-keys/{key_id}", delete(clients::revoke_key))
        .route("/v1/smartlinks", post(smartlinks::create).get(smartlinks::list))
        .route("/v1/smartlinks/{id}", get(smartlinks::get).patch(smartlinks::patch).delete(smartlinks::archive))
        .route("/v1/analytics/overview", get(a::overview))
        .route("/v1/analytics/timeseries", get(a::timeseries))
        .route("/v1/analytics/breakdown", get(a::breakdown))
        .route("/v1/analytics/realtime", get(a::realtime))
        .route("/v1/analytics/health", get(a::health))
        .route("/v1/analytics/export", get(a::export))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/me", get(users::me))
        .route("/v1/audit", get(audit_log::list))
        .route("/v1/leads", post(crm::create_lead).get(crm::list_leads))
        .route("/v1/leads/{id}", get(crm::get_lead).patch(crm::patch_lead).delete(crm::delete_lead))
        .route("/v1/leads/{id}/notes", post(crm::add_note))
        .route("/v1/leads/{id}/convert", post(crm::convert))
        .route("/v1/contacts", post(contacts::create).get(contacts::list))
        .route("/v1/contacts/{id}", get(contacts::get).patch(contacts::patch).delete(contacts::delete))
        .route("/v1/campaigns", post(campaigns::create).get(campaigns::list_campaigns))
        .route("/v1/campaigns/{id}", get(campaigns::get).patch(campaigns::patch))
        .route("/v1/campaigns/{id}/kpis", axum::routing::put(campaigns::put_kpis).get(campaigns::list_kpis))
        .route("/v1/campaigns/{id}/kpis/import", post(campaigns::import_kpis))
        .route("/v1/campaigns/{id}/performance", get(campaigns::performance))
        .route("/v1/gdpr/consents", axum::routing::put(gdpr::put_consent).get(gdpr::get_consent))
        .route("/v1/gdpr/export", post(gdpr::export))
        .route("/v1/gdpr/erase", post(gdpr::erase))
        .route("/v1/newsletter", get(gdpr::list_subscribers))
        .route("/v1/newsletter/subscribe", post(gdpr::subscribe))
        .route("/v1/newsletter/unsubscribe", post(gdpr::unsubscribe))
        .route("/v1/invoices", post(invoices::create).get(invoices::list))
        .route("/v1/invoices/overdue-sweep", post(invoices::overdue_sweep))
        .route("/v1/invoices/{id}", get(invoices::get).patch(invoices::patch))
        .route("/v1/invoices/{id}/pdf", get(invoices::pdf))
        .route("/v1/invoices/{id}/send", post(invoices::send))
        .route("/v1/invoices/{id}/payments", post(invoices::record_payment).get(invoices::list_payments))
        .route("/v1/crm/settings", get(crm_settings::get).put(crm_settings::put))
        .route("/v1/auth/verify-email/request", post(account::request_verification))
        .route("/v1/opportunities", get(crm::list_opportunities))
        .route("/v1/opportunities/{id}", axum::routing::patch(crm::patch_opportunity))
        .route("/v1/crm/dashboard", get(crm::dashboard))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/tasks/{id}", axum::routing::patch(tasks::patch))
        .route("/v1/activities", post(tasks::create_activity).get(tasks::timeline))
        .route("/v1/users/{id}", axum::routing::patch(users::patch))
        .route("/v1/auth/logout", post(users::logout))
        .route("/v1/auth/totp/setup", post(users::totp_setup))
        .route("/v1/auth/totp/enable", post(users::totp_enable))
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::failures))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::middleware));
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/auth/login", post(users::login))
        .route("/v1/auth/verify-email", post(account::verify_email))
        .route("/v1/auth/password-reset/request", post(account::request_reset))
        .route("/v1/auth/password-reset", post(account::reset_password))
        .merge(authed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
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
    if !cfg.operator_key.is_empty() && cfg.operator_key.len() < 24 {
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
    let app = router(state.clone());
    let stop = shutdown.clone();
    let done = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "api server failed");
        }
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
        match routes::invoices::sweep_overdue(&state, &auth::Principal::Operator, &meta, None, bson::DateTime::now())
            .await
        {
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
