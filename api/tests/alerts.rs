//! Issue #16, seed 002: tenants' tracking-health alerts, from events in
//! ClickHouse to an email in the outbox and a signed webhook on a local
//! HTTP receiver, with de-duplication, retries and the delivery log.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api::alerts::health::Windows;
use api::alerts::notifier::sign;
use api::alerts::Notifier;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use schemas::alerts::AlertKind;
use schemas::clickhouse::{ConsentCode, EventRow, KindCode};
use serde_json::{json, Value};
use support::{code, env};

/// What the receiver saw: (path, headers, body).
type Seen = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// A local webhook receiver: `/hook` answers 500 to its first request and
/// 200 after; `/gone` always answers 410.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let hits = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let (seen, hits) = (s1.clone(), hits.clone());
                async move {
                    seen.lock().unwrap().push(("/hook".into(), h, body));
                    if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                        AxumStatus::INTERNAL_SERVER_ERROR
                    } else {
                        AxumStatus::OK
                    }
                }
            }),
        )
        .route(
            "/gone",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let seen = s2.clone();
                async move {
                    seen.lock().unwrap().push(("/gone".into(), h, body));
                    AxumStatus::GONE
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn view(ts: u32, tenant: &str, n: u64, consent: ConsentCode) -> EventRow {
    EventRow { consent, ..EventRow::minimal(uuid::Uuid::now_v7(), KindCode::View, ts, tenant, "l1", n, n, ts + 5) }
}

fn kinds(v: &[(bson::oid::ObjectId, AlertKind)]) -> Vec<AlertKind> {
    let mut k: Vec<AlertKind> = v.iter().map(|x| x.1).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tracking_health_alerts_reach_email_and_signed_webhook_once_with_retries() {
    let e = env().await;
    let (hook_base, seen) = receiver().await;
    let (a, a_key) = e.tenant("alerts-a").await; // has a GA4 pixel
    let (_, b_key) = e.tenant("alerts-b").await;
    let (c, _) = e.tenant("alerts-c").await;
    let a_oid = bson::oid::ObjectId::parse_str(&a).unwrap();

    // Settings: validated, tenant-scoped, the secret shown once.
    let put = |url: String, rate: f64| json!({"emails": ["Label@A.test"], "webhook_url": url, "thresholds": {"client_rate_min": rate}});
    // A key with links and analytics scopes reads alerts but may not change them.
    let (s, _) =
        e.call(Some(&a_key), Method::PUT, "/v1/alerts/settings", Some(put(format!("{hook_base}/hook"), 0.95))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (admin_key, _) = e.key_with(&a, &["alerts:write"]).await;
    let (s, body) =
        e.call(Some(&admin_key), Method::PUT, "/v1/alerts/settings", Some(json!({"emails": ["nope"]}))).await;
    assert_eq!((s, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    let (s, body) = e
        .call(Some(&admin_key), Method::PUT, "/v1/alerts/settings", Some(json!({"kinds": ["bounce_rate_high"]})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = e
        .call(
            Some(&admin_key),
            Method::PUT,
            "/v1/alerts/settings",
            Some(json!({"thresholds": {"client_rate_min": 1.5}})),
        )
        .await;
    assert_eq!((s, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("thresholds.client_rate_min")));
    let saved =
        e.ok(&admin_key, Method::PUT, "/v1/alerts/settings", Some(put(format!("{hook_base}/hook"), 0.95))).await;
    let secret = saved["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(saved["emails"], json!(["label@a.test"]));
    let got = e.ok(&a_key, Method::GET, "/v1/alerts/settings", None).await;
    assert!(got.get("webhook_secret").is_none() && got["webhook_secret_set"] == json!(true), "{got}");
    assert_eq!(got["kinds"].as_array().unwrap().len(), 4);
    let got_b = e.ok(&b_key, Method::GET, "/v1/alerts/settings", None).await;
    assert_eq!((got_b["emails"].clone(), got_b["webhook_url"].clone()), (json!([]), Value::Null), "B sees its own");
    let (s, _) = e.call(Some(&b_key), Method::GET, &format!("/v1/alerts/settings?client_id={a}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // C's webhook is gone for good (410).
    e.ok(
        &e.op,
        Method::PUT,
        &format!("/v1/alerts/settings?client_id={c}"),
        Some(json!({"webhook_url": format!("{hook_base}/gone")})),
    )
    .await;

    // Traffic: A's last complete hour has 200 human views, none of which
    // could fire its pixels (no consent), against 20 a week before; one
    // later view shows the pipeline is past the hour. C: 150 views in the
    // hour, 150 a week before (a steady tenant with pixels and no consent:
    // client_rate_low and pixels_silent). B: nothing.
    let settle = e.api.state.cfg.alerts_settle_secs;
    let now = (bson::DateTime::now().timestamp_millis() / 1000) as u32;
    // Slots from a minute after this hour's first judgeable one: the
    // judged hour stays the same over the test's 20 minutes of slots.
    let slot = now / 3600 * 3600 + settle + 60;
    let w = Windows::ending(slot - settle);
    let mut rows = Vec::new();
    for i in 0..200 {
        rows.push(view(w.hour + i, &a, i as u64, ConsentCode::Unknown));
    }
    for i in 0..20 {
        rows.push(view(w.last_week() + i, &a, 1000 + i as u64, ConsentCode::Granted));
    }
    rows.push(view(w.hour + 3600, &a, 2000, ConsentCode::Denied));
    let bot = EventRow { is_bot: 1, ..view(w.hour + 7, &a, 3000, ConsentCode::Granted) };
    rows.push(bot);
    for i in 0..150 {
        rows.push(view(w.hour + i, &c, 5000 + i as u64, ConsentCode::Unknown));
        rows.push(view(w.last_week() + i, &c, 6000 + i as u64, ConsentCode::Unknown));
    }
    e.insert(&rows).await;

    let n1 = Notifier::new(e.api.state.clone()).unwrap();
    let n2 = Notifier::new(e.api.state.clone()).unwrap();
    let first = n1.evaluate(slot).await.unwrap();
    let fired_a: Vec<_> = first.fired.iter().filter(|f| f.0 == a_oid).copied().collect();
    assert_eq!(
        kinds(&fired_a),
        [AlertKind::ClientRateLow, AlertKind::TrafficSpike, AlertKind::PixelsSilent],
        "the bot and last week's consented views are not counted: {first:?}"
    );
    assert_eq!(first.tenants, 3);
    assert!(first.resolved.is_empty());
    assert_eq!(first.deliveries, 3 * 2 + 2, "A: 3 alerts x (email + webhook); C: 2 alerts x webhook");
    // De-duplication: the same slot again, a later slot, two instances at once.
    assert_eq!(n1.evaluate(slot).await.unwrap().deliveries, 0);
    let (x, y) = tokio::join!(n1.evaluate(slot + 300), n2.evaluate(slot + 300));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        (x.deliveries, y.deliveries, x.fired.len() + y.fired.len()),
        (0, 0, 0),
        "still firing: no new notification"
    );

    // Sending: emails and webhooks; A's first webhook gets a 500 and is
    // retried after the backoff, C's gets a 410 and fails for good.
    let t0 = bson::DateTime::now();
    let sent = n1.deliver_due(t0).await.unwrap();
    assert_eq!((sent.delivered, sent.retried, sent.failed), (5, 1, 2), "{sent:?}");
    assert_eq!(n1.deliver_due(t0).await.unwrap(), api::alerts::Sent::default(), "the retry is not due yet");
    let later = bson::DateTime::from_millis(t0.timestamp_millis() + 61_000);
    assert_eq!(n2.deliver_due(later).await.unwrap().delivered, 1, "retried after the backoff");

    let mails = e.mails_to("label@a.test");
    assert_eq!(mails.len(), 3, "one email per alert");
    assert!(mails.iter().any(|m| m.contains("[ALERT] Client-side tracking saw 0.0% of 20")), "{}", mails[0]);
    assert!(mails.iter().any(|m| m.contains("Traffic spike: 200 views")));
    let hooks: Vec<(String, HeaderMap, String)> = seen.lock().unwrap().clone();
    let a_hooks: Vec<_> = hooks.iter().filter(|h| h.0 == "/hook").collect();
    assert_eq!(a_hooks.len(), 4, "3 notifications, one of them twice");
    for (_, h, body) in &a_hooks {
        let header = |k: &str| h.get(k).unwrap().to_str().unwrap().to_string();
        let expected = sign(&secret, &header("webhook-id"), &header("webhook-timestamp"), body).unwrap();
        assert_eq!(header("webhook-signature"), expected, "Standard Webhooks signature");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["data"]["client_id"].as_str()),
            (Some("tracking_health.firing"), Some(a.as_str()))
        );
    }
    let ids: std::collections::BTreeSet<String> =
        a_hooks.iter().map(|(_, h, _)| h.get("webhook-id").unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "the retry carries the same webhook-id");

    // The delivery log and the health route, tenant-scoped.
    let log = e.ok(&a_key, Method::GET, "/v1/alerts/deliveries", None).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:?}");
    assert_eq!(log.iter().filter(|d| d["attempts"] == 2).count(), 1);
    assert!(log.iter().any(|d| d["target"] == "l***@a.test"), "emails masked in the log");
    let c_log = e.ok(&e.op, Method::GET, &format!("/v1/alerts/deliveries?client_id={c}"), None).await;
    assert!(c_log.as_array().unwrap().iter().all(|d| d["status"] == "failed" && d["attempts"] == 1), "{c_log}");
    assert_eq!(e.ok(&b_key, Method::GET, "/v1/alerts/deliveries", None).await, json!([]));
    let (s, _) = e.call(Some(&b_key), Method::GET, &format!("/v1/alerts/deliveries?client_id={a}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let health = e.ok(&a_key, Method::GET, "/v1/alerts", None).await;
    assert_eq!(health["status"], "warning");
    assert_eq!(health["alerts"].as_array().unwrap().iter().filter(|x| x["firing"] == true).count(), 3, "{health}");
    assert_eq!(e.ok(&b_key, Method::GET, "/v1/alerts", None).await["status"], "healthy");

    // Resolution: A lowers its threshold to 0 (nothing is below it) and a
    // consented view arrives: both client-side alerts resolve, once, even
    // with two instances judging the same slot.
    e.ok(&admin_key, Method::PUT, "/v1/alerts/settings", Some(put(format!("{hook_base}/hook"), 0.0))).await;
    e.insert(&[view(w.hour + 100, &a, 4000, ConsentCode::Granted)]).await;
    let (x, y) = tokio::join!(n1.evaluate(slot + 600), n2.evaluate(slot + 600));
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut resolved = x.resolved.clone();
    resolved.extend(y.resolved.iter().copied());
    assert_eq!(kinds(&resolved), [AlertKind::ClientRateLow, AlertKind::PixelsSilent]);
    assert_eq!(x.deliveries + y.deliveries, 4);
    n1.deliver_due(bson::DateTime::now()).await.unwrap();
    assert_eq!(e.mails_to("label@a.test").iter().filter(|m| m.contains("[RESOLVED]")).count(), 2);

    // A firing nobody was told of (D had no recipients then) ends silently
    // even once D has some.
    let (d, _) = e.tenant("alerts-d").await;
    let mut quiet = Vec::new();
    for i in 0..120 {
        quiet.push(view(w.hour + i, &d, 7000 + i as u64, ConsentCode::Unknown));
    }
    e.insert(&quiet).await;
    let fired = n1.evaluate(slot + 900).await.unwrap();
    assert_eq!(
        (kinds(&fired.fired).len(), fired.deliveries),
        (2, 0),
        "client_rate_low and pixels_silent, told to nobody"
    );
    let settings = json!({"emails": ["ops@d.test"], "thresholds": {"client_rate_min": 0.0, "min_views": 1000}});
    e.ok(&e.op, Method::PUT, &format!("/v1/alerts/settings?client_id={d}"), Some(settings)).await;
    let resolved = n1.evaluate(slot + 1200).await.unwrap();
    assert_eq!((resolved.resolved.len(), resolved.deliveries), (2, 0), "{resolved:?}");

    // Prometheus sees each tenant's health.
    let metrics =
        e.http.get(format!("http://{}/metrics", e.api.admin_addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"api_tenant_alert_firing{kind="traffic_spike",tenant="alerts-a"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"api_tenant_hour_views{tenant="alerts-a",week="last"} 20"#));
    assert!(metrics.contains(r#"api_tenant_alert_deliveries_total{channel="webhook",outcome="failed"} 2"#));
}
