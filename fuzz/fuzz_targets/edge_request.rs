//! The edge's whole request path (host and slug resolution, path, query,
//! attribution, headers, cookies, client IP, click-id verification, page
//! rendering, routing rules, event encoding) on arbitrary requests: no panic, and only the
//! statuses the edge documents.
//!
//! Input: `METHOD URI` on the first line, then `name: value` header lines;
//! the first byte picks a trusted (loopback) or untrusted peer.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use bson::{oid::ObjectId, DateTime};
use edge::cache::{Cache, Snapshot};
use edge::client_ip::ForwardedHeader;
use edge::server::AppState;
use libfuzzer_sys::fuzz_target;
use schemas::mongo::*;

fn state() -> &'static AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let metrics = edge::metrics::Metrics::register(&registry).expect("metrics");
        // One fixed directory, emptied at start: runs do not pile up spools.
        let dir = std::env::temp_dir().join("smartlinks-edge-fuzz-spool");
        let _ = std::fs::remove_dir_all(&dir);
        let spool = edge::spool::Spool::open(edge::spool::SpoolConfig {
            dir,
            max_bytes: 4 * 1024 * 1024,
            segment_bytes: 1024 * 1024,
            sync_interval_ms: 1000,
        })
        .expect("spool");
        // No broker listens there: events queue, then spool, then count as dropped.
        let sink = edge::sink::EventSink::new(
            edge::sink::SinkConfig {
                brokers: "127.0.0.1:1".into(),
                topic: "fuzz".into(),
                message_timeout_ms: 1000,
                queue_max_messages: 1000,
                linger_ms: 5,
                replay_batch: 100,
            },
            spool,
            metrics.clone(),
            common::admin::Health::new(),
        )
        .expect("sink");
        let cache = Cache::new();
        cache.store(snapshot());
        AppState {
            cache,
            sink,
            metrics,
            trusted: vec!["127.0.0.0/8".parse().expect("cidr")],
            forwarded: ForwardedHeader::XForwardedFor,
            limiter: None,
            max_uri_bytes: 4096,
            eid_key: b"fuzz-click-id-key-0123456789abcdef".to_vec(),
            secure_cookies: true,
            lookups: edge::routing::Lookups {
                ua: lookup::device::UaParser::new(1000),
                geoip: lookup::geoip::GeoIp::empty(),
            },
        }
    })
}

fn snapshot() -> Snapshot {
    let c = Client {
        id: ObjectId::new(),
        name: "Label".into(),
        slug: "label".into(),
        domain: "links.fuzz.test".into(),
        subdomain: Some("fuzz".into()),
        tracking: ClientTracking { gtm: Some("GTM-FUZZ".into()), facebook: Some("123".into()), ..Default::default() },
        branding: Default::default(),
        settings: Default::default(),
        metadata: ClientMetadata::new(DateTime::now(), ClientStatus::Active, PlanType::Starter),
    };
    let link = |slug: &str| Smartlink {
        id: ObjectId::new(),
        client_id: c.id,
        slug: slug.into(),
        track: Track { title: "In Your Light".into(), artist_name: "Jiro".into(), ..Default::default() },
        platforms: Platforms {
            spotify: Some("https://open.spotify.com/t".into()),
            deezer: Some("https://www.deezer.com/track/1".into()),
            ..Default::default()
        },
        media: Default::default(),
        seo: Default::default(),
        routing: Default::default(),
        metadata: LinkMetadata::new(DateTime::now(), LinkStatus::Active),
    };
    // `b` routes: every rule kind, an A/B split, the remembered service,
    // app links and parameter templates.
    let routing = serde_json::from_value(serde_json::json!({
        "rules": [
            {"id": "ios", "os": ["ios"], "target": {"platform": "deezer"}},
            {"id": "fr", "languages": ["fr"], "countries": ["FR"], "target": {"url": "https://label.example/fr"}},
            {"id": "desk", "devices": ["desktop"], "browsers": ["chrome"],
             "target": {"hide": ["deezer"], "urls": {"spotify": "https://open.spotify.com/intl-fr/t"}}},
            {"id": "ab", "variants": [{"id": "a", "weight": 1, "target": {"platform": "spotify"}},
                                      {"id": "b", "weight": 2}]}
        ],
        "rememberChoice": true,
        "appLinks": true,
        "params": {"*": "utm_source={utm_source}&r={rule}-{variant}", "spotify": "si={fbclid}"}
    }))
    .expect("routing");
    let links = vec![link("jiro"), Smartlink { routing, ..link("b") }];
    Snapshot::build(vec![c], links)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let Some(start) = lines.next() else { return };
    let (method, uri) = start.split_once(' ').unwrap_or(("GET", start));
    let mut b = http::Request::builder().method(method).uri(uri);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            b = b.header(k.trim(), v.trim());
        }
    }
    let Ok(req) = b.body(()) else { return };
    let peer: SocketAddr = if first & 1 == 0 { "127.0.0.1:5000" } else { "203.0.113.9:5000" }.parse().expect("addr");
    let resp = edge::server::handle(state(), peer, &req);
    let status = resp.status().as_u16();
    assert!(
        [200, 302, 400, 404, 405, 410, 414, 429, 431, 503].contains(&status),
        "undocumented status {status} for {start:?}"
    );
});
