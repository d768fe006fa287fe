//! The CRM against the real MongoDB-wire server: leads with encrypted PII
//! and a blind index, filters and paging, stage transitions, assignment
//! history, conversion into a contact and an opportunity, the dashboard,
//! tenant isolation and injection attempts.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{code, env, lead, user_session};

#[tokio::test]
async fn leads_pii_filters_transitions_conversion_dashboard_and_isolation() {
    let e = env().await;
    let (a, _) = e.tenant("crm-a").await;
    let (b, _) = e.tenant("crm-b").await;
    let (ta, _) = user_session(&e, &a, "admin@crm-a.test", "admin").await;
    let (tg, agent) = user_session(&e, &a, "agent@crm-a.test", "agent").await;
    let (tb, _) = user_session(&e, &b, "admin@crm-b.test", "admin").await;

    let l1 = e.ok(&tg, Method::POST, "/v1/leads", Some(lead("Jiro", "Jiro", "Jiro@Artist.test"))).await;
    let id1 = l1["id"].as_str().unwrap().to_string();
    assert_eq!(
        (l1["email"].as_str(), l1["phone"].as_str(), l1["address"]["city"].as_str()),
        (Some("jiro@artist.test"), Some("+33612345678"), Some("Paris"))
    );
    let (s, v) = e.call(Some(&tg), Method::POST, "/v1/leads", Some(lead("J", "J", "JIRO@artist.test"))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "email_taken"), "blind index finds the same email");
    let (s, _) = e.call(Some(&tb), Method::POST, "/v1/leads", Some(lead("J", "J", "jiro@artist.test"))).await;
    assert_eq!(s, StatusCode::CREATED, "unique per tenant only");
    let mut l2 = lead("Nova", "Nova Sound", "nova@artist.test");
    l2["priority"] = json!("high");
    l2["score"] = json!(80);
    l2["assigned_to"] = json!(agent);
    let id2 = e.ok(&ta, Method::POST, "/v1/leads", Some(l2)).await["id"].as_str().unwrap().to_string();
    let mut l3 = lead("Ondes", "Les Ondes", "ondes@artist.test");
    l3["score"] = json!(50);
    l3["tags"] = json!(["festival"]);
    e.ok(&ta, Method::POST, "/v1/leads", Some(l3)).await;

    // Validation and injection.
    for (body, field) in [
        (json!({"first_name": "A", "last_name": "B", "email": "nope", "artist_name": "X"}), "email"),
        (
            json!({"first_name": "A", "last_name": "B", "email": "a@b.test", "artist_name": "X", "phone": "0612"}),
            "phone",
        ),
        (json!({"first_name": "A", "last_name": "B", "email": "a@b.test", "artist_name": "X", "score": 150}), "score"),
        (
            json!({"first_name": "A", "last_name": "B", "email": "a@b.test", "artist_name": "X", "stage": "won"}),
            "stage",
        ),
    ] {
        let (s, v) = e.call(Some(&ta), Method::POST, "/v1/leads", Some(body)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    // An assignee the tenant does not have is a record not found (404, as
    // the OpenAPI document says of any id a request names), on its field.
    let (s, v) = e
        .call(
            Some(&ta),
            Method::POST,
            "/v1/leads",
            Some(json!({"first_name": "A", "last_name": "B", "email": "a@b.test", "artist_name": "X", "assigned_to": "0123456789abcdef01234567"})),
        )
        .await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (StatusCode::NOT_FOUND, "not_found", Some("assigned_to")),
        "{v}"
    );
    let (s, v) = e
        .call(
            Some(&ta),
            Method::POST,
            "/v1/leads",
            Some(json!({"first_name": "A", "last_name": "B", "email": {"$gt": ""}, "artist_name": "X"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"));
    let none = e.ok(&ta, Method::GET, "/v1/leads?q=.*", None).await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "regex metacharacters match literally");
    let (s, _) = e.call(Some(&ta), Method::GET, "/v1/leads?assigned_to[$ne]=x", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Filters, sorting, pages.
    let count = |v: &Value| v["items"].as_array().unwrap().len();
    assert_eq!(count(&e.ok(&ta, Method::GET, "/v1/leads?priority=high", None).await), 1);
    assert_eq!(count(&e.ok(&ta, Method::GET, "/v1/leads?tag=vip", None).await), 2);
    assert_eq!(count(&e.ok(&ta, Method::GET, &format!("/v1/leads?assigned_to={agent}"), None).await), 1);
    assert_eq!(count(&e.ok(&ta, Method::GET, "/v1/leads?q=sound", None).await), 1);
    assert_eq!(count(&e.ok(&ta, Method::GET, "/v1/leads?source=social&stage=new", None).await), 3);
    let p1 = e.ok(&ta, Method::GET, "/v1/leads?sort=score&limit=2", None).await;
    assert_eq!(
        (p1["items"][0]["artist_name"].as_str(), p1["items"][1]["artist_name"].as_str()),
        (Some("Nova Sound"), Some("Les Ondes"))
    );
    let p2 = e
        .ok(
            &ta,
            Method::GET,
            &format!("/v1/leads?sort=score&limit=2&cursor={}", p1["next_cursor"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!((count(&p2), p2["items"][0]["artist_name"].as_str()), (1, Some("Jiro")));

    // Stage transitions and assignment history.
    let path1 = format!("/v1/leads/{id1}");
    e.ok(&tg, Method::PATCH, &path1, Some(json!({"stage": "proposal"}))).await;
    for (body, field) in [
        (json!({"stage": "new"}), "stage"),
        (json!({"stage": "won"}), "stage"),
        (json!({"stage": "lost"}), "lost_reason"),
    ] {
        let (s, v) = e.call(Some(&tg), Method::PATCH, &path1, Some(body)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let moved = e.ok(&ta, Method::PATCH, &path1, Some(json!({"assigned_to": agent, "email": "jiro@label.test"}))).await;
    assert_eq!(moved["assignment_history"].as_array().unwrap().len(), 1);
    assert_eq!(moved["email"], "jiro@label.test");
    let (s, _) = e.call(Some(&tg), Method::DELETE, &path1, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "agents do not delete");
    e.ok(
        &tg,
        Method::POST,
        &format!("{path1}/notes"),
        Some(json!({"kind": "follow_up", "content": "call back", "due_at": "2020-01-01T00:00:00Z"})),
    )
    .await;

    // Reads of personal data are audited (security review finding 17): who read which lead, and lists.
    e.ok(&tg, Method::GET, &path1, None).await;
    e.ok(&tg, Method::GET, "/v1/leads?stage=proposal", None).await;
    let reads = e.ok(&ta, Method::GET, &format!("/v1/audit?resource=leads&resource_id={id1}&action=read"), None).await;
    let reads = reads["items"].as_array().unwrap();
    assert!(!reads.is_empty() && reads.iter().all(|r| r["actor_kind"] == "user"), "{reads:?}");
    let lists = e.ok(&ta, Method::GET, "/v1/audit?resource=leads&action=read", None).await;
    assert!(lists["items"].as_array().unwrap().iter().any(|r| r["resource_id"].is_null()), "{lists}");

    // Audit: the stage change with old and new, the email change redacted.
    let audit =
        e.ok(&ta, Method::GET, &format!("/v1/audit?resource=leads&resource_id={id1}&action=update"), None).await;
    let changes: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().flat_map(|r| r["changes"].as_array().unwrap()).collect();
    assert!(
        changes.iter().any(|c| c["field"] == "pipeline.stage" && c["old"] == "new" && c["new"] == "proposal"),
        "{audit}"
    );
    assert!(changes
        .iter()
        .any(|c| c["field"] == "personal.emailEnc" && c["old"] == "[redacted]" && c["new"] == "[redacted]"));

    // Tenant B sees nothing of A.
    for (m, path, body) in [
        (Method::GET, path1.clone(), None),
        (Method::PATCH, path1.clone(), Some(json!({"score": 1}))),
        (Method::DELETE, path1.clone(), None),
        (Method::POST, format!("{path1}/convert"), Some(json!({}))),
        (Method::GET, format!("/v1/leads?client_id={a}"), None),
    ] {
        let (s, v) = e.call(Some(&tb), m.clone(), &path, body).await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{m} {path}");
    }

    // Conversion: one contact, one opportunity, the lead won; twice is refused.
    let conv = e.ok(&tg, Method::POST, &format!("{path1}/convert"), Some(json!({"value_minor": 300_000}))).await;
    assert_eq!(conv["lead"]["stage"], "won");
    assert_eq!(conv["contact"]["email"], "jiro@label.test");
    assert_eq!(conv["contact"]["source_lead_id"], id1.as_str());
    assert_eq!(
        (conv["opportunity"]["stage"].as_str(), conv["opportunity"]["value_minor"].as_i64()),
        (Some("INITIAL_INTEREST"), Some(300_000))
    );
    assert_eq!(conv["lead"]["contact_id"], conv["contact"]["id"]);
    let (s, v) = e.call(Some(&tg), Method::POST, &format!("{path1}/convert"), Some(json!({}))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "already_converted"));
    assert_eq!(e.ok(&ta, Method::GET, "/v1/contacts", None).await.as_array().unwrap().len(), 1);
    let opp = conv["opportunity"]["id"].as_str().unwrap();
    let (s, _) =
        e.call(Some(&ta), Method::PATCH, &format!("/v1/opportunities/{opp}"), Some(json!({"stage": "FLYING"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let won = e.ok(&ta, Method::PATCH, &format!("/v1/opportunities/{opp}"), Some(json!({"stage": "WON"}))).await;
    assert_eq!((won["is_won"].as_bool(), won["probability"].as_i64()), (Some(true), Some(100)));

    // Dashboard equals the data: 3 leads (2 new, 1 won), agent 1 of 2 won.
    let d = e.ok(&ta, Method::GET, "/v1/crm/dashboard", None).await;
    let stage = |s: &str| d["leads_by_stage"].as_array().unwrap().iter().find(|x| x["stage"] == s).unwrap().clone();
    assert_eq!((stage("new")["count"].as_i64(), stage("new")["total_value_minor"].as_i64()), (Some(2), Some(500_000)));
    assert_eq!(stage("won")["count"], 1);
    let agent_row =
        d["by_assignee"].as_array().unwrap().iter().find(|x| x["assigned_to"] == agent.as_str()).unwrap().clone();
    assert_eq!(
        (agent_row["leads"].as_i64(), agent_row["won"].as_i64(), agent_row["conversion_rate"].as_f64()),
        (Some(2), Some(1), Some(0.5))
    );
    assert_eq!((d["team"]["leads"].as_i64(), d["team"]["won"].as_i64()), (Some(3), Some(1)));
    assert_eq!(d["follow_ups_due"], 1);
    assert_eq!(d["open_pipeline_minor"], 0, "the only opportunity is won");
    let _ = id2;

    // Tasks: overdue listing, completion, on the dashboard; the lead's timeline.
    let t = e
        .ok(&tg, Method::POST, "/v1/tasks", Some(json!({"title": "Send proposal", "kind": "EMAIL", "due_at": "2020-01-01T00:00:00Z", "related": {"kind": "lead", "id": id1}})))
        .await;
    assert_eq!(
        (t["overdue"].as_bool(), t["assigned_to"].as_str()),
        (Some(true), Some(agent.as_str())),
        "assigned to its creator by default"
    );
    let (s, v) = e
        .call(Some(&tg), Method::POST, "/v1/tasks", Some(json!({"title": "x", "related": {"kind": "lead", "id": b}})))
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("related.id")),
        "another tenant's record is not found, and the error names the field"
    );
    assert_eq!(e.ok(&ta, Method::GET, "/v1/tasks?overdue=true", None).await.as_array().unwrap().len(), 1);
    assert_eq!(e.ok(&ta, Method::GET, "/v1/crm/dashboard", None).await["tasks_due"], 1);
    let done = e
        .ok(
            &tg,
            Method::PATCH,
            &format!("/v1/tasks/{}", t["id"].as_str().unwrap()),
            Some(json!({"status": "COMPLETED"})),
        )
        .await;
    assert!(done["completed_at"].is_string() && done["overdue"] == false);
    assert_eq!(e.ok(&ta, Method::GET, "/v1/tasks?overdue=true", None).await.as_array().unwrap().len(), 0);
    e.ok(
        &tg,
        Method::POST,
        "/v1/activities",
        Some(json!({"kind": "call", "subject": "Intro call", "related": {"kind": "lead", "id": id1}})),
    )
    .await;
    let tl = e.ok(&ta, Method::GET, &format!("/v1/activities?related_id={id1}"), None).await;
    let kinds: Vec<(&str, &str)> =
        tl.as_array().unwrap().iter().map(|x| (x["kind"].as_str().unwrap(), x["subject"].as_str().unwrap())).collect();
    assert_eq!(kinds.first(), Some(&("call", "Intro call")), "newest first: {tl}");
    for action in ["create", "update", "add_note", "convert"] {
        assert!(kinds.contains(&("change", action)), "{action} on the timeline: {tl}");
    }

    // At rest: no plaintext email, phone or street in any collection.
    for coll in ["leads", "contacts", "opportunities", "audit_logs", "users"] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        for pii in
            ["jiro@artist.test", "jiro@label.test", "nova@artist.test", "admin@crm-a.test", "+33612345678", "oberkampf"]
        {
            assert!(!dump.contains(pii), "{coll} holds {pii}");
        }
    }
}

#[tokio::test]
async fn settings_drive_validation_and_contacts_have_crud_with_encrypted_pii() {
    let e = env().await;
    let (a, key) = e.tenant("set-a").await;
    let (b, _) = e.tenant("set-b").await;
    let (ta, _) = user_session(&e, &a, "admin@set-a.test", "admin").await;
    let (tg, _) = user_session(&e, &a, "agent@set-a.test", "agent").await;
    let (tb, _) = user_session(&e, &b, "admin@set-b.test", "admin").await;

    // Defaults until saved; only admins change them.
    let d = e.ok(&tg, Method::GET, "/v1/crm/settings", None).await;
    assert_eq!(d["stage_labels"].as_object().unwrap().len(), 7);
    assert!(d["lead_sources"].as_array().unwrap().contains(&json!("other")));
    assert_eq!(d["updated_at"], Value::Null);
    let mut s = d.clone();
    s.as_object_mut().unwrap().remove("updated_at");
    s["stage_labels"]["qualified"] = json!("Meeting scheduled");
    s["priority_labels"]["high"] = json!("A");
    s["lead_sources"] = json!(["tiktok", "spotify-ads", "other"]);
    s["task_types"] = json!(["CALL", "DEMO"]);
    s["custom_fields"] = json!([
        {"key": "tier", "label": "Tier", "entity": "lead", "kind": "select", "options": ["gold", "silver"], "required": true},
        {"key": "followers", "label": "Followers", "entity": "lead", "kind": "number"},
        {"key": "birthday", "label": "Birthday", "entity": "contact", "kind": "date"},
    ]);
    let (st, v) = e.call(Some(&tg), Method::PUT, "/v1/crm/settings", Some(s.clone())).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let mut bad = Vec::new();
    let mut x = s.clone();
    x["stage_labels"]["closed"] = json!("Closed");
    bad.push((x, "stage_labels.closed"));
    let mut x = s.clone();
    x["stage_labels"].as_object_mut().unwrap().remove("won");
    bad.push((x, "stage_labels.won"));
    let mut x = s.clone();
    x["lead_sources"] = json!(["tiktok", "tiktok"]);
    bad.push((x, "lead_sources[1]"));
    let mut x = s.clone();
    x["custom_fields"][0]["options"] = json!([]);
    bad.push((x, "custom_fields[0].options"));
    let mut x = s.clone();
    x["custom_fields"][1]["key"] = json!("Followers Count");
    bad.push((x, "custom_fields[1].key"));
    for (body, field) in bad {
        let (st, v) = e.call(Some(&ta), Method::PUT, "/v1/crm/settings", Some(body)).await;
        assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let saved = e.ok(&ta, Method::PUT, "/v1/crm/settings", Some(s)).await;
    assert_eq!(saved["stage_labels"]["qualified"], "Meeting scheduled");
    assert!(saved["updated_at"].is_string());
    assert_eq!(e.ok(&tb, Method::GET, "/v1/crm/settings", None).await["lead_sources"], d["lead_sources"], "per tenant");
    let (crm_key, _) = e.key_with(&a, &["crm:read"]).await;
    assert_eq!(e.ok(&crm_key, Method::GET, "/v1/crm/settings", None).await["task_types"], json!(["CALL", "DEMO"]));
    let (st, _) = e.call(Some(&key), Method::GET, "/v1/crm/settings", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "links/analytics keys do not read CRM settings");

    // Leads and tasks follow them.
    let mut l = lead("Kim", "Kim K", "kim@artist.test");
    let (st, v) = e.call(Some(&tg), Method::POST, "/v1/leads", Some(l.clone())).await;
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("source")),
        "social is no longer a source: {v}"
    );
    l["source"] = json!("tiktok");
    let (st, v) = e.call(Some(&tg), Method::POST, "/v1/leads", Some(l.clone())).await;
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("custom_fields.tier")),
        "required: {v}"
    );
    l["custom_fields"] = json!({"tier": "gold", "followers": 12000});
    let created = e.ok(&tg, Method::POST, "/v1/leads", Some(l)).await;
    assert_eq!(created["custom_fields"], json!({"tier": "gold", "followers": 12000.0}));
    let lead_id = created["id"].as_str().unwrap().to_string();
    let (st, v) = e
        .call(
            Some(&tg),
            Method::PATCH,
            &format!("/v1/leads/{lead_id}"),
            Some(json!({"custom_fields": {"tier": "bronze"}})),
        )
        .await;
    assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("custom_fields.tier")));
    let patched = e
        .ok(
            &tg,
            Method::PATCH,
            &format!("/v1/leads/{lead_id}"),
            Some(json!({"custom_fields": {"tier": "silver", "followers": null}})),
        )
        .await;
    assert_eq!(patched["custom_fields"], json!({"tier": "silver"}));
    let (st, v) = e.call(Some(&tg), Method::POST, "/v1/tasks", Some(json!({"title": "t", "kind": "TODO"}))).await;
    assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("kind")));
    assert_eq!(e.ok(&tg, Method::POST, "/v1/tasks", Some(json!({"title": "t", "kind": "DEMO"}))).await["kind"], "DEMO");

    // Contacts: create, read, change, delete.
    let body = json!({"first_name": "Lou", "last_name": "Reed", "email": "Lou@Velvet.test", "phone": "+1 212 555 0100",
        "address": {"street": "7 Bowery", "city": "New York", "postal_code": "10002", "country": "US"}, "company": "Velvet", "custom_fields": {"birthday": "1942-03-02"}});
    let c = e.ok(&tg, Method::POST, "/v1/contacts", Some(body.clone())).await;
    let cid = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        (c["email"].as_str(), c["phone"].as_str(), c["address"]["street"].as_str()),
        (Some("lou@velvet.test"), Some("+12125550100"), Some("7 Bowery"))
    );
    let (st, v) = e.call(Some(&tg), Method::POST, "/v1/contacts", Some(body.clone())).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "email_taken"));
    let mut x = body.clone();
    x["email"] = json!({"$gt": ""});
    let (st, _) = e.call(Some(&tg), Method::POST, "/v1/contacts", Some(x)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let mut x = body.clone();
    x["email"] = json!("nico@velvet.test");
    x["custom_fields"] = json!({"tier": "gold"});
    let (st, v) = e.call(Some(&tg), Method::POST, "/v1/contacts", Some(x.clone())).await;
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("custom_fields.tier")),
        "lead fields are not contact fields"
    );
    x["custom_fields"] = json!({});
    let nico = e.ok(&tg, Method::POST, "/v1/contacts", Some(x)).await["id"].as_str().unwrap().to_string();
    let (st, v) = e
        .call(Some(&tg), Method::PATCH, &format!("/v1/contacts/{nico}"), Some(json!({"email": "LOU@velvet.test"})))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "email_taken"), "unique on change too");
    let ch = e
        .ok(
            &tg,
            Method::PATCH,
            &format!("/v1/contacts/{cid}"),
            Some(json!({"phone": "+33 1 23 45 67 89", "tags": ["legend"]})),
        )
        .await;
    assert_eq!((ch["phone"].as_str(), ch["tags"].clone()), (Some("+33123456789"), json!(["legend"])));
    assert_eq!(
        e.ok(&tg, Method::GET, &format!("/v1/contacts/{cid}"), None).await["custom_fields"]["birthday"],
        "1942-03-02"
    );
    for (m, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"company": "x"}))), (Method::DELETE, None)] {
        let (st, _) = e.call(Some(&tb), m.clone(), &format!("/v1/contacts/{cid}"), body).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m} of another tenant's contact");
    }
    let (st, _) = e.call(Some(&tg), Method::DELETE, &format!("/v1/contacts/{nico}"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "agents do not delete");
    let (st, _) = e.call(Some(&ta), Method::DELETE, &format!("/v1/contacts/{nico}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let conv = e.ok(&ta, Method::POST, &format!("/v1/leads/{lead_id}/convert"), Some(json!({}))).await;
    let converted = conv["contact"]["id"].as_str().unwrap().to_string();
    let (st, v) = e.call(Some(&ta), Method::DELETE, &format!("/v1/contacts/{converted}"), None).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "contact_in_use"));
    let list = e.ok(&tg, Method::GET, "/v1/contacts", None).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![converted.as_str(), cid.as_str()]);

    // Audited with diffs; nothing personal in clear.
    let audit = e.ok(&ta, Method::GET, &format!("/v1/audit?resource=contacts&resource_id={cid}"), None).await;
    let items: Vec<&Value> = audit["items"].as_array().unwrap().iter().filter(|r| r["action"] != "read").collect();
    assert_eq!(items.iter().map(|r| r["action"].as_str().unwrap()).collect::<Vec<_>>(), vec!["update", "create"]);
    let fields: Vec<&str> =
        items[0]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"phoneEnc") && fields.contains(&"tags"), "{fields:?}");
    assert!(items[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "phoneEnc" && c["new"] == "[redacted]"));
    let settings_audit = e.ok(&ta, Method::GET, "/v1/audit?resource=settings", None).await;
    assert_eq!(settings_audit["items"].as_array().unwrap().len(), 1);
    for coll in ["contacts", "leads", "audit_logs", "crm_settings"] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        for pii in ["lou@velvet.test", "nico@velvet.test", "kim@artist.test", "+12125550100", "+33123456789", "bowery"]
        {
            assert!(!dump.contains(pii), "{coll} holds {pii}");
        }
    }
}

/// Issue #14: a timeline shows CRM records only: the id of a user (whose
/// logins and creation are audited) answers an empty timeline, a lead's
/// shows its changes.
#[tokio::test]
async fn a_timeline_shows_only_crm_records() {
    let e = env().await;
    let (a, _) = e.tenant("tl-a").await;
    let (ta, admin_id) = user_session(&e, &a, "admin@tl-a.test", "admin").await;
    let (tv, _) = user_session(&e, &a, "viewer@tl-a.test", "viewer").await;
    let tl = e.ok(&tv, Method::GET, &format!("/v1/activities?related_id={admin_id}"), None).await;
    assert_eq!(tl, json!([]), "a user's logins are not a CRM timeline");
    let id = e.ok(&ta, Method::POST, "/v1/leads", Some(lead("Jiro", "Jiro", "jiro@tl.test"))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tl = e.ok(&tv, Method::GET, &format!("/v1/activities?related_id={id}"), None).await;
    assert!(tl.as_array().unwrap().iter().any(|x| x["kind"] == "change" && x["subject"] == "create"), "{tl}");
}

/// Issue #14: changes to one lead do not overwrite each other: 12 notes
/// added at once (multi-threaded, really racing) are all kept, and a PATCH
/// racing them keeps its change too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_to_a_lead_are_all_kept() {
    let e = env().await;
    let (a, _) = e.tenant("race-a").await;
    let (ta, _) = user_session(&e, &a, "admin@race-a.test", "admin").await;
    let id = e.ok(&ta, Method::POST, "/v1/leads", Some(lead("Jiro", "Jiro", "jiro@race.test"))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (http, base, token, id) = (e.http.clone(), e.base.clone(), ta.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let (url, body) = if i == 6 {
                (format!("{base}/v1/leads/{id}"), json!({"score": 42}))
            } else {
                (format!("{base}/v1/leads/{id}/notes"), json!({"kind": "note", "content": format!("note {i}")}))
            };
            let req = if i == 6 { http.patch(url) } else { http.post(url) };
            req.bearer_auth(token).json(&body).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_success());
    }
    let l = e.ok(&ta, Method::GET, &format!("/v1/leads/{id}"), None).await;
    assert_eq!(l["notes"].as_array().unwrap().len(), 11, "{l}");
    assert_eq!(l["score"], 42);
}
