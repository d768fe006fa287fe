//! Prometheus metrics of ingest (names as constants, one registry per
//! process, bounded labels: dead-letter reasons from the schema's fixed set,
//! error kinds, partitions of the raw topic).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Records consumed from the raw topic.
pub const CONSUMED_TOTAL: &str = "ingest_consumed_total";
/// Rows written to ClickHouse.
pub const WRITTEN_TOTAL: &str = "ingest_written_total";
/// Records sent to the dead-letter topic, by reason.
pub const DEAD_LETTER_TOTAL: &str = "ingest_dead_letter_total";
/// Redelivered events skipped (already written or in the pending batch).
pub const DUPLICATES_TOTAL: &str = "ingest_duplicates_total";
/// Rows per ClickHouse batch.
pub const BATCH_ROWS: &str = "ingest_batch_rows";
/// Time to write one batch (all attempts), seconds.
pub const BATCH_WRITE_SECONDS: &str = "ingest_batch_write_seconds";
/// Consumer lag per partition (high watermark - position), records.
pub const CONSUMER_LAG: &str = "ingest_consumer_lag";
/// User-agent cache lookups, by result (`hit`, `miss`).
pub const UA_CACHE_TOTAL: &str = "ingest_ua_cache_total";
/// GeoIP cache lookups by network, by result (`hit`, `miss`), summed over
/// the process's consumers (`lookup::geoip::GeoCache`).
pub const GEOIP_CACHE_TOTAL: &str = "ingest_geoip_cache_total";
/// ClickHouse write errors, by kind (`network`, `timeout`, `server`, `other`).
pub const CLICKHOUSE_ERRORS_TOTAL: &str = "ingest_clickhouse_errors_total";
/// GeoIP lookups that failed on a corrupt database.
pub const GEOIP_ERRORS_TOTAL: &str = "ingest_geoip_errors_total";
/// Offset commits that failed (retried implicitly by the next commit).
pub const COMMIT_ERRORS_TOTAL: &str = "ingest_commit_errors_total";
/// Visit time of the newest event written to ClickHouse, Unix s: with
/// records waiting (`ingest_consumer_lag`), `time()` minus it is how far
/// ingest is behind the edge, in seconds (alert `IngestLagging`).
pub const LAST_WRITTEN_EVENT_SECONDS: &str = "ingest_last_written_event_seconds";

/// Every metric of ingest.
#[derive(Clone)]
pub struct Metrics {
    /// See [`CONSUMED_TOTAL`].
    pub consumed: IntCounter,
    /// See [`WRITTEN_TOTAL`].
    pub written: IntCounter,
    /// See [`DEAD_LETTER_TOTAL`].
    pub dead_letter: IntCounterVec,
    /// See [`DUPLICATES_TOTAL`].
    pub duplicates: IntCounter,
    /// See [`BATCH_ROWS`] and [`BATCH_WRITE_SECONDS`].
    pub batch: Histogram,
    /// See [`CONSUMER_LAG`].
    pub lag: IntGaugeVec,
    /// See [`UA_CACHE_TOTAL`].
    pub ua_cache: IntCounterVec,
    /// See [`GEOIP_CACHE_TOTAL`].
    pub geoip_cache: IntCounterVec,
    /// See [`CLICKHOUSE_ERRORS_TOTAL`].
    pub clickhouse_errors: IntCounterVec,
    /// See [`GEOIP_ERRORS_TOTAL`].
    pub geoip_errors: IntCounter,
    /// See [`COMMIT_ERRORS_TOTAL`].
    pub commit_errors: IntCounter,
    /// Batch write time, seconds.
    pub write_seconds: Histogram,
    /// See [`LAST_WRITTEN_EVENT_SECONDS`].
    pub last_written_event: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric. Errors on a duplicate name.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            consumed: IntCounter::new(CONSUMED_TOTAL, "Records consumed from the raw topic.")?,
            written: IntCounter::new(WRITTEN_TOTAL, "Rows written to ClickHouse.")?,
            dead_letter: IntCounterVec::new(
                Opts::new(DEAD_LETTER_TOTAL, "Records dead-lettered, by reason."),
                &["reason"],
            )?,
            duplicates: IntCounter::new(DUPLICATES_TOTAL, "Redelivered events skipped.")?,
            // Rows per batch: from a trickle (1) to the 50k bound.
            batch: Histogram::with_opts(
                HistogramOpts::new(BATCH_ROWS, "Rows per ClickHouse batch.")
                    .buckets(vec![1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0]),
            )?,
            // Write time: a healthy insert takes ms; retries during an outage take seconds.
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(BATCH_WRITE_SECONDS, "Batch write time including retries, seconds.")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0]),
            )?,
            lag: IntGaugeVec::new(
                Opts::new(CONSUMER_LAG, "Records behind the high watermark, per partition."),
                &["partition"],
            )?,
            ua_cache: IntCounterVec::new(
                Opts::new(UA_CACHE_TOTAL, "User-agent cache lookups, by result."),
                &["result"],
            )?,
            geoip_cache: IntCounterVec::new(
                Opts::new(GEOIP_CACHE_TOTAL, "GeoIP cache lookups by network, by result."),
                &["result"],
            )?,
            clickhouse_errors: IntCounterVec::new(
                Opts::new(CLICKHOUSE_ERRORS_TOTAL, "ClickHouse write errors, by kind."),
                &["kind"],
            )?,
            geoip_errors: IntCounter::new(GEOIP_ERRORS_TOTAL, "GeoIP lookups failed on a corrupt database.")?,
            commit_errors: IntCounter::new(COMMIT_ERRORS_TOTAL, "Failed offset commits.")?,
            last_written_event: IntGauge::new(
                LAST_WRITTEN_EVENT_SECONDS,
                "Visit time of the newest event written to ClickHouse, Unix seconds.",
            )?,
        };
        r.register(Box::new(m.consumed.clone()))?;
        r.register(Box::new(m.written.clone()))?;
        r.register(Box::new(m.dead_letter.clone()))?;
        r.register(Box::new(m.duplicates.clone()))?;
        r.register(Box::new(m.batch.clone()))?;
        r.register(Box::new(m.write_seconds.clone()))?;
        r.register(Box::new(m.lag.clone()))?;
        r.register(Box::new(m.ua_cache.clone()))?;
        r.register(Box::new(m.geoip_cache.clone()))?;
        r.register(Box::new(m.clickhouse_errors.clone()))?;
        r.register(Box::new(m.geoip_errors.clone()))?;
        r.register(Box::new(m.commit_errors.clone()))?;
        r.register(Box::new(m.last_written_event.clone()))?;
        Ok(m)
    }
}

/// The `kind` label of a ClickHouse error.
pub fn clickhouse_error_kind(e: &clickhouse::error::Error) -> &'static str {
    match e {
        clickhouse::error::Error::Network(_) => "network",
        clickhouse::error::Error::TimedOut => "timeout",
        clickhouse::error::Error::BadResponse(_) => "server",
        _ => "other",
    }
}
