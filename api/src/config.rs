//! Settings of the API, from environment variables (prefix `API_`; shared
//! names for ClickHouse and MongoDB).

use std::net::SocketAddr;

use common::config::{ClickHouseConfig, Deployment, MongoConfig, Secret};
use envconfig::Envconfig;

/// Everything the API reads at start.
#[derive(Envconfig, Clone, Debug)]
pub struct Config {
    /// `API_LISTEN`: the HTTP API. Default `127.0.0.1:8081`.
    #[envconfig(from = "API_LISTEN", default = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// `API_ADMIN_LISTEN`: `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9183`.
    #[envconfig(from = "API_ADMIN_LISTEN", default = "127.0.0.1:9183")]
    pub admin_listen: SocketAddr,
    /// `API_OPERATOR_KEY`: the operator's bearer key (creates tenants and
    /// tenant keys, reads everything). Empty (the default) disables it; at
    /// least 24 characters otherwise. Never logged.
    #[envconfig(from = "API_OPERATOR_KEY", default = "")]
    pub operator_key: Secret,
    /// `API_APP_DIR`: the dashboard's build (`web/dist`, made by
    /// `deploy/local/web.sh`), served under `/app/` ([`crate::app`]); a
    /// relative path is from the working directory. Missing: `/app/`
    /// answers 404 and the rest of the API runs. Default `web/dist`.
    #[envconfig(from = "API_APP_DIR", default = "web/dist")]
    pub app_dir: std::path::PathBuf,
    /// `API_HEADER_TIMEOUT_MS`: time a client has to send a request head,
    /// from its first byte (slowloris: answered 408 and closed), ms.
    /// Default 10000.
    #[envconfig(from = "API_HEADER_TIMEOUT_MS", default = "10000")]
    pub header_timeout_ms: u64,
    /// `API_IDLE_TIMEOUT_MS`: time a connection may wait for a request
    /// without sending a byte (a dashboard's keep-alive connection between
    /// calls), ms. Default 60000.
    #[envconfig(from = "API_IDLE_TIMEOUT_MS", default = "60000")]
    pub idle_timeout_ms: u64,
    /// `API_MAX_CONNECTIONS`: connections open at once; more are closed at
    /// accept and counted in `api_connections_refused_total`; 0: no cap.
    /// Default 4096.
    #[envconfig(from = "API_MAX_CONNECTIONS", default = "4096")]
    pub max_connections: usize,
    /// `API_RATE_LIMIT_PER_SECOND`: sustained requests per second per key
    /// (GCRA, `governor`). Default 50.
    #[envconfig(from = "API_RATE_LIMIT_PER_SECOND", default = "50")]
    pub rate_limit_per_second: u32,
    /// `API_RATE_LIMIT_BURST`: requests a key may send at once above the
    /// sustained rate. Default 100.
    #[envconfig(from = "API_RATE_LIMIT_BURST", default = "100")]
    pub rate_limit_burst: u32,
    /// `API_PLAN_STARTER_RPS`: requests per second a tenant on the
    /// `starter` plan may send through all its keys and users together
    /// (GCRA, burst twice as large), on top of each key's own limit;
    /// 429 `plan_rate_limit` beyond. Default 50.
    #[envconfig(from = "API_PLAN_STARTER_RPS", default = "50")]
    pub plan_starter_rps: u32,
    /// `API_PLAN_PROFESSIONAL_RPS`: the same for the `professional` plan. Default 200.
    #[envconfig(from = "API_PLAN_PROFESSIONAL_RPS", default = "200")]
    pub plan_professional_rps: u32,
    /// `API_PLAN_ENTERPRISE_RPS`: the same for the `enterprise` plan. Default 1000.
    #[envconfig(from = "API_PLAN_ENTERPRISE_RPS", default = "1000")]
    pub plan_enterprise_rps: u32,
    /// `API_ROLLUP_GRACE_SECS`: a window is answered from its rollup once the
    /// aggregator's watermark is this far past its end, s; before that, from
    /// raw events. Default 60.
    #[envconfig(from = "API_ROLLUP_GRACE_SECS", default = "60")]
    pub rollup_grace_secs: u32,
    /// `API_BREAKDOWN_TOP_N`: values an analytics breakdown shows per
    /// dimension; the rest is summed under `(other)`, so sums equal the
    /// totals. 0 shows all. Default 100.
    #[envconfig(from = "API_BREAKDOWN_TOP_N", default = "100")]
    pub breakdown_top_n: usize,
    /// `API_ANALYTICS_CACHE_TTL_MS`: how long an analytics answer (overview,
    /// time series, breakdown, export, agency) is served again to the same
    /// principal for the same request, ms; 0 disables the cache. Answers
    /// are at most this much older than the data. Default 5000.
    #[envconfig(from = "API_ANALYTICS_CACHE_TTL_MS", default = "5000")]
    pub analytics_cache_ttl_ms: u64,
    /// `API_ANALYTICS_CACHE_ENTRIES`: most answers kept (least recently
    /// used out first). Default 10000.
    #[envconfig(from = "API_ANALYTICS_CACHE_ENTRIES", default = "10000")]
    pub analytics_cache_entries: u64,
    /// `API_OPS_ALERT_EMAILS`: operators emailed the alerts Alertmanager
    /// posts to `/v1/ops/alerts`, comma-separated. Default empty (alerts
    /// are counted and logged, nobody is emailed).
    #[envconfig(from = "API_OPS_ALERT_EMAILS", default = "")]
    pub ops_alert_emails: String,
    /// `API_LINK_BASE_SCHEME`: scheme of the public link URLs the API shows
    /// (`https` in production, `http` for the local edge). Default `https`.
    #[envconfig(from = "API_LINK_BASE_SCHEME", default = "https")]
    pub link_scheme: String,
    /// `API_PII_KEYS`: AES-256-GCM keys for personal data,
    /// `kid:base64(32 bytes)` comma-separated, the first encrypts (rotation:
    /// put the new key first, keep the old ones). Empty (the default): the
    /// back office (users, CRM) answers 503. Never logged.
    #[envconfig(from = "API_PII_KEYS", default = "")]
    pub pii_keys: Secret,
    /// `API_BLIND_INDEX_KEY`: base64 HMAC key (≥ 32 bytes) of the email
    /// blind index; changing it breaks lookups of stored emails. Never logged.
    #[envconfig(from = "API_BLIND_INDEX_KEY", default = "")]
    pub blind_index_key: Secret,
    /// `API_PII_LEGACY_V1`: read personal-data values written before
    /// ciphertexts were bound to their record and field (`enc:v1:`, before
    /// 2026-12). Default false: they are refused (a v1 value decrypts
    /// wherever it is copied); `api rewrap-pii` rewrites them as bound
    /// values, reading them whatever this says.
    #[envconfig(from = "API_PII_LEGACY_V1", default = "false")]
    pub pii_legacy_v1: bool,
    /// `API_SESSION_TTL_SECS`: lifetime of a login session, s. Default 43200 (12 h).
    #[envconfig(from = "API_SESSION_TTL_SECS", default = "43200")]
    pub session_ttl_secs: u32,
    /// `API_LOGIN_MAX_ATTEMPTS`: failed logins before the account locks. Default 5.
    #[envconfig(from = "API_LOGIN_MAX_ATTEMPTS", default = "5")]
    pub login_max_attempts: i64,
    /// `API_LOGIN_LOCK_SECS`: how long a locked account stays locked, s. Default 900.
    #[envconfig(from = "API_LOGIN_LOCK_SECS", default = "900")]
    pub login_lock_secs: u32,
    /// `API_MAIL_URL`: mail transport, `file:<dir>` (each message an
    /// `.eml` file in `<dir>`) or `smtp(s)://user:pass@host:port`. Default
    /// `file:.state/outbox`. Never logged (it may hold a password).
    #[envconfig(from = "API_MAIL_URL", default = "file:.state/outbox")]
    pub mail_url: Secret,
    /// `API_MAIL_FROM`: sender mailbox. Default `Smartlinks <no-reply@localhost>`.
    #[envconfig(from = "API_MAIL_FROM", default = "Smartlinks <no-reply@localhost>")]
    pub mail_from: String,
    /// `API_APP_URL`: base URL of the back-office app, for the links in
    /// emails (`{url}/verify-email?token=…`). Default `http://127.0.0.1:8081`.
    #[envconfig(from = "API_APP_URL", default = "http://127.0.0.1:8081")]
    pub app_url: String,
    /// `API_VERIFY_EMAIL_TTL_SECS`: lifetime of an email-verification token, s. Default 172800 (48 h).
    #[envconfig(from = "API_VERIFY_EMAIL_TTL_SECS", default = "172800")]
    pub verify_email_ttl_secs: u32,
    /// `API_PASSWORD_RESET_TTL_SECS`: lifetime of a password-reset token, s. Default 3600 (1 h).
    #[envconfig(from = "API_PASSWORD_RESET_TTL_SECS", default = "3600")]
    pub password_reset_ttl_secs: u32,
    /// `API_OVERDUE_SWEEP_SECS`: how often SENT invoices past their due
    /// date are marked OVERDUE, s; 0 disables the background sweep. Default 300.
    #[envconfig(from = "API_OVERDUE_SWEEP_SECS", default = "300")]
    pub overdue_sweep_secs: u32,
    /// `API_AUTH_RATE_PER_MINUTE`: requests per minute per client IP (IPv6
    /// by /64) on the unauthenticated `/v1/auth/*` routes (login, email
    /// verification, password reset), burst as large; 0 disables. Default 20.
    #[envconfig(from = "API_AUTH_RATE_PER_MINUTE", default = "20")]
    pub auth_rate_per_minute: u32,
    /// `API_ALERTS_EVAL_SECS`: how often tenants' tracking health is judged
    /// and due alert notifications are sent, s; 0 disables the notifier.
    /// Default 300.
    #[envconfig(from = "API_ALERTS_EVAL_SECS", default = "300")]
    pub alerts_eval_secs: u32,
    /// `API_ALERTS_SETTLE_SECS`: the windows judged end this long before the
    /// evaluation (events still in flight through Kafka and ingest), s.
    /// Default 300.
    #[envconfig(from = "API_ALERTS_SETTLE_SECS", default = "300")]
    pub alerts_settle_secs: u32,
    /// `API_ALERTS_MAX_ATTEMPTS`: attempts per notification before it is
    /// marked failed. Default 8 (about 2 h with the default backoff).
    #[envconfig(from = "API_ALERTS_MAX_ATTEMPTS", default = "8")]
    pub alerts_max_attempts: u32,
    /// `API_ALERTS_RETRY_BASE_SECS`: wait before the first retry, s; doubled
    /// at each retry, at most an hour. Default 60.
    #[envconfig(from = "API_ALERTS_RETRY_BASE_SECS", default = "60")]
    pub alerts_retry_base_secs: u32,
    /// `API_ALERTS_WEBHOOK_TIMEOUT_MS`: a webhook's whole request (alerts'
    /// and tenant webhooks'), ms. Default 10000.
    #[envconfig(from = "API_ALERTS_WEBHOOK_TIMEOUT_MS", default = "10000")]
    pub alerts_webhook_timeout_ms: u64,
    /// `API_ALERTS_ALLOW_HTTP_WEBHOOKS`: accept `http://` webhook URLs, for
    /// alerts and tenant webhooks (the
    /// local stack's receivers); production keeps https only. Default false.
    #[envconfig(from = "API_ALERTS_ALLOW_HTTP_WEBHOOKS", default = "false")]
    pub alerts_allow_http_webhooks: bool,
    /// `API_WEBHOOKS_SECS`: how often tenant webhook messages due are sent
    /// and daily digests made, s; 0 disables the dispatcher. Default 5.
    #[envconfig(from = "API_WEBHOOKS_SECS", default = "5")]
    pub webhooks_secs: u32,
    /// `API_WEBHOOKS_MAX_ATTEMPTS`: attempts per webhook message before it
    /// is marked failed (a replay sends it again). Default 8.
    #[envconfig(from = "API_WEBHOOKS_MAX_ATTEMPTS", default = "8")]
    pub webhooks_max_attempts: u32,
    /// `API_WEBHOOKS_RETRY_BASE_SECS`: wait before a message's first retry,
    /// s; doubled at each retry, at most an hour. Default 30.
    #[envconfig(from = "API_WEBHOOKS_RETRY_BASE_SECS", default = "30")]
    pub webhooks_retry_base_secs: u32,
    /// `SMARTLINKS_ENV`: `production` (default) refuses insecure settings
    /// at start ([`Config::insecure_settings`]); `local` only warns.
    #[envconfig(from = "SMARTLINKS_ENV", default = "production")]
    pub deployment: Deployment,
    /// ClickHouse endpoint and database.
    #[envconfig(nested)]
    pub clickhouse: ClickHouseConfig,
    /// MongoDB URI and database.
    #[envconfig(nested)]
    pub mongo: MongoConfig,
}

impl Config {
    /// What only a local stack may run with, one line each: links in emails
    /// (`API_APP_URL`) or shown link URLs (`API_LINK_BASE_SCHEME`) over plain
    /// http, and `http://` alert webhooks. See [`Deployment::refuse_insecure`].
    pub fn insecure_settings(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.app_url.starts_with("https://") {
            problems.push("API_APP_URL is not https (password-reset links would travel in clear)".to_string());
        }
        if self.link_scheme != "https" {
            problems.push("API_LINK_BASE_SCHEME is not https".to_string());
        }
        if self.alerts_allow_http_webhooks {
            problems.push("API_ALERTS_ALLOW_HTTP_WEBHOOKS=true posts signed alerts in clear".to_string());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_run_locally_and_the_operator_key_is_never_printed() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(c.listen.port(), 8081);
        assert_eq!(c.admin_listen.port(), 9183);
        assert!(c.operator_key.is_empty());
        let mut env = HashMap::new();
        env.insert("API_OPERATOR_KEY".to_string(), "op-secret-0123456789abcdef".to_string());
        let c = Config::init_from_hashmap(&env).unwrap();
        assert!(!format!("{c:?}").contains("op-secret"));
    }

    #[test]
    fn production_refuses_plain_http_links() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        let problems = c.insecure_settings();
        assert_eq!(problems.len(), 1, "the default app URL is loopback http: {problems:?}");
        assert!(c.deployment.refuse_insecure(problems).is_err());
        let env: HashMap<String, String> = [("API_APP_URL", "https://app.example.com")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(Config::init_from_hashmap(&env).unwrap().insecure_settings().is_empty());
    }
}
