//! From a Kafka record to a ClickHouse row: parse (simd-json), validate,
//! enrich. Everything here is synchronous and in memory; the consumer loop
//! calls [`Parser::parse`] then [`Enricher::enrich`] once per record
//! ([`Enricher::engagement`] for an engagement beacon).

use std::net::IpAddr;
use std::sync::Arc;

use schemas::clickhouse::{ConsentCode, DeviceCode, EngagementRow, EventRow, KindCode};
use schemas::event::{Engagement, RawEvent};
use schemas::Text;

use crate::device::{bot_reason, UaParser};
use crate::geoip::{GeoCache, GeoIp};
use crate::visitor::{anonymize, key64, Sessions, VisitorHasher};

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Stable snake_case reason (`parse_error`, `bad_timestamp`, ...), a bounded label.
    pub reason: &'static str,
    /// Human-readable detail.
    pub error: String,
}

/// Parses a record value with simd-json into a [`RawEvent`] and validates it
/// against `now_ms` (a one-off [`Parser`]).
pub fn parse(value: &[u8], now_ms: i64) -> Result<RawEvent, Reject> {
    Parser::default().parse(value, now_ms)
}

/// A reusable simd-json parser: the copy of the record it parses in place
/// (simd-json rewrites its input while unescaping) and simd-json's own
/// buffers (structural indexes, string scratch) are kept from one record to
/// the next, so parsing allocates only the event's own strings. One per
/// consumer.
#[derive(Default)]
pub struct Parser {
    input: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
}

impl Parser {
    /// Parses `value` (a raw topic record, JSON) into a [`RawEvent`] and
    /// validates it against `now_ms` (ms since the Unix epoch, UTC). A
    /// `parse_error` or the validation's reason when it is not one.
    pub fn parse(&mut self, value: &[u8], now_ms: i64) -> Result<RawEvent, Reject> {
        self.input.clear();
        self.input.extend_from_slice(value);
        let buffers = self.buffers.get_or_insert_with(|| simd_json::Buffers::new(value.len().max(1024)));
        let event: RawEvent = simd_json::serde::from_slice_with_buffers(&mut self.input, buffers)
            .map_err(|e| Reject { reason: "parse_error", error: e.to_string() })?;
        event.validate(now_ms).map_err(|e| Reject { reason: e.reason(), error: e.to_string() })?;
        Ok(event)
    }
}

/// Longest referrer host kept, bytes (a DNS name is at most 253, RFC 1035).
pub const MAX_HOST_BYTES: usize = 253;
/// Longest UTM value kept, characters (issue #13: bounded breakdowns).
pub const MAX_UTM_CHARS: usize = 100;

/// Host of a URL, lowercased, without `www.` and port; empty when none, or
/// when it is longer than [`MAX_HOST_BYTES`] or holds a character no host
/// name or IP literal has (so garbage never becomes a breakdown value).
pub fn referrer_host(url: &str) -> Text {
    let host = raw_host(url);
    let host = match host.get(..4) {
        Some(www) if www.eq_ignore_ascii_case("www.") => &host[4..],
        _ => host,
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']');
    if host.len() > MAX_HOST_BYTES || !host.bytes().all(valid) {
        return Text::default();
    }
    let mut out = Text::from(host);
    out.make_ascii_lowercase();
    out
}

/// A UTM value as kept: trimmed, control characters dropped, runs of white
/// space folded to one space, at most [`MAX_UTM_CHARS`] characters.
pub fn utm_value(v: &str) -> Text {
    let mut out = Text::with_capacity(v.len().min(MAX_UTM_CHARS));
    let mut space = false;
    for c in v.trim().chars().filter(|c| !c.is_control() || c.is_whitespace()) {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if out.chars().count() >= MAX_UTM_CHARS {
            break;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// The host part of `url`'s authority, as written (an IPv6 literal with
/// its brackets); empty without `://` or with an unclosed literal.
fn raw_host(url: &str) -> &str {
    let Some(i) = url.find("://") else { return "" };
    let rest = &url[i + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.starts_with('[') {
        host.find(']').map_or("", |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or("")
    }
}

/// `ip` as text (`81.2.69.0`, `2001:db8::`), formatted by hand for IPv4
/// (the common case; `Display` goes through the formatting machinery).
pub fn ip_text(ip: IpAddr) -> Text {
    let IpAddr::V4(v4) = ip else { return compact_str::ToCompactString::to_compact_string(&ip) };
    let mut s = Text::default();
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// Primary language of an `Accept-Language` value: `fr-FR,fr;q=0.9` → `fr`.
pub fn language(accept_language: &str) -> Text {
    let first = accept_language.split(',').next().unwrap_or("").split(';').next().unwrap_or("").trim();
    let primary = first.split(['-', '_']).next().unwrap_or("");
    if (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        let mut out = Text::from(primary);
        out.make_ascii_lowercase();
        out
    } else {
        Text::default()
    }
}

/// The enrichment state of one consumer.
pub struct Enricher {
    /// GeoIP databases.
    pub geoip: Arc<GeoIp>,
    /// Locations by network, in front of `geoip` (`INGEST_GEOIP_CACHE_SIZE`).
    pub geo_cache: GeoCache,
    /// User-agent parser.
    pub ua: Arc<UaParser>,
    /// Visitor hashes.
    pub visitors: VisitorHasher,
    /// Visit state.
    pub sessions: Sessions,
    /// Counts GeoIP lookups that failed on a corrupt record
    /// (`ingest_geoip_errors_total` in the service).
    pub geoip_errors: prometheus::IntCounter,
}

impl Enricher {
    /// The `engagements` row of an engagement beacon (issue #19): the
    /// view's id and time, the visible time and click, and the bot flag of
    /// the beacon's request (our bot rules on its user agent). No IP, no
    /// visitor id: nothing personal is kept.
    pub fn engagement(&self, e: &RawEvent, report: &Engagement) -> EngagementRow {
        let device = self.ua.parse(e.user_agent.as_deref());
        // A beacon is a POST: only the user agent says whether a bot sent it.
        let bot = bot_reason("GET", &device).is_some();
        EngagementRow {
            view_event_id: report.view_id,
            ts: (report.view_ts_ms / 1000) as u32,
            tenant_id: e.tenant_id.clone(),
            link_id: e.link_id.clone(),
            visible_ms: report.visible_ms,
            clicked: u8::from(report.clicked),
            is_bot: u8::from(bot),
            ingested_at: 0,
        }
    }

    /// The row of view or click `e`, written at `now_s` (seconds since the
    /// Unix epoch, UTC). Takes the event by value: its strings move into
    /// the row.
    pub fn enrich(&mut self, e: RawEvent, now_s: u32) -> EventRow {
        let ua = e.user_agent.as_deref().unwrap_or("");
        let device = self.ua.parse(e.user_agent.as_deref());
        let reason = bot_reason(&e.method, &device);
        let geo = match self.geo_cache.lookup(&self.geoip, e.ip) {
            Ok(g) => g,
            Err(err) => {
                self.geoip_errors.inc();
                tracing::debug!(error = %err, "geoip lookup failed");
                Default::default()
            }
        };
        let visitor_hash = self.visitors.hash(e.ts_ms, &e.tenant_id, e.ip, ua);
        let visitor_key = e.visitor_id.as_deref().map_or(visitor_hash, key64);
        let visit = self.sessions.observe(key64(&e.link_id), visitor_key, e.ts_ms);
        let ip = ip_text(if e.full_ip_allowed() { e.ip } else { anonymize(e.ip) });
        let referrer_host = e.referrer.as_deref().map(referrer_host).unwrap_or_default();
        let language = e.accept_language.as_deref().map(language).unwrap_or_default();
        let consent = ConsentCode::from(e.consent);
        let a = e.attribution;
        let utm = |v: Option<Text>| v.as_deref().map(utm_value).unwrap_or_default();
        let route = |v: Option<Text>| v.as_deref().map(route_value).unwrap_or_default();
        EventRow {
            event_id: e.event_id,
            // Engagements never get here: the pipeline hands them to
            // [`Enricher::engagement`] (validation ties the kind to its report).
            kind: KindCode::of(e.kind).unwrap_or(KindCode::View),
            ts: (e.ts_ms / 1000) as u32,
            ts_ms: e.ts_ms as u64,
            tenant_id: e.tenant_id,
            link_id: e.link_id,
            slug: e.slug,
            host: e.host,
            platform: e.platform.unwrap_or_default(),
            is_bot: u8::from(reason.is_some()),
            bot_reason: Text::const_new(reason.unwrap_or("")),
            ip,
            visitor_hash,
            visitor_id: e.visitor_id.unwrap_or_default(),
            session_id: visit.session_id,
            visit_number: visit.visit_number,
            is_unique: u8::from(visit.is_unique),
            is_returning: u8::from(visit.is_returning),
            country: geo.country,
            region: geo.region,
            city: geo.city,
            timezone: geo.timezone,
            device: if reason.is_some() { DeviceCode::Bot } else { device.class },
            os: device.os.clone(),
            os_version: device.os_version.clone(),
            browser: device.browser.clone(),
            browser_version: device.browser_version.clone(),
            vendor: device.vendor.clone(),
            referrer: e.referrer.unwrap_or_default(),
            referrer_host,
            utm_source: utm(a.utm_source),
            utm_medium: utm(a.utm_medium),
            utm_campaign: utm(a.utm_campaign),
            utm_term: utm(a.utm_term),
            utm_content: utm(a.utm_content),
            gclid: a.gclid.unwrap_or_default(),
            fbclid: a.fbclid.unwrap_or_default(),
            ttclid: a.ttclid.unwrap_or_default(),
            language,
            consent,
            dnt: u8::from(e.dnt),
            user_agent: e.user_agent.unwrap_or_default(),
            ingested_at: now_s,
            rule_id: route(e.rule_id),
            variant: route(e.variant),
        }
    }
}

/// A routing rule id or variant as kept: at most
/// [`schemas::routing::MAX_RULE_ID_CHARS`] characters of `[a-z0-9_-]` (what
/// the API accepts); anything else is cut there, so a forged raw event
/// cannot grow a breakdown's values.
pub fn route_value(v: &str) -> Text {
    v.chars()
        .take(schemas::routing::MAX_RULE_ID_CHARS)
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
        .collect()
}

/// Approximate bytes of a row on the wire (for the batch byte bound).
pub fn row_bytes(r: &EventRow) -> usize {
    96 + [
        &r.tenant_id,
        &r.link_id,
        &r.slug,
        &r.host,
        &r.platform,
        &r.bot_reason,
        &r.ip,
        &r.visitor_id,
        &r.region,
        &r.city,
        &r.timezone,
        &r.os,
        &r.os_version,
        &r.browser,
        &r.browser_version,
        &r.vendor,
        &r.referrer,
        &r.referrer_host,
        &r.utm_source,
        &r.utm_medium,
        &r.utm_campaign,
        &r.utm_term,
        &r.utm_content,
        &r.gclid,
        &r.fbclid,
        &r.ttclid,
        &r.language,
        &r.user_agent,
        &r.rule_id,
        &r.variant,
    ]
    .iter()
    .map(|s| s.len() + 1)
    .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::event::{Attribution, Consent, EventKind, RAW_EVENT_VERSION};

    fn raw(ip: &str, ua: &str, method: &str) -> RawEvent {
        let mut attribution = Attribution::default();
        attribution.set("utm_source", "ig");
        RawEvent {
            v: RAW_EVENT_VERSION,
            event_id: uuid::Uuid::now_v7(),
            kind: EventKind::Click,
            ts_ms: 1_763_700_000_123,
            tenant_id: "65f1c0ffee0000000000beef".into(),
            link_id: "65f1c0ffee0000000000cafe".into(),
            slug: "jiro".into(),
            host: "links.a.test".into(),
            path: "/jiro/spotify".into(),
            method: method.into(),
            platform: Some("spotify".into()),
            ip: ip.parse().unwrap(),
            user_agent: Some(ua.into()),
            accept_language: Some("fr-FR,fr;q=0.9".into()),
            referrer: Some("https://www.Instagram.com:443/p/x?y".into()),
            attribution,
            consent: Consent::Granted,
            dnt: false,
            visitor_id: None,
            ad_cookies: Default::default(),
            engagement: None,
            keep_full_ip: false,
            rule_id: None,
            variant: None,
        }
    }

    fn enricher() -> Enricher {
        let db = testkit::geoip_test_db("GeoIP2-City-Test.mmdb");
        Enricher {
            geoip: Arc::new(GeoIp::open(&[db]).unwrap()),
            geo_cache: GeoCache::new(100),
            ua: Arc::new(UaParser::new(100)),
            visitors: VisitorHasher::new(b"s"),
            sessions: Sessions::new(1_800_000, 100),
            geoip_errors: prometheus::IntCounter::new("geoip_errors", "test").unwrap(),
        }
    }

    #[test]
    fn a_click_is_enriched_fully() {
        let mut en = enricher();
        let e = raw("81.2.69.142", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "GET");
        let r = en.enrich(e.clone(), 1_763_700_001);
        assert_eq!(
            (r.country, r.region.as_str(), r.city.as_str(), r.timezone.as_str()),
            (*b"GB", "England", "London", "Europe/London")
        );
        assert_eq!(r.ip, "81.2.69.0");
        assert_eq!((r.device, r.os.as_str(), r.browser.as_str()), (DeviceCode::Mobile, "iPhone", "Safari"));
        assert_eq!((r.is_bot, r.bot_reason.as_str()), (0, ""));
        assert_eq!(
            (r.referrer_host.as_str(), r.language.as_str(), r.utm_source.as_str()),
            ("instagram.com", "fr", "ig")
        );
        assert_eq!((r.ts, r.ts_ms, r.kind), (1_763_700_000, 1_763_700_000_123, KindCode::Click));
        assert_eq!((r.visit_number, r.is_unique, r.is_returning), (1, 1, 0));
        let again = en.enrich(e.clone(), 1_763_700_002);
        assert_eq!((again.is_unique, again.session_id, again.visitor_hash), (0, r.session_id, r.visitor_hash));
        assert!(row_bytes(&r) > 200);
        assert_eq!((r.rule_id.as_str(), r.variant.as_str()), ("", ""), "no rule decided it");
        let routed = RawEvent { rule_id: Some("fr-ios".into()), variant: Some("b".into()), ..e.clone() };
        let r = en.enrich(routed, 1_763_700_003);
        assert_eq!((r.rule_id.as_str(), r.variant.as_str()), ("fr-ios", "b"), "the edge's decision is kept");
        let forged = RawEvent { rule_id: Some("x\"</script>".into()), variant: Some("é".repeat(40).into()), ..e };
        let r = en.enrich(forged, 1_763_700_004);
        assert_eq!((r.rule_id.as_str(), r.variant.as_str()), ("x", ""), "cut to what the API accepts");
    }

    #[test]
    fn head_requests_and_crawlers_are_bots_and_full_ip_when_opted_out() {
        let mut en = enricher();
        let r = en.enrich(raw("2001:218::1", "Mozilla/5.0", "HEAD"), 0);
        assert_eq!((r.is_bot, r.bot_reason.as_str(), r.device), (1, "head_request", DeviceCode::Bot));
        assert_eq!((r.country, r.ip.as_str()), (*b"JP", "2001:218::"));
        let mut e =
            raw("81.2.69.142", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "GET");
        e.keep_full_ip = true;
        let r = en.enrich(e.clone(), 0);
        assert_eq!((r.is_bot, r.bot_reason.as_str(), r.ip.as_str()), (1, "crawler_ua", "81.2.69.142"));
        // Issue #14: a visitor's DNT/GPC or refusal wins over the tenant's opt-out.
        let (mut dnt, mut denied) = (e.clone(), e.clone());
        dnt.dnt = true;
        denied.consent = schemas::event::Consent::Denied;
        assert_eq!(en.enrich(dnt, 0).ip, "81.2.69.0");
        assert_eq!(en.enrich(denied, 0).ip, "81.2.69.0");
    }

    #[test]
    fn a_corrupt_geoip_database_is_counted_and_the_row_still_written() {
        let mut en = enricher();
        let dir = testkit::geoip_test_db("");
        en.geoip = Arc::new(GeoIp::open(&[dir.join("GeoIP2-City-Test-Invalid-Node-Count.mmdb")]).unwrap());
        let r = en.enrich(raw("81.2.69.142", "Mozilla/5.0", "GET"), 0);
        assert_eq!(r.country, [0, 0]);
        assert_eq!(en.geoip_errors.get(), 1);
    }

    #[test]
    fn parse_rejects_with_reasons() {
        let e = raw("81.2.69.142", "ua", "GET");
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(parse(&json, e.ts_ms).unwrap(), e);
        assert_eq!(parse(b"{not json", 0).unwrap_err().reason, "parse_error");
        assert_eq!(parse(br#"{"v":1}"#, 0).unwrap_err().reason, "parse_error");
        let mut bad = e.clone();
        bad.tenant_id = "x".into();
        assert_eq!(parse(&serde_json::to_vec(&bad).unwrap(), e.ts_ms).unwrap_err().reason, "bad_id");
    }

    /// One parser, its buffers reused, over records of growing and
    /// shrinking sizes with failures between them: every answer is the one a
    /// fresh parser gives (nothing left over from the record before).
    #[test]
    fn a_reused_parser_answers_as_a_fresh_one() {
        let small = raw("81.2.69.142", "ua", "GET");
        let big = RawEvent {
            referrer: Some(format!("https://e.x/{}", "é\\\"".repeat(200)).into()),
            ..raw("2001:218::1", &"Mozilla/5.0 ".repeat(80), "HEAD")
        };
        let mut p = Parser::default();
        let records: Vec<Vec<u8>> = vec![
            serde_json::to_vec(&small).unwrap(),
            serde_json::to_vec(&big).unwrap(),
            b"{not json".to_vec(),
            serde_json::to_vec(&small).unwrap(),
            br#"{"v":1}"#.to_vec(),
            serde_json::to_vec(&big).unwrap(),
        ];
        for r in &records {
            assert_eq!(p.parse(r, small.ts_ms), parse(r, small.ts_ms));
        }
        assert_eq!(p.parse(&records[1], small.ts_ms).unwrap(), big);
    }

    #[test]
    fn referrer_hosts_and_languages() {
        assert_eq!(referrer_host("https://user@WWW.Example.com:8443/a"), "example.com");
        assert_eq!(referrer_host("android-app://com.google.android.gm/"), "com.google.android.gm");
        assert_eq!(referrer_host("not a url"), "");
        assert_eq!(referrer_host("http://[2001:db8::1]:80/"), "[2001:db8::1]");
        assert_eq!(referrer_host(&format!("https://{}.example/", "a".repeat(300))), "", "too long");
        assert_eq!(referrer_host("https://ex<script>ample.com/"), "", "not a host");
        assert_eq!(referrer_host("https://WWW.x.io"), "x.io");
        assert_eq!(referrer_host("https://www."), "");
        assert_eq!(referrer_host("http://[2001:DB8::1"), "", "an unclosed literal is not a host");
        for a in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "81.2.69.142", "2001:db8::1"] {
            assert_eq!(ip_text(a.parse().unwrap()), a);
        }
        assert_eq!(utm_value("  Summer \t\n Drop\u{7}  "), "Summer Drop");
        assert_eq!(utm_value(&"é".repeat(300)).chars().count(), MAX_UTM_CHARS);
        assert_eq!(language("en-US,en;q=0.5"), "en");
        assert_eq!(language("*"), "");
        assert_eq!(language(""), "");
    }
}
