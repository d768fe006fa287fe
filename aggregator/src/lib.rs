//! `aggregator`: the service that keeps the rollups current. It runs the
//! [`rollup`] library on a loop: hourly and daily rollups of the
//! deduplicated events in ClickHouse, written to the ClickHouse `rollups` table and
//! mirrored into MongoDB `analytics_hourly` / `analytics_daily`, plus the
//! cached counters on `smartlinks.metadata` (totalViews, uniqueVisitors,
//! conversionRate).
//!
//! Each pass finds the hours that received rows since the last pass (by the
//! rows' write time `ingested_at`, minus an overlap), re-rolls those hours
//! and their days whole, and moves its watermark, kept in MongoDB
//! `aggregator_state`, so a restart resumes where it stopped. Late events
//! land in old hours and make those windows dirty again; re-rolling is
//! idempotent.
//!
//! Once a day (and at start) it applies each tenant's retention
//! ([`rollup::lifecycle::apply_retention`]).
//!
//! Several aggregators may run (issue #15): one works, holding a leader
//! lease in MongoDB `leases` ([`common::mongo::Lease`],
//! `AGGREGATOR_LEASE_SECS`); the others are ready but idle
//! (`aggregator_leader` 0) and take over within the lease's TTL (and one
//! try) when the leader dies, at their next try when it stops cleanly.
//!
//! Reads: ClickHouse `events`. Writes: ClickHouse `rollups`, MongoDB
//! rollups, `smartlinks.metadata` counters, `aggregator_state`. Serves: the
//! admin listener (127.0.0.1:9182).

pub mod config;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::admin::Health;
use common::mongo::Lease;
use common::shutdown::CancellationToken;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

pub use config::Config;
use rollup::{lifecycle, now_s, PassConfig, PassReport, RollupError, Stores};
use schemas::mongo::collections;

/// Metrics of the aggregator.
#[derive(Clone)]
pub struct Metrics {
    /// `aggregator_windows_total{grain}`: windows rolled.
    pub windows: IntCounterVec,
    /// `aggregator_errors_total{kind}`: failed passes (`clickhouse`, `mongodb`, `other`).
    pub errors: IntCounterVec,
    /// `aggregator_pass_seconds`: duration of a pass.
    pub pass_seconds: Histogram,
    /// `aggregator_watermark_seconds`: write time (Unix s) up to which rows are rolled.
    pub watermark: IntGauge,
    /// `aggregator_last_success_seconds`: end of the last pass that
    /// succeeded, Unix s (alert `RollupsStale`).
    pub last_success: IntGauge,
    /// `aggregator_window_failures_total{grain="day"}`: day rolls that failed
    /// (kept pending and retried by the next pass).
    pub window_failures: IntCounterVec,
    /// `aggregator_pending_day_windows`: days dirty but not rolled yet (backlog).
    pub pending_days: IntGauge,
    /// `aggregator_mirror_pending_day_windows`: days rolled but not mirrored into
    /// MongoDB yet.
    pub mirror_pending_days: IntGauge,
    /// `aggregator_mirror_documents_total{outcome}`: MongoDB rollup
    /// documents `written` or left `unchanged` (same numbers).
    pub mirror_documents: IntCounterVec,
    /// `aggregator_leader`: 1 while this instance holds the leader lease
    /// and rolls, 0 while it stands by.
    pub leader: IntGauge,
    /// `aggregator_lease_changes_total{change}`: leadership `acquired` or
    /// `lost` by this instance.
    pub lease_changes: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            windows: IntCounterVec::new(
                Opts::new("aggregator_windows_total", "Windows rolled, by grain."),
                &["grain"],
            )?,
            errors: IntCounterVec::new(Opts::new("aggregator_errors_total", "Failed passes, by kind."), &["kind"])?,
            // A pass re-rolls a few windows: tens of ms normally, seconds on a big day.
            pass_seconds: Histogram::with_opts(
                HistogramOpts::new("aggregator_pass_seconds", "Duration of a pass, seconds.")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            watermark: IntGauge::new(
                "aggregator_watermark_seconds",
                "Write time up to which rows are rolled, Unix seconds.",
            )?,
            last_success: IntGauge::new(
                "aggregator_last_success_seconds",
                "End of the last successful pass, Unix seconds.",
            )?,
            window_failures: IntCounterVec::new(
                Opts::new("aggregator_window_failures_total", "Window rolls that failed (retried), by grain."),
                &["grain"],
            )?,
            pending_days: IntGauge::new("aggregator_pending_day_windows", "Days dirty but not rolled yet (backlog).")?,
            mirror_pending_days: IntGauge::new(
                "aggregator_mirror_pending_day_windows",
                "Days rolled but not mirrored into MongoDB yet.",
            )?,
            mirror_documents: IntCounterVec::new(
                Opts::new("aggregator_mirror_documents_total", "MongoDB rollup documents, by outcome."),
                &["outcome"],
            )?,
            leader: IntGauge::new("aggregator_leader", "1 while this instance holds the leader lease and rolls.")?,
            lease_changes: IntCounterVec::new(
                Opts::new("aggregator_lease_changes_total", "Leadership acquired or lost by this instance."),
                &["change"],
            )?,
        };
        r.register(Box::new(m.windows.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.pass_seconds.clone()))?;
        r.register(Box::new(m.watermark.clone()))?;
        r.register(Box::new(m.window_failures.clone()))?;
        r.register(Box::new(m.pending_days.clone()))?;
        r.register(Box::new(m.last_success.clone()))?;
        r.register(Box::new(m.mirror_pending_days.clone()))?;
        r.register(Box::new(m.mirror_documents.clone()))?;
        r.register(Box::new(m.leader.clone()))?;
        r.register(Box::new(m.lease_changes.clone()))?;
        Ok(m)
    }

    /// Counts what a pass did, and logs each failed day with its error.
    pub fn record(&self, report: &PassReport) {
        self.windows.with_label_values(&["hour"]).inc_by(report.hours as u64);
        self.windows.with_label_values(&["day"]).inc_by(report.days as u64);
        self.mirror_documents.with_label_values(&["written"]).inc_by(report.documents.0 as u64);
        self.mirror_documents.with_label_values(&["unchanged"]).inc_by(report.documents.1 as u64);
        self.pending_days.set(report.pending as i64);
        self.mirror_pending_days.set(report.mirror_pending as i64);
        self.watermark.set(i64::from(report.newest));
        self.last_success.set(i64::from(now_s()));
        for (day, error) in &report.failed {
            self.window_failures.with_label_values(&["day"]).inc();
            tracing::warn!(day = %rollup::window::rfc3339(*day), error = %error, "rolling a day failed; retrying next pass");
        }
    }
}

/// Rolls everything written at or after `since` (Unix s) and every pending
/// day in one pass ([`rollup::pass_since`] without a backlog budget),
/// counted in `metrics`. Returns the new watermark. For one-shot catch-ups
/// and tests; the service loop runs [`rollup::pass()`] with its budget.
pub async fn pass(stores: &Stores, since: u32, metrics: &Metrics) -> Result<u32, RollupError> {
    let report = rollup::pass_since(stores, &PassConfig::unbounded(), since, now_s()).await?;
    metrics.record(&report);
    Ok(report.newest)
}

/// A running aggregator.
pub struct Aggregator {
    /// Admin listener address.
    pub admin_addr: SocketAddr,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness (`clickhouse`, `mongodb`).
    pub health: Health,
    done: tokio::task::JoinHandle<()>,
}

impl Aggregator {
    /// Waits until the loop has stopped (after `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Starts the aggregator loop and its admin listener.
pub async fn start(cfg: Config, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<Aggregator> {
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new();
    let stores = Stores {
        ch: cfg.clickhouse.client().with_database(&cfg.clickhouse.database),
        ch_db: cfg.clickhouse.database.clone(),
        mongo: cfg.mongo.database().await.context("MongoDB URI")?,
        topology: cfg.clickhouse.topology(),
    };
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let (m, h) = (metrics.clone(), health.clone());
    let lease = Lease::new(
        stores.mongo.collection(collections::LEASES),
        "aggregator",
        Duration::from_secs(cfg.lease_secs.max(1)),
    );
    tracing::info!(owner = %lease.owner(), ttl_s = cfg.lease_secs, "aggregator: trying the leader lease");
    let done = tokio::spawn(async move {
        let mut last_retention: Option<Instant> = None;
        let mut leading = false;
        let pass_cfg = cfg.pass_config();
        // A standby tries the lease every third of its TTL.
        let standby_pause = Duration::from_millis((cfg.lease_secs.max(1) * 1000 / 3).min(cfg.interval_ms.max(100)));
        loop {
            let now_leading = match lease.hold().await {
                Ok(held) => held,
                Err(e) => {
                    // Without MongoDB the lease cannot be renewed: stop
                    // rolling (another instance may take over once it expires).
                    tracing::warn!(error = %e, "leader lease unreachable; standing by");
                    m.errors.with_label_values(&["mongodb"]).inc();
                    false
                }
            };
            if now_leading != leading {
                leading = now_leading;
                m.leader.set(i64::from(leading));
                m.lease_changes.with_label_values(&[if leading { "acquired" } else { "lost" }]).inc();
                tracing::info!(owner = %lease.owner(), leading, "aggregator leadership changed");
            }
            if !leading {
                // A standby is healthy: ready, idle.
                h.ready("rollups");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(standby_pause) => {}
                }
                continue;
            }
            if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400)) {
                match lifecycle::apply_retention(&stores, now_s()).await {
                    Ok(n) => {
                        tracing::info!(tenants = n, "retention applied");
                        last_retention = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "retention failed; retrying next pass"),
                }
            }
            let started = Instant::now();
            let mut backlog = false;
            match rollup::pass(&stores, &pass_cfg, now_s()).await {
                Ok(report) => {
                    m.record(&report);
                    m.pass_seconds.observe(started.elapsed().as_secs_f64());
                    backlog = report.pending > 0 || report.mirror_pending > 0;
                    if report.failed.is_empty() {
                        h.ready("rollups");
                    } else {
                        h.degraded("rollups", format!("{} day(s) failed to roll; retrying", report.failed.len()));
                    }
                }
                Err(e) => {
                    let kind = match &e {
                        RollupError::ClickHouse(_) | RollupError::MutationTimeout { .. } => "clickhouse",
                        RollupError::Mongo(_)
                        | RollupError::MongoWrite { .. }
                        | RollupError::DocumentTooLarge { .. } => "mongodb",
                        RollupError::Json(_) | RollupError::Bson(_) => "other",
                    };
                    m.errors.with_label_values(&[kind]).inc();
                    h.not_ready("rollups", format!("pass failed: {e}"));
                    tracing::warn!(error = %e, "rollup pass failed; retrying next interval");
                }
            }
            // A backlog is worked off pass after pass without waiting; each
            // pass rolls the fresh hours first.
            let pause = if backlog { Duration::from_millis(10) } else { Duration::from_millis(cfg.interval_ms) };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // A clean stop hands the lease over at once.
        if leading {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "leader lease not released; it expires by itself");
            }
        }
    });
    Ok(Aggregator { admin_addr, metrics, health, done })
}
