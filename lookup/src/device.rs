//! User agent → device, OS and browser (`woothee`), and the bot flag:
//! `isbot`'s maintained crawler patterns, woothee's crawler category, our
//! own patterns ([`BotRules`], data updatable without a release), the
//! shape of a browser's user agent ([`browser_shaped`]), plus the request
//! facts only we know: HEAD requests and link unfurlers. Measured by
//! `benches/src/bin/bot_recall.rs` on public lists.
//!
//! Parsing is cached by user agent in a bounded cache (`quick_cache`): real
//! traffic repeats a few thousand strings, so nearly every event is a hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use schemas::clickhouse::DeviceCode;
use schemas::Text;

/// What a user agent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device class.
    pub class: DeviceCode,
    /// OS name (`iOS`, `Windows 10`, `Android`, `Mac OSX`).
    pub os: Text,
    /// OS version.
    pub os_version: Text,
    /// Browser name (`Safari`, `Chrome`, `Googlebot`).
    pub browser: Text,
    /// Browser version.
    pub browser_version: Text,
    /// Vendor (`Apple`, `Google`).
    pub vendor: Text,
    /// A crawler by its user agent.
    pub crawler: bool,
    /// Why the user agent alone marks a bot (`no_user_agent`, `unfurler`,
    /// `crawler_ua`), worked out once per distinct user agent and cached
    /// with the rest; [`bot_reason`] adds what the request says.
    pub bot: Option<&'static str>,
}

/// Link-preview fetchers of social networks and messengers, and security
/// scanners that open links shared in them. Most are in `isbot`'s list too;
/// this short list only names the *reason* (`unfurler`), which dashboards
/// show apart from search crawlers. Matched case-insensitively as substrings.
/// Apps whose in-app browsers carry their name (Snapchat, LINE, Viber,
/// WhatsApp) are in [`UNFURLER_APPS`] instead: real visitors.
pub const UNFURLERS: &[&str] = &[
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalagent",
    "twitterbot",
    "slackbot",
    "slack-imgproxy",
    "whatsapp",
    "telegrambot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "pinterestbot",
    "redditbot",
    "snap url preview",
    "line-poker",
    "iframely",
    "embedly",
    "bitlybot",
    "google-safety",
    "microsoftpreview",
];

/// Apps whose link-preview fetchers carry their name, as their in-app
/// browsers do: an unfurler only when the user agent is not a browser's
/// ([`browser_shaped`]); a Snapchat in-app visitor is a person.
pub const UNFURLER_APPS: &[&str] = &["snapchat", "viber", "whatsapp", "line/"];

/// Whether `ua` has the shape every browser and in-app browser sends:
/// `Mozilla/5.0 (platform) engine...` with a rendering engine token
/// (`AppleWebKit`, `Gecko`, `Trident`, `Presto`), not the `(compatible; …)`
/// form crawlers use (old Internet Explorer's `compatible; MSIE` excepted),
/// or `Opera/…`. HTTP libraries, uptime monitors, SaaS integrations and
/// most fetchers send something else.
pub fn browser_shaped(ua: &str) -> bool {
    if ua.starts_with("Opera/") {
        return true;
    }
    let Some(rest) = ua.strip_prefix("Mozilla/5.0 (").or_else(|| ua.strip_prefix("Mozilla/4.0 (")) else {
        return false;
    };
    if rest.starts_with("compatible;") && !rest.contains("MSIE") {
        return false;
    }
    ["AppleWebKit/", "Gecko", "Trident/", "Presto/", "MSIE "].iter().any(|e| rest.contains(e))
}

/// Our bot patterns: case-insensitive regular expressions, one per line of
/// a text (`#` comments), the built-in ones from `lookup/data/bot-patterns.txt`.
#[derive(Debug, Clone)]
pub struct BotRules {
    any: Option<regex::Regex>,
    count: usize,
}

/// The built-in patterns.
pub const DEFAULT_BOT_PATTERNS: &str = include_str!("../data/bot-patterns.txt");

impl BotRules {
    /// Parses `text` (one pattern per line); the error names the bad line.
    pub fn parse(text: &str) -> Result<Self, BotRulesError> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            regex::Regex::new(p).map_err(|e| BotRulesError::Pattern { line: n + 1, error: e.to_string() })?;
            patterns.push(format!("(?:{p})"));
        }
        let any = if patterns.is_empty() {
            None
        } else {
            let re = regex::RegexBuilder::new(&patterns.join("|"))
                .case_insensitive(true)
                .size_limit(32 << 20)
                .build()
                .map_err(|e| BotRulesError::Pattern { line: 0, error: e.to_string() })?;
            Some(re)
        };
        Ok(Self { any, count: patterns.len() })
    }

    /// The built-in rules, or those of `path` when given (an operator's
    /// updated copy: `INGEST_BOT_PATTERNS_FILE`).
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, BotRulesError> {
        match path {
            None => Self::parse(DEFAULT_BOT_PATTERNS),
            Some(p) => Self::parse(
                &std::fs::read_to_string(p).map_err(|e| BotRulesError::Read(p.display().to_string(), e.to_string()))?,
            ),
        }
    }

    /// Patterns loaded.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no pattern is loaded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `ua` matches a pattern.
    pub fn is_match(&self, ua: &str) -> bool {
        self.any.as_ref().is_some_and(|re| re.is_match(ua))
    }
}

/// Bot patterns that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BotRulesError {
    /// The file cannot be read.
    #[error("bot patterns file {0}: {1}")]
    Read(String, String),
    /// A line is not a valid regular expression (line 0: the whole set).
    #[error("bot pattern on line {line}: {error}")]
    Pattern {
        /// 1-based line number.
        line: usize,
        /// Why.
        error: String,
    },
}

/// Why an event is flagged as a bot; `None` for a person. The values are
/// stored in `events.bot_reason` and are a bounded metrics label. `device`
/// is the parse of the event's user agent ([`UaParser::parse`]), which
/// carries the user agent's own reason ([`Device::bot`]); a `HEAD` request
/// is a bot whatever it claims.
pub fn bot_reason(method: &str, device: &Device) -> Option<&'static str> {
    if method.eq_ignore_ascii_case("HEAD") {
        return Some("head_request");
    }
    device.bot
}

/// What the user agent alone says: `no_user_agent`, `unfurler` (a link
/// preview fetcher, [`UNFURLERS`], [`UNFURLER_APPS`]), `crawler_ua` (by the
/// lists, `crawler`), or `None`.
fn ua_reason(ua: &str, crawler: bool) -> Option<&'static str> {
    if ua.trim().is_empty() {
        return Some("no_user_agent");
    }
    let lower = ua.to_ascii_lowercase();
    if UNFURLERS.iter().any(|u| lower.contains(u))
        || (UNFURLER_APPS.iter().any(|u| lower.contains(u)) && !browser_shaped(ua))
    {
        return Some("unfurler");
    }
    crawler.then_some("crawler_ua")
}

/// Cached user-agent parser. Thread-safe.
pub struct UaParser {
    woothee: woothee::parser::Parser,
    bots: isbot::Bots,
    rules: BotRules,
    cache: quick_cache::sync::Cache<String, Arc<Device>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl UaParser {
    /// A parser caching up to `capacity` distinct user agents, with the
    /// built-in bot patterns.
    pub fn new(capacity: usize) -> Self {
        Self::with_rules(capacity, BotRules::parse(DEFAULT_BOT_PATTERNS).unwrap_or(BotRules { any: None, count: 0 }))
    }

    /// A parser caching up to `capacity` distinct user agents, with `rules`.
    pub fn with_rules(capacity: usize, rules: BotRules) -> Self {
        Self {
            woothee: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
            rules,
            cache: quick_cache::sync::Cache::new(capacity.max(16)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// `(hits, misses)` of the cache since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// The device of `ua` (an empty one, class `other`, for `None`).
    pub fn parse(&self, ua: Option<&str>) -> Arc<Device> {
        let ua = ua.unwrap_or("");
        if let Some(d) = self.cache.get(ua) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return d;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let d = Arc::new(self.parse_uncached(ua));
        self.cache.insert(ua.to_string(), d.clone());
        d
    }

    /// Parses without the cache (benchmarks compare both).
    pub fn parse_uncached(&self, ua: &str) -> Device {
        let known = |s: &str| if s == woothee::woothee::VALUE_UNKNOWN { Text::default() } else { Text::from(s) };
        let crawler_by_list =
            !ua.is_empty() && (self.bots.is_bot(ua) || !browser_shaped(ua) || self.rules.is_match(ua));
        let Some(r) = self.woothee.parse(ua) else {
            return Device {
                class: if crawler_by_list { DeviceCode::Bot } else { DeviceCode::Other },
                os: Text::default(),
                os_version: Text::default(),
                browser: Text::default(),
                browser_version: Text::default(),
                vendor: Text::default(),
                crawler: crawler_by_list,
                bot: ua_reason(ua, crawler_by_list),
            };
        };
        let crawler = crawler_by_list || r.category == "crawler";
        let class = if crawler {
            DeviceCode::Bot
        } else {
            match r.category {
                "pc" => DeviceCode::Desktop,
                "smartphone" | "mobilephone" => {
                    // woothee files tablets under smartphone: iPads say so in
                    // the OS; Android tablets omit "Mobile" (Google's UA rule).
                    if r.os == "iPad" || (r.os == "Android" && !ua.contains("Mobile")) {
                        DeviceCode::Tablet
                    } else {
                        DeviceCode::Mobile
                    }
                }
                _ => DeviceCode::Other,
            }
        };
        Device {
            class,
            os: known(r.os),
            os_version: known(&r.os_version),
            browser: known(r.name),
            browser_version: known(r.version),
            vendor: known(r.vendor),
            crawler,
            bot: ua_reason(ua, crawler),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn classifies_real_user_agents() {
        let p = UaParser::new(100);
        let iphone = p.parse(Some(IPHONE));
        assert_eq!(
            (iphone.class, iphone.os.as_str(), iphone.browser.as_str(), iphone.vendor.as_str()),
            (DeviceCode::Mobile, "iPhone", "Safari", "Apple")
        );
        assert_eq!(iphone.os_version, "17.1");
        assert_eq!(p.parse(Some(IPAD)).class, DeviceCode::Tablet);
        assert_eq!(p.parse(Some(ANDROID_TABLET)).class, DeviceCode::Tablet);
        assert_eq!(p.parse(Some(ANDROID_PHONE)).class, DeviceCode::Mobile);
        let win = p.parse(Some(WINDOWS));
        assert_eq!((win.class, win.os.as_str(), win.browser.as_str()), (DeviceCode::Desktop, "Windows 10", "Chrome"));
        assert_eq!(win.browser_version, "120.0.0.0");
        let bot = p.parse(Some(GOOGLEBOT));
        assert!(bot.crawler);
        assert_eq!(bot.class, DeviceCode::Bot);
        assert_eq!(p.parse(None).class, DeviceCode::Other);
    }

    #[test]
    fn cache_hits_on_repeats() {
        let p = UaParser::new(100);
        for _ in 0..10 {
            p.parse(Some(IPHONE));
        }
        assert_eq!(p.cache_stats(), (9, 1));
    }

    #[test]
    fn browser_shapes_and_our_patterns() {
        for ua in [IPHONE, IPAD, ANDROID_TABLET, ANDROID_PHONE, WINDOWS] {
            assert!(browser_shaped(ua), "{ua}");
        }
        for ua in [
            "curl/8.4.0",
            "Go-http-client/1.1",
            "GoogleOther",
            "Hello World",
            GOOGLEBOT,
            "Mozilla/5.0 (X11; Linux) Nikto/2.5.0",
        ] {
            assert!(!browser_shaped(ua), "{ua}");
        }
        let p = UaParser::new(100);
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.7204.168 Safari/537.36 DatadogSynthetics",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36 GTmetrix",
            "RuxitSynthetic/1.0",
        ] {
            assert!(p.parse(Some(ua)).crawler, "{ua}");
        }
        // In-app browsers are people, even when their app also has a preview fetcher.
        let snapchat = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.6.1 Mobile/15E148 Snapchat/14.25.0.48 (like Safari/8624.5.1.10.3, panda)";
        let line = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.16.0";
        let tecno = "Mozilla/5.0 (Linux; Android 13; TECNO CAMON 20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
        for ua in [snapchat, line, tecno] {
            assert_eq!(bot_reason("GET", &p.parse(Some(ua))), None, "{ua}");
        }
        let err = BotRules::parse("# ok\nfine\n(unclosed\n").unwrap_err();
        assert!(matches!(err, BotRulesError::Pattern { line: 3, .. }), "{err}");
        let custom = UaParser::with_rules(10, BotRules::parse("zorblax").unwrap());
        let acme = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36 Zorblax/2.0";
        assert!(custom.parse(Some(acme)).crawler, "an operator's pattern, case-insensitive");
        assert!(!UaParser::new(10).parse(Some(acme)).crawler);
    }

    #[test]
    fn bot_reasons() {
        let p = UaParser::new(100);
        let d = |ua: &str| p.parse(Some(ua));
        assert_eq!(bot_reason("HEAD", &d(IPHONE)), Some("head_request"));
        assert_eq!(bot_reason("GET", &p.parse(None)), Some("no_user_agent"));
        let fb = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";
        assert_eq!(bot_reason("GET", &d(fb)), Some("unfurler"));
        let wa = "WhatsApp/2.23.20.0 A";
        assert_eq!(bot_reason("GET", &d(wa)), Some("unfurler"));
        assert_eq!(bot_reason("GET", &d(GOOGLEBOT)), Some("crawler_ua"));
        let curl = "curl/8.4.0";
        assert_eq!(bot_reason("GET", &d(curl)), Some("crawler_ua"), "isbot lists HTTP libraries");
        assert_eq!(bot_reason("GET", &d(IPHONE)), None);
    }
}
