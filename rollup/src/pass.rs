//! One aggregator pass: find the hours made dirty since the watermark,
//! roll them day by day, fresh data first, and keep what is left.
//!
//! ## Fairness (issue #13)
//! Days are rolled in this order: the current and the previous hour's days
//! first (every tenant's fresh data), then the backlog (older dirty days and
//! days pending from earlier passes), newest first, until the pass has used
//! its backlog budget. What is left stays pending (persisted with the
//! watermark, [`crate::watermark::State`]) and is worked off by the next
//! passes, each of which starts again with the fresh days: a tenant's
//! backfill of a month never holds another tenant's current hour back.
//!
//! ## Failures
//! A day whose roll fails stays pending and is retried by the next pass; it
//! is counted ([`PassReport::failed`]) and logged with its day by the
//! caller. It never stops the pass for the other days.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;

use schemas::clickhouse::{EVENTS_WRITTEN_TABLE, ROLLUPS_TABLE};
use serde::Deserialize;

use crate::mirror::mirror_day;
use crate::watermark::{self, State};
use crate::window::{roll_day, RollConfig};
use crate::{refresh_link_counters, Grain, RollupError, Stores};

/// Settings of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassConfig {
    /// How rows are rolled (breakdown bound).
    pub roll: RollConfig,
    /// Rows written this long before the watermark are looked at again
    /// (ingest's write time, clock skew between writers), s.
    pub overlap_secs: u32,
    /// Time a pass may spend on backlog days once fresh days are done; the
    /// first backlog day always runs.
    pub backlog_budget: Duration,
    /// Time a pass may spend mirroring days into MongoDB; the first day
    /// (the freshest) always runs.
    pub mirror_budget: Duration,
    /// Backlog days rolled at the same time (each day's queries read one
    /// `events` partition, which ClickHouse reads with one thread under
    /// `FINAL`: two days at once use two cores). At least 1.
    pub concurrency: usize,
}

impl Default for PassConfig {
    fn default() -> Self {
        PassConfig {
            roll: RollConfig::default(),
            overlap_secs: 120,
            backlog_budget: Duration::from_secs(3),
            mirror_budget: Duration::from_secs(2),
            concurrency: 2,
        }
    }
}

impl PassConfig {
    /// Default settings with no backlog budget: one pass rolls everything
    /// dirty (tests, one-shot catch-ups).
    pub fn unbounded() -> Self {
        PassConfig { backlog_budget: Duration::MAX, mirror_budget: Duration::MAX, ..PassConfig::default() }
    }
}

/// What one [`pass`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// The watermark after the pass (Unix s).
    pub newest: u32,
    /// Hour windows rolled.
    pub hours: usize,
    /// Day windows rolled.
    pub days: usize,
    /// Days whose roll failed (retried by the next pass), with the error.
    pub failed: Vec<(u32, String)>,
    /// Days left pending after the pass (not rolled in ClickHouse yet).
    pub pending: usize,
    /// Days rolled but not mirrored into MongoDB yet.
    pub mirror_pending: usize,
    /// MongoDB documents written and left unchanged.
    pub documents: (usize, usize),
}

/// Hours (starts, Unix s) with rows not rolled yet, and the newest write
/// time seen (`since` when none), from `events_written` (a few rows per
/// write second, not the events). Rows written after `watermark` are new;
/// rows written in `[since, watermark]` (the overlap, for rows that became
/// visible late) make their hour dirty only when the hour has more of them
/// than the previous pass saw (`seen`): a bulk backfill is rolled once, not
/// once per pass for as long as it sits in the overlap.
pub async fn dirty_hours(
    ch: &clickhouse::Client,
    db: &str,
    since: u32,
    watermark: u32,
    seen: &BTreeMap<u32, u64>,
) -> Result<(BTreeSet<u32>, u32), RollupError> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Dirty {
        hour: u32,
        newest: u32,
        old_rows: u64,
        new_rows: u64,
    }
    let rows: Vec<Dirty> = ch
        .query(&format!(
            "SELECT toUInt32(hour) AS hour, toUInt32(max(ingested_at)) AS newest,
                sumIf(rows, ingested_at <= toDateTime(?)) AS old_rows, sumIf(rows, ingested_at > toDateTime(?)) AS new_rows
             FROM {db}.{EVENTS_WRITTEN_TABLE} WHERE ingested_at >= toDateTime(?) GROUP BY hour"
        ))
        .bind(watermark)
        .bind(watermark)
        .bind(since)
        .fetch_all()
        .await?;
    let newest = rows.iter().map(|r| r.newest).max().unwrap_or(since);
    let dirty = rows
        .into_iter()
        .filter(|r| r.new_rows > 0 || r.old_rows > seen.get(&r.hour).copied().unwrap_or(0))
        .map(|r| r.hour)
        .collect();
    Ok((dirty, newest))
}

/// The links (hex ids) with a day rollup on one of `days` (day starts).
async fn rolled_links(ch: &clickhouse::Client, db: &str, days: &BTreeSet<u32>) -> Result<Vec<String>, RollupError> {
    let days: Vec<u32> = days.iter().copied().collect();
    let Some(cond) = crate::buckets_sql(&days) else { return Ok(Vec::new()) };
    Ok(ch
        .query(&format!(
            "SELECT DISTINCT link_id FROM {db}.{ROLLUPS_TABLE} WHERE grain = 'day' AND link_id != '' AND {cond}"
        ))
        .fetch_all()
        .await?)
}

/// Rows per hour written in `[from, to]` (Unix s): what the next pass's
/// overlap will find already seen.
async fn seen_rows(ch: &clickhouse::Client, db: &str, from: u32, to: u32) -> Result<BTreeMap<u32, u64>, RollupError> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Seen {
        hour: u32,
        rows: u64,
    }
    let rows: Vec<Seen> = ch
        .query(&format!(
            "SELECT toUInt32(hour) AS hour, sum(rows) AS rows FROM {db}.{EVENTS_WRITTEN_TABLE}
             WHERE ingested_at >= toDateTime(?) AND ingested_at <= toDateTime(?) GROUP BY hour"
        ))
        .bind(from)
        .bind(to)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|r| (r.hour, r.rows)).collect())
}

/// The days of the hour of `now` (Unix s) and of the hour before: the
/// fresh days every pass rolls first.
fn fresh_days(now: u32) -> BTreeSet<u32> {
    let current = Grain::Hour.floor(now);
    [current, current.saturating_sub(3600)].into_iter().map(|h| Grain::Day.floor(h)).collect()
}

/// The order of a pass: `(day, hours)` with fresh days first (those of the
/// hour of `now` and the one before), then the others newest first. Hours
/// empty means the whole day (a pending day).
pub fn schedule(dirty: &BTreeSet<u32>, pending: &[u32], now: u32) -> Vec<(u32, BTreeSet<u32>)> {
    let mut days: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for h in dirty {
        days.entry(Grain::Day.floor(*h)).or_default().insert(*h);
    }
    for d in pending {
        // A pending day is re-rolled whole.
        days.insert(Grain::Day.floor(*d), BTreeSet::new());
    }
    let fresh = fresh_days(now);
    let mut order: Vec<(u32, BTreeSet<u32>)> = Vec::with_capacity(days.len());
    let mut rest = Vec::new();
    for (d, hours) in days.into_iter().rev() {
        if fresh.contains(&d) {
            order.push((d, hours));
        } else {
            rest.push((d, hours));
        }
    }
    order.extend(rest);
    order
}

/// One pass over `stores` at `now` (Unix s): reads the state, looks at rows
/// written since its watermark minus `cfg.overlap_secs` ([`pass_since`]).
pub async fn pass(stores: &Stores, cfg: &PassConfig, now: u32) -> Result<PassReport, RollupError> {
    let state = watermark::load_state(&stores.mongo).await?;
    let since = state.watermark.saturating_sub(cfg.overlap_secs);
    pass_from(stores, cfg, state, since, now).await
}

/// One pass looking at rows written at or after `since` (Unix s) and the
/// pending days of the stored state: rolls the schedule (fresh first,
/// backlog within `cfg.backlog_budget`), refreshes the counters of the
/// links touched and saves the new state. Errors only when the state or the
/// dirty hours cannot be read or the state not saved; a failing day is
/// reported in [`PassReport::failed`] and kept pending.
pub async fn pass_since(stores: &Stores, cfg: &PassConfig, since: u32, now: u32) -> Result<PassReport, RollupError> {
    let state = watermark::load_state(&stores.mongo).await?;
    pass_from(stores, cfg, state, since, now).await
}

async fn pass_from(
    stores: &Stores,
    cfg: &PassConfig,
    state: State,
    since: u32,
    now: u32,
) -> Result<PassReport, RollupError> {
    let seen: BTreeMap<u32, u64> = state.seen.iter().map(|s| (s.hour, s.rows.max(0) as u64)).collect();
    let (dirty, newest) = dirty_hours(&stores.ch, &stores.ch_db, since, state.watermark, &seen).await?;
    let plan = schedule(&dirty, &state.pending, now);
    let current_days = fresh_days(now);
    let mut report = PassReport { newest: newest.max(state.watermark), ..PassReport::default() };
    let mut pending = BTreeSet::new();
    let mut links = BTreeSet::new();
    let mut mirror: BTreeSet<u32> = state.mirror_pending.iter().copied().collect();
    let mut spans_ready = state.spans;
    if !spans_ready {
        match crate::spans::rebuild_all(&stores.ch, &stores.ch_db, now).await {
            Ok(()) => spans_ready = true,
            Err(e) => report.failed.push((0, format!("spans: {e}"))),
        }
    }
    // Fresh days one after the other, then the backlog `cfg.concurrency`
    // days at a time; a backlog day not started within the budget waits.
    let (fresh, backlog): (Vec<_>, Vec<_>) = plan.into_iter().partition(|(day, _)| current_days.contains(day));
    let mut results = Vec::new();
    for (day, hours) in fresh {
        results.push((day, Some(roll_day(stores, cfg.roll, day, &hours, now).await)));
    }
    let backlog_started = Instant::now();
    let rolls = futures::stream::iter(backlog.into_iter().enumerate()).map(|(i, (day, hours))| async move {
        // The first backlog day always runs.
        if i > 0 && backlog_started.elapsed() > cfg.backlog_budget {
            return (day, None);
        }
        (day, Some(roll_day(stores, cfg.roll, day, &hours, now).await))
    });
    results.extend(rolls.buffered(cfg.concurrency.max(1)).collect::<Vec<_>>().await);
    let mut rolled_days = BTreeSet::new();
    for (day, r) in results {
        match r {
            None => {
                pending.insert(day);
            }
            Some(Ok(r)) => {
                report.hours += r.hours;
                report.days += r.days;
                links.extend(r.links);
                mirror.insert(day);
                rolled_days.insert(day);
            }
            Some(Err(e)) => {
                report.failed.push((day, e.to_string()));
                pending.insert(day);
            }
        }
    }
    // Blocks of days are re-merged once the backlog is done, for days no
    // longer fresh: once per catch-up, not once per pass, and not every
    // pass for today. Until then the api uses no block containing them.
    let mut spans_dirty: BTreeSet<u32> = state.spans_dirty.iter().copied().chain(rolled_days).collect();
    let mut refreshed = BTreeSet::new();
    if pending.is_empty() {
        let ready: BTreeSet<u32> = spans_dirty.iter().copied().filter(|d| !current_days.contains(d)).collect();
        if !ready.is_empty() {
            match crate::spans::refresh(&stores.ch, &stores.ch_db, &ready, now).await {
                Ok(()) => {
                    spans_dirty.retain(|d| !ready.contains(d));
                    refreshed = ready;
                }
                Err(e) => report.failed.push((0, format!("spans: {e}"))),
            }
        }
    }
    // Link counters (metadata shown in link lists) merge every day of a
    // link: refreshed when no backlog is left, for the links of this pass
    // and of the days whose blocks were just re-merged.
    if pending.is_empty() {
        let avoid: Vec<u32> = spans_dirty.iter().copied().collect();
        let spans = spans_ready.then_some(avoid.as_slice());
        let refresh = async move {
            links.extend(rolled_links(&stores.ch, &stores.ch_db, &refreshed).await?);
            refresh_link_counters(stores, links.into_iter().collect(), spans).await
        };
        if let Err(e) = refresh.await {
            report.failed.push((0, format!("link counters: {e}")));
        }
    }
    // The MongoDB mirror follows the ClickHouse rollups, fresh days first,
    // then newest first, within its own budget; the rest waits.
    let mut order: Vec<u32> = mirror.iter().rev().copied().collect();
    order.sort_by_key(|d| !current_days.contains(d));
    let mut mirror_pending = BTreeSet::new();
    let mirror_started = Instant::now();
    for (i, day) in order.into_iter().enumerate() {
        if i > 0 && mirror_started.elapsed() > cfg.mirror_budget {
            mirror_pending.insert(day);
            continue;
        }
        match mirror_day(stores, day, now).await {
            Ok(m) => {
                report.documents.0 += m.inserted + m.replaced;
                report.documents.1 += m.unchanged;
            }
            Err(e) => {
                report.failed.push((day, format!("mirror: {e}")));
                mirror_pending.insert(day);
            }
        }
    }
    report.pending = pending.len();
    report.mirror_pending = mirror_pending.len();
    let seen =
        seen_rows(&stores.ch, &stores.ch_db, report.newest.saturating_sub(cfg.overlap_secs), report.newest).await?;
    let state = State {
        watermark: report.newest,
        pending: pending.into_iter().collect(),
        mirror_pending: mirror_pending.into_iter().collect(),
        seen: seen.into_iter().map(|(hour, rows)| watermark::SeenHour { hour, rows: rows as i64 }).collect(),
        spans: spans_ready,
        spans_dirty: spans_dirty.into_iter().collect(),
    };
    watermark::save_state(&stores.mongo, &state).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u32 = 86_400;

    #[test]
    fn fresh_days_come_first_then_the_backlog_newest_first() {
        let now = 40 * DAY + 10 * 3600 + 5;
        let dirty: BTreeSet<u32> = [3 * DAY + 3600, 40 * DAY + 10 * 3600, 39 * DAY, 12 * DAY + 7200].into();
        let order = schedule(&dirty, &[5 * DAY], now);
        let days: Vec<u32> = order.iter().map(|(d, _)| d / DAY).collect();
        assert_eq!(days, vec![40, 39, 12, 5, 3]);
        assert_eq!(order[0].1, [40 * DAY + 10 * 3600].into(), "only the dirty hours of a fresh day");
        assert!(order[3].1.is_empty(), "a pending day is re-rolled whole");
        // Just after midnight, yesterday is fresh too (the previous hour).
        let order = schedule(&dirty, &[], 40 * DAY + 600);
        assert_eq!(order.iter().map(|(d, _)| d / DAY).take(2).collect::<Vec<_>>(), vec![40, 39]);
    }
}
