//! Prometheus metrics of the forwarder (names as constants, one registry
//! per process, bounded labels: platforms, outcomes, fixed causes,
//! partitions of the raw topic; never a tenant or destination id).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Events sent to a destination, by `platform` and `outcome`
/// (`delivered`, `rejected`, `abandoned`): one per event and destination.
pub const EVENTS_TOTAL: &str = "forwarder_events_total";
/// Raw events not forwarded, by `reason` (`engagement`, `no_consent`, `dnt`, `bot`,
/// `no_destination`, `no_client_id`, `unparsable`).
pub const SKIPPED_TOTAL: &str = "forwarder_skipped_total";
/// HTTP attempts, by `platform` and `status` (`2xx`, `4xx`, `429`, `5xx`,
/// `transport`).
pub const REQUESTS_TOTAL: &str = "forwarder_requests_total";
/// Attempts that will be retried, by `platform` and `cause` (`429`,
/// `5xx`, `transient`, `transport`).
pub const RETRIES_TOTAL: &str = "forwarder_retries_total";
/// Requests dead-lettered, by `platform` and `reason` (`rejected`, `abandoned`).
pub const DEAD_LETTERS_TOTAL: &str = "forwarder_dead_letters_total";
/// One HTTP attempt, by `platform`, seconds.
pub const REQUEST_SECONDS: &str = "forwarder_request_duration_seconds";
/// Enabled destinations loaded, by `platform`.
pub const DESTINATIONS: &str = "forwarder_destinations";
/// Destination loads or entries that failed, by `cause` (`mongodb`, `credential`).
pub const DESTINATION_ERRORS_TOTAL: &str = "forwarder_destination_errors_total";
/// Delivery-log writes that failed (the events were sent; only the log lacks them).
pub const DELIVERY_LOG_ERRORS_TOTAL: &str = "forwarder_delivery_log_errors_total";
/// Offset commits that failed (the next commit covers them).
pub const COMMIT_ERRORS_TOTAL: &str = "forwarder_commit_errors_total";
/// Consumer lag per partition (high watermark - position), records.
pub const CONSUMER_LAG: &str = "forwarder_consumer_lag";
/// Click-outs queued for tenants' `clicks.batch` webhooks (one per click and endpoint).
pub const WEBHOOK_CLICKS_TOTAL: &str = "forwarder_webhook_clicks_total";
/// Webhook endpoints loaded that want `clicks.batch`.
pub const CLICK_WEBHOOKS: &str = "forwarder_click_webhooks";

/// Every metric of the forwarder.
#[derive(Clone)]
pub struct Metrics {
    /// See [`EVENTS_TOTAL`].
    pub events: IntCounterVec,
    /// See [`SKIPPED_TOTAL`].
    pub skipped: IntCounterVec,
    /// See [`REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`RETRIES_TOTAL`].
    pub retries: IntCounterVec,
    /// See [`DEAD_LETTERS_TOTAL`].
    pub dead_letters: IntCounterVec,
    /// See [`REQUEST_SECONDS`].
    pub request_seconds: HistogramVec,
    /// See [`DESTINATIONS`].
    pub destinations: IntGaugeVec,
    /// See [`DESTINATION_ERRORS_TOTAL`].
    pub destination_errors: IntCounterVec,
    /// See [`DELIVERY_LOG_ERRORS_TOTAL`].
    pub delivery_log_errors: IntCounter,
    /// See [`COMMIT_ERRORS_TOTAL`].
    pub commit_errors: IntCounter,
    /// See [`CONSUMER_LAG`].
    pub lag: IntGaugeVec,
    /// See [`WEBHOOK_CLICKS_TOTAL`].
    pub webhook_clicks: IntCounter,
    /// See [`CLICK_WEBHOOKS`].
    pub click_webhooks: prometheus::IntGauge,
}

impl Metrics {
    /// Creates and registers every metric in `r`. Errors when a name is
    /// already registered there.
    pub fn register(r: &Registry) -> prometheus::Result<Metrics> {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> prometheus::Result<C> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let m = Metrics {
            events: reg(
                r,
                IntCounterVec::new(
                    Opts::new(EVENTS_TOTAL, "Events sent to a destination, by outcome."),
                    &["platform", "outcome"],
                )?,
            )?,
            skipped: reg(
                r,
                IntCounterVec::new(Opts::new(SKIPPED_TOTAL, "Raw events not forwarded, by reason."), &["reason"])?,
            )?,
            requests: reg(
                r,
                IntCounterVec::new(
                    Opts::new(REQUESTS_TOTAL, "HTTP attempts to the platforms, by status class."),
                    &["platform", "status"],
                )?,
            )?,
            retries: reg(
                r,
                IntCounterVec::new(
                    Opts::new(RETRIES_TOTAL, "Attempts to be retried, by cause."),
                    &["platform", "cause"],
                )?,
            )?,
            dead_letters: reg(
                r,
                IntCounterVec::new(
                    Opts::new(DEAD_LETTERS_TOTAL, "Requests dead-lettered, by reason."),
                    &["platform", "reason"],
                )?,
            )?,
            request_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(REQUEST_SECONDS, "One HTTP attempt to a platform, seconds.")
                        .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                    &["platform"],
                )?,
            )?,
            destinations: reg(
                r,
                IntGaugeVec::new(Opts::new(DESTINATIONS, "Enabled destinations loaded."), &["platform"])?,
            )?,
            destination_errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(DESTINATION_ERRORS_TOTAL, "Destination loads or entries that failed."),
                    &["cause"],
                )?,
            )?,
            delivery_log_errors: reg(
                r,
                IntCounter::new(DELIVERY_LOG_ERRORS_TOTAL, "Delivery-log writes that failed.")?,
            )?,
            commit_errors: reg(r, IntCounter::new(COMMIT_ERRORS_TOTAL, "Offset commits that failed.")?)?,
            lag: reg(
                r,
                IntGaugeVec::new(Opts::new(CONSUMER_LAG, "Consumer lag per partition, records."), &["partition"])?,
            )?,
            webhook_clicks: reg(
                r,
                IntCounter::new(WEBHOOK_CLICKS_TOTAL, "Click-outs queued for tenants' clicks.batch webhooks.")?,
            )?,
            click_webhooks: reg(
                r,
                prometheus::IntGauge::new(CLICK_WEBHOOKS, "Webhook endpoints loaded that want clicks.batch.")?,
            )?,
        };
        // Every label value the forwarder uses exists from the start, so
        // rate() and alerts see zeros, not absent series.
        for p in schemas::conversions::Platform::ALL {
            let p = p.as_str();
            for o in ["delivered", "rejected", "abandoned"] {
                m.events.with_label_values(&[p, o]);
            }
            for s in ["2xx", "4xx", "429", "5xx", "transport"] {
                m.requests.with_label_values(&[p, s]);
            }
            for c in ["429", "5xx", "transient", "transport"] {
                m.retries.with_label_values(&[p, c]);
            }
            for reason in ["rejected", "abandoned"] {
                m.dead_letters.with_label_values(&[p, reason]);
            }
            m.destinations.with_label_values(&[p]);
        }
        for reason in ["engagement", "no_consent", "dnt", "bot", "no_destination", "no_client_id", "unparsable"] {
            m.skipped.with_label_values(&[reason]);
        }
        for c in ["mongodb", "credential"] {
            m.destination_errors.with_label_values(&[c]);
        }
        Ok(m)
    }
}
