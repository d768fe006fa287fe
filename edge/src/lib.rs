//! `edge`: the server heavy-traffic visitors hit. It resolves host + slug from
//! an in-memory cache kept in sync with MongoDB ([`cache`]), serves the
//! branded landing page ([`page`]) or a 302 ([`server`]), and hands one raw
//! event per view or click ([`schemas::event::RawEvent`]) to Kafka without
//! ever waiting for the broker ([`sink`]); when Kafka cannot take events they
//! go to a bounded on-disk spool ([`spool`]) and are replayed in order.
//!
//! Reads: MongoDB `clients`, `smartlinks`. Writes: Kafka raw topic; the spool
//! directory. Serves: the public listener (default 127.0.0.1:8080) and the
//! admin listener (127.0.0.1:9180: `/metrics`, `/healthz`, `/readyz`).
//!
//! Guarantees: no request waits on Kafka or MongoDB; every view and click
//! yields exactly one event unless the spool is full or the disk fails
//! (counted in `edge_events_dropped_total{cause}`); on SIGTERM it stops
//! accepting, finishes requests, flushes the producer and syncs the spool
//! within `EDGE_SHUTDOWN_GRACE_MS`; on restart it replays the spool first.

pub mod cache;
pub mod client_ip;
pub mod config;
pub mod eid;
pub mod engage;
pub mod i18n;
pub mod icons;
pub mod metrics;
pub mod page;
pub mod routing;
pub mod server;
pub mod sink;
pub mod spool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::admin::Health;
use common::shutdown::CancellationToken;
use prometheus::Registry;

pub use config::Config;

/// A running edge.
pub struct Edge {
    /// Public listener address.
    pub addr: SocketAddr,
    /// Admin listener address.
    pub admin_addr: SocketAddr,
    /// Readiness of its components (`cache`, `kafka`, `geoip`).
    pub health: Health,
    /// Its metrics.
    pub metrics: metrics::Metrics,
    done: tokio::task::JoinHandle<()>,
}

impl Edge {
    /// Waits until the edge has shut down (after `shutdown` is cancelled):
    /// connections closed, producer flushed, spool synced.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Starts the edge: opens the spool, creates the producer, starts the cache
/// refresher, binds both listeners. Returns once listening; the cache loads
/// in the background (503 until it has). Errors: bad config, spool or
/// listener I/O, producer creation.
pub async fn start(cfg: Config, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<Edge> {
    let metrics = metrics::Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new();
    health.not_ready("cache", "loading");
    let trusted = cfg.trusted_proxy_nets()?;
    let forwarded = cfg.forwarded()?;

    let spool = spool::Spool::open(spool::SpoolConfig {
        dir: cfg.spool_dir.clone(),
        max_bytes: cfg.spool_max_bytes,
        segment_bytes: (cfg.spool_max_bytes / 16).clamp(64 * 1024, 64 * 1024 * 1024),
        sync_interval_ms: cfg.spool_sync_ms,
    })
    .with_context(|| format!("opening the spool in {}", cfg.spool_dir.display()))?;
    let sink = sink::EventSink::new(
        sink::SinkConfig {
            brokers: cfg.kafka.brokers.clone(),
            topic: cfg.kafka.raw_topic.clone(),
            message_timeout_ms: cfg.kafka_message_timeout_ms,
            queue_max_messages: cfg.kafka_queue_max_messages,
            linger_ms: cfg.kafka_linger_ms,
            replay_batch: cfg.spool_replay_batch.max(1),
        },
        spool,
        metrics.clone(),
        health.clone(),
    )
    .context("creating the Kafka producer")?;

    let db = cfg.mongo.database().await.context("MongoDB URI")?;
    let cache = cache::Cache::new();
    tokio::spawn(cache::run_refresher(
        cache.clone(),
        db,
        Duration::from_millis(cfg.cache_refresh_ms),
        Duration::from_secs(cfg.cache_full_reload_secs),
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let background =
        tokio::spawn(sink.clone().run_background(Duration::from_millis(cfg.spool_sync_ms), shutdown.clone()));

    let limiter = server::limiter(cfg.rate_limit_per_sec, cfg.rate_limit_burst);
    let eid_key = if cfg.event_id_key.is_empty() {
        [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat()
    } else {
        cfg.event_id_key.expose().as_bytes().to_vec()
    };
    let geoip_paths = lookup::geoip::paths(&cfg.geoip_databases);
    // Only country rules need it: a missing file degrades them (they match
    // no one), never the edge.
    let geoip = match lookup::geoip::GeoIp::open(&geoip_paths) {
        Ok(g) if !geoip_paths.is_empty() => {
            health.ready("geoip");
            g
        }
        Ok(g) => {
            health.degraded("geoip", "no database configured: country rules match no one");
            g
        }
        Err(e) => {
            tracing::warn!(error = %e, "GeoIP databases (EDGE_GEOIP_DATABASES) not loaded: country rules match no one");
            health.degraded("geoip", e.to_string());
            lookup::geoip::GeoIp::empty()
        }
    };
    let state = Arc::new(server::AppState {
        lookups: routing::Lookups { ua: lookup::device::UaParser::new(cfg.ua_cache_size), geoip },
        cache,
        sink: sink.clone(),
        metrics: metrics.clone(),
        trusted,
        forwarded,
        limiter,
        max_uri_bytes: cfg.max_uri_bytes,
        eid_key,
        secure_cookies: cfg.secure_cookies,
    });
    {
        // Once a minute: GeoIP files replaced in place are picked up, and
        // the rate limiter forgets idle addresses.
        let st = state.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! { _ = sd.cancelled() => return, _ = tick.tick() => {} }
                if let Err(e) = st.lookups.geoip.reload_if_changed() {
                    tracing::warn!(error = %e, "GeoIP reload failed; the previous version stays");
                }
                if let Some(l) = &st.limiter {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
            }
        });
    }

    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let limits = common::http::HttpLimits {
        max_header_bytes: cfg.max_header_bytes,
        header_timeout: Duration::from_millis(cfg.header_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        max_connections: cfg.max_connections,
    };
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let refused = metrics.connections_refused.clone();
    let done = tokio::spawn(async move {
        let make = |peer| server::service(state.clone(), peer);
        common::http::serve(listener, make, limits, shutdown, grace, refused).await;
        let _ = background.await;
        sink.close(grace).await;
    });
    Ok(Edge { addr, admin_addr, health, metrics, done })
}
