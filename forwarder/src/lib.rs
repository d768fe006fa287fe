//! `forwarder`: server-side conversions (issue #19, seed 002's dual engine
//! carried to the ad platforms). A Kafka consumer group of its own on the
//! raw topic ([`pipeline`]) sends each tenant's consented views and
//! click-outs to the destinations it configured through the api
//! (`/v1/destinations`): Meta Conversions API, GA4 Measurement Protocol,
//! TikTok Events API ([`platforms`]), with the same event ids as the
//! page's pixels so the platforms count each visit once.
//!
//! Reads: the raw topic, MongoDB `conversion_destinations` (credentials
//! decrypted with the api's keys, [`destinations`]). Writes: the
//! platforms (HTTPS), the conversion dead-letter topic, MongoDB
//! `conversion_deliveries` (the delivery log, kept 30 days), its
//! consumer-group offsets, and the tenants' `clicks.batch` webhook
//! messages (MongoDB `webhook_deliveries`, which the api signs and sends).
//! Serves: the admin listener (127.0.0.1:9184).
//!
//! Guarantees: at-least-once per destination (a round's offsets are
//! committed after each of its requests was delivered or dead-lettered);
//! nothing for a visitor without consent or with `DNT`/`Sec-GPC`;
//! per-destination rate limits, retries with backoff ([`sender`]); every
//! outcome counted ([`metrics`]).

pub mod config;
pub mod destinations;
pub mod metrics;
pub mod pipeline;
pub mod platforms;
pub mod sender;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use bson::doc;
use common::admin::Health;
use common::shutdown::CancellationToken;
use prometheus::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use schemas::conversions::{DeliveryLog, Platform, DELIVERY_LOG_DAYS};
use schemas::mongo::collections;

pub use config::Config;

/// A running forwarder.
pub struct Forwarder {
    /// Admin listener address.
    pub admin_addr: SocketAddr,
    /// Readiness (`kafka`, `mongodb`).
    pub health: Health,
    /// Metrics.
    pub metrics: metrics::Metrics,
    done: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Waits until the consumer loop has stopped (after `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Starts the forwarder: the destinations refresher, the consumer (which
/// waits for the first load of the destinations), the lag reporter and the
/// admin listener. Errors on bad config (no `FORWARDER_PII_KEYS`, a bad
/// MongoDB URI) or Kafka client creation.
pub async fn start(cfg: Config, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<Forwarder> {
    let metrics = metrics::Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new();
    if cfg.pii_keys.is_empty() {
        anyhow::bail!(
            "FORWARDER_PII_KEYS is empty: the destinations' credentials cannot be read (set the api's API_PII_KEYS)"
        );
    }
    // The forwarder only decrypts: the blind index (emails) is never used
    // here, so its key is a throwaway.
    let mut index_key = [0u8; 32];
    getrandom::fill(&mut index_key).context("no randomness")?;
    let pii = crypto::Pii::new(cfg.pii_keys.expose(), &base64::engine::general_purpose::STANDARD.encode(index_key))
        .context("FORWARDER_PII_KEYS")?;
    let db = cfg.mongo.database().await.context("MongoDB URI")?;
    let destinations = destinations::Destinations::default();
    health.not_ready("mongodb", "destinations not loaded yet");
    tokio::spawn(refresh(
        db.clone(),
        pii,
        destinations.clone(),
        Duration::from_secs(cfg.refresh_secs.max(1)),
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let consumer: StreamConsumer = kafka_util::base_config(&cfg.kafka.brokers, "smartlinks-forwarder")
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", &cfg.start_at)
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .create()
        .context("creating the Kafka consumer")?;
    consumer.subscribe(&[&cfg.kafka.raw_topic]).context("subscribing to the raw topic")?;
    let consumer = Arc::new(consumer);
    let dlq: rdkafka::producer::FutureProducer =
        kafka_util::base_config(&cfg.kafka.brokers, "smartlinks-forwarder-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the dead-letter producer")?;
    let sender = sender::Sender::new(
        sender::Policy {
            max_attempts: cfg.max_attempts,
            retry_min: Duration::from_millis(cfg.retry_min_ms),
            retry_max: Duration::from_millis(cfg.retry_max_ms),
            per_destination_rps: cfg.destination_rps,
            timeout: Duration::from_millis(cfg.request_timeout_ms),
        },
        metrics.clone(),
    )
    .context("creating the HTTP client")?;
    let pipe = pipeline::Pipeline {
        consumer: consumer.clone(),
        destinations,
        sender: Arc::new(sender),
        endpoints: platforms::Endpoints {
            meta: cfg.meta_url.clone(),
            meta_version: cfg.meta_api_version.clone(),
            ga4: cfg.ga4_url.clone(),
            tiktok: cfg.tiktok_url.clone(),
        },
        ua: Arc::new(lookup::device::UaParser::new(20_000)),
        dlq,
        dlq_topic: cfg.kafka.conversion_dead_letter_topic.clone(),
        log: db.collection::<DeliveryLog>(collections::CONVERSION_DELIVERIES),
        webhooks: db.collection(collections::WEBHOOK_DELIVERIES),
        metrics: metrics.clone(),
        limits: pipeline::RoundLimits {
            max_events: cfg.batch_max_events.max(1),
            max_age: Duration::from_millis(cfg.batch_max_ms),
            concurrency: cfg.concurrency,
        },
    };
    health.ready("kafka");
    tokio::spawn(report_lag(consumer, cfg.kafka.raw_topic.clone(), metrics.clone(), shutdown.clone()));
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let done = tokio::spawn(pipe.run(shutdown));
    Ok(Forwarder { admin_addr, health, metrics, done })
}

/// Every `every`: reloads the destinations (keeping the previous ones
/// when MongoDB fails); every hour, deletes delivery-log entries older
/// than [`DELIVERY_LOG_DAYS`].
async fn refresh(
    db: mongodb::Database,
    pii: crypto::Pii,
    destinations: destinations::Destinations,
    every: Duration,
    metrics: metrics::Metrics,
    health: Health,
    shutdown: CancellationToken,
) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        match destinations::load(&db, &pii).await {
            Ok(loaded) => {
                for p in Platform::ALL {
                    metrics.destinations.with_label_values(&[p.as_str()]).set(loaded.count(p) as i64);
                }
                metrics.destination_errors.with_label_values(&["credential"]).inc_by(loaded.undecryptable.len() as u64);
                metrics.click_webhooks.set(loaded.click_hooks.values().map(Vec::len).sum::<usize>() as i64);
                destinations.store(loaded);
                health.ready("mongodb");
            }
            Err(e) => {
                metrics.destination_errors.with_label_values(&["mongodb"]).inc();
                tracing::warn!(error = %e, "loading the destinations failed; keeping the previous ones");
                if destinations.snapshot().ready {
                    health.degraded("mongodb", format!("destinations not refreshed: {e}"));
                }
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            let cutoff =
                bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - DELIVERY_LOG_DAYS * 86_400_000);
            match db
                .collection::<DeliveryLog>(collections::CONVERSION_DELIVERIES)
                .delete_many(doc! { "at": { "$lt": cutoff } })
                .await
            {
                Ok(r) => {
                    last_prune = Some(tokio::time::Instant::now());
                    if r.deleted_count > 0 {
                        tracing::info!(deleted = r.deleted_count, "old delivery-log entries deleted");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pruning the delivery log failed; retrying"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Every 5 s: the consumer's lag per assigned partition.
async fn report_lag(consumer: Arc<StreamConsumer>, topic: String, m: metrics::Metrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! { _ = shutdown.cancelled() => return, _ = tick.tick() => {} }
        let (c, t, m) = (consumer.clone(), topic.clone(), m.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let (Ok(assignment), Ok(positions)) = (c.assignment(), c.position()) else { return };
            for el in assignment.elements_for_topic(&t) {
                let Ok((_, high)) = c.fetch_watermarks(&t, el.partition(), Duration::from_secs(2)) else { continue };
                let pos =
                    positions.find_partition(&t, el.partition()).and_then(|p| p.offset().to_raw()).filter(|o| *o >= 0);
                m.lag.with_label_values(&[&el.partition().to_string()]).set(pos.map_or(high, |p| (high - p).max(0)));
            }
        })
        .await;
    }
}
