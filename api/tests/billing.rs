//! Billing against the real MongoDB-wire server: gapless invoice numbers
//! under concurrent creation, totals and VAT in minor units with the
//! rounding rules, status transitions, payments with idempotency keys
//! (also concurrent retries), refunds, the overdue sweep, the PDF (parsed
//! back) and the email with it. The concurrent cases run on a
//! multi-threaded runtime (the api in the same process), so requests
//! really race instead of interleaving on one thread.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{code, env, Env};

fn invoice(lines: Value, vat_bp: i64) -> Value {
    json!({"client": {"name": "Ada Lovelace", "company": "Analytical Records", "email": "ada@records.test", "address": "12 rue de Rivoli\n75001 Paris", "country": "FR"},
        "issuer": {"name": "Jiro Agency", "address": "1 Music Street\nParis", "vat_number": "FR12345678901", "bank_details": "IBAN FR76 3000 6000 0112 3456 7890 189"},
        "lines": lines, "vat_rate_bp": vat_bp, "issue_date": "2026-03-10", "currency": "EUR"})
}

async fn pay(e: &Env, key: &str, inv: &str, idem: &str, body: Value) -> (StatusCode, Value, bool) {
    let resp = e
        .http
        .post(format!("{}/v1/invoices/{inv}/payments", e.base))
        .bearer_auth(key)
        .header("Idempotency-Key", idem)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, replayed) = (resp.status(), resp.headers().get("idempotent-replayed").is_some());
    (s, resp.json().await.unwrap_or(Value::Null), replayed)
}

async fn billing_key(e: &Env, tenant: &str) -> String {
    e.ok(
        &e.op,
        Method::POST,
        &format!("/v1/clients/{tenant}/api-keys"),
        Some(json!({"name": "billing", "scopes": ["billing:write", "crm:write"]})),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_yields_gapless_unique_numbers_per_tenant_and_year() {
    let e = env().await;
    let (a, _) = e.tenant("bill-a").await;
    let (b, _) = e.tenant("bill-b").await;
    let (ka, kb) = (billing_key(&e, &a).await, billing_key(&e, &b).await);
    let body =
        invoice(json!([{"description": "Campaign management", "quantity": 1, "unit_price_minor": 100_000}]), 2000);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (http, base, key, mut body) =
            (e.http.clone(), e.base.clone(), if i % 4 == 0 { kb.clone() } else { ka.clone() }, body.clone());
        if i == 5 {
            body["issue_date"] = json!("2025-12-31");
        }
        tasks.push(tokio::spawn(async move {
            let r = http.post(format!("{base}/v1/invoices")).bearer_auth(&key).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()["number"].as_str().unwrap().to_string()
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    let list = |k: &str| {
        let (e, k) = (&e, k.to_string());
        async move {
            let mut n: Vec<String> = e
                .ok(&k, Method::GET, "/v1/invoices", None)
                .await
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["number"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        }
    };
    let expected_a: Vec<String> =
        std::iter::once("INV-2025-00001".to_string()).chain((1..=17).map(|i| format!("INV-2026-{i:05}"))).collect();
    assert_eq!(list(&ka).await, expected_a, "tenant A: 17 in 2026 and 1 in 2025, no gap, no duplicate");
    assert_eq!(
        list(&kb).await,
        (1..=6).map(|i| format!("INV-2026-{i:05}")).collect::<Vec<_>>(),
        "tenant B counts on its own"
    );
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 18, "the answers name A's 18 numbers (B's six are among A's names)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totals_transitions_payments_refunds_overdue_pdf_and_email() {
    let e = env().await;
    let (a, _) = e.tenant("bill-flow").await;
    let (b, _) = e.tenant("bill-other").await;
    let (k, kb) = (billing_key(&e, &a).await, billing_key(&e, &b).await);

    // Totals in minor units: 1.5 × 0.05 = 0.075 → 0.08; VAT on the subtotal at 5.5 %.
    let v = e
        .ok(
            &k,
            Method::POST,
            "/v1/invoices",
            Some(invoice(
                json!([
                    {"description": "Stickers", "quantity": 1.5, "unit_price_minor": 5},
                    {"description": "Mastering", "quantity": 3, "unit_price_minor": 332},
                ]),
                550,
            )),
        )
        .await;
    assert_eq!((v["lines"][0]["total_minor"].as_i64(), v["lines"][1]["total_minor"].as_i64()), (Some(8), Some(996)));
    assert_eq!(
        (v["subtotal_minor"].as_i64(), v["vat_minor"].as_i64(), v["total_minor"].as_i64()),
        (Some(1004), Some(55), Some(1059)),
        "1004 × 5.5 % = 55.22 → 55"
    );
    assert_eq!((v["status"].as_str(), v["due_date"].as_str()), (Some("DRAFT"), Some("2026-04-09")));
    for (body, field) in [
        (invoice(json!([{"description": "x", "quantity": 1.0005, "unit_price_minor": 1}]), 2000), "lines[0].quantity"),
        (invoice(json!([{"description": "x", "quantity": 1, "unit_price_minor": 1}]), 10_001), "vat_rate_bp"),
        (invoice(json!([{"description": "x", "quantity": 1, "unit_price_minor": -100}]), 2000), "lines"),
        (invoice(json!([]), 2000), "lines"),
    ] {
        let (s, r) = e.call(Some(&k), Method::POST, "/v1/invoices", Some(body)).await;
        assert_eq!((s, r["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{r}");
    }

    // The seed's invoice: 1000.00 + 18 % = 1180.00.
    let inv = e
        .ok(
            &k,
            Method::POST,
            "/v1/invoices",
            Some(invoice(json!([{"description": "Campaign", "quantity": 1, "unit_price_minor": 100_000}]), 1800)),
        )
        .await;
    let (id, number) = (inv["id"].as_str().unwrap().to_string(), inv["number"].as_str().unwrap().to_string());
    assert_eq!(inv["total_minor"], 118_000);
    let path = format!("/v1/invoices/{id}");
    let (s, r) = e.call(Some(&kb), Method::GET, &path, None).await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"), "another tenant's invoice");
    let (s, r) = e.call(Some(&k), Method::PATCH, &path, Some(json!({"status": "PAID"}))).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "invalid_transition"), "PAID only through payments");
    let (s, r, _) = pay(&e, &k, &id, "early", json!({"amount_minor": 100, "method": "CARD"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "invoice_not_payable"), "a DRAFT takes no payment");
    let edited = e.ok(&k, Method::PATCH, &path, Some(json!({"notes": "Thank you!", "due_date": "2099-12-31"}))).await;
    assert_eq!(edited["due_date"], "2099-12-31");

    // Sending emails the PDF and moves it to SENT; no more edits.
    let sent = e.ok(&k, Method::POST, &format!("{path}/send"), None).await;
    assert_eq!(sent["invoice"]["status"], "SENT");
    let mails = e.mails_to("ada@records.test");
    let last = mails.last().unwrap();
    assert!(
        last.contains(&format!("Subject: Invoice {number} from Jiro Agency"))
            && last.contains(&format!("filename=\"{number}.pdf\""))
            && last.contains("application/pdf"),
        "{last}"
    );
    let (s, r) = e.call(Some(&k), Method::PATCH, &path, Some(json!({"vat_rate_bp": 0}))).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "not_draft"));

    // The PDF parses and says the number and the amounts.
    let resp = e.http.get(format!("{}{path}/pdf", e.base)).bearer_auth(&k).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let bytes = resp.bytes().await.unwrap();
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let text = doc.extract_text(&[1]).unwrap();
    for needle in [
        number.as_str(),
        "1,180.00 EUR",
        "1,000.00 EUR",
        "180.00 EUR",
        "VAT 18 %",
        "Ada Lovelace",
        "ada@records.test",
        "Payment due within 30 days.",
    ] {
        assert!(text.contains(needle), "{needle} missing from the PDF text: {text}");
    }

    // Payments: the key is required; a retry records once; a reused key with another body is refused.
    let (s, r, _) = pay(&e, &k, &id, "", json!({"amount_minor": 100, "method": "CARD"})).await;
    assert_eq!((s, r["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Idempotency-Key")));
    let (s, first, replayed) = pay(
        &e,
        &k,
        &id,
        "pay-1",
        json!({"amount_minor": 50_000, "method": "BANK_TRANSFER", "provider": "sepa", "provider_reference": "TRX-1"}),
    )
    .await;
    assert_eq!((s, replayed), (StatusCode::CREATED, false), "{first}");
    assert_eq!(
        (first["invoice"]["paid_minor"].as_i64(), first["invoice"]["status"].as_str()),
        (Some(50_000), Some("SENT"))
    );
    let (s, again, replayed) = pay(
        &e,
        &k,
        &id,
        "pay-1",
        json!({"amount_minor": 50_000, "method": "BANK_TRANSFER", "provider": "sepa", "provider_reference": "TRX-1"}),
    )
    .await;
    assert_eq!((s, replayed), (StatusCode::CREATED, true));
    assert_eq!(again["payment"]["id"], first["payment"]["id"]);
    assert_eq!(again["invoice"]["paid_minor"], 50_000, "recorded once");
    let (s, r, _) = pay(&e, &k, &id, "pay-1", json!({"amount_minor": 60_000, "method": "BANK_TRANSFER"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "idempotency_key_reused"));
    let (s, r, _) = pay(&e, &k, &id, "pay-over", json!({"amount_minor": 68_001, "method": "CARD"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "overpayment"));

    // Ten concurrent retries of one request record one payment, which makes it PAID exactly.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (http, url, key) = (e.http.clone(), format!("{}/v1/invoices/{id}/payments", e.base), k.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "pay-2")
                .json(&json!({"amount_minor": 68_000, "method": "CARD"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.push(v["payment"]["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one payment for ten retries");
    let paid = e.ok(&k, Method::GET, &path, None).await;
    assert_eq!(
        (paid["status"].as_str(), paid["paid_minor"].as_i64(), paid["due_minor"].as_i64()),
        (Some("PAID"), Some(118_000), Some(0))
    );
    let payments = e.ok(&k, Method::GET, &format!("{path}/payments"), None).await;
    let statuses: Vec<&str> = payments.as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        vec!["FAILED", "COMPLETED", "FAILED", "COMPLETED"],
        "the payment on the draft and the overpayment are kept as FAILED"
    );
    let (s, r, _) = pay(&e, &k, &id, "pay-3", json!({"amount_minor": 1, "method": "CASH"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "invoice_not_payable"), "a PAID invoice takes no more");

    // A refund reopens it; it cannot be cancelled while money is held.
    let (s, r, _) =
        pay(&e, &k, &id, "refund-1", json!({"kind": "REFUND", "amount_minor": 118_001, "method": "CARD"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "overrefund"));
    let (s, r, _) =
        pay(&e, &k, &id, "refund-2", json!({"kind": "REFUND", "amount_minor": 18_000, "method": "CARD"})).await;
    assert_eq!(
        (s, r["invoice"]["status"].as_str(), r["invoice"]["paid_minor"].as_i64()),
        (StatusCode::CREATED, Some("SENT"), Some(100_000))
    );
    let (s, r) = e.call(Some(&k), Method::PATCH, &path, Some(json!({"status": "CANCELLED"}))).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "invalid_transition"));

    // The overdue sweep: a sent invoice past its due date becomes OVERDUE, then PAID by payment.
    let mut old = invoice(json!([{"description": "Old work", "quantity": 2, "unit_price_minor": 2_500}]), 2000);
    old["issue_date"] = json!("2025-01-15");
    old["payment_terms_days"] = json!(15);
    let o = e.ok(&k, Method::POST, "/v1/invoices", Some(old)).await;
    assert_eq!((o["number"].as_str(), o["total_minor"].as_i64()), (Some("INV-2025-00001"), Some(6_000)));
    let op = format!("/v1/invoices/{}", o["id"].as_str().unwrap());
    e.ok(&k, Method::PATCH, &op, Some(json!({"status": "SENT"}))).await;
    let swept = e.ok(&k, Method::POST, "/v1/invoices/overdue-sweep", None).await;
    assert_eq!(swept["marked_overdue"], 1, "only the one past due (the other is due in 2099)");
    assert_eq!(e.ok(&k, Method::GET, &op, None).await["status"], "OVERDUE");
    let (s, r, _) =
        pay(&e, &k, o["id"].as_str().unwrap(), "late-pay", json!({"amount_minor": 6_000, "method": "CHECK"})).await;
    assert_eq!((s, r["invoice"]["status"].as_str()), (StatusCode::CREATED, Some("PAID")));
    assert_eq!(e.ok(&k, Method::POST, "/v1/invoices/overdue-sweep", None).await["marked_overdue"], 0);

    // A draft can be cancelled, and a cancelled invoice goes nowhere.
    let d = e
        .ok(
            &k,
            Method::POST,
            "/v1/invoices",
            Some(invoice(json!([{"description": "Void", "quantity": 1, "unit_price_minor": 1}]), 0)),
        )
        .await;
    let dp = format!("/v1/invoices/{}", d["id"].as_str().unwrap());
    assert_eq!(e.ok(&k, Method::PATCH, &dp, Some(json!({"status": "CANCELLED"}))).await["status"], "CANCELLED");
    let (s, r) = e.call(Some(&k), Method::PATCH, &dp, Some(json!({"status": "SENT"}))).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "invalid_transition"));
    let (s, _) = e.call(Some(&k), Method::POST, &format!("{dp}/send"), None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Every change of the invoice is audited; the email is logged; no client email in clear.
    let audit =
        e.ok(&e.op, Method::GET, &format!("/v1/audit?client_id={a}&resource=invoices&resource_id={id}"), None).await;
    let mut actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    actions.reverse();
    // ... and so is each read of it (the GET, the payments list, the PDF).
    assert_eq!(actions, vec!["create", "update", "send", "read", "payment", "payment", "read", "read", "refund"]);
    let logs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
        e.mongo.collection::<bson::Document>("email_logs").find(bson::doc! { "template": "invoice" }).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].get_array("attachments").unwrap()[0].as_str(), Some(format!("{number}.pdf").as_str()));
    for coll in ["invoices", "payments", "email_logs", "audit_logs"] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        for pii in ["ada@records.test", "rue de rivoli"] {
            assert!(!dump.contains(pii), "{coll} holds {pii}");
        }
    }
}
