//! Where events go: Kafka when it takes them, the on-disk spool when it
//! does not, and back to Kafka in order when it returns. The request path
//! never waits for the broker.
//!
//! ## States
//! - **direct**: [`EventSink::send`] hands the record to librdkafka's
//!   in-memory queue (`ThreadedProducer::send`, non-blocking) and returns.
//!   librdkafka batches (linger, lz4), retries, and reports each record's
//!   fate to [`SinkContext::delivery`] on its own thread.
//! - **spooling**: entered when a record cannot be queued (queue full), when
//!   a delivery fails (message timeout, broker down), or when librdkafka says
//!   all brokers are down (then the records still queued are purged and come
//!   back as failed deliveries). Failed records and every new event are
//!   appended to the spool, so order is kept. The replayer reads the spool in
//!   order, produces a batch, waits for every acknowledgement, then moves the
//!   spool's cursor. When the spool is empty (checked under its lock, so no
//!   append can slip between), the sink returns to direct.
//!
//! An event is lost only when the spool is full or the disk fails, and then
//! it is counted in `edge_events_dropped_total{cause}`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::ClientContext;

use crate::metrics::{DropCause, Metrics};
use crate::spool::{Spool, SpoolError};

/// Delivery opaque of a live event.
const LIVE: usize = 0;
/// Delivery opaque of a replayed event.
const REPLAY: usize = 1;

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic of raw events.
    pub topic: String,
    /// librdkafka `message.timeout.ms`.
    pub message_timeout_ms: u64,
    /// librdkafka `queue.buffering.max.messages`.
    pub queue_max_messages: u32,
    /// librdkafka `linger.ms`.
    pub linger_ms: u32,
    /// Records per replayed batch.
    pub replay_batch: usize,
}

struct Shared {
    spooling: AtomicBool,
    /// Component `kafka`: degraded from the moment spooling starts until the
    /// spool is drained (set at the transitions, not polled).
    health: common::admin::Health,
    spool: Mutex<Spool>,
    metrics: Metrics,
    /// Set by the error callback; the replayer purges the queue.
    purge_requested: AtomicBool,
    replay_ok: AtomicU64,
    replay_failed: AtomicU64,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter_spooling(&self) {
        if !self.spooling.swap(true, Ordering::AcqRel) {
            self.health.degraded("kafka", "kafka not taking events: spooling to disk");
            tracing::warn!("kafka not taking events: spooling to disk");
        }
    }

    /// Appends to the spool. With `force`, enters spooling first; without,
    /// only appends while spooling and returns false otherwise.
    fn spool_append(&self, key: &[u8], value: &[u8], force: bool) -> bool {
        let mut spool = self.spool();
        if force {
            self.enter_spooling();
        } else if !self.spooling.load(Ordering::Acquire) {
            return false;
        }
        match spool.append(key, value) {
            Ok(()) => self.metrics.spooled.inc(),
            Err(SpoolError::Full { used, max }) => {
                self.metrics.drop_event(DropCause::SpoolFull);
                tracing::error!(used, max, "spool full: event dropped");
            }
            Err(e) => {
                self.metrics.drop_event(DropCause::SpoolIo);
                tracing::error!(error = %e, "spool write failed: event dropped");
            }
        }
        true
    }
}

/// librdkafka callbacks.
pub struct SinkContext {
    shared: Arc<Shared>,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.shared.enter_spooling();
            self.shared.purge_requested.store(true, Ordering::Release);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match (result, opaque) {
            (Ok(_), LIVE) => self.shared.metrics.produced.inc(),
            (Ok(_), _) => {
                self.shared.metrics.produced.inc();
                self.shared.replay_ok.fetch_add(1, Ordering::AcqRel);
            }
            (Err((_, _)), REPLAY) => {
                // Still in the spool: the replayer retries the batch.
                self.shared.replay_failed.fetch_add(1, Ordering::AcqRel);
            }
            (Err((e, msg)), _) => {
                tracing::debug!(error = %e, "delivery failed; spooling");
                self.shared.spool_append(msg.key().unwrap_or_default(), msg.payload().unwrap_or_default(), true);
            }
        }
    }
}

/// The sink handle: cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    producer: Arc<ThreadedProducer<SinkContext>>,
    shared: Arc<Shared>,
    cfg: Arc<SinkConfig>,
}

impl EventSink {
    /// Creates the producer (idempotent, `acks=all`, lz4, batched) over
    /// `spool`. A spool with pending records starts in spooling so that they
    /// go out before new events. Errors when librdkafka rejects the config.
    /// Reports component `kafka` in `health`.
    pub fn new(
        cfg: SinkConfig,
        spool: Spool,
        metrics: Metrics,
        health: common::admin::Health,
    ) -> Result<Self, KafkaError> {
        let pending = !spool.is_empty();
        if pending {
            tracing::info!(
                pending = spool.pending(),
                bytes = spool.used_bytes(),
                "spool holds events from a previous run; replaying first"
            );
            health.degraded("kafka", "replaying the spool of a previous run");
        } else {
            health.ready("kafka");
        }
        let shared = Arc::new(Shared {
            spooling: AtomicBool::new(pending),
            health,
            spool: Mutex::new(spool),
            metrics,
            purge_requested: AtomicBool::new(false),
            replay_ok: AtomicU64::new(0),
            replay_failed: AtomicU64::new(0),
        });
        let producer: ThreadedProducer<SinkContext> = kafka_util::base_config(&cfg.brokers, "smartlinks-edge")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", cfg.queue_max_messages.to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("retry.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            // Same key → partition mapping as the Java client.
            .set("partitioner", "murmur2_random")
            .create_with_context(SinkContext { shared: shared.clone() })?;
        Ok(Self { producer: Arc::new(producer), shared, cfg: Arc::new(cfg) })
    }

    /// Hands one event to Kafka or the spool. Never blocks on the broker;
    /// takes the spool's lock only while spooling.
    pub fn send(&self, key: &[u8], payload: &[u8]) {
        if self.shared.spooling.load(Ordering::Acquire) && self.shared.spool_append(key, payload, false) {
            return;
        }
        let record = BaseRecord::with_opaque_to(&self.cfg.topic, LIVE).key(key).payload(payload);
        if let Err((e, _)) = self.producer.send(record) {
            tracing::debug!(error = %e, "producer refused the event; spooling");
            self.shared.spool_append(key, payload, true);
        }
    }

    /// True while events go to the spool.
    pub fn is_spooling(&self) -> bool {
        self.shared.spooling.load(Ordering::Acquire)
    }

    /// Flushes and fsyncs the spool.
    pub fn sync_spool(&self) {
        if let Err(e) = self.shared.spool().sync() {
            tracing::error!(error = %e, "spool fsync failed");
        }
    }

    fn update_gauges(&self) {
        let spool = self.shared.spool();
        self.shared.metrics.spool_bytes.set(spool.used_bytes() as i64);
        self.shared.metrics.spool_pending.set(spool.pending() as i64);
        drop(spool);
        self.shared.metrics.queue_depth.set(i64::from(self.producer.in_flight_count()));
    }

    /// Replays the spool while spooling, syncs it every `sync_every`, and
    /// updates the gauges, until `shutdown`.
    pub async fn run_background(self, sync_every: Duration, shutdown: common::shutdown::CancellationToken) {
        let mut tick = tokio::time::interval(sync_every.min(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync = tokio::time::Instant::now();
        let mut backoff_until = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.shared.purge_requested.swap(false, Ordering::AcqRel) {
                tracing::warn!("all brokers down: moving queued events to the spool");
                // librdkafka may block briefly while its threads purge.
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.producer.purge(PurgeConfig::default().queue())).await;
            }
            if last_sync.elapsed() >= sync_every {
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.sync_spool()).await;
                last_sync = tokio::time::Instant::now();
            }
            self.update_gauges();
            if !self.is_spooling() {
                continue;
            }
            if tokio::time::Instant::now() < backoff_until {
                continue;
            }
            match self.replay_batch().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(replayed = n, pending = self.shared.spool().pending(), "replayed spooled events");
                }
                Err(reason) => {
                    self.shared.health.degraded("kafka", format!("spooling to disk: {reason}"));
                    backoff_until = tokio::time::Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }

    /// Produces one batch from the spool and commits it when every record is
    /// acknowledged. Returns how many were replayed; `Ok(0)` when the spool
    /// was empty (the sink is then direct again).
    async fn replay_batch(&self) -> Result<usize, String> {
        let me = self.clone();
        let batch = tokio::task::spawn_blocking(move || me.shared.spool().read(me.cfg.replay_batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            let spool = self.shared.spool();
            if spool.is_empty() && self.shared.spooling.swap(false, Ordering::AcqRel) {
                self.shared.health.ready("kafka");
                tracing::info!("spool drained: producing directly again");
            }
            return Ok(0);
        }
        self.shared.replay_ok.store(0, Ordering::Release);
        self.shared.replay_failed.store(0, Ordering::Release);
        let mut sent = 0;
        for rec in &batch {
            let record = BaseRecord::with_opaque_to(&self.cfg.topic, REPLAY).key(&rec.key).payload(&rec.value);
            if self.producer.send(record).is_err() {
                break;
            }
            sent += 1;
        }
        if sent == 0 {
            return Err("producer queue full".into());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.message_timeout_ms + 5_000);
        loop {
            let ok = self.shared.replay_ok.load(Ordering::Acquire);
            let failed = self.shared.replay_failed.load(Ordering::Acquire);
            if ok + failed >= sent as u64 {
                if failed > 0 {
                    return Err(format!("{failed} of {sent} replayed events not acknowledged"));
                }
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err("replay acknowledgements timed out".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let next = batch[sent - 1].next;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.shared.spool().commit(next, sent as u64))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.shared.metrics.replayed.inc_by(sent as u64);
        Ok(sent)
    }

    /// On shutdown: waits up to `grace` for queued events to be acknowledged,
    /// moves what is left to the spool, and fsyncs it.
    pub async fn close(self, grace: Duration) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = me.producer.flush(grace) {
                tracing::warn!(error = %e, left = me.producer.in_flight_count(), "flush incomplete; spooling the rest");
                me.producer.purge(PurgeConfig::default().queue().inflight());
                let _ = me.producer.flush(Duration::from_secs(1));
            }
            me.sync_spool();
            me.update_gauges();
        })
        .await;
        tracing::info!(spool_pending = self.shared.spool().pending(), "event sink closed");
    }
}
