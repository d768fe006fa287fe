//! Errors of the API and their JSON form: every failure answers
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` with a
//! stable `code` clients may branch on, and a status that says who must act
//! (4xx: the caller; 503: retry later).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: a field is missing, malformed or out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a path (`platforms.spotify`, `from`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// 400 `malformed_body` / `malformed_query`: not parseable at all.
    #[error("{message}")]
    Malformed {
        /// `malformed_body`, `malformed_query` or `malformed_path`.
        code: &'static str,
        /// The parser's message, with the field path when it has one.
        message: String,
    },
    /// 401 `unauthorized`: no bearer key, or an unknown or revoked one.
    #[error("missing, unknown or revoked bearer key")]
    Unauthorized,
    /// 401 with a login code: `invalid_credentials`, `totp_required`,
    /// `invalid_totp`.
    #[error("{1}")]
    Unauthenticated(&'static str, &'static str),
    /// 423 `account_locked`: too many failed logins.
    #[error("account locked until {until}")]
    Locked {
        /// RFC 3339 UTC.
        until: String,
    },
    /// 403 `forbidden`: the key or user is valid but lacks the permission.
    #[error("not allowed: lacks {0}")]
    Forbidden(String),
    /// 403 with a plan-limit code (`monthly_link_limit`): the tenant's plan
    /// allows no more of this until the limit resets or is raised.
    #[error("{message}")]
    PlanLimit {
        /// Stable code naming the limit.
        code: &'static str,
        /// The limit, how much is used and when it resets.
        message: String,
    },
    /// 405 `method_not_allowed`: the route exists, not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 404 `not_found`: no such resource for this key (also another
    /// tenant's resources: their existence is not disclosed).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 404 `not_found` naming the request field that refers to a record the
    /// tenant does not have (an assignee, a related lead): the same answer
    /// as a path id's, with the field.
    #[error("no such {what} in this tenant")]
    UnknownReference {
        /// The field (`assigned_to`, `related.id`, `team[2]`).
        field: String,
        /// What it should name (`user`, `record`).
        what: &'static str,
    },
    /// 409 with a specific code (`slug_taken`, `domain_taken`).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 429: a rate is exceeded; retry after the given seconds. Codes:
    /// `rate_limited` (the key's or user's own rate, or the per-IP rate of
    /// `/v1/auth/*`), `plan_rate_limit` (the tenant's plan, all its keys
    /// and users together), `hourly_request_limit` (the tenant's
    /// `settings.api_rate_limit`, its keys together).
    #[error("{limit} exceeded; retry in {retry_after_s} s")]
    RateLimited {
        /// Stable code naming the limit.
        code: &'static str,
        /// The limit, in words ("the key's rate limit").
        limit: String,
        /// Seconds until a request is allowed again.
        retry_after_s: u64,
    },
    /// 503 `unavailable`: a store (MongoDB, ClickHouse) failed; retryable.
    #[error("{store} unavailable")]
    Unavailable {
        /// `mongodb` or `clickhouse`.
        store: &'static str,
        /// The underlying error (logged, not returned).
        detail: String,
    },
}

impl ApiError {
    /// A 404 on `field`, which names no `what` of the tenant.
    pub fn unknown(field: impl Into<String>, what: &'static str) -> Self {
        ApiError::UnknownReference { field: field.into(), what }
    }

    /// The same error on `field` instead, when it names one (a shared
    /// check such as [`crate::identity::assignee`] reused for
    /// another field); other errors as they are.
    pub fn on_field(self, field: &str) -> Self {
        match self {
            ApiError::Invalid { message, .. } => ApiError::Invalid { field: field.into(), message },
            ApiError::UnknownReference { what, .. } => ApiError::UnknownReference { field: field.into(), what },
            e => e,
        }
    }

    /// A 400 on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
            ApiError::Locked { .. } => StatusCode::LOCKED,
            ApiError::Forbidden(_) | ApiError::PlanLimit { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::UnknownReference { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::Malformed { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Unauthenticated(code, _) => code,
            ApiError::Locked { .. } => "account_locked",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PlanLimit { code, .. } => code,
            ApiError::NotFound(_) | ApiError::UnknownReference { .. } => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::RateLimited { code, .. } => code,
            ApiError::Unavailable { .. } => "unavailable",
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code, message and field of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `invalid_request`, `malformed_body`, `malformed_query`,
    /// `malformed_path`, `unauthorized`, `invalid_credentials`,
    /// `totp_required`, `invalid_totp`, `account_locked`, `forbidden`,
    /// `monthly_link_limit`, `user_limit`, `not_found`,
    /// `email_taken`,
    /// `slug_taken`, `domain_taken`, `rate_limited`, `plan_rate_limit`,
    /// `hourly_request_limit`, `unavailable`,
    /// `method_not_allowed`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The offending field, for `invalid_request`, and for `not_found` when
    /// a body field names a record the tenant does not have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable { store, detail } = &self {
            tracing::warn!(store, error = %detail, "store failed; answering 503");
        }
        let field = match &self {
            ApiError::Invalid { field, .. } | ApiError::UnknownReference { field, .. } => Some(field.clone()),
            _ => None,
        };
        let message = match &self {
            ApiError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().into(), message, field } };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        match &self {
            ApiError::RateLimited { retry_after_s, .. } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::Unauthorized => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::Malformed { code: "malformed_body", message: r.body_text() }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::Malformed { code: "malformed_query", message: r.body_text() }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Malformed { code: "malformed_path", message: r.body_text() }
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(e: mongodb::error::Error) -> Self {
        ApiError::Unavailable { store: "mongodb", detail: e.to_string() }
    }
}

impl From<clickhouse::error::Error> for ApiError {
    fn from(e: clickhouse::error::Error) -> Self {
        ApiError::Unavailable { store: "clickhouse", detail: e.to_string() }
    }
}

impl From<rollup::RollupError> for ApiError {
    fn from(e: rollup::RollupError) -> Self {
        use rollup::RollupError as R;
        match e {
            R::ClickHouse(e) => e.into(),
            R::MutationTimeout { .. } => ApiError::Unavailable { store: "clickhouse", detail: e.to_string() },
            R::Mongo(e) => e.into(),
            R::MongoWrite { .. } | R::DocumentTooLarge { .. } => {
                ApiError::Unavailable { store: "mongodb", detail: e.to_string() }
            }
            R::Json(e) => ApiError::Unavailable { store: "clickhouse", detail: format!("rollup breakdown: {e}") },
            R::Bson(e) => ApiError::Unavailable { store: "mongodb", detail: format!("rollup document: {e}") },
        }
    }
}

impl From<crypto::CryptoError> for ApiError {
    fn from(e: crypto::CryptoError) -> Self {
        ApiError::Unavailable { store: "pii encryption", detail: e.to_string() }
    }
}

impl From<getrandom::Error> for ApiError {
    fn from(e: getrandom::Error) -> Self {
        ApiError::Unavailable { store: "os random", detail: e.to_string() }
    }
}

/// Unique-index violations ([`common::mongo::is_duplicate_key`]).
pub use common::mongo::is_duplicate_key;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_are_stable() {
        assert_eq!(ApiError::invalid("slug", "bad").status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::NotFound("smartlink").code(), "not_found");
        let limited =
            |code, retry_after_s| ApiError::RateLimited { code, limit: "the key's rate limit".into(), retry_after_s };
        assert_eq!(limited("rate_limited", 1).status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited("plan_rate_limit", 1).code(), "plan_rate_limit");
        let r = limited("rate_limited", 3).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
