//! Settings of the forwarder, from environment variables (prefix
//! `FORWARDER_` for its own; shared names for Kafka and MongoDB, see
//! `common::config`). Defaults run on the local stack.

use std::net::SocketAddr;

use common::config::{Deployment, KafkaConfig, MongoConfig, Secret};
use envconfig::Envconfig;

/// Everything the forwarder reads at start.
#[derive(Envconfig, Clone, Debug)]
pub struct Config {
    /// `FORWARDER_ADMIN_LISTEN`: `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9184`.
    #[envconfig(from = "FORWARDER_ADMIN_LISTEN", default = "127.0.0.1:9184")]
    pub admin_listen: SocketAddr,
    /// `FORWARDER_GROUP_ID`: Kafka consumer group, its own offsets on the
    /// raw topic. Default `smartlinks-forwarder` ([`schemas::topics::FORWARDER_GROUP`]).
    #[envconfig(from = "FORWARDER_GROUP_ID", default = "smartlinks-forwarder")]
    pub group_id: String,
    /// `FORWARDER_START_AT`: where a new consumer group starts on the raw
    /// topic, `latest` (default: conversions are sent from now on, not the
    /// topic's 7 days of history) or `earliest`.
    #[envconfig(from = "FORWARDER_START_AT", default = "latest")]
    pub start_at: String,
    /// `FORWARDER_PII_KEYS`: the api's `API_PII_KEYS` (`kid:base64key,...`),
    /// which encrypt the destinations' credentials. Empty: nothing can be
    /// sent (readiness shows `credentials` not ready).
    #[envconfig(from = "FORWARDER_PII_KEYS", default = "")]
    pub pii_keys: Secret,
    /// `FORWARDER_REFRESH_SECS`: how often the destinations are reloaded
    /// from MongoDB, s: a destination created or changed applies to events
    /// consumed after it. Default 10.
    #[envconfig(from = "FORWARDER_REFRESH_SECS", default = "10")]
    pub refresh_secs: u64,
    /// `FORWARDER_META_URL`: base URL of the Meta Graph API. Default `https://graph.facebook.com`.
    #[envconfig(from = "FORWARDER_META_URL", default = "https://graph.facebook.com")]
    pub meta_url: String,
    /// `FORWARDER_META_API_VERSION`: Graph API version in the path. Default `v21.0`.
    #[envconfig(from = "FORWARDER_META_API_VERSION", default = "v21.0")]
    pub meta_api_version: String,
    /// `FORWARDER_GA4_URL`: base URL of the GA4 Measurement Protocol.
    /// Default `https://www.google-analytics.com` (`https://region1.google-analytics.com` keeps data in the EU).
    #[envconfig(from = "FORWARDER_GA4_URL", default = "https://www.google-analytics.com")]
    pub ga4_url: String,
    /// `FORWARDER_TIKTOK_URL`: base URL of the TikTok Business API. Default `https://business-api.tiktok.com`.
    #[envconfig(from = "FORWARDER_TIKTOK_URL", default = "https://business-api.tiktok.com")]
    pub tiktok_url: String,
    /// `FORWARDER_BATCH_MAX_EVENTS`: raw events read before the round's
    /// requests are sent and its offsets committed. Default 2000.
    #[envconfig(from = "FORWARDER_BATCH_MAX_EVENTS", default = "2000")]
    pub batch_max_events: usize,
    /// `FORWARDER_BATCH_MAX_MS`: ... or when the round's first event is this
    /// old, ms: the delay a platform sees an event with. Default 1000.
    #[envconfig(from = "FORWARDER_BATCH_MAX_MS", default = "1000")]
    pub batch_max_ms: u64,
    /// `FORWARDER_CONCURRENCY`: requests in flight to one destination
    /// (GA4 takes one per visitor). Default 8.
    #[envconfig(from = "FORWARDER_CONCURRENCY", default = "8")]
    pub concurrency: usize,
    /// `FORWARDER_REQUEST_TIMEOUT_MS`: one HTTP attempt, ms. Default 10000.
    #[envconfig(from = "FORWARDER_REQUEST_TIMEOUT_MS", default = "10000")]
    pub request_timeout_ms: u64,
    /// `FORWARDER_MAX_ATTEMPTS`: attempts of one request (429, 5xx,
    /// timeouts are retried) before it is dead-lettered as `abandoned`. Default 6.
    #[envconfig(from = "FORWARDER_MAX_ATTEMPTS", default = "6")]
    pub max_attempts: usize,
    /// `FORWARDER_RETRY_MIN_MS`: first wait between attempts (doubling,
    /// with jitter, at least the platform's `Retry-After`), ms. Default 500.
    #[envconfig(from = "FORWARDER_RETRY_MIN_MS", default = "500")]
    pub retry_min_ms: u64,
    /// `FORWARDER_RETRY_MAX_MS`: longest wait between attempts, ms. Default 30000.
    #[envconfig(from = "FORWARDER_RETRY_MAX_MS", default = "30000")]
    pub retry_max_ms: u64,
    /// `FORWARDER_DESTINATION_RPS`: requests per second to one destination
    /// (burst of twice as many), below the platforms' quotas (GA4 takes a
    /// request per visitor, 25 events at most). Default 100.
    #[envconfig(from = "FORWARDER_DESTINATION_RPS", default = "100")]
    pub destination_rps: u32,
    /// `SMARTLINKS_ENV`: `production` (default) refuses insecure settings
    /// at start ([`Config::insecure_settings`]); `local` only warns.
    #[envconfig(from = "SMARTLINKS_ENV", default = "production")]
    pub deployment: Deployment,
    /// Kafka brokers and topics.
    #[envconfig(nested)]
    pub kafka: KafkaConfig,
    /// MongoDB (destinations, delivery log).
    #[envconfig(nested)]
    pub mongo: MongoConfig,
}

impl Config {
    /// What only a local stack may run with, one line each: a platform URL
    /// that is not https (credentials and visitors' IPs would travel in
    /// clear). See [`Deployment::refuse_insecure`].
    pub fn insecure_settings(&self) -> Vec<String> {
        [
            ("FORWARDER_META_URL", &self.meta_url),
            ("FORWARDER_GA4_URL", &self.ga4_url),
            ("FORWARDER_TIKTOK_URL", &self.tiktok_url),
        ]
        .into_iter()
        .filter(|(_, url)| !url.starts_with("https://"))
        .map(|(name, url)| format!("{name} is not https ({url})"))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_the_platforms_https_endpoints_and_plain_http_is_refused_outside_local_mode() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        assert!(c.insecure_settings().is_empty());
        assert_eq!(c.group_id, schemas::topics::FORWARDER_GROUP);
        let env: HashMap<String, String> = [("FORWARDER_GA4_URL".to_string(), "http://127.0.0.1:1".to_string())].into();
        let c = Config::init_from_hashmap(&env).unwrap();
        assert_eq!(c.insecure_settings().len(), 1);
        assert!(c.deployment.refuse_insecure(c.insecure_settings()).is_err());
    }
}
