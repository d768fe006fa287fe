//! Routing rules of a smartlink (`smartlinks.routing`, issue #18): what the
//! edge does with a visitor, decided from memory on the request path.
//!
//! ## Evaluation (the edge's `routing` module)
//! 1. **Preferred service**: with [`Routing::remember_choice`], a consenting
//!    visitor's last click-out on the tenant's links is remembered in a
//!    cookie; their next visit to the page goes straight there (rule id
//!    [`PREFERRED_RULE`]) unless the matching rule hides that platform.
//! 2. **Rules**, in order; the first whose every non-empty condition holds
//!    matches ([`Rule`]: device class, OS family, browser family, country,
//!    language). Its [`Target`] (or, with [`Rule::variants`], the visitor's
//!    A/B variant's) then applies:
//!    - `platform` or `url`: the page is skipped (auto-redirect);
//!    - `hide` and `urls`: the page shows without the hidden platforms and
//!      with the rule's storefront URLs, and a click-out follows them.
//! 3. No match: the page as stored.
//!
//! A/B assignment is stable per visitor: a keyed hash of the visitor
//! (cookie id, or IP and user agent without consent), the link and the rule
//! picks the variant by weight, on every edge and after restarts.
//!
//! Every event records the rule id and variant that decided it, so
//! analytics break views and click-outs down by rule and variant.
//!
//! [`Routing::app_links`] opens the platform's app on phones (URI scheme or
//! Android intent derived from the stored web URL, the web URL as fallback);
//! [`Routing::params`] appends query parameters to destination URLs by
//! template (UTMs, click ids, affiliate tokens such as Apple Music `at`/`ct`).
//!
//! Limits (the API validates them): at most [`MAX_RULES`] rules, ids of at
//! most [`MAX_RULE_ID_CHARS`] characters `[a-z0-9_-]`, at most
//! [`MAX_VARIANTS`] variants per rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Rule id recorded when a visitor's remembered service decided the visit.
pub const PREFERRED_RULE: &str = "preferred";
/// Most rules a link may have.
pub const MAX_RULES: usize = 50;
/// Most characters in a rule or variant id.
pub const MAX_RULE_ID_CHARS: usize = 30;
/// Most variants in a rule's A/B split.
pub const MAX_VARIANTS: usize = 10;

/// Device classes a rule can name (the values of the events' `device`).
pub const DEVICES: [&str; 3] = ["mobile", "tablet", "desktop"];
/// OS families a rule can name ([`os_family`]).
pub const OS_FAMILIES: [&str; 6] = ["ios", "android", "windows", "macos", "linux", "chromeos"];
/// Browser families a rule can name ([`browser_family`]).
pub const BROWSER_FAMILIES: [&str; 7] = ["chrome", "safari", "firefox", "edge", "opera", "samsung", "ie"];
/// Placeholders a [`Routing::params`] template may use, each replaced by
/// the visit's value (percent-encoded), empty when unknown.
pub const PARAM_PLACEHOLDERS: [&str; 12] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "ttclid",
    "slug",
    "country",
    "rule",
    "variant",
];

/// How a link routes its visitors. The default routes nobody: every
/// visitor sees the page as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// Rules, evaluated in order; the first match applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Send a consenting returning visitor straight to the service they
    /// last chose (per-link opt-in).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remember_choice: bool,
    /// On phones, open the platform's app (web URL as fallback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub app_links: bool,
    /// Query parameters appended to destination URLs, by platform id, or
    /// `*` for every platform (a platform's own entry comes after `*`'s):
    /// a query-string template such as `at=1000lqx&ct={utm_campaign}`
    /// ([`PARAM_PLACEHOLDERS`]). A parameter whose value comes out empty is
    /// left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

impl Routing {
    /// True when nothing is configured (the edge skips evaluation).
    pub fn is_empty(&self) -> bool {
        self == &Routing::default()
    }
}

/// One rule: conditions (each empty list matches anyone; a visitor must
/// satisfy every non-empty one) and what happens on a match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Id recorded in the events it decides (`[a-z0-9_-]`, unique in the link).
    pub id: String,
    /// Device classes ([`DEVICES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// OS families ([`OS_FAMILIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    /// Browser families ([`BROWSER_FAMILIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub browsers: Vec<String>,
    /// ISO 3166-1 alpha-2 countries, uppercase (GeoIP of the client IP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Primary language subtags, lowercase (`fr`): the visitor's
    /// most-preferred language in `Accept-Language`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// What happens on a match (without variants).
    #[serde(default)]
    pub target: Target,
    /// An A/B split: each visitor is assigned one variant, by weight, and
    /// gets its target instead of [`Self::target`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// What a matching rule or variant does. Empty: the page as stored (the
/// match is still recorded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Skip the page: redirect to this platform's URL (counted as a view
    /// and a click-out to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Skip the page: redirect to this http(s) URL (counted as a view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Platforms not shown (unavailable where the visitor is); their
    /// click-out path answers 404.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
    /// Destination URL per platform id instead of the stored one (a
    /// country's storefront).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub urls: BTreeMap<String, String>,
}

impl Target {
    /// True when the page is skipped.
    pub fn redirects(&self) -> bool {
        self.platform.is_some() || self.url.is_some()
    }
}

/// One arm of an A/B split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Id recorded in the events (`[a-z0-9_-]`, unique in the rule).
    pub id: String,
    /// Relative share of visitors, 1..=1000.
    pub weight: u32,
    /// What this arm does.
    #[serde(default)]
    pub target: Target,
}

/// The OS family of a user agent's OS name as `woothee` reports it
/// (`iPhone`, `iPad`, `iOS`, `Android`, `Windows 10`, `Mac OSX`, `Linux`,
/// `ChromeOS`), one of [`OS_FAMILIES`], or `""`.
pub fn os_family(os: &str) -> &'static str {
    match os {
        "iPhone" | "iPad" | "iPod" | "iOS" => "ios",
        "Android" => "android",
        "Mac OSX" | "Mac OS" | "macOS" => "macos",
        "Linux" => "linux",
        "ChromeOS" => "chromeos",
        o if o.starts_with("Windows") => "windows",
        _ => "",
    }
}

/// The browser family of a browser name as `woothee` reports it (`Chrome`,
/// `Safari`, `Firefox`, `Edge`, `Opera`, `Internet Explorer`), refined by
/// the user agent for Samsung Internet (which woothee calls Chrome), one of
/// [`BROWSER_FAMILIES`], or `""`.
pub fn browser_family(browser: &str, user_agent: &str) -> &'static str {
    match browser {
        _ if user_agent.contains("SamsungBrowser/") => "samsung",
        "Chrome" | "Chromium" => "chrome",
        "Safari" | "Webview" => "safari",
        "Firefox" => "firefox",
        "Edge" => "edge",
        "Opera" => "opera",
        "Internet Explorer" => "ie",
        _ => "",
    }
}

/// True for a rule or variant id: 1..=[`MAX_RULE_ID_CHARS`] characters of
/// `[a-z0-9_-]`.
pub fn is_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RULE_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_woothee_names() {
        assert_eq!(os_family("iPhone"), "ios");
        assert_eq!(os_family("Windows 10"), "windows");
        assert_eq!(os_family("Mac OSX"), "macos");
        assert_eq!(os_family("PlayStation"), "");
        assert_eq!(browser_family("Chrome", "Mozilla/5.0 SamsungBrowser/23.0 Chrome/115"), "samsung");
        assert_eq!(browser_family("Chrome", "Mozilla/5.0 Chrome/115"), "chrome");
        assert_eq!(browser_family("Internet Explorer", ""), "ie");
    }

    #[test]
    fn routing_round_trips_and_defaults_to_nothing() {
        let r: Routing = serde_json::from_str(
            r#"{"rules":[{"id":"ios","os":["ios"],"target":{"platform":"apple-music"}},
                {"id":"ab","variants":[{"id":"a","weight":1},{"id":"b","weight":3,"target":{"hide":["deezer"]}}]}],
                "rememberChoice":true,"params":{"apple-music":"at=1l&ct={utm_campaign}"}}"#,
        )
        .unwrap();
        assert_eq!(r.rules[0].target.platform.as_deref(), Some("apple-music"));
        assert_eq!(r.rules[1].variants[1].target.hide, vec!["deezer"]);
        let back: Routing = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Routing>("{}").unwrap().is_empty());
        assert!(is_rule_id("fr-ios_2") && !is_rule_id("FR") && !is_rule_id(""));
    }
}
