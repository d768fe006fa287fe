//! The state every handler shares.

use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::cache::AnswerCache;
use crate::config::Config;
use crate::error::ApiError;
use crate::mail::{MailConfigError, Mailer, Outgoing};
use crate::metrics::Metrics;
use crate::tenants::limits::RequestLimits;
use crypto::{CryptoError, Pii};

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// MongoDB database (tenants, links, keys, rollup mirrors, watermark).
    pub mongo: mongodb::Database,
    /// ClickHouse client with the configured database as default.
    pub ch: clickhouse::Client,
    /// ClickHouse database name (queries name their tables with it).
    pub ch_db: String,
    /// Settings.
    pub cfg: Config,
    /// Per-key rate limiter (key id or `operator`).
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// Per-tenant limits of the tenant's plan ([`RequestLimits`]).
    pub request_limits: RequestLimits,
    /// Per-client-IP limiter of the unauthenticated `/v1/auth/*` routes;
    /// `None` when `API_AUTH_RATE_PER_MINUTE` is 0.
    pub auth_limiter: Option<DefaultKeyedRateLimiter<std::net::IpAddr>>,
    /// SHA-256 of the operator key, when one is configured.
    pub operator_hash: Option<[u8; 32]>,
    /// Metrics.
    pub metrics: Metrics,
    /// PII encryption and blind index, when keys are configured.
    pub pii: Option<Pii>,
    /// Outgoing mail (file outbox or SMTP) and its log.
    pub mailer: Mailer,
    /// Recent analytics answers ([`AnswerCache`]).
    pub answers: AnswerCache,
}

/// Why the state could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `API_PII_KEYS` / `API_BLIND_INDEX_KEY` malformed.
    #[error("API_PII_KEYS / API_BLIND_INDEX_KEY: {0}")]
    Crypto(#[from] CryptoError),
    /// `API_MAIL_URL` / `API_MAIL_FROM` unusable.
    #[error(transparent)]
    Mail(#[from] MailConfigError),
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The PII keys, or 503 when none are configured.
    pub fn pii(&self) -> Result<&Pii, ApiError> {
        self.pii.as_ref().ok_or(ApiError::Unavailable {
            store: "pii encryption",
            detail: "API_PII_KEYS / API_BLIND_INDEX_KEY not set".into(),
        })
    }

    /// Sends `m` through the configured transport and logs it in
    /// `email_logs` ([`Mailer::send`]); 503 when no PII keys are configured
    /// (the log keeps the recipient encrypted) or the transport fails.
    pub async fn send_mail(&self, m: Outgoing) -> Result<schemas::mongo::EmailLog, ApiError> {
        self.mailer.send(&self.mongo, self.pii()?, &self.metrics.emails, m).await
    }

    /// Builds the state from `cfg` and connected stores; errors when the
    /// PII keys are set but malformed, or the mail transport is unusable.
    pub fn new(cfg: Config, mongo: mongodb::Database, metrics: Metrics) -> Result<Self, StateError> {
        let mailer = Mailer::new(cfg.mail_url.expose(), &cfg.mail_from)?;
        let pii = if cfg.pii_keys.is_empty() && cfg.blind_index_key.is_empty() {
            None
        } else {
            Some(Pii::new(cfg.pii_keys.expose(), cfg.blind_index_key.expose())?.with_legacy_v1(cfg.pii_legacy_v1))
        };
        let rate = NonZeroU32::new(cfg.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.rate_limit_burst).unwrap_or(rate);
        let operator_hash =
            (!cfg.operator_key.is_empty()).then(|| Sha256::digest(cfg.operator_key.expose().as_bytes()).into());
        let answers = AnswerCache::new(
            std::time::Duration::from_millis(cfg.analytics_cache_ttl_ms),
            cfg.analytics_cache_entries,
            metrics.analytics_cache.clone(),
        );
        Ok(AppState(Arc::new(Inner {
            answers,
            pii,
            mailer,
            mongo,
            ch: cfg.clickhouse.client().with_database(&cfg.clickhouse.database),
            ch_db: cfg.clickhouse.database.clone(),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            request_limits: RequestLimits::new(&cfg),
            auth_limiter: NonZeroU32::new(cfg.auth_rate_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            operator_hash,
            metrics,
            cfg,
        })))
    }
}
