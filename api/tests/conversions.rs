//! Issue #19: conversion destinations through the API: created per
//! platform with its account id's rules, credentials stored encrypted and
//! never answered (nor in the audit log), changed, paused, deleted, the
//! delivery log read back, and the roles' limits.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{code, env, user_session};

#[tokio::test]
async fn destinations_keep_their_credentials_secret_and_follow_each_platforms_rules() {
    let e = env().await;
    let (a, _) = e.tenant("conv-a").await;
    let (admin, _) = user_session(&e, &a, "admin@conv-a.test", "admin").await;
    let (manager, _) = user_session(&e, &a, "manager@conv-a.test", "manager").await;
    let (viewer, _) = user_session(&e, &a, "viewer@conv-a.test", "viewer").await;

    let meta = json!({"platform": "meta", "name": "Label pixel", "pixel_id": "1234567890", "credential": "EAAB-secret-token-1"});
    let d = e.ok(&admin, Method::POST, "/v1/destinations", Some(meta.clone())).await;
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["platform"], "meta");
    assert_eq!(d["credential_set"], true);
    assert_eq!(d["events"], json!(["view", "click"]), "both by default");
    assert_eq!(d["enabled"], true);
    assert!(!d.to_string().contains("EAAB-secret"), "the credential is never answered: {d}");

    // Stored encrypted, bound to the destination: the api's own keys read it.
    let stored: schemas::conversions::Destination = e
        .mongo
        .collection(schemas::mongo::collections::CONVERSION_DESTINATIONS)
        .find_one(bson::doc! { "_id": bson::oid::ObjectId::parse_str(&id).unwrap() })
        .await
        .unwrap()
        .unwrap();
    assert!(stored.credential_enc.starts_with("enc:v2:"), "{}", stored.credential_enc);
    assert!(!stored.credential_enc.contains("EAAB"));

    // Each platform's account id rule.
    for (platform, pixel, ok) in [
        ("meta", "G-ABC123", false),
        ("meta", "12ab", false),
        ("ga4", "G-ABC123", true),
        ("ga4", "123456", false),
        ("tiktok", "C9ABCDEF12", true),
        ("tiktok", "c9-lower", false),
        ("snapchat", "1234", false),
    ] {
        let body = json!({"platform": platform, "name": "x", "pixel_id": pixel, "credential": "secret-123"});
        let (s, v) = e.call(Some(&admin), Method::POST, "/v1/destinations", Some(body)).await;
        assert_eq!(s.is_success(), ok, "{platform} {pixel}: {s} {v}");
        if !ok {
            assert_eq!(s, StatusCode::BAD_REQUEST);
            assert!(["pixel_id", "platform"].contains(&v["error"]["field"].as_str().unwrap()), "{v}");
        }
    }
    let (s, v) = e
        .call(
            Some(&admin),
            Method::POST,
            "/v1/destinations",
            Some(json!({"platform": "ga4", "name": "x", "pixel_id": "G-ABC123", "credential": "short"})),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("credential")));
    let (s, v) = e
        .call(Some(&admin), Method::POST, "/v1/destinations", Some(json!({"platform": "ga4", "name": "x", "pixel_id": "G-ABC123", "credential": "secret-123", "events": []})))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("events")));

    // Changed: a new credential, clicks only, paused; still never answered.
    let p = e
        .ok(&admin, Method::PATCH, &format!("/v1/destinations/{id}"), Some(json!({"credential": "EAAB-rotated-2", "events": ["click"], "enabled": false, "test_event_code": "TEST42"})))
        .await;
    assert_eq!(
        (p["events"].clone(), p["enabled"].clone(), p["test_event_code"].clone()),
        (json!(["click"]), json!(false), json!("TEST42"))
    );
    assert!(!p.to_string().contains("rotated"));
    let (s, _) = e
        .call(Some(&admin), Method::PATCH, &format!("/v1/destinations/{id}"), Some(json!({"pixel_id": "G-ABC123"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a Meta destination keeps a Meta pixel id");

    // The audit log names the change, never the credential.
    let audit = e.ok(&admin, Method::GET, "/v1/audit?resource=destinations", None).await;
    let text = audit.to_string();
    assert!(text.contains(&id), "{text}");
    assert!(!text.contains("EAAB") && !text.contains("enc:v2"), "{text}");

    // Roles: a manager reads, a viewer does not see them; neither changes them.
    assert_eq!(e.ok(&manager, Method::GET, "/v1/destinations", None).await.as_array().unwrap().len(), 3);
    let (s, _) =
        e.call(Some(&manager), Method::PATCH, &format!("/v1/destinations/{id}"), Some(json!({"enabled": true}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = e.call(Some(&viewer), Method::GET, "/v1/destinations", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = e.call(Some(&manager), Method::POST, "/v1/destinations", Some(meta.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");

    // The delivery log, as the forwarder writes it.
    let log = schemas::conversions::DeliveryLog {
        id: bson::oid::ObjectId::new(),
        client_id: bson::oid::ObjectId::parse_str(&a).unwrap(),
        destination_id: bson::oid::ObjectId::parse_str(&id).unwrap(),
        platform: schemas::conversions::Platform::Meta,
        outcome: schemas::conversions::DeliveryOutcome::Rejected,
        status: Some(400),
        attempts: 1,
        event_ids: vec!["0193a4f2-0000-7000-8000-000000000001".into()],
        answer: Some("{\"error\":{\"code\":100}}".into()),
        at: bson::DateTime::now(),
    };
    e.mongo
        .collection::<schemas::conversions::DeliveryLog>(schemas::mongo::collections::CONVERSION_DELIVERIES)
        .insert_one(&log)
        .await
        .unwrap();
    let got = e.ok(&manager, Method::GET, &format!("/v1/destinations/{id}/deliveries?outcome=rejected"), None).await;
    assert_eq!(got[0]["outcome"], "rejected");
    assert_eq!(got[0]["status"], 400);
    assert_eq!(got[0]["events"], 1);
    let none = e.ok(&manager, Method::GET, &format!("/v1/destinations/{id}/deliveries?outcome=delivered"), None).await;
    assert_eq!(none, json!([]));

    // A key with the scope manages them; one without does not.
    let (kw, _) = e.key_with(&a, &["destinations:write"]).await;
    assert_eq!(e.ok(&kw, Method::GET, &format!("/v1/destinations/{id}"), None).await["id"], id.as_str());
    let (kr, _) = e.key_with(&a, &["analytics:read"]).await;
    let (s, _) = e.call(Some(&kr), Method::GET, "/v1/destinations", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Deleted.
    let (s, _) = e.call(Some(&admin), Method::DELETE, &format!("/v1/destinations/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.call(Some(&admin), Method::GET, &format!("/v1/destinations/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
