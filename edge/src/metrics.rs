//! Prometheus metrics of the edge: names as constants, one registry per
//! process (passed in, so tests can run several edges side by side). Labels
//! are bounded: routes and status codes from fixed sets, drop causes from
//! [`DropCause`]; never a host, slug or IP.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Requests answered, by route and status code.
pub const REQUESTS_TOTAL: &str = "edge_requests_total";
/// Time from request head read to response ready, by route, seconds.
pub const REQUEST_DURATION_SECONDS: &str = "edge_request_duration_seconds";
/// Tenants in the in-memory cache.
pub const CACHE_CLIENTS: &str = "edge_cache_clients";
/// Smartlinks in the in-memory cache.
pub const CACHE_LINKS: &str = "edge_cache_links";
/// Seconds since the cache last synced with MongoDB successfully.
pub const CACHE_AGE_SECONDS: &str = "edge_cache_age_seconds";
/// Cache refreshes that completed (a poll for changes or a full load):
/// a change written to MongoDB before one starts is served after it ends.
pub const CACHE_REFRESHES_TOTAL: &str = "edge_cache_refreshes_total";
/// Failed cache refreshes (MongoDB unreachable or a bad document).
pub const CACHE_REFRESH_ERRORS_TOTAL: &str = "edge_cache_refresh_errors_total";
/// Events acknowledged by Kafka (live and replayed).
pub const EVENTS_PRODUCED_TOTAL: &str = "edge_events_produced_total";
/// Events written to the spool.
pub const EVENTS_SPOOLED_TOTAL: &str = "edge_events_spooled_total";
/// Spooled events delivered to Kafka.
pub const EVENTS_REPLAYED_TOTAL: &str = "edge_events_replayed_total";
/// Events lost, by cause.
pub const EVENTS_DROPPED_TOTAL: &str = "edge_events_dropped_total";
/// Messages in librdkafka's queue (not yet acknowledged).
pub const PRODUCER_QUEUE_DEPTH: &str = "edge_producer_queue_depth";
/// Bytes of the spool on disk.
pub const SPOOL_BYTES: &str = "edge_spool_bytes";
/// Events in the spool not yet delivered.
pub const SPOOL_PENDING: &str = "edge_spool_pending";
/// Requests refused by the per-IP rate limiter.
pub const RATE_LIMITED_TOTAL: &str = "edge_rate_limited_total";
/// Connections closed at accept because `EDGE_MAX_CONNECTIONS` were open.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "edge_connections_refused_total";
/// Engagement beacons (issue #19), by `result` (`recorded`, `no_consent`,
/// `invalid`; [`crate::engage::Outcome`]).
pub const ENGAGEMENTS_TOTAL: &str = "edge_engagements_total";

/// Why an event was lost. The only causes there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The spool reached its byte bound.
    SpoolFull,
    /// The spool could not be written (disk error).
    SpoolIo,
    /// The event could not be serialised (should never happen).
    Serialize,
}

impl DropCause {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::SpoolFull => "spool_full",
            DropCause::SpoolIo => "spool_io",
            DropCause::Serialize => "serialize",
        }
    }
}

/// Every metric of the edge.
#[derive(Clone)]
pub struct Metrics {
    /// See [`REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`REQUEST_DURATION_SECONDS`].
    pub request_duration: HistogramVec,
    /// See [`CACHE_CLIENTS`].
    pub cache_clients: IntGauge,
    /// See [`CACHE_LINKS`].
    pub cache_links: IntGauge,
    /// See [`CACHE_AGE_SECONDS`].
    pub cache_age: IntGauge,
    /// See [`CACHE_REFRESHES_TOTAL`].
    pub cache_refreshes: IntCounter,
    /// See [`CACHE_REFRESH_ERRORS_TOTAL`].
    pub cache_refresh_errors: IntCounter,
    /// See [`EVENTS_PRODUCED_TOTAL`].
    pub produced: IntCounter,
    /// See [`EVENTS_SPOOLED_TOTAL`].
    pub spooled: IntCounter,
    /// See [`EVENTS_REPLAYED_TOTAL`].
    pub replayed: IntCounter,
    /// See [`EVENTS_DROPPED_TOTAL`].
    pub dropped: IntCounterVec,
    /// See [`PRODUCER_QUEUE_DEPTH`].
    pub queue_depth: IntGauge,
    /// See [`SPOOL_BYTES`].
    pub spool_bytes: IntGauge,
    /// See [`SPOOL_PENDING`].
    pub spool_pending: IntGauge,
    /// See [`RATE_LIMITED_TOTAL`].
    pub rate_limited: IntCounter,
    /// See [`CONNECTIONS_REFUSED_TOTAL`].
    pub connections_refused: IntCounter,
    /// See [`ENGAGEMENTS_TOTAL`].
    pub engagements: IntCounterVec,
}

impl Metrics {
    /// Creates every metric and registers it in `registry`. Errors when a
    /// name is already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        // Buckets from 50 µs (a cached redirect) to 1 s: the edge answers from
        // memory, so anything past a few ms is a problem worth seeing.
        let buckets = vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS_TOTAL, "Requests answered, by route and status."),
                &["route", "status"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION_SECONDS, "Request handling time, seconds.").buckets(buckets),
                &["route"],
            )?,
            cache_clients: IntGauge::new(CACHE_CLIENTS, "Tenants in the cache.")?,
            cache_links: IntGauge::new(CACHE_LINKS, "Smartlinks in the cache.")?,
            cache_age: IntGauge::new(CACHE_AGE_SECONDS, "Seconds since the last successful cache sync.")?,
            cache_refreshes: IntCounter::new(CACHE_REFRESHES_TOTAL, "Completed cache refreshes.")?,
            cache_refresh_errors: IntCounter::new(CACHE_REFRESH_ERRORS_TOTAL, "Failed cache refreshes.")?,
            produced: IntCounter::new(EVENTS_PRODUCED_TOTAL, "Events acknowledged by Kafka.")?,
            spooled: IntCounter::new(EVENTS_SPOOLED_TOTAL, "Events written to the spool.")?,
            replayed: IntCounter::new(EVENTS_REPLAYED_TOTAL, "Spooled events delivered to Kafka.")?,
            dropped: IntCounterVec::new(Opts::new(EVENTS_DROPPED_TOTAL, "Events lost, by cause."), &["cause"])?,
            queue_depth: IntGauge::new(PRODUCER_QUEUE_DEPTH, "Messages in the producer queue.")?,
            spool_bytes: IntGauge::new(SPOOL_BYTES, "Bytes of the spool on disk.")?,
            spool_pending: IntGauge::new(SPOOL_PENDING, "Events in the spool not yet delivered.")?,
            rate_limited: IntCounter::new(RATE_LIMITED_TOTAL, "Requests refused by the rate limiter.")?,
            connections_refused: IntCounter::new(
                CONNECTIONS_REFUSED_TOTAL,
                "Connections closed at accept: the connection cap was reached.",
            )?,
            engagements: IntCounterVec::new(
                Opts::new(ENGAGEMENTS_TOTAL, "Engagement beacons, by result."),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.cache_clients.clone()))?;
        registry.register(Box::new(m.cache_links.clone()))?;
        registry.register(Box::new(m.cache_age.clone()))?;
        registry.register(Box::new(m.cache_refreshes.clone()))?;
        registry.register(Box::new(m.cache_refresh_errors.clone()))?;
        registry.register(Box::new(m.produced.clone()))?;
        registry.register(Box::new(m.spooled.clone()))?;
        registry.register(Box::new(m.replayed.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.spool_bytes.clone()))?;
        registry.register(Box::new(m.spool_pending.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        registry.register(Box::new(m.engagements.clone()))?;
        for o in [crate::engage::Outcome::Recorded, crate::engage::Outcome::NoConsent, crate::engage::Outcome::Invalid]
        {
            m.engagements.with_label_values(&[o.as_str()]);
        }
        for cause in [DropCause::SpoolFull, DropCause::SpoolIo, DropCause::Serialize] {
            m.dropped.with_label_values(&[cause.as_str()]);
        }
        Ok(m)
    }

    /// Counts one lost event.
    pub fn drop_event(&self, cause: DropCause) {
        self.dropped.with_label_values(&[cause.as_str()]).inc();
    }
}
