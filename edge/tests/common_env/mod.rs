//! Shared set-up of the edge integration tests: a unique MongoDB database
//! and Kafka topics per test, tenants and links written through the real
//! driver, and an edge started in-process on ephemeral ports.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime};
use envconfig::Envconfig;
use schemas::event::RawEvent;
use schemas::mongo::*;
use testkit::unique_name;

pub struct Env {
    pub db: mongodb::Database,
    pub cfg: edge::Config,
    pub shutdown: common::shutdown::CancellationToken,
}

/// A config on ephemeral ports with its own database, topics and spool,
/// talking to `brokers`. Topics are created.
pub async fn env(brokers: &str) -> Env {
    common::telemetry::init_logging();
    let name = unique_name("edge");
    let mut vars = HashMap::new();
    vars.insert("EDGE_LISTEN".to_string(), "127.0.0.1:0".to_string());
    vars.insert("EDGE_ADMIN_LISTEN".to_string(), "127.0.0.1:0".to_string());
    vars.insert("EDGE_SPOOL_DIR".to_string(), std::env::temp_dir().join(&name).display().to_string());
    vars.insert("EDGE_RATE_LIMIT_PER_SEC".to_string(), "0".to_string());
    vars.insert("KAFKA_BROKERS".to_string(), brokers.to_string());
    vars.insert("KAFKA_RAW_TOPIC".to_string(), format!("raw.{name}"));
    vars.insert("KAFKA_DEAD_LETTER_TOPIC".to_string(), format!("dlq.{name}"));
    vars.insert("MONGODB_DATABASE".to_string(), name.clone());
    // MaxMind's test database: addresses with known countries (routing rules).
    vars.insert(
        "EDGE_GEOIP_DATABASES".to_string(),
        testkit::geoip_test_db("GeoIP2-City-Test.mmdb").display().to_string(),
    );
    if let Ok(uri) = std::env::var("MONGODB_URI") {
        vars.insert("MONGODB_URI".to_string(), uri);
    }
    let cfg = edge::Config::init_from_hashmap(&vars).expect("config");
    kafka_util::ensure_topics(brokers, &cfg.kafka.topic_names().specs(1)).await.expect("topics");
    let db = cfg.mongo.database().await.expect("mongo");
    migrate::apply_mongo_indexes(&db).await.expect("indexes");
    Env { db, cfg, shutdown: common::shutdown::CancellationToken::new() }
}

pub fn shared_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub async fn insert_client(db: &mongodb::Database, domain: &str) -> Client {
    let now = DateTime::now();
    let c = Client {
        id: ObjectId::new(),
        name: format!("Label of {domain}"),
        slug: domain.replace('.', "-"),
        domain: domain.into(),
        subdomain: None,
        tracking: ClientTracking {
            gtm: Some("GTM-TEST1".into()),
            facebook: Some("1234567890".into()),
            ..Default::default()
        },
        branding: Branding { primary_color: Some("#1DB954".into()), ..Default::default() },
        settings: ClientSettings::default(),
        metadata: ClientMetadata::new(now, ClientStatus::Active, PlanType::Professional),
    };
    db.collection::<Client>(collections::CLIENTS).insert_one(&c).await.expect("insert client");
    c
}

pub async fn insert_link(db: &mongodb::Database, client: &Client, slug: &str, title: &str, spotify: &str) -> Smartlink {
    let now = DateTime::now();
    let l = Smartlink {
        id: ObjectId::new(),
        client_id: client.id,
        slug: slug.into(),
        track: Track { title: title.into(), artist_name: "Jiro".into(), ..Default::default() },
        platforms: Platforms {
            spotify: Some(spotify.into()),
            apple_music: Some("https://music.apple.com/album/1".into()),
            deezer: Some("https://www.deezer.com/track/1".into()),
            ..Default::default()
        },
        media: Media { cover_art: Some("https://cdn.example.com/cover.jpg".into()), ..Default::default() },
        seo: Seo::default(),
        routing: Default::default(),
        metadata: LinkMetadata::new(now, LinkStatus::Active),
    };
    db.collection::<Smartlink>(collections::SMARTLINKS).insert_one(&l).await.expect("insert link");
    l
}

/// Sets `link`'s routing (issue #18) as the API stores it.
pub async fn set_routing(db: &mongodb::Database, id: ObjectId, routing: serde_json::Value) {
    let r: schemas::routing::Routing = serde_json::from_value(routing).expect("routing JSON");
    update_link(db, id, doc! { "routing": bson::to_bson(&r).expect("routing BSON") }).await;
}

pub async fn update_link(db: &mongodb::Database, id: ObjectId, set: bson::Document) {
    let mut set = set;
    set.insert("metadata.updatedAt", DateTime::now());
    db.collection::<Smartlink>(collections::SMARTLINKS)
        .update_one(doc! { "_id": id }, doc! { "$set": set })
        .await
        .expect("update link");
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// How long a test waits for the cache to load or to follow a change: a
/// margin for a machine shared with Kafka's JVM (CI has 2 cores), not a
/// promise. What the edge promises (a change served after the next
/// refresh) is asserted in refresh passes by [`served_after_two_refreshes`].
pub const CACHE_WAIT: Duration = Duration::from_secs(30);

/// Asserts that `host`/`path` answers `status` once two cache refreshes
/// (`edge_cache_refreshes_total`) have completed after the call: the one
/// in flight may have read MongoDB before the change, the next one began
/// after it. Deterministic on a slow machine, unlike a wall-clock window;
/// with `EDGE_CACHE_REFRESH_MS` = 1 s it means about 2 s.
pub async fn served_after_two_refreshes(edge: &edge::Edge, host: &str, path: &str) -> reqwest::Response {
    let start = edge.metrics.cache_refreshes.get();
    testkit::eventually(CACHE_WAIT, "two cache refreshes", || async {
        (edge.metrics.cache_refreshes.get() >= start + 2).then_some(())
    })
    .await;
    http().get(format!("http://{}{path}", edge.addr)).header("host", host).send().await.expect("edge answers")
}

/// Waits until `host`/`path` answers `status` (the cache picked up a change).
pub async fn wait_status(addr: std::net::SocketAddr, host: &str, path: &str, status: u16, within: Duration) {
    let c = http();
    let url = format!("http://{addr}{path}");
    testkit::eventually(within, &format!("{host}{path} to answer {status}"), || {
        let c = c.clone();
        let url = url.clone();
        let host = host.to_string();
        async move {
            let r = c.get(&url).header("host", host).send().await.ok()?;
            (r.status().as_u16() == status).then_some(())
        }
    })
    .await;
}

/// All raw events of `topic` (waits for `expect`, then 1 s of quiet).
pub async fn events(brokers: &str, topic: &str, expect: usize) -> Vec<RawEvent> {
    let (b, t) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        testkit::consume_all(&b, &t, expect, Duration::from_secs(60), Duration::from_secs(1))
    })
    .await
    .expect("consumer thread")
    .into_iter()
    .map(|(_, v)| serde_json::from_slice::<RawEvent>(&v).expect("raw event JSON"))
    .collect()
}

/// Reads a counter from the admin listener's `/metrics`; panics when the
/// listener does not answer.
pub async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    try_metric(admin, name).await.expect("admin listener answers")
}

/// Like [`metric`], `None` while the listener does not answer (a process starting).
pub async fn try_metric(admin: std::net::SocketAddr, name: &str) -> Option<f64> {
    let body = http().get(format!("http://{admin}/metrics")).send().await.ok()?.text().await.ok()?;
    Some(
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    )
}
