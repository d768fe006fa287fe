//! Prometheus metrics of the API (one registry per process, labels bounded:
//! `route` is the matched route template, never the raw path).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The API's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `api_requests_total{route, method, status}`.
    pub requests: IntCounterVec,
    /// `api_request_duration_seconds{route}`.
    pub duration: HistogramVec,
    /// `api_auth_failures_total{reason}`: `missing`, `unknown_key`.
    pub auth_failures: IntCounterVec,
    /// `api_rate_limited_total`: requests refused with 429.
    pub rate_limited: IntCounter,
    /// `api_connections_refused_total`: connections closed at accept because
    /// `API_MAX_CONNECTIONS` were open.
    pub connections_refused: IntCounter,
    /// `api_analytics_windows_total{source}`: analytics windows answered
    /// from `rollup`s or from `raw` events.
    pub analytics_windows: IntCounterVec,
    /// `api_analytics_cache_total{result}`: analytics answers served from
    /// the answer cache (`hit`) or computed (`miss`).
    pub analytics_cache: IntCounterVec,
    /// `api_ops_alerts_total{status}`: alerts received from Alertmanager,
    /// `firing` or `resolved`.
    pub ops_alerts: IntCounterVec,
    /// `api_emails_total{template, outcome}`: emails `sent` or `failed`.
    pub emails: IntCounterVec,
    /// `api_retries_total{cause}`: `invoice_number` (a concurrent creation
    /// took the number), `invoice_version` (the invoice changed between
    /// read and write), `lock_busy` (waiting for a record's lock).
    pub retries: IntCounterVec,
    /// `api_payments_refused_total{reason}`: `overpayment`, `overrefund`,
    /// `invoice_not_payable`.
    pub payments_refused: IntCounterVec,
    /// `api_tenant_views_24h{tenant}`: human views of each tenant (label:
    /// its slug; an agency's tenants, bounded) in the 24 h window the
    /// notifier last judged.
    pub tenant_views: IntGaugeVec,
    /// `api_tenant_client_tracking_ratio{tenant}`: share of those views
    /// whose page could fire the tenant's pixels (0..1); absent without views.
    pub tenant_client_ratio: GaugeVec,
    /// `api_tenant_hour_views{tenant, week}`: views of the last complete
    /// hour judged (`week="this"`) and of the same hour a week before (`last`).
    pub tenant_hour_views: IntGaugeVec,
    /// `api_tenant_alert_firing{tenant, kind}`: 1 while the tenant's alert
    /// fires by its own thresholds, else 0.
    pub tenant_alert_firing: IntGaugeVec,
    /// `api_tenant_alert_deliveries_total{channel, outcome}`: notification
    /// attempts `delivered`, `retry` (kept for a later attempt) or `failed`
    /// (refused for good or out of attempts), by `email` / `webhook`.
    pub alert_deliveries: IntCounterVec,
    /// `api_tenant_alert_evaluations_total{outcome}`: evaluations of every
    /// tenant's health, `ok` or `error`.
    pub alert_evaluations: IntCounterVec,
    /// `api_tenant_alert_last_evaluation_seconds`: end of the last
    /// evaluation that succeeded, Unix s.
    pub alert_last_evaluation: IntGauge,
    /// `api_webhook_deliveries_total{outcome}`: tenant webhook message
    /// attempts `delivered`, `retry` or `failed` (issue #19).
    pub webhook_deliveries: IntCounterVec,
    /// `api_webhook_enqueue_errors_total`: webhook messages that could not
    /// be queued (MongoDB failed; the change they told of stands).
    pub webhook_enqueue_errors: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics in `r`.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new("api_requests_total", "HTTP requests by route template, method and status."),
                &["route", "method", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new("api_request_duration_seconds", "Request handling time by route template, seconds.")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["route"],
            )?,
            auth_failures: IntCounterVec::new(
                Opts::new("api_auth_failures_total", "Requests refused with 401, by reason."),
                &["reason"],
            )?,
            rate_limited: IntCounter::new("api_rate_limited_total", "Requests refused with 429.")?,
            connections_refused: IntCounter::new(
                "api_connections_refused_total",
                "Connections closed at accept: the connection cap was reached.",
            )?,
            analytics_windows: IntCounterVec::new(
                Opts::new("api_analytics_windows_total", "Analytics windows answered from rollups or raw events."),
                &["source"],
            )?,
            analytics_cache: IntCounterVec::new(
                Opts::new(
                    "api_analytics_cache_total",
                    "Analytics answers from the answer cache (hit) or computed (miss).",
                ),
                &["result"],
            )?,
            ops_alerts: IntCounterVec::new(
                Opts::new("api_ops_alerts_total", "Alerts received from Alertmanager, by status."),
                &["status"],
            )?,
            emails: IntCounterVec::new(
                Opts::new("api_emails_total", "Emails by template and outcome (sent, failed)."),
                &["template", "outcome"],
            )?,
            retries: IntCounterVec::new(
                Opts::new("api_retries_total", "Writes retried after a concurrent change, by cause."),
                &["cause"],
            )?,
            payments_refused: IntCounterVec::new(
                Opts::new("api_payments_refused_total", "Payments and refunds refused, by reason."),
                &["reason"],
            )?,
            tenant_views: IntGaugeVec::new(
                Opts::new("api_tenant_views_24h", "Human views of each tenant in the last 24 h judged."),
                &["tenant"],
            )?,
            tenant_client_ratio: GaugeVec::new(
                Opts::new(
                    "api_tenant_client_tracking_ratio",
                    "Share of each tenant's views whose page could fire its pixels, 0..1.",
                ),
                &["tenant"],
            )?,
            tenant_hour_views: IntGaugeVec::new(
                Opts::new(
                    "api_tenant_hour_views",
                    "Views of the last complete hour judged (this) and the same hour a week before (last).",
                ),
                &["tenant", "week"],
            )?,
            tenant_alert_firing: IntGaugeVec::new(
                Opts::new("api_tenant_alert_firing", "1 while a tenant's tracking-health alert fires."),
                &["tenant", "kind"],
            )?,
            alert_deliveries: IntCounterVec::new(
                Opts::new(
                    "api_tenant_alert_deliveries_total",
                    "Tracking-health notification attempts by channel and outcome.",
                ),
                &["channel", "outcome"],
            )?,
            alert_evaluations: IntCounterVec::new(
                Opts::new("api_tenant_alert_evaluations_total", "Evaluations of the tenants' tracking health."),
                &["outcome"],
            )?,
            alert_last_evaluation: IntGauge::new(
                "api_tenant_alert_last_evaluation_seconds",
                "End of the last successful evaluation of the tenants' tracking health, Unix s.",
            )?,
            webhook_deliveries: IntCounterVec::new(
                Opts::new("api_webhook_deliveries_total", "Tenant webhook message attempts by outcome."),
                &["outcome"],
            )?,
            webhook_enqueue_errors: IntCounter::new(
                "api_webhook_enqueue_errors_total",
                "Tenant webhook messages that could not be queued.",
            )?,
        };
        for outcome in ["delivered", "retry", "failed"] {
            m.webhook_deliveries.with_label_values(&[outcome]);
        }
        // Every known label value from the start: a dashboard or rule sees 0, not nothing.
        for channel in ["email", "webhook"] {
            for outcome in ["delivered", "retry", "failed"] {
                m.alert_deliveries.with_label_values(&[channel, outcome]);
            }
        }
        for outcome in ["ok", "error"] {
            m.alert_evaluations.with_label_values(&[outcome]);
        }
        r.register(Box::new(m.tenant_views.clone()))?;
        r.register(Box::new(m.tenant_client_ratio.clone()))?;
        r.register(Box::new(m.tenant_hour_views.clone()))?;
        r.register(Box::new(m.tenant_alert_firing.clone()))?;
        r.register(Box::new(m.alert_deliveries.clone()))?;
        r.register(Box::new(m.alert_evaluations.clone()))?;
        r.register(Box::new(m.alert_last_evaluation.clone()))?;
        r.register(Box::new(m.webhook_deliveries.clone()))?;
        r.register(Box::new(m.webhook_enqueue_errors.clone()))?;
        r.register(Box::new(m.emails.clone()))?;
        r.register(Box::new(m.retries.clone()))?;
        r.register(Box::new(m.payments_refused.clone()))?;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.duration.clone()))?;
        r.register(Box::new(m.auth_failures.clone()))?;
        r.register(Box::new(m.rate_limited.clone()))?;
        r.register(Box::new(m.connections_refused.clone()))?;
        r.register(Box::new(m.analytics_windows.clone()))?;
        r.register(Box::new(m.analytics_cache.clone()))?;
        r.register(Box::new(m.ops_alerts.clone()))?;
        Ok(m)
    }
}

/// Header of the request id: taken from the request when it carries a
/// usable one (1 to 128 visible ASCII characters: a proxy's or a caller's
/// id), otherwise 16 random bytes in hex; echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Axum middleware giving every request an id ([`REQUEST_ID_HEADER`]):
/// the request runs in a `request` span with `request_id`, `method` and
/// `route`, so each of its log lines (JSON with `LOG_FORMAT=json`) carries
/// them, and the response echoes the id.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| {
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        hex::encode(b)
    });
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route);
    // Visible ASCII (given) or hex (made): always a valid header value.
    let value = axum::http::HeaderValue::from_str(&id).ok();
    if let Some(v) = &value {
        req.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
    }
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Some(v) = value {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The `method` label of `m`: the standard methods by name, any other
/// (a client may send any token) as `OTHER`, so the label stays bounded
/// (issue #14).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Axum middleware counting every request by route template, method and status.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.requests.with_label_values(&[&route, method, resp.status().as_str()]).inc();
    metrics.duration.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        let odd = axum::http::Method::from_bytes(b"X-ANYTHING-0123").unwrap_or_default();
        assert_eq!(method_label(&odd), "OTHER");
    }
}
