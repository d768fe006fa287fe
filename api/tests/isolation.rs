//! Issue #21: tenant isolation on every `{id}` route. Tenant B, with an
//! admin session and with a key holding every scope, calls each route on a
//! real record of tenant A: every answer is a 404 (another tenant's ids are
//! indistinguishable from unknown ones), or a 403 where no tenant principal
//! may call the route at all. The table must name every `{id}` operation
//! of the OpenAPI document, so a new route cannot skip the check; and A's
//! records are unchanged afterwards.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{env, lead, user_session};

#[tokio::test]
async fn another_tenants_records_answer_404_on_every_id_route() {
    let e = env().await;
    let (a, a_links) = e.tenant("iso-a").await;
    let (b, _) = e.tenant("iso-b").await;
    let (ta, a_user) = user_session(&e, &a, "admin@iso-a.test", "admin").await;
    let (tb, _) = user_session(&e, &b, "admin@iso-b.test", "admin").await;
    let scopes = [
        "links:write",
        "analytics:read",
        "crm:write",
        "campaigns:write",
        "billing:write",
        "gdpr:write",
        "alerts:write",
        "destinations:write",
        "webhooks:write",
    ];
    let (kb, _) = e.key_with(&b, &scopes).await;
    let (_, a_key_id) = e.key_with(&a, &["links:read"]).await;

    // One record of each kind in A.
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    let link = e.link(&a_links, "iso-link").await;
    let lead1 = id(e.ok(&ta, Method::POST, "/v1/leads", Some(lead("Jiro", "Jiro", "jiro@iso.test"))).await);
    let lead2 = id(e.ok(&ta, Method::POST, "/v1/leads", Some(lead("Nova", "Nova", "nova@iso.test"))).await);
    let conv = e.ok(&ta, Method::POST, &format!("/v1/leads/{lead2}/convert"), Some(json!({"value_minor": 1000}))).await;
    let (contact, opportunity) = (id(conv["contact"].clone()), id(conv["opportunity"].clone()));
    let task = id(e
        .ok(
            &ta,
            Method::POST,
            "/v1/tasks",
            Some(json!({"title": "Call", "kind": "CALL", "related": {"kind": "lead", "id": lead1}})),
        )
        .await);
    let campaign = id(e
        .ok(&ta, Method::POST, "/v1/campaigns", Some(json!({"name": "Iso", "kind": "acquisition", "start_date": "2026-03-01",
            "end_date": "2026-03-31", "budget_minor": 1000, "currency": "EUR", "billing_model": "fixed", "platforms": [{"name": "meta"}]})))
        .await);
    let invoice = id(e
        .ok(
            &ta,
            Method::POST,
            "/v1/invoices",
            Some(json!({
            "client": {"name": "Ada", "email": "ada@iso.test", "address": "1 rue\nParis", "country": "FR"},
            "issuer": {"name": "Agency", "address": "2 rue\nParis"},
            "lines": [{"description": "Promo", "quantity": 1, "unit_price_minor": 10_000}], "vat_rate_bp": 2000,
            "issue_date": "2026-03-10", "currency": "EUR"})),
        )
        .await);

    let destination = id(e
        .ok(
            &ta,
            Method::POST,
            "/v1/destinations",
            Some(json!({"platform": "meta", "name": "Iso", "pixel_id": "1234567890", "credential": "iso-secret-1"})),
        )
        .await);

    let hook = id(e
        .ok(
            &ta,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://hooks.iso.test/in", "events": ["link.created"]})),
        )
        .await);
    let hook_msg = {
        let d = schemas::webhooks::WebhookDelivery::new(
            bson::oid::ObjectId::parse_str(&a).unwrap(),
            bson::oid::ObjectId::parse_str(&hook).unwrap(),
            schemas::webhooks::WebhookEvent::LinkCreated,
            json!({}),
        );
        e.mongo
            .collection::<schemas::webhooks::WebhookDelivery>(schemas::mongo::collections::WEBHOOK_DELIVERIES)
            .insert_one(&d)
            .await
            .unwrap();
        d.id.to_hex()
    };

    // (method, route template, concrete path, body; expected status).
    let kpi = json!([{"date": "2026-03-02", "platform": "meta", "impressions": 1}]);
    let nf = StatusCode::NOT_FOUND;
    let operator_only = StatusCode::FORBIDDEN;
    let table: Vec<(Method, &str, String, Option<Value>, StatusCode)> = vec![
        (Method::GET, "/v1/clients/{id}", format!("/v1/clients/{a}"), None, nf),
        (Method::PATCH, "/v1/clients/{id}", format!("/v1/clients/{a}"), Some(json!({"name": "Stolen"})), nf),
        (
            Method::POST,
            "/v1/clients/{id}/api-keys",
            format!("/v1/clients/{a}/api-keys"),
            Some(json!({"name": "x", "scopes": ["links:read"]})),
            operator_only,
        ),
        (Method::GET, "/v1/clients/{id}/api-keys", format!("/v1/clients/{a}/api-keys"), None, operator_only),
        (
            Method::DELETE,
            "/v1/clients/{id}/api-keys/{key_id}",
            format!("/v1/clients/{a}/api-keys/{a_key_id}"),
            None,
            operator_only,
        ),
        (Method::PATCH, "/v1/users/{id}", format!("/v1/users/{a_user}"), Some(json!({"first_name": "Eve"})), nf),
        (Method::GET, "/v1/smartlinks/{id}", format!("/v1/smartlinks/{link}"), None, nf),
        (Method::GET, "/v1/smartlinks/{id}/qr", format!("/v1/smartlinks/{link}/qr"), None, nf),
        (Method::PATCH, "/v1/smartlinks/{id}", format!("/v1/smartlinks/{link}"), Some(json!({"slug": "stolen"})), nf),
        (Method::DELETE, "/v1/smartlinks/{id}", format!("/v1/smartlinks/{link}"), None, nf),
        (Method::GET, "/v1/leads/{id}", format!("/v1/leads/{lead1}"), None, nf),
        (Method::PATCH, "/v1/leads/{id}", format!("/v1/leads/{lead1}"), Some(json!({"score": 1})), nf),
        (Method::DELETE, "/v1/leads/{id}", format!("/v1/leads/{lead1}"), None, nf),
        (
            Method::POST,
            "/v1/leads/{id}/notes",
            format!("/v1/leads/{lead1}/notes"),
            Some(json!({"kind": "general", "content": "x"})),
            nf,
        ),
        (Method::POST, "/v1/leads/{id}/convert", format!("/v1/leads/{lead1}/convert"), Some(json!({})), nf),
        (Method::GET, "/v1/contacts/{id}", format!("/v1/contacts/{contact}"), None, nf),
        (Method::PATCH, "/v1/contacts/{id}", format!("/v1/contacts/{contact}"), Some(json!({"company": "Evil"})), nf),
        (Method::DELETE, "/v1/contacts/{id}", format!("/v1/contacts/{contact}"), None, nf),
        (
            Method::PATCH,
            "/v1/opportunities/{id}",
            format!("/v1/opportunities/{opportunity}"),
            Some(json!({"value_minor": 1})),
            nf,
        ),
        (Method::PATCH, "/v1/tasks/{id}", format!("/v1/tasks/{task}"), Some(json!({"status": "COMPLETED"})), nf),
        (Method::GET, "/v1/campaigns/{id}", format!("/v1/campaigns/{campaign}"), None, nf),
        (
            Method::PATCH,
            "/v1/campaigns/{id}",
            format!("/v1/campaigns/{campaign}"),
            Some(json!({"status": "active"})),
            nf,
        ),
        (Method::PUT, "/v1/campaigns/{id}/kpis", format!("/v1/campaigns/{campaign}/kpis"), Some(kpi), nf),
        (Method::GET, "/v1/campaigns/{id}/kpis", format!("/v1/campaigns/{campaign}/kpis"), None, nf),
        (Method::POST, "/v1/campaigns/{id}/kpis/import", format!("/v1/campaigns/{campaign}/kpis/import"), None, nf),
        (Method::GET, "/v1/campaigns/{id}/performance", format!("/v1/campaigns/{campaign}/performance"), None, nf),
        (Method::GET, "/v1/invoices/{id}", format!("/v1/invoices/{invoice}"), None, nf),
        (Method::PATCH, "/v1/invoices/{id}", format!("/v1/invoices/{invoice}"), Some(json!({"status": "SENT"})), nf),
        (Method::GET, "/v1/invoices/{id}/pdf", format!("/v1/invoices/{invoice}/pdf"), None, nf),
        (Method::POST, "/v1/invoices/{id}/send", format!("/v1/invoices/{invoice}/send"), Some(json!({})), nf),
        (
            Method::POST,
            "/v1/invoices/{id}/payments",
            format!("/v1/invoices/{invoice}/payments"),
            Some(json!({"amount_minor": 100, "method": "CARD"})),
            nf,
        ),
        (Method::GET, "/v1/invoices/{id}/payments", format!("/v1/invoices/{invoice}/payments"), None, nf),
        (Method::GET, "/v1/destinations/{id}", format!("/v1/destinations/{destination}"), None, nf),
        (
            Method::PATCH,
            "/v1/destinations/{id}",
            format!("/v1/destinations/{destination}"),
            Some(json!({"enabled": false})),
            nf,
        ),
        (Method::DELETE, "/v1/destinations/{id}", format!("/v1/destinations/{destination}"), None, nf),
        (
            Method::GET,
            "/v1/destinations/{id}/deliveries",
            format!("/v1/destinations/{destination}/deliveries"),
            None,
            nf,
        ),
        (Method::GET, "/v1/webhooks/{id}", format!("/v1/webhooks/{hook}"), None, nf),
        (Method::PATCH, "/v1/webhooks/{id}", format!("/v1/webhooks/{hook}"), Some(json!({"enabled": false})), nf),
        (Method::DELETE, "/v1/webhooks/{id}", format!("/v1/webhooks/{hook}"), None, nf),
        (Method::GET, "/v1/webhooks/{id}/deliveries", format!("/v1/webhooks/{hook}/deliveries"), None, nf),
        (
            Method::POST,
            "/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
            format!("/v1/webhooks/{hook}/deliveries/{hook_msg}/replay"),
            None,
            nf,
        ),
    ];

    // Every `{id}` operation of the OpenAPI document is in the table.
    let doc = e.ok(&e.op, Method::GET, "/v1/openapi.json", None).await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        for m in
            ops.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
        {
            assert!(
                table.iter().any(|(tm, tp, ..)| tm.as_str().eq_ignore_ascii_case(m) && tp == path),
                "{m} {path} has no isolation case"
            );
        }
    }

    for (m, template, path, body, expected) in &table {
        for (who, key) in [("B admin session", &tb), ("B key with every scope", &kb)] {
            let mut req = e.http.request(m.clone(), format!("{}{path}", e.base)).bearer_auth(key);
            req = match (body, template.ends_with("/import")) {
                (_, true) => req.header("content-type", "text/csv").body("date,platform\n2026-03-02,meta\n"),
                (Some(b), _) => req.json(b).header("Idempotency-Key", "iso"),
                (None, _) => req,
            };
            let r = req.send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            // A key may lack the one permission a route needs (users are
            // sessions' business): that 403 leaks nothing either.
            let lacks = status == StatusCode::FORBIDDEN && text.contains("permission");
            assert!(
                status == *expected || (*expected == nf && lacks && who.contains("key")),
                "{who}: {m} {template}: {status} {text}"
            );
        }
    }

    // A's records are untouched.
    assert_eq!(e.ok(&ta, Method::GET, &format!("/v1/leads/{lead1}"), None).await["id"], lead1.as_str());
    assert_eq!(
        e.ok(&ta, Method::GET, &format!("/v1/contacts/{contact}"), None).await["company"],
        conv["contact"]["company"]
    );
    assert_eq!(e.ok(&a_links, Method::GET, &format!("/v1/smartlinks/{link}"), None).await["slug"], "iso-link");
    assert_eq!(e.ok(&ta, Method::GET, &format!("/v1/campaigns/{campaign}"), None).await["status"], "draft");
    assert_eq!(e.ok(&ta, Method::GET, &format!("/v1/campaigns/{campaign}/kpis"), None).await, json!([]));
    let inv = e.ok(&ta, Method::GET, &format!("/v1/invoices/{invoice}"), None).await;
    assert_eq!((inv["status"].as_str(), inv["paid_minor"].as_i64()), (Some("DRAFT"), Some(0)));
    let keys = e.ok(&e.op, Method::GET, &format!("/v1/clients/{a}/api-keys"), None).await;
    assert!(
        keys.as_array().unwrap().iter().any(|k| k["id"] == a_key_id.as_str() && k["revoked_at"].is_null()),
        "{keys}"
    );
    let d = e.ok(&ta, Method::GET, &format!("/v1/destinations/{destination}"), None).await;
    assert_eq!(d["enabled"], true, "{d}");
    assert_eq!(e.ok(&ta, Method::GET, &format!("/v1/webhooks/{hook}"), None).await["enabled"], true);
    let tasks = e.ok(&ta, Method::GET, "/v1/tasks", None).await;
    assert!(tasks.as_array().unwrap().iter().all(|t| t["status"] != "COMPLETED"), "{tasks}");

    // Records named in bodies and queries: A's lead answers B exactly as an
    // id that exists nowhere.
    let unknown = bson::oid::ObjectId::new().to_hex();
    for (path, body) in [
        ("/v1/activities", json!({"kind": "call", "subject": "x", "related": {"kind": "lead", "id": "ID"}})),
        ("/v1/tasks", json!({"title": "x", "kind": "CALL", "related": {"kind": "lead", "id": "ID"}})),
    ] {
        let with = |id: &str| serde_json::from_str::<Value>(&body.to_string().replace("ID", id)).unwrap();
        let theirs = e.call(Some(&tb), Method::POST, path, Some(with(&lead1))).await;
        let nowhere = e.call(Some(&tb), Method::POST, path, Some(with(&unknown))).await;
        assert!(!theirs.0.is_success(), "{path}: {theirs:?}");
        assert_eq!(theirs, nowhere, "{path}");
    }
    let theirs = e.call(Some(&tb), Method::GET, &format!("/v1/activities?related_id={lead1}"), None).await;
    let nowhere = e.call(Some(&tb), Method::GET, &format!("/v1/activities?related_id={unknown}"), None).await;
    assert_eq!(theirs, nowhere);
}
