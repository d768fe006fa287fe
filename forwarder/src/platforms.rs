//! What each ad platform is sent, and how its answer is judged. Pure
//! functions: raw events in, HTTP requests out; status and body in, a
//! [`Verdict`] out. The shapes follow each platform's documentation:
//!
//! - **Meta Conversions API** (`POST {base}/{version}/{pixel}/events`,
//!   `access_token` in the query): `data[]` of server events with
//!   `event_name`, `event_time` (Unix s), `event_id` (the pixel's
//!   `eventID`: Meta keeps one of a pixel and a server event with the same
//!   name and id), `action_source: "website"`, `event_source_url`, and
//!   `user_data`: `client_ip_address` and `client_user_agent` in clear,
//!   `fbp` and `fbc` (the `_fbc` cookie, or `fb.1.{ms}.{fbclid}` built from
//!   the landing URL's `fbclid`, as Meta documents), `external_id` hashed
//!   with SHA-256 (lowercase hex). At most 1,000 events per request.
//! - **GA4 Measurement Protocol** (`POST {base}/mp/collect?measurement_id=…&api_secret=…`):
//!   `client_id` (the `_ga` cookie's last two parts, else one derived from
//!   our visitor cookie), `timestamp_micros`, `events[]` of `{name,
//!   params}` with the dataLayer's names (`smartlink_view`,
//!   `smartlink_click`) and our `event_id` as a parameter. At most 25
//!   events, all of one `client_id`, per request. GA4 does not deduplicate
//!   by event id: a tenant whose GA4 tag also fires on the page sends only
//!   the events its tag cannot see (the destination's `events`).
//! - **TikTok Events API 2.0** (`POST {base}/open_api/v1.3/event/track/`,
//!   `Access-Token` header): `event_source: "web"`, `event_source_id` (the
//!   pixel code), `data[]` with `event`, `event_time` (Unix s), `event_id`
//!   (the pixel's, for deduplication), `user` (`ttclid`, `ttp`, `ip`,
//!   `user_agent`, `external_id` SHA-256), `page` (`url`, `referrer`). At
//!   most 1,000 events per request. TikTok answers errors with HTTP 200 and
//!   a non-zero `code`.
//!
//! Event names match what the landing page's pixels fire (`edge::page`):
//! Meta `ViewContent` / `SmartlinkClick`, TikTok `ViewContent` /
//! `ClickButton`, GA4 `smartlink_view` / `smartlink_click`. Credentials
//! travel in the URL (Meta, GA4) or a header (TikTok), never in the body,
//! so the body can be dead-lettered as is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use schemas::conversions::Platform;
use schemas::event::{EventKind, RawEvent};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::destinations::Dest;

/// The platforms' base URLs and the Meta Graph API version.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `https://graph.facebook.com` or a test receiver.
    pub meta: String,
    /// Graph API version (`v21.0`).
    pub meta_version: String,
    /// `https://www.google-analytics.com` or a test receiver.
    pub ga4: String,
    /// `https://business-api.tiktok.com` or a test receiver.
    pub tiktok: String,
}

/// One HTTP request to a destination.
#[derive(Debug, Clone)]
pub struct Request {
    /// Full URL, credential included for Meta and GA4: never logged.
    pub url: String,
    /// Extra headers (TikTok's `Access-Token`): never logged.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body, without any credential.
    pub body: Vec<u8>,
    /// The events it carries.
    pub event_ids: Vec<Uuid>,
}

/// SHA-256 of `value`, lowercase hex: how Meta and TikTok take an
/// `external_id` (their "hashing" rules: normalised, then SHA-256).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.trim().to_lowercase().as_bytes()))
}

/// The page the event happened on: `https://{host}{path}`.
fn source_url(e: &RawEvent) -> String {
    format!("https://{}{}", e.host, e.path)
}

/// Meta's `fbc`: the `_fbc` cookie, else `fb.1.{event ms}.{fbclid}` from
/// the landing URL (Meta, "ClickID and the fbclid URL query parameter").
pub fn meta_fbc(e: &RawEvent) -> Option<String> {
    if let Some(c) = &e.ad_cookies.fbc {
        return Some(c.to_string());
    }
    e.attribution.fbclid.as_ref().map(|id| format!("fb.1.{}.{id}", e.ts_ms))
}

/// GA4's `client_id`: the `_ga` cookie's last two dot-separated parts
/// (`GA1.1.123.456` → `123.456`), else two 32-bit numbers from our visitor
/// cookie (stable per visitor); `None` without either.
pub fn ga4_client_id(e: &RawEvent) -> Option<String> {
    if let Some(ga) = &e.ad_cookies.ga {
        let parts: Vec<&str> = ga.split('.').collect();
        if parts.len() >= 4
            && parts[parts.len() - 2..].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(parts[parts.len() - 2..].join("."));
        }
    }
    let v = e.visitor_id.as_deref().filter(|v| v.len() >= 16)?;
    let a = u32::from_str_radix(&v[..8], 16).ok()?;
    let b = u32::from_str_radix(&v[8..16], 16).ok()?;
    Some(format!("{a}.{b}"))
}

fn meta_event(e: &RawEvent) -> Value {
    let mut user = serde_json::Map::new();
    user.insert("client_ip_address".into(), json!(e.ip.to_string()));
    if let Some(ua) = &e.user_agent {
        user.insert("client_user_agent".into(), json!(ua.as_str()));
    }
    if let Some(fbp) = &e.ad_cookies.fbp {
        user.insert("fbp".into(), json!(fbp.as_str()));
    }
    if let Some(fbc) = meta_fbc(e) {
        user.insert("fbc".into(), json!(fbc));
    }
    if let Some(v) = &e.visitor_id {
        user.insert("external_id".into(), json!([sha256_hex(v)]));
    }
    // Engagements never get here (`pipeline::skip_reason`).
    let (name, custom) = match e.kind {
        EventKind::View | EventKind::Engagement => {
            ("ViewContent", json!({"content_category": "Music", "content_ids": [e.link_id.as_str()]}))
        }
        EventKind::Click => {
            ("SmartlinkClick", json!({"platform": e.platform.as_deref(), "content_ids": [e.link_id.as_str()]}))
        }
    };
    json!({
        "event_name": name,
        "event_time": e.ts_ms / 1000,
        "event_id": e.event_id.to_string(),
        "action_source": "website",
        "event_source_url": source_url(e),
        "user_data": user,
        "custom_data": custom,
    })
}

fn tiktok_event(e: &RawEvent) -> Value {
    let mut user = serde_json::Map::new();
    user.insert("ip".into(), json!(e.ip.to_string()));
    if let Some(ua) = &e.user_agent {
        user.insert("user_agent".into(), json!(ua.as_str()));
    }
    if let Some(id) = &e.attribution.ttclid {
        user.insert("ttclid".into(), json!(id.as_str()));
    }
    if let Some(ttp) = &e.ad_cookies.ttp {
        user.insert("ttp".into(), json!(ttp.as_str()));
    }
    if let Some(v) = &e.visitor_id {
        user.insert("external_id".into(), json!(sha256_hex(v)));
    }
    let mut page = serde_json::Map::new();
    page.insert("url".into(), json!(source_url(e)));
    if let Some(r) = &e.referrer {
        page.insert("referrer".into(), json!(r.as_str()));
    }
    let (name, properties) = match e.kind {
        EventKind::View | EventKind::Engagement => {
            ("ViewContent", json!({"content_type": "product", "contents": [{"content_id": e.link_id.as_str()}]}))
        }
        EventKind::Click => (
            "ClickButton",
            json!({"content_type": "product", "contents": [{"content_id": e.link_id.as_str()}], "description": e.platform.as_deref()}),
        ),
    };
    json!({
        "event": name,
        "event_time": e.ts_ms / 1000,
        "event_id": e.event_id.to_string(),
        "user": user,
        "page": page,
        "properties": properties,
    })
}

fn ga4_event(e: &RawEvent) -> Value {
    let mut params = serde_json::Map::new();
    params.insert("event_id".into(), json!(e.event_id.to_string()));
    params.insert("smartlink_id".into(), json!(e.link_id.as_str()));
    params.insert("page_location".into(), json!(source_url(e)));
    // A GA4 event needs engagement time to count in its reports' users.
    params.insert("engagement_time_msec".into(), json!(1));
    if let Some(r) = &e.referrer {
        params.insert("page_referrer".into(), json!(r.as_str()));
    }
    if let Some(p) = &e.platform {
        params.insert("platform".into(), json!(p.as_str()));
    }
    for (k, v) in [
        ("campaign_source", &e.attribution.utm_source),
        ("campaign_medium", &e.attribution.utm_medium),
        ("campaign", &e.attribution.utm_campaign),
    ] {
        if let Some(v) = v {
            params.insert(k.into(), json!(v.as_str()));
        }
    }
    let name = match e.kind {
        EventKind::View | EventKind::Engagement => "smartlink_view",
        EventKind::Click => "smartlink_click",
    };
    json!({"name": name, "params": params})
}

/// The requests that carry `events` (all of `dest`'s tenant, already
/// filtered) to `dest`, at most [`Platform::max_batch`] events each; GA4
/// events without a client id are left out (counted by the caller as the
/// difference). Never fails: every field comes from validated events.
pub fn build(dest: &Dest, events: &[Arc<RawEvent>], at: &Endpoints) -> Vec<Request> {
    let max = dest.platform.max_batch();
    match dest.platform {
        Platform::Meta => events
            .chunks(max)
            .map(|chunk| {
                let mut body = json!({"data": chunk.iter().map(|e| meta_event(e)).collect::<Vec<_>>()});
                if let Some(code) = &dest.test_event_code {
                    body["test_event_code"] = json!(code);
                }
                Request {
                    url: format!(
                        "{}/{}/{}/events?access_token={}",
                        at.meta.trim_end_matches('/'),
                        at.meta_version,
                        dest.pixel_id,
                        encode(dest.credential.expose())
                    ),
                    headers: Vec::new(),
                    body: body.to_string().into_bytes(),
                    event_ids: chunk.iter().map(|e| e.event_id).collect(),
                }
            })
            .collect(),
        Platform::Tiktok => events
            .chunks(max)
            .map(|chunk| {
                let mut body = json!({
                    "event_source": "web",
                    "event_source_id": dest.pixel_id,
                    "data": chunk.iter().map(|e| tiktok_event(e)).collect::<Vec<_>>(),
                });
                if let Some(code) = &dest.test_event_code {
                    body["test_event_code"] = json!(code);
                }
                Request {
                    url: format!("{}/open_api/v1.3/event/track/", at.tiktok.trim_end_matches('/')),
                    headers: vec![("Access-Token", dest.credential.expose().to_string())],
                    body: body.to_string().into_bytes(),
                    event_ids: chunk.iter().map(|e| e.event_id).collect(),
                }
            })
            .collect(),
        Platform::Ga4 => {
            // One client id per request: group by visitor, in event order.
            let mut by_client: BTreeMap<String, Vec<&Arc<RawEvent>>> = BTreeMap::new();
            for e in events {
                if let Some(c) = ga4_client_id(e) {
                    by_client.entry(c).or_default().push(e);
                }
            }
            let url = format!(
                "{}/mp/collect?measurement_id={}&api_secret={}",
                at.ga4.trim_end_matches('/'),
                encode(&dest.pixel_id),
                encode(dest.credential.expose())
            );
            by_client
                .into_iter()
                .flat_map(|(client, evs)| {
                    let url = url.clone();
                    evs.chunks(max)
                        .map(|chunk| {
                            let ts = chunk.iter().map(|e| e.ts_ms).min().unwrap_or_default();
                            let body = json!({
                                "client_id": client,
                                "timestamp_micros": ts * 1000,
                                "events": chunk.iter().map(|e| ga4_event(e)).collect::<Vec<_>>(),
                            });
                            Request {
                                url: url.clone(),
                                headers: Vec::new(),
                                body: body.to_string().into_bytes(),
                                event_ids: chunk.iter().map(|e| e.event_id).collect(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Delivered,
    /// Try again later; `cause` is a metrics label (`429`, `5xx`,
    /// `transient`, `transport`); `after` the platform's `Retry-After`.
    Retry {
        /// Why (bounded label).
        cause: &'static str,
        /// The platform's `Retry-After`, if it gave one.
        after: Option<Duration>,
    },
    /// Refused for good: dead-letter it.
    Rejected,
}

/// Judges an HTTP answer of `platform`: 2xx delivered (TikTok: and `code`
/// 0; its rate-limit code 40100 and 5xxxx codes are retried); 408, 429
/// and 5xx retried; Meta 400s it marks `is_transient` or whose code is a
/// rate limit (4, 17, 32, 613, 80004) retried; any other answer rejected.
pub fn judge(platform: Platform, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Verdict {
    let retry = |cause| Verdict::Retry { cause, after: retry_after };
    match status {
        200..=299 => {
            if platform == Platform::Tiktok {
                let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("code")?.as_i64());
                match code {
                    Some(0) => Verdict::Delivered,
                    Some(40100) => retry("429"),
                    Some(c) if (50000..60000).contains(&c) => retry("5xx"),
                    _ => Verdict::Rejected,
                }
            } else {
                Verdict::Delivered
            }
        }
        429 => retry("429"),
        408 | 500..=599 => retry("5xx"),
        400..=499 if platform == Platform::Meta => {
            let err = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error").cloned());
            let transient = err.as_ref().and_then(|e| e.get("is_transient")?.as_bool()).unwrap_or(false);
            let code = err.as_ref().and_then(|e| e.get("code")?.as_i64());
            if transient || matches!(code, Some(4 | 17 | 32 | 613 | 80004)) {
                retry("transient")
            } else {
                Verdict::Rejected
            }
        }
        _ => Verdict::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::Secret;
    use schemas::event::{AdCookies, Attribution, Consent, RAW_EVENT_VERSION};

    fn event(kind: EventKind) -> RawEvent {
        RawEvent {
            v: RAW_EVENT_VERSION,
            event_id: Uuid::now_v7(),
            kind,
            ts_ms: 1_764_000_000_123,
            tenant_id: "65a000000000000000000001".into(),
            link_id: "65a000000000000000000002".into(),
            slug: "jiro".into(),
            host: "links.label.com".into(),
            path: "/jiro".into(),
            method: "GET".into(),
            platform: (kind == EventKind::Click).then(|| "spotify".into()),
            ip: "203.0.113.7".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (iPhone)".into()),
            accept_language: None,
            referrer: Some("https://www.instagram.com/".into()),
            attribution: Attribution {
                fbclid: Some("IwAR1".into()),
                ttclid: Some("E.C.P.1".into()),
                ..Default::default()
            },
            consent: Consent::Granted,
            dnt: false,
            visitor_id: Some("0123456789abcdef0123456789abcdef".into()),
            ad_cookies: AdCookies {
                fbp: Some("fb.1.1.2".into()),
                ga: Some("GA1.1.111.222".into()),
                ..Default::default()
            },
            engagement: None,
            keep_full_ip: false,
            rule_id: None,
            variant: None,
        }
    }

    fn dest(platform: Platform) -> Dest {
        Dest {
            id: bson::oid::ObjectId::new(),
            tenant_hex: "65a000000000000000000001".into(),
            platform,
            pixel_id: match platform {
                Platform::Ga4 => "G-TEST123".into(),
                _ => "1234567890".into(),
            },
            credential: Secret::new("tok&en"),
            events: vec![EventKind::View, EventKind::Click],
            test_event_code: Some("TEST1".into()),
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            meta: "http://r/".into(),
            meta_version: "v21.0".into(),
            ga4: "http://r".into(),
            tiktok: "http://r".into(),
        }
    }

    #[test]
    fn meta_gets_the_pixels_event_id_hashed_external_id_and_fbc_from_fbclid() {
        let e = Arc::new(event(EventKind::Click));
        let r = build(&dest(Platform::Meta), std::slice::from_ref(&e), &endpoints());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].url, "http://r/v21.0/1234567890/events?access_token=tok%26en");
        let body: Value = serde_json::from_slice(&r[0].body).unwrap();
        let d = &body["data"][0];
        assert_eq!(d["event_name"], "SmartlinkClick");
        assert_eq!(d["event_id"], e.event_id.to_string());
        assert_eq!(d["event_time"], 1_764_000_000);
        assert_eq!(d["action_source"], "website");
        assert_eq!(d["event_source_url"], "https://links.label.com/jiro");
        assert_eq!(d["user_data"]["fbc"], "fb.1.1764000000123.IwAR1");
        assert_eq!(d["user_data"]["fbp"], "fb.1.1.2");
        assert_eq!(d["user_data"]["client_ip_address"], "203.0.113.7");
        assert_eq!(d["user_data"]["external_id"][0], sha256_hex("0123456789abcdef0123456789abcdef"));
        assert_eq!(body["test_event_code"], "TEST1");
        assert!(!String::from_utf8_lossy(&r[0].body).contains("tok"), "no credential in the body");
    }

    #[test]
    fn external_ids_are_sha256_of_the_normalised_value() {
        // echo -n abc | sha256sum
        assert_eq!(sha256_hex(" ABC "), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn ga4_groups_by_client_id_and_takes_it_from_the_ga_cookie() {
        let a = Arc::new(event(EventKind::View));
        let b = Arc::new(event(EventKind::Click));
        let mut other = event(EventKind::View);
        other.ad_cookies.ga = None;
        let other = Arc::new(other);
        let mut none = event(EventKind::View);
        none.ad_cookies.ga = None;
        none.visitor_id = None;
        let r = build(&dest(Platform::Ga4), &[a.clone(), b.clone(), other.clone(), Arc::new(none)], &endpoints());
        assert_eq!(r.len(), 2, "two visitors, the third has no client id");
        let bodies: Vec<Value> = r.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
        let ga = bodies.iter().find(|b| b["client_id"] == "111.222").expect("from _ga");
        assert_eq!(ga["events"][0]["name"], "smartlink_view");
        assert_eq!(ga["events"][1]["name"], "smartlink_click");
        assert_eq!(ga["events"][1]["params"]["event_id"], b.event_id.to_string());
        assert_eq!(ga["timestamp_micros"], 1_764_000_000_123_000i64);
        let derived = bodies.iter().find(|b| b["client_id"] != "111.222").unwrap();
        assert_eq!(derived["client_id"], format!("{}.{}", 0x01234567u32, 0x89abcdefu32));
        assert_eq!(r[0].url, "http://r/mp/collect?measurement_id=G-TEST123&api_secret=tok%26en");
    }

    #[test]
    fn ga4_sends_at_most_25_events_per_request() {
        let events: Vec<_> = (0..60).map(|_| Arc::new(event(EventKind::Click))).collect();
        let r = build(&dest(Platform::Ga4), &events, &endpoints());
        assert_eq!(r.iter().map(|r| r.event_ids.len()).collect::<Vec<_>>(), vec![25, 25, 10]);
    }

    #[test]
    fn tiktok_gets_its_header_ttclid_and_dedup_id() {
        let e = Arc::new(event(EventKind::View));
        let r = build(&dest(Platform::Tiktok), std::slice::from_ref(&e), &endpoints());
        assert_eq!(r[0].url, "http://r/open_api/v1.3/event/track/");
        assert_eq!(r[0].headers, vec![("Access-Token", "tok&en".to_string())]);
        let body: Value = serde_json::from_slice(&r[0].body).unwrap();
        assert_eq!(body["event_source"], "web");
        assert_eq!(body["event_source_id"], "1234567890");
        let d = &body["data"][0];
        assert_eq!(d["event"], "ViewContent");
        assert_eq!(d["event_id"], e.event_id.to_string());
        assert_eq!(d["user"]["ttclid"], "E.C.P.1");
        assert_eq!(d["user"]["external_id"], sha256_hex("0123456789abcdef0123456789abcdef"));
        assert_eq!(d["page"]["referrer"], "https://www.instagram.com/");
    }

    #[test]
    fn answers_are_judged_per_platform() {
        use Platform::*;
        assert_eq!(judge(Meta, 200, None, b"{}"), Verdict::Delivered);
        assert!(matches!(judge(Meta, 429, None, b""), Verdict::Retry { cause: "429", .. }));
        assert!(matches!(judge(Ga4, 503, None, b""), Verdict::Retry { cause: "5xx", .. }));
        assert_eq!(
            judge(Meta, 400, None, br#"{"error":{"code":100,"message":"Invalid parameter"}}"#),
            Verdict::Rejected
        );
        assert!(matches!(
            judge(Meta, 400, None, br#"{"error":{"code":2,"is_transient":true}}"#),
            Verdict::Retry { .. }
        ));
        assert!(matches!(judge(Meta, 400, None, br#"{"error":{"code":17}}"#), Verdict::Retry { .. }));
        assert_eq!(judge(Tiktok, 200, None, br#"{"code":0,"message":"OK"}"#), Verdict::Delivered);
        assert_eq!(judge(Tiktok, 200, None, br#"{"code":40002,"message":"bad pixel"}"#), Verdict::Rejected);
        assert!(matches!(judge(Tiktok, 200, None, br#"{"code":40100}"#), Verdict::Retry { cause: "429", .. }));
        assert_eq!(judge(Ga4, 401, None, b""), Verdict::Rejected);
        let after = Some(Duration::from_secs(3));
        assert_eq!(judge(Ga4, 429, after, b""), Verdict::Retry { cause: "429", after });
    }
}
