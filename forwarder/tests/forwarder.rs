//! The forwarder against the real local Kafka and MongoDB, and a local HTTP
//! receiver that checks each platform's documented request shape (path,
//! credential, field names, hashing, units, dedup ids) and plays failures:
//! a 429 then success (retried), a 400 (dead-lettered at once), a 500 for
//! good (retried, then dead-lettered), answers slower than the request
//! timeout (retried, then dead-lettered); consent denied, DNT and bots are
//! never sent.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bson::{doc, oid::ObjectId, DateTime};
use envconfig::Envconfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use schemas::conversions::{DeliveryLog, DeliveryOutcome, Destination, Platform, CREDENTIAL_FIELD};
use schemas::event::{AdCookies, Attribution, Consent, EventKind, RawEvent, RAW_EVENT_VERSION};
use schemas::mongo::collections;
use serde_json::Value;
use testkit::{eventually, unique_name};
use uuid::Uuid;

/// What the receiver got: (platform, account id, body).
type Received = Arc<Mutex<Vec<(Platform, String, Value)>>>;

#[derive(Clone, Default)]
struct Receiver {
    got: Received,
    /// Answers played per account id, in order; then 200.
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
}

impl Receiver {
    fn next_status(&self, account: &str) -> u16 {
        let mut s = self.script.lock().unwrap();
        match s.get_mut(account) {
            Some(v) if !v.is_empty() => v.remove(0),
            Some(_) if account.ends_with("-always500") => 500,
            Some(_) if account.ends_with("-always400") => 400,
            _ => 200,
        }
    }
}

fn check_meta_event(e: &Value) {
    for f in ["event_name", "event_time", "event_id", "action_source", "event_source_url", "user_data"] {
        assert!(e.get(f).is_some(), "meta event lacks {f}: {e}");
    }
    assert_eq!(e["action_source"], "website");
    assert!(e["event_time"].as_i64().unwrap() < 10_000_000_000, "event_time in seconds");
    let ext = e["user_data"]["external_id"][0].as_str().unwrap();
    assert!(ext.len() == 64 && ext.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "sha256 hex");
    assert!(e["user_data"]["client_ip_address"].is_string() && e["user_data"]["client_user_agent"].is_string());
}

async fn meta(
    State(r): State<Receiver>,
    Path((version, pixel)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    assert_eq!(version, "v21.0");
    assert_eq!(q.get("access_token").map(String::as_str), Some("meta-token/1"), "token in the query");
    assert!(!body.to_string().contains("meta-token"), "no token in the body");
    body["data"].as_array().unwrap().iter().for_each(check_meta_event);
    r.got.lock().unwrap().push((Platform::Meta, pixel.clone(), body));
    match r.next_status(&pixel) {
        200 => (StatusCode::OK, [("retry-after", "0")], r#"{"events_received":1,"fbtrace_id":"x"}"#.to_string()),
        429 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], r#"{"error":{"code":4}}"#.to_string()),
        400 => (
            StatusCode::BAD_REQUEST,
            [("retry-after", "0")],
            r#"{"error":{"message":"Invalid parameter","type":"OAuthException","code":100}}"#.to_string(),
        ),
        s => (StatusCode::from_u16(s).unwrap(), [("retry-after", "0")], "{}".to_string()),
    }
}

async fn ga4(
    State(r): State<Receiver>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> StatusCode {
    assert_eq!(q.get("api_secret").map(String::as_str), Some("ga4-secret"));
    let id = q.get("measurement_id").cloned().unwrap();
    if id.ends_with("SLOW") {
        // Past the forwarder's request timeout (300 ms here): a timeout.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    assert!(body["client_id"].is_string() && body["timestamp_micros"].as_i64().unwrap() > 1_000_000_000_000_000);
    let events = body["events"].as_array().unwrap();
    assert!(events.len() <= 25);
    for e in events {
        assert!(e["name"].as_str().unwrap().starts_with("smartlink_") && e["params"]["event_id"].is_string());
    }
    r.got.lock().unwrap().push((Platform::Ga4, id.clone(), body));
    StatusCode::from_u16(r.next_status(&id)).unwrap()
}

async fn tiktok(State(r): State<Receiver>, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    assert_eq!(headers.get("access-token").and_then(|v| v.to_str().ok()), Some("tt-token"));
    assert_eq!(body["event_source"], "web");
    let pixel = body["event_source_id"].as_str().unwrap().to_string();
    for e in body["data"].as_array().unwrap() {
        assert!(e["event_id"].is_string() && e["user"]["ip"].is_string() && e["page"]["url"].is_string());
        assert_eq!(e["user"]["external_id"].as_str().unwrap().len(), 64);
    }
    r.got.lock().unwrap().push((Platform::Tiktok, pixel.clone(), body));
    // TikTok answers its request errors with HTTP 200 and a code.
    match r.next_status(&pixel) {
        200 => (StatusCode::OK, Json(serde_json::json!({"code": 0, "message": "OK"}))),
        400 => (StatusCode::OK, Json(serde_json::json!({"code": 40002, "message": "Invalid pixel"}))),
        s => (StatusCode::from_u16(s).unwrap(), Json(serde_json::json!({}))),
    }
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = Router::new()
        .route("/{version}/{pixel}/events", post(meta))
        .route("/mp/collect", post(ga4))
        .route("/open_api/v1.3/event/track/", post(tiktok))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

fn event(tenant: ObjectId, kind: EventKind, consent: Consent) -> RawEvent {
    RawEvent {
        v: RAW_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        kind,
        ts_ms: DateTime::now().timestamp_millis(),
        tenant_id: tenant.to_hex().into(),
        link_id: "65f1c0ffee0000000000cafe".into(),
        slug: "jiro".into(),
        host: "links.label.com".into(),
        path: "/jiro".into(),
        method: "GET".into(),
        platform: (kind == EventKind::Click).then(|| "spotify".into()),
        ip: "81.2.69.160".parse().unwrap(),
        user_agent: Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
                .into(),
        ),
        accept_language: None,
        referrer: None,
        attribution: Attribution { fbclid: Some("IwAR-test".into()), ..Default::default() },
        consent,
        dnt: false,
        visitor_id: (consent == Consent::Granted).then(|| Uuid::new_v4().simple().to_string().into()),
        ad_cookies: AdCookies { fbp: Some("fb.1.1700000000000.42".into()), ..Default::default() },
        engagement: None,
        keep_full_ip: false,
        rule_id: None,
        variant: None,
    }
}

/// Dead letters of `topic`: (headers, body).
fn dead_letters(brokers: &str, topic: &str, expect: usize) -> Vec<(HashMap<String, String>, Value)> {
    let c: BaseConsumer = kafka_util::base_config(brokers, "test-dlq")
        .set("group.id", unique_name("dlq"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < expect && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((headers, serde_json::from_slice(m.payload().unwrap()).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consented_events_reach_each_destination_once_and_failures_are_retried_or_dead_lettered() {
    common::telemetry::init_logging();
    let (url, rx) = receiver().await;
    let name = unique_name("fwd");
    let keys = crypto::Pii::generate_key("test1").unwrap();
    let mut vars = HashMap::new();
    for (k, v) in [
        ("FORWARDER_ADMIN_LISTEN", "127.0.0.1:0".to_string()),
        ("FORWARDER_GROUP_ID", format!("g.{name}")),
        ("FORWARDER_START_AT", "earliest".into()),
        ("FORWARDER_PII_KEYS", keys.clone()),
        ("FORWARDER_REFRESH_SECS", "1".into()),
        ("FORWARDER_BATCH_MAX_MS", "300".into()),
        ("FORWARDER_MAX_ATTEMPTS", "3".into()),
        ("FORWARDER_RETRY_MIN_MS", "20".into()),
        ("FORWARDER_RETRY_MAX_MS", "100".into()),
        ("FORWARDER_REQUEST_TIMEOUT_MS", "300".into()),
        // One request at a time: which of a destination's requests is
        // abandoned first, and which are then not attempted, is fixed.
        ("FORWARDER_CONCURRENCY", "1".into()),
        ("FORWARDER_META_URL", url.clone()),
        ("FORWARDER_GA4_URL", url.clone()),
        ("FORWARDER_TIKTOK_URL", url.clone()),
        ("KAFKA_RAW_TOPIC", format!("raw.{name}")),
        ("KAFKA_CONVERSION_DEAD_LETTER_TOPIC", format!("cdlq.{name}")),
        ("MONGODB_DATABASE", name.clone()),
    ] {
        vars.insert(k.to_string(), v);
    }
    let cfg = forwarder::Config::init_from_hashmap(&vars).unwrap();
    kafka_util::ensure_topics(&cfg.kafka.brokers, &cfg.kafka.topic_names().specs(1)).await.unwrap();
    let db = cfg.mongo.database().await.unwrap();

    // Tenant A: five destinations; tenant B: none.
    let (a, b) = (ObjectId::new(), ObjectId::new());
    let index = base64_key();
    let pii = crypto::Pii::new(&keys, &index).unwrap();
    let dest = |platform, pixel: &str, credential: &str, events: Vec<EventKind>| {
        let id = ObjectId::new();
        let field = crypto::Field::new(collections::CONVERSION_DESTINATIONS, id, CREDENTIAL_FIELD);
        Destination {
            id,
            client_id: a,
            platform,
            name: pixel.into(),
            pixel_id: pixel.into(),
            credential_enc: pii.encrypt(credential, field).unwrap(),
            events,
            test_event_code: None,
            enabled: true,
            created_at: DateTime::now(),
            updated_at: DateTime::now(),
        }
    };
    let both = || vec![EventKind::View, EventKind::Click];
    let meta_ok = dest(Platform::Meta, "111", "meta-token/1", both());
    let meta_flaky = dest(Platform::Meta, "222", "meta-token/1", vec![EventKind::Click]);
    let meta_bad = dest(Platform::Meta, "333-always400", "meta-token/1", both());
    let ga = dest(Platform::Ga4, "G-OK", "ga4-secret", both());
    let tt_down = dest(Platform::Tiktok, "TT-always500", "tt-token", vec![EventKind::Click]);
    let ga_slow = dest(Platform::Ga4, "G-SLOW", "ga4-secret", both());
    let mut paused = dest(Platform::Meta, "444", "meta-token/1", both());
    paused.enabled = false;
    rx.script.lock().unwrap().insert("222".into(), vec![429, 429]);
    rx.script.lock().unwrap().insert("333-always400".into(), vec![]);
    rx.script.lock().unwrap().insert("TT-always500".into(), vec![]);
    db.collection::<Destination>(collections::CONVERSION_DESTINATIONS)
        .insert_many([&meta_ok, &meta_flaky, &meta_bad, &ga, &tt_down, &ga_slow, &paused])
        .await
        .unwrap();

    // A webhook endpoint of A wanting its click-outs, batched.
    let hook = schemas::webhooks::WebhookEndpoint {
        id: ObjectId::new(),
        client_id: a,
        url: "https://hooks.label.test/clicks".into(),
        secret_enc: "unused here".into(),
        events: vec![schemas::webhooks::WebhookEvent::ClicksBatch],
        description: String::new(),
        enabled: true,
        created_at: DateTime::now(),
        updated_at: DateTime::now(),
    };
    db.collection::<schemas::webhooks::WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
        .insert_one(&hook)
        .await
        .unwrap();

    let f = forwarder::start(cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
        .await
        .unwrap();

    let view = event(a, EventKind::View, Consent::Granted);
    let click = event(a, EventKind::Click, Consent::Granted);
    let denied = event(a, EventKind::Click, Consent::Denied);
    let unknown = event(a, EventKind::View, Consent::Unknown);
    let mut dnt = event(a, EventKind::Click, Consent::Granted);
    dnt.dnt = true;
    let mut bot = event(a, EventKind::Click, Consent::Granted);
    bot.user_agent = Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)".into());
    let other_tenant = event(b, EventKind::Click, Consent::Granted);
    // A first visit: the view recorded before the banner was answered;
    // the visitor accepts on the page, whose beacon says so: the view is
    // sent then, with its own id (the pixels' on accepting). A beacon of a
    // visitor who had consented before is no conversion.
    let late = event(a, EventKind::View, Consent::Unknown);
    let beacon = |consented_on_page: bool| {
        let mut e = event(a, EventKind::Engagement, Consent::Granted);
        e.method = "POST".into();
        e.engagement = Some(schemas::event::Engagement {
            view_id: late.event_id,
            view_ts_ms: late.ts_ms,
            visible_ms: 5_000,
            clicked: false,
            consented_on_page,
        });
        e
    };
    let (accepted, engaged) = (beacon(true), beacon(false));
    let producer: FutureProducer = kafka_util::base_config(&cfg.kafka.brokers, "test").create().unwrap();
    let mut payloads: Vec<Vec<u8>> =
        [&view, &click, &denied, &unknown, &dnt, &bot, &other_tenant, &late, &accepted, &engaged]
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect();
    payloads.push(b"{not json".to_vec());
    for p in &payloads {
        producer
            .send(FutureRecord::to(&cfg.kafka.raw_topic).key("k").payload(p), Duration::from_secs(10))
            .await
            .unwrap();
    }

    // Each request ends in the delivery log: meta_ok 1 (view + click), the
    // flaky one 1 (after 3 attempts), the bad one 1, GA4 2 (the view and
    // the click are two visitors: one request per client id), TikTok 1.
    let log = db.collection::<DeliveryLog>(collections::CONVERSION_DELIVERIES);
    let entries: Vec<DeliveryLog> = eventually(Duration::from_secs(60), "delivery log", || {
        let log = log.clone();
        async move {
            use futures::TryStreamExt;
            let v: Vec<DeliveryLog> = log.find(doc! {}).await.ok()?.try_collect().await.ok()?;
            (v.len() >= 10).then_some(v)
        }
    })
    .await;
    let by = |d: &Destination| entries.iter().filter(|e| e.destination_id == d.id).collect::<Vec<_>>();
    let ids = |evs: &[&RawEvent]| evs.iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>();

    let ok = by(&meta_ok);
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].outcome, ok[0].attempts, ok[0].status), (DeliveryOutcome::Delivered, 1, Some(200)));
    let mut got = ok[0].event_ids.clone();
    got.sort();
    assert_eq!(got, {
        let mut v = ids(&[&view, &click, &late]);
        v.sort();
        v
    });

    let flaky = by(&meta_flaky);
    assert_eq!((flaky[0].outcome, flaky[0].attempts), (DeliveryOutcome::Delivered, 3), "two 429s, then delivered");
    assert_eq!(flaky[0].event_ids, ids(&[&click]), "clicks only");

    let bad = by(&meta_bad);
    assert_eq!((bad[0].outcome, bad[0].attempts, bad[0].status), (DeliveryOutcome::Rejected, 1, Some(400)));
    assert!(bad[0].answer.as_deref().unwrap().contains("Invalid parameter"));

    let g = by(&ga);
    assert_eq!(g.len(), 3, "one request per client id");
    assert!(g.iter().all(|e| e.outcome == DeliveryOutcome::Delivered));

    let tt = by(&tt_down);
    assert_eq!((tt[0].outcome, tt[0].attempts), (DeliveryOutcome::Abandoned, 3), "500 three times");
    assert!(by(&paused).is_empty(), "a paused destination gets nothing");
    // Three requests (three visitors) to a platform that times out: the
    // first is retried, then abandoned; the others are dead-lettered unsent.
    let mut slow = by(&ga_slow);
    slow.sort_by_key(|e| std::cmp::Reverse(e.attempts));
    assert_eq!(slow.len(), 3);
    assert_eq!((slow[0].outcome, slow[0].attempts, slow[0].status), (DeliveryOutcome::Abandoned, 3, None), "timeouts");
    assert!(slow[0].answer.as_deref().unwrap().starts_with("timeout"), "{:?}", slow[0].answer);
    assert!(slow[1..].iter().all(|e| (e.outcome, e.attempts) == (DeliveryOutcome::Abandoned, 0)), "not attempted");

    // What the receiver saw: no event but the consented ones, the pixel's
    // event id each, and each consented one once per healthy destination.
    let got = rx.got.lock().unwrap().clone();
    let all = serde_json::to_string(&got.iter().map(|g| &g.2).collect::<Vec<_>>()).unwrap();
    for e in [&denied, &unknown, &dnt, &bot, &other_tenant] {
        assert!(!all.contains(&e.event_id.to_string()), "{:?} {:?} must not be sent", e.kind, e.consent);
    }
    let meta111: Vec<&Value> = got.iter().filter(|g| g.1 == "111").map(|g| &g.2).collect();
    assert_eq!(meta111.len(), 1);
    let names: Vec<&str> =
        meta111[0]["data"].as_array().unwrap().iter().map(|e| e["event_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ViewContent", "SmartlinkClick", "ViewContent"]);
    let sent_late = &meta111[0]["data"][2];
    assert_eq!(sent_late["event_id"], late.event_id.to_string(), "the view's id, as the pixels send it");
    assert_eq!(sent_late["event_time"], late.ts_ms / 1000, "at the view's time");
    assert_eq!(meta111[0]["data"][1]["event_id"], click.event_id.to_string());
    assert_eq!(meta111[0]["data"][1]["user_data"]["fbc"], format!("fb.1.{}.IwAR-test", click.ts_ms));
    assert_eq!(
        meta111[0]["data"][1]["user_data"]["external_id"][0],
        forwarder::platforms::sha256_hex(click.visitor_id.as_deref().unwrap())
    );

    // Dead letters: the rejected Meta request and the abandoned TikTok one,
    // with the platform's answer and the body sent (no credential).
    let brokers = cfg.kafka.brokers.clone();
    let topic = cfg.kafka.conversion_dead_letter_topic.clone();
    let dl = tokio::task::spawn_blocking(move || dead_letters(&brokers, &topic, 5)).await.unwrap();
    assert_eq!(dl.len(), 5, "{dl:?}");
    let rejected = dl.iter().find(|(h, _)| h["dlq-reason"] == "rejected").expect("rejected");
    assert_eq!(rejected.0["dlq-platform"], "meta");
    assert_eq!(rejected.0["dlq-status"], "400");
    assert_eq!(rejected.0["dlq-destination"], meta_bad.id.to_hex());
    assert!(rejected.0["dlq-answer"].contains("Invalid parameter"));
    assert!(!rejected.1.to_string().contains("meta-token"));
    let abandoned =
        dl.iter().find(|(h, _)| h["dlq-reason"] == "abandoned" && h["dlq-platform"] == "tiktok").expect("abandoned");
    assert_eq!(abandoned.0["dlq-attempts"], "3");
    assert_eq!(abandoned.1["data"][0]["event_id"], click.event_id.to_string());

    // The click-outs of people, consented or not (no personal data in
    // them), queued for A's endpoint; none of the bot, none of B.
    let queued: Vec<schemas::webhooks::WebhookDelivery> = {
        use futures::TryStreamExt;
        db.collection(collections::WEBHOOK_DELIVERIES).find(doc! {}).await.unwrap().try_collect().await.unwrap()
    };
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!((queued[0].endpoint_id, queued[0].event), (hook.id, schemas::webhooks::WebhookEvent::ClicksBatch));
    let body: Value = serde_json::from_str(&queued[0].payload).unwrap();
    let mut ids: Vec<&str> =
        body["data"]["clicks"].as_array().unwrap().iter().map(|c| c["event_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = ids_of(&[&click, &denied, &dnt]);
    want.sort();
    assert_eq!(ids, want);
    assert!(
        !queued[0].payload.contains("81.2.69.160") && !queued[0].payload.contains("iPhone"),
        "no IP, no user agent"
    );

    let m = &f.metrics;
    assert_eq!(m.webhook_clicks.get(), 3);
    assert_eq!(m.skipped.with_label_values(&["no_consent"]).get(), 3);
    assert_eq!(m.skipped.with_label_values(&["engagement"]).get(), 1);
    assert_eq!(m.skipped.with_label_values(&["dnt"]).get(), 1);
    assert_eq!(m.skipped.with_label_values(&["bot"]).get(), 1);
    assert_eq!(m.skipped.with_label_values(&["no_destination"]).get(), 1);
    assert_eq!(m.skipped.with_label_values(&["unparsable"]).get(), 1);
    assert_eq!(m.retries.with_label_values(&["meta", "429"]).get(), 2);
    assert_eq!(m.dead_letters.with_label_values(&["meta", "rejected"]).get(), 1);
    assert_eq!(m.dead_letters.with_label_values(&["tiktok", "abandoned"]).get(), 1);
    assert_eq!(m.dead_letters.with_label_values(&["ga4", "abandoned"]).get(), 3);
    assert_eq!(m.retries.with_label_values(&["ga4", "transport"]).get(), 2);
    assert_eq!(m.events.with_label_values(&["meta", "delivered"]).get(), 4);
    assert_eq!(m.destinations.with_label_values(&["meta"]).get(), 3, "the paused one is not loaded");

    db.drop().await.unwrap();
}

fn ids_of(events: &[&RawEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}
