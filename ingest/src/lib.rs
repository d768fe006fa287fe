//! `ingest`: turns the raw topic into analytics rows. A Kafka consumer group
//! member ([`pipeline`]) parses each record with simd-json into
//! [`schemas::event::RawEvent`], validates it (rejects go to the dead-letter
//! topic with their reason), enriches it ([`enrich`]: GeoIP [`geoip`], user
//! agent and bot flag [`device`], anonymised IP, visitor hash and sessions
//! [`visitor`]) and writes [`schemas::clickhouse::EventRow`]s to ClickHouse
//! in batches, committing offsets only after the write.
//!
//! Reads: the raw topic, GeoIP files. Writes: ClickHouse `events`, the
//! dead-letter topic, consumer-group offsets. Serves: the admin listener
//! (127.0.0.1:9181). Scale by running more copies with the same group id, or
//! more group members per process (`INGEST_CONSUMERS`, up to one per core).
//!
//! Guarantees: at-least-once into ClickHouse, counted once (dedup by event
//! id); no record silently dropped; bounded memory under a ClickHouse outage.

pub mod config;
pub mod enrich;
pub mod metrics;
pub mod pipeline;
pub mod visitor;

/// Re-exported from the shared [`lookup`] crate (the edge routes with them too).
pub use lookup::{device, geoip};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::admin::Health;
use common::shutdown::CancellationToken;
use prometheus::Registry;
use rdkafka::consumer::Consumer;

pub use config::Config;

/// A running ingest.
pub struct Ingest {
    /// Admin listener address.
    pub admin_addr: SocketAddr,
    /// Readiness (`kafka`, `clickhouse`, `geoip`).
    pub health: Health,
    /// Metrics.
    pub metrics: metrics::Metrics,
    done: tokio::task::JoinHandle<()>,
}

impl Ingest {
    /// Waits until the consumer loop has stopped (after `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Starts ingest: opens GeoIP, subscribes the consumer, starts the loop,
/// the lag / cache / GeoIP-reload reporter and the admin listener. Errors on
/// bad config, an unreadable GeoIP file, or Kafka client creation.
pub async fn start(cfg: Config, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<Ingest> {
    let metrics = metrics::Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new();
    let paths = cfg.geoip_paths();
    let geoip = if paths.is_empty() {
        health.degraded("geoip", "no database configured: locations are empty");
        geoip::GeoIp::empty()
    } else {
        let g = geoip::GeoIp::open(&paths).context("opening the GeoIP databases (INGEST_GEOIP_DATABASES)")?;
        tracing::info!(types = ?g.database_types(), "geoip databases loaded");
        health.ready("geoip");
        g
    };
    let geoip = Arc::new(geoip);
    let rules = device::BotRules::load(cfg.bot_patterns_file.as_deref())
        .context("loading the bot patterns (INGEST_BOT_PATTERNS_FILE)")?;
    tracing::info!(patterns = rules.len(), file = ?cfg.bot_patterns_file, "bot patterns loaded");
    let ua = Arc::new(device::UaParser::with_rules(cfg.ua_cache_size, rules));
    let dlq: rdkafka::producer::FutureProducer = kafka_util::base_config(&cfg.kafka.brokers, "smartlinks-ingest-dlq")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .context("creating the dead-letter producer")?;
    let limits = pipeline::BatchLimits {
        max_rows: cfg.batch_max_rows,
        max_bytes: cfg.batch_max_bytes,
        max_age: Duration::from_millis(cfg.batch_max_ms),
        retry_max: Duration::from_millis(cfg.retry_max_ms),
        commit_delay: Duration::from_millis(cfg.commit_delay_ms),
    };
    // `INGEST_CONSUMERS` members of the group in this process, each with
    // its own partitions, enrichment state, batches and commits; the
    // per-consumer bounds split the configured ones.
    let n = cfg.consumers.max(1);
    let mut consumers = Vec::with_capacity(n);
    let mut pipes = Vec::with_capacity(n);
    for i in 0..n {
        let consumer: pipeline::IngestConsumer =
            kafka_util::base_config(&cfg.kafka.brokers, &format!("smartlinks-ingest-{i}"))
                .set("group.id", &cfg.group_id)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false")
                .set("session.timeout.ms", "10000")
                .set("max.poll.interval.ms", cfg.max_poll_interval_ms.to_string())
                .set("queued.max.messages.kbytes", (65536 / n).to_string())
                .create_with_context(pipeline::IngestContext)
                .context("creating the Kafka consumer")?;
        consumer.subscribe(&[&cfg.kafka.raw_topic]).context("subscribing to the raw topic")?;
        let consumer = Arc::new(consumer);
        let enricher = enrich::Enricher {
            geoip: geoip.clone(),
            geo_cache: geoip::GeoCache::new(cfg.geoip_cache_size / n),
            ua: ua.clone(),
            visitors: visitor::VisitorHasher::new(cfg.visitor_secret.expose().as_bytes()),
            sessions: visitor::Sessions::new(cfg.session_timeout_ms, cfg.session_capacity / n),
            geoip_errors: metrics.geoip_errors.clone(),
        };
        pipes.push(pipeline::Pipeline::new(
            consumer.clone(),
            dlq.clone(),
            cfg.kafka.dead_letter_topic.clone(),
            cfg.kafka.raw_topic.clone(),
            cfg.clickhouse.client().with_database(&cfg.clickhouse.database),
            enricher,
            cfg.dedup_capacity / n,
            metrics.clone(),
            health.clone(),
            limits,
        ));
        consumers.push(consumer);
    }
    health.ready("kafka");
    health.ready("clickhouse");
    tokio::spawn(report(
        consumers,
        cfg.kafka.raw_topic.clone(),
        geoip,
        ua,
        Duration::from_secs(cfg.geoip_reload_secs),
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let runs: Vec<_> = pipes.into_iter().map(|p| tokio::spawn(p.run(shutdown.clone()))).collect();
    let done = tokio::spawn(async move {
        for r in runs {
            let _ = r.await;
        }
    });
    Ok(Ingest { admin_addr, health, metrics, done })
}

/// Every 5 s: consumer lag per partition (of every consumer of the
/// process) and UA cache counters; every `geoip_reload`: reload changed
/// GeoIP files.
#[allow(clippy::too_many_arguments)]
async fn report(
    consumers: Vec<Arc<pipeline::IngestConsumer>>,
    topic: String,
    geoip: Arc<geoip::GeoIp>,
    ua: Arc<device::UaParser>,
    geoip_reload: Duration,
    metrics: metrics::Metrics,
    health: Health,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last_reload = tokio::time::Instant::now();
    let (mut hits0, mut misses0) = (0, 0);
    loop {
        tokio::select! { _ = shutdown.cancelled() => return, _ = tick.tick() => {} }
        let (hits, misses) = ua.cache_stats();
        metrics.ua_cache.with_label_values(&["hit"]).inc_by(hits - hits0);
        metrics.ua_cache.with_label_values(&["miss"]).inc_by(misses - misses0);
        (hits0, misses0) = (hits, misses);
        let (cs, t, m) = (consumers.clone(), topic.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for c in cs {
                let Ok(assignment) = c.assignment() else { continue };
                let Ok(positions) = c.position() else { continue };
                for el in assignment.elements_for_topic(&t) {
                    let Ok((_, high)) = c.fetch_watermarks(&t, el.partition(), Duration::from_secs(2)) else {
                        continue;
                    };
                    let pos = positions
                        .find_partition(&t, el.partition())
                        .and_then(|p| p.offset().to_raw())
                        .filter(|o| *o >= 0);
                    let lag = pos.map_or(high, |p| (high - p).max(0));
                    m.lag.with_label_values(&[&el.partition().to_string()]).set(lag);
                }
            }
        })
        .await;
        if last_reload.elapsed() >= geoip_reload {
            last_reload = tokio::time::Instant::now();
            let g = geoip.clone();
            match tokio::task::spawn_blocking(move || g.reload_if_changed()).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(reloaded = n, "geoip databases reloaded"),
                Ok(Err(e)) => tracing::error!(error = %e, "geoip reload failed; keeping the previous version"),
                _ => {}
            }
            if !geoip.broken().is_empty() {
                health.degraded("geoip", format!("corrupt database(s) skipped: {:?}", geoip.broken()));
            }
        }
    }
}
