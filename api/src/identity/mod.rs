//! Identity: who calls the API and how they prove it. Back-office users
//! (seed 000 + 001, argon2id passwords, lockout, optional TOTP) and their
//! sessions, email verification and password reset tokens (hashed,
//! expiring, single use), and tenants' API keys (stored as SHA-256).
//! Checking a bearer on each request is [`crate::auth`]'s; what a role or
//! scope may do is [`crate::rbac`]'s.

mod keys;
mod password;
mod tokens;
mod users;

use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use axum::Router;
use utoipa::OpenApi;

pub use users::{assignee, UserView};

use crate::state::AppState;

/// The routes that need no bearer: login, email verification and
/// password reset (they carry their own proof), limited per client IP
/// (`limit_by_ip`).
pub fn public_router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/auth/login", post(users::login))
        .route("/v1/auth/verify-email", post(tokens::verify_email))
        .route("/v1/auth/password-reset/request", post(tokens::request_reset))
        .route("/v1/auth/password-reset", post(tokens::reset_password))
        .route_layer(axum::middleware::from_fn_with_state(state, limit_by_ip))
}

/// Middleware of the public routes: at most `API_AUTH_RATE_PER_MINUTE`
/// requests per minute per client IP (IPv6 by /64, [`common::net::rate_key`];
/// the IP as [`crate::audit::Meta`] reads it), 429 `rate_limited` with
/// `Retry-After` beyond, counted in `api_rate_limited_total` (issue #14:
/// guessing passwords or codes across accounts costs the guesser time).
async fn limit_by_ip(
    State(st): State<AppState>,
    meta: crate::audit::Meta,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, crate::error::ApiError> {
    if let (Some(limiter), Some(ip)) = (&st.auth_limiter, meta.client_ip()) {
        crate::auth::check_rate(limiter, &common::net::rate_key(ip), &st.metrics)?;
    }
    Ok(next.run(req).await)
}

/// The identity routes behind authentication.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/clients/{id}/api-keys", post(keys::create_key).get(keys::list_keys))
        .route("/v1/clients/{id}/api-keys/{key_id}", delete(keys::revoke_key))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/me", get(users::me))
        .route("/v1/users/{id}", patch(users::patch))
        .route("/v1/auth/verify-email/request", post(users::request_verification))
        .route("/v1/auth/logout", post(users::logout))
        .route("/v1/auth/totp/setup", post(users::totp_setup))
        .route("/v1/auth/totp/enable", post(users::totp_enable))
}

/// The OpenAPI paths of both routers.
#[derive(OpenApi)]
#[openapi(paths(
    keys::create_key,
    keys::list_keys,
    keys::revoke_key,
    users::create,
    users::list,
    users::me,
    users::patch,
    users::login,
    users::logout,
    users::totp_setup,
    users::totp_enable,
    users::request_verification,
    tokens::verify_email,
    tokens::request_reset,
    tokens::reset_password
))]
pub struct Doc;
