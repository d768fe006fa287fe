//! The public HTTP/1.1 listener and the request handler.
//!
//! Routes (host = the tenant's `domain` or `subdomain`, case-insensitive, port ignored):
//! - `GET|HEAD /{slug}`: landing page, one `view` event; `?go={platform}`
//!   redirects like the next route instead.
//! - `GET|HEAD /{slug}/{platform}`: 302 to the URL stored on the link, one
//!   `click` event. Only stored http(s) URLs are ever redirected to.
//! - Unknown host or slug, drafts, unknown platform: 404 page. Archived: 410.
//!   Any other method: 405. Before the first cache load: 503.
//! - A link with routing rules ([`crate::routing`], issue #18) may instead
//!   send a landing visit straight to a platform (302, a view and a click
//!   event) or to a URL (302, a view), hide platforms (their path: 404),
//!   send a click-out to a storefront URL, add query parameters to the
//!   destination, or answer a phone's click-out with a page that opens the
//!   app (200); the deciding rule and variant are in every event.
//!
//! The handler is synchronous and allocation-light: it reads the cache
//! snapshot, builds the event, hands it to the sink (never waiting for the
//! broker) and answers. Limits: request head size (`max_buf_size`, 431 from
//! hyper), URI length (414), time to send the head (slowloris), per-IP rate
//! (429 with `Retry-After`).

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipnet::IpNet;
use schemas::event::{
    truncate_utf8, AdCookies, Attribution, Consent, EventKind, RawEvent, MAX_HEADER_VALUE_BYTES, RAW_EVENT_VERSION,
};
use uuid::Uuid;

use crate::cache::{Button, Cache, Link, Phase, Resolved, Tenant};
use crate::client_ip::{client_ip, rate_key, ForwardedHeader};
use crate::i18n::{self, Lang, Texts};
use crate::metrics::{DropCause, Metrics};
use crate::page::{self, CONSENT_COOKIE, PREFERRED_COOKIE, VISITOR_COOKIE};
use crate::routing::{self, Decision, ParamValues, Visit};
use crate::sink::EventSink;
use schemas::routing::PREFERRED_RULE;
use schemas::Text;

/// Everything the handler reads. Shared by all connections.
pub struct AppState {
    /// Tenants and links.
    pub cache: Cache,
    /// Where events go.
    pub sink: EventSink,
    /// Metrics.
    pub metrics: Metrics,
    /// Trusted proxy networks.
    pub trusted: Vec<IpNet>,
    /// The forwarding header they write.
    pub forwarded: ForwardedHeader,
    /// Per-IP limiter; `None` when disabled.
    pub limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Longest path + query, bytes.
    pub max_uri_bytes: usize,
    /// Key signing click ids.
    pub eid_key: Vec<u8>,
    /// Cookies get `Secure`.
    pub secure_cookies: bool,
    /// User agent and GeoIP lookups of the routing rules.
    pub lookups: crate::routing::Lookups,
}

/// A per-IP limiter allowing `per_sec` sustained and `burst` at once;
/// `None` when `per_sec` is 0.
pub fn limiter(per_sec: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

/// An answer of the edge: a full body in memory.
pub type Resp = Response<Full<Bytes>>;

/// Route labels for metrics (a fixed set).
/// Response header carrying the event id of a landing page view or a
/// click-out redirect.
pub const EVENT_ID_HEADER: &str = "x-event-id";

mod route {
    pub const LANDING: &str = "landing";
    pub const REDIRECT: &str = "redirect";
    pub const NOT_FOUND: &str = "not_found";
    pub const GONE: &str = "gone";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAVAILABLE: &str = "unavailable";
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Lowercase host without port or trailing dot, from `Host` or the URI authority.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host = if let Some(rest) = raw.strip_prefix('[') {
        &raw[..rest.find(']')? + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// A path segment as a slug, lowercased; `None` when not a valid slug.
pub(crate) fn slug_segment(s: &str) -> Option<Cow<'_, str>> {
    let s =
        if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) };
    schemas::ids::is_slug(&s).then_some(s)
}

pub(crate) fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<Text> {
    let v = headers.get(name)?;
    let s = String::from_utf8_lossy(v.as_bytes());
    let s = truncate_utf8(s.trim(), MAX_HEADER_VALUE_BYTES);
    (!s.is_empty()).then(|| Text::from(s))
}

/// `DNT: 1` or `Sec-GPC: 1`: the visitor asks not to be tracked.
pub(crate) fn dnt(headers: &HeaderMap) -> bool {
    headers.get("dnt").is_some_and(|v| v == "1") || headers.get("sec-gpc").is_some_and(|v| v == "1")
}

/// Consent and visitor cookies of a request.
pub(crate) struct Cookies {
    pub(crate) consent: Consent,
    pub(crate) visitor: Option<String>,
    /// The service the visitor last clicked out to (a platform id).
    preferred: Option<String>,
    /// The ad platforms' cookies (`_fbp`, `_fbc`, `_ga`, `_ttp`); put in
    /// the event only when the visitor is tracked.
    pub(crate) ad: AdCookies,
}

pub(crate) fn cookies(headers: &HeaderMap) -> Cookies {
    let mut c = Cookies { consent: Consent::Unknown, visitor: None, preferred: None, ad: AdCookies::default() };
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for cookie in cookie::Cookie::split_parse(s).flatten() {
            match cookie.name() {
                CONSENT_COOKIE => {
                    c.consent = match cookie.value() {
                        "granted" => Consent::Granted,
                        "denied" => Consent::Denied,
                        _ => Consent::Unknown,
                    }
                }
                VISITOR_COOKIE
                    if cookie.value().len() == 32 && cookie.value().bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    c.visitor = Some(cookie.value().to_string());
                }
                PREFERRED_COOKIE if schemas::ids::is_slug(cookie.value()) => {
                    c.preferred = Some(cookie.value().to_string());
                }
                name if name.starts_with('_') => {
                    c.ad.set(name, cookie.value());
                }
                _ => {}
            }
        }
    }
    c
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: Bytes, head_only: bool) -> Resp {
    let mut r = Response::new(Full::new(if head_only { Bytes::new() } else { body }));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    r
}

/// Adds the HTML security headers: the page's CSP ([`page::content_security_policy`])
/// and `X-Frame-Options: DENY` for browsers without `frame-ancestors`; and
/// `Vary: Accept-Language`, the page's language coming from it.
fn html_policy(r: &mut Resp, nonce: &str, pixels: bool, beacon: bool) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&page::content_security_policy(nonce, pixels, beacon)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
}

fn error_page(status: StatusCode, message: &str, tenant: Option<&Tenant>, head_only: bool, lang: Lang) -> Resp {
    let nonce = page::nonce();
    let html = page::error(status.as_u16(), message, tenant, &nonce, lang.tag());
    let mut r = respond(status, "text/html; charset=utf-8", Bytes::from(html), head_only);
    html_policy(&mut r, &nonce, false, false);
    r
}

/// Handles one request (synchronously: everything it needs is in memory).
pub fn handle<B>(state: &AppState, peer: SocketAddr, req: &Request<B>) -> Resp {
    let started = Instant::now();
    let (route, resp) = route_request(state, peer, req);
    state.metrics.requests.with_label_values(&[route, resp.status().as_str()]).inc();
    state.metrics.request_duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    resp
}

fn route_request<B>(state: &AppState, peer: SocketAddr, req: &Request<B>) -> (&'static str, Resp) {
    let head_only = req.method() == Method::HEAD;
    // Only pages need the language: a redirect never parses the header.
    let lang = || i18n::negotiate(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    if req.method() != Method::GET && !head_only {
        let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None, false, lang());
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return (route::BAD_REQUEST, r);
    }
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > state.max_uri_bytes {
        return (route::BAD_REQUEST, error_page(StatusCode::URI_TOO_LONG, "URI too long", None, head_only, lang()));
    }
    let ip = client_ip(peer, req.headers(), &state.trusted, state.forwarded);
    if let Some(limiter) = &state.limiter {
        if let Err(not_until) = limiter.check_key(&rate_key(ip)) {
            state.metrics.rate_limited.inc();
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let l = lang();
            let mut r = error_page(StatusCode::TOO_MANY_REQUESTS, Texts::new(l, None).too_many, None, head_only, l);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            return (route::RATE_LIMITED, r);
        }
    }
    let Some(host) = request_host(req) else {
        return (
            route::BAD_REQUEST,
            error_page(StatusCode::BAD_REQUEST, "Missing Host header", None, head_only, lang()),
        );
    };
    if !state.cache.is_loaded() {
        let l = lang();
        let mut r = error_page(StatusCode::SERVICE_UNAVAILABLE, Texts::new(l, None).starting, None, head_only, l);
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return (route::UNAVAILABLE, r);
    }
    let snapshot = state.cache.snapshot();
    let path = req.uri().path();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    let (first, second, rest) = (segments.next(), segments.next(), segments.next());
    let not_found = |tenant: Option<&Tenant>| {
        let texts = Texts::new(lang(), tenant.map(|t| &t.client));
        (route::NOT_FOUND, error_page(StatusCode::NOT_FOUND, &texts.not_found, tenant, head_only, texts.lang))
    };
    let (slug, platform) = match (first.and_then(slug_segment), second, rest) {
        (Some(slug), None | Some(""), None) => (slug, None),
        (Some(slug), Some(p), None | Some("")) => match slug_segment(p) {
            Some(p) => (slug, Some(p)),
            None => return not_found(snapshot.tenant(&host)),
        },
        _ => return not_found(snapshot.tenant(&host)),
    };
    let (tenant, link) = match snapshot.resolve(&host, &slug) {
        Resolved::Found(t, l) => (t, l),
        Resolved::Gone(t) => {
            let texts = Texts::new(lang(), Some(&t.client));
            return (route::GONE, error_page(StatusCode::GONE, &texts.gone, Some(t), head_only, texts.lang));
        }
        Resolved::UnknownSlug(t) => return not_found(Some(t)),
        Resolved::UnknownHost => return not_found(None),
    };
    let now = now_ms();
    // The link's schedule (issue #18): before go-live and after expiry no
    // platform is redirected to; an expired link without a fallback is gone.
    let phase = link.phase(now);
    if phase == Phase::Expired && link.expired_location.is_none() {
        let texts = Texts::new(lang(), Some(&tenant.client));
        return (route::GONE, error_page(StatusCode::GONE, &texts.gone, Some(tenant), head_only, texts.lang));
    }

    let mut attribution = Attribution::default();
    let mut go: Option<String> = None;
    let mut eid: Option<String> = None;
    let mut from_qr = false;
    if let Some(q) = req.uri().query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "go" => go = Some(v.to_ascii_lowercase()),
                "eid" => eid = Some(v.into_owned()),
                "src" => from_qr = v == "qr",
                name => {
                    attribution.set(name, &v);
                }
            }
        }
    }
    // A link's QR code (the API's `GET /v1/smartlinks/{id}/qr`) carries
    // `src=qr`: the visit's source, unless the URL names one.
    if from_qr && attribution.utm_source.is_none() {
        attribution.set("utm_source", "qr");
    }
    let platform: Option<Cow<'_, str>> = match phase {
        Phase::Live => platform.or_else(|| go.map(Cow::Owned)),
        Phase::Upcoming(_) | Phase::Expired => None,
    };
    let headers = req.headers();
    let cookies = cookies(headers);
    let dnt = dnt(headers);
    let tracked = cookies.consent == Consent::Granted && !dnt;
    let (visitor_id, set_visitor) = match (&cookies.visitor, tracked) {
        (Some(v), true) => (Some(v.clone()), None),
        (None, true) => {
            let v = Uuid::new_v4().simple().to_string();
            (Some(v.clone()), Some(v))
        }
        (_, false) => (None, None),
    };
    // Routing rules (issue #18): decided from memory, only for a live link
    // that has some.
    let routes = &link.routes;
    let decision = if phase == Phase::Live && !routes.is_empty() {
        routes.decide(
            &Visit {
                user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
                accept_language: headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
                ip,
                visitor: visitor_id.as_deref(),
            },
            &state.lookups,
        )
    } else {
        Decision::default()
    };
    let skip = match (&platform, phase) {
        (None, Phase::Live) => landing_skip(link, &decision, cookies.preferred.as_deref(), tracked),
        _ => None,
    };
    let (rule_id, variant) = match skip {
        Some(Skip::Preferred(_)) => (Some(PREFERRED_RULE), None),
        _ => (decision.rule_id, decision.variant),
    };
    let values = ParamValues {
        attribution: &attribution,
        slug: &link.doc.slug,
        country: decision.facts.country,
        rule: rule_id,
        variant,
    };
    // Where a click-out to `button` goes: the rule's storefront URL or the
    // stored one, with the link's parameter templates; the prebuilt header
    // when nothing changes it. An app-opening page instead of a 302 with
    // app links on a phone.
    let click_out = |button: &Button, head_only: bool| -> Resp {
        let (base, prebuilt) =
            decision.target.and_then(|t| t.url_for(&button.id)).unwrap_or((button.url.as_str(), &button.location));
        let url = routes.with_params(base, &button.id, &values);
        if routes.app_links {
            if let Some(app) = decision.facts.mobile_os().and_then(|os| routing::app_link(&button.id, &url, os)) {
                let nonce = page::nonce();
                let lang = lang();
                let html = page::app_open(&app, &url, &button.label, Some(tenant), &nonce, lang.tag());
                let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from(html), head_only);
                html_policy(&mut r, &nonce, false, false);
                return r;
            }
        }
        // Unchanged by parameters: the `Location` built with the snapshot.
        let location = match &url {
            Cow::Borrowed(_) => prebuilt.clone(),
            Cow::Owned(u) => HeaderValue::from_str(u).unwrap_or_else(|_| prebuilt.clone()),
        };
        let mut r = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new(), true);
        r.headers_mut().insert(header::LOCATION, location);
        r
    };
    // The click-out of an auto-redirect, recorded beside the visit's view.
    let mut extra_click: Option<(Uuid, &str)> = None;
    let mut remember: Option<&str> = None;
    let (kind, event_id, ts_ms, resp, route) = match (&platform, skip) {
        (Some(p), _) => {
            let Some(button) = link.button(p).filter(|b| !decision.hides(&b.id)) else {
                return not_found(Some(tenant));
            };
            // A page-issued id keeps its own instant as the click's ts (see
            // `eid`): replays collapse onto one row.
            let (event_id, ts) = eid
                .as_deref()
                .and_then(|t| crate::eid::verify(&state.eid_key, t, &link.id_hex, &button.id, now))
                .unwrap_or_else(|| (Uuid::now_v7(), now));
            remember = Some(&button.id);
            (EventKind::Click, event_id, ts, click_out(button, head_only), route::REDIRECT)
        }
        (None, _) if phase == Phase::Expired => {
            // A visit to an expired link counts as a view; it goes to the fallback.
            let mut r = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new(), true);
            if let Some(location) = &link.expired_location {
                r.headers_mut().insert(header::LOCATION, location.clone());
            }
            (EventKind::View, Uuid::now_v7(), now, r, route::REDIRECT)
        }
        (None, Some(Skip::Preferred(button) | Skip::Platform(button))) => {
            extra_click = Some((Uuid::now_v7(), &button.id));
            (EventKind::View, Uuid::now_v7(), now, click_out(button, head_only), route::REDIRECT)
        }
        (None, Some(Skip::Url(url))) => {
            let mut r = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new(), true);
            r.headers_mut().insert(header::LOCATION, url.clone());
            (EventKind::View, Uuid::now_v7(), now, r, route::REDIRECT)
        }
        (None, None) => {
            let view_event_id = Uuid::now_v7();
            let nonce = page::nonce();
            let texts = Texts::new(lang(), Some(&tenant.client));
            let upcoming = match phase {
                Phase::Upcoming(at) => Some(texts.soon(at)),
                _ => None,
            };
            let shown: &[Button] = if upcoming.is_some() { &[] } else { &link.buttons };
            let query = routing::query_string(&attribution);
            let engage_token = crate::eid::sign(&state.eid_key, &view_event_id, &link.id_hex, crate::engage::SCOPE);
            let html = page::landing(&page::LandingPage {
                tenant,
                link,
                host: &host,
                view_event_id,
                engage_token: &engage_token,
                clicks: signed_clicks(state, link, shown.iter().filter(|b| !decision.hides(&b.id))),
                query: &query,
                dnt,
                secure_cookies: state.secure_cookies,
                nonce: &nonce,
                texts: &texts,
                upcoming: upcoming.as_deref(),
            });
            let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from(html), head_only);
            // Pixels may load, and the page report its engagement, only
            // where consent can still be given.
            let may = !dnt && cookies.consent != Consent::Denied;
            html_policy(&mut r, &nonce, tenant.client.tracking.any() && may, may);
            (EventKind::View, view_event_id, now, r, route::LANDING)
        }
    };
    let mut resp = resp;
    // The event id follows the visit across stages: this header, the
    // Kafka record, ingest's and the api's logs, the ClickHouse row.
    if let Ok(v) = HeaderValue::from_str(&event_id.to_string()) {
        resp.headers_mut().insert(EVENT_ID_HEADER, v);
    }
    if let Some(v) = set_visitor {
        set_cookie(
            &mut resp,
            &format!("{VISITOR_COOKIE}={v}; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly{}", secure(state)),
        );
    } else if cookies.consent == Consent::Denied && cookies.visitor.is_some() {
        set_cookie(
            &mut resp,
            &format!("{VISITOR_COOKIE}=; Max-Age=0; Path=/; SameSite=Lax; HttpOnly{}", secure(state)),
        );
    }
    // The visitor's choice, remembered for the tenant's links that opt in.
    if let Some(p) = remember.filter(|p| routes.remember_choice && tracked && cookies.preferred.as_deref() != Some(p)) {
        set_cookie(
            &mut resp,
            &format!("{PREFERRED_COOKIE}={p}; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly{}", secure(state)),
        );
    }

    let event = RawEvent {
        v: RAW_EVENT_VERSION,
        event_id,
        kind,
        ts_ms,
        tenant_id: Text::from(tenant.id_hex.as_str()),
        link_id: Text::from(link.id_hex.as_str()),
        slug: Text::from(link.doc.slug.as_str()),
        host: host.into(),
        path: Text::from(path),
        method: Text::const_new(if head_only { "HEAD" } else { "GET" }),
        platform: match kind {
            EventKind::Click => platform.as_deref().map(Text::from),
            EventKind::View | EventKind::Engagement => None,
        },
        ip,
        user_agent: header_string(headers, header::USER_AGENT),
        accept_language: header_string(headers, header::ACCEPT_LANGUAGE),
        referrer: header_string(headers, header::REFERER),
        attribution,
        consent: cookies.consent,
        dnt,
        visitor_id: visitor_id.map(Text::from),
        // The platforms' cookies are the visitor's: only with consent.
        ad_cookies: if tracked { cookies.ad } else { AdCookies::default() },
        engagement: None,
        keep_full_ip: !tenant.client.settings.anonymize_ip,
        rule_id: rule_id.map(Text::from),
        variant: variant.map(Text::from),
    };
    tracing::debug!(event_id = %event_id, kind = ?kind, tenant = %tenant.id_hex, link = %link.id_hex, "event");
    send(state, &event);
    if let Some((click_id, p)) = extra_click {
        let click = RawEvent { event_id: click_id, kind: EventKind::Click, platform: Some(Text::from(p)), ..event };
        send(state, &click);
    }
    (route, resp)
}

/// Serialises `event` (JSON) and hands it to the sink (never waits).
pub(crate) fn send(state: &AppState, event: &RawEvent) {
    match serde_json::to_vec(event) {
        Ok(payload) => state.sink.send(event.partition_key().as_bytes(), &payload),
        Err(e) => {
            state.metrics.drop_event(DropCause::Serialize);
            tracing::error!(error = %e, "event serialisation failed");
        }
    }
}

/// Where a live link's landing visit goes instead of its page (issue #18).
enum Skip<'a> {
    /// The visitor's remembered service (recorded as rule `preferred`).
    Preferred(&'a Button),
    /// The matching rule's platform.
    Platform(&'a Button),
    /// The matching rule's URL.
    Url(&'a HeaderValue),
}

/// The [`Skip`] of a landing visit to `link`: the service remembered in
/// `preferred` when the link opts in, the visitor is `tracked` (consent,
/// no DNT/GPC) and the rule does not hide it; else the matching rule's
/// platform (when the link has it and does not hide it) or URL; `None`
/// shows the page.
fn landing_skip<'a>(
    link: &'a Link,
    decision: &Decision<'a>,
    preferred: Option<&str>,
    tracked: bool,
) -> Option<Skip<'a>> {
    let remembered =
        preferred.filter(|p| link.routes.remember_choice && tracked && !decision.hides(p)).and_then(|p| link.button(p));
    if let Some(button) = remembered {
        return Some(Skip::Preferred(button));
    }
    let t = decision.target?;
    match (&t.platform, &t.url) {
        (Some(p), _) if !t.hides(p) => link.button(p).map(Skip::Platform),
        (_, Some(url)) => Some(Skip::Url(url)),
        _ => None,
    }
}

fn secure(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(resp: &mut Resp, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Each of `buttons` with a fresh click id and its signed token: what the
/// page hands to the pixels and the server records on the click ([`crate::eid`]).
fn signed_clicks<'a>(
    state: &AppState,
    link: &Link,
    buttons: impl Iterator<Item = &'a Button>,
) -> Vec<(&'a Button, Uuid, String)> {
    buttons
        .map(|b| {
            let id = Uuid::now_v7();
            (b, id, crate::eid::sign(&state.eid_key, &id, &link.id_hex, &b.id))
        })
        .collect()
}

/// The service answering one connection from `peer` ([`handle`] each request).
pub fn service(
    state: Arc<AppState>,
    peer: SocketAddr,
) -> impl hyper::service::Service<Request<Incoming>, Response = Resp, Error = Infallible, Future: Send> + Send {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        // A page's engagement beacon reads a body; every other request is
        // answered at once from memory.
        if req.method() == Method::POST {
            let state = state.clone();
            return futures::future::Either::Left(Box::pin(async move {
                Ok::<_, Infallible>(crate::engage::handle(&state, peer, req).await)
            }));
        }
        let resp = handle(&state, peer, &req);
        futures::future::Either::Right(std::future::ready(Ok::<_, Infallible>(resp)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse_consent_and_a_well_formed_visitor_id_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; sl_consent=granted; sl_vid=0123456789abcdef0123456789abcdef"),
        );
        let c = cookies(&h);
        assert_eq!(c.consent, Consent::Granted);
        assert_eq!(c.visitor.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        h.insert(header::COOKIE, HeaderValue::from_static("sl_consent=maybe; sl_vid=<script>"));
        let c = cookies(&h);
        assert_eq!(c.consent, Consent::Unknown);
        assert_eq!(c.visitor, None);
    }

    #[test]
    fn the_ad_platforms_cookies_are_read_and_junk_is_left_out() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("_fbp=fb.1.1700000000000.123; _ga=GA1.1.42.1700000000; _ttp=abc; _xyz=1; _fbc="),
        );
        let c = cookies(&h);
        assert_eq!(c.ad.fbp.as_deref(), Some("fb.1.1700000000000.123"));
        assert_eq!(c.ad.ga.as_deref(), Some("GA1.1.42.1700000000"));
        assert_eq!(c.ad.ttp.as_deref(), Some("abc"));
        assert_eq!(c.ad.fbc, None, "empty value");
        let long = format!("_ga={}", "1".repeat(300));
        h.insert(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert!(cookies(&h).ad.is_empty(), "over 256 bytes");
    }

    #[test]
    fn slug_segments_lowercase_and_reject_junk() {
        assert_eq!(slug_segment("Jiro-In-Your-Light").as_deref(), Some("jiro-in-your-light"));
        assert_eq!(slug_segment("a%20b"), None);
        assert_eq!(slug_segment(""), None);
        assert_eq!(slug_segment("favicon.ico"), None);
    }

    #[test]
    fn limiter_disabled_at_zero() {
        assert!(limiter(0, 10).is_none());
        let l = limiter(1, 2).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check_key(&ip).is_ok() && l.check_key(&ip).is_ok());
        assert!(l.check_key(&ip).is_err(), "burst of 2 then refused");
        assert!(l.check_key(&"192.0.2.2".parse().unwrap()).is_ok(), "per IP");
    }
}
