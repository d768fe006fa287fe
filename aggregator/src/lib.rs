//! `aggregator`: hourly and daily rollups of the deduplicated events in
//! ClickHouse ([`rollup`]), written to the ClickHouse `rollups` table and
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
//! ([`lifecycle::apply_retention`]); [`lifecycle::erase_visitor`] is the
//! erasure path of a data subject request.
//!
//! Reads: ClickHouse `events`. Writes: ClickHouse `rollups`, MongoDB
//! rollups, `smartlinks.metadata` counters, `aggregator_state`. Serves: the
//! admin listener (127.0.0.1:9182).

pub mod config;
pub mod lifecycle;
pub mod rollup;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bson::doc;
use common::admin::Health;
use common::shutdown::CancellationToken;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;

pub use config::Config;
use rollup::{Grain, RollupError};

/// Collection holding the aggregator's watermark.
pub const STATE_COLLECTION: &str = "aggregator_state";

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
        };
        r.register(Box::new(m.windows.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.pass_seconds.clone()))?;
        r.register(Box::new(m.watermark.clone()))?;
        Ok(m)
    }
}

fn now_s() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// The ClickHouse and MongoDB handles of a pass.
#[derive(Clone)]
pub struct Stores {
    /// ClickHouse client with the database set.
    pub ch: clickhouse::Client,
    /// ClickHouse database name (for fully qualified reads).
    pub ch_db: String,
    /// MongoDB database.
    pub mongo: mongodb::Database,
}

/// One pass: rolls the windows dirty since `since` (seconds, UTC) and
/// refreshes the counters of the links touched. Returns the new watermark.
pub async fn pass(stores: &Stores, since: u32, metrics: &Metrics) -> Result<u32, RollupError> {
    let (windows, newest) = rollup::dirty_windows(&stores.ch, &stores.ch_db, since).await?;
    let now = now_s();
    let mut links = std::collections::BTreeSet::new();
    for (grain, start) in windows {
        let rolled = rollup::roll(&stores.ch, &stores.ch_db, &stores.mongo, grain, start, now).await?;
        metrics
            .windows
            .with_label_values(&[match grain {
                Grain::Hour => "hour",
                Grain::Day => "day",
            }])
            .inc();
        links.extend(rolled.into_iter().filter(|c| !c.link_id.is_empty()).map(|c| c.link_id));
    }
    refresh_link_counters(stores, links.into_iter().collect()).await?;
    Ok(newest)
}

/// Recomputes `smartlinks.metadata.{totalViews, uniqueVisitors,
/// conversionRate}` of `links` (hex ids) over all their events. Leaves
/// `updatedAt` alone: these counters are not served by the edge.
pub async fn refresh_link_counters(stores: &Stores, links: Vec<String>) -> Result<(), RollupError> {
    if links.is_empty() {
        return Ok(());
    }
    #[derive(clickhouse::Row, Deserialize)]
    struct Totals {
        link_id: String,
        views: u64,
        clicks: u64,
        uniques: u64,
    }
    let totals: Vec<Totals> = stores
        .ch
        .query(&format!(
            "SELECT link_id, countIf(kind = 'view' AND is_bot = 0) AS views, countIf(kind = 'click' AND is_bot = 0) AS clicks,
                    uniqExactIf(if(visitor_id != '', visitor_id, toString(visitor_hash)), is_bot = 0) AS uniques
             FROM {}.events FINAL WHERE has(?, link_id) GROUP BY link_id",
            stores.ch_db
        ))
        .bind(&links)
        .fetch_all()
        .await?;
    let coll = stores.mongo.collection::<bson::Document>(schemas::mongo::collections::SMARTLINKS);
    for t in totals {
        let Ok(id) = bson::oid::ObjectId::parse_str(&t.link_id) else { continue };
        let rate = if t.views == 0 { 0.0 } else { t.clicks as f64 / t.views as f64 };
        coll.update_one(
            doc! { "_id": id },
            doc! { "$set": {
                "metadata.totalViews": t.views as i64,
                "metadata.uniqueVisitors": t.uniques as i64,
                "metadata.conversionRate": rate,
            } },
        )
        .await?;
    }
    Ok(())
}

/// Reads the persisted watermark (Unix seconds; 0 when none).
pub async fn load_watermark(mongo: &mongodb::Database) -> Result<u32, mongodb::error::Error> {
    let d = mongo.collection::<bson::Document>(STATE_COLLECTION).find_one(doc! { "_id": "rollups" }).await?;
    Ok(d.and_then(|d| d.get("watermark").and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))).unwrap_or(0)
        as u32)
}

/// Persists the watermark `w` (Unix seconds) in `aggregator_state`.
pub async fn save_watermark(mongo: &mongodb::Database, w: u32) -> Result<(), mongodb::error::Error> {
    mongo
        .collection::<bson::Document>(STATE_COLLECTION)
        .replace_one(doc! { "_id": "rollups" }, doc! { "_id": "rollups", "watermark": i64::from(w) })
        .upsert(true)
        .await?;
    Ok(())
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
    };
    let (admin_addr, _) = common::admin::spawn(cfg.admin_listen, registry, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding {}", cfg.admin_listen))?;
    let (m, h) = (metrics.clone(), health.clone());
    let done = tokio::spawn(async move {
        let mut watermark: Option<u32> = None;
        let mut last_retention: Option<Instant> = None;
        loop {
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
            let result = async {
                let w = match watermark {
                    Some(w) => w,
                    None => load_watermark(&stores.mongo).await?,
                };
                let since = w.saturating_sub(cfg.overlap_secs);
                let newest = pass(&stores, since, &m).await?;
                if newest > w {
                    save_watermark(&stores.mongo, newest).await?;
                }
                Ok::<u32, RollupError>(newest.max(w))
            }
            .await;
            match result {
                Ok(w) => {
                    watermark = Some(w);
                    m.watermark.set(i64::from(w));
                    m.pass_seconds.observe(started.elapsed().as_secs_f64());
                    h.ready("rollups");
                }
                Err(e) => {
                    let kind = match &e {
                        RollupError::ClickHouse(_) => "clickhouse",
                        RollupError::Mongo(_) => "mongodb",
                        RollupError::Json(_) => "other",
                    };
                    m.errors.with_label_values(&[kind]).inc();
                    h.not_ready("rollups", format!("pass failed: {e}"));
                    tracing::warn!(error = %e, "rollup pass failed; retrying next interval");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(cfg.interval_ms)) => {}
            }
        }
    });
    Ok(Aggregator { admin_addr, metrics, health, done })
}
