//! Authentication and authorization: `Authorization: Bearer <key>`.
//!
//! - The operator key (config `API_OPERATOR_KEY`) may do everything,
//!   including creating tenants and tenant keys.
//! - A tenant key (`slk_` + 64 hex characters, 256 random bits) acts for one
//!   tenant with its scopes. Only its SHA-256 is stored (`api_keys.keyHash`,
//!   unique index); a fast hash is enough for a 256-bit random secret, and
//!   lets the lookup be one indexed read. Revoked keys are refused.
//! - A tenant key never sees another tenant's resources: they answer 404,
//!   exactly as if they did not exist ([`Principal::check_tenant`]).
//! - A session token (`sls_` + 64 hex, from `POST /v1/auth/login`) acts
//!   for one back-office user with their role; only its SHA-256 is stored
//!   (`sessions`), and it ends at expiry, logout, or deactivation.
//! - Keys and sessions share one check, [`Principal::can`] ([`crate::rbac`]).
//! - Every key and user is rate-limited on its own (GCRA via `governor`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bson::{doc, oid::ObjectId};
use schemas::crm::Actor;
use schemas::mongo::{collections, ApiKey, Role, Session, User};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::rbac::{self, Action, Resource};
use crate::state::AppState;

/// Who is calling, set by [`middleware`] on every authenticated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The operator key.
    Operator,
    /// A tenant key.
    Tenant {
        /// The tenant it acts for.
        client_id: ObjectId,
        /// The key's id.
        key_id: ObjectId,
        /// Its scopes ([`rbac::SCOPES`]).
        scopes: Vec<String>,
    },
    /// A logged-in back-office user (session token).
    User {
        /// The user's tenant.
        client_id: ObjectId,
        /// The user.
        user_id: ObjectId,
        /// Role, read at each request (a role change applies at once).
        role: Role,
        /// The session.
        session_id: ObjectId,
    },
}

impl Principal {
    /// Ok when the caller may do `action` on `resource` ([`crate::rbac`]);
    /// 403 otherwise.
    pub fn can(&self, resource: Resource, action: Action) -> Result<(), ApiError> {
        let ok = match self {
            Principal::Operator => true,
            Principal::Tenant { scopes, .. } => rbac::scopes_allow(scopes, resource, action),
            Principal::User { role, .. } => rbac::role_allows(*role, resource, action),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("permission {}:{}", resource.name(), action.name())))
        }
    }

    /// Ok for the operator; 403 for everyone else.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            _ => Err(ApiError::Forbidden("the operator role".into())),
        }
    }

    /// Ok when the caller may see tenant `client_id`; a 404 on `what`
    /// otherwise, so another tenant's ids are indistinguishable from unknown ones.
    pub fn check_tenant(&self, client_id: ObjectId, what: &'static str) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            _ if self.own_client() == Some(client_id) => Ok(()),
            _ => Err(ApiError::NotFound(what)),
        }
    }

    /// The tenant of a tenant key; `None` for the operator.
    pub fn own_client(&self) -> Option<ObjectId> {
        match self {
            Principal::Operator => None,
            Principal::Tenant { client_id, .. } | Principal::User { client_id, .. } => Some(*client_id),
        }
    }

    /// The user of a session; `None` for keys.
    pub fn user_id(&self) -> Option<ObjectId> {
        match self {
            Principal::User { user_id, .. } => Some(*user_id),
            _ => None,
        }
    }

    /// The user of a session; 403 for keys (routes about "me").
    pub fn session_user(&self) -> Result<ObjectId, ApiError> {
        self.user_id().ok_or_else(|| ApiError::Forbidden("a user session".into()))
    }

    /// The actor of an audit record.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator => Actor { kind: "operator".into(), id: None, role: "operator".into() },
            Principal::Tenant { key_id, scopes, .. } => {
                Actor { kind: "api_key".into(), id: Some(*key_id), role: scopes.join(" ") }
            }
            Principal::User { user_id, role, .. } => {
                Actor { kind: "user".into(), id: Some(*user_id), role: crate::validate::wire(role) }
            }
        }
    }

    /// The rate-limiter key: the key id, or `operator`.
    fn limiter_key(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Tenant { key_id, .. } => key_id.to_hex(),
            Principal::User { user_id, .. } => user_id.to_hex(),
        }
    }
}

/// Lowercase hex SHA-256 of a key, as stored in `api_keys.keyHash`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new tenant key: `(key, prefix shown in lists, hash to store)`. Errors
/// only when the OS has no randomness.
pub fn generate_key() -> Result<(String, String, String), getrandom::Error> {
    let (key, hash) = generate_token("slk_")?;
    let prefix = key[..12].to_string();
    Ok((key, prefix, hash))
}

/// The bearer token of an `Authorization` header value, if well-formed.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256).then_some(token)
}

/// Resolves the caller of `token`: the operator, a live tenant key, or 401.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if let Some(op) = &state.operator_hash {
        let given = Sha256::digest(token.as_bytes());
        if bool::from(given.as_slice().ct_eq(op.as_slice())) {
            return Ok(Principal::Operator);
        }
    }
    if token.starts_with("sls_") {
        return authenticate_session(state, token).await;
    }
    if !token.starts_with("slk_") {
        return Err(ApiError::Unauthorized);
    }
    let key = state
        .mongo
        .collection::<ApiKey>(collections::API_KEYS)
        .find_one(doc! { "keyHash": hash_key(token) })
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or(ApiError::Unauthorized)?;
    Ok(Principal::Tenant { client_id: key.client_id, key_id: key.id, scopes: key.scopes.clone() })
}

/// Resolves a session token: live (not revoked, not expired) and its user active.
async fn authenticate_session(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let session = state
        .mongo
        .collection::<Session>(collections::SESSIONS)
        .find_one(doc! { "tokenHash": hash_key(token) })
        .await?
        .filter(|s| s.revoked_at.is_none() && s.expires_at > bson::DateTime::now())
        .ok_or(ApiError::Unauthorized)?;
    let user = state
        .mongo
        .collection::<User>(collections::USERS)
        .find_one(doc! { "_id": session.user_id })
        .await?
        .filter(|u| u.is_active)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Principal::User {
        client_id: user.client_id,
        user_id: user.id,
        role: user.permissions.role,
        session_id: session.id,
    })
}

/// A new secret token with `prefix` (`slk_`, `sls_`): `(token, hash to
/// store)`. 256 random bits.
pub fn generate_token(prefix: &str) -> Result<(String, String), getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let token = format!("{prefix}{}", hex::encode(secret));
    let hash = hash_key(&token);
    Ok((token, hash))
}

/// Takes one request of `key` from `limiter`; when it has none left,
/// counts it in `api_rate_limited_total` and answers 429 `rate_limited`
/// with the seconds until the next one (`Retry-After`).
pub fn check_rate<K>(
    limiter: &governor::DefaultKeyedRateLimiter<K>,
    key: &K,
    metrics: &crate::metrics::Metrics,
) -> Result<(), ApiError>
where
    K: Clone + std::hash::Hash + Eq,
{
    limiter.check_key(key).map_err(|not_until| {
        metrics.rate_limited.inc();
        ApiError::RateLimited {
            code: "rate_limited",
            limit: "the rate limit".into(),
            retry_after_s: retry_after(&not_until),
        }
    })
}

/// Whole seconds (at least 1) until a refused request would be allowed.
pub fn retry_after(
    not_until: &governor::NotUntil<<governor::clock::DefaultClock as governor::clock::Clock>::Instant>,
) -> u64 {
    let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
    wait.as_secs().max(1)
}

/// Axum middleware: authenticates the bearer key, applies the key's rate
/// limit, and stores the [`Principal`] in the request's extensions.
/// Failures are counted in `api_auth_failures_total{reason}` and
/// `api_rate_limited_total`.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer);
    let Some(token) = token else {
        state.metrics.auth_failures.with_label_values(&["missing"]).inc();
        return Err(ApiError::Unauthorized);
    };
    let principal = match authenticate(&state, token).await {
        Ok(p) => p,
        Err(e) => {
            if matches!(e, ApiError::Unauthorized) {
                state.metrics.auth_failures.with_label_values(&["unknown_key"]).inc();
            }
            return Err(e);
        }
    };
    check_rate(&state.limiter, &principal.limiter_key(), &state.metrics)?;
    state.request_limits.check(&state, &principal).await?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let (k1, p1, h1) = generate_key().unwrap();
        let (k2, _, h2) = generate_key().unwrap();
        assert_ne!(k1, k2);
        assert!(k1.starts_with("slk_") && k1.len() == 68);
        assert!(k1.starts_with(&p1));
        assert_eq!(h1, hash_key(&k1));
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
        // The stored hash is SHA-256 in hex (FIPS 180-2 test vector "abc").
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn scopes_and_tenants() {
        let t = ObjectId::new();
        let p = Principal::Tenant { client_id: t, key_id: ObjectId::new(), scopes: vec!["links:write".into()] };
        assert!(p.can(Resource::Links, Action::Read).is_ok(), "write implies read");
        assert!(matches!(p.can(Resource::Analytics, Action::Read), Err(ApiError::Forbidden(_))));
        assert!(p.check_tenant(t, "x").is_ok());
        assert!(matches!(p.check_tenant(ObjectId::new(), "x"), Err(ApiError::NotFound(_))));
        assert!(p.require_operator().is_err());
        assert!(Principal::Operator.can(Resource::Audit, Action::Read).is_ok());
        let u =
            Principal::User { client_id: t, user_id: ObjectId::new(), role: Role::Viewer, session_id: ObjectId::new() };
        assert!(u.can(Resource::Leads, Action::Read).is_ok() && u.can(Resource::Leads, Action::Create).is_err());
        assert_eq!(u.actor().role, "viewer");
    }
}
