//! Routing rules at the edge (issue #18): a link's
//! [`schemas::routing::Routing`] compiled once per cache snapshot into
//! [`Routes`], evaluated per request from memory (no I/O). The rules'
//! semantics are documented in [`schemas::routing`].
//!
//! Cost: a link without routing costs one branch. With rules, the facts
//! they need are computed once per request and only if some rule asks:
//! the user agent through the shared cached parser ([`lookup::device`]),
//! the country through the GeoIP reader ([`lookup::geoip`]), the language
//! from `Accept-Language`; conditions are bit masks and short lists.
//! Measured by `benches/src/bin/edge_redirect.rs` (20 rules per link).

use std::borrow::Cow;
use std::hash::Hasher;
use std::net::IpAddr;

use hyper::header::HeaderValue;
use lookup::device::UaParser;
use lookup::geoip::GeoIp;
use schemas::clickhouse::DeviceCode;
use schemas::event::Attribution;
use schemas::routing::{self, Routing, Target, BROWSER_FAMILIES, DEVICES, OS_FAMILIES};
use siphasher::sip::SipHasher13;

/// Key of the A/B assignment hash: fixed, so every edge and every restart
/// assigns a visitor the same variant (it protects nothing).
const AB_KEY: (u64, u64) = (0x736d_6172_746c_696e, 0x6b73_2d61_622d_7631);

/// Bit of a value in its list (`DEVICES`, `OS_FAMILIES`, `BROWSER_FAMILIES`).
fn bit(list: &[&str], v: &str) -> u16 {
    list.iter().position(|x| *x == v).map_or(0, |i| 1 << i)
}

/// The mask of a condition: 0 when empty (anyone); a bit no visitor has
/// when it names only values this build does not know (no one).
fn condition(list: &[&str], values: &[String]) -> u16 {
    match values.iter().fold(0, |m, v| m | bit(list, v)) {
        0 if !values.is_empty() => 1 << 15,
        m => m,
    }
}

/// A target ready to apply: URLs checked (http(s) only) and prebuilt.
#[derive(Debug, Default)]
pub struct CompiledTarget {
    /// Auto-redirect to this platform.
    pub platform: Option<String>,
    /// Auto-redirect to this URL, as a `Location` value.
    pub url: Option<HeaderValue>,
    /// Hidden platforms.
    pub hide: Vec<String>,
    /// Storefront URL per platform (http(s) only), with its `Location` value.
    pub urls: Vec<(String, String, HeaderValue)>,
}

impl CompiledTarget {
    fn new(t: &Target) -> Self {
        CompiledTarget {
            platform: t.platform.clone(),
            url: t.url.as_deref().filter(|u| crate::cache::is_http_url(u)).and_then(|u| HeaderValue::from_str(u).ok()),
            hide: t.hide.clone(),
            urls: t
                .urls
                .iter()
                .filter(|(_, u)| crate::cache::is_http_url(u))
                .filter_map(|(p, u)| Some((p.clone(), u.clone(), HeaderValue::from_str(u).ok()?)))
                .collect(),
        }
    }

    /// True when `platform` is hidden.
    pub fn hides(&self, platform: &str) -> bool {
        self.hide.iter().any(|h| h == platform)
    }

    /// The rule's URL for `platform` and its `Location` value, if it
    /// overrides the stored one.
    pub fn url_for(&self, platform: &str) -> Option<(&str, &HeaderValue)> {
        self.urls.iter().find(|(p, _, _)| p == platform).map(|(_, u, h)| (u.as_str(), h))
    }
}

#[derive(Debug)]
struct CompiledRule {
    id: String,
    devices: u16,
    os: u16,
    browsers: u16,
    countries: Vec<[u8; 2]>,
    languages: Vec<String>,
    target: CompiledTarget,
    /// `(variant id, cumulative weight, target)`.
    variants: Vec<(String, u64, CompiledTarget)>,
}

/// A link's routing, compiled. [`Routes::default`] routes nobody.
#[derive(Debug, Default)]
pub struct Routes {
    rules: Vec<CompiledRule>,
    /// Some rule looks at the user agent.
    needs_device: bool,
    /// Some rule looks at the country.
    needs_country: bool,
    /// Some rule looks at the language.
    needs_language: bool,
    /// Remember the visitor's service.
    pub remember_choice: bool,
    /// Open apps on phones.
    pub app_links: bool,
    /// `(platform or "*", template)` in application order (`*` first).
    params: Vec<(String, String)>,
}

/// What a request tells the rules, computed on demand.
pub struct Visit<'a> {
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// Client IP.
    pub ip: IpAddr,
    /// The consenting visitor's cookie id, if any (the A/B key; else IP and user agent).
    pub visitor: Option<&'a str>,
}

/// The facts about a visitor the rules compare.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Bit of the device class in [`DEVICES`] (0: unknown).
    pub device: u16,
    /// Bit of the OS family in [`OS_FAMILIES`].
    pub os: u16,
    /// Bit of the browser family in [`BROWSER_FAMILIES`].
    pub browser: u16,
    /// ISO country, `[0, 0]` unknown.
    pub country: [u8; 2],
    /// Primary language subtag, lowercase.
    pub language: String,
}

impl Facts {
    /// True on a phone or tablet running iOS or Android (app links apply).
    pub fn mobile_os(&self) -> Option<&'static str> {
        if self.os == bit(&OS_FAMILIES, "ios") {
            Some("ios")
        } else if self.os == bit(&OS_FAMILIES, "android") {
            Some("android")
        } else {
            None
        }
    }
}

/// The lookups the rules may need, shared by all requests.
pub struct Lookups {
    /// User agent parser (cached).
    pub ua: UaParser,
    /// GeoIP reader.
    pub geoip: GeoIp,
}

/// What the rules decided for one request.
#[derive(Debug, Default)]
pub struct Decision<'r> {
    /// The matching rule's id (or [`routing::PREFERRED_RULE`]).
    pub rule_id: Option<&'r str>,
    /// The visitor's variant.
    pub variant: Option<&'r str>,
    /// What applies.
    pub target: Option<&'r CompiledTarget>,
    /// The facts computed (for app links and `{country}`).
    pub facts: Facts,
}

impl Decision<'_> {
    /// True when `platform` is hidden for this visitor.
    pub fn hides(&self, platform: &str) -> bool {
        self.target.is_some_and(|t| t.hides(platform))
    }
}

impl Routes {
    /// Compiles `r`. Values the API would refuse never match.
    pub fn new(r: &Routing) -> Self {
        let rules: Vec<CompiledRule> = r
            .rules
            .iter()
            .map(|rule| {
                let mut total = 0u64;
                let variants = rule
                    .variants
                    .iter()
                    .filter(|v| v.weight > 0)
                    .map(|v| {
                        total += u64::from(v.weight);
                        (v.id.clone(), total, CompiledTarget::new(&v.target))
                    })
                    .collect();
                CompiledRule {
                    id: rule.id.clone(),
                    devices: condition(&DEVICES, &rule.devices),
                    os: condition(&OS_FAMILIES, &rule.os),
                    browsers: condition(&BROWSER_FAMILIES, &rule.browsers),
                    countries: rule.countries.iter().filter_map(|c| <[u8; 2]>::try_from(c.as_bytes()).ok()).collect(),
                    languages: rule.languages.clone(),
                    target: CompiledTarget::new(&rule.target),
                    variants,
                }
            })
            .collect();
        let mut params: Vec<(String, String)> = r.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort_by_key(|(k, _)| k != "*");
        Routes {
            needs_device: rules.iter().any(|c| c.devices | c.os | c.browsers != 0) || r.app_links,
            needs_country: rules.iter().any(|c| !c.countries.is_empty())
                || r.params.values().any(|t| t.contains("{country}")),
            needs_language: rules.iter().any(|c| !c.languages.is_empty()),
            rules,
            remember_choice: r.remember_choice,
            app_links: r.app_links,
            params,
        }
    }

    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.remember_choice && !self.app_links && self.params.is_empty()
    }

    /// The facts the rules need about `v` (only those).
    fn facts(&self, v: &Visit<'_>, lookups: &Lookups) -> Facts {
        let mut f = Facts::default();
        if self.needs_device {
            let d = lookups.ua.parse(v.user_agent);
            f.device = match d.class {
                DeviceCode::Mobile => bit(&DEVICES, "mobile"),
                DeviceCode::Tablet => bit(&DEVICES, "tablet"),
                DeviceCode::Desktop => bit(&DEVICES, "desktop"),
                DeviceCode::Other | DeviceCode::Bot => 0,
            };
            f.os = bit(&OS_FAMILIES, routing::os_family(&d.os));
            f.browser = bit(&BROWSER_FAMILIES, routing::browser_family(&d.browser, v.user_agent.unwrap_or("")));
        }
        if self.needs_country {
            f.country = lookups.geoip.country(v.ip).unwrap_or_default();
        }
        if self.needs_language {
            f.language = primary_language(v.accept_language).unwrap_or_default();
        }
        f
    }

    /// Evaluates the rules for `v`: the first matching rule, the visitor's
    /// variant in it, and its target. No match: an empty decision.
    pub fn decide(&self, v: &Visit<'_>, lookups: &Lookups) -> Decision<'_> {
        if self.rules.is_empty() && !self.needs_device && !self.needs_country {
            return Decision::default();
        }
        let facts = self.facts(v, lookups);
        let found = self.rules.iter().find(|r| {
            (r.devices == 0 || r.devices & facts.device != 0)
                && (r.os == 0 || r.os & facts.os != 0)
                && (r.browsers == 0 || r.browsers & facts.browser != 0)
                && (r.countries.is_empty() || r.countries.contains(&facts.country))
                && (r.languages.is_empty() || r.languages.contains(&facts.language))
        });
        let Some(rule) = found else { return Decision { facts, ..Decision::default() } };
        match rule.variants.last() {
            None => Decision { rule_id: Some(&rule.id), variant: None, target: Some(&rule.target), facts },
            Some(last @ (_, total, _)) => {
                // `point < total`, the last cumulative weight: some variant takes it.
                let point = assignment(v, &rule.id) % total;
                let (id, _, target) = rule.variants.iter().find(|(_, upto, _)| point < *upto).unwrap_or(last);
                Decision { rule_id: Some(&rule.id), variant: Some(id), target: Some(target), facts }
            }
        }
    }

    /// `url` with this link's parameter templates for `platform` appended
    /// (`*`'s first, then the platform's), placeholders replaced by the
    /// visit's values, percent-encoded; a parameter that comes out empty is
    /// left out. Unchanged (borrowed) without templates.
    pub fn with_params<'u>(&self, url: &'u str, platform: &str, values: &ParamValues<'_>) -> Cow<'u, str> {
        let mut query = String::new();
        for (_, template) in self.params.iter().filter(|(k, _)| k == "*" || k == platform) {
            for pair in template.split('&') {
                let Some((name, value)) = pair.split_once('=') else { continue };
                let rendered = render(value, values);
                if rendered.is_empty() {
                    continue;
                }
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(name);
                query.push('=');
                query.push_str(&rendered);
            }
        }
        if query.is_empty() {
            return Cow::Borrowed(url);
        }
        let (base, fragment) = match url.find('#') {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, ""),
        };
        let sep = if !base.contains('?') {
            "?"
        } else if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        };
        Cow::Owned(format!("{base}{sep}{query}{fragment}"))
    }
}

/// The values a parameter template's placeholders take.
pub struct ParamValues<'a> {
    /// UTMs and click ids of the request.
    pub attribution: &'a Attribution,
    /// The link's slug.
    pub slug: &'a str,
    /// The visitor's country (`[0, 0]` unknown).
    pub country: [u8; 2],
    /// The deciding rule.
    pub rule: Option<&'a str>,
    /// The variant.
    pub variant: Option<&'a str>,
}

fn render(template: &str, v: &ParamValues<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}').map(|c| c + open) else { break };
        let a = v.attribution;
        let country = std::str::from_utf8(&v.country).unwrap_or("").trim_end_matches('\0');
        let value = match &rest[open + 1..close] {
            "slug" => Some(v.slug),
            "country" => Some(country),
            "rule" => v.rule,
            "variant" => v.variant,
            name => a.get(name),
        };
        // A placeholder that is unknown here renders empty: the whole
        // parameter is then left out (an empty value says nothing).
        match value.filter(|s| !s.is_empty()) {
            Some(s) => out.extend(form_urlencoded::byte_serialize(s.as_bytes())),
            None => return String::new(),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A stable number for the visitor on this rule: SipHash-1-3 with a fixed
/// key of (visitor id, or IP and user agent without consent) and the rule id.
fn assignment(v: &Visit<'_>, rule_id: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(AB_KEY.0, AB_KEY.1);
    match v.visitor {
        Some(id) => h.write(id.as_bytes()),
        None => {
            match v.ip {
                IpAddr::V4(a) => h.write(&a.octets()),
                IpAddr::V6(a) => h.write(&a.octets()),
            }
            h.write(v.user_agent.unwrap_or("").as_bytes());
        }
    }
    h.write_u8(0xff);
    h.write(rule_id.as_bytes());
    h.finish()
}

/// The attribution parameters set in `a`, form-encoded
/// (`utm_source=ig&fbclid=x`), empty when none.
pub fn query_string(a: &Attribution) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (name, value) in a.pairs() {
        q.append_pair(name, value);
    }
    q.finish()
}

/// The primary subtag of the most preferred language of an
/// `Accept-Language` value (RFC 9110 §12.5.4: the highest `q`, the first
/// of equals; `q=0` and `*` never), lowercase. Read in place, on the
/// request path: no allocation but the answer.
pub fn primary_language(accept_language: Option<&str>) -> Option<String> {
    let mut best: Option<(&str, f32)> = None;
    for item in accept_language?.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim();
        let primary = range.split('-').next().unwrap_or("");
        if primary.is_empty() || primary == "*" || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map_or(Some(1.0), |v| v.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((primary, q));
        }
    }
    best.map(|(p, _)| p.to_ascii_lowercase())
}

/// The app URL opening `web` (a platform's stored http(s) URL) in the
/// platform's app on `os` (`ios` or `android`), or `None` when the
/// platform or URL is not one we know how to open. Only derived from the
/// stored URL (never from the request): an app link cannot be made to
/// point anywhere the tenant did not store.
///
/// - Spotify `open.spotify.com/{kind}/{id}` → `spotify:{kind}:{id}` (both);
/// - Apple Music `music.apple.com/...` → `music://music.apple.com/...` (iOS),
///   Android intent for `com.apple.android.music`;
/// - Deezer `(www.)deezer.com/...` → `deezer://www.deezer.com/...` (both);
/// - YouTube Music `music.youtube.com/...` → `youtubemusic://...` (iOS),
///   Android intent for `com.google.android.apps.youtube.music`.
///
/// Android intents carry the web URL as `S.browser_fallback_url`.
pub fn app_link(platform: &str, web: &str, os: &str) -> Option<String> {
    let rest = web.strip_prefix("https://").or_else(|| web.strip_prefix("http://"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = host.to_ascii_lowercase();
    let clean = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let intent = |package: &str| {
        let fallback: String = form_urlencoded::byte_serialize(web.as_bytes()).collect();
        format!("intent://{host}{path}#Intent;scheme=https;package={package};S.browser_fallback_url={fallback};end")
    };
    match (platform, host.as_str(), os) {
        ("spotify", "open.spotify.com", _) => {
            let path = path.split(['?', '#']).next().unwrap_or("");
            let mut parts = path.trim_start_matches('/').split('/');
            let (kind, id) = (parts.next()?, parts.next()?);
            // `open.spotify.com/intl-fr/track/{id}`: a locale prefix.
            let (kind, id) = if kind.starts_with("intl-") { (id, parts.next()?) } else { (kind, id) };
            (clean(kind) && clean(id) && !id.is_empty()).then(|| format!("spotify:{kind}:{id}"))
        }
        ("apple-music", "music.apple.com", "ios") => Some(format!("music://music.apple.com{path}")),
        ("apple-music", "music.apple.com", _) => Some(intent("com.apple.android.music")),
        ("deezer", "deezer.com" | "www.deezer.com", _) => Some(format!("deezer://www.deezer.com{path}")),
        ("youtube", "music.youtube.com", "ios") => Some(format!("youtubemusic://music.youtube.com{path}")),
        ("youtube", "music.youtube.com", _) => Some(intent("com.google.android.apps.youtube.music")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::routing::{Rule, Variant};

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    fn lookups() -> Lookups {
        let db = testkit::geoip_test_db("GeoIP2-City-Test.mmdb");
        Lookups { ua: UaParser::new(100), geoip: GeoIp::open(&[db]).unwrap() }
    }

    fn visit<'a>(ua: &'a str, ip: &str, lang: Option<&'a str>, visitor: Option<&'a str>) -> Visit<'a> {
        Visit { user_agent: Some(ua), accept_language: lang, ip: ip.parse().unwrap(), visitor }
    }

    fn rule(id: &str) -> Rule {
        Rule { id: id.into(), ..Rule::default() }
    }

    #[test]
    fn the_first_rule_whose_every_condition_holds_wins() {
        let r = Routes::new(&Routing {
            rules: vec![
                Rule { os: vec!["ios".into()], countries: vec!["SE".into()], ..rule("ios-se") },
                Rule { os: vec!["ios".into()], ..rule("ios") },
                Rule { languages: vec!["fr".into()], ..rule("fr") },
                Rule { devices: vec!["desktop".into()], browsers: vec!["chrome".into()], ..rule("desk") },
                Rule { os: vec!["beos".into()], ..rule("never") },
            ],
            ..Routing::default()
        });
        let l = lookups();
        let id = |v: Visit<'_>| r.decide(&v, &l).rule_id.map(str::to_string);
        // 89.160.20.112 is in Sweden, 81.2.69.142 in the UK (MaxMind's test data).
        assert_eq!(id(visit(IPHONE, "89.160.20.112", None, None)).as_deref(), Some("ios-se"));
        assert_eq!(id(visit(IPHONE, "81.2.69.142", None, None)).as_deref(), Some("ios"));
        assert_eq!(id(visit(WINDOWS, "81.2.69.142", Some("fr-FR,en;q=0.5"), None)).as_deref(), Some("fr"));
        assert_eq!(id(visit(WINDOWS, "81.2.69.142", Some("en;q=0.9,fr;q=0.8"), None)).as_deref(), Some("desk"));
        assert_eq!(id(visit("curl/8", "81.2.69.142", None, None)), None, "no rule matches, an unknown OS never");
    }

    #[test]
    fn a_b_assignment_is_stable_per_visitor_and_follows_the_weights() {
        let r = Routes::new(&Routing {
            rules: vec![Rule {
                variants: vec![
                    Variant { id: "a".into(), weight: 1, target: Target::default() },
                    Variant { id: "b".into(), weight: 3, target: Target::default() },
                ],
                ..rule("ab")
            }],
            ..Routing::default()
        });
        let l = lookups();
        let mut b = 0;
        for i in 0..4000 {
            let id = format!("{i:032x}");
            let v = visit(WINDOWS, "81.2.69.142", None, Some(&id));
            let first = r.decide(&v, &l).variant.unwrap().to_string();
            assert_eq!(r.decide(&v, &l).variant.unwrap(), first, "same visitor, same variant");
            b += usize::from(first == "b");
        }
        assert!((2800..3200).contains(&b), "about 3/4 in b: {b}");
    }

    #[test]
    fn params_render_by_template_and_skip_empty_values() {
        let r = Routes::new(&Routing {
            params: [
                ("*".to_string(), "utm_source={utm_source}&utm_campaign={utm_campaign}".to_string()),
                ("apple-music".to_string(), "at=1000lqx&ct={slug}-{rule}".to_string()),
            ]
            .into(),
            ..Routing::default()
        });
        let mut a = Attribution::default();
        a.set("utm_source", "insta gram&x");
        let v = ParamValues { attribution: &a, slug: "jiro", country: *b"FR", rule: Some("ios"), variant: None };
        assert_eq!(
            r.with_params("https://music.apple.com/album/1?i=2#top", "apple-music", &v),
            "https://music.apple.com/album/1?i=2&utm_source=insta+gram%26x&at=1000lqx&ct=jiro-ios#top"
        );
        assert_eq!(
            r.with_params("https://open.spotify.com/track/1", "spotify", &v),
            "https://open.spotify.com/track/1?utm_source=insta+gram%26x"
        );
        let none = ParamValues { attribution: &Attribution::default(), rule: None, ..v };
        assert_eq!(
            r.with_params("https://open.spotify.com/track/1", "spotify", &none),
            "https://open.spotify.com/track/1"
        );
    }

    #[test]
    fn the_most_preferred_language_by_weight() {
        assert_eq!(primary_language(Some("fr-FR,fr;q=0.9,en;q=0.8")).as_deref(), Some("fr"));
        assert_eq!(primary_language(Some("en;q=0.5, DE-ch;q=0.9")).as_deref(), Some("de"));
        assert_eq!(primary_language(Some("*, ja;q=0.1")).as_deref(), Some("ja"));
        assert_eq!(primary_language(Some("fr;q=0, es")).as_deref(), Some("es"));
        assert_eq!(primary_language(Some("fr;q=abc")), None, "an unreadable weight counts as 0");
        assert_eq!(primary_language(Some("")), None);
        assert_eq!(primary_language(None), None);
    }

    #[test]
    fn app_links_come_only_from_known_platform_urls() {
        assert_eq!(
            app_link("spotify", "https://open.spotify.com/track/4uLU6?si=x", "ios").unwrap(),
            "spotify:track:4uLU6"
        );
        assert_eq!(
            app_link("spotify", "https://open.spotify.com/intl-fr/album/9x", "android").unwrap(),
            "spotify:album:9x"
        );
        assert_eq!(
            app_link("apple-music", "https://music.apple.com/fr/album/1", "ios").unwrap(),
            "music://music.apple.com/fr/album/1"
        );
        assert!(app_link("apple-music", "https://music.apple.com/fr/album/1", "android")
            .unwrap()
            .starts_with("intent://music.apple.com/fr/album/1#Intent;scheme=https;package=com.apple.android.music;S.browser_fallback_url=https%3A%2F%2F"));
        assert_eq!(app_link("deezer", "https://deezer.com/track/1", "ios").unwrap(), "deezer://www.deezer.com/track/1");
        assert_eq!(app_link("spotify", "https://evil.example/track/1", "ios"), None);
        assert_eq!(app_link("tidal", "https://tidal.com/track/1", "ios"), None);
    }
}
