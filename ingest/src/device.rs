//! User agent → device, OS and browser (`woothee`), and the bot flag
//! (`isbot`'s maintained crawler patterns, woothee's crawler category, plus
//! the request facts only we know: HEAD requests and link unfurlers).
//!
//! Parsing is cached by user agent in a bounded cache (`quick_cache`): real
//! traffic repeats a few thousand strings, so nearly every event is a hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use schemas::clickhouse::DeviceCode;

/// What a user agent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device class.
    pub class: DeviceCode,
    /// OS name (`iOS`, `Windows 10`, `Android`, `Mac OSX`).
    pub os: String,
    /// OS version.
    pub os_version: String,
    /// Browser name (`Safari`, `Chrome`, `Googlebot`).
    pub browser: String,
    /// Browser version.
    pub browser_version: String,
    /// Vendor (`Apple`, `Google`).
    pub vendor: String,
    /// A crawler by its user agent.
    pub crawler: bool,
}

/// Link-preview fetchers of social networks and messengers, and security
/// scanners that open links shared in them. Most are in `isbot`'s list too;
/// this short list only names the *reason* (`unfurler`), which dashboards
/// show apart from search crawlers. Matched case-insensitively as substrings.
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
    "snapchat",
    "viber",
    "line/",
    "iframely",
    "embedly",
    "bitlybot",
    "google-safety",
    "microsoftpreview",
];

/// Why an event is flagged as a bot; `None` for a person. The values are
/// stored in `events.bot_reason` and are a bounded metrics label.
pub fn bot_reason(method: &str, user_agent: Option<&str>, device: &Device) -> Option<&'static str> {
    let ua = user_agent.unwrap_or("");
    if method.eq_ignore_ascii_case("HEAD") {
        return Some("head_request");
    }
    if ua.trim().is_empty() {
        return Some("no_user_agent");
    }
    let lower = ua.to_ascii_lowercase();
    if UNFURLERS.iter().any(|u| lower.contains(u)) {
        return Some("unfurler");
    }
    device.crawler.then_some("crawler_ua")
}

/// Cached user-agent parser. Thread-safe.
pub struct UaParser {
    woothee: woothee::parser::Parser,
    bots: isbot::Bots,
    cache: quick_cache::sync::Cache<String, Arc<Device>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl UaParser {
    /// A parser caching up to `capacity` distinct user agents.
    pub fn new(capacity: usize) -> Self {
        Self {
            woothee: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
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
        let known = |s: &str| if s == woothee::woothee::VALUE_UNKNOWN { String::new() } else { s.to_string() };
        let crawler_by_list = !ua.is_empty() && self.bots.is_bot(ua);
        let Some(r) = self.woothee.parse(ua) else {
            return Device {
                class: if crawler_by_list { DeviceCode::Bot } else { DeviceCode::Other },
                os: String::new(),
                os_version: String::new(),
                browser: String::new(),
                browser_version: String::new(),
                vendor: String::new(),
                crawler: crawler_by_list,
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
    fn bot_reasons() {
        let p = UaParser::new(100);
        let d = |ua: &str| p.parse(Some(ua));
        assert_eq!(bot_reason("HEAD", Some(IPHONE), &d(IPHONE)), Some("head_request"));
        assert_eq!(bot_reason("GET", None, &p.parse(None)), Some("no_user_agent"));
        let fb = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";
        assert_eq!(bot_reason("GET", Some(fb), &d(fb)), Some("unfurler"));
        let wa = "WhatsApp/2.23.20.0 A";
        assert_eq!(bot_reason("GET", Some(wa), &d(wa)), Some("unfurler"));
        assert_eq!(bot_reason("GET", Some(GOOGLEBOT), &d(GOOGLEBOT)), Some("crawler_ua"));
        let curl = "curl/8.4.0";
        assert_eq!(bot_reason("GET", Some(curl), &d(curl)), Some("crawler_ua"), "isbot lists HTTP libraries");
        assert_eq!(bot_reason("GET", Some(IPHONE), &d(IPHONE)), None);
    }
}
