//! A tenant's tracking health, measured on ClickHouse `events` and judged
//! against its thresholds (seed 002 "Health Checks" and "Alertes
//! automatiques").
//!
//! Windows, all UTC and ending `API_ALERTS_SETTLE_SECS` before the
//! evaluation (events still in flight are not judged missing):
//! - the rate window: the 24 h before its end (the seed's `last24h`);
//! - the hour: the last complete clock hour before that end, compared with
//!   the same hour a week before (traffic follows the week).
//!
//! One query reads every tenant's human views over the rate window and the
//! week-old hour (25 hours of `events`, partitions by day, no `FINAL`: a
//! duplicate not merged yet moves a share by a hair, never an alert). At
//! 10M views a day that is a column scan of a few hundred ms, once per
//! evaluation.

use schemas::alerts::{AlertKind, AlertThresholds};
use schemas::clickhouse::EVENTS_TABLE;
use serde::Deserialize;

use crate::error::ApiError;

/// Seconds in an hour, a day and a week.
const HOUR: u32 = 3600;
const DAY: u32 = 24 * HOUR;
const WEEK: u32 = 7 * DAY;

/// The windows an evaluation judges, Unix s (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// End of the rate window (exclusive); the rate window starts a day before.
    pub end: u32,
    /// Start of the last complete clock hour before `end`.
    pub hour: u32,
}

impl Windows {
    /// The windows ending at `end` (evaluation time minus the settle delay).
    pub fn ending(end: u32) -> Self {
        Windows { end, hour: (end / HOUR * HOUR).saturating_sub(HOUR) }
    }

    /// Start of the rate window.
    pub fn start(&self) -> u32 {
        self.end.saturating_sub(DAY)
    }

    /// Start of the same hour a week before.
    pub fn last_week(&self) -> u32 {
        self.hour.saturating_sub(WEEK)
    }
}

/// What was measured for one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Health {
    /// Human views in the rate window.
    pub views_24h: u64,
    /// Of those, views whose page could fire the tenant's pixels (consent
    /// granted, no DNT/GPC: the page loads pixels only then, seed 002).
    pub client_views_24h: u64,
    /// Human views in the hour.
    pub hour_views: u64,
    /// Human views in the same hour a week before.
    pub last_week_views: u64,
}

impl Health {
    /// `client_views_24h / views_24h`, `None` without views.
    pub fn client_rate(&self) -> Option<f64> {
        (self.views_24h > 0).then(|| self.client_views_24h as f64 / self.views_24h as f64)
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct TenantHealth {
    tenant_id: String,
    views_24h: u64,
    client_views_24h: u64,
    hour_views: u64,
    last_week_views: u64,
}

/// Measures `w` for every tenant with views (`tenant` = `Some(hex)`: that
/// one only), as `(tenant hex, health)`. Errors: ClickHouse (503).
pub async fn measure(
    ch: &clickhouse::Client,
    db: &str,
    w: Windows,
    tenant: Option<&str>,
) -> Result<Vec<(String, Health)>, ApiError> {
    let sql = format!(
        "SELECT tenant_id,
            countIf(ts >= toDateTime(?) AND ts < toDateTime(?)) AS views_24h,
            countIf(ts >= toDateTime(?) AND ts < toDateTime(?) AND consent = 'granted' AND dnt = 0) AS client_views_24h,
            countIf(ts >= toDateTime(?) AND ts < toDateTime(?)) AS hour_views,
            countIf(ts >= toDateTime(?) AND ts < toDateTime(?)) AS last_week_views
         FROM {db}.{EVENTS_TABLE}
         WHERE kind = 'view' AND is_bot = 0 {filter}
           AND ((ts >= toDateTime(?) AND ts < toDateTime(?)) OR (ts >= toDateTime(?) AND ts < toDateTime(?)))
         GROUP BY tenant_id",
        filter = if tenant.is_some() { "AND tenant_id = ?" } else { "" },
    );
    let (start, end, hour, week) = (w.start(), w.end, w.hour, w.last_week());
    let mut q = ch.query(&sql);
    for (from, to) in [(start, end), (start, end), (hour, hour + HOUR), (week, week + HOUR)] {
        q = q.bind(from).bind(to);
    }
    if let Some(t) = tenant {
        q = q.bind(t);
    }
    let rows: Vec<TenantHealth> = q.bind(start).bind(end).bind(week).bind(week + HOUR).fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let h = Health {
                views_24h: r.views_24h,
                client_views_24h: r.client_views_24h,
                hour_views: r.hour_views,
                last_week_views: r.last_week_views,
            };
            (r.tenant_id, h)
        })
        .collect())
}

/// Whether the pipeline has written any event stamped after the hour of
/// `w` (any tenant): ingest read past that hour, so the hour's views are
/// in. Until then a drop is not judged: an ingest or broker outage is the
/// operators' alert, not one per tenant. Errors: ClickHouse (503).
pub async fn pipeline_past_hour(ch: &clickhouse::Client, db: &str, w: Windows) -> Result<bool, ApiError> {
    let n: u64 = ch
        .query(&format!("SELECT count() FROM (SELECT 1 FROM {db}.{EVENTS_TABLE} WHERE ts >= toDateTime(?) LIMIT 1)"))
        .bind(w.hour + HOUR)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// The judgement of one alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The alert.
    pub kind: AlertKind,
    /// Whether it fires.
    pub firing: bool,
    /// The measured share or ratio (a traffic ratio without a baseline is 0).
    pub value: f64,
    /// The threshold it was judged against.
    pub threshold: f64,
}

/// Judges `h` against `t`, as seed 002's rules say:
/// - [`AlertKind::ClientRateLow`] and [`AlertKind::PixelsSilent`] only for a
///   tenant with pixels (`has_pixels`; without, nothing client-side exists
///   to miss visits) and at least `min_views` views;
/// - [`AlertKind::TrafficSpike`] needs `min_views` views in the hour and a
///   baseline (a week-old hour with views: a new link's first week is a
///   launch, not a spike);
/// - [`AlertKind::TrafficDrop`] needs `min_views` views in the week-old
///   hour and `pipeline_past` ([`pipeline_past_hour`]); otherwise it is not
///   judged at all (absent: its state stays as it was).
pub fn judge(h: &Health, t: &AlertThresholds, has_pixels: bool, pipeline_past: bool) -> Vec<Verdict> {
    let enough = h.views_24h >= t.min_views.max(1);
    let rate = h.client_rate().unwrap_or(1.0);
    let ratio = if h.last_week_views > 0 { h.hour_views as f64 / h.last_week_views as f64 } else { 0.0 };
    let mut v = vec![
        Verdict {
            kind: AlertKind::ClientRateLow,
            firing: has_pixels && enough && rate < t.client_rate_min,
            value: rate,
            threshold: t.client_rate_min,
        },
        Verdict {
            kind: AlertKind::PixelsSilent,
            firing: has_pixels && enough && h.client_views_24h == 0,
            value: rate,
            threshold: 0.0,
        },
        Verdict {
            kind: AlertKind::TrafficSpike,
            firing: h.last_week_views > 0 && h.hour_views >= t.min_views.max(1) && ratio >= t.spike_ratio,
            value: ratio,
            threshold: t.spike_ratio,
        },
    ];
    if pipeline_past {
        v.push(Verdict {
            kind: AlertKind::TrafficDrop,
            firing: h.last_week_views >= t.min_views.max(1) && ratio <= t.drop_ratio,
            value: ratio,
            threshold: t.drop_ratio,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing(v: &[Verdict]) -> Vec<AlertKind> {
        v.iter().filter(|v| v.firing).map(|v| v.kind).collect()
    }

    #[test]
    fn windows_end_on_the_last_complete_hour() {
        // 2026-12-01T10:30:00Z
        let w = Windows::ending(1_796_121_000);
        assert_eq!(w.hour, 1_796_121_000 - 5400, "09:00");
        assert_eq!(w.start(), 1_796_121_000 - DAY);
        assert_eq!(w.last_week(), w.hour - WEEK);
        assert_eq!(Windows::ending(1_796_119_200).hour, 1_796_119_200 - 3600, "at 10:00 sharp, 09:00 is complete");
    }

    #[test]
    fn seed_002_rules() {
        let t = AlertThresholds::default();
        let h = |views, client, hour, last| Health {
            views_24h: views,
            client_views_24h: client,
            hour_views: hour,
            last_week_views: last,
        };
        // Healthy: 96% client-side, the hour as last week's.
        assert!(firing(&judge(&h(1000, 960, 50, 50), &t, true, true)).is_empty());
        // 94%: below seed 002's 95%; without pixels there is nothing to miss.
        assert_eq!(firing(&judge(&h(1000, 940, 50, 50), &t, true, true)), [AlertKind::ClientRateLow]);
        assert!(firing(&judge(&h(1000, 940, 50, 50), &t, false, true)).is_empty());
        // No view could fire the pixels: both.
        assert_eq!(
            firing(&judge(&h(1000, 0, 50, 50), &t, true, true)),
            [AlertKind::ClientRateLow, AlertKind::PixelsSilent]
        );
        // Too little traffic to judge.
        assert!(firing(&judge(&h(99, 0, 5, 5), &t, true, true)).is_empty());
        // Spike: 3x a week-old hour with views, from min_views; none without a baseline.
        assert_eq!(firing(&judge(&h(1000, 1000, 300, 100), &t, true, true)), [AlertKind::TrafficSpike]);
        assert!(firing(&judge(&h(1000, 1000, 99, 10), &t, true, true)).is_empty(), "99 < min_views");
        assert!(firing(&judge(&h(1000, 1000, 900, 0), &t, true, true)).is_empty(), "no baseline");
        // Drop: a third of a week-old hour of at least min_views, and only
        // once the pipeline is past the hour (not judged at all before).
        assert_eq!(firing(&judge(&h(1000, 1000, 33, 100), &t, true, true)), [AlertKind::TrafficDrop]);
        let v = judge(&h(1000, 1000, 33, 100), &t, true, false);
        assert!(v.iter().all(|v| v.kind != AlertKind::TrafficDrop));
        assert!(firing(&judge(&h(1000, 1000, 0, 99), &t, true, true)).is_empty(), "baseline under min_views");
    }
}
