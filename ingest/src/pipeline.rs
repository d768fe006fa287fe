//! The consumer loop: Kafka → parse → enrich → batch → ClickHouse → commit.
//!
//! ## Delivery: at-least-once, counted once
//! Offsets are committed only after the batch holding those events is in
//! ClickHouse (and a rejected record only after its dead-letter copy is
//! acknowledged), so a crash or rebalance can redeliver but never skip. A
//! redelivered event carries the same `event_id`: ingest skips ids it wrote
//! recently (a bounded window, [`crate::config::Config::dedup_capacity`]), and
//! the `events` table (`ReplacingMergeTree` ordered by ... `event_id`, see
//! `schemas::clickhouse`) collapses whatever gets past it, e.g. after a
//! restart; every count downstream reads through that dedup.
//!
//! ## Batching and backpressure
//! A batch is closed when it reaches its row, byte or age bound and handed
//! to the writer task over a one-slot channel, so the consumer fills the
//! next batch while the previous one is written (batches are written and
//! committed in order). While a write fails (ClickHouse slow or down) the
//! writer pauses the assigned partitions and retries the same batch with
//! exponential backoff; the consumer stops as soon as the slot is taken.
//! Memory is bounded by three batches (writing, queued, filling) plus
//! librdkafka's prefetch; nothing is committed past an unwritten event; the
//! group keeps the partitions for up to `max.poll.interval.ms`.
//!
//! ## Dead letters
//! A record that does not parse or validate goes to the dead-letter topic,
//! as received, with headers naming the reason, the error, and its source
//! topic, partition, offset and time. It never blocks its partition: the
//! events after it go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::clickhouse::{EngagementRow, EventRow, ENGAGEMENTS_TABLE, EVENTS_TABLE};
use schemas::topics::dead_letter_headers as dlh;

use crate::enrich::{self, Enricher, Reject};
use crate::metrics::{clickhouse_error_kind, Metrics};

/// Logs rebalances.
pub struct IngestContext;

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        tracing::info!(rebalance = %describe(rebalance), "rebalance starting");
    }
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        tracing::info!(rebalance = %describe(rebalance), "rebalance done");
    }
}

/// `assign [0, 1, 2]`, `revoke [3]`, `error: ...`.
fn describe(r: &rdkafka::consumer::Rebalance<'_>) -> String {
    use rdkafka::consumer::Rebalance;
    let parts = |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>();
    match r {
        Rebalance::Assign(tpl) => format!("assign {:?}", parts(tpl)),
        Rebalance::Revoke(tpl) => format!("revoke {:?}", parts(tpl)),
        Rebalance::Error(e) => format!("error: {e}"),
    }
}

/// The consumer type of ingest.
pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Rows waiting for ClickHouse and the offsets they cover.
#[derive(Default)]
struct Batch {
    rows: Vec<EventRow>,
    /// Engagement beacons (issue #19), written to `engagements` with the rows.
    engagements: Vec<EngagementRow>,
    bytes: usize,
    /// Next offset to commit, per partition.
    offsets: HashMap<i32, i64>,
    started: Option<Instant>,
}

/// Row buffers handed back by the writer once a batch is written, for the
/// next batches: a batch grows to tens of MB in a few hundred ms, and a
/// fresh buffer each time costs its growth (copies, then page faults on
/// fresh memory) again and again. Holds at most [`RowPool::KEEP`] buffers.
#[derive(Clone, Default)]
struct RowPool(Arc<std::sync::Mutex<Vec<Vec<EventRow>>>>);

impl RowPool {
    /// Buffers kept: one being filled while one is written.
    const KEEP: usize = 2;

    /// An empty buffer, recycled when there is one.
    fn take(&self) -> Vec<EventRow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    /// Empties `rows` (dropping them) and keeps the buffer.
    fn give(&self, mut rows: Vec<EventRow>) {
        rows.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < Self::KEEP {
            pool.push(rows);
        }
    }
}

/// Bounds of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Rows.
    pub max_rows: usize,
    /// Bytes (approximate).
    pub max_bytes: usize,
    /// Age of the first record.
    pub max_age: Duration,
    /// Longest wait between write attempts.
    pub retry_max: Duration,
    /// Wait between a batch's write and its commit (fault injection,
    /// `INGEST_COMMIT_DELAY_MS`; zero in production).
    pub commit_delay: Duration,
}

/// One consumer's loop and state.
pub struct Pipeline {
    /// The consumer (shared with the lag reporter).
    pub consumer: Arc<IngestConsumer>,
    /// Producer of dead letters.
    pub dlq: FutureProducer,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Raw topic (for commits).
    pub topic: String,
    /// ClickHouse client with the database set.
    pub clickhouse: clickhouse::Client,
    /// Enrichment state.
    pub enricher: Enricher,
    /// The record parser (its buffers reused).
    pub parser: enrich::Parser,
    /// Recently written event ids.
    pub recent: quick_cache::unsync::Cache<uuid::Uuid, ()>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness (`clickhouse`).
    pub health: common::admin::Health,
    /// Batch bounds.
    pub limits: BatchLimits,
    batch: Batch,
    pool: RowPool,
    /// GeoIP cache (hits, misses) already added to the metrics.
    geo_reported: (u64, u64),
}

/// Writes closed batches to ClickHouse and commits their offsets, in order.
struct Writer {
    consumer: Arc<IngestConsumer>,
    topic: String,
    clickhouse: clickhouse::Client,
    metrics: Metrics,
    health: common::admin::Health,
    retry_max: Duration,
    commit_delay: Duration,
    pool: RowPool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    /// A pipeline over a subscribed consumer.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer: Arc<IngestConsumer>,
        dlq: FutureProducer,
        dlq_topic: String,
        topic: String,
        clickhouse: clickhouse::Client,
        enricher: Enricher,
        dedup_capacity: usize,
        metrics: Metrics,
        health: common::admin::Health,
        limits: BatchLimits,
    ) -> Self {
        Self {
            consumer,
            dlq,
            dlq_topic,
            topic,
            clickhouse,
            enricher,
            parser: enrich::Parser::default(),
            recent: quick_cache::unsync::Cache::new(dedup_capacity.max(16)),
            metrics,
            health,
            limits,
            batch: Batch::default(),
            pool: RowPool::default(),
            geo_reported: (0, 0),
        }
    }

    /// Runs until `shutdown`: then hands over what is batched, lets the
    /// writer finish (a few seconds at most) and commits synchronously.
    pub async fn run(mut self, shutdown: common::shutdown::CancellationToken) {
        let writer = Arc::new(Writer {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
            clickhouse: self.clickhouse.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            retry_max: self.limits.retry_max,
            commit_delay: self.limits.commit_delay,
            pool: self.pool.clone(),
        });
        // The writer keeps retrying until `writer_stop`: shutdown + 5 s.
        let writer_stop = common::shutdown::CancellationToken::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let writer_task = tokio::spawn(writer.run(rx, writer_stop.clone()));
        // Its own handle: a record borrowed from it stays valid while
        // `handle` takes `self` mutably (no copy of the record).
        let consumer = self.consumer.clone();
        loop {
            let wait = match self.batch.started {
                Some(t) => self.limits.max_age.saturating_sub(t.elapsed()),
                None => self.limits.max_age,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(wait, consumer.recv()) => match r {
                    Err(_) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(Ok(msg)) => {
                        self.handle(&msg, &shutdown).await;
                        // While records are queued, `recv` is always ready
                        // and this loop would keep its worker thread: the
                        // writer task (woken on the same worker) and the
                        // other consumers' tasks would wait behind it. Each
                        // record spends a unit of tokio's cooperative budget,
                        // so the loop yields every 128 records.
                        tokio::task::consume_budget().await;
                    }
                },
            }
            if self.should_flush() {
                self.report_geo_cache();
                let next = Batch { rows: self.pool.take(), ..Batch::default() };
                let batch = std::mem::replace(&mut self.batch, next);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = tx.send(batch) => if r.is_err() { break },
                }
            }
        }
        let last = std::mem::take(&mut self.batch);
        if !last.offsets.is_empty() {
            let _ = tx.try_send(last);
        }
        drop(tx);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            writer_stop.cancel();
        });
        let _ = writer_task.await;
        tracing::info!("ingest consumer stopped");
    }

    /// Adds the GeoIP cache's hits and misses since the last call to
    /// `ingest_geoip_cache_total` (once per batch: the cache itself keeps
    /// plain counters, no atomic per event).
    fn report_geo_cache(&mut self) {
        let (hits, misses) = self.enricher.geo_cache.stats();
        let (h0, m0) = std::mem::replace(&mut self.geo_reported, (hits, misses));
        self.metrics.geoip_cache.with_label_values(&["hit"]).inc_by(hits - h0);
        self.metrics.geoip_cache.with_label_values(&["miss"]).inc_by(misses - m0);
    }

    fn should_flush(&self) -> bool {
        let b = &self.batch;
        b.rows.len() >= self.limits.max_rows
            || b.bytes >= self.limits.max_bytes
            || b.started.is_some_and(|t| t.elapsed() >= self.limits.max_age)
    }

    async fn handle(&mut self, msg: &impl Message, shutdown: &common::shutdown::CancellationToken) {
        self.metrics.consumed.inc();
        self.batch.started.get_or_insert_with(Instant::now);
        let value = msg.payload().unwrap_or_default();
        let now = now_ms();
        match self.parser.parse(value, now) {
            Ok(event) => {
                let id = event.event_id;
                if self.recent.get(&id).is_some() {
                    self.metrics.duplicates.inc();
                } else if let Some(report) = event.engagement {
                    let row = self.enricher.engagement(&event, &report);
                    self.batch.bytes += 64 + row.tenant_id.len() + row.link_id.len();
                    self.batch.engagements.push(row);
                    self.recent.insert(id, ());
                } else {
                    let row = self.enricher.enrich(event, (now / 1000) as u32);
                    self.batch.bytes += enrich::row_bytes(&row);
                    self.batch.rows.push(row);
                    self.recent.insert(id, ());
                }
            }
            Err(reject) => {
                if !self.dead_letter(msg, &reject, shutdown).await {
                    return; // not acknowledged: its offset must not be committed
                }
            }
        }
        self.batch.offsets.insert(msg.partition(), msg.offset() + 1);
    }

    /// Produces the record to the dead-letter topic, retrying until Kafka
    /// acknowledges it. Returns false when shutdown came first.
    async fn dead_letter(
        &mut self,
        msg: &impl Message,
        reject: &Reject,
        shutdown: &common::shutdown::CancellationToken,
    ) -> bool {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let ts = now_ms().to_string();
        let error = schemas::event::truncate_utf8(&reject.error, 1024).to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: dlh::REASON, value: Some(reject.reason) })
            .insert(Header { key: dlh::ERROR, value: Some(&error) })
            .insert(Header { key: dlh::TOPIC, value: Some(msg.topic()) })
            .insert(Header { key: dlh::PARTITION, value: Some(&partition) })
            .insert(Header { key: dlh::OFFSET, value: Some(&offset) })
            .insert(Header { key: dlh::TS_MS, value: Some(&ts) });
        let produce = || async {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.dlq_topic).payload(msg.payload().unwrap_or_default()).headers(headers.clone());
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            self.dlq.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e)
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let sent =
            produce.retry(backoff).notify(|e, _| tracing::warn!(error = %e, "dead-letter produce failed; retrying"));
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = sent => if r.is_err() { return false },
        }
        self.metrics.dead_letter.with_label_values(&[reject.reason]).inc();
        tracing::debug!(
            reason = reject.reason,
            partition = msg.partition(),
            offset = msg.offset(),
            "record dead-lettered"
        );
        true
    }
}

impl Writer {
    /// Writes batches as they come until the channel closes or `stop`; then
    /// commits the last written offsets synchronously.
    async fn run(
        self: Arc<Self>,
        mut rx: tokio::sync::mpsc::Receiver<Batch>,
        stop: common::shutdown::CancellationToken,
    ) {
        let mut last: Option<TopicPartitionList> = None;
        while let Some(batch) = rx.recv().await {
            match self.flush(batch, &stop).await {
                Some(tpl) => last = Some(tpl),
                None => break,
            }
        }
        if let Some(tpl) = last {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final offset commit failed");
            }
        }
    }

    /// Inserts `rows` into `events`, then `engagements` into its table
    /// (a retry after the second failed inserts the rows again: they
    /// collapse by their key like any redelivery).
    async fn write(&self, rows: &[EventRow], engagements: &[EngagementRow]) -> Result<(), clickhouse::error::Error> {
        self.insert(EVENTS_TABLE, rows).await?;
        self.insert(ENGAGEMENTS_TABLE, engagements).await
    }

    /// One `INSERT` of `rows` into `table` (none when empty).
    async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[T],
    ) -> Result<(), clickhouse::error::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .clickhouse
            .insert::<T>(table)
            .await?
            .with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(30)));
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Writes the batch (retrying with backoff, partitions paused while it
    /// fails) and commits its offsets. Returns what it committed, or `None`
    /// when `stop` came before the write succeeded (nothing committed).
    async fn flush(&self, mut batch: Batch, stop: &common::shutdown::CancellationToken) -> Option<TopicPartitionList> {
        if !batch.rows.is_empty() || !batch.engagements.is_empty() {
            let started = Instant::now();
            let mut paused: Option<TopicPartitionList> = None;
            let count = batch.rows.len() + batch.engagements.len();
            // One attempt at a time holds the rows (the lock is never contended).
            let rows = tokio::sync::Mutex::new((&mut batch.rows, &mut batch.engagements));
            let write = || async {
                let mut rows = rows.lock().await;
                // `ingested_at` is the time of the write that lands: the
                // aggregator finds new rows by it, even after an outage.
                let now = (now_ms() / 1000) as u32;
                rows.0.iter_mut().for_each(|r| r.ingested_at = now);
                rows.1.iter_mut().for_each(|r| r.ingested_at = now);
                let (events, engagements) = &*rows;
                self.write(events, engagements).await
            };
            let backoff = ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(self.retry_max)
                .without_max_times();
            let written = write.retry(backoff).notify(|e, _| {
                self.metrics.clickhouse_errors.with_label_values(&[clickhouse_error_kind(e)]).inc();
                self.health.not_ready("clickhouse", format!("write failing: {e}"));
                if paused.is_none() {
                    tracing::warn!(error = %e, rows = count, "clickhouse write failed; pausing consumption and retrying");
                    if let Ok(tpl) = self.consumer.assignment() {
                        let _ = self.consumer.pause(&tpl);
                        paused = Some(tpl);
                    }
                }
            });
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = written => {}
            }
            if let Some(tpl) = paused {
                let _ = self.consumer.resume(&tpl);
                tracing::info!(after = ?started.elapsed(), "clickhouse write succeeded; consumption resumed");
            }
            self.health.ready("clickhouse");
            self.metrics.written.inc_by((batch.rows.len() + batch.engagements.len()) as u64);
            if tracing::enabled!(tracing::Level::DEBUG) {
                for r in &batch.rows {
                    tracing::debug!(event_id = %r.event_id, tenant = %r.tenant_id, link = %r.link_id, "event written");
                }
            }
            if let Some(newest) = batch.rows.iter().map(|r| r.ts_ms / 1000).max() {
                let g = &self.metrics.last_written_event;
                g.set(g.get().max(newest as i64));
            }
            self.metrics.batch.observe(batch.rows.len() as f64);
            self.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
            if !self.commit_delay.is_zero() {
                // Written, not yet committed: what a crash here leaves.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(self.commit_delay) => {}
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in &batch.offsets {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*next));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                // A revoked partition's commit fails; its events are
                // redelivered to the new owner and deduplicated.
                self.metrics.commit_errors.inc();
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
        self.pool.give(batch.rows);
        Some(tpl)
    }
}
