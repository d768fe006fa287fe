//! Which events a computation reads, and the SQL that counts them: the
//! counters and breakdowns of any set of windows or ranges, for every
//! tenant (the aggregator) or one tenant or link (the api), with one SQL.

use std::collections::HashMap;

use schemas::clickhouse::{BOUNCE_MS, ENGAGEMENTS_TABLE, EVENTS_TABLE};
use schemas::mongo::{RollupBreakdown, RollupMetrics};
use serde::Deserialize;

use crate::{Grain, RollupError};

/// Longest breakdown value kept, bytes (a DNS name is at most 253; UTM
/// values and places are cut at ingest to the same bound).
pub const MAX_VALUE_BYTES: usize = 253;

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
struct EngagementCounters {
    tenant_id: String,
    link_id: String,
    bucket: u32,
    engaged_views: u64,
    engaged_ms: u64,
    bounces: u64,
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

/// The engagement counters of `engagements` (issue #19): reports, their
/// visible time and bounces (left without a click-out within
/// [`BOUNCE_MS`]), humans only unless bots are asked for; filed in their
/// view's window (`ts` is the view's).
fn engagement_sql(db: &str, sel: &Selection, ranges: &[(u32, u32)], by_link: bool) -> String {
    let link = if by_link { "link_id" } else { "'' AS link_id" };
    let group = if by_link { "tenant_id, link_id, bucket" } else { "tenant_id, bucket" };
    let (human, bucket, filter) = (sel.human_sql(), sel.bucket_sql(), sel.where_sql(ranges));
    format!(
        "SELECT tenant_id, {link}, {bucket} AS bucket, count() AS engaged_views,
            sum(toUInt64(visible_ms)) AS engaged_ms, countIf(clicked = 0 AND visible_ms < {BOUNCE_MS}) AS bounces
         FROM {db}.{ENGAGEMENTS_TABLE} FINAL
         WHERE {filter} AND {human}
         GROUP BY {group}"
    )
}

fn breakdown_sql(db: &str, sel: &Selection, ranges: &[(u32, u32)]) -> String {
    let (human, bucket, filter) = (sel.human_sql(), sel.bucket_sql(), sel.where_sql(ranges));
    // Values are cut to MAX_VALUE_BYTES here too (ingest cleans new rows):
    // a flood of long distinct values costs bounded memory per row.
    let cut = |col: &str| format!("substring({col}, 1, {MAX_VALUE_BYTES})");
    let country = "replaceAll(toString(country), '\\0', '')";
    format!(
        "SELECT tenant_id, link_id, bucket, dim, value, count() AS n
         FROM (
            SELECT tenant_id, link_id, {bucket} AS bucket, kind, ts, country, device, browser, os, platform,
                {referrer} AS referrer, {source} AS source, {medium} AS medium, {campaign} AS campaign,
                {region} AS region, {city} AS city,
                if(variant = '', rule_id, concat(rule_id, '/', variant)) AS route
            FROM {db}.{EVENTS_TABLE} FINAL
            WHERE {filter} AND {human}
         )
         ARRAY JOIN
            ['countries', 'devices', 'browsers', 'os', 'referrers', 'sources', 'platforms', 'hours',
             'regions', 'cities', 'mediums', 'campaigns', 'routes', 'route_clicks'] AS dim,
            [toString(country), toString(device), browser, os, referrer, source, platform, toString(toHour(ts)),
             if(region = '', '', concat({country}, '|', region)), if(city = '', '', concat({country}, '|', city)),
             medium, campaign, route, route] AS value
         WHERE (dim IN ('platforms', 'route_clicks')) = (kind = 'click') AND value != ''
         GROUP BY tenant_id, link_id, bucket, dim, value",
        referrer = cut("referrer_host"),
        source = cut("utm_source"),
        medium = cut("utm_medium"),
        campaign = cut("utm_campaign"),
        region = cut("region"),
        city = cut("city"),
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
        "regions" => &mut b.regions,
        "cities" => &mut b.cities,
        "mediums" => &mut b.mediums,
        "campaigns" => &mut b.campaigns,
        "routes" => &mut b.routes,
        "route_clicks" => &mut b.route_clicks,
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
    let mut engaged: Vec<EngagementCounters> = Vec::new();
    for by_link in [true, false] {
        if (by_link && !sel.per_link()) || (!by_link && !sel.per_tenant()) {
            continue;
        }
        let (c, e) = futures::try_join!(
            sel.bind(ch.query(&counters_sql(db, sel, ranges, by_link)), ranges).fetch_all::<Counters>(),
            sel.bind(ch.query(&engagement_sql(db, sel, ranges, by_link)), ranges).fetch_all::<EngagementCounters>(),
        )?;
        rows.extend(c);
        engaged.extend(e);
    }
    let mut out: Vec<Computed> = rows
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
                ..Default::default()
            },
            breakdown: RollupBreakdown::default(),
            tenant_id: c.tenant_id,
            link_id: c.link_id,
            bucket: c.bucket,
        })
        .collect();
    // Engagements join their key's counters (a key with reports only, its
    // view erased, gets a result of its own).
    let mut at: HashMap<(String, String, u32), usize> =
        out.iter().enumerate().map(|(i, c)| ((c.tenant_id.clone(), c.link_id.clone(), c.bucket), i)).collect();
    for e in engaged {
        let i = *at.entry((e.tenant_id.clone(), e.link_id.clone(), e.bucket)).or_insert_with(|| {
            out.push(Computed {
                tenant_id: e.tenant_id.clone(),
                link_id: e.link_id.clone(),
                bucket: e.bucket,
                metrics: RollupMetrics::default(),
                breakdown: RollupBreakdown::default(),
            });
            out.len() - 1
        });
        let m = &mut out[i].metrics;
        (m.engaged_views, m.engaged_ms, m.bounces) = (e.engaged_views as i64, e.engaged_ms as i64, e.bounces as i64);
        m.derive_engagement();
    }
    Ok(out)
}

/// [`counters`] with breakdowns: views by country, device, browser, OS,
/// referrer host, UTM source, medium and campaign, region and city (keyed
/// `{country}|{place}`), and hour of day when `sel.bucket` is a day or
/// absent; clicks by platform. Breakdowns are whole (not capped): callers
/// cap them ([`RollupBreakdown::cap`]) once they are summed.
pub async fn compute_range(
    ch: &clickhouse::Client,
    db: &str,
    sel: &Selection,
    ranges: &[(u32, u32)],
) -> Result<Vec<Computed>, RollupError> {
    let daily = sel.bucket != Some(Grain::Hour);
    let (mut computed, mut breakdowns) =
        futures::try_join!(counters(ch, db, sel, ranges), breakdowns(ch, db, sel, ranges, daily))?;
    for c in &mut computed {
        c.breakdown = breakdowns.remove(&(c.tenant_id.clone(), c.link_id.clone(), c.bucket)).unwrap_or_default();
        if daily && c.breakdown.hours.is_empty() {
            c.breakdown.hours = vec![0; 24];
        }
    }
    Ok(computed)
}

/// The breakdowns of the events selected by `sel` over `ranges`, by
/// (tenant, link or `""` tenant-wide, bucket), whole (not capped); the
/// hour-of-day dimension only when `daily`.
pub async fn breakdowns(
    ch: &clickhouse::Client,
    db: &str,
    sel: &Selection,
    ranges: &[(u32, u32)],
    daily: bool,
) -> Result<HashMap<(String, String, u32), RollupBreakdown>, RollupError> {
    let mut out: HashMap<(String, String, u32), RollupBreakdown> = HashMap::new();
    if ranges.is_empty() {
        return Ok(out);
    }
    let rows: Vec<BreakdownRow> = sel.bind(ch.query(&breakdown_sql(db, sel, ranges)), ranges).fetch_all().await?;
    for r in rows {
        let n = r.n as i64;
        if sel.per_link() {
            add(out.entry((r.tenant_id.clone(), r.link_id, r.bucket)).or_default(), &r.dim, &r.value, n, daily);
        }
        if sel.per_tenant() {
            add(out.entry((r.tenant_id, String::new(), r.bucket)).or_default(), &r.dim, &r.value, n, daily);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
