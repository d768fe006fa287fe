//! `rollup`: the rollup library shared by the aggregator service (which runs
//! it on a loop) and the api (which answers open windows with the same SQL
//! and erases data subjects through it).
//!
//! It computes and writes the rollups of one window (an hour or a day) from
//! the deduplicated events in ClickHouse, into the ClickHouse `rollups` table
//! and the MongoDB mirrors `analytics_hourly` / `analytics_daily`; finds the
//! windows made dirty by rows written since a watermark ([`dirty_windows`],
//! [`pass`]); keeps that watermark ([`watermark`]); refreshes the cached
//! link counters ([`refresh_link_counters`]); and applies retention and
//! erasure ([`lifecycle`]).
//!
//! Reads: ClickHouse `events`. Writes: ClickHouse `rollups`, MongoDB
//! rollups, `smartlinks.metadata` counters, `aggregator_state`.
//!
//! ## Rules (seed 000 `analytics_daily`, issue #5)
//! - Events are read through the dedup (`FROM events FINAL`), so a
//!   redelivered event never counts twice.
//! - Bots are excluded from every counter but `bots`.
//! - A visitor is the first-party cookie when present, else the daily
//!   visitor hash; uniques and returning visitors are distinct visitors over
//!   the whole window (a day's uniques are counted over the day, never
//!   summed from its hours); conversions are sessions with a click-out;
//!   the conversion rate is clicks / views.
//! - Breakdowns count views by country, device, browser, OS, referrer host,
//!   UTM source and hour of day, and clicks by platform; they are additive,
//!   so the tenant-wide breakdown is the sum of its links'.
//!
//! ## Idempotency
//! A window is recomputed whole and written under stable keys: in
//! ClickHouse `(tenant, grain, bucket, link)` with a newer `computed_at`
//! (`ReplacingMergeTree`), in MongoDB `_id = {tenant}:{link|all}:{bucket}`
//! with a replacing upsert. A key that had a rollup and now has no event
//! (every event erased) is written as zeros. Re-rolling a window that did not
//! change leaves the same numbers.

pub mod lifecycle;
pub mod watermark;

use std::collections::{BTreeMap, HashMap, HashSet};

use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::clickhouse::{GrainCode, RollupRow, EVENTS_TABLE, ROLLUPS_TABLE};
use schemas::mongo::{collections, Rollup, RollupBreakdown, RollupMetrics};
use serde::Deserialize;

/// Errors of a roll.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// A ClickHouse query or insert failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// A MongoDB operation failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// Serialising a breakdown failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
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

    fn code(self) -> GrainCode {
        match self {
            Grain::Hour => GrainCode::Hour,
            Grain::Day => GrainCode::Day,
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Grain::Hour => collections::ANALYTICS_HOURLY,
            Grain::Day => collections::ANALYTICS_DAILY,
        }
    }
}

/// The visitor key of an event row, in SQL.
pub const VISITOR_SQL: &str = "if(visitor_id != '', visitor_id, toString(visitor_hash))";

/// Which events a computation reads and how it groups them. The aggregator
/// rolls every tenant ([`Selection::rollup`]); the API reads one tenant or
/// one link over any range with the same SQL, so a window answered from
/// raw events equals its rollup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only this tenant (hex id).
    pub tenant_id: Option<String>,
    /// Only this link (hex id); `None` with a tenant gives tenant-wide
    /// results only.
    pub link_id: Option<String>,
    /// Count bots like humans (rollups never do: their `bots` counter is
    /// the only one with bots).
    pub include_bots: bool,
    /// Also group by UTC windows of this grain (`Computed::bucket`).
    pub bucket: Option<Grain>,
}

impl Selection {
    /// Every tenant, per link and tenant-wide, humans only: what a rollup holds.
    pub fn rollup(grain: Grain) -> Self {
        Selection { bucket: Some(grain), ..Default::default() }
    }

    /// `true` when per-link results are wanted.
    fn per_link(&self) -> bool {
        self.tenant_id.is_none() || self.link_id.is_some()
    }

    /// `true` when tenant-wide results are wanted.
    fn per_tenant(&self) -> bool {
        self.link_id.is_none()
    }

    /// The SQL condition that keeps humans, or `1` with [`Self::include_bots`].
    pub fn human_sql(&self) -> &'static str {
        if self.include_bots {
            "1"
        } else {
            "is_bot = 0"
        }
    }

    /// The SQL expression of an event's window start (Unix s, UTC), or `0`.
    pub fn bucket_sql(&self) -> String {
        match self.bucket {
            Some(g) => format!("toUInt32(intDiv(toUInt32(ts), {s}) * {s})", s = g.seconds()),
            None => "toUInt32(0)".into(),
        }
    }

    /// The `WHERE` condition over `ranges` (half-open `[from, to)`, Unix s)
    /// and the tenant and link; bind its parameters with [`Self::bind`].
    pub fn where_sql(&self, ranges: &[(u32, u32)]) -> String {
        let mut w = if ranges.is_empty() {
            "0".to_string()
        } else {
            let r: Vec<&str> = ranges.iter().map(|_| "(ts >= toDateTime(?) AND ts < toDateTime(?))").collect();
            format!("({})", r.join(" OR "))
        };
        if self.tenant_id.is_some() {
            w.push_str(" AND tenant_id = ?");
        }
        if self.link_id.is_some() {
            w.push_str(" AND link_id = ?");
        }
        w
    }

    /// Binds the parameters of [`Self::where_sql`], in order.
    pub fn bind(&self, mut q: clickhouse::query::Query, ranges: &[(u32, u32)]) -> clickhouse::query::Query {
        for (from, to) in ranges {
            q = q.bind(*from).bind(*to);
        }
        if let Some(t) = &self.tenant_id {
            q = q.bind(t.as_str());
        }
        if let Some(l) = &self.link_id {
            q = q.bind(l.as_str());
        }
        q
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Counters {
    tenant_id: String,
    link_id: String,
    bucket: u32,
    views: u64,
    clicks: u64,
    unique_visitors: u64,
    returning_visitors: u64,
    conversions: u64,
    bots: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct BreakdownRow {
    tenant_id: String,
    link_id: String,
    bucket: u32,
    dim: String,
    value: String,
    n: u64,
}

/// One computed rollup, ready for both stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// Tenant id (hex).
    pub tenant_id: String,
    /// Link id (hex); empty for the tenant-wide rollup.
    pub link_id: String,
    /// Window start (Unix s, UTC) when grouped by a grain, else 0.
    pub bucket: u32,
    /// Counters.
    pub metrics: RollupMetrics,
    /// Breakdowns.
    pub breakdown: RollupBreakdown,
}

fn counters_sql(db: &str, sel: &Selection, ranges: &[(u32, u32)], by_link: bool) -> String {
    let link = if by_link { "link_id" } else { "'' AS link_id" };
    let group = if by_link { "tenant_id, link_id, bucket" } else { "tenant_id, bucket" };
    let (human, bucket, filter) = (sel.human_sql(), sel.bucket_sql(), sel.where_sql(ranges));
    format!(
        "SELECT tenant_id, {link}, {bucket} AS bucket,
            countIf(kind = 'view' AND {human}) AS views,
            countIf(kind = 'click' AND {human}) AS clicks,
            uniqExactIf({VISITOR_SQL}, {human}) AS unique_visitors,
            uniqExactIf({VISITOR_SQL}, {human} AND is_returning = 1) AS returning_visitors,
            uniqExactIf(session_id, kind = 'click' AND {human}) AS conversions,
            countIf(is_bot = 1) AS bots
         FROM {db}.{EVENTS_TABLE} FINAL
         WHERE {filter}
         GROUP BY {group}"
    )
}

fn breakdown_sql(db: &str, sel: &Selection, ranges: &[(u32, u32)]) -> String {
    let (human, bucket, filter) = (sel.human_sql(), sel.bucket_sql(), sel.where_sql(ranges));
    format!(
        "SELECT tenant_id, link_id, bucket, dim, value, count() AS n
         FROM (
            SELECT tenant_id, link_id, {bucket} AS bucket, kind, ts, country, device, browser, os, referrer_host, utm_source, platform
            FROM {db}.{EVENTS_TABLE} FINAL
            WHERE {filter} AND {human}
         )
         ARRAY JOIN
            ['countries', 'devices', 'browsers', 'os', 'referrers', 'sources', 'platforms', 'hours'] AS dim,
            [toString(country), toString(device), browser, os, referrer_host, utm_source, platform, toString(toHour(ts))] AS value
         WHERE (dim = 'platforms') = (kind = 'click')
         GROUP BY tenant_id, link_id, bucket, dim, value"
    )
}

/// Adds `n` to the breakdown `dim` (a [`RollupBreakdown`] field name) at
/// `value`; empty and NUL-padded values are left out; `hours` only counts
/// when `daily`.
pub fn add(b: &mut RollupBreakdown, dim: &str, value: &str, n: i64, daily: bool) {
    let value = value.trim_end_matches('\0');
    if value.is_empty() {
        return;
    }
    let map = match dim {
        "countries" => &mut b.countries,
        "devices" => &mut b.devices,
        "browsers" => &mut b.browsers,
        "os" => &mut b.os,
        "referrers" => &mut b.referrers,
        "sources" => &mut b.sources,
        "platforms" => &mut b.platforms,
        "hours" => {
            if daily {
                if let Ok(h) = value.parse::<usize>() {
                    if b.hours.len() < 24 {
                        b.hours.resize(24, 0);
                    }
                    if h < 24 {
                        b.hours[h] += n;
                    }
                }
            }
            return;
        }
        _ => return,
    };
    *map.entry(value.to_string()).or_insert(0) += n;
}

/// `clicks / views`, 0 when no views (issue #5: conversion rate = click-outs / views).
pub fn rate(clicks: u64, views: u64) -> f64 {
    if views == 0 {
        0.0
    } else {
        clicks as f64 / views as f64
    }
}

/// Computes every rollup (per link and per tenant) of the window starting at
/// `start` (seconds, UTC) from the events table of database `db`.
pub async fn compute(
    ch: &clickhouse::Client,
    db: &str,
    grain: Grain,
    start: u32,
) -> Result<Vec<Computed>, RollupError> {
    compute_range(ch, db, &Selection::rollup(grain), &[(start, start + grain.seconds())]).await
}

/// Counts the events selected by `sel` over `ranges` (half-open, Unix s,
/// UTC; they must not overlap): one [`Computed`] per (tenant, link or
/// tenant-wide, bucket) that has events, with empty breakdowns. Uniques,
/// returning visitors and conversions are distinct over everything one
/// result covers, never sums.
pub async fn counters(
    ch: &clickhouse::Client,
    db: &str,
    sel: &Selection,
    ranges: &[(u32, u32)],
) -> Result<Vec<Computed>, RollupError> {
    let mut rows: Vec<Counters> = Vec::new();
    if sel.per_link() {
        rows.extend(sel.bind(ch.query(&counters_sql(db, sel, ranges, true)), ranges).fetch_all::<Counters>().await?);
    }
    if sel.per_tenant() {
        rows.extend(sel.bind(ch.query(&counters_sql(db, sel, ranges, false)), ranges).fetch_all::<Counters>().await?);
    }
    Ok(rows
        .into_iter()
        .map(|c| Computed {
            metrics: RollupMetrics {
                total_views: c.views as i64,
                total_clicks: c.clicks as i64,
                unique_visitors: c.unique_visitors as i64,
                returning_visitors: c.returning_visitors as i64,
                total_conversions: c.conversions as i64,
                conversion_rate: rate(c.clicks, c.views),
                bots: c.bots as i64,
            },
            breakdown: RollupBreakdown::default(),
            tenant_id: c.tenant_id,
            link_id: c.link_id,
            bucket: c.bucket,
        })
        .collect())
}

/// [`counters`] with breakdowns: views by country, device, browser, OS,
/// referrer host, UTM source (and hour of day when `sel.bucket` is a day
/// or absent), clicks by platform.
pub async fn compute_range(
    ch: &clickhouse::Client,
    db: &str,
    sel: &Selection,
    ranges: &[(u32, u32)],
) -> Result<Vec<Computed>, RollupError> {
    let mut computed = counters(ch, db, sel, ranges).await?;
    let rows: Vec<BreakdownRow> = sel.bind(ch.query(&breakdown_sql(db, sel, ranges)), ranges).fetch_all().await?;
    let daily = sel.bucket != Some(Grain::Hour);
    let mut breakdowns: HashMap<(String, String, u32), RollupBreakdown> = HashMap::new();
    for r in rows {
        let n = r.n as i64;
        if sel.per_link() {
            add(breakdowns.entry((r.tenant_id.clone(), r.link_id, r.bucket)).or_default(), &r.dim, &r.value, n, daily);
        }
        if sel.per_tenant() {
            add(breakdowns.entry((r.tenant_id, String::new(), r.bucket)).or_default(), &r.dim, &r.value, n, daily);
        }
    }
    for c in &mut computed {
        c.breakdown = breakdowns.remove(&(c.tenant_id.clone(), c.link_id.clone(), c.bucket)).unwrap_or_default();
        if daily && c.breakdown.hours.is_empty() {
            c.breakdown.hours = vec![0; 24];
        }
    }
    Ok(computed)
}

/// The MongoDB `_id` of a rollup: `{tenant}:{link|all}:{bucket RFC 3339}`.
pub fn rollup_id(tenant_id: &str, link_id: &str, start: u32) -> String {
    let at =
        DateTime::from_millis(i64::from(start) * 1000).try_to_rfc3339_string().unwrap_or_else(|_| start.to_string());
    format!("{tenant_id}:{}:{at}", if link_id.is_empty() { "all" } else { link_id })
}

/// Rolls one window: computes it and writes it to ClickHouse (`rollups`)
/// and MongoDB (`analytics_hourly` / `analytics_daily`), zeroing keys that
/// had a rollup and have no event any more. Returns the rollups written.
pub async fn roll(
    ch: &clickhouse::Client,
    db: &str,
    mongo: &mongodb::Database,
    grain: Grain,
    start: u32,
    now: u32,
) -> Result<Vec<Computed>, RollupError> {
    let mut computed = compute(ch, db, grain, start).await?;
    let coll = mongo.collection::<Rollup>(grain.collection());
    let date = DateTime::from_millis(i64::from(start) * 1000);
    // Keys written before for this window and absent now: zero them.
    let present: HashSet<String> = computed.iter().map(|c| rollup_id(&c.tenant_id, &c.link_id, start)).collect();
    let previous: Vec<Rollup> = coll.find(doc! { "date": date }).await?.try_collect().await?;
    for p in previous {
        if !present.contains(&p.id) {
            computed.push(Computed {
                tenant_id: p.client_id.to_hex(),
                link_id: p.smartlink_id.map(|l| l.to_hex()).unwrap_or_default(),
                bucket: start,
                metrics: RollupMetrics::default(),
                breakdown: RollupBreakdown {
                    hours: if grain == Grain::Day { vec![0; 24] } else { Vec::new() },
                    ..Default::default()
                },
            });
        }
    }
    if computed.is_empty() {
        return Ok(computed);
    }
    let mut insert = ch.insert::<RollupRow>(ROLLUPS_TABLE).await?;
    for c in &computed {
        insert
            .write(&RollupRow {
                grain: grain.code(),
                bucket: start,
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
            })
            .await?;
    }
    insert.end().await?;
    for c in &computed {
        let (Ok(client_id), link) = (ObjectId::parse_str(&c.tenant_id), &c.link_id) else { continue };
        let smartlink_id = if link.is_empty() { None } else { ObjectId::parse_str(link).ok() };
        let id = rollup_id(&c.tenant_id, &c.link_id, start);
        let doc = Rollup {
            id: id.clone(),
            date,
            client_id,
            smartlink_id,
            metrics: c.metrics.clone(),
            breakdown: c.breakdown.clone(),
            last_updated: DateTime::from_millis(i64::from(now) * 1000),
        };
        coll.replace_one(doc! { "_id": &id }, &doc).upsert(true).await?;
    }
    Ok(computed)
}

/// Hours and days touched by rows written at or after `since` (seconds,
/// UTC), and the newest write time seen (`since` when none).
pub async fn dirty_windows(
    ch: &clickhouse::Client,
    db: &str,
    since: u32,
) -> Result<(Vec<(Grain, u32)>, u32), RollupError> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Dirty {
        hour: u32,
        newest: u32,
    }
    let rows: Vec<Dirty> = ch
        .query(&format!(
            "SELECT toUInt32(toStartOfHour(ts)) AS hour, toUInt32(max(ingested_at)) AS newest
             FROM {db}.{EVENTS_TABLE} WHERE ingested_at >= toDateTime(?) GROUP BY hour ORDER BY hour"
        ))
        .bind(since)
        .fetch_all()
        .await?;
    let newest = rows.iter().map(|r| r.newest).max().unwrap_or(since);
    let mut windows: BTreeMap<(Grain, u32), ()> = BTreeMap::new();
    for r in &rows {
        windows.insert((Grain::Hour, r.hour), ());
        windows.insert((Grain::Day, Grain::Day.floor(r.hour)), ());
    }
    Ok((windows.into_keys().collect(), newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_ids() {
        assert_eq!(Grain::Hour.floor(1_763_703_599), 1_763_701_200);
        assert_eq!(Grain::Day.floor(1_763_703_599), 1_763_683_200);
        assert_eq!(rollup_id("t", "", 1_763_683_200), "t:all:2025-11-21T00:00:00Z");
        assert_eq!(rollup_id("t", "l", 1_763_683_200), "t:l:2025-11-21T00:00:00Z");
    }

    #[test]
    fn breakdown_values_are_cleaned_and_hours_are_daily_only() {
        let mut b = RollupBreakdown::default();
        add(&mut b, "countries", "GB", 2, true);
        add(&mut b, "countries", "\0\0", 5, true);
        add(&mut b, "hours", "13", 3, true);
        add(&mut b, "platforms", "spotify", 1, true);
        assert_eq!(b.countries.get("GB"), Some(&2));
        assert_eq!(b.countries.len(), 1, "unknown country left out");
        assert_eq!(b.hours.len(), 24);
        assert_eq!(b.hours[13], 3);
        let mut hourly = RollupBreakdown::default();
        add(&mut hourly, "hours", "13", 3, false);
        assert!(hourly.hours.is_empty());
        assert_eq!(rate(1, 4), 0.25);
        assert_eq!(rate(1, 0), 0.0);
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
}

/// What one [`pass`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Newest row write time seen (Unix seconds): the next watermark.
    pub newest: u32,
    /// Hour windows rolled.
    pub hours: usize,
    /// Day windows rolled.
    pub days: usize,
}

/// Current time, Unix seconds (0 if the clock is before 1970).
pub fn now_s() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// One pass: rolls the windows dirty since `since` (seconds, UTC) and
/// refreshes the counters of the links touched. Returns the new watermark
/// and how many windows of each grain were rolled.
pub async fn pass(stores: &Stores, since: u32) -> Result<PassReport, RollupError> {
    let (windows, newest) = dirty_windows(&stores.ch, &stores.ch_db, since).await?;
    let now = now_s();
    let mut report = PassReport { newest, ..PassReport::default() };
    let mut links = std::collections::BTreeSet::new();
    for (grain, start) in windows {
        let rolled = roll(&stores.ch, &stores.ch_db, &stores.mongo, grain, start, now).await?;
        match grain {
            Grain::Hour => report.hours += 1,
            Grain::Day => report.days += 1,
        }
        links.extend(rolled.into_iter().filter(|c| !c.link_id.is_empty()).map(|c| c.link_id));
    }
    refresh_link_counters(stores, links.into_iter().collect()).await?;
    Ok(report)
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
