//! The raw event: what the edge records for every view and click and produces
//! to the raw topic ([`crate::topics::RAW_EVENTS`]), and what ingest parses.
//!
//! Wire format: one JSON object per Kafka record, UTF-8, field names in
//! `snake_case`, optional fields omitted when absent. The record key is the
//! visitor key ([`RawEvent::partition_key`]) so one visitor's events stay in
//! order on one partition.
//!
//! Versioning: `v` is [`RAW_EVENT_VERSION`]. A new optional field keeps the
//! version; removing or retyping a field bumps it, and ingest accepts every
//! version it knows (it rejects the others to the dead-letter topic with reason
//! `unsupported_version`).
//!
//! The fields follow the server-side block of the `analytics` collection of
//! seed 000 (`server`, `attribution`) and the request facts the dual engine
//! (seed 002) records before any JavaScript runs.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{is_object_id, is_slug};
use crate::Text;

/// Version of the raw event written by this build of the edge.
pub const RAW_EVENT_VERSION: u16 = 1;

/// Longest accepted user agent, referrer or Accept-Language, in bytes. The edge
/// truncates longer header values (on a UTF-8 boundary) before producing.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;

/// Longest accepted UTM or click-id value, in bytes.
pub const MAX_QUERY_VALUE_BYTES: usize = 256;

/// Earliest accepted event time: 2020-01-01T00:00:00Z, in ms since the Unix epoch.
pub const MIN_TS_MS: i64 = 1_577_836_800_000;

/// What happened: a landing-page view, a click-out to a platform, or the
/// engagement a page reported when it was hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `GET /{slug}`: the landing page was served.
    View,
    /// `GET /{slug}/{platform}` or `?go=`: the visitor was redirected to a platform.
    Click,
    /// `POST /{slug}`: the page's beacon on page hide (issue #19): how long
    /// the page of view [`Engagement::view_id`] was visible and whether a
    /// button was clicked. Only with consent; never a view or click: ingest
    /// writes it to `engagements`, not `events`.
    Engagement,
}

impl EventKind {
    /// The name used in JSON, ClickHouse enums and metrics labels: `view` or `click`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::Engagement => "engagement",
        }
    }
}

/// The visitor's cookie-consent state as the edge saw it (seed 002: the
/// `cookie-consent` cookie set by the landing page's banner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// No consent cookie: the banner was not answered yet.
    #[default]
    Unknown,
    /// The visitor accepted analytics and marketing cookies.
    Granted,
    /// The visitor refused them.
    Denied,
}

/// Marketing attribution taken from the request's query string (seed 000
/// `attribution`): UTM parameters and ad click ids. Each value is at most
/// [`MAX_QUERY_VALUE_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// `utm_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<Text>,
    /// `utm_medium`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<Text>,
    /// `utm_campaign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<Text>,
    /// `utm_term`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<Text>,
    /// `utm_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<Text>,
    /// Google Ads click id (`gclid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<Text>,
    /// Meta click id (`fbclid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<Text>,
    /// TikTok click id (`ttclid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<Text>,
}

impl Attribution {
    /// The query parameter names this struct captures, in field order.
    pub const PARAMS: [&'static str; 8] =
        ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "ttclid"];

    /// Sets the field named by query parameter `name` (one of [`Self::PARAMS`])
    /// to `value`, truncated to [`MAX_QUERY_VALUE_BYTES`]. Returns false, and
    /// changes nothing, for any other name or an empty value.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        if value.is_empty() {
            return false;
        }
        let slot = match name {
            "utm_source" => &mut self.utm_source,
            "utm_medium" => &mut self.utm_medium,
            "utm_campaign" => &mut self.utm_campaign,
            "utm_term" => &mut self.utm_term,
            "utm_content" => &mut self.utm_content,
            "gclid" => &mut self.gclid,
            "fbclid" => &mut self.fbclid,
            "ttclid" => &mut self.ttclid,
            _ => return false,
        };
        *slot = Some(truncate_utf8(value, MAX_QUERY_VALUE_BYTES).into());
        true
    }

    /// The value of query parameter `name` (one of [`Self::PARAMS`]), if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        Self::PARAMS.iter().position(|p| *p == name).and_then(|i| self.values()[i].as_deref())
    }

    /// `(parameter name, value)` of every value set, in [`Self::PARAMS`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        Self::PARAMS.into_iter().zip(self.values()).filter_map(|(n, v)| Some((n, v.as_deref()?)))
    }

    fn values(&self) -> [&Option<Text>; 8] {
        [
            &self.utm_source,
            &self.utm_medium,
            &self.utm_campaign,
            &self.utm_term,
            &self.utm_content,
            &self.gclid,
            &self.fbclid,
            &self.ttclid,
        ]
    }
}

/// Longest time on page an engagement beacon may report, ms (4 h): a tab
/// left visible longer is not attention; the edge caps values to it.
pub const MAX_ENGAGED_MS: u32 = 4 * 3_600_000;

/// What a landing page's beacon reports on page hide (issue #19; seed 000
/// `business.timeOnPage`, the input of `avgTimeOnPage` and `bounceRate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    /// The view the page was served for (its event id, the pixels' id).
    pub view_id: Uuid,
    /// When that view happened: ms since the Unix epoch, UTC (the view id's
    /// UUIDv7 instant). The engagement is filed in the view's window.
    pub view_ts_ms: i64,
    /// Time the page was visible, ms, at most [`MAX_ENGAGED_MS`].
    pub visible_ms: u32,
    /// A platform button was clicked on the page.
    pub clicked: bool,
    /// The visitor accepted the consent banner on this page: its view was
    /// recorded without consent, and the forwarder may now send it to the
    /// ad platforms (with the pixels' event id, as the pixels do on
    /// accepting).
    #[serde(default)]
    pub consented_on_page: bool,
}

/// The ad platforms' own first-party cookies on the link's domain, which
/// the tenant's pixels set once the visitor consented: the forwarder
/// (issue #19) hands them to the platforms so server and pixel events
/// match the same browser. Recorded by the edge only with consent and
/// without `DNT`/`Sec-GPC`; each value at most [`MAX_QUERY_VALUE_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdCookies {
    /// Meta browser id, cookie `_fbp` (`fb.1.{ms}.{random}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbp: Option<Text>,
    /// Meta click id cookie `_fbc` (`fb.1.{ms}.{fbclid}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbc: Option<Text>,
    /// Google Analytics cookie `_ga` (`GA1.1.{random}.{s}`): its last two
    /// parts are the GA4 client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga: Option<Text>,
    /// TikTok browser id, cookie `_ttp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttp: Option<Text>,
}

impl AdCookies {
    /// The cookie names captured, in field order.
    pub const NAMES: [&'static str; 4] = ["_fbp", "_fbc", "_ga", "_ttp"];

    /// True when no cookie is set (then the field is left out of the JSON).
    pub fn is_empty(&self) -> bool {
        self.fbp.is_none() && self.fbc.is_none() && self.ga.is_none() && self.ttp.is_none()
    }

    /// Sets the value of cookie `name` (one of [`Self::NAMES`]) when it is
    /// 1..=[`MAX_QUERY_VALUE_BYTES`] bytes of printable ASCII without
    /// spaces; returns false, changing nothing, otherwise.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        if value.is_empty() || value.len() > MAX_QUERY_VALUE_BYTES || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        let slot = match name {
            "_fbp" => &mut self.fbp,
            "_fbc" => &mut self.fbc,
            "_ga" => &mut self.ga,
            "_ttp" => &mut self.ttp,
            _ => return false,
        };
        *slot = Some(value.into());
        true
    }
}

/// One view or click as recorded by the edge, before enrichment.
///
/// Produced as JSON to [`crate::topics::RAW_EVENTS`]; see the module docs for
/// the wire rules. Every field the enrichment needs is here, so ingest never
/// looks anything up in MongoDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// Schema version, [`RAW_EVENT_VERSION`] when written by this build.
    pub v: u16,
    /// Event id: a UUIDv7 (RFC 9562), time-ordered, unique per event. It is
    /// the dedup key downstream, and the `event_id` handed to the page's pixels
    /// (dual engine, seed 002) so server and client counts can be reconciled.
    pub event_id: Uuid,
    /// View or click.
    pub kind: EventKind,
    /// When the edge received the request: ms since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// The tenant (`clients._id`), 24 lowercase hex digits.
    pub tenant_id: Text,
    /// The smartlink (`smartlinks._id`), 24 lowercase hex digits.
    pub link_id: Text,
    /// The link's slug as stored (lowercase).
    pub slug: Text,
    /// The `Host` header as received, lowercased, without port.
    pub host: Text,
    /// The request path as received (without the query string).
    pub path: Text,
    /// HTTP method, `GET` or `HEAD` (HEAD requests are flagged as bots downstream).
    pub method: Text,
    /// The platform clicked (`spotify`, `apple-music`, ... see
    /// [`crate::mongo::PlatformId`]); present on clicks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Text>,
    /// Client IP: the socket peer, or the first untrusted hop of the
    /// forwarding header the trusted proxy writes (`X-Forwarded-For` or
    /// `Forwarded`, RFC 7239; edge `EDGE_FORWARDED_HEADER`). Raw here;
    /// ingest anonymises it before ClickHouse unless the tenant opted out.
    pub ip: IpAddr,
    /// `User-Agent`, at most [`MAX_HEADER_VALUE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Text>,
    /// `Accept-Language`, at most [`MAX_HEADER_VALUE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_language: Option<Text>,
    /// `Referer`, at most [`MAX_HEADER_VALUE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Text>,
    /// UTM parameters and click ids from the query string.
    #[serde(default)]
    pub attribution: Attribution,
    /// Cookie-consent state.
    #[serde(default)]
    pub consent: Consent,
    /// True when the request carried `DNT: 1` or `Sec-GPC: 1`.
    #[serde(default)]
    pub dnt: bool,
    /// The first-party visitor cookie, set only with consent (random, opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<Text>,
    /// The ad platforms' cookies (issue #19), only with consent.
    #[serde(default, skip_serializing_if = "AdCookies::is_empty")]
    pub ad_cookies: AdCookies,
    /// On [`EventKind::Engagement`] only: what the page reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement: Option<Engagement>,
    /// The tenant opted out of IP anonymisation (seed 002 GDPR settings);
    /// copied from the tenant's settings by the edge so ingest needs no lookup.
    /// Ingest honours it only with [`RawEvent::full_ip_allowed`].
    #[serde(default)]
    pub keep_full_ip: bool,
    /// The link's routing rule that decided this visit
    /// (`smartlinks.routing.rules[].id`, or [`crate::routing::PREFERRED_RULE`]
    /// when the visitor's remembered service did), at most
    /// [`crate::routing::MAX_RULE_ID_CHARS`] characters; absent when no rule
    /// matched (issue #18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<Text>,
    /// The A/B variant of [`Self::rule_id`] the visitor is assigned to
    /// (stable per visitor); absent without a split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Text>,
}

/// Why a raw event was rejected. Each variant is a bounded metrics label and a
/// dead-letter reason ([`ValidationError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `v` is not a version this build reads.
    #[error("unsupported raw event version {0}")]
    UnsupportedVersion(u16),
    /// `event_id` is not a UUIDv7.
    #[error("event_id is not a UUIDv7")]
    EventIdNotV7,
    /// `ts_ms` is before [`MIN_TS_MS`] or more than a day in the future of `now_ms`.
    #[error("ts_ms {0} is out of range")]
    TimestampOutOfRange(i64),
    /// `tenant_id` or `link_id` is not a 24-hex-digit ObjectId.
    #[error("{0} is not an ObjectId")]
    BadId(&'static str),
    /// `slug` is not a valid slug.
    #[error("slug is invalid")]
    BadSlug,
    /// A click without a platform, or a view with one.
    #[error("platform must be present on clicks and only on clicks")]
    PlatformMismatch,
    /// An engagement without its report (or with a view id that is not a
    /// UUIDv7, a time over [`MAX_ENGAGED_MS`], a view time out of range),
    /// or a report on another kind.
    #[error("engagement must be present, and valid, on engagements and only on them")]
    BadEngagement,
    /// A header or query value exceeds its byte limit.
    #[error("{0} is too long")]
    TooLong(&'static str),
}

impl ValidationError {
    /// A short, stable, snake_case reason for metrics labels and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::UnsupportedVersion(_) => "unsupported_version",
            ValidationError::EventIdNotV7 => "bad_event_id",
            ValidationError::TimestampOutOfRange(_) => "bad_timestamp",
            ValidationError::BadId(_) => "bad_id",
            ValidationError::BadSlug => "bad_slug",
            ValidationError::PlatformMismatch => "platform_mismatch",
            ValidationError::BadEngagement => "bad_engagement",
            ValidationError::TooLong(_) => "too_long",
        }
    }
}

impl RawEvent {
    /// Whether the full IP may be stored: the tenant opted out of
    /// anonymisation (`keep_full_ip`) and the visitor neither refused
    /// cookies nor sent DNT/GPC (issue #14: their choice wins over the
    /// tenant's setting). Otherwise ingest stores the anonymised IP.
    pub fn full_ip_allowed(&self) -> bool {
        self.keep_full_ip && !self.dnt && self.consent != Consent::Denied
    }

    /// Checks the invariants the edge guarantees, against `now_ms` (ms since
    /// the Unix epoch, UTC). Ingest calls this on every record; a failure is
    /// dead-lettered with [`ValidationError::reason`].
    pub fn validate(&self, now_ms: i64) -> Result<(), ValidationError> {
        if self.v == 0 || self.v > RAW_EVENT_VERSION {
            return Err(ValidationError::UnsupportedVersion(self.v));
        }
        if self.event_id.get_version_num() != 7 {
            return Err(ValidationError::EventIdNotV7);
        }
        const DAY_MS: i64 = 86_400_000;
        if self.ts_ms < MIN_TS_MS || self.ts_ms > now_ms.saturating_add(DAY_MS) {
            return Err(ValidationError::TimestampOutOfRange(self.ts_ms));
        }
        if !is_object_id(&self.tenant_id) {
            return Err(ValidationError::BadId("tenant_id"));
        }
        if !is_object_id(&self.link_id) {
            return Err(ValidationError::BadId("link_id"));
        }
        if !is_slug(&self.slug) {
            return Err(ValidationError::BadSlug);
        }
        if (self.kind == EventKind::Click) != self.platform.is_some() {
            return Err(ValidationError::PlatformMismatch);
        }
        match (&self.engagement, self.kind) {
            (None, EventKind::View | EventKind::Click) => {}
            (Some(e), EventKind::Engagement)
                if e.view_id.get_version_num() == 7
                    && e.visible_ms <= MAX_ENGAGED_MS
                    && e.view_ts_ms >= MIN_TS_MS
                    && e.view_ts_ms <= self.ts_ms => {}
            _ => return Err(ValidationError::BadEngagement),
        }
        for (name, value) in
            [("user_agent", &self.user_agent), ("accept_language", &self.accept_language), ("referrer", &self.referrer)]
        {
            if value.as_ref().is_some_and(|v| v.len() > MAX_HEADER_VALUE_BYTES) {
                return Err(ValidationError::TooLong(name));
            }
        }
        for (name, value) in Attribution::PARAMS.iter().zip(self.attribution.values()) {
            if value.as_ref().is_some_and(|v| v.len() > MAX_QUERY_VALUE_BYTES) {
                return Err(ValidationError::TooLong(name));
            }
        }
        Ok(())
    }

    /// The Kafka record key: the visitor cookie when present, else the client
    /// IP, prefixed by the tenant, so one visitor's events land on one
    /// partition in order. Bytes, UTF-8.
    pub fn partition_key(&self) -> String {
        match &self.visitor_id {
            Some(v) => format!("{}:{}", self.tenant_id, v),
            None => format!("{}:{}", self.tenant_id, self.ip),
        }
    }
}

/// Cuts `s` to at most `max` bytes without splitting a UTF-8 character.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete, valid click event for tests.
    pub(crate) fn sample() -> RawEvent {
        let mut attribution = Attribution::default();
        attribution.set("utm_source", "instagram");
        attribution.set("fbclid", "IwAR0abc");
        RawEvent {
            v: RAW_EVENT_VERSION,
            event_id: Uuid::now_v7(),
            kind: EventKind::Click,
            ts_ms: 1_763_700_000_000,
            tenant_id: "65f1c0ffee0000000000beef".into(),
            link_id: "65f1c0ffee0000000000cafe".into(),
            slug: "jiro-in-your-light".into(),
            host: "links.client.com".into(),
            path: "/jiro-in-your-light/spotify".into(),
            method: "GET".into(),
            platform: Some("spotify".into()),
            ip: "81.2.69.142".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)".into()),
            accept_language: Some("fr-FR,fr;q=0.9".into()),
            referrer: Some("https://l.instagram.com/".into()),
            attribution,
            consent: Consent::Granted,
            dnt: false,
            visitor_id: Some("v_2f1d9c".into()),
            ad_cookies: Default::default(),
            engagement: None,
            keep_full_ip: false,
            rule_id: None,
            variant: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let e = sample();
        let json = serde_json::to_string(&e).unwrap();
        let back: RawEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert!(json.contains(r#""kind":"click""#), "{json}");
        assert!(json.contains(r#""consent":"granted""#), "{json}");
        assert!(!json.contains("utm_medium"), "absent options are omitted: {json}");
    }

    #[test]
    fn minimal_view_parses_with_defaults() {
        let json = r#"{"v":1,"event_id":"019a9f6e-8a2b-7cc0-8f00-000000000001","kind":"view",
            "ts_ms":1763700000000,"tenant_id":"65f1c0ffee0000000000beef",
            "link_id":"65f1c0ffee0000000000cafe","slug":"a","host":"h","path":"/a",
            "method":"HEAD","ip":"2001:db8::1"}"#;
        let e: RawEvent = serde_json::from_str(json).unwrap();
        assert_eq!(e.kind, EventKind::View);
        assert_eq!(e.consent, Consent::Unknown);
        assert_eq!(e.attribution, Attribution::default());
        assert!(!e.dnt && !e.keep_full_ip);
        assert_eq!(e.validate(1_763_700_000_000), Ok(()));
    }

    #[test]
    fn validation_rejects_each_broken_invariant() {
        let now = 1_763_700_000_000;
        assert_eq!(sample().validate(now), Ok(()));
        type Break = fn(&mut RawEvent);
        let cases: Vec<(Break, &str)> = vec![
            (|e| e.v = 2, "unsupported_version"),
            (|e| e.event_id = Uuid::new_v4(), "bad_event_id"),
            (|e| e.ts_ms = 0, "bad_timestamp"),
            (|e| e.ts_ms += 2 * 86_400_000, "bad_timestamp"),
            (|e| e.tenant_id = "nope".into(), "bad_id"),
            (|e| e.link_id = "65F1C0FFEE0000000000CAFE".into(), "bad_id"),
            (|e| e.slug = "../etc".into(), "bad_slug"),
            (|e| e.platform = None, "platform_mismatch"),
            (|e| e.user_agent = Some("x".repeat(2000).into()), "too_long"),
            (|e| e.attribution.gclid = Some("x".repeat(300).into()), "too_long"),
        ];
        for (break_it, reason) in cases {
            let mut e = sample();
            break_it(&mut e);
            assert_eq!(e.validate(now).map_err(|err| err.reason()), Err(reason), "{e:?}");
        }
    }

    #[test]
    fn attribution_set_truncates_and_ignores_unknown() {
        let mut a = Attribution::default();
        assert!(!a.set("utm_nope", "x"));
        assert!(!a.set("utm_source", ""));
        assert!(a.set("utm_campaign", &"é".repeat(200)));
        let v = a.utm_campaign.unwrap();
        assert!(v.len() <= MAX_QUERY_VALUE_BYTES && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn partition_key_prefers_visitor_cookie() {
        let mut e = sample();
        assert_eq!(e.partition_key(), "65f1c0ffee0000000000beef:v_2f1d9c");
        e.visitor_id = None;
        assert_eq!(e.partition_key(), "65f1c0ffee0000000000beef:81.2.69.142");
    }

    #[test]
    fn truncate_utf8_keeps_char_boundaries() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("", 0), "");
    }
}
