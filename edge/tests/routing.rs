//! Routing rules through the real edge (issue #18), with MaxMind's GeoIP
//! test database (81.2.69.142 is in the United Kingdom, 89.160.20.112 in
//! Sweden, 216.160.83.56 in the United States) and real MongoDB and Kafka:
//! every rule kind decides the answer and is recorded in the events.

mod common_env;

use std::collections::HashMap;

use common_env::*;
use schemas::event::{EventKind, RawEvent};
use serde_json::json;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

struct Visitor<'a> {
    ua: &'a str,
    ip: &'a str,
    lang: &'a str,
    cookie: &'a str,
}

/// The `Referer` of requests that only wait for the cache to follow a
/// change: their events are left out of what a test counts.
const PROBE: &str = "https://probe.example/";

/// The probe's request: `v`'s, marked [`PROBE`].
async fn probe(edge: &edge::Edge, host: &str, path: &str, v: &Visitor<'_>) -> reqwest::Response {
    request(edge, host, path, v, Some(PROBE)).await
}

/// The events of `env`'s topic that are not probes, once there are `n`.
async fn counted(env: &Env, n: usize) -> Vec<RawEvent> {
    let topic = env.cfg.kafka.raw_topic.clone();
    testkit::eventually(CACHE_WAIT, &format!("{n} events"), || async {
        let all: Vec<RawEvent> = events(&shared_brokers(), &topic, n)
            .await
            .into_iter()
            .filter(|e| e.referrer.as_deref() != Some(PROBE))
            .collect();
        (all.len() >= n).then_some(all)
    })
    .await
}

async fn get(edge: &edge::Edge, host: &str, path: &str, v: &Visitor<'_>) -> reqwest::Response {
    request(edge, host, path, v, None).await
}

/// `GET path` on `host` as visitor `v`, with `referer` when given.
async fn request(
    edge: &edge::Edge,
    host: &str,
    path: &str,
    v: &Visitor<'_>,
    referer: Option<&str>,
) -> reqwest::Response {
    let mut r = http()
        .get(format!("http://{}{path}", edge.addr))
        .header("host", host)
        .header("user-agent", v.ua)
        // The test client is on loopback, a trusted proxy by default.
        .header("x-forwarded-for", v.ip);
    for (name, value) in [("accept-language", v.lang), ("cookie", v.cookie), ("referer", referer.unwrap_or(""))] {
        if !value.is_empty() {
            r = r.header(name, value);
        }
    }
    r.send().await.expect("edge answers")
}

fn location(r: &reqwest::Response) -> &str {
    r.headers().get("location").map(|v| v.to_str().expect("ASCII location")).unwrap_or("")
}

type Route<'a> = (&'static str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Asserts the events are `want` as [`route`]s, in any order (visitors
/// land on partitions by IP or cookie).
fn assert_routes(all: &[RawEvent], mut want: Vec<Route<'_>>) {
    let mut got: Vec<Route<'_>> = all.iter().map(route).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{all:#?}");
}

/// `(kind, platform, rule, variant)` of an event, comparable and sortable.
fn route(e: &RawEvent) -> Route<'_> {
    let kind = if e.kind == EventKind::View { "view" } else { "click" };
    (kind, e.platform.as_deref(), e.rule_id.as_deref(), e.variant.as_deref())
}

async fn start(host: &str) -> (Env, edge::Edge, schemas::mongo::Smartlink) {
    let env = env(&shared_brokers()).await;
    let client = insert_client(&env.db, host).await;
    let link =
        insert_link(&env.db, &client, "jiro", "Jiro", "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC").await;
    let edge =
        edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.expect("edge starts");
    (env, edge, link)
}

async fn stop(env: Env, edge: edge::Edge) {
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.expect("database dropped");
}

/// Device, OS, country and language rules, in order, first match wins:
/// an iPhone in Sweden skips the page to Apple Music (a view and a click
/// recorded), a UK visitor sees the page without Deezer and clicks out to
/// the UK storefront, a French speaker goes to the label's French page, and
/// the rule that matched is in every event.
#[tokio::test]
async fn device_country_and_language_rules_decide_and_are_recorded() {
    let host = "links.routing.test";
    let (env, edge, link) = start(host).await;
    set_routing(
        &env.db,
        link.id,
        json!({
            "rules": [
                {"id": "se-ios", "countries": ["SE"], "os": ["ios"], "target": {"platform": "apple-music"}},
                {"id": "uk", "countries": ["GB"],
                 "target": {"hide": ["deezer"], "urls": {"apple-music": "https://music.apple.com/gb/album/1"}}},
                {"id": "fr", "languages": ["fr"], "target": {"url": "https://label.example/fr"}},
                {"id": "desktop", "devices": ["desktop"]}
            ]
        }),
    )
    .await;
    let probe_visitor = Visitor { ua: IPHONE, ip: "89.160.20.112", lang: "", cookie: "" };
    testkit::eventually(CACHE_WAIT, "the rules to be served", || async {
        (probe(&edge, host, "/jiro", &probe_visitor).await.status() == 302).then_some(())
    })
    .await;

    let r = get(&edge, host, "/jiro", &probe_visitor).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "https://music.apple.com/album/1"));

    let uk = Visitor { ua: WINDOWS, ip: "81.2.69.142", lang: "fr-FR", cookie: "" };
    let page = get(&edge, host, "/jiro", &uk).await.text().await.unwrap();
    assert!(page.contains("data-platform=\"spotify\""), "{page}");
    assert!(!page.contains("data-platform=\"deezer\""), "Deezer hidden in the UK: {page}");
    let r = get(&edge, host, "/jiro/apple-music", &uk).await;
    assert_eq!(location(&r), "https://music.apple.com/gb/album/1", "the UK storefront");
    assert_eq!(get(&edge, host, "/jiro/deezer", &uk).await.status(), 404, "a hidden platform is not served");

    let french = Visitor { ua: ANDROID, ip: "216.160.83.56", lang: "fr-CA,fr;q=0.9,en;q=0.5", cookie: "" };
    let r = get(&edge, host, "/jiro", &french).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "https://label.example/fr"));

    let american = Visitor { ua: WINDOWS, ip: "216.160.83.56", lang: "en-US", cookie: "" };
    assert_eq!(get(&edge, host, "/jiro", &american).await.status(), 200);
    let mobile_american = Visitor { ua: ANDROID, ip: "216.160.83.56", lang: "en-US", cookie: "" };
    let r = get(&edge, host, "/jiro/spotify", &mobile_american).await;
    assert_eq!(location(&r), "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC", "no rule: the stored URL");

    // The 404 is not an event; every other answer is.
    let all = counted(&env, 7).await;
    assert_routes(
        &all,
        vec![
            ("view", None, Some("se-ios"), None),
            ("click", Some("apple-music"), Some("se-ios"), None),
            ("view", None, Some("uk"), None),
            ("click", Some("apple-music"), Some("uk"), None),
            ("view", None, Some("fr"), None),
            ("view", None, Some("desktop"), None),
            ("click", Some("spotify"), None, None),
        ],
    );
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 7, "an auto-redirect records a view and a click-out, each its own id");
    stop(env, edge).await;
}

/// An A/B split: a visitor keeps their variant on every visit (by cookie
/// with consent, by IP and user agent without), both variants get traffic
/// in proportion, and each event names its variant.
#[tokio::test]
async fn an_a_b_split_is_stable_per_visitor_and_recorded() {
    let host = "links.ab.test";
    let (env, edge, link) = start(host).await;
    set_routing(
        &env.db,
        link.id,
        json!({"rules": [{"id": "launch", "variants": [
            {"id": "a", "weight": 1, "target": {"platform": "spotify"}},
            {"id": "b", "weight": 1, "target": {"platform": "deezer"}}
        ]}]}),
    )
    .await;
    let probe_visitor = Visitor { ua: WINDOWS, ip: "81.2.69.142", lang: "", cookie: "" };
    testkit::eventually(CACHE_WAIT, "the split to be served", || async {
        (probe(&edge, host, "/jiro", &probe_visitor).await.status() == 302).then_some(())
    })
    .await;
    let mut by_variant: HashMap<String, usize> = HashMap::new();
    let visitors = 40;
    for i in 0..visitors {
        let cookie = format!("sl_consent=granted; sl_vid={i:032x}");
        let v = Visitor { ua: WINDOWS, ip: "81.2.69.142", lang: "", cookie: &cookie };
        let first = location(&get(&edge, host, "/jiro", &v).await).to_string();
        for _ in 0..2 {
            assert_eq!(location(&get(&edge, host, "/jiro", &v).await), first, "visitor {i} keeps their variant");
        }
        *by_variant.entry(first).or_default() += 1;
    }
    let spotify = by_variant.get("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC").copied().unwrap_or(0);
    let deezer = by_variant.get("https://www.deezer.com/track/1").copied().unwrap_or(0);
    assert_eq!(spotify + deezer, visitors, "{by_variant:?}");
    assert!((8..=32).contains(&spotify), "both arms get traffic: {by_variant:?}");
    // Without consent the key is the IP and user agent: still stable.
    let anonymous = Visitor { ua: IPHONE, ip: "89.160.20.112", lang: "", cookie: "" };
    let first = location(&get(&edge, host, "/jiro", &anonymous).await).to_string();
    assert_eq!(location(&get(&edge, host, "/jiro", &anonymous).await), first);

    let all = counted(&env, (visitors * 3 + 2) * 2).await;
    let mut views: HashMap<&str, usize> = HashMap::new();
    let mut clicks: HashMap<&str, usize> = HashMap::new();
    for e in &all {
        assert_eq!(e.rule_id.as_deref(), Some("launch"), "{e:?}");
        let arm = e.variant.as_deref().expect("every event names its variant");
        match e.kind {
            EventKind::View => *views.entry(arm).or_default() += 1,
            EventKind::Click => {
                let expected = if arm == "a" { "spotify" } else { "deezer" };
                assert_eq!(e.platform.as_deref(), Some(expected), "{e:?}");
                *clicks.entry(arm).or_default() += 1;
            }
            EventKind::Engagement => panic!("no page was hidden here: {e:?}"),
        }
    }
    assert_eq!(views, clicks, "one click-out per auto-redirected view");
    assert_eq!(views.get("a").copied().unwrap_or(0), spotify * 3 + usize::from(first.contains("spotify")) * 2);
    stop(env, edge).await;
}

/// With `remember_choice`, a consenting visitor's click-out is remembered
/// (cookie) and their next visit goes straight there (rule `preferred`);
/// without consent nothing is remembered or used.
#[tokio::test]
async fn the_preferred_service_is_remembered_with_consent_only() {
    let host = "links.preferred.test";
    let (env, edge, link) = start(host).await;
    set_routing(&env.db, link.id, json!({"rememberChoice": true})).await;
    let consenting = Visitor { ua: WINDOWS, ip: "81.2.69.142", lang: "", cookie: "sl_consent=granted" };
    // Served once a consenting click-out sets the cookie.
    testkit::eventually(CACHE_WAIT, "remember_choice to be served", || async {
        let r = probe(&edge, host, "/jiro/spotify", &consenting).await;
        r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("sl_pref=")).then_some(())
    })
    .await;

    let r = get(&edge, host, "/jiro/deezer", &consenting).await;
    let set: Vec<&str> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(set.iter().any(|c| c.starts_with("sl_pref=deezer;")), "{set:?}");
    let returning = Visitor { cookie: "sl_consent=granted; sl_pref=deezer", ..consenting };
    let r = get(&edge, host, "/jiro", &returning).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "https://www.deezer.com/track/1"));

    let refused = Visitor { cookie: "sl_consent=denied; sl_pref=deezer", ..consenting };
    assert_eq!(get(&edge, host, "/jiro", &refused).await.status(), 200, "no consent: the page");
    let r = get(&edge, host, "/jiro/spotify", &Visitor { cookie: "", ..consenting }).await;
    assert!(r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("sl_pref")));

    let all = counted(&env, 5).await;
    assert_routes(
        &all,
        vec![
            ("click", Some("deezer"), None, None),
            ("view", None, Some("preferred"), None),
            ("click", Some("deezer"), Some("preferred"), None),
            ("view", None, None, None),
            ("click", Some("spotify"), None, None),
        ],
    );
    stop(env, edge).await;
}

/// App links: a phone gets a page that opens the app (Spotify URI, Android
/// intent) with the web URL as fallback; a desktop gets the 302. Parameter
/// templates add UTMs and affiliate tokens to the destination, and the
/// landing page carries the visit's UTMs on its buttons.
#[tokio::test]
async fn app_links_and_parameter_templates_shape_the_destination() {
    let host = "links.apps.test";
    let (env, edge, link) = start(host).await;
    set_routing(
        &env.db,
        link.id,
        json!({
            "appLinks": true,
            "params": {"*": "utm_source={utm_source}", "apple-music": "at=1000lqx&ct={utm_campaign}"}
        }),
    )
    .await;
    let desktop = Visitor { ua: WINDOWS, ip: "81.2.69.142", lang: "", cookie: "" };
    let path = "/jiro/apple-music?utm_source=ig&utm_campaign=launch";
    testkit::eventually(CACHE_WAIT, "the templates to be served", || async {
        let r = probe(&edge, host, path, &desktop).await;
        location(&r).contains("at=1000lqx").then_some(())
    })
    .await;
    let r = get(&edge, host, path, &desktop).await;
    assert_eq!(location(&r), "https://music.apple.com/album/1?utm_source=ig&at=1000lqx&ct=launch");
    let r = get(&edge, host, "/jiro/spotify", &desktop).await;
    assert_eq!(location(&r), "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC", "empty values are left out");

    let iphone = Visitor { ua: IPHONE, ..desktop };
    let r = get(&edge, host, "/jiro/spotify?utm_source=tt", &iphone).await;
    assert_eq!(r.status(), 200, "a page that opens the app");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(body.contains("spotify:track:4uLU6hMCjMI75M1A2tKUQC"), "{body}");
    assert!(
        body.contains("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC?utm_source=tt"),
        "web fallback: {body}"
    );
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let android = Visitor { ua: ANDROID, ..desktop };
    let body = get(&edge, host, "/jiro/apple-music", &android).await.text().await.unwrap();
    assert!(body.contains("intent://music.apple.com/album/1?at=1000lqx#Intent;scheme=https;package=com.apple.android.music;S.browser_fallback_url=https%3A%2F%2Fmusic.apple.com%2Falbum%2F1%3Fat%3D1000lqx;end"), "{body}");

    let page = get(&edge, host, "/jiro?utm_source=ig&fbclid=F1", &desktop).await.text().await.unwrap();
    assert!(page.contains("&amp;utm_source=ig&amp;fbclid=F1\" data-platform=\"spotify\""), "{page}");
    stop(env, edge).await;
}
