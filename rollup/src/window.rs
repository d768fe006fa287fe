//! Rolling windows: one UTC day at a time, its dirty hours and the day
//! itself, in a bounded number of queries whatever the number of tenants
//! and links (issue #13: 10M late events re-rolled in under a minute).
//!
//! For a day, [`roll_day`] runs the counters of its dirty hours and of the
//! day (exact distinct counts per window), one breakdown query over the
//! whole day by hour (hour breakdowns, and the day's as their sum), and the
//! states `INSERT … SELECT`s ([`crate::states`]); then writes the ClickHouse
//! `rollups` rows in one insert. The MongoDB mirror follows from those rows
//! ([`crate::mirror`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;

use bson::DateTime;
use schemas::clickhouse::{RollupRow, ROLLUPS_TABLE};
use schemas::mongo::{RollupBreakdown, RollupMetrics};

use crate::{breakdowns, counters, states, Computed, Grain, RollupError, Selection, Stores};

/// Settings of a roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollConfig {
    /// Values kept per breakdown dimension of a window; the rest is summed
    /// under [`RollupBreakdown::OTHER`]. 0 keeps everything.
    pub top_n: usize,
}

impl Default for RollConfig {
    fn default() -> Self {
        RollConfig { top_n: 100 }
    }
}

/// What [`roll_day`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rolled {
    /// Hour windows rolled.
    pub hours: usize,
    /// Day windows rolled (0 or 1).
    pub days: usize,
    /// Links (hex ids) with a rollup in these windows.
    pub links: BTreeSet<String>,
}

/// `start` (Unix s) as RFC 3339 UTC, for ids and logs.
pub fn rfc3339(start: u32) -> String {
    DateTime::from_millis(i64::from(start) * 1000).try_to_rfc3339_string().unwrap_or_else(|_| start.to_string())
}

/// The MongoDB `_id` of a rollup: `{tenant}:{link|all}:{bucket RFC 3339}`.
pub fn rollup_id(tenant_id: &str, link_id: &str, start: u32) -> String {
    format!("{tenant_id}:{}:{}", if link_id.is_empty() { "all" } else { link_id }, rfc3339(start))
}

/// Adjacent hour starts as half-open ranges.
fn hour_ranges(hours: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &h in hours {
        match out.last_mut() {
            Some(last) if last.1 == h => last.1 = h + 3600,
            _ => out.push((h, h + 3600)),
        }
    }
    out
}

/// Rolls the UTC day starting at `day` (Unix s): its `hours` (hour starts
/// within the day; empty for all 24) and the day window, for every tenant
/// and link, into ClickHouse (`rollups`, `rollup_states`); mirror the day
/// into MongoDB with [`crate::mirror::mirror_day`]. A key that had a rollup and has
/// no event any more is written as zeros. `now` is `computed_at` (Unix s).
pub async fn roll_day(
    stores: &Stores,
    cfg: RollConfig,
    day: u32,
    hours: &BTreeSet<u32>,
    now: u32,
) -> Result<Rolled, RollupError> {
    let (ch, db) = (&stores.ch, stores.ch_db.as_str());
    let day = Grain::Day.floor(day);
    let hours: BTreeSet<u32> = if hours.is_empty() {
        (0..24).map(|h| day + h * 3600).collect()
    } else {
        hours.iter().map(|h| Grain::Hour.floor(*h)).filter(|h| Grain::Day.floor(*h) == day).collect()
    };
    let whole_day = [(day, day + 86_400)];
    let ranges = hour_ranges(&hours);

    let mut hourly = counters(ch, db, &Selection::rollup(Grain::Hour), &ranges).await?;
    let mut daily = counters(ch, db, &Selection::rollup(Grain::Day), &whole_day).await?;
    // Breakdowns of the whole day by hour: the dirty hours' own, and the
    // day's as the sum of all its hours (uncapped, then capped once).
    let by_hour = breakdowns(ch, db, &Selection::rollup(Grain::Hour), &whole_day, true).await?;
    let mut day_breakdowns: HashMap<(String, String), RollupBreakdown> = HashMap::new();
    for ((tenant, link, _), b) in &by_hour {
        day_breakdowns.entry((tenant.clone(), link.clone())).or_default().merge(b);
    }
    for c in &mut hourly {
        if let Some(b) = by_hour.get(&(c.tenant_id.clone(), c.link_id.clone(), c.bucket)) {
            c.breakdown = b.clone();
        }
        c.breakdown.hours.clear();
        c.breakdown.cap(cfg.top_n);
    }
    for c in &mut daily {
        if let Some(b) = day_breakdowns.remove(&(c.tenant_id.clone(), c.link_id.clone())) {
            c.breakdown = b;
        }
        c.breakdown.hours.resize(24, 0);
        c.breakdown.cap(cfg.top_n);
    }
    states::write(ch, db, Grain::Hour, &ranges, now).await?;
    states::write(ch, db, Grain::Day, &whole_day, now).await?;

    let mut rolled = Rolled { hours: hours.len(), days: 1, ..Rolled::default() };
    for (grain, computed, starts) in
        [(Grain::Hour, &mut hourly, hours.iter().copied().collect::<Vec<_>>()), (Grain::Day, &mut daily, vec![day])]
    {
        let previous = previous_rollups(ch, db, grain, &starts).await?;
        zero_vanished(stores, grain, computed, &previous, now).await?;
        write_rollups(ch, grain, computed, now).await?;
        rolled.links.extend(computed.iter().filter(|c| !c.link_id.is_empty()).map(|c| c.link_id.clone()));
    }
    Ok(rolled)
}

/// The rollups last written for the `grain` windows at `starts`, from
/// ClickHouse `rollups`: id → (tenant, link, whether it counted anything).
/// Only keys are read: the breakdowns stay in ClickHouse.
async fn previous_rollups(
    ch: &clickhouse::Client,
    db: &str,
    grain: Grain,
    starts: &[u32],
) -> Result<HashMap<String, (String, String, bool)>, RollupError> {
    let Some(buckets) = crate::buckets_sql(starts) else { return Ok(HashMap::new()) };
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Key {
        tenant_id: String,
        link_id: String,
        bucket: u32,
        counted: u8,
    }
    let rows: Vec<Key> = ch
        .query(&format!(
            "SELECT tenant_id, link_id, toUInt32(bucket) AS bucket, toUInt8(views + clicks + bots > 0) AS counted
             FROM {db}.{ROLLUPS_TABLE} FINAL WHERE grain = ? AND {buckets}"
        ))
        .bind(grain.name())
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (rollup_id(&r.tenant_id, &r.link_id, r.bucket), (r.tenant_id, r.link_id, r.counted == 1)))
        .collect())
}

/// The counters of a stored rollup row.
pub fn metrics_of(r: &RollupRow) -> RollupMetrics {
    let mut m = RollupMetrics {
        total_views: r.views as i64,
        total_clicks: r.clicks as i64,
        unique_visitors: r.unique_visitors as i64,
        returning_visitors: r.returning_visitors as i64,
        total_conversions: r.conversions as i64,
        conversion_rate: crate::rate(r.clicks, r.views),
        bots: r.bots as i64,
        engaged_views: r.engaged_views as i64,
        engaged_ms: r.engaged_ms as i64,
        bounces: r.bounces as i64,
        ..Default::default()
    };
    m.derive_engagement();
    m
}

/// Adds zero rollups (and empty states) for keys of `previous` that have no
/// rollup in `computed` any more: every event of theirs was erased.
async fn zero_vanished(
    stores: &Stores,
    grain: Grain,
    computed: &mut Vec<Computed>,
    previous: &HashMap<String, (String, String, bool)>,
    now: u32,
) -> Result<(), RollupError> {
    let present: BTreeSet<String> = computed.iter().map(|c| rollup_id(&c.tenant_id, &c.link_id, c.bucket)).collect();
    let mut vanished: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for (id, (tenant, link, counted)) in previous {
        if present.contains(id) || !counted {
            continue;
        }
        let Some(start) = bucket_of(id) else { continue };
        vanished.entry(start).or_default().push((tenant.clone(), link.clone()));
        computed.push(Computed {
            tenant_id: tenant.clone(),
            link_id: link.clone(),
            bucket: start,
            metrics: RollupMetrics::default(),
            breakdown: RollupBreakdown {
                hours: if grain == Grain::Day { vec![0; 24] } else { Vec::new() },
                ..Default::default()
            },
        });
    }
    for (start, keys) in vanished {
        states::write_empty(&stores.ch, &stores.ch_db, grain, start, &keys, now).await?;
    }
    Ok(())
}

/// The window start of a rollup id (`{tenant}:{link|all}:{RFC 3339}`).
fn bucket_of(id: &str) -> Option<u32> {
    let mut parts = id.splitn(3, ':');
    let (_, _, at) = (parts.next()?, parts.next()?, parts.next()?);
    let t = DateTime::parse_rfc3339_str(at).ok()?;
    u32::try_from(t.timestamp_millis() / 1000).ok()
}

/// Writes `computed` to ClickHouse `rollups` in one insert.
async fn write_rollups(
    ch: &clickhouse::Client,
    grain: Grain,
    computed: &[Computed],
    now: u32,
) -> Result<(), RollupError> {
    if computed.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<RollupRow>(ROLLUPS_TABLE).await?;
    for c in computed {
        insert
            .write(&RollupRow {
                grain: grain.code(),
                bucket: c.bucket,
                tenant_id: c.tenant_id.clone(),
                link_id: c.link_id.clone(),
                views: c.metrics.total_views as u64,
                clicks: c.metrics.total_clicks as u64,
                unique_visitors: c.metrics.unique_visitors as u64,
                returning_visitors: c.metrics.returning_visitors as u64,
                conversions: c.metrics.total_conversions as u64,
                bots: c.metrics.bots as u64,
                breakdown: serde_json::to_string(&c.breakdown)?,
                computed_at: now,
                engaged_views: c.metrics.engaged_views as u64,
                engaged_ms: c.metrics.engaged_ms as u64,
                bounces: c.metrics.bounces as u64,
            })
            .await?;
    }
    insert.end().await?;
    Ok(())
}

/// A stable hash of a rollup's numbers (SipHash-1-3, fixed keys).
pub fn fingerprint(metrics: &RollupMetrics, breakdown: &RollupBreakdown) -> i64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x736d_6172_746c_696e, 0x6b73_726f_6c6c_7570);
    h.write(&serde_json::to_vec(&(metrics, breakdown)).unwrap_or_default());
    h.finish() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_ranges_and_fingerprints() {
        assert_eq!(rollup_id("t", "", 1_763_683_200), "t:all:2025-11-21T00:00:00Z");
        assert_eq!(rollup_id("t", "l", 1_763_683_200), "t:l:2025-11-21T00:00:00Z");
        assert_eq!(bucket_of("t:l:2025-11-21T00:00:00Z"), Some(1_763_683_200));
        let h: BTreeSet<u32> = [0, 3600, 7200, 18_000].into_iter().collect();
        assert_eq!(hour_ranges(&h), vec![(0, 10_800), (18_000, 21_600)]);
        let (m, mut b) = (RollupMetrics { total_views: 2, ..Default::default() }, RollupBreakdown::default());
        let fp = fingerprint(&m, &b);
        assert_eq!(fp, fingerprint(&m, &b), "stable");
        b.countries.insert("FR".into(), 2);
        assert_ne!(fp, fingerprint(&m, &b));
    }
}
