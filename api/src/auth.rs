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
//! - Every key is rate-limited on its own (GCRA via `governor`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bson::{doc, oid::ObjectId};
use schemas::mongo::{collections, ApiKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// What a tenant key may do. `links:write` implies `links:read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read smartlinks (and the tenant itself).
    LinksRead,
    /// Create, change and archive smartlinks.
    LinksWrite,
    /// Read analytics, including CSV exports.
    AnalyticsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::LinksRead, Scope::LinksWrite, Scope::AnalyticsRead];

    /// The wire name (`links:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LinksRead => "links:read",
            Scope::LinksWrite => "links:write",
            Scope::AnalyticsRead => "analytics:read",
        }
    }

    /// The scope named `s`, if any.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

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
        /// Its scopes.
        scopes: Vec<Scope>,
    },
}

impl Principal {
    /// Ok when the caller holds `scope` (the operator holds all); 403 otherwise.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { scopes, .. } => {
                let ok = scopes.contains(&scope) || (scope == Scope::LinksRead && scopes.contains(&Scope::LinksWrite));
                if ok {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(scope.as_str()))
                }
            }
        }
    }

    /// Ok for the operator; 403 for tenant keys.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { .. } => Err(ApiError::Forbidden("the operator role")),
        }
    }

    /// Ok when the caller may see tenant `client_id`; a 404 on `what`
    /// otherwise, so another tenant's ids are indistinguishable from unknown ones.
    pub fn check_tenant(&self, client_id: ObjectId, what: &'static str) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { client_id: own, .. } if *own == client_id => Ok(()),
            Principal::Tenant { .. } => Err(ApiError::NotFound(what)),
        }
    }

    /// The tenant of a tenant key; `None` for the operator.
    pub fn own_client(&self) -> Option<ObjectId> {
        match self {
            Principal::Operator => None,
            Principal::Tenant { client_id, .. } => Some(*client_id),
        }
    }

    /// The rate-limiter key: the key id, or `operator`.
    fn limiter_key(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Tenant { key_id, .. } => key_id.to_hex(),
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
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let key = format!("slk_{}", hex::encode(secret));
    let prefix = key[..12].to_string();
    let hash = hash_key(&key);
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
    Ok(Principal::Tenant {
        client_id: key.client_id,
        key_id: key.id,
        scopes: key.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    })
}

/// Axum middleware: authenticates the bearer key, applies the key's rate
/// limit, and stores the [`Principal`] in the request's extensions.
/// Failures are counted in `api_auth_failures_total{reason}` and
/// `api_rate_limited_total`.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
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
    if let Err(not_until) = state.limiter.check_key(&principal.limiter_key()) {
        state.metrics.rate_limited.inc();
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        return Err(ApiError::RateLimited { retry_after_s: wait.as_secs().max(1) });
    }
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
        let p = Principal::Tenant { client_id: t, key_id: ObjectId::new(), scopes: vec![Scope::LinksWrite] };
        assert!(p.require(Scope::LinksRead).is_ok(), "write implies read");
        assert!(matches!(p.require(Scope::AnalyticsRead), Err(ApiError::Forbidden(_))));
        assert!(p.check_tenant(t, "x").is_ok());
        assert!(matches!(p.check_tenant(ObjectId::new(), "x"), Err(ApiError::NotFound(_))));
        assert!(p.require_operator().is_err());
        assert!(Principal::Operator.require(Scope::AnalyticsRead).is_ok());
    }
}
