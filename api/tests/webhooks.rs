//! Issue #19: tenant webhooks. An endpoint subscribed to link events gets
//! each change as a Standard Webhooks message (id, timestamp, HMAC-SHA256
//! signature verifiable with its secret), retried after a 500, logged,
//! replayed by hand with the same id; unsubscribed events and paused
//! endpoints get nothing; the daily digest is made once per day.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use api::webhooks::dispatch::Dispatcher;
use api::webhooks::signing::sign;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{env, user_session};

/// What the receiver saw: (headers, body).
type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver answering 500 to its first message and 200 after.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: String| {
            let seen = s.clone();
            async move {
                let mut v = seen.lock().unwrap();
                v.push((h, body));
                if v.len() == 1 {
                    AxumStatus::INTERNAL_SERVER_ERROR
                } else {
                    AxumStatus::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn link_changes_reach_a_subscribed_endpoint_signed_retried_logged_and_replayable() {
    let e = env().await;
    let (a, key) = e.tenant("hooks-a").await;
    let (admin, _) = user_session(&e, &a, "admin@hooks-a.test", "admin").await;
    let (viewer, _) = user_session(&e, &a, "viewer@hooks-a.test", "viewer").await;
    let (url, seen) = receiver().await;

    let ep = e
        .ok(
            &admin,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": url, "events": ["link.created", "link.archived", "digest.daily"]})),
        )
        .await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{ep}");
    let id = ep["id"].as_str().unwrap().to_string();
    let again = e.ok(&admin, Method::GET, &format!("/v1/webhooks/{id}"), None).await;
    assert!(again.get("secret").is_none(), "the secret is shown once: {again}");
    let (s, v) =
        e.call(Some(&admin), Method::POST, "/v1/webhooks", Some(json!({"url": url, "events": ["link.deleted"]}))).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("events[0]")));
    let (s, _) = e.call(Some(&viewer), Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a viewer does not see the endpoints");

    // A created link (subscribed), a changed one (not subscribed), an archived one.
    let link = e.link(&key, "hooked").await;
    e.ok(
        &key,
        Method::PATCH,
        &format!("/v1/smartlinks/{link}"),
        Some(json!({"track": {"title": "New", "artist_name": "Jiro"}})),
    )
    .await;
    let (s, _) = e.call(Some(&key), Method::DELETE, &format!("/v1/smartlinks/{link}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let d = Dispatcher::new(e.api.state.clone()).unwrap();
    let now = bson::DateTime::now();
    let sent = d.deliver_due(now).await.unwrap();
    assert_eq!((sent.delivered, sent.retried), (1, 1), "the first answer was a 500: {sent:?}");
    let log = e.ok(&admin, Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "created and archived, not updated: {log:?}");
    let pending: Vec<&Value> = log.iter().filter(|m| m["status"] == "pending").collect();
    assert_eq!((pending.len(), pending[0]["last_status"].as_u64()), (1, Some(500)));
    // The retry, after its backoff (30 s by default).
    let later = bson::DateTime::from_millis(now.timestamp_millis() + 31_000);
    assert_eq!(d.deliver_due(later).await.unwrap().delivered, 1);

    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let before = seen.lock().unwrap().len();
    // A CSV import: one link.created message per link.
    let r = e
        .http
        .post(format!("{}/v1/smartlinks/import", e.base))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body("slug,title,artist,spotify\nbulk-a,T,A,https://open.spotify.com/track/1\nbulk-b,T,A,https://open.spotify.com/track/2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(d.deliver_due(bson::DateTime::now()).await.unwrap().delivered, 2);
    let imported: Vec<Value> =
        seen.lock().unwrap()[before..].iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    let mut slugs: Vec<&str> = imported.iter().map(|b| b["data"]["slug"].as_str().unwrap()).collect();
    slugs.sort();
    assert_eq!(slugs, ["bulk-a", "bulk-b"]);
    assert!(imported.iter().all(|b| b["type"] == "link.created"));
    for (h, body) in &got {
        let (mid, ts) = (h["webhook-id"].to_str().unwrap(), h["webhook-timestamp"].to_str().unwrap());
        assert_eq!(
            h["webhook-signature"].to_str().unwrap(),
            sign(&secret, mid, ts, body).unwrap(),
            "verifies with the secret"
        );
    }
    assert_eq!(
        got[0].0["webhook-id"],
        got.iter().skip(1).find(|(h, _)| h["webhook-id"] == got[0].0["webhook-id"]).unwrap().0["webhook-id"],
        "a retry keeps its id"
    );
    let bodies: Vec<Value> = got.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    let created = bodies.iter().find(|b| b["type"] == "link.created").unwrap();
    assert_eq!(
        (created["data"]["id"].as_str(), created["data"]["slug"].as_str()),
        (Some(link.as_str()), Some("hooked"))
    );
    assert!(bodies.iter().any(|b| b["type"] == "link.archived" && b["data"]["id"] == link.as_str()));

    // Replayed by hand: pending again, sent again with the same id.
    let first = log.iter().find(|m| m["event"] == "link.created").unwrap()["id"].as_str().unwrap().to_string();
    let (s, r) =
        e.call(Some(&admin), Method::POST, &format!("/v1/webhooks/{id}/deliveries/{first}/replay"), None).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{r}");
    assert_eq!(d.deliver_due(bson::DateTime::now()).await.unwrap().delivered, 1);
    assert_eq!(seen.lock().unwrap().last().unwrap().0["webhook-id"], first.as_str());

    // The daily digest: once per endpoint and day, with yesterday's
    // numbers, not before the day's last events had time to arrive.
    let day_start = bson::DateTime::now().timestamp_millis() / 86_400_000 * 86_400_000;
    let at = |ms: i64| bson::DateTime::from_millis(day_start + ms);
    assert_eq!(d.digests(at(60_000)).await.unwrap(), 0, "a minute into the day: too early");
    assert_eq!(d.digests(at(12 * 3_600_000)).await.unwrap(), 1);
    assert_eq!(d.digests(at(13 * 3_600_000)).await.unwrap(), 0, "made once");
    assert_eq!(d.deliver_due(bson::DateTime::now()).await.unwrap().delivered, 1);
    let digest: Value = serde_json::from_str(&seen.lock().unwrap().last().unwrap().1).unwrap();
    assert_eq!(
        (digest["type"].as_str(), digest["data"]["views"].as_i64()),
        (Some("digest.daily"), Some(0)),
        "{digest}"
    );

    // Paused: nothing queued; rotated: a new secret; deleted.
    let p = e
        .ok(
            &admin,
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"enabled": false, "rotate_secret": true})),
        )
        .await;
    assert!(p["secret"].as_str().is_some_and(|s| s != secret), "{p}");
    e.link(&key, "quiet").await;
    assert_eq!(d.deliver_due(bson::DateTime::now()).await.unwrap(), Default::default());
    let (s, _) = e.call(Some(&admin), Method::DELETE, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
