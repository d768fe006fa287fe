//! GDPR self-service against the real services: consents and newsletter
//! with history, and a data-subject export and erasure covering the CRM,
//! billing (retained) and the smartlink events in ClickHouse (erased, the
//! rollups recomputed).

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use schemas::clickhouse::{EventRow, KindCode, EVENTS_TABLE};
use serde_json::{json, Value};
use support::{code, env};

const D1: u32 = 1_772_323_200; // 2026-03-01T00:00:00Z

fn ev(kind: KindCode, ts: u32, tenant: &str, link: &str, visitor_id: &str, n: u64) -> EventRow {
    let platform = if kind == KindCode::Click { "spotify" } else { "" };
    EventRow {
        visitor_id: visitor_id.into(),
        platform: platform.into(),
        ..EventRow::minimal(uuid::Uuid::now_v7(), kind, ts, tenant, link, n, n, ts + 5)
    }
}

#[tokio::test]
async fn consents_newsletter_and_a_subject_export_then_erasure_cover_crm_billing_and_events() {
    let e = env().await;
    let (tenant, links_key) = e.tenant("gdpr-a").await;
    let key = e
        .ok(
            &e.op,
            Method::POST,
            &format!("/v1/clients/{tenant}/api-keys"),
            Some(json!({"name": "dpo", "scopes": ["gdpr:write", "crm:write", "billing:write", "analytics:read"]})),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let link = e.link(&links_key, "gdpr-link").await;
    let (s, v) =
        e.call(Some(&links_key), Method::POST, "/v1/gdpr/export", Some(json!({"email": "ada@person.test"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "a key without gdpr:write");

    // Consents with history, tied to a visitor id; the newsletter with its history.
    for (marketing, src) in [(true, "banner"), (false, "form")] {
        e.ok(&key, Method::PUT, "/v1/gdpr/consents", Some(json!({"email": "Ada@Person.test", "analytics": true, "marketing": marketing, "functional": true, "source": src, "visitor_id": "vid-ada-0001"}))).await;
    }
    let c = e.ok(&key, Method::GET, "/v1/gdpr/consents?email=ada@person.test", None).await;
    assert_eq!(
        (c["current"]["marketing"].as_bool(), c["history"].as_array().unwrap().len(), c["visitor_ids"].clone()),
        (Some(false), 2, json!(["vid-ada-0001"]))
    );
    let (s, v) = e.call(Some(&key), Method::PUT, "/v1/gdpr/consents", Some(json!({"email": "ada@person.test", "analytics": true, "marketing": true, "functional": true, "visitor_id": "x"}))).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("visitor_id")));
    e.ok(
        &key,
        Method::POST,
        "/v1/newsletter/subscribe",
        Some(json!({"email": "ada@person.test", "language": "fr", "source": "form"})),
    )
    .await;
    e.ok(
        &key,
        Method::POST,
        "/v1/newsletter/unsubscribe",
        Some(json!({"email": "ada@person.test", "source": "email_link"})),
    )
    .await;
    let n = e.ok(&key, Method::POST, "/v1/newsletter/subscribe", Some(json!({"email": "ada@person.test"}))).await;
    assert_eq!(
        (n["is_active"].as_bool(), n["language"].as_str(), n["history"].as_array().unwrap().len()),
        (Some(true), Some("fr"), 3)
    );
    e.ok(&key, Method::POST, "/v1/newsletter/subscribe", Some(json!({"email": "bob@person.test"}))).await;
    assert_eq!(e.ok(&key, Method::GET, "/v1/newsletter", None).await.as_array().unwrap().len(), 2);
    let (s, _) = e
        .call(Some(&key), Method::POST, "/v1/newsletter/unsubscribe", Some(json!({"email": "never@person.test"})))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // CRM and billing records of Ada (and of Bob, who must stay untouched).
    let lead = |first: &str, mail: &str| json!({"first_name": first, "last_name": "Person", "email": mail, "phone": "+33 6 00 00 00 01", "artist_name": format!("{first} Music")});
    let ada_lead = e.ok(&key, Method::POST, "/v1/leads", Some(lead("Ada", "ada@person.test"))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_lead = e.ok(&key, Method::POST, "/v1/leads", Some(lead("Bob", "bob@person.test"))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(
        &key,
        Method::POST,
        &format!("/v1/leads/{ada_lead}/notes"),
        Some(json!({"kind": "call", "content": "Ada prefers calls after 6pm"})),
    )
    .await;
    let conv = e.ok(&key, Method::POST, &format!("/v1/leads/{ada_lead}/convert"), Some(json!({}))).await;
    e.ok(
        &key,
        Method::POST,
        "/v1/tasks",
        Some(json!({"title": "Send Ada the contract", "related": {"kind": "lead", "id": ada_lead}})),
    )
    .await;
    let inv = e
        .ok(&key, Method::POST, "/v1/invoices", Some(json!({"client": {"name": "Ada Person", "email": "ada@person.test"}, "lines": [{"description": "Release campaign", "quantity": 1, "unit_price_minor": 50_000}], "vat_rate_bp": 2000})))
        .await;

    // Smartlink events of both visitors, rolled up.
    let rows = vec![
        ev(KindCode::View, D1 + 100, &tenant, &link, "vid-ada-0001", 1),
        ev(KindCode::Click, D1 + 110, &tenant, &link, "vid-ada-0001", 1),
        ev(KindCode::View, D1 + 5000, &tenant, &link, "vid-ada-0002", 2),
        ev(KindCode::View, D1 + 200, &tenant, &link, "vid-bob-0001", 3),
        ev(KindCode::Click, D1 + 210, &tenant, &link, "vid-bob-0001", 3),
    ];
    e.insert_and_roll(&rows).await;
    let overview =
        format!("/v1/analytics/overview?smartlink_id={link}&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z");
    let o = e.ok(&key, Method::GET, &overview, None).await;
    assert_eq!((o["views"].as_i64(), o["clicks"].as_i64()), (Some(3), Some(2)));

    // Export: everything about Ada, nothing about Bob.
    let x = e
        .ok(
            &key,
            Method::POST,
            "/v1/gdpr/export",
            Some(json!({"email": "ADA@person.test", "visitor_ids": ["vid-ada-0002"]})),
        )
        .await;
    assert_eq!(
        x["visitor_ids"],
        json!(["vid-ada-0002", "vid-ada-0001"]),
        "given ids and those recorded with the consents"
    );
    assert_eq!(
        (x["leads"].as_array().unwrap().len(), x["leads"][0]["email"].as_str(), x["leads"][0]["phone"].as_str()),
        (1, Some("ada@person.test"), Some("+33600000001"))
    );
    assert_eq!(x["contacts"][0]["id"], conv["contact"]["id"]);
    assert_eq!(x["opportunities"][0]["id"], conv["opportunity"]["id"]);
    assert!(
        x["tasks_and_activities"].as_array().unwrap().iter().any(|t| t["title"] == "Send Ada the contract"),
        "{}",
        x["tasks_and_activities"]
    );
    assert_eq!(x["invoices"][0]["number"], inv["number"]);
    assert_eq!(x["consent"]["history"].as_array().unwrap().len(), 2);
    assert_eq!(x["newsletter"]["history"].as_array().unwrap().len(), 3);
    let kinds: Vec<(&str, &str)> = x["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["visitor_id"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("view", "vid-ada-0001"), ("click", "vid-ada-0001"), ("view", "vid-ada-0002")]);
    assert_eq!(x["events"][1]["platform"], "spotify");
    assert!(!x.to_string().contains("bob@person.test") && !x.to_string().contains("vid-bob"), "nothing of Bob");

    // Erase: CRM anonymised, consents/newsletter gone, events erased and rollups recomputed, invoice retained.
    let r = e
        .ok(
            &key,
            Method::POST,
            "/v1/gdpr/erase",
            Some(json!({"email": "ada@person.test", "visitor_ids": ["vid-ada-0002"]})),
        )
        .await;
    assert_eq!(
        r,
        json!({"leads_anonymised": 1, "contacts_anonymised": 1, "consents_deleted": 1, "subscriptions_deleted": 1, "email_logs_deleted": 0,
            "events_erased": 3, "windows_rerolled": r["windows_rerolled"], "invoices_retained": 1})
    );
    assert!(r["windows_rerolled"].as_u64().unwrap() >= 2, "the hour(s) and the day: {r}");
    let after = e
        .ok(
            &key,
            Method::POST,
            "/v1/gdpr/export",
            Some(json!({"email": "ada@person.test", "visitor_ids": ["vid-ada-0001", "vid-ada-0002"]})),
        )
        .await;
    for k in ["leads", "contacts", "events"] {
        assert_eq!(after[k].as_array().unwrap().len(), 0, "{k} after erasure: {after}");
    }
    assert_eq!((after["consent"].clone(), after["newsletter"].clone()), (Value::Null, Value::Null));
    assert_eq!(after["invoices"].as_array().unwrap().len(), 1, "invoices are retained (legal obligation)");
    let l = e.ok(&key, Method::GET, &format!("/v1/leads/{ada_lead}"), None).await;
    assert_eq!(
        (l["first_name"].as_str(), l["phone"].clone(), l["notes"][0]["content"].as_str()),
        (Some("[erased]"), Value::Null, Some("[erased]"))
    );
    assert!(l["email"].as_str().unwrap().ends_with("@erased.invalid"));
    assert_eq!(e.ok(&key, Method::GET, &format!("/v1/leads/{bob_lead}"), None).await["first_name"], "Bob");
    let o = e.ok(&key, Method::GET, &overview, None).await;
    assert_eq!(
        (o["views"].as_i64(), o["clicks"].as_i64()),
        (Some(1), Some(1)),
        "only Bob's events remain, in the rollups too: {o}"
    );
    let left: u64 =
        e.ch.query(&format!("SELECT count() FROM {}.{EVENTS_TABLE} FINAL WHERE visitor_id LIKE 'vid-ada%'", e.ch_db))
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(left, 0);
    let daily: Vec<bson::Document> = futures::TryStreamExt::try_collect(
        e.mongo
            .collection::<bson::Document>("analytics_daily")
            .find(bson::doc! { "smartlinkId": bson::oid::ObjectId::parse_str(&link).unwrap() })
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        daily.iter().map(|d| d.get_document("metrics").unwrap().get_i64("totalViews").unwrap_or(0)).sum::<i64>(),
        1,
        "the MongoDB daily rollup too"
    );

    // Audited; no trace of Ada's email or phone in clear anywhere.
    let audit = e.ok(&e.op, Method::GET, &format!("/v1/audit?client_id={tenant}&resource=gdpr"), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec!["gdpr_export", "gdpr_erase", "gdpr_export", "PUT /v1/gdpr/consents", "read", "POST /v1/gdpr/export"],
        "newest first, refused requests and the consents read too"
    );
    for coll in [
        "leads",
        "contacts",
        "opportunities",
        "tasks",
        "activities",
        "consents",
        "newsletter_subscribers",
        "invoices",
        "audit_logs",
        "email_logs",
    ] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        // Also in the audit diffs of the related task, the contact's company
        // and the opportunity's title (security review finding 6).
        for pii in ["ada@person.test", "+33600000001", "prefers calls", "ada music", "send ada"] {
            assert!(!dump.contains(pii), "{coll} holds {pii}");
        }
    }
}

/// `plain` encrypted as before field binding (`enc:v1:`: no associated
/// data) with key `kid` of `raw` bytes.
fn v1_ciphertext(kid: &str, raw: &[u8; 32], plain: &str) -> String {
    use aes_gcm::aead::{Aead, KeyInit};
    use base64::Engine;
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(raw).unwrap();
    let nonce = [9u8; 12];
    let ct = cipher.encrypt(aes_gcm::Nonce::from_slice(&nonce), plain.as_bytes()).unwrap();
    format!("enc:v1:{kid}:{}", base64::engine::general_purpose::STANDARD.encode([nonce.to_vec(), ct].concat()))
}

#[tokio::test]
async fn unbound_ciphertexts_are_refused_until_rewrapped_and_a_new_key_rewraps_every_value() {
    use base64::Engine;
    let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let (k1, k2) = ([1u8; 32], [2u8; 32]);
    let index = "dGVzdC1ibGluZC1pbmRleC1rZXktMzItYnl0ZXMtbG9uZyE=";
    let keys = format!("test1:{}", b64(&k1));
    let e = support::env_custom(|cfg| cfg.pii_keys = keys.clone().into()).await;
    let (tenant, _) = e.tenant("rewrap").await;
    let (key, _) = e.key_with(&tenant, &["crm:write"]).await;
    let lead = e.ok(&key, Method::POST, "/v1/leads", Some(support::lead("Ada", "Rewrap", "ada@rewrap.test"))).await;
    let id = lead["id"].as_str().unwrap();
    let oid = bson::oid::ObjectId::parse_str(id).unwrap();
    let leads = e.mongo.collection::<bson::Document>(schemas::mongo::collections::LEADS);

    // Values as an older release wrote them: unbound, so refused.
    let legacy = bson::doc! { "$set": {
        "personal.emailEnc": v1_ciphertext("test1", &k1, "ada@rewrap.test"),
        "personal.phoneEnc": v1_ciphertext("test1", &k1, "+33612345678"),
    } };
    leads.update_one(bson::doc! { "_id": oid }, legacy).await.unwrap();
    // One of a list of ciphertexts (alert recipients) too.
    let put = json!({"emails": ["a@rewrap.test", "b@rewrap.test"]});
    e.ok(&e.op, Method::PUT, &format!("/v1/alerts/settings?client_id={tenant}"), Some(put)).await;
    let settings = e.mongo.collection::<bson::Document>(schemas::mongo::collections::ALERT_SETTINGS);
    let toid = bson::oid::ObjectId::parse_str(&tenant).unwrap();
    let v1 = v1_ciphertext("test1", &k1, "a@rewrap.test");
    settings.update_one(bson::doc! { "_id": toid }, bson::doc! { "$set": { "emailsEnc.0": v1 } }).await.unwrap();
    let (s, v) = e.call(Some(&key), Method::GET, &format!("/v1/leads/{id}"), None).await;
    assert_eq!((s, code(&v)), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{v}");

    // `api rewrap-pii` binds them; the API reads them again.
    let pii = crypto::Pii::new(&keys, index).unwrap();
    let counts = |report: &[(api::rewrap::Place, api::rewrap::Counts)], path: &str| {
        report.iter().find(|(p, _)| p.collection == "leads" && p.path == path).unwrap().1.clone()
    };
    let report = api::rewrap::run(&e.mongo, &pii).await.unwrap();
    assert_eq!(counts(&report, "personal.emailEnc").rewritten, 1);
    assert_eq!(counts(&report, "personal.phoneEnc").rewritten, 1);
    assert_eq!(counts(&report, "personal.addressEnc").rewritten, 0, "already bound under the current key");
    let emails = report.iter().find(|(p, _)| p.path == "emailsEnc").unwrap().1.clone();
    assert_eq!(emails.rewritten, 1, "the list holding a v1 value");
    let alerts = e.ok(&e.op, Method::GET, &format!("/v1/alerts/settings?client_id={tenant}"), None).await;
    assert_eq!(alerts["emails"], json!(["a@rewrap.test", "b@rewrap.test"]));
    assert!(report.iter().all(|(_, c)| c.failed == 0 && c.raced == 0), "{report:?}");
    let back = e.ok(&key, Method::GET, &format!("/v1/leads/{id}"), None).await;
    assert_eq!((back["email"].as_str(), back["phone"].as_str()), (Some("ada@rewrap.test"), Some("+33612345678")));

    // A new key first: every value of every place moves to it; then nothing is left.
    let rotated = crypto::Pii::new(&format!("test2:{},{keys}", b64(&k2)), index).unwrap();
    let report = api::rewrap::run(&e.mongo, &rotated).await.unwrap();
    for path in ["personal.emailEnc", "personal.phoneEnc", "personal.addressEnc"] {
        assert_eq!(counts(&report, path).rewritten, 1, "{path}");
    }
    let stored = leads.find_one(bson::doc! { "_id": oid }).await.unwrap().unwrap();
    let personal = stored.get_document("personal").unwrap();
    for f in ["emailEnc", "phoneEnc", "addressEnc"] {
        assert!(personal.get_str(f).unwrap().starts_with("enc:v2:test2:"), "{f}");
    }
    let owner = crypto::Field::new("leads", oid, "phone");
    assert_eq!(rotated.decrypt(personal.get_str("phoneEnc").unwrap(), owner).unwrap(), "+33612345678");
    let again = api::rewrap::run(&e.mongo, &rotated).await.unwrap();
    assert!(again.iter().all(|(_, c)| *c == api::rewrap::Counts::default()), "idempotent: {again:?}");
}
