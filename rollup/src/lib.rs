//! `rollup`: the rollup library shared by the aggregator service (which runs
//! [`pass()`] on a loop) and the api (which answers open windows with the same
//! SQL, merges distinct-count states over ranges, and erases data subjects
//! through it).
//!
//! It computes and writes the rollups of hour and day windows from the
//! deduplicated events in ClickHouse ([`select`]), one UTC day at a time
//! ([`window::roll_day`]), into the ClickHouse `rollups` and `rollup_states`
//! tables and the MongoDB mirrors `analytics_hourly` / `analytics_daily`;
//! finds the hours made dirty since a watermark and schedules them fresh
//! data first ([`pass`](mod@pass)); keeps the watermark and the pending days
//! ([`watermark`]); refreshes the cached link counters
//! ([`refresh_link_counters`]); and applies retention and erasure
//! ([`lifecycle`]).
//!
//! Reads: ClickHouse `events`, `events_written`. Writes: ClickHouse
//! `rollups`, `rollup_states`, MongoDB rollups, `smartlinks.metadata`
//! counters, `aggregator_state`.
//!
//! ## Rules (seed 000 `analytics_daily`, issues #5 and #13)
//! - Events are read through the dedup (`FROM events FINAL`), so a
//!   redelivered event never counts twice.
//! - Bots are excluded from every counter but `bots`.
//! - A visitor is the first-party cookie when present, else the daily
//!   visitor hash; uniques and returning visitors are distinct visitors over
//!   the whole window, exact per window (a day's uniques are counted over
//!   the day, never summed from its hours); conversions are sessions with a
//!   click-out; the conversion rate is clicks / views. Over a range of
//!   windows they merge per-window states ([`states`]).
//! - Breakdowns count views by country, device, browser, OS, referrer host,
//!   UTM source, medium and campaign, region, city and hour of day, and
//!   clicks by platform; they are additive, so the tenant-wide breakdown is
//!   the sum of its links'. Each window keeps the top N values of a
//!   dimension and sums the rest under `(other)`, so sums still equal the
//!   totals and a document stays small whatever the traffic.
//!
//! ## Idempotency
//! A window is recomputed whole and written under stable keys: in
//! ClickHouse `(tenant, grain, bucket, link)` with a newer `computed_at`
//! (`ReplacingMergeTree`), in MongoDB `_id = {tenant}:{link|all}:{bucket}`
//! with a replacing upsert. A key that had a rollup and now has no event
//! (every event erased) is written as zeros. Re-rolling a window that did not
//! change leaves the same numbers (and writes no MongoDB document).

pub mod lifecycle;
pub mod mirror;
pub mod pass;
pub mod select;
pub mod spans;
pub mod states;
pub mod watermark;
pub mod window;

use bson::doc;
use schemas::clickhouse::{GrainCode, HLL_PRECISION, ROLLUPS_TABLE, ROLLUP_STATES_TABLE};
use schemas::mongo::collections;
use serde::Deserialize;

pub use pass::{pass, pass_since, PassConfig, PassReport};
pub use select::{add, breakdowns, compute_range, counters, rate, Computed, Selection, VISITOR_SQL};
pub use window::{roll_day, rollup_id, RollConfig};

/// Errors of a roll.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// A ClickHouse query or insert failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// A MongoDB operation failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// MongoDB refused some documents of a bulk write.
    #[error("mongodb: {failed} documents refused, first: {first}")]
    MongoWrite {
        /// Documents refused.
        failed: usize,
        /// The first error, as the server wrote it.
        first: String,
    },
    /// A rollup document is larger than MongoDB accepts (an uncapped
    /// breakdown).
    #[error("mongodb: rollup {id} is {bytes} bytes, over the 16 MiB document limit")]
    DocumentTooLarge {
        /// The rollup id.
        id: String,
        /// Its size, bytes.
        bytes: usize,
    },
    /// ClickHouse mutations (`ALTER … DELETE`) still ran after the wait.
    #[error("clickhouse: {pending} mutations still running after {waited_ms} ms")]
    MutationTimeout {
        /// Mutations not done.
        pending: u64,
        /// Time waited, ms.
        waited_ms: u64,
    },
    /// Serialising a breakdown failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Serialising a document failed.
    #[error("bson: {0}")]
    Bson(#[from] bson::ser::Error),
}

/// Hour or day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Grain {
    /// Length in seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Grain::Hour => 3600,
            Grain::Day => 86_400,
        }
    }

    /// The window start containing `ts` (seconds, UTC).
    pub fn floor(self, ts: u32) -> u32 {
        ts - ts % self.seconds()
    }

    /// The grain's name in SQL (`hour`, `day`).
    pub fn name(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    /// The grain as stored in ClickHouse.
    pub fn code(self) -> GrainCode {
        match self {
            Grain::Hour => GrainCode::Hour,
            Grain::Day => GrainCode::Day,
        }
    }

    /// The MongoDB mirror collection of this grain.
    pub fn collection(self) -> &'static str {
        match self {
            Grain::Hour => collections::ANALYTICS_HOURLY,
            Grain::Day => collections::ANALYTICS_DAILY,
        }
    }
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
    /// One ClickHouse server or a cluster (where mutations go and are
    /// awaited; [`schemas::clickhouse::Topology`]).
    pub topology: schemas::clickhouse::Topology,
}

/// The SQL condition that keeps rows whose `bucket` is one of `starts`
/// (window starts, Unix s): one `bucket` range per run of starts less than
/// a day apart (so the primary key reads only those runs: a 30-day range's
/// partial first day and today are two short ranges, not the month between
/// them) plus the exact list. `None` when `starts` is empty.
pub fn buckets_sql(starts: &[u32]) -> Option<String> {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &s in &sorted {
        match runs.last_mut() {
            Some(run) if s - run.1 <= 86_400 => run.1 = s,
            _ => runs.push((s, s)),
        }
    }
    if runs.is_empty() {
        return None;
    }
    let ranges = runs
        .iter()
        .map(|(lo, hi)| format!("(bucket >= toDateTime({lo}) AND bucket <= toDateTime({hi}))"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let list = sorted.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    Some(format!("({ranges}) AND has([{list}], toUInt32(bucket))"))
}

/// Current time, Unix seconds (0 if the clock is before 1970).
pub fn now_s() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// Recomputes `smartlinks.metadata.{totalViews, uniqueVisitors,
/// conversionRate}` of `links` (hex ids) from their daily rollups and
/// merged distinct states: blocks of days from `rollup_spans` when
/// `spans` is `Some` (they are built, [`spans`]; blocks holding one of its
/// days are not re-merged yet and left out), day states for the rest, so
/// a year of history merges about 12 states a counter, not 365.
/// Leaves `updatedAt` alone: these counters are not served by the edge.
pub async fn refresh_link_counters(
    stores: &Stores,
    links: Vec<String>,
    spans: Option<&[u32]>,
) -> Result<(), RollupError> {
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
    let (db, p) = (&stores.ch_db, HLL_PRECISION);
    let first: u32 = stores
        .ch
        .query(&format!(
            "SELECT toUInt32(min(bucket)) FROM {db}.{ROLLUP_STATES_TABLE} WHERE grain = 'day' AND has(?, link_id)"
        ))
        .bind(&links)
        .fetch_one()
        .await?;
    let today = Grain::Day.floor(now_s());
    // `min` of no rows is 1970-01-01 (0): then there is no state to merge.
    let days: Vec<u32> =
        if first == 0 { Vec::new() } else { (Grain::Day.floor(first)..=today).step_by(86_400).collect() };
    let (blocks, rest) = spans::cover_if(&days, spans);
    let pieces = states::Pieces { spans: &blocks, days: &rest, ..Default::default() };
    let states = states::closed_sources(db, "link_id, visitors", "has(?, link_id)", pieces);
    let uniques = if states.is_empty() {
        String::new()
    } else {
        format!(
            "UNION ALL
            SELECT link_id, toUInt64(0) AS views, toUInt64(0) AS clicks, uniqCombinedIfMerge({p})(visitors) AS uniques
            FROM ({}) GROUP BY link_id",
            states.join(" UNION ALL ")
        )
    };
    let mut q = stores.ch.query(&format!(
        "SELECT link_id, sum(views) AS views, sum(clicks) AS clicks, max(uniques) AS uniques FROM (
            SELECT link_id, views, clicks, toUInt64(0) AS uniques
            FROM {db}.{ROLLUPS_TABLE} FINAL WHERE grain = 'day' AND has(?, link_id)
            {uniques}
         ) GROUP BY link_id"
    ));
    for _ in 0..=states.len() {
        q = q.bind(&links);
    }
    let totals: Vec<Totals> = q.fetch_all().await?;
    let coll = stores.mongo.collection::<bson::Document>(collections::SMARTLINKS);
    for t in totals {
        let Ok(id) = bson::oid::ObjectId::parse_str(&t.link_id) else { continue };
        coll.update_one(
            doc! { "_id": id },
            doc! { "$set": {
                "metadata.totalViews": t.views as i64,
                "metadata.uniqueVisitors": t.uniques as i64,
                "metadata.conversionRate": rate(t.clicks, t.views),
            } },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_read_runs_not_the_gap_between() {
        let day = 1_763_683_200;
        let hours = [day + 3600 * 20, day + 3600 * 21, day + 30 * 86_400, day + 30 * 86_400 + 3600];
        let sql = buckets_sql(&hours).unwrap();
        assert!(sql.contains(&format!("bucket >= toDateTime({}) AND bucket <= toDateTime({})", hours[0], hours[1])));
        assert!(sql.contains(&format!("bucket >= toDateTime({}) AND bucket <= toDateTime({})", hours[2], hours[3])));
        let days: Vec<u32> = (0..30).map(|i| day + i * 86_400).collect();
        assert_eq!(buckets_sql(&days).unwrap().matches("bucket >=").count(), 1, "consecutive days are one range");
        assert_eq!(buckets_sql(&[]), None);
    }
}
