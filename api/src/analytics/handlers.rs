//! The `analytics` handlers: request and response types, validation and the
//! operations behind each route of [`super::router`].

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId};
use futures::TryStreamExt;
use schemas::mongo::{collections, Client, PlatformId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use rollup::Grain;

use super::engine::{Dimension, Engine, Scope};
use crate::auth::Principal;
use crate::cache::AnswerCache;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::links::load_link;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, to_rfc3339};

/// Longest range a request may cover, days.
pub const MAX_RANGE_DAYS: u32 = 400;

/// Query of every analytics route (each route reads the fields it names).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// Tenant id (a tenant key defaults to its own; the operator gives this
    /// or `smartlink_id`). With `smartlink_id` too: 404 unless the link is
    /// this tenant's.
    pub client_id: Option<String>,
    /// Link id: the answer is for this link alone.
    pub smartlink_id: Option<String>,
    /// Range start, RFC 3339, inclusive. Default `to` minus 7 days.
    pub from: Option<String>,
    /// Range end, RFC 3339, exclusive. Default now.
    pub to: Option<String>,
    /// Count bot traffic like humans. Default false.
    pub include_bots: Option<bool>,
    /// Timeseries and export: `hour` or `day` (default `day`).
    #[param(pattern = "^(hour|day)$")]
    pub interval: Option<String>,
    /// Breakdown: `country`, `region`, `city`, `device`, `os`, `browser`,
    /// `platform`, `referrer`, `utm_source`, `utm_medium`, `utm_campaign`,
    /// `route` (views by routing rule, `{rule}` or `{rule}/{variant}`),
    /// `route_click` (click-outs by routing rule).
    #[param(
        pattern = "^(country|region|city|device|os|browser|platform|referrer|utm_source|utm_medium|utm_campaign|route|route_click)$"
    )]
    pub dimension: Option<String>,
    /// Breakdown: most values returned, 1..=1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A value and its count.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Count {
    /// Value (country code, platform id, ...).
    pub value: String,
    /// Views (clicks for platforms).
    pub count: i64,
}

/// `GET /v1/analytics/overview` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OverviewView {
    /// Scope and range.
    pub window: Window,
    /// Landing-page views.
    pub views: i64,
    /// Click-outs to platforms.
    pub clicks: i64,
    /// Distinct visitors over the range: merged per-window HyperLogLog
    /// states (`uniqCombined`, 2^18 cells): exact below a few thousand
    /// visitors, otherwise within 0.33% as measured, except near 655k
    /// distinct values (2.5 × 2^18, where the estimator switches: measured
    /// up to 2.4% high; `benches/README.md`); the same whether windows are
    /// rolled up or not.
    pub unique_visitors: i64,
    /// Distinct visitors over the range who had visited before (same
    /// exactness as `unique_visitors`).
    pub returning_visitors: i64,
    /// Sessions with a click-out (same exactness as `unique_visitors`).
    pub conversions: i64,
    /// Click-outs / views, 0..=1 (0 without views). Exact.
    pub conversion_rate: f64,
    /// Bot events (views and clicks), never in the other numbers unless `include_bots`.
    pub bots: i64,
    /// Views whose page reported its engagement on page hide (visitors who
    /// consented; issue #19): the base of the next two.
    pub engaged_views: i64,
    /// Seed 000 `avgTimeOnPage`: mean visible time of those pages, seconds
    /// (0 without engaged views).
    pub avg_time_on_page_s: f64,
    /// Seed 000 `bounceRate`: share of those pages left without a click-out
    /// within 10 s, 0..=1 (0 without engaged views).
    pub bounce_rate: f64,
    /// Seed 000 `conversionValue`: click-outs by platform times the values
    /// the tenant assigns them (`settings.conversion_values`), in minor
    /// units of its currency; 0 without values.
    pub conversion_value_minor: i64,
    /// Clicks by platform, largest first. Breakdowns keep each window's top
    /// values (`API_BREAKDOWN_TOP_N`) and sum the rest under `(other)`.
    pub clicks_by_platform: Vec<Count>,
    /// Top 10 countries by views.
    pub top_countries: Vec<Count>,
    /// Top 10 platforms by clicks.
    pub top_platforms: Vec<Count>,
    /// Windows answered from rollups and ranges from raw events.
    pub sources: Sources,
}

/// The scope and range an answer covers.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Window {
    /// Tenant id.
    pub client_id: String,
    /// Link id, when the answer is for one link.
    pub smartlink_id: Option<String>,
    /// Range start, RFC 3339 UTC.
    pub from: String,
    /// Range end (exclusive), RFC 3339 UTC.
    pub to: String,
    /// Whether bots are counted.
    pub include_bots: bool,
}

/// Where an answer came from.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Sources {
    /// Closed windows read from rollups.
    pub rollup_windows: usize,
    /// Ranges read from raw events.
    pub raw_ranges: usize,
}

/// One bucket of a time series.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PointView {
    /// Bucket start, RFC 3339 UTC.
    pub start: String,
    /// Views.
    pub views: i64,
    /// Click-outs.
    pub clicks: i64,
    /// Distinct visitors in the bucket: exact (`uniqExact` over the window,
    /// from its rollup when closed, from raw events otherwise).
    pub unique_visitors: i64,
    /// Distinct returning visitors in the bucket.
    pub returning_visitors: i64,
    /// Sessions with a click-out.
    pub conversions: i64,
    /// Click-outs / views.
    pub conversion_rate: f64,
    /// Bot events.
    pub bots: i64,
    /// Views whose page reported its engagement.
    pub engaged_views: i64,
    /// Mean visible time of those pages, seconds.
    pub avg_time_on_page_s: f64,
    /// Share of those pages left without a click-out within 10 s, 0..=1.
    pub bounce_rate: f64,
    /// Clicks by platform id.
    pub clicks_by_platform: BTreeMap<String, i64>,
    /// `rollup` or `raw`.
    pub source: String,
}

/// `GET /v1/analytics/timeseries` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TimeseriesView {
    /// Scope and range.
    pub window: Window,
    /// `hour` or `day`.
    pub interval: String,
    /// One point per bucket, oldest first, zeros included.
    pub points: Vec<PointView>,
}

/// One value of a breakdown.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BreakdownItemView {
    /// Value.
    pub value: String,
    /// Country of a region or city.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Views (clicks for `platform`).
    pub count: i64,
    /// Share of the total, 0..=1.
    pub share: f64,
}

/// `GET /v1/analytics/breakdown` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BreakdownView {
    /// Scope and range.
    pub window: Window,
    /// The dimension.
    pub dimension: String,
    /// `views`, or `clicks` for `platform`.
    pub metric: String,
    /// Sum over every value (also those past `limit`).
    pub total: i64,
    /// Values, largest first.
    pub items: Vec<BreakdownItemView>,
}

/// One minute of the realtime view.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MinuteView {
    /// Minute start, RFC 3339 UTC.
    pub minute: String,
    /// Views.
    pub views: u64,
    /// Click-outs.
    pub clicks: u64,
}

/// `GET /v1/analytics/realtime` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RealtimeView {
    /// Tenant id.
    pub client_id: String,
    /// Link id.
    pub smartlink_id: Option<String>,
    /// Time of the answer, RFC 3339 UTC.
    pub at: String,
    /// Distinct visitors over the last 5 minutes.
    pub active_visitors: u64,
    /// Views over the last 30 minutes.
    pub views_last_30_min: u64,
    /// The last 30 minutes, oldest first.
    pub per_minute: Vec<MinuteView>,
}

/// `GET /v1/analytics/health` answer (seed 002 "Health Checks"): the
/// server-side engine records every view the edge serves; client-side
/// pixels can only fire for visitors who consented and send no DNT/GPC.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// Scope and range.
    pub window: Window,
    /// `healthy`, `warning` (pipeline behind) or `idle` (no views).
    pub status: String,
    /// Human views recorded server-side.
    pub views: u64,
    /// Share of served views recorded server-side: 1 by construction (the
    /// edge spools what Kafka cannot take; losses would show in
    /// `edge_events_dropped_total`).
    pub server_tracking_rate: f64,
    /// Share of views where the tenant's pixels could fire (0 without pixels).
    pub client_tracking_rate: f64,
    /// Views the pixels could not see, counted only server-side.
    pub recovered_by_server: u64,
    /// Whether the tenant has any pixel configured.
    pub pixels_configured: bool,
    /// Views by consent answer: `granted`, `denied`, `unknown`.
    pub consent: BTreeMap<String, u64>,
    /// Views with DNT or GPC.
    pub dnt: u64,
    /// Bot events filtered out.
    pub bots: u64,
    /// Newest event, RFC 3339 UTC.
    pub last_event_at: Option<String>,
    /// Median visit-to-ClickHouse delay, s.
    pub ingest_delay_p50_s: f64,
    /// 99th percentile of that delay, s.
    pub ingest_delay_p99_s: f64,
    /// Write time up to which rollups are computed, RFC 3339 UTC.
    pub rollups_until: Option<String>,
    /// How far rollups lag the newest write, s.
    pub rollup_lag_s: u64,
}

fn now_s() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// What a request resolved to.
struct Resolved {
    scope: Scope,
    client: Client,
    from: u32,
    to: u32,
    include_bots: bool,
}

impl Resolved {
    fn window(&self) -> Window {
        Window {
            client_id: self.scope.tenant_id.clone(),
            smartlink_id: self.scope.link_id.clone(),
            from: to_rfc3339(self.from),
            to: to_rfc3339(self.to),
            include_bots: self.include_bots,
        }
    }
}

async fn resolve(st: &AppState, p: &Principal, q: &AnalyticsQuery) -> Result<Resolved, ApiError> {
    p.can(Resource::Analytics, Action::Read)?;
    let (scope, client) = match (q.client_id.as_deref(), q.smartlink_id.as_deref()) {
        (c, Some(l)) => {
            let wanted = c.map(|c| validate::object_id("client_id", c)).transpose()?;
            let (link, client) = load_link(st, p, l).await?;
            // Both given: the link within that tenant (another tenant's
            // link is not found, as it would be for its own key).
            if wanted.is_some_and(|c| c != client.id) {
                return Err(ApiError::NotFound("smartlink"));
            }
            (Scope { tenant_id: client.id.to_hex(), link_id: Some(link.id.to_hex()) }, client)
        }
        (None, None) if p.own_client().is_none() => {
            return Err(ApiError::invalid("client_id", "client_id or smartlink_id is required with the operator key"))
        }
        (c, None) => {
            let client = Tenant::resolve(st, p, c).await?;
            (Scope { tenant_id: client.id.to_hex(), link_id: None }, client)
        }
    };
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    Ok(Resolved { scope, client, from, to, include_bots: q.include_bots.unwrap_or(false) })
}

/// The range `[from, to)` (Unix s) of a query: `to` default now, `from`
/// default `to` minus 7 days; 400 when `from` is not before `to` or the
/// range covers more than [`MAX_RANGE_DAYS`].
fn range(from: Option<&str>, to: Option<&str>) -> Result<(u32, u32), ApiError> {
    let to = match to {
        Some(t) => validate::rfc3339("to", t)?,
        None => now_s(),
    };
    let from = match from {
        Some(f) => validate::rfc3339("from", f)?,
        None => to.saturating_sub(7 * 86_400),
    };
    if from >= to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    if to - from > MAX_RANGE_DAYS * 86_400 {
        return Err(ApiError::invalid("from", format!("the range may cover at most {MAX_RANGE_DAYS} days")));
    }
    Ok((from, to))
}

/// An engine that reads raw events only (realtime, health: no rollups).
fn raw_engine(st: &AppState) -> Engine<'_> {
    Engine {
        ch: &st.ch,
        db: &st.ch_db,
        closed_until: 0,
        pending: Vec::new(),
        top_n: st.cfg.breakdown_top_n,
        spans: None,
    }
}

/// An engine over closed windows: those the aggregator's watermark passed by
/// the grace period and whose day is not pending, or up to `closed_until`
/// when given (tests: nothing pending then).
pub async fn engine_for(st: &AppState, closed_until: Option<u32>) -> Result<Engine<'_>, ApiError> {
    let state = rollup::watermark::load_state(&st.mongo).await?;
    let spans = state.usable_spans().map(<[u32]>::to_vec);
    let (closed_until, pending) = match closed_until {
        Some(c) => (c, Vec::new()),
        None => (state.watermark.saturating_sub(st.cfg.rollup_grace_secs), state.pending),
    };
    Ok(Engine { ch: &st.ch, db: &st.ch_db, closed_until, pending, top_n: st.cfg.breakdown_top_n, spans })
}

/// Σ clicks × value over the platforms of `clicks` that `values` prices
/// (the `(other)` bucket of a capped breakdown is worth nothing).
pub fn conversion_value(values: &BTreeMap<String, i64>, clicks: &BTreeMap<String, i64>) -> i64 {
    clicks.iter().map(|(p, n)| values.get(p).map_or(0, |v| v.saturating_mul(*n))).fold(0i64, i64::saturating_add)
}

fn counts(m: &BTreeMap<String, i64>, top: usize) -> Vec<Count> {
    let mut v: Vec<Count> =
        m.iter().filter(|(_, n)| **n > 0).map(|(k, n)| Count { value: k.clone(), count: *n }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    v.truncate(top);
    v
}

fn grain(q: &AnalyticsQuery) -> Result<Grain, ApiError> {
    match q.interval.as_deref().unwrap_or("day") {
        "hour" => Ok(Grain::Hour),
        "day" => Ok(Grain::Day),
        _ => Err(ApiError::invalid("interval", "must be hour or day")),
    }
}

/// The overview of a range; `closed_until` overrides the watermark (tests).
pub async fn overview_with(
    st: &AppState,
    p: &Principal,
    q: &AnalyticsQuery,
    closed_until: Option<u32>,
) -> Result<OverviewView, ApiError> {
    let r = resolve(st, p, q).await?;
    let engine = engine_for(st, closed_until).await?;
    let o = engine.overview(&r.scope, r.from, r.to, r.include_bots).await?;
    st.metrics.analytics_windows.with_label_values(&["rollup"]).inc_by(o.rollup_windows as u64);
    st.metrics.analytics_windows.with_label_values(&["raw"]).inc_by(o.raw_ranges as u64);
    let m = &o.metrics;
    Ok(OverviewView {
        window: r.window(),
        views: m.total_views,
        clicks: m.total_clicks,
        unique_visitors: m.unique_visitors,
        returning_visitors: m.returning_visitors,
        conversions: m.total_conversions,
        conversion_rate: m.conversion_rate,
        bots: m.bots,
        engaged_views: m.engaged_views,
        avg_time_on_page_s: m.avg_time_on_page,
        bounce_rate: m.bounce_rate,
        conversion_value_minor: conversion_value(&r.client.settings.conversion_values, &o.breakdown.platforms),
        clicks_by_platform: counts(&o.breakdown.platforms, usize::MAX),
        top_countries: counts(&o.breakdown.countries, 10),
        top_platforms: counts(&o.breakdown.platforms, 10),
        sources: Sources { rollup_windows: o.rollup_windows, raw_ranges: o.raw_ranges },
    })
}

/// Totals of a tenant or link over a range.
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = OverviewView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn overview(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    st.answers.json(AnswerCache::key(&p, &uri), overview_with(&st, &p, &q, None)).await
}

/// The time series of a range; `closed_until` overrides the watermark (tests).
pub async fn timeseries_with(
    st: &AppState,
    p: &Principal,
    q: &AnalyticsQuery,
    closed_until: Option<u32>,
) -> Result<TimeseriesView, ApiError> {
    let r = resolve(st, p, q).await?;
    let g = grain(q)?;
    if (r.to - r.from) / g.seconds() > 24 * 93 {
        return Err(ApiError::invalid(
            "interval",
            "too many buckets (at most 2232); use a shorter range or interval=day",
        ));
    }
    let engine = engine_for(st, closed_until).await?;
    let points = engine.timeseries(&r.scope, r.from, r.to, g, r.include_bots).await?;
    let rolled = points.iter().filter(|p| p.from_rollup).count() as u64;
    st.metrics.analytics_windows.with_label_values(&["rollup"]).inc_by(rolled);
    st.metrics.analytics_windows.with_label_values(&["raw"]).inc_by(points.len() as u64 - rolled);
    Ok(TimeseriesView {
        window: r.window(),
        interval: if g == Grain::Hour { "hour" } else { "day" }.into(),
        points: points
            .into_iter()
            .map(|p| PointView {
                start: to_rfc3339(p.start),
                views: p.metrics.total_views,
                clicks: p.metrics.total_clicks,
                unique_visitors: p.metrics.unique_visitors,
                returning_visitors: p.metrics.returning_visitors,
                conversions: p.metrics.total_conversions,
                conversion_rate: p.metrics.conversion_rate,
                bots: p.metrics.bots,
                engaged_views: p.metrics.engaged_views,
                avg_time_on_page_s: p.metrics.avg_time_on_page,
                bounce_rate: p.metrics.bounce_rate,
                clicks_by_platform: p.platforms,
                source: if p.from_rollup { "rollup" } else { "raw" }.into(),
            })
            .collect(),
    })
}

/// Views, clicks, uniques per hour or day.
#[utoipa::path(get, path = "/v1/analytics/timeseries", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = TimeseriesView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn timeseries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    st.answers.json(AnswerCache::key(&p, &uri), timeseries_with(&st, &p, &q, None)).await
}

/// A breakdown of a range; `closed_until` overrides the watermark (tests).
pub async fn breakdown_with(
    st: &AppState,
    p: &Principal,
    q: &AnalyticsQuery,
    closed_until: Option<u32>,
) -> Result<BreakdownView, ApiError> {
    let r = resolve(st, p, q).await?;
    let name = q.dimension.as_deref().ok_or_else(|| ApiError::invalid("dimension", "required"))?;
    let dim = Dimension::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Dimension::ALL.iter().map(|(_, n)| *n).collect();
        ApiError::invalid("dimension", format!("must be one of {}", names.join(", ")))
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let engine = engine_for(st, closed_until).await?;
    let items = engine.breakdown(&r.scope, r.from, r.to, dim, r.include_bots).await?;
    let total: i64 = items.iter().map(|i| i.count).sum();
    Ok(BreakdownView {
        window: r.window(),
        dimension: name.into(),
        metric: dim.metric().into(),
        total,
        items: items
            .into_iter()
            .take(limit)
            .map(|i| BreakdownItemView {
                share: if total > 0 { i.count as f64 / total as f64 } else { 0.0 },
                value: i.value,
                country: i.country,
                count: i.count,
            })
            .collect(),
    })
}

/// Views (clicks for platforms and `route_click`) by one dimension.
#[utoipa::path(get, path = "/v1/analytics/breakdown", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = BreakdownView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn breakdown(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    st.answers.json(AnswerCache::key(&p, &uri), breakdown_with(&st, &p, &q, None)).await
}

/// Active visitors (5 min) and views per minute (30 min); `from`/`to` are ignored.
#[utoipa::path(get, path = "/v1/analytics/realtime", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = RealtimeView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn realtime(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Json<RealtimeView>, ApiError> {
    let q = AnalyticsQuery { from: None, to: None, ..q };
    let r = resolve(&st, &p, &q).await?;
    let now = now_s();
    let rt = raw_engine(&st).realtime(&r.scope, now, r.include_bots).await?;
    Ok(Json(RealtimeView {
        client_id: r.scope.tenant_id.clone(),
        smartlink_id: r.scope.link_id.clone(),
        at: to_rfc3339(now),
        active_visitors: rt.active_visitors,
        views_last_30_min: rt.per_minute.iter().map(|m| m.1).sum(),
        per_minute: rt
            .per_minute
            .into_iter()
            .map(|(m, views, clicks)| MinuteView { minute: to_rfc3339(m), views, clicks })
            .collect(),
    }))
}

/// Server-side vs client-side tracking (seed 002); default range the last 24 h.
#[utoipa::path(get, path = "/v1/analytics/health", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, body = HealthView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn health(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Json<HealthView>, ApiError> {
    let default_from = q.from.is_none();
    let mut r = resolve(&st, &p, &q).await?;
    if default_from {
        r.from = r.to.saturating_sub(86_400);
    }
    let watermark = rollup::watermark::load(&st.mongo).await?;
    let s = raw_engine(&st).health(&r.scope, r.from, r.to).await?;
    let pixels = r.client.tracking.any();
    let eligible = if pixels { s.client_eligible } else { 0 };
    let rollup_lag_s = u64::from(s.last_ingested_at.saturating_sub(watermark));
    let status = if s.views == 0 {
        "idle"
    } else if rollup_lag_s > 300 || s.delay_p99_s > 60.0 {
        "warning"
    } else {
        "healthy"
    };
    let rate = |n: u64| if s.views == 0 { 0.0 } else { n as f64 / s.views as f64 };
    Ok(Json(HealthView {
        window: r.window(),
        status: status.into(),
        views: s.views,
        server_tracking_rate: if s.views == 0 { 0.0 } else { 1.0 },
        client_tracking_rate: rate(eligible),
        recovered_by_server: s.views - eligible,
        pixels_configured: pixels,
        consent: [
            ("granted", s.views - s.consent_denied - s.consent_unknown),
            ("denied", s.consent_denied),
            ("unknown", s.consent_unknown),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        dnt: s.dnt_views,
        bots: s.bots,
        last_event_at: (s.last_event_at > 0).then(|| to_rfc3339(s.last_event_at)),
        ingest_delay_p50_s: if s.delay_p50_s.is_finite() { s.delay_p50_s } else { 0.0 },
        ingest_delay_p99_s: if s.delay_p99_s.is_finite() { s.delay_p99_s } else { 0.0 },
        rollups_until: (watermark > 0).then(|| to_rfc3339(watermark)),
        rollup_lag_s,
    }))
}

/// The time series as CSV: one row per bucket with `start, views, clicks,
/// unique_visitors, returning_visitors, conversions, conversion_rate, bots`
/// and `clicks_<platform>` for every known platform.
#[utoipa::path(get, path = "/v1/analytics/export", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AnalyticsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    p.can(Resource::Analytics, Action::Export)?;
    let ts = timeseries_with(&st, &p, &q, None).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> =
        ["start", "views", "clicks", "unique_visitors", "returning_visitors", "conversions", "conversion_rate", "bots"]
            .into_iter()
            .map(String::from)
            .collect();
    head.extend(PlatformId::ALL.iter().map(|p| format!("clicks_{}", p.id())));
    let csv_err = |e: csv::Error| ApiError::Unavailable { store: "csv", detail: e.to_string() };
    w.write_record(&head).map_err(csv_err)?;
    for pt in &ts.points {
        let mut rec = vec![
            pt.start.clone(),
            pt.views.to_string(),
            pt.clicks.to_string(),
            pt.unique_visitors.to_string(),
            pt.returning_visitors.to_string(),
            pt.conversions.to_string(),
            format!("{:.6}", pt.conversion_rate),
            pt.bots.to_string(),
        ];
        rec.extend(PlatformId::ALL.iter().map(|p| pt.clicks_by_platform.get(p.id()).copied().unwrap_or(0).to_string()));
        w.write_record(&rec).map_err(csv_err)?;
    }
    let body = w.into_inner().map_err(|e| ApiError::Unavailable { store: "csv", detail: e.to_string() })?;
    let name = format!(
        "attachment; filename=\"analytics-{}-{}.csv\"",
        ts.window.smartlink_id.as_deref().unwrap_or(&ts.window.client_id),
        ts.window.from.get(..10).unwrap_or("")
    );
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], body))
}

/// `GET /v1/analytics/agency` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgencyQuery {
    /// Range start, RFC 3339, inclusive. Default `to` minus 7 days.
    pub from: Option<String>,
    /// Range end, RFC 3339, exclusive. Default now.
    pub to: Option<String>,
    /// Tenants and links listed, 1..=100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub top: Option<usize>,
}

/// One tenant in the agency view.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TenantTotalsView {
    /// Tenant id.
    pub client_id: String,
    /// Tenant name.
    pub name: String,
    /// Human views over the range.
    pub views: i64,
    /// Human click-outs over the range.
    pub clicks: i64,
    /// Click-outs / views (0 without views).
    pub conversion_rate: f64,
    /// Bot events over the range.
    pub bots: i64,
    /// Views over the previous period of the same length.
    pub previous_views: i64,
    /// `views / previous_views − 1`; `null` without previous views.
    pub views_growth: Option<f64>,
}

/// One link in the agency view.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LinkTotalsView {
    /// Link id.
    pub smartlink_id: String,
    /// Tenant id.
    pub client_id: String,
    /// Human views over the range.
    pub views: i64,
    /// Human click-outs over the range.
    pub clicks: i64,
    /// Views over the previous period.
    pub previous_views: i64,
}

/// `GET /v1/analytics/agency` answer: every tenant's numbers at once.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AgencyView {
    /// Range start, RFC 3339 UTC.
    pub from: String,
    /// Range end (exclusive), RFC 3339 UTC.
    pub to: String,
    /// Start of the previous period compared with (same length, just before).
    pub previous_from: String,
    /// Views of all tenants.
    pub views: i64,
    /// Click-outs of all tenants.
    pub clicks: i64,
    /// Views of all tenants over the previous period.
    pub previous_views: i64,
    /// `views / previous_views − 1`; `null` without previous views.
    pub views_growth: Option<f64>,
    /// Tenants with traffic in either period, by views, largest first (`top`).
    pub top_tenants: Vec<TenantTotalsView>,
    /// Links by views, largest first (`top`).
    pub top_links: Vec<LinkTotalsView>,
    /// Tenants with traffic in either period.
    pub tenant_count: usize,
}

fn growth(now: i64, before: i64) -> Option<f64> {
    (before > 0).then(|| now as f64 / before as f64 - 1.0)
}

/// The agency view (operator key only; seed 002 "Vue MDMC Master"): totals
/// of every tenant over `[from, to)` beside the previous period of the same
/// length, top tenants and top links, from the same rollups as every other
/// route (closed windows) and raw events (the rest).
#[utoipa::path(get, path = "/v1/analytics/agency", tag = "analytics", params(AgencyQuery),
    responses((status = 200, body = AgencyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn agency(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    uri: Uri,
    Query(q): Query<AgencyQuery>,
) -> Result<Response, ApiError> {
    p.require_operator()?;
    st.answers.json(AnswerCache::key(&p, &uri), agency_view(&st, &q)).await
}

/// The agency view of `q`'s range.
async fn agency_view(st: &AppState, q: &AgencyQuery) -> Result<AgencyView, ApiError> {
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    let top = q.top.unwrap_or(10);
    if !(1..=100).contains(&top) {
        return Err(ApiError::invalid("top", "must be 1 to 100"));
    }
    let previous_from = from.saturating_sub(to - from);
    let engine = engine_for(st, None).await?;
    let (now_rows, before_rows) = futures::try_join!(engine.totals(from, to), engine.totals(previous_from, from))?;
    let before: HashMap<(String, String), u64> =
        before_rows.into_iter().map(|t| ((t.tenant_id, t.link_id), t.views)).collect();
    let mut tenants: HashMap<String, TenantTotalsView> = HashMap::new();
    let mut links = Vec::new();
    for t in &now_rows {
        let prev = before.get(&(t.tenant_id.clone(), t.link_id.clone())).copied().unwrap_or(0) as i64;
        if t.link_id.is_empty() {
            tenants.insert(
                t.tenant_id.clone(),
                TenantTotalsView {
                    client_id: t.tenant_id.clone(),
                    name: String::new(),
                    views: t.views as i64,
                    clicks: t.clicks as i64,
                    conversion_rate: rollup::rate(t.clicks, t.views),
                    bots: t.bots as i64,
                    previous_views: prev,
                    views_growth: growth(t.views as i64, prev),
                },
            );
        } else {
            links.push(LinkTotalsView {
                smartlink_id: t.link_id.clone(),
                client_id: t.tenant_id.clone(),
                views: t.views as i64,
                clicks: t.clicks as i64,
                previous_views: prev,
            });
        }
    }
    for ((tenant, link), views) in &before {
        if link.is_empty() && !tenants.contains_key(tenant) {
            tenants.insert(
                tenant.clone(),
                TenantTotalsView {
                    client_id: tenant.clone(),
                    name: String::new(),
                    views: 0,
                    clicks: 0,
                    conversion_rate: 0.0,
                    bots: 0,
                    previous_views: *views as i64,
                    views_growth: growth(0, *views as i64),
                },
            );
        }
    }
    let ids: Vec<ObjectId> = tenants.keys().filter_map(|t| ObjectId::parse_str(t).ok()).collect();
    #[derive(Deserialize)]
    struct Name {
        #[serde(rename = "_id")]
        id: ObjectId,
        #[serde(default)]
        name: String,
    }
    let mut names = st
        .mongo
        .collection::<Name>(collections::CLIENTS)
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "_id": 1, "name": 1 })
        .await?;
    while let Some(c) = names.try_next().await? {
        if let Some(t) = tenants.get_mut(&c.id.to_hex()) {
            t.name = c.name;
        }
    }
    let (views, clicks) = tenants.values().fold((0, 0), |(v, c), t| (v + t.views, c + t.clicks));
    let previous_views: i64 = tenants.values().map(|t| t.previous_views).sum();
    let tenant_count = tenants.len();
    let mut top_tenants: Vec<TenantTotalsView> = tenants.into_values().collect();
    top_tenants.sort_by(|a, b| b.views.cmp(&a.views).then_with(|| a.client_id.cmp(&b.client_id)));
    top_tenants.truncate(top);
    links.sort_by(|a, b| b.views.cmp(&a.views).then_with(|| a.smartlink_id.cmp(&b.smartlink_id)));
    links.truncate(top);
    Ok(AgencyView {
        from: to_rfc3339(from),
        to: to_rfc3339(to),
        previous_from: to_rfc3339(previous_from),
        views,
        clicks,
        previous_views,
        views_growth: growth(views, previous_views),
        top_tenants,
        top_links: links,
        tenant_count,
    })
}
