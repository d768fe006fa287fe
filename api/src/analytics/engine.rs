//! The analytics engine behind `/v1/analytics/*`: answers any range from
//! rollups where a window is closed and from raw events where it is not,
//! with the same numbers either way.
//!
//! ## How a range is answered
//! `[from, to)` is cut into whole UTC days, whole hours and the rest
//! ([`plan`]). A whole day or hour is *closed* when the aggregator's
//! watermark (write time up to which rows are rolled) is past its end by
//! the grace period (`API_ROLLUP_GRACE_SECS`); closed windows are read from
//! the ClickHouse `rollups` table, everything else from `events FINAL` with
//! the aggregator's own SQL ([`rollup::compute_range`]). So a
//! window answered from raw events equals its rollup, and the
//! answer does not depend on how far the aggregator got.
//!
//! A window of a day the aggregator still has pending (a backlog of late
//! rows, [`rollup::watermark::State`]) is never closed: its rollup may miss
//! rows, so it is read raw until re-rolled.
//!
//! Additive numbers (views, clicks, bots, breakdowns) are summed over the
//! pieces. Distinct numbers over a range (unique and returning visitors,
//! conversions) cannot be summed from windows: they merge the windows'
//! distinct-count states with states of the raw pieces
//! ([`rollup::states::distinct`]): whole days in aligned blocks of 2 to 64
//! days ([`rollup::spans`]), so a 30-day overview merges about 8 day-block
//! states, the hour states of its partial days and the open hour's events,
//! not 30 days of events.
//!
//! ## Exactness
//! - A time-series bucket (one hour or day) is exact: its rollup counts
//!   distinct values with `uniqExact`.
//! - Over a range of several windows, unique visitors, returning visitors
//!   and conversions are HyperLogLog merges (`uniqCombined(18)`): exact
//!   below a few thousand distinct values, otherwise within 0.33% of
//!   `uniqExact` over raw events as measured, except near 2.5 × 2^18 ≈ 655k
//!   distinct values, where `uniqCombined` switches from linear counting to
//!   the HyperLogLog estimate and was measured 2.4% high
//!   (`benches/README.md`, `analytics_scale`).
//! - Breakdowns keep the top values of each window (`AGGREGATOR_BREAKDOWN_TOP_N`)
//!   and sum the rest under `(other)`; summed over a range, a value's count
//!   is exact when it was in the top N of every window, otherwise the
//!   missing part is in `(other)`. Sums always equal the totals.
//!
//! Rollups never count bots; with `include_bots` everything is read from
//! raw events.

use std::collections::{BTreeMap, HashMap};

use rollup::states::Pieces;
use rollup::{self, Computed, Grain, Selection, VISITOR_SQL};
use schemas::clickhouse::{RollupRow, EVENTS_TABLE, ROLLUPS_TABLE};
use schemas::mongo::{RollupBreakdown, RollupMetrics};
use serde::Deserialize;

use crate::error::ApiError;

/// One tenant, or one of its links (hex ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Tenant.
    pub tenant_id: String,
    /// Link; `None` for the whole tenant.
    pub link_id: Option<String>,
}

impl Scope {
    fn selection(&self, include_bots: bool, bucket: Option<Grain>) -> Selection {
        Selection { tenant_id: Some(self.tenant_id.clone()), link_id: self.link_id.clone(), include_bots, bucket }
    }
}

/// How a range is read: whole closed days and hours from rollups, the rest
/// from raw events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Starts of closed whole days (Unix s, UTC).
    pub days: Vec<u32>,
    /// Starts of closed whole hours.
    pub hours: Vec<u32>,
    /// Half-open ranges read from raw events, merged when adjacent.
    pub raw: Vec<(u32, u32)>,
}

/// Cuts `[from, to)` (Unix s) into closed whole days, closed whole hours
/// and raw ranges; a window is closed when it ends at or before
/// `closed_until` and its day is not in `pending` (day starts).
pub fn plan(from: u32, to: u32, closed_until: u32, pending: &[u32]) -> Plan {
    let mut p = Plan::default();
    let mut t = from;
    let open = |start: u32, len: u32| rollup::watermark::overlaps_pending(pending, start, len);
    while t < to {
        let (day, hour) = (Grain::Day.seconds(), Grain::Hour.seconds());
        if t.is_multiple_of(day) && t + day <= to && t + day <= closed_until && !open(t, day) {
            p.days.push(t);
            t += day;
        } else if t.is_multiple_of(hour) && t + hour <= to && t + hour <= closed_until && !open(t, hour) {
            p.hours.push(t);
            t += hour;
        } else {
            let end = (Grain::Hour.floor(t) + hour).min(to);
            match p.raw.last_mut() {
                Some(last) if last.1 == t => last.1 = end,
                _ => p.raw.push((t, end)),
            }
            t = end;
        }
    }
    p
}

/// Counters and breakdowns of a range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// Counters (distinct ones over the whole range).
    pub metrics: RollupMetrics,
    /// Breakdowns (views by country, device, ...; clicks by platform).
    pub breakdown: RollupBreakdown,
    /// Windows read from rollups.
    pub rollup_windows: usize,
    /// Ranges read from raw events.
    pub raw_ranges: usize,
}

/// One bucket of a time series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Bucket start, Unix s, UTC.
    pub start: u32,
    /// Counters of the bucket (clipped to the range at its ends).
    pub metrics: RollupMetrics,
    /// Clicks by platform id.
    pub platforms: BTreeMap<String, i64>,
    /// `true` when read from a rollup.
    pub from_rollup: bool,
}

/// A breakdown dimension of `/v1/analytics/breakdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// ISO country code (views).
    Country,
    /// Region within a country (views; raw events).
    Region,
    /// City (views; raw events).
    City,
    /// Device class (views).
    Device,
    /// Operating system (views).
    Os,
    /// Browser (views).
    Browser,
    /// Platform id (clicks).
    Platform,
    /// Referrer host (views).
    Referrer,
    /// UTM source (views).
    UtmSource,
    /// UTM medium (views; raw events).
    UtmMedium,
    /// UTM campaign (views; raw events).
    UtmCampaign,
    /// Routing rule, `{rule}` or `{rule}/{variant}` (views the rule decided; issue #18).
    Route,
    /// Routing rule, `{rule}` or `{rule}/{variant}` (click-outs the rule decided).
    RouteClick,
}

impl Dimension {
    /// Every dimension with its query name.
    pub const ALL: [(Dimension, &'static str); 13] = [
        (Dimension::Country, "country"),
        (Dimension::Region, "region"),
        (Dimension::City, "city"),
        (Dimension::Device, "device"),
        (Dimension::Os, "os"),
        (Dimension::Browser, "browser"),
        (Dimension::Platform, "platform"),
        (Dimension::Referrer, "referrer"),
        (Dimension::UtmSource, "utm_source"),
        (Dimension::UtmMedium, "utm_medium"),
        (Dimension::UtmCampaign, "utm_campaign"),
        (Dimension::Route, "route"),
        (Dimension::RouteClick, "route_click"),
    ];

    /// The dimension named `s`.
    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.iter().find(|(_, n)| *n == s).map(|(d, _)| *d)
    }

    /// `clicks` for platforms and rule click-outs, `views` otherwise.
    pub fn metric(self) -> &'static str {
        if matches!(self, Dimension::Platform | Dimension::RouteClick) {
            "clicks"
        } else {
            "views"
        }
    }

    /// The rollup breakdown holding it.
    fn in_rollup(self, b: &RollupBreakdown) -> &BTreeMap<String, i64> {
        match self {
            Dimension::Country => &b.countries,
            Dimension::Device => &b.devices,
            Dimension::Os => &b.os,
            Dimension::Browser => &b.browsers,
            Dimension::Platform => &b.platforms,
            Dimension::Referrer => &b.referrers,
            Dimension::UtmSource => &b.sources,
            Dimension::Region => &b.regions,
            Dimension::City => &b.cities,
            Dimension::UtmMedium => &b.mediums,
            Dimension::UtmCampaign => &b.campaigns,
            Dimension::Route => &b.routes,
            Dimension::RouteClick => &b.route_clicks,
        }
    }

    /// Whether values are keyed `{country}|{place}` (regions, cities).
    fn with_country(self) -> bool {
        matches!(self, Dimension::Region | Dimension::City)
    }
}

/// One value of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownItem {
    /// The value (`GB`, `mobile`, `spotify`, `instagram.com`).
    pub value: String,
    /// Country of a region or city.
    pub country: Option<String>,
    /// Views (clicks for platforms).
    pub count: i64,
}

/// What `/v1/analytics/realtime` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Realtime {
    /// Distinct visitors over the last 5 minutes.
    pub active_visitors: u64,
    /// `(minute start, views, clicks)` for each of the last 30 minutes, oldest first.
    pub per_minute: Vec<(u32, u64, u64)>,
}

/// Tracking-health numbers of a range (seed 002 "Health Checks").
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clickhouse::Row)]
pub struct HealthStats {
    /// Human views.
    pub views: u64,
    /// Human views where the client-side pixels could fire (consent
    /// granted, no DNT/GPC).
    pub client_eligible: u64,
    /// Human views whose visitor refused cookies.
    pub consent_denied: u64,
    /// Human views whose visitor did not answer the banner.
    pub consent_unknown: u64,
    /// Human views sent with DNT or GPC.
    pub dnt_views: u64,
    /// Bot events.
    pub bots: u64,
    /// Newest event time, Unix s (0 when none).
    pub last_event_at: u32,
    /// Newest write time, Unix s (0 when none).
    pub last_ingested_at: u32,
    /// Median delay from the visit to its row in ClickHouse, s.
    pub delay_p50_s: f64,
    /// 99th percentile of that delay, s.
    pub delay_p99_s: f64,
}

/// Additive totals of one tenant (`link_id` empty) or one link over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct KeyTotals {
    /// Tenant (hex id).
    pub tenant_id: String,
    /// Link (hex id); empty for the tenant's own totals.
    pub link_id: String,
    /// Human views.
    pub views: u64,
    /// Human click-outs.
    pub clicks: u64,
    /// Bot events.
    pub bots: u64,
}

/// Reads analytics for one request.
pub struct Engine<'a> {
    /// ClickHouse client.
    pub ch: &'a clickhouse::Client,
    /// ClickHouse database.
    pub db: &'a str,
    /// Windows ending at or before this time (Unix s) are read from rollups.
    pub closed_until: u32,
    /// Days (starts, Unix s) the aggregator has not re-rolled yet: read raw.
    pub pending: Vec<u32>,
    /// Values kept per breakdown dimension in an answer; the rest is summed
    /// under `(other)`. 0 keeps all.
    pub top_n: usize,
    /// `Some` when blocks of closed days are merged from `rollup_spans`
    /// (built by the aggregator, [`rollup::spans`]) rather than day by day:
    /// the days whose blocks are not re-merged yet (no block holding one is
    /// used). [`rollup::watermark::State::usable_spans`].
    pub spans: Option<Vec<u32>>,
}

fn add_metrics(into: &mut RollupMetrics, m: &RollupMetrics) {
    into.total_views += m.total_views;
    into.total_clicks += m.total_clicks;
    into.bots += m.bots;
    into.engaged_views += m.engaged_views;
    into.engaged_ms += m.engaged_ms;
    into.bounces += m.bounces;
    into.derive_engagement();
}

fn row_breakdown(r: &RollupRow) -> Result<RollupBreakdown, ApiError> {
    serde_json::from_str(&r.breakdown)
        .map_err(|e| ApiError::Unavailable { store: "clickhouse", detail: format!("rollup breakdown: {e}") })
}

impl Engine<'_> {
    /// The rollups of `scope` at `grain` starting at `starts`, by start.
    async fn rollups(&self, scope: &Scope, grain: Grain, starts: &[u32]) -> Result<HashMap<u32, RollupRow>, ApiError> {
        let Some(buckets) = rollup::buckets_sql(starts) else { return Ok(HashMap::new()) };
        let rows: Vec<RollupRow> = self
            .ch
            .query(&format!(
                "SELECT ?fields FROM {}.{ROLLUPS_TABLE} FINAL
                 WHERE tenant_id = ? AND grain = ? AND link_id = ? AND {buckets}",
                self.db
            ))
            .bind(scope.tenant_id.as_str())
            .bind(grain.name())
            .bind(scope.link_id.as_deref().unwrap_or(""))
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.bucket, r)).collect())
    }

    async fn raw(
        &self,
        scope: &Scope,
        include_bots: bool,
        bucket: Option<Grain>,
        ranges: &[(u32, u32)],
    ) -> Result<Vec<Computed>, ApiError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        Ok(rollup::compute_range(self.ch, self.db, &scope.selection(include_bots, bucket), ranges).await?)
    }

    /// The plan of `[from, to)`: everything raw with bots.
    fn plan(&self, from: u32, to: u32, include_bots: bool) -> Plan {
        if include_bots {
            Plan { raw: vec![(from, to)], ..Default::default() }
        } else {
            plan(from, to, self.closed_until, &self.pending)
        }
    }

    /// Whether the `grain` window at `start` is closed (read from its rollup).
    fn closed(&self, start: u32, len: u32) -> bool {
        start + len <= self.closed_until && !rollup::watermark::overlaps_pending(&self.pending, start, len)
    }

    /// Sums of the additive numbers over `plan`: its rollups and raw
    /// ranges read at the same time.
    async fn additive(
        &self,
        scope: &Scope,
        plan: &Plan,
        include_bots: bool,
    ) -> Result<(RollupMetrics, RollupBreakdown), ApiError> {
        let (days, hours, raw) = futures::try_join!(
            self.rollups(scope, Grain::Day, &plan.days),
            self.rollups(scope, Grain::Hour, &plan.hours),
            self.raw(scope, include_bots, None, &plan.raw),
        )?;
        let (mut m, mut b) = (RollupMetrics::default(), RollupBreakdown::default());
        for r in days.values().chain(hours.values()) {
            add_metrics(&mut m, &rollup::window::metrics_of(r));
            b.merge(&row_breakdown(r)?);
        }
        for c in raw {
            add_metrics(&mut m, &c.metrics);
            b.merge(&c.breakdown);
        }
        Ok((m, b))
    }

    /// Counters and breakdowns of `scope` over `[from, to)` (Unix s); the
    /// additive part and the distinct counters are read at the same time.
    pub async fn overview(&self, scope: &Scope, from: u32, to: u32, include_bots: bool) -> Result<Overview, ApiError> {
        let plan = self.plan(from, to, include_bots);
        let (blocks, days) = rollup::spans::cover_if(&plan.days, self.spans.as_deref());
        let pieces = Pieces { spans: &blocks, days: &days, hours: &plan.hours, raw: &plan.raw };
        let sel = scope.selection(include_bots, None);
        let ((mut metrics, mut breakdown), d) = futures::try_join!(self.additive(scope, &plan, include_bots), async {
            Ok(rollup::states::distinct(self.ch, self.db, &sel, pieces).await?)
        },)?;
        breakdown.cap(self.top_n);
        metrics.unique_visitors = d.visitors as i64;
        metrics.returning_visitors = d.returning as i64;
        metrics.total_conversions = d.conversions as i64;
        metrics.conversion_rate = rollup::rate(metrics.total_clicks.max(0) as u64, metrics.total_views.max(0) as u64);
        Ok(Overview {
            metrics,
            breakdown,
            rollup_windows: plan.days.len() + plan.hours.len(),
            raw_ranges: plan.raw.len(),
        })
    }

    /// One point per `grain` window meeting `[from, to)`, oldest first;
    /// the first and last are clipped to the range.
    pub async fn timeseries(
        &self,
        scope: &Scope,
        from: u32,
        to: u32,
        grain: Grain,
        include_bots: bool,
    ) -> Result<Vec<Point>, ApiError> {
        let g = grain.seconds();
        let (mut closed, mut raw) = (Vec::new(), Vec::new());
        let mut starts = Vec::new();
        let mut b = grain.floor(from);
        while b < to {
            let (lo, hi) = (from.max(b), to.min(b + g));
            if !include_bots && lo == b && hi == b + g && self.closed(b, g) {
                closed.push(b);
            } else {
                raw.push((lo, hi));
            }
            starts.push(b);
            b += g;
        }
        let rolled = self.rollups(scope, grain, &closed).await?;
        let computed: HashMap<u32, Computed> =
            self.raw(scope, include_bots, Some(grain), &raw).await?.into_iter().map(|c| (c.bucket, c)).collect();
        starts
            .into_iter()
            .map(|start| {
                if closed.contains(&start) {
                    let (metrics, platforms) = match rolled.get(&start) {
                        Some(r) => (rollup::window::metrics_of(r), row_breakdown(r)?.platforms),
                        None => Default::default(),
                    };
                    Ok(Point { start, metrics, platforms, from_rollup: true })
                } else {
                    let c = computed.get(&start);
                    Ok(Point {
                        start,
                        metrics: c.map(|c| c.metrics.clone()).unwrap_or_default(),
                        platforms: c.map(|c| c.breakdown.platforms.clone()).unwrap_or_default(),
                        from_rollup: false,
                    })
                }
            })
            .collect()
    }

    /// Values of `dim` over `[from, to)` by count, largest first (ties by value).
    pub async fn breakdown(
        &self,
        scope: &Scope,
        from: u32,
        to: u32,
        dim: Dimension,
        include_bots: bool,
    ) -> Result<Vec<BreakdownItem>, ApiError> {
        let plan = self.plan(from, to, include_bots);
        let (_, mut b) = self.additive(scope, &plan, include_bots).await?;
        b.cap(self.top_n);
        let mut items: Vec<BreakdownItem> = dim
            .in_rollup(&b)
            .iter()
            .map(|(v, n)| match v.split_once('|') {
                Some((country, place)) if dim.with_country() => BreakdownItem {
                    value: place.to_string(),
                    country: Some(country.to_string()).filter(|c| !c.is_empty()),
                    count: *n,
                },
                _ => BreakdownItem { value: v.clone(), country: None, count: *n },
            })
            .collect();
        items.retain(|i| i.count > 0);
        items.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)).then_with(|| a.country.cmp(&b.country))
        });
        Ok(items)
    }

    /// Views, clicks and bots of every tenant and every link over `[from,
    /// to)` (the agency view): closed windows from the rollups of all
    /// tenants at once, the rest from raw events with the rollups' SQL.
    pub async fn totals(&self, from: u32, to: u32) -> Result<Vec<KeyTotals>, ApiError> {
        let plan = plan(from, to, self.closed_until, &self.pending);
        let mut sums: HashMap<(String, String), KeyTotals> = HashMap::new();
        let mut add = |t: KeyTotals| {
            let e = sums.entry((t.tenant_id.clone(), t.link_id.clone())).or_insert_with(|| KeyTotals {
                tenant_id: t.tenant_id.clone(),
                link_id: t.link_id.clone(),
                ..KeyTotals::default()
            });
            e.views += t.views;
            e.clicks += t.clicks;
            e.bots += t.bots;
        };
        for (grain, starts) in [("day", &plan.days), ("hour", &plan.hours)] {
            let Some(buckets) = rollup::buckets_sql(starts) else { continue };
            let rows: Vec<KeyTotals> = self
                .ch
                .query(&format!(
                    "SELECT tenant_id, link_id, sum(views) AS views, sum(clicks) AS clicks, sum(bots) AS bots
                     FROM {}.{ROLLUPS_TABLE} FINAL WHERE grain = '{grain}' AND {buckets}
                     GROUP BY tenant_id, link_id",
                    self.db
                ))
                .fetch_all()
                .await?;
            rows.into_iter().for_each(&mut add);
        }
        if !plan.raw.is_empty() {
            for c in rollup::counters(self.ch, self.db, &Selection::default(), &plan.raw).await? {
                add(KeyTotals {
                    tenant_id: c.tenant_id,
                    link_id: c.link_id,
                    views: c.metrics.total_views.max(0) as u64,
                    clicks: c.metrics.total_clicks.max(0) as u64,
                    bots: c.metrics.bots.max(0) as u64,
                });
            }
        }
        Ok(sums.into_values().collect())
    }

    /// Active visitors over the 5 minutes before `now` and views and clicks
    /// per minute over the 30 minutes before it (Unix s), from raw events.
    pub async fn realtime(&self, scope: &Scope, now: u32, include_bots: bool) -> Result<Realtime, ApiError> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Minute {
            minute: u32,
            views: u64,
            clicks: u64,
            active: u64,
        }
        let first = now - now % 60 - 29 * 60;
        let sel = scope.selection(include_bots, None);
        let ranges = [(first, now + 1)];
        let human = sel.human_sql();
        let sql = format!(
            "SELECT toUInt32(intDiv(toUInt32(ts), 60) * 60) AS minute,
                countIf(kind = 'view' AND {human}) AS views, countIf(kind = 'click' AND {human}) AS clicks, toUInt64(0) AS active
             FROM {db}.{EVENTS_TABLE} FINAL WHERE {w} GROUP BY minute
             UNION ALL
             SELECT toUInt32(0) AS minute, toUInt64(0) AS views, toUInt64(0) AS clicks,
                uniqExactIf({VISITOR_SQL}, {human} AND ts >= toDateTime({active_from})) AS active
             FROM {db}.{EVENTS_TABLE} FINAL WHERE {w}",
            db = self.db,
            w = sel.where_sql(&ranges),
            active_from = now.saturating_sub(300),
        );
        let q = sel.bind(self.ch.query(&sql), &ranges);
        let rows: Vec<Minute> = sel.bind(q, &ranges).fetch_all().await?;
        let mut per: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut active = 0;
        for r in rows {
            if r.minute == 0 {
                active = r.active;
            } else {
                per.insert(r.minute, (r.views, r.clicks));
            }
        }
        let per_minute = (0..30)
            .map(|i| {
                let m = first + i * 60;
                let (v, c) = per.get(&m).copied().unwrap_or_default();
                (m, v, c)
            })
            .collect();
        Ok(Realtime { active_visitors: active, per_minute })
    }

    /// Tracking-health numbers of `scope` over `[from, to)`, from raw events.
    pub async fn health(&self, scope: &Scope, from: u32, to: u32) -> Result<HealthStats, ApiError> {
        let sel = scope.selection(false, None);
        let ranges = [(from, to)];
        let sql = format!(
            "SELECT countIf(kind = 'view' AND is_bot = 0) AS views,
                countIf(kind = 'view' AND is_bot = 0 AND consent = 'granted' AND dnt = 0) AS client_eligible,
                countIf(kind = 'view' AND is_bot = 0 AND consent = 'denied') AS consent_denied,
                countIf(kind = 'view' AND is_bot = 0 AND consent = 'unknown') AS consent_unknown,
                countIf(kind = 'view' AND is_bot = 0 AND dnt = 1) AS dnt_views,
                countIf(is_bot = 1) AS bots,
                toUInt32(max(ts)) AS last_event_at,
                toUInt32(max(ingested_at)) AS last_ingested_at,
                toFloat64(quantileExact(0.5)(toInt64(ingested_at) - toInt64(ts))) AS delay_p50_s,
                toFloat64(quantileExact(0.99)(toInt64(ingested_at) - toInt64(ts))) AS delay_p99_s
             FROM {}.{EVENTS_TABLE} FINAL WHERE {}",
            self.db,
            sel.where_sql(&ranges)
        );
        let mut rows: Vec<HealthStats> = sel.bind(self.ch.query(&sql), &ranges).fetch_all().await?;
        let mut s = rows.pop().unwrap_or_default();
        if s.views == 0 && s.bots == 0 {
            s = HealthStats::default();
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u32 = 1_763_683_200; // 2025-11-21T00:00:00Z

    #[test]
    fn plans_cut_ranges_into_closed_days_hours_and_raw_rest() {
        // 22:30 the day before → 02:15 the day after, everything closed.
        let from = DAY - 5400;
        let to = DAY + 86_400 + 2 * 3600 + 900;
        let p = plan(from, to, u32::MAX, &[]);
        assert_eq!(p.days, vec![DAY]);
        assert_eq!(p.hours, vec![DAY - 3600, DAY + 86_400, DAY + 86_400 + 3600]);
        assert_eq!(p.raw, vec![(from, DAY - 3600), (DAY + 86_400 + 7200, to)]);
        // Nothing closed: one raw range.
        assert_eq!(plan(from, to, 0, &[]), Plan { raw: vec![(from, to)], ..Default::default() });
        // Closed until 10:00 on DAY: that day is not whole-closed, its first 10 hours are.
        let p = plan(DAY, DAY + 86_400, DAY + 10 * 3600, &[]);
        assert!(p.days.is_empty());
        assert_eq!(p.hours.len(), 10);
        assert_eq!(p.raw, vec![(DAY + 10 * 3600, DAY + 86_400)]);
        assert_eq!(plan(DAY, DAY, u32::MAX, &[]), Plan::default());
        // A pending day is read raw even when the watermark passed it.
        let p = plan(DAY - 86_400, DAY + 86_400, u32::MAX, &[DAY]);
        assert_eq!((p.days, p.raw), (vec![DAY - 86_400], vec![(DAY, DAY + 86_400)]));
    }

    #[test]
    fn dimensions_parse_and_sums_add_up() {
        assert_eq!(Dimension::parse("utm_source"), Some(Dimension::UtmSource));
        assert_eq!(Dimension::parse("nope"), None);
        assert_eq!(Dimension::Platform.metric(), "clicks");
        let mut a = RollupBreakdown::default();
        let mut b = RollupBreakdown { hours: vec![1; 24], ..Default::default() };
        b.countries.insert("GB".into(), 2);
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.countries["GB"], 4);
        assert_eq!(a.hours[5], 2);
    }
}
