//! The engagement beacon (issue #19; seed 000 `business.timeOnPage`, the
//! input of `avgTimeOnPage` and `bounceRate`).
//!
//! A landing page whose visitor consented sends, once, when it is hidden
//! (`visibilitychange` to hidden or `pagehide`), `navigator.sendBeacon` to
//! its own URL: `POST /{slug}?{the landing query}` with `{"t": token,
//! "ms": visible ms, "c": clicked, "lc": consent given on this page}`. The token is the view's event id signed for this link and
//! [`SCOPE`] ([`crate::eid`]): a client cannot report for a view it was not
//! served, nor reuse a button's token. The edge checks it, the consent
//! cookie and the absence of `DNT`/`Sec-GPC`, then hands an
//! [`EventKind::Engagement`] event to Kafka like a view (never waiting) and
//! answers `204`. Refusals are JSON: `400` (`bad_json`, `bad_token`), `404`
//! (unknown link), `413` (a body over [`MAX_BODY_BYTES`]), `429` (the
//! per-IP rate limit every request shares). Without consent nothing is
//! recorded (`204`: a beacon is never read).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Request, StatusCode};
use schemas::event::{Consent, Engagement, EventKind, RawEvent, MAX_ENGAGED_MS, RAW_EVENT_VERSION};
use schemas::Text;
use serde::Deserialize;
use uuid::Uuid;

use crate::server::{AppState, Resp};

/// The token scope of a view's engagement (a button's is its platform id;
/// no platform id starts with `~`).
pub const SCOPE: &str = "~engage";

/// Largest beacon body read, bytes.
pub const MAX_BODY_BYTES: usize = 512;

/// How long a beacon's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the page sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// The view's signed id.
    t: String,
    /// Visible time, ms (capped to [`MAX_ENGAGED_MS`]).
    ms: u64,
    /// A platform button was clicked.
    #[serde(default)]
    c: bool,
    /// Consent was given on this page (not before it loaded).
    #[serde(default)]
    lc: bool,
}

/// How a beacon ended: the `edge_engagements_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to Kafka.
    Recorded,
    /// No consent, or `DNT`/`Sec-GPC`: nothing recorded.
    NoConsent,
    /// Refused (bad body, bad token, unknown link, too large).
    Invalid,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::NoConsent => "no_consent",
            Outcome::Invalid => "invalid",
        }
    }
}

fn json(status: StatusCode, code: &str) -> Resp {
    let body = if status == StatusCode::NO_CONTENT {
        Bytes::new()
    } else {
        Bytes::from(format!("{{\"error\":{{\"code\":\"{code}\"}}}}"))
    };
    let mut r = crate::server::respond(status, "application/json", body, false);
    if status == StatusCode::NO_CONTENT {
        r.headers_mut().remove(header::CONTENT_TYPE);
    }
    r
}

/// Handles `POST` `req` from `peer`: see the module docs.
pub async fn handle(state: &AppState, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let started = std::time::Instant::now();
    let (status, outcome) = match engage(state, peer, req).await {
        Ok(o) => (StatusCode::NO_CONTENT, o),
        Err((s, code)) => {
            state.metrics.engagements.with_label_values(&[Outcome::Invalid.as_str()]).inc();
            let r = json(s, code);
            state.metrics.requests.with_label_values(&["engage", r.status().as_str()]).inc();
            return r;
        }
    };
    state.metrics.engagements.with_label_values(&[outcome.as_str()]).inc();
    state.metrics.requests.with_label_values(&["engage", status.as_str()]).inc();
    state.metrics.request_duration.with_label_values(&["engage"]).observe(started.elapsed().as_secs_f64());
    json(status, "")
}

type Refusal = (StatusCode, &'static str);

async fn engage(state: &AppState, peer: SocketAddr, req: Request<Incoming>) -> Result<Outcome, Refusal> {
    let ip = crate::client_ip::client_ip(peer, req.headers(), &state.trusted, state.forwarded);
    if let Some(limiter) = &state.limiter {
        if limiter.check_key(&crate::client_ip::rate_key(ip)).is_err() {
            state.metrics.rate_limited.inc();
            return Err((StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        }
    }
    let host = crate::server::request_host(&req).ok_or((StatusCode::BAD_REQUEST, "no_host"))?;
    let path = req.uri().path().to_string();
    let slug = path
        .strip_prefix('/')
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.contains('/'))
        .and_then(crate::server::slug_segment)
        .ok_or((StatusCode::NOT_FOUND, "not_found"))?
        .into_owned();
    let snapshot = state.cache.snapshot();
    let (tenant, link) = match snapshot.resolve(&host, &slug) {
        crate::cache::Resolved::Found(t, l) => (t, l),
        _ => return Err((StatusCode::NOT_FOUND, "not_found")),
    };
    let headers: &HeaderMap = req.headers();
    let cookies = crate::server::cookies(headers);
    if cookies.consent != Consent::Granted || crate::server::dnt(headers) {
        return Ok(Outcome::NoConsent);
    }
    // What the event keeps of the request, taken before its body is read:
    // the landing URL's attribution (the page sends its own query), the
    // user agent and the platforms' cookies, for the view the forwarder
    // may now send ([`Engagement::consented_on_page`]).
    let user_agent = crate::server::header_string(headers, header::USER_AGENT);
    let mut attribution = schemas::event::Attribution::default();
    if let Some(q) = req.uri().query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            attribution.set(&k, &v);
        }
    }
    let ad_cookies = cookies.ad.clone();
    if req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        > Some(MAX_BODY_BYTES)
    {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    }
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Err((StatusCode::PAYLOAD_TOO_LARGE, "too_large")),
        Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "timeout")),
    };
    let report: Report = serde_json::from_slice(&bytes).map_err(|_| (StatusCode::BAD_REQUEST, "bad_json"))?;
    let now = crate::server::now_ms();
    let (view_id, view_ts_ms) = crate::eid::verify(&state.eid_key, &report.t, &link.id_hex, SCOPE, now)
        .ok_or((StatusCode::BAD_REQUEST, "bad_token"))?;
    let event = RawEvent {
        v: RAW_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        kind: EventKind::Engagement,
        ts_ms: now,
        tenant_id: Text::from(tenant.id_hex.as_str()),
        link_id: Text::from(link.id_hex.as_str()),
        slug: Text::from(link.doc.slug.as_str()),
        host: host.into(),
        path: path.into(),
        method: Text::const_new("POST"),
        platform: None,
        ip,
        user_agent,
        accept_language: None,
        referrer: None,
        attribution,
        consent: Consent::Granted,
        dnt: false,
        visitor_id: cookies.visitor.map(Text::from),
        ad_cookies,
        keep_full_ip: false,
        rule_id: None,
        variant: None,
        engagement: Some(Engagement {
            view_id,
            view_ts_ms,
            visible_ms: report.ms.min(u64::from(MAX_ENGAGED_MS)) as u32,
            clicked: report.c,
            consented_on_page: report.lc,
        }),
    };
    crate::server::send(state, &event);
    Ok(Outcome::Recorded)
}
