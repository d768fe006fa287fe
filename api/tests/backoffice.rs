//! Back office against the real MongoDB-wire server: users, login, lockout,
//! TOTP, sessions, the role × route permission table, tenant isolation of
//! users, the audit log with diffs, and no plaintext email at rest.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{code, env, env_custom, user, Env, PASSWORD};

async fn login(e: &Env, email: &str, password: &str, totp: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": password});
    if let Some(c) = totp {
        body["totp_code"] = json!(c);
    }
    e.call(None, Method::POST, "/v1/auth/login", Some(body)).await
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn session(e: &Env, email: &str) -> String {
    let (s, v) = login(e, email, PASSWORD, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn login_lockout_totp_sessions_and_no_plaintext_email() {
    let e = env().await;
    let (a, _) = e.tenant("bo-login").await;
    let id = user(&e, &a, "Ada.Admin@Label.test", "admin").await;
    let (s, v) = e
        .call(Some(&e.op), Method::POST, "/v1/users", Some(json!({"client_id": a, "email": "ada.admin@label.test", "password": PASSWORD, "first_name": "A", "last_name": "B", "role": "viewer"})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "email_taken"), "emails are unique, case-insensitively");
    for (body, field) in [
        (
            json!({"client_id": a, "email": "x@label.test", "password": "short", "first_name": "A", "last_name": "B", "role": "viewer"}),
            "password",
        ),
        (
            json!({"client_id": a, "email": "not-an-email", "password": PASSWORD, "first_name": "A", "last_name": "B", "role": "viewer"}),
            "email",
        ),
        (
            json!({"client_id": a, "email": "x@label.test", "password": PASSWORD, "first_name": "A", "last_name": "B", "role": "root"}),
            "role",
        ),
    ] {
        let (s, v) = e.call(Some(&e.op), Method::POST, "/v1/users", Some(body)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let (s, v) = e
        .call(None, Method::POST, "/v1/auth/login", Some(json!({"email": {"$gt": ""}, "password": {"$gt": ""}})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"), "no operator reaches a query");

    // Sessions work, and end at logout.
    let token = session(&e, "ada.admin@label.test").await;
    let me = e.ok(&token, Method::GET, "/v1/users/me", None).await;
    assert_eq!(
        (me["id"].as_str(), me["email"].as_str(), me["role"].as_str()),
        (Some(id.as_str()), Some("ada.admin@label.test"), Some("admin"))
    );
    let (s, _) = e.call(Some(&token), Method::POST, "/v1/auth/logout", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.call(Some(&token), Method::GET, "/v1/users/me", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked at logout");

    // Unknown email and wrong password answer alike; 5 failures lock.
    let (s, v) = login(&e, "nobody@label.test", PASSWORD, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    for _ in 0..5 {
        let (s, v) = login(&e, "ada.admin@label.test", "wrong password!!", None).await;
        assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, None).await;
    assert_eq!((s, code(&v)), (StatusCode::LOCKED, "account_locked"), "even the right password while locked");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await; // API_LOGIN_LOCK_SECS=2 in tests
    let token = session(&e, "ada.admin@label.test").await;

    // TOTP: set up, confirm with a code, then login needs it.
    let setup = e.ok(&token, Method::POST, "/v1/auth/totp/setup", None).await;
    let secret = totp_rs::Secret::Encoded(setup["secret"].as_str().unwrap().to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).unwrap();
    assert!(setup["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/"));
    let enable_code = totp.generate_current().unwrap();
    let (s, v) = e.call(Some(&token), Method::POST, "/v1/auth/totp/enable", Some(json!({"code": "000000"}))).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("code")));
    let (s, _) = e.call(Some(&token), Method::POST, "/v1/auth/totp/enable", Some(json!({"code": enable_code}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "totp_required"));
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, Some("123456")).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_totp"));
    // The enabling code was used once: it cannot log in (RFC 6238 §5.2).
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, Some(&enable_code)).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_totp"), "a code is accepted once");
    // The next step's code (clock skew allowed) logs in, once.
    let next = totp.generate((now_s() / 30 + 1) * 30);
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, Some(&next)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"]["totp_enabled"], true);
    let (s, v) = login(&e, "ada.admin@label.test", PASSWORD, Some(&next)).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_totp"), "replayed");
    // A session alone cannot replace the active secret.
    let setup2 = e.ok(&token, Method::POST, "/v1/auth/totp/setup", None).await;
    let secret2 = totp_rs::Secret::Encoded(setup2["secret"].as_str().unwrap().to_string()).to_bytes().unwrap();
    let totp2 = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret2).unwrap();
    let new_code = json!({"code": totp2.generate_current().unwrap()});
    let (s, v) = e.call(Some(&token), Method::POST, "/v1/auth/totp/enable", Some(new_code)).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("current_code")), "{v}");

    // Deactivation ends sessions.
    let viewer = user(&e, &a, "vic@label.test", "viewer").await;
    let vt = session(&e, "vic@label.test").await;
    e.ok(&e.op, Method::PATCH, &format!("/v1/users/{viewer}"), Some(json!({"is_active": false}))).await;
    let (s, _) = e.call(Some(&vt), Method::GET, "/v1/users/me", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // At rest: no plaintext email anywhere, no password, no TOTP secret.
    for coll in ["users", "audit_logs", "sessions"] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        for secret in ["ada.admin@label.test", "vic@label.test", "correct horse", setup["secret"].as_str().unwrap()] {
            assert!(!dump.contains(&secret.to_lowercase()), "{coll} holds {secret}");
        }
    }
}

/// Expected answers of each role on each route (seed 001 permission matrix;
/// `api::rbac`): true = allowed (2xx), false = 403.
#[tokio::test]
async fn each_role_can_do_exactly_what_the_matrix_allows() {
    let e = env().await;
    let (a, key) = e.tenant("bo-roles").await;
    let link = e.link(&key, "matrix").await;
    let mut tokens = Vec::new();
    for role in ["admin", "manager", "agent", "viewer"] {
        user(&e, &a, &format!("{role}@roles.test"), role).await;
        tokens.push((role, session(&e, &format!("{role}@roles.test")).await));
    }
    let mut settings = e.ok(&tokens[0].1, Method::GET, "/v1/crm/settings", None).await;
    settings.as_object_mut().unwrap().remove("updated_at");
    let link_body = |slug: &str| json!({"slug": slug, "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "https://open.spotify.com/x"}});
    //            route                                              admin  manager agent  viewer
    let table: Vec<(Method, String, Option<Value>, [bool; 4])> = vec![
        (Method::GET, "/v1/smartlinks".into(), None, [true, true, true, true]),
        (Method::POST, "/v1/smartlinks".into(), Some(link_body("new")), [true, true, false, false]),
        (Method::PATCH, format!("/v1/smartlinks/{link}"), Some(json!({"featured": true})), [true, true, false, false]),
        (Method::GET, "/v1/analytics/overview".into(), None, [true, true, true, true]),
        (Method::GET, "/v1/analytics/export".into(), None, [true, true, false, false]),
        (Method::GET, "/v1/users".into(), None, [true, true, false, false]),
        (
            Method::POST,
            "/v1/users".into(),
            Some(
                json!({"email": "new@roles.test", "password": PASSWORD, "first_name": "N", "last_name": "U", "role": "viewer"}),
            ),
            [true, false, false, false],
        ),
        (Method::GET, "/v1/audit".into(), None, [true, false, false, false]),
        (
            Method::POST,
            "/v1/clients".into(),
            Some(json!({"name": "x", "slug": "x", "domain": "x.test"})),
            [false, false, false, false],
        ),
        (Method::GET, "/v1/crm/settings".into(), None, [true, true, true, true]),
        (Method::PUT, "/v1/crm/settings".into(), Some(settings.clone()), [true, false, false, false]),
        (Method::GET, "/v1/contacts".into(), None, [true, true, true, true]),
        (
            Method::POST,
            "/v1/contacts".into(),
            Some(json!({"first_name": "C", "last_name": "D", "email": "c@roles.test"})),
            [true, true, true, false],
        ),
        (Method::GET, "/v1/campaigns".into(), None, [true, true, true, true]),
        (
            Method::POST,
            "/v1/campaigns".into(),
            Some(json!({"name": "Launch", "start_date": "2026-03-01"})),
            [true, true, true, false],
        ),
        (Method::GET, "/v1/invoices".into(), None, [true, true, true, false]),
        (
            Method::POST,
            "/v1/invoices".into(),
            Some(
                json!({"client": {"name": "C", "email": "c@roles.test"}, "lines": [{"description": "x", "quantity": 1, "unit_price_minor": 100}], "vat_rate_bp": 2000}),
            ),
            [true, true, false, false],
        ),
        (Method::GET, "/v1/newsletter".into(), None, [true, true, false, false]),
        (
            Method::POST,
            "/v1/gdpr/export".into(),
            Some(json!({"email": "someone@roles.test"})),
            [true, false, false, false],
        ),
        (
            Method::POST,
            "/v1/gdpr/erase".into(),
            Some(json!({"email": "someone@roles.test"})),
            [true, false, false, false],
        ),
        (Method::DELETE, format!("/v1/smartlinks/{link}"), None, [true, true, false, false]),
    ];
    for (i, (method, path, body, expected)) in table.into_iter().enumerate() {
        for (r, (role, token)) in tokens.iter().enumerate() {
            // Each allowed create needs a fresh slug/email.
            let body = body.clone().map(|mut b| {
                if b.get("slug").is_some() {
                    b["slug"] = json!(format!("new-{i}-{role}"));
                }
                if b.get("email").is_some() {
                    b["email"] = json!(format!("new-{role}@roles.test"));
                }
                b
            });
            let (s, v) = e.call(Some(token), method.clone(), &path, body).await;
            if expected[r] {
                assert!(s.is_success(), "{role} {method} {path}: {s} {v}");
            } else {
                assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{role} {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn users_are_tenant_isolated_and_every_mutation_is_audited() {
    let e = env().await;
    let (a, a_key) = e.tenant("bo-audit-a").await;
    let (b, _) = e.tenant("bo-audit-b").await;
    let a_admin = user(&e, &a, "admin@a.test", "admin").await;
    user(&e, &b, "admin@b.test", "admin").await;
    let tb = session(&e, "admin@b.test").await;
    let ta = session(&e, "admin@a.test").await;
    let (s, _) =
        e.call(Some(&tb), Method::PATCH, &format!("/v1/users/{a_admin}"), Some(json!({"role": "viewer"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's user is not found");
    let (s, _) = e.call(Some(&tb), Method::GET, &format!("/v1/users?client_id={a}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = e.call(Some(&tb), Method::GET, &format!("/v1/audit?client_id={a}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // One record per mutation, with the diff.
    let link = e.link(&a_key, "audited").await;
    e.ok(&ta, Method::PATCH, &format!("/v1/smartlinks/{link}"), Some(json!({"slug": "audited-2"}))).await;
    let page = e.ok(&ta, Method::GET, &format!("/v1/audit?resource=smartlinks&resource_id={link}"), None).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    let update = &items[0];
    assert_eq!(
        (update["action"].as_str(), update["actor_kind"].as_str(), update["actor_role"].as_str()),
        (Some("update"), Some("user"), Some("admin"))
    );
    assert_eq!(
        update["changes"],
        json!([{"field": "slug", "old": "audited", "new": "audited-2"}]),
        "only the changed field"
    );
    assert_eq!(items[1]["action"], "create");
    assert_eq!(items[1]["actor_kind"], "api_key");
    assert!(update["ip"].as_str().unwrap().starts_with("127."));

    // Secrets redacted, failures recorded, logins recorded.
    let created =
        e.ok(&ta, Method::GET, &format!("/v1/audit?resource=users&action=create&resource_id={a_admin}"), None).await;
    let changes = created["items"][0]["changes"].as_array().unwrap();
    let pw = changes.iter().find(|c| c["field"] == "auth.passwordHash").unwrap();
    assert_eq!(pw["new"], "[redacted]");
    assert!(changes.iter().filter(|c| c["field"].as_str().unwrap().ends_with("Enc")).all(|c| c["new"] == "[redacted]"));
    let viewer = user(&e, &a, "viewer@a.test", "viewer").await;
    let tv = session(&e, "viewer@a.test").await;
    let (s, _) =
        e.call(Some(&tv), Method::PATCH, &format!("/v1/smartlinks/{link}"), Some(json!({"featured": true}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let failed = e.ok(&ta, Method::GET, &format!("/v1/audit?success=false&actor_id={viewer}"), None).await;
    assert_eq!(failed["items"][0]["error_code"], "http_403", "{failed}");
    assert_eq!(failed["items"][0]["action"], "PATCH /v1/smartlinks/{id}");
    let logins = e.ok(&ta, Method::GET, "/v1/audit?resource=auth&action=login", None).await;
    assert!(logins["items"].as_array().unwrap().len() >= 2);
    let (s, _) = e.call(Some(&ta), Method::DELETE, "/v1/audit", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "append-only");

    // An admin cannot deactivate or demote themselves (found by
    // schemathesis: its session disabled its own user); another admin can.
    let own = format!("/v1/users/{a_admin}");
    for change in [json!({"is_active": false}), json!({"role": "viewer"})] {
        let (s, v) = e.call(Some(&ta), Method::PATCH, &own, Some(change.clone())).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{change}");
    }
    e.ok(&ta, Method::PATCH, &own, Some(json!({"first_name": "Ada", "role": "admin", "is_active": true}))).await;
    e.ok(&ta, Method::GET, "/v1/users/me", None).await;
    let second = user(&e, &a, "second@a.test", "admin").await;
    e.ok(&ta, Method::PATCH, &format!("/v1/users/{second}"), Some(json!({"is_active": false}))).await;
}

#[tokio::test]
async fn email_verification_and_password_reset_tokens_are_hashed_expiring_and_single_use() {
    let e = env().await;
    let (a, _) = e.tenant("bo-tokens").await;
    let id = user(&e, &a, "Rita@Label.test", "agent").await;

    // Creating a user mails a verification token; it works once.
    let mails = e.mails_to("rita@label.test");
    assert_eq!(mails.len(), 1, "one verification email");
    assert!(mails[0].contains("Subject: Confirm your email"));
    let verify = support::token_in(&mails[0], "slv_");
    assert_eq!(verify.len(), 4 + 64);
    let (s, v) = e.call(None, Method::POST, "/v1/auth/verify-email", Some(json!({"token": "slv_0000"}))).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("token")));
    let (s, _) = e.call(None, Method::POST, "/v1/auth/verify-email", Some(json!({"token": verify}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.call(None, Method::POST, "/v1/auth/verify-email", Some(json!({"token": verify}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "single use");
    let old_session = session(&e, "rita@label.test").await;
    assert_eq!(e.ok(&old_session, Method::GET, "/v1/users/me", None).await["email_verified"], true);
    let (s, v) = e.call(Some(&old_session), Method::POST, "/v1/auth/verify-email/request", None).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "already_verified"));

    // An expired token is refused.
    user(&e, &a, "late@label.test", "viewer").await;
    let late = support::token_in(&e.mails_to("late@label.test")[0], "slv_");
    e.mongo
        .collection::<bson::Document>("auth_tokens")
        .update_many(
            bson::doc! { "purpose": "verify_email", "usedAt": { "$exists": false } },
            bson::doc! { "$set": { "expiresAt": bson::DateTime::from_millis(0) } },
        )
        .await
        .unwrap();
    let (s, _) = e.call(None, Method::POST, "/v1/auth/verify-email", Some(json!({"token": late}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "expired");

    // Password reset: unknown emails answer the same and mail nothing.
    let (s, _) = e
        .call(None, Method::POST, "/v1/auth/password-reset/request", Some(json!({"email": "nobody@label.test"})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(e.mails_to("nobody@label.test").is_empty());
    let (s, v) =
        e.call(None, Method::POST, "/v1/auth/password-reset/request", Some(json!({"email": {"$gt": ""}}))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"));
    for _ in 0..2 {
        let (s, _) = e
            .call(None, Method::POST, "/v1/auth/password-reset/request", Some(json!({"email": "RITA@label.test"})))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    // Served after the answer: wait for both to be audited (sent, too soon).
    let audits = e.mongo.collection::<bson::Document>("audit_logs");
    testkit::eventually(std::time::Duration::from_secs(20), "both reset requests served", || async {
        let n = audits.count_documents(bson::doc! { "action": "request_password_reset" }).await.ok()?;
        (n == 2).then_some(())
    })
    .await;
    let mails = e.mails_to("rita@label.test");
    assert_eq!(mails.len(), 2, "one reset email a minute (the verification, one reset)");
    assert!(e.mails_to("nobody@label.test").is_empty());
    let reset = support::token_in(&mails[1], "slr_");
    let (s, v) = e
        .call(None, Method::POST, "/v1/auth/password-reset", Some(json!({"token": reset, "new_password": "short"})))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("new_password")));
    let (s, v) = e
        .call(
            None,
            Method::POST,
            "/v1/auth/password-reset",
            Some(json!({"token": verify, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("token")),
        "a verification token is not a reset token"
    );
    let (s, _) = e
        .call(
            None,
            Method::POST,
            "/v1/auth/password-reset",
            Some(json!({"token": reset, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e
        .call(
            None,
            Method::POST,
            "/v1/auth/password-reset",
            Some(json!({"token": reset, "new_password": "yet another passphrase"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "single use");
    let (s, _) = e.call(Some(&old_session), Method::GET, "/v1/users/me", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a reset ends every session");
    assert_eq!(login(&e, "rita@label.test", PASSWORD, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&e, "rita@label.test", "a brand new passphrase", None).await.0, StatusCode::OK);

    // Logged and audited; tokens, emails and passwords never stored in clear.
    let logs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
        e.mongo.collection::<bson::Document>("email_logs").find(bson::doc! {}).await.unwrap(),
    )
    .await
    .unwrap();
    let templates: Vec<&str> = logs.iter().map(|l| l.get_str("template").unwrap()).collect();
    assert_eq!(templates.iter().filter(|t| **t == "password_reset").count(), 1);
    assert_eq!(templates.iter().filter(|t| **t == "verify_email").count(), 2);
    assert!(logs.iter().all(|l| l.get_str("status") == Ok("SENT")));
    let audit = e.ok(&e.op, Method::GET, &format!("/v1/audit?client_id={a}&resource_id={id}"), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in ["verify_email", "request_password_reset", "reset_password"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    for coll in ["users", "audit_logs", "auth_tokens", "email_logs"] {
        let docs: Vec<bson::Document> = futures::TryStreamExt::try_collect(
            e.mongo.collection::<bson::Document>(coll).find(bson::doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        let dump = format!("{docs:?}").to_lowercase();
        for secret in ["rita@label.test", "late@label.test", &verify, &reset, "brand new passphrase"] {
            assert!(!dump.contains(secret), "{coll} holds {secret}");
        }
    }
}

/// Issues #14 and #21: concurrent guesses cannot outrun the lockout. 50
/// wrong passwords at once for one account with 5 attempts allowed: at
/// most 5 are judged (401), every other one finds the account locked (423),
/// and the right password is refused while it is. Multi-threaded, so the
/// guesses really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_lock_the_account_after_max_attempts() {
    let e = env_custom(|cfg| {
        cfg.login_max_attempts = 5;
        cfg.login_lock_secs = 600;
    })
    .await;
    let (a, _) = e.tenant("bo-race").await;
    user(&e, &a, "race@label.test", "viewer").await;
    let mut guesses = Vec::new();
    for i in 0..50 {
        let (http, url) = (e.http.clone(), format!("{}/v1/auth/login", e.base));
        guesses.push(tokio::spawn(async move {
            let body = json!({"email": "race@label.test", "password": format!("wrong password {i}")});
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for g in guesses {
        let (s, v) = g.await.unwrap();
        assert!(s == StatusCode::UNAUTHORIZED || s == StatusCode::LOCKED, "{s} {v}");
        *by_status.entry(s.as_u16()).or_default() += 1;
    }
    assert_eq!(by_status.get(&401).copied(), Some(5), "judged guesses: {by_status:?}");
    assert_eq!(by_status.get(&423).copied(), Some(45), "{by_status:?}");
    let (s, v) = login(&e, "race@label.test", PASSWORD, None).await;
    assert_eq!((s, code(&v)), (StatusCode::LOCKED, "account_locked"), "locked even for the right password");
}

/// Issue #14: the unauthenticated `/v1/auth/*` routes are limited per
/// client IP: the address the proxy appended (the last `X-Forwarded-For`
/// hop; what a client writes before it is not believed), IPv6 by /64.
#[tokio::test]
async fn auth_routes_are_rate_limited_per_client_ip() {
    let e = env_custom(|cfg| cfg.auth_rate_per_minute = 3).await;
    let attempt = |xff: &'static str| {
        let e = &e;
        async move {
            let r = e
                .http
                .post(format!("{}/v1/auth/login", e.base))
                .header("x-forwarded-for", xff)
                .json(&json!({"email": "nobody@label.test", "password": "wrong password here"}))
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        }
    };
    let mut statuses = Vec::new();
    for xff in ["203.0.113.1", "6.6.6.6, 203.0.113.1", "7.7.7.7, 203.0.113.1", "8.8.8.8, 203.0.113.1"] {
        statuses.push(attempt(xff).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429], "a planted first hop does not make a new client");
    let (s, retry) = attempt("203.0.113.1").await;
    assert_eq!(s, 429);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1, "Retry-After");
    assert_eq!(attempt("203.0.113.2").await.0, 401, "another client is not limited");
    let (s, v) =
        e.call(None, Method::POST, "/v1/auth/password-reset/request", Some(json!({"email": "x@label.test"}))).await;
    assert!(s != StatusCode::TOO_MANY_REQUESTS, "the loopback test client has its own budget: {s} {v}");
    let mut v6 = Vec::new();
    for xff in ["2001:db8:9:9::1", "2001:db8:9:9::2", "2001:db8:9:9::3", "2001:db8:9:9::4"] {
        v6.push(attempt(xff).await.0);
    }
    assert_eq!(v6, [401, 401, 401, 429], "one /64, one budget");
}

/// Issue #14: a password-reset request answers the same, at once, whether
/// the account exists or not, even when the mail relay is down (it used to
/// answer 503 for existing accounts only: an account oracle).
#[tokio::test]
async fn password_reset_requests_do_not_reveal_accounts() {
    let e = env_custom(|cfg| cfg.mail_url = "smtp://127.0.0.1:1".to_string().into()).await;
    let (a, _) = e.tenant("bo-oracle").await;
    let id = user(&e, &a, "known@label.test", "viewer").await;
    for email in ["known@label.test", "unknown@label.test"] {
        let (s, v) = e.call(None, Method::POST, "/v1/auth/password-reset/request", Some(json!({"email": email}))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{email}: {v}");
    }
    // The known account's email was attempted after the answer, and failed.
    let logs = e.mongo.collection::<bson::Document>("email_logs");
    testkit::eventually(std::time::Duration::from_secs(20), "the failed attempt logged", || async {
        let filter = bson::doc! { "template": "password_reset", "status": "FAILED",
        "relatedId": bson::oid::ObjectId::parse_str(&id).ok()? };
        (logs.count_documents(filter).await.ok()? == 1).then_some(())
    })
    .await;
}
