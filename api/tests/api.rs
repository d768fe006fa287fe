//! The API against the real MongoDB-wire server and ClickHouse: auth and
//! keys, smartlink CRUD and validation, tenant isolation on every link and
//! analytics route, analytics from rollups equal to raw events, per-key
//! rate limits.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use api::analytics::{self as a, AnalyticsQuery};
use api::auth::Principal;
use bson::doc;
use reqwest::{Method, StatusCode};
use schemas::clickhouse::{ConsentCode, EventRow, KindCode, EVENTS_TABLE};
use serde_json::{json, Value};
use support::{code, env, env_with};

const DAY: u32 = 1_763_683_200; // 2025-11-21T00:00:00Z

fn now_s() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32
}

#[tokio::test]
async fn auth_tenants_and_keys() {
    let e = env().await;
    let (s, doc) = e.call(None, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/v1/smartlinks/{id}"].is_object());

    let body = json!({"name": "Label", "slug": "label", "domain": "links.label.test"});
    let (s, v) = e.call(None, Method::POST, "/v1/clients", Some(body.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _) = e.call(Some("slk_0000"), Method::POST, "/v1/clients", Some(body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, c) = e.call(Some(&e.op), Method::POST, "/v1/clients", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            "/v1/clients",
            Some(json!({"name": "x", "slug": "label", "domain": "other.label.test"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "slug_taken"));
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            "/v1/clients",
            Some(json!({"name": "x", "slug": "other", "domain": "links.label.test"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "domain_taken"));
    let (s, v) = e
        .call(Some(&e.op), Method::POST, "/v1/clients", Some(json!({"name": "x", "slug": "x2", "domain": "localhost"})))
        .await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request", Some("domain"))
    );
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            "/v1/clients",
            Some(json!({"name": "x", "slug": {"$gt": ""}, "domain": "a.test"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"), "operators in values are refused: {v}");
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            "/v1/clients",
            Some(json!({"name": "x", "slug": "x3", "domain": "a.test", "admin": true})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"), "unknown fields refused: {v}");

    // Keys: shown once, stored hashed, scoped, revocable.
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            &format!("/v1/clients/{id}/api-keys"),
            Some(json!({"name": "ci", "scopes": ["links:admin"]})),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scopes[0]")));
    let k = e
        .ok(
            &e.op,
            Method::POST,
            &format!("/v1/clients/{id}/api-keys"),
            Some(json!({"name": "ci", "scopes": ["links:write"]})),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("slk_"));
    let list = e.ok(&e.op, Method::GET, &format!("/v1/clients/{id}/api-keys"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("key").is_none(), "never listed: {list}");
    let stored = e.mongo.collection::<bson::Document>("api_keys").find_one(doc! {}).await.unwrap().unwrap();
    assert!(!stored.to_string().contains(&key[4..]), "only the hash is stored");

    let (s, v) = e
        .call(Some(&key), Method::POST, "/v1/clients", Some(json!({"name": "y", "slug": "y", "domain": "y.test"})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = e
        .call(
            Some(&key),
            Method::POST,
            &format!("/v1/clients/{id}/api-keys"),
            Some(json!({"name": "x", "scopes": ["links:read"]})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "tenant keys cannot mint keys");
    let found = e.ok(&e.op, Method::GET, "/v1/clients?domain=LINKS.label.test", None).await;
    assert_eq!(found[0]["id"], id.as_str());
    let (s, _) = e.call(Some(&key), Method::GET, "/v1/clients", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "tenant keys cannot list tenants");
    let own = e.ok(&key, Method::GET, &format!("/v1/clients/{id}"), None).await;
    assert_eq!(own["domain"], "links.label.test");
    let (s, v) = e.call(Some(&key), Method::GET, "/v1/analytics/overview", None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "no analytics:read scope");

    let key_id = k["id"].as_str().unwrap();
    let (s, _) = e.call(Some(&e.op), Method::DELETE, &format!("/v1/clients/{id}/api-keys/{key_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.call(Some(&key), Method::GET, &format!("/v1/clients/{id}"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked");

    let (s, v) = e.call(Some(&e.op), Method::GET, "/v1/nope", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = e.call(Some(&e.op), Method::PUT, "/v1/clients", None).await;
    assert_eq!((s, code(&v)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn smartlinks_crud_validation_and_tenant_isolation() {
    let e = env().await;
    let (a_id, a_key) = e.tenant("tenant-a").await;
    let (b_id, b_key) = e.tenant("tenant-b").await;
    let link = e.ok(
        &a_key,
        Method::POST,
        "/v1/smartlinks",
        Some(json!({"slug": "jiro-in-your-light", "track": {"title": "In Your Light", "artist_name": "Jiro"},
            "platforms": {"spotify": "https://open.spotify.com/track/x"}, "custom_platforms": [{"name": "Qobuz", "url": "https://qobuz.com/x"}]})),
    )
    .await;
    let a_link = link["id"].as_str().unwrap().to_string();
    assert_eq!(link["client_id"], a_id.as_str());
    assert_eq!(link["url"], "http://tenant-a.links.test/jiro-in-your-light");
    assert_eq!(link["status"], "active");

    // Validation names the field.
    for (body, field) in [
        (
            json!({"slug": "Bad Slug", "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "https://x.test"}}),
            "slug",
        ),
        (
            json!({"slug": "ok", "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "ftp://x.test"}}),
            "platforms.spotify",
        ),
        (
            json!({"slug": "ok", "track": {"title": "t", "artist_name": "a"}, "platforms": {"myspace": "https://x.test"}}),
            "platforms.myspace",
        ),
        (
            json!({"slug": "ok", "track": {"title": "", "artist_name": "a"}, "platforms": {"spotify": "https://x.test"}}),
            "track.title",
        ),
        (json!({"slug": "ok", "track": {"title": "t", "artist_name": "a"}}), "platforms"),
        (
            json!({"slug": "ok", "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "https://x.test"}, "media": {"cover_art": "javascript:alert(1)"}}),
            "media.cover_art",
        ),
    ] {
        let (s, v) = e.call(Some(&a_key), Method::POST, "/v1/smartlinks", Some(body)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let dup = json!({"slug": "jiro-in-your-light", "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "https://x.test"}});
    let (s, v) = e.call(Some(&a_key), Method::POST, "/v1/smartlinks", Some(dup.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "slug_taken"));
    let (s, _) = e.call(Some(&b_key), Method::POST, "/v1/smartlinks", Some(dup)).await;
    assert_eq!(s, StatusCode::CREATED, "slugs are unique per tenant only");
    let (s, v) = e.call(Some(&e.op), Method::GET, "/v1/smartlinks", None).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("client_id")));

    // Pages.
    e.link(&a_key, "second").await;
    e.link(&a_key, "third").await;
    let p1 = e.ok(&a_key, Method::GET, "/v1/smartlinks?limit=2", None).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["items"][0]["slug"], "third", "newest first");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = e.ok(&a_key, Method::GET, &format!("/v1/smartlinks?limit=2&cursor={cursor}"), None).await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert!(p2["next_cursor"].is_null());
    let via_op = e.ok(&e.op, Method::GET, &format!("/v1/smartlinks?client_id={a_id}&status=active"), None).await;
    assert_eq!(via_op["items"].as_array().unwrap().len(), 3);

    // Patch: replaces, validates, bumps updatedAt (what the edge polls).
    let before = e.ok(&a_key, Method::GET, &format!("/v1/smartlinks/{a_link}"), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = e
        .ok(
            &a_key,
            Method::PATCH,
            &format!("/v1/smartlinks/{a_link}"),
            Some(json!({"slug": "in-your-light", "platforms": {"deezer": "https://deezer.com/x"}})),
        )
        .await;
    assert_eq!(after["slug"], "in-your-light");
    assert_eq!(after["platforms"], json!({"deezer": "https://deezer.com/x"}));
    assert_eq!(after["custom_platforms"][0]["name"], "Qobuz", "untouched fields stay");
    // Both present and parsed: comparing two Options would pass with a missing `before`.
    let at = |v: &Value| bson::DateTime::parse_rfc3339_str(v["updated_at"].as_str().expect("updated_at")).unwrap();
    assert!(at(&after) > at(&before), "updated_at moves forward: {} -> {}", before["updated_at"], after["updated_at"]);
    let (s, v) =
        e.call(Some(&a_key), Method::PATCH, &format!("/v1/smartlinks/{a_link}"), Some(json!({"slug": "second"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "slug_taken"));
    let (s, v) = e
        .call(Some(&a_key), Method::PATCH, &format!("/v1/smartlinks/{a_link}"), Some(json!({"status": "deleted"})))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));

    // Tenant B sees none of A's resources: 404 everywhere, like unknown ids.
    let link_path = format!("/v1/smartlinks/{a_link}");
    for (m, path, body) in [
        (Method::GET, link_path.clone(), None),
        (Method::PATCH, link_path.clone(), Some(json!({"featured": true}))),
        (Method::DELETE, link_path.clone(), None),
        (Method::GET, format!("/v1/smartlinks?client_id={a_id}"), None),
        (
            Method::POST,
            "/v1/smartlinks".to_string(),
            Some(
                json!({"client_id": a_id, "slug": "intruder", "track": {"title": "t", "artist_name": "a"}, "platforms": {"spotify": "https://x.test"}}),
            ),
        ),
        (Method::GET, format!("/v1/clients/{a_id}"), None),
    ] {
        let (s, v) = e.call(Some(&b_key), m.clone(), &path, body).await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{m} {path}: {v}");
    }
    for route in ["overview", "timeseries", "breakdown", "realtime", "health", "export"] {
        for scope in [format!("smartlink_id={a_link}"), format!("client_id={a_id}")] {
            let path = format!("/v1/analytics/{route}?{scope}&dimension=country");
            let (s, v) = e.call(Some(&b_key), Method::GET, &path, None).await;
            assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{path}: {v}");
        }
    }
    let unknown = bson::oid::ObjectId::new().to_hex();
    let (s, _) = e.call(Some(&b_key), Method::GET, &format!("/v1/smartlinks/{unknown}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let still = e.ok(&a_key, Method::GET, &format!("/v1/smartlinks/{a_link}"), None).await;
    assert_eq!(still["featured"], false, "B's PATCH changed nothing");
    assert_eq!(still["status"], "active", "B's DELETE changed nothing");
    let own_b = e.ok(&b_key, Method::GET, &format!("/v1/clients/{b_id}"), None).await;
    assert_eq!(own_b["id"], b_id.as_str());

    // Delete archives.
    let (s, _) = e.call(Some(&a_key), Method::DELETE, &link_path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let archived = e.ok(&a_key, Method::GET, &link_path, None).await;
    assert_eq!(archived["status"], "archived");
}

fn ev(kind: KindCode, ts: u32, tenant: &str, link: &str, visitor: u64, session: u64, ingested_at: u32) -> EventRow {
    EventRow::minimal(uuid::Uuid::now_v7(), kind, ts, tenant, link, visitor, session, ingested_at)
}

// One push per visitor, each with the comment that says what it tests.
#[allow(clippy::vec_init_then_push)]
#[tokio::test]
async fn analytics_from_rollups_equal_raw_events() {
    let e = env().await;
    let (tenant, key) = e.tenant("stats").await;
    let link_a = e.link(&key, "a").await;
    let link_b = e.link(&key, "b").await;
    let now = now_s();
    let (h10, h23) = (DAY + 10 * 3600, DAY + 23 * 3600);
    let mut rows = Vec::new();
    // Visitor 1: A at 10h (view + Spotify click) and the next day at 01h (view): returning.
    rows.push(EventRow {
        country: *b"GB",
        region: "England".into(),
        utm_medium: "social".into(),
        ..ev(KindCode::View, h10 + 5, &tenant, &link_a, 1, 11, now)
    });
    rows.push(EventRow {
        platform: "spotify".into(),
        country: *b"GB",
        ..ev(KindCode::Click, h10 + 9, &tenant, &link_a, 1, 11, now)
    });
    rows.push(EventRow {
        country: *b"GB",
        is_returning: 1,
        ..ev(KindCode::View, DAY + 86_400 + 3600 + 5, &tenant, &link_a, 1, 12, now)
    });
    // Visitor 2: B at 23h, from Japan with consent, clicks Apple Music.
    rows.push(EventRow {
        country: *b"JP",
        city: "Tokyo".into(),
        consent: ConsentCode::Granted,
        ..ev(KindCode::View, h23 + 100, &tenant, &link_b, 2, 21, now)
    });
    rows.push(EventRow {
        platform: "apple-music".into(),
        country: *b"JP",
        ..ev(KindCode::Click, h23 + 110, &tenant, &link_b, 2, 21, now)
    });
    // A crawler on A, and a view that lands in the partial hour at the end of the range.
    rows.push(EventRow {
        is_bot: 1,
        bot_reason: "crawler_ua".into(),
        ..ev(KindCode::View, h10 + 30, &tenant, &link_a, 9, 91, now)
    });
    rows.push(EventRow {
        country: *b"FR",
        ..ev(KindCode::View, DAY + 86_400 + 2 * 3600 + 60, &tenant, &link_a, 3, 31, now)
    });
    // Their pages' engagement beacons (issue #19): visitor 1 stayed 14 s and
    // clicked, visitor 2 left after 3 s (a bounce), visitor 3, in the raw
    // half hour, after 5 s (a bounce); the crawler's is not counted.
    e.insert_engagements(&tenant, &link_a, &[(h10 + 5, 14_000, true, false), (h10 + 30, 60_000, false, true)]).await;
    e.insert_engagements(&tenant, &link_b, &[(h23 + 100, 3_000, false, false)]).await;
    e.insert_engagements(&tenant, &link_a, &[(DAY + 86_400 + 2 * 3600 + 60, 5_000, false, false)]).await;
    e.insert_and_roll(&rows).await;

    // What a click-out is worth to the tenant (seed 000 conversion values).
    e.ok(
        &e.op,
        Method::PATCH,
        &format!("/v1/clients/{tenant}"),
        Some(json!({"settings": {"conversion_values": [{"platform": "spotify", "value_minor": 50},
            {"platform": "apple-music", "value_minor": 10}, {"platform": "apple-music", "value_minor": 30}]}})),
    )
    .await;

    // 22:00 the day before → 02:30 the day after: an hour, a day, two hours and a half hour.
    let range = "from=2025-11-20T22:00:00Z&to=2025-11-22T02:30:00Z";
    let o = e.ok(&key, Method::GET, &format!("/v1/analytics/overview?client_id={tenant}&{range}"), None).await;
    assert_eq!(
        (
            o["views"].as_i64(),
            o["clicks"].as_i64(),
            o["unique_visitors"].as_i64(),
            o["returning_visitors"].as_i64(),
            o["bots"].as_i64()
        ),
        (Some(4), Some(2), Some(3), Some(1), Some(1)),
        "{o}"
    );
    assert_eq!(o["conversions"], 2);
    assert_eq!(o["conversion_rate"], 0.5);
    assert_eq!(o["engaged_views"], 3, "{o}");
    assert_eq!(
        o["conversion_value_minor"], 80,
        "a Spotify click at 50, an Apple Music one at 30 (the last value given)"
    );
    assert!((o["avg_time_on_page_s"].as_f64().unwrap() - 22.0 / 3.0).abs() < 1e-9, "{o}");
    assert!((o["bounce_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{o}");
    assert_eq!(o["top_countries"][0], json!({"value": "GB", "count": 2}));
    assert_eq!(
        o["clicks_by_platform"],
        json!([{"value": "apple-music", "count": 1}, {"value": "spotify", "count": 1}])
    );
    assert!(o["sources"]["rollup_windows"].as_u64().unwrap() >= 3, "closed windows from rollups: {o}");
    assert_eq!(o["sources"]["raw_ranges"], 1, "the half hour from raw events");

    // Identical when everything is read from raw events, for the tenant and for a link.
    let q = |scope: (&str, &str), extra: &[(&str, &str)]| {
        let mut q = AnalyticsQuery {
            from: Some("2025-11-20T22:00:00Z".into()),
            to: Some("2025-11-22T02:30:00Z".into()),
            ..Default::default()
        };
        match scope.0 {
            "client" => q.client_id = Some(scope.1.to_string()),
            _ => q.smartlink_id = Some(scope.1.to_string()),
        }
        for (k, v) in extra {
            match *k {
                "interval" => q.interval = Some(v.to_string()),
                "dimension" => q.dimension = Some(v.to_string()),
                _ => q.include_bots = Some(*v == "true"),
            }
        }
        q
    };
    let st = &e.api.state;
    let op = Principal::Operator;
    for scope in [("client", tenant.as_str()), ("link", link_a.as_str())] {
        let rolled = a::overview_with(st, &op, &q(scope, &[]), Some(u32::MAX)).await.unwrap();
        let raw = a::overview_with(st, &op, &q(scope, &[]), Some(0)).await.unwrap();
        assert_eq!(raw.sources.rollup_windows, 0);
        assert!(rolled.sources.rollup_windows > 0);
        assert_eq!(
            (rolled.views, rolled.clicks, rolled.unique_visitors, rolled.bots),
            (raw.views, raw.clicks, raw.unique_visitors, raw.bots)
        );
        assert_eq!((&rolled.top_countries, &rolled.clicks_by_platform), (&raw.top_countries, &raw.clicks_by_platform));
        for interval in ["hour", "day"] {
            let mut rolled =
                a::timeseries_with(st, &op, &q(scope, &[("interval", interval)]), Some(u32::MAX)).await.unwrap();
            let mut raw = a::timeseries_with(st, &op, &q(scope, &[("interval", interval)]), Some(0)).await.unwrap();
            assert!(rolled.points.iter().any(|p| p.source == "rollup"));
            for p in rolled.points.iter_mut().chain(raw.points.iter_mut()) {
                p.source.clear();
            }
            assert_eq!(rolled, raw, "{scope:?} {interval}");
        }
        for dim in ["country", "platform", "device", "region", "city", "utm_medium"] {
            let rolled = a::breakdown_with(st, &op, &q(scope, &[("dimension", dim)]), Some(u32::MAX)).await.unwrap();
            let raw = a::breakdown_with(st, &op, &q(scope, &[("dimension", dim)]), Some(0)).await.unwrap();
            assert_eq!(rolled, raw, "{scope:?} {dim}");
        }
    }
    let link_o = a::overview_with(st, &op, &q(("link", &link_a), &[]), None).await.unwrap();
    assert_eq!((link_o.views, link_o.clicks, link_o.unique_visitors), (3, 1, 2));

    // Daily series: uniques per day, not sums of hours.
    let ts = e
        .ok(&key, Method::GET, &format!("/v1/analytics/timeseries?client_id={tenant}&{range}&interval=day"), None)
        .await;
    let pts = ts["points"].as_array().unwrap();
    assert_eq!(pts.len(), 3);
    assert_eq!(
        (pts[1]["start"].as_str(), pts[1]["views"].as_i64(), pts[1]["unique_visitors"].as_i64()),
        (Some("2025-11-21T00:00:00Z"), Some(2), Some(2))
    );
    assert_eq!(pts[1]["source"], "rollup");
    assert_eq!(pts[1]["clicks_by_platform"], json!({"apple-music": 1, "spotify": 1}));
    assert_eq!(pts[2]["source"], "raw", "the last day is clipped to the range");

    // Breakdowns: raw-only dimensions carry the country.
    let b = e
        .ok(&key, Method::GET, &format!("/v1/analytics/breakdown?client_id={tenant}&{range}&dimension=city"), None)
        .await;
    assert_eq!(b["items"], json!([{"value": "Tokyo", "country": "JP", "count": 1, "share": 1.0}]));
    let b = e
        .ok(
            &key,
            Method::GET,
            &format!("/v1/analytics/breakdown?smartlink_id={link_a}&{range}&dimension=country&limit=1"),
            None,
        )
        .await;
    assert_eq!(
        (b["total"].as_i64(), b["items"].as_array().unwrap().len(), b["metric"].as_str()),
        (Some(3), 1, Some("views"))
    );
    let (s, v) = e
        .call(Some(&key), Method::GET, &format!("/v1/analytics/breakdown?client_id={tenant}&dimension=planet"), None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("dimension")));
    let (s, v) = e
        .call(Some(&key), Method::GET, &format!("/v1/analytics/overview?client_id={tenant}&from=yesterday"), None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
    // Both ids: the link within that tenant; with another tenant's id, not found.
    let link_only =
        e.ok(&key, Method::GET, &format!("/v1/analytics/overview?smartlink_id={link_a}&{range}"), None).await;
    let both = e
        .ok(
            &key,
            Method::GET,
            &format!("/v1/analytics/overview?client_id={tenant}&smartlink_id={link_a}&{range}"),
            None,
        )
        .await;
    assert_eq!(both, link_only);
    let elsewhere = format!("/v1/analytics/overview?client_id=ffffffffffffffffffffffff&smartlink_id={link_a}");
    let (s, v) = e.call(Some(&key), Method::GET, &elsewhere, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    let (s, v) = e.call(Some(&key), Method::GET, "/v1/analytics/overview?client=x", None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_query"));

    // Bots on request.
    let with_bots = e
        .ok(&key, Method::GET, &format!("/v1/analytics/overview?client_id={tenant}&{range}&include_bots=true"), None)
        .await;
    assert_eq!((with_bots["views"].as_i64(), with_bots["bots"].as_i64()), (Some(5), Some(1)));

    // CSV export: a header and one row per day, the same numbers.
    let resp = e
        .http
        .get(format!("{}/v1/analytics/export?client_id={tenant}&{range}&interval=day", e.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("start,views,clicks,unique_visitors") && lines[0].contains("clicks_apple-music"));
    assert!(lines[2].starts_with("2025-11-21T00:00:00Z,2,2,2,"), "{csv}");

    // Realtime and health read the last minutes.
    let mut ins = e.ch.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
    for v in 0..3u64 {
        ins.write(&EventRow {
            consent: ConsentCode::Granted,
            ..ev(KindCode::View, now - 60, &tenant, &link_b, 100 + v, 200 + v, now)
        })
        .await
        .unwrap();
    }
    ins.end().await.unwrap();
    let rt = e.ok(&key, Method::GET, &format!("/v1/analytics/realtime?client_id={tenant}"), None).await;
    assert_eq!((rt["active_visitors"].as_u64(), rt["views_last_30_min"].as_u64()), (Some(3), Some(3)), "{rt}");
    assert_eq!(rt["per_minute"].as_array().unwrap().len(), 30);
    let h = e.ok(&key, Method::GET, &format!("/v1/analytics/health?smartlink_id={link_b}"), None).await;
    assert_eq!(
        (h["views"].as_u64(), h["client_tracking_rate"].as_f64(), h["pixels_configured"].as_bool()),
        (Some(3), Some(1.0), Some(true)),
        "{h}"
    );
    assert_eq!(h["status"], "healthy");
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let e = env_with(1, 3).await;
    let (id, key) = e.tenant("limited").await; // 2 operator requests
    let path = format!("/v1/clients/{id}");
    // A burst of 3, then 1 a second: the first 429 comes after 3 requests
    // plus one per second elapsed (a slow machine refills a token or two;
    // counting them keeps the test exact without a timing assumption).
    let started = std::time::Instant::now();
    let mut allowed = 0;
    let resp = loop {
        let resp = e.http.get(format!("{}{path}", e.base)).bearer_auth(&key).send().await.unwrap();
        if resp.status() != StatusCode::OK {
            break resp;
        }
        allowed += 1;
        assert!(allowed <= 50, "never limited");
    };
    let refilled = started.elapsed().as_secs_f64().ceil() as usize;
    assert!((3..=3 + refilled).contains(&allowed), "{allowed} allowed in {:?}", started.elapsed());
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "rate_limited");
    // The operator's own budget is separate (at least one request left of 3).
    let (s, _) = e.call(Some(&e.op), Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    let metrics = reqwest::get(format!("http://{}/metrics", e.api.admin_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("api_rate_limited_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"api_requests_total{method="GET",route="/v1/clients/{id}",status="429"} 1"#),
        "{metrics}"
    );
}

/// Issue #13: the agency view (operator only) totals every tenant and link
/// from the same rollups, with growth against the previous period.
#[tokio::test]
async fn agency_view_totals_every_tenant_with_growth() {
    let e = env().await;
    let (t1, k1) = e.tenant("agency-a").await;
    let l1 = e.link(&k1, "a").await;
    let (t2, k2) = e.tenant("agency-b").await;
    let l2 = e.link(&k2, "b").await;
    let now = now_s();
    let rows = vec![
        ev(KindCode::View, DAY - 86_400 + 100, &t1, &l1, 1, 1, now),
        ev(KindCode::View, DAY + 100, &t1, &l1, 2, 2, now),
        ev(KindCode::View, DAY + 200, &t1, &l1, 3, 3, now),
        EventRow { platform: "spotify".into(), ..ev(KindCode::Click, DAY + 300, &t1, &l1, 3, 3, now) },
        ev(KindCode::View, DAY + 400, &t2, &l2, 4, 4, now),
    ];
    e.insert_and_roll(&rows).await;
    let path = "/v1/analytics/agency?from=2025-11-21T00:00:00Z&to=2025-11-22T00:00:00Z";
    let v = e.ok(&e.op, Method::GET, path, None).await;
    assert_eq!((v["views"].as_i64(), v["clicks"].as_i64(), v["previous_views"].as_i64()), (Some(3), Some(1), Some(1)));
    assert_eq!(v["views_growth"], 2.0);
    assert_eq!(v["previous_from"], "2025-11-20T00:00:00Z");
    let top = &v["top_tenants"];
    assert_eq!((top[0]["client_id"].as_str(), top[0]["name"].as_str()), (Some(t1.as_str()), Some("agency-a")));
    assert_eq!(
        (top[0]["views"].as_i64(), top[0]["clicks"].as_i64(), top[0]["previous_views"].as_i64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(top[0]["views_growth"], 1.0);
    assert_eq!((top[1]["client_id"].as_str(), top[1]["views"].as_i64()), (Some(t2.as_str()), Some(1)));
    assert!(top[1]["views_growth"].is_null(), "no previous views: no growth");
    assert_eq!(v["top_links"][0]["smartlink_id"], l1.as_str());
    assert_eq!(v["tenant_count"], 2);
    let (status, body) = e.call(Some(&k1), Method::GET, path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// Issue #13: an analytics answer is served again to the same principal for
/// the same request within `API_ANALYTICS_CACHE_TTL_MS`, never to another
/// key, and a refusal is never cached.
#[tokio::test]
async fn analytics_answers_are_cached_per_principal() {
    let e = env().await;
    let (t1, k1) = e.tenant("cache-a").await;
    let (_, k2) = e.tenant("cache-b").await;
    let l1 = e.link(&k1, "a").await;
    let now = now_s();
    e.insert_and_roll(&[ev(KindCode::View, DAY + 100, &t1, &l1, 1, 1, now)]).await;
    let path = format!("/v1/analytics/overview?client_id={t1}&from=2025-11-21T00:00:00Z&to=2025-11-22T00:00:00Z");
    let get = |key: String| {
        let (e, path) = (&e, &path);
        async move {
            let r = e.http.get(format!("{}{path}", e.base)).bearer_auth(key).send().await.unwrap();
            let (status, cache) = (r.status(), r.headers().get("x-cache").map(|v| v.to_str().unwrap().to_string()));
            let v: Value = r.json().await.unwrap();
            (status, cache, v)
        }
    };
    let (s, cache, v) = get(k1.clone()).await;
    assert_eq!((s, cache.as_deref(), v["views"].as_i64()), (StatusCode::OK, Some("miss"), Some(1)));
    e.insert_and_roll(&[ev(KindCode::View, DAY + 200, &t1, &l1, 2, 2, now)]).await;
    let (_, cache, again) = get(k1.clone()).await;
    assert_eq!((cache.as_deref(), again), (Some("hit"), v), "the same answer within the TTL");
    // Another key of the same tenant has its own entry: the fresh numbers.
    let k = e
        .ok(
            &e.op,
            Method::POST,
            &format!("/v1/clients/{t1}/api-keys"),
            Some(json!({"name": "second", "scopes": ["analytics:read"]})),
        )
        .await;
    let (_, cache, fresh) = get(k["key"].as_str().unwrap().to_string()).await;
    assert_eq!((cache.as_deref(), fresh["views"].as_i64()), (Some("miss"), Some(2)));
    // Another tenant's key is refused, every time.
    for _ in 0..2 {
        let (s, _, body) = get(k2.clone()).await;
        assert!(s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND, "{s} {body}");
    }
}

/// Issue #16: Alertmanager's webhook reaches the operators by email (the
/// file outbox here), resolved notifications too; only the operator key
/// may post, and a malformed notification is a 400.
#[tokio::test]
async fn alertmanager_notifications_are_emailed_to_the_operators() {
    let e = env().await;
    let notification = |status: &str| {
        json!({
            "version": "4", "status": status, "receiver": "operators", "groupKey": "{}:{alertname=\"TargetDown\"}",
            "groupLabels": {"alertname": "TargetDown", "service": "ingest"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "truncatedAlerts": 0,
            "alerts": [{
                "status": status, "fingerprint": "abc",
                "labels": {"alertname": "TargetDown", "service": "ingest", "severity": "page"},
                "annotations": {"summary": "ingest does not answer /metrics", "runbook_url": "deploy/runbooks/TargetDown.md"},
                "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://x"
            }]
        })
    };
    let r = e.ok(&e.op, Method::POST, "/v1/ops/alerts", Some(notification("firing"))).await;
    assert_eq!((r["alerts"].as_u64(), r["emails"].as_u64()), (Some(1), Some(2)));
    let mails = e.mails_to("oncall@ops.test");
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("[FIRING:1] TargetDown (ingest)"), "{}", mails[0]);
    assert!(mails[0].contains("deploy/runbooks/TargetDown.md"));
    e.ok(&e.op, Method::POST, "/v1/ops/alerts", Some(notification("resolved"))).await;
    assert!(e.mails_to("sre@ops.test").iter().any(|m| m.contains("[RESOLVED] TargetDown (ingest)")));

    let (_, key) = e.tenant("ops-not-allowed").await;
    let (s, _) = e.call(Some(&key), Method::POST, "/v1/ops/alerts", Some(notification("firing"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = e.call(Some(&e.op), Method::POST, "/v1/ops/alerts", Some(notification("burning"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

/// Issue #16: every answer carries a request id (the caller's when usable,
/// else a fresh one), the id its log lines carry.
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let e = env().await;
    let url = format!("{}/v1/smartlinks", e.base);
    let r = e.http.get(&url).bearer_auth(&e.op).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let r = e.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let r = e.http.get(&url).header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
}

/// Issue #14: a hostname serves one tenant, whether it is a tenant's
/// domain or its subdomain.
#[tokio::test]
async fn a_hostname_is_claimed_once_as_domain_or_subdomain() {
    let e = env().await;
    let body = |slug: &str, domain: &str, sub: Option<&str>| {
        let mut b = json!({"name": slug, "slug": slug, "domain": domain});
        if let Some(s) = sub {
            b["subdomain"] = json!(s);
        }
        b
    };
    e.ok(&e.op, Method::POST, "/v1/clients", Some(body("host-a", "links.host-a.test", Some("host-a.agency.test"))))
        .await;
    for (b, expected) in [
        (body("host-b", "host-a.agency.test", None), "domain_taken"),
        (body("host-c", "links.host-c.test", Some("links.host-a.test")), "domain_taken"),
        (body("host-d", "links.host-d.test", Some("host-a.agency.test")), "domain_taken"),
        (body("host-a", "links.host-e.test", None), "slug_taken"),
    ] {
        let (s, v) = e.call(Some(&e.op), Method::POST, "/v1/clients", Some(b.clone())).await;
        assert_eq!((s, code(&v)), (StatusCode::CONFLICT, expected), "{b}");
    }
    let (s, v) = e
        .call(
            Some(&e.op),
            Method::POST,
            "/v1/clients",
            Some(body("host-f", "same.host-f.test", Some("same.host-f.test"))),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("subdomain")));
    // The locks are released: a free hostname is taken at once.
    e.ok(&e.op, Method::POST, "/v1/clients", Some(body("host-g", "links.host-g.test", Some("host-g.agency.test"))))
        .await;
}

/// Security review finding 17: the API's own listener against slowloris —
/// a request head dribbled byte by byte is cut at `API_HEADER_TIMEOUT_MS`,
/// and connections past `API_MAX_CONNECTIONS` are closed at accept and counted.
#[tokio::test]
async fn slow_request_heads_are_cut_and_connections_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = support::env_custom(|cfg| {
        cfg.header_timeout_ms = 300;
        cfg.max_connections = 3;
    })
    .await;
    let addr = e.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    for _ in 0..15 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if slow.write_all(b"X").await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(3), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a head dribbled for 1.5 s still holds its connection (timeout 300 ms)");
    drop(slow);
    // Three open connections (held idle after one answered request each); the fourth is closed.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut first = [0u8; 16];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first[..12], b"HTTP/1.1 200");
        held.push(s);
    }
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = fourth.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), fourth.read_to_end(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "the fourth connection was served: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let metrics = reqwest::get(format!("http://{}/metrics", e.api.admin_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("api_connections_refused_total 1"), "{metrics}");
}

/// Security review finding 13: `max_smartlinks_per_month` is enforced —
/// concurrent creations cannot all pass one count, and archiving a link
/// does not give its place back (the limit counts creations this UTC month).
#[tokio::test]
async fn a_tenant_creates_at_most_its_plan_s_links_per_month() {
    let e = env().await;
    let id = e.tenant_with("quota", json!({"max_smartlinks_per_month": 3})).await;
    let (key, _) = e.key_with(&id, &["links:write"]).await;
    let body = |i: usize| {
        json!({"slug": format!("quota-{i}"), "track": {"title": "T", "artist_name": "A"},
            "platforms": {"spotify": "https://open.spotify.com/track/x"}})
    };
    let answers =
        futures::future::join_all((0..8).map(|i| e.call(Some(&key), Method::POST, "/v1/smartlinks", Some(body(i)))))
            .await;
    let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, v)| v).collect();
    assert_eq!(created.len(), 3, "{answers:?}");
    for (s, v) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!((*s, code(v)), (StatusCode::FORBIDDEN, "monthly_link_limit"), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("allows 3 new smartlinks a month"), "{v}");
    }
    let first = created[0]["id"].as_str().unwrap();
    let (s, _) = e.call(Some(&key), Method::DELETE, &format!("/v1/smartlinks/{first}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = e.call(Some(&key), Method::POST, "/v1/smartlinks", Some(body(9))).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "monthly_link_limit"), "{v}");
    // Another tenant's count is its own.
    let (_, other) = e.tenant("quota-other").await;
    e.link(&other, "free").await;
}

/// Issue #18: `PATCH /v1/clients/{id}`. The operator changes anything; a
/// tenant admin its name, pixels, look and display settings, not its
/// status, plan or limits (403 naming the field); other roles and keys
/// nothing; another tenant's admin sees a 404. Every change is audited with
/// the fields before and after.
#[tokio::test]
async fn a_tenant_is_changed_by_the_operator_and_by_its_admin_within_their_rights() {
    let e = env().await;
    let (id, key) = e.tenant("patchy").await;
    let path = format!("/v1/clients/{id}");
    let before = e.ok(&e.op, Method::GET, &path, None).await;
    let v = e
        .ok(
            &e.op,
            Method::PATCH,
            &path,
            Some(json!({"name": "Patchy Records", "status": "trial", "plan_type": "professional",
                "tracking": {"ga4": "G-NEW1234", "tiktok": "CABC1234"},
                "settings": {"max_users_per_client": 7, "api_rate_limit": 5000}})),
        )
        .await;
    assert_eq!(
        (v["name"].as_str(), v["status"].as_str(), v["plan_type"].as_str()),
        (Some("Patchy Records"), Some("trial"), Some("professional"))
    );
    assert_eq!(
        v["tracking"],
        json!({"ga4": "G-NEW1234", "gtm": null, "meta_pixel": null, "tiktok": "CABC1234"}),
        "tracking replaced whole"
    );
    assert_eq!(
        (v["settings"]["max_users_per_client"].as_i64(), v["settings"]["api_rate_limit"].as_i64()),
        (Some(7), Some(5000))
    );
    assert_eq!(
        v["settings"]["analytics_retention_days"], before["settings"]["analytics_retention_days"],
        "absent settings kept"
    );
    assert_eq!(v["domain"], before["domain"]);

    let (admin, _) = support::user_session(&e, &id, "admin@patchy.test", "admin").await;
    let v = e
        .ok(
            &admin,
            Method::PATCH,
            &path,
            Some(json!({"branding": {"primary_color": "#FF0066", "font": "Inter, sans-serif"},
            "settings": {"default_platform_order": ["deezer", "spotify"], "anonymize_ip": false}})),
        )
        .await;
    assert_eq!(v["branding"]["primary_color"], "#FF0066");
    assert_eq!(v["settings"]["default_platform_order"], json!(["deezer", "spotify"]));
    assert_eq!(v["settings"]["max_users_per_client"], 7, "limits untouched");
    let v = e
        .ok(
            &admin,
            Method::PATCH,
            &path,
            Some(json!({"branding": {"texts": {"fr": {"listen": "Jouer", "accept": " "}}}})),
        )
        .await;
    assert_eq!(v["branding"]["texts"]["fr"]["listen"], "Jouer", "the tenant's wording of its pages");
    assert_eq!(v["branding"]["texts"]["fr"]["accept"], Value::Null, "a blank text keeps the edge's");
    assert_eq!(v["branding"]["primary_color"], Value::Null, "branding is replaced whole");
    for (texts, field) in [
        (json!({"de": {"listen": "Hören"}}), "branding.texts.de"),
        (json!({"fr": {"consent": "a\u{7}b"}}), "branding.texts.fr.consent"),
    ] {
        let (s, v) = e.call(Some(&admin), Method::PATCH, &path, Some(json!({"branding": {"texts": texts}}))).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    for (body, field) in [
        (json!({"plan_type": "enterprise"}), "plan_type"),
        (json!({"status": "active"}), "status"),
        (json!({"settings": {"api_rate_limit": 1000000}}), "settings.api_rate_limit"),
        (json!({"settings": {"max_smartlinks_per_month": 1000000}}), "settings.max_smartlinks_per_month"),
    ] {
        let (s, v) = e.call(Some(&admin), Method::PATCH, &path, Some(body)).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(field), "{v}");
    }
    let (s, v) =
        e.call(Some(&admin), Method::PATCH, &path, Some(json!({"settings": {"analytics_retention_days": 0}}))).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("settings.analytics_retention_days")),
        "{v}"
    );
    let (s, v) = e.call(Some(&admin), Method::PATCH, &path, Some(json!({"domain": "elsewhere.test"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"), "the domain is not patched: {v}");
    let (viewer, _) = support::user_session(&e, &id, "viewer@patchy.test", "viewer").await;
    for who in [&viewer, &key] {
        let (s, _) = e.call(Some(who), Method::PATCH, &path, Some(json!({"name": "Hijacked"}))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (other, _) = e.tenant("patchy-other").await;
    let (other_admin, _) = support::user_session(&e, &other, "admin@patchy-other.test", "admin").await;
    let (s, _) = e.call(Some(&other_admin), Method::PATCH, &path, Some(json!({"name": "Hijacked"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e.ok(&e.op, Method::GET, &path, None).await["name"], "Patchy Records", "refused changes wrote nothing");

    let audits: Vec<schemas::crm::AuditRecord> = {
        use futures::TryStreamExt;
        let oid = bson::oid::ObjectId::parse_str(&id).unwrap();
        e.mongo
            .collection(schemas::mongo::collections::AUDIT_LOGS)
            .find(doc! { "resource": "clients", "action": "update", "resourceId": oid.to_hex() })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(audits.len(), 3, "one per change made, none for the refused: {audits:?}");
    let fields: Vec<&str> = audits[0].changes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"metadata.planType") && fields.contains(&"settings.maxUsersPerClient"), "{fields:?}");
    assert_eq!((audits[1].actor.kind.as_str(), audits[1].actor.role.as_str()), ("user", "admin"));
    assert!(audits[2].changes.iter().any(|c| c.field == "branding.texts.fr.listen"), "{:?}", audits[2].changes);
}

/// Issue #18: `max_users_per_client` is enforced on user creation, under
/// concurrency (one count cannot admit several), with 403 `user_limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_has_at_most_its_plan_s_users() {
    let e = env().await;
    let id = &e.tenant_with("few", json!({"max_users_per_client": 2})).await;
    let answers = futures::future::join_all((0..6).map(|i| {
        e.call(
            Some(&e.op),
            Method::POST,
            "/v1/users",
            Some(json!({"client_id": id, "email": format!("u{i}@few.test"),
            "password": support::PASSWORD, "first_name": "Ada", "last_name": "L", "role": "agent"})),
        )
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    assert_eq!(created, 2, "{answers:?}");
    for (s, v) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!((*s, code(v)), (StatusCode::FORBIDDEN, "user_limit"), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("allows 2 users"), "{v}");
    }
    // Raised by the operator: one more fits.
    e.ok(&e.op, Method::PATCH, &format!("/v1/clients/{id}"), Some(json!({"settings": {"max_users_per_client": 3}})))
        .await;
    support::user(&e, id, "late@few.test", "viewer").await;
}

/// Issue #18: the plan's requests per second bind all of a tenant's keys
/// and users together (429 `plan_rate_limit`, `Retry-After`), a plan
/// change applies at once, and the tenant's hourly `api_rate_limit` binds
/// its keys (429 `hourly_request_limit`) but not its users' sessions.
#[tokio::test]
async fn a_tenant_s_plan_limits_its_requests_per_second_and_its_keys_per_hour() {
    let e = support::env_custom(|cfg| {
        (cfg.plan_starter_rps, cfg.plan_professional_rps, cfg.plan_enterprise_rps) = (2, 10_000, 10_000);
    })
    .await;
    let (id, key_a) = e.tenant("busy").await;
    let (key_b, _) = e.key_with(&id, &["links:read"]).await;
    let path = format!("/v1/clients/{id}");
    // Starter: 2 a second, burst 4, for both keys together. Count what
    // the refill adds while the loop runs, as the per-key test does.
    let started = std::time::Instant::now();
    let mut allowed = 0;
    let refused = loop {
        let key = if allowed % 2 == 0 { &key_a } else { &key_b };
        let resp = e.http.get(format!("{}{path}", e.base)).bearer_auth(key).send().await.unwrap();
        if resp.status() != StatusCode::OK {
            break resp;
        }
        allowed += 1;
        assert!(allowed <= 100, "never limited");
    };
    let refilled = 2 * started.elapsed().as_secs_f64().ceil() as usize;
    assert!((4..=4 + refilled).contains(&allowed), "{allowed} allowed in {:?}", started.elapsed());
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_eq!(code(&v), "plan_rate_limit", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("2 requests per second"), "{v}");
    // The operator is not bound by the tenant's plan, and raises it.
    e.ok(&e.op, Method::PATCH, &path, Some(json!({"plan_type": "professional", "settings": {"api_rate_limit": 3}})))
        .await;
    // Now the hourly key quota (3) binds first, both keys together.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let key = if i % 2 == 0 { &key_a } else { &key_b };
        let (s, v) = e.call(Some(key), Method::GET, &path, None).await;
        statuses.push((s.as_u16(), code(&v).to_string()));
    }
    assert_eq!(
        statuses,
        [
            (200, String::new()),
            (200, String::new()),
            (200, String::new()),
            (429, "hourly_request_limit".into()),
            (429, "hourly_request_limit".into())
        ],
        "(the plan's limit, raised, did not bind)"
    );
    // A session of the tenant is bound by the plan only.
    let (session, _) = support::user_session(&e, &id, "admin@busy.test", "admin").await;
    for _ in 0..5 {
        let (s, v) = e.call(Some(&session), Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// Issue #18: a link's QR code, as PNG and SVG, decodes back to the link's
/// public URL with `src=qr`, in the tenant's colour when it scans, at each
/// error-correction level; colours that would not scan are refused; a
/// viewer may download it, another tenant sees a 404.
#[tokio::test]
async fn a_link_s_qr_code_decodes_back_to_its_url() {
    let e = env().await;
    let (id, key) = e.tenant("qr").await;
    e.ok(&e.op, Method::PATCH, &format!("/v1/clients/{id}"), Some(json!({"branding": {"primary_color": "#1A237E"}})))
        .await;
    let link = e.link(&key, "jiro").await;
    let url =
        e.ok(&key, Method::GET, &format!("/v1/smartlinks/{link}"), None).await["url"].as_str().unwrap().to_string();
    let qr = |query: &str| {
        let req = e.http.get(format!("{}/v1/smartlinks/{link}/qr?{query}", e.base)).bearer_auth(&key);
        async move { req.send().await.unwrap() }
    };
    for ec in ["L", "M", "Q", "H"] {
        let r = qr(&format!("format=png&ec={ec}&size=4")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.headers()["content-disposition"], "inline; filename=\"jiro-qr.png\"");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(support::qr_text(&bytes).as_deref(), Some(format!("{url}?src=qr").as_str()), "level {ec}");
    }
    let r = qr("").await;
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    assert!(svg.contains("<svg") && svg.contains("#1a237e"), "the tenant's navy, which scans: {svg:.300}");
    let r = qr("fg=%23000000&bg=%23FFF8E1").await;
    assert!(r.text().await.unwrap().contains("#fff8e1"));
    for (query, field) in [
        ("fg=%23EEEEEE", "fg"),
        ("fg=%23FFFFFF&bg=%23000000", "fg"),
        ("size=21", "size"),
        ("ec=X", "ec"),
        ("format=gif", "format"),
    ] {
        let r = qr(query).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], field, "{query}: {v}");
    }
    let (viewer, _) = support::user_session(&e, &id, "viewer@qr.test", "viewer").await;
    let (s, _) = e.call(Some(&viewer), Method::GET, &format!("/v1/smartlinks/{link}/qr?format=png"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, other) = e.tenant("qr-other").await;
    let (s, _) = e.call(Some(&other), Method::GET, &format!("/v1/smartlinks/{link}/qr"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Issue #18: links from CSV, all or none (errors name line and column,
/// slugs checked against the file and the tenant, the plan's links per
/// month counted for the batch), then found by tag and by text.
#[tokio::test]
async fn links_are_imported_from_csv_all_or_none_and_found_by_tag_and_text() {
    let e = env().await;
    let id = e.tenant_with("bulk", json!({"max_smartlinks_per_month": 5})).await;
    let (key, _) = e.key_with(&id, &["links:write"]).await;
    let import = |csv: &'static str| {
        let req = e.http.post(format!("{}/v1/smartlinks/import", e.base)).bearer_auth(&key);
        async move {
            let r = req.header("content-type", "text/csv").body(csv).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let count = || async { e.ok(&key, Method::GET, "/v1/smartlinks", None).await["items"].as_array().unwrap().len() };
    for (csv, field) in [
        ("slug,title,artist,spotify\nok,T,A,https://open.spotify.com/track/1\nBad Slug,T,A,https://open.spotify.com/track/2\n", "line 3.slug"),
        ("slug,title,artist,spotify\na,T,A,https://open.spotify.com/track/1\nb,T,A,javascript:alert(1)\n", "line 3.spotify"),
        ("slug,title,artist,spotify\na,T,A,https://open.spotify.com/track/1\na,T,A,https://open.spotify.com/track/2\n", "line 3.slug"),
        ("slug,title,artist\na,T,A\n", "line 2.platforms"),
        ("slug,title,artist,spotify,isrc\na,T,A,https://open.spotify.com/track/1,nope\n", "line 2.isrc"),
    ] {
        let (s, v) = import(csv).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{csv}: {v}");
    }
    assert_eq!(count().await, 0, "a refused import writes nothing");

    let (s, v) = import(
        "slug,title,artist,spotify,apple-music,tags,status\n\
         jiro-light,In Your Light,Jiro,https://open.spotify.com/track/1,,Single|Summer,\n\
         jiro-night,Night Drive,Jiro,,https://music.apple.com/album/2,summer,draft\n\
         mika-sun,Sunrise,Mika,https://open.spotify.com/track/3,,,\n",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["created"], 3);
    assert_eq!(v["items"][0]["tags"], json!(["single", "summer"]), "tags lowercase");
    assert_eq!(v["items"][1]["status"], "draft");
    // A slug the tenant has, on line 3.
    let (s, v) = import("slug,title,artist,spotify\nnew-one,T,A,https://open.spotify.com/track/9\nmika-sun,T,A,https://open.spotify.com/track/9\n").await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("line 3.slug")), "{v}");
    // 3 made, 5 a month: a batch of 3 is refused whole.
    let (s, v) = import("slug,title,artist,spotify\nx1,T,A,https://a.example/1\nx2,T,A,https://a.example/2\nx3,T,A,https://a.example/3\n").await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "monthly_link_limit"), "{v}");
    assert_eq!(count().await, 3);

    let slugs = |v: Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|l| l["slug"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?tag=Summer", None).await), ["jiro-night", "jiro-light"]);
    assert_eq!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?q=JIRO", None).await), ["jiro-night", "jiro-light"]);
    assert_eq!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?q=sunr", None).await), ["mika-sun"], "by title");
    assert!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?q=.*", None).await).is_empty(), "text, not a pattern");
    let night = e.ok(&key, Method::GET, "/v1/smartlinks?tag=summer&q=night", None).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(&key, Method::PATCH, &format!("/v1/smartlinks/{night}"), Some(json!({"tags": ["Autumn", "autumn"]}))).await;
    assert_eq!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?tag=autumn", None).await), ["jiro-night"]);
    assert_eq!(slugs(e.ok(&key, Method::GET, "/v1/smartlinks?tag=summer", None).await), ["jiro-light"]);
}

/// Issue #18: a link's schedule through the API: go-live and expiry
/// (RFC 3339, expiry after go-live), a fallback URL, each removed by `""`.
#[tokio::test]
async fn a_link_s_schedule_is_set_checked_and_removed() {
    let e = env().await;
    let (_, key) = e.tenant("sched").await;
    let body = |extra: Value| {
        let mut b = json!({"slug": "sched", "track": {"title": "T", "artist_name": "A"},
            "platforms": {"spotify": "https://open.spotify.com/track/x"}});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let (s, v) = e
        .call(
            Some(&key),
            Method::POST,
            "/v1/smartlinks",
            Some(body(json!({"publish_at": "2027-01-10T00:00:00Z", "expires_at": "2027-01-09T00:00:00Z"}))),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("expires_at")), "{v}");
    let (s, v) = e
        .call(Some(&key), Method::POST, "/v1/smartlinks", Some(body(json!({"expired_url": "javascript:alert(1)"}))))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("expired_url")), "{v}");
    let v = e
        .ok(
            &key,
            Method::POST,
            "/v1/smartlinks",
            Some(body(json!({"publish_at": "2027-01-10T09:00:00+01:00",
            "expires_at": "2027-06-30T00:00:00Z", "expired_url": "https://label.example/next"}))),
        )
        .await;
    assert_eq!(
        (v["publish_at"].as_str(), v["expires_at"].as_str()),
        (Some("2027-01-10T08:00:00Z"), Some("2027-06-30T00:00:00Z"))
    );
    assert_eq!(v["expired_url"], "https://label.example/next");
    let path = format!("/v1/smartlinks/{}", v["id"].as_str().unwrap());
    let (s, v) = e.call(Some(&key), Method::PATCH, &path, Some(json!({"expires_at": "2027-01-01T00:00:00Z"}))).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expires_at")),
        "checked against the stored go-live: {v}"
    );
    let v = e.ok(&key, Method::PATCH, &path, Some(json!({"publish_at": "", "expired_url": ""}))).await;
    assert_eq!((v["publish_at"].clone(), v["expired_url"].clone()), (Value::Null, Value::Null));
    assert_eq!(v["expires_at"], "2027-06-30T00:00:00Z", "absent fields stay");
}

/// A link's routing is validated (400 naming the field), stored, shown and
/// replaced through the API; the events a rule decided are broken down by
/// rule and A/B variant, views and click-outs apart, the same from rollups
/// and from raw events.
#[tokio::test]
async fn routing_rules_are_validated_stored_and_broken_down_by_variant() {
    let e = env().await;
    let (tenant, key) = e.tenant("routes").await;
    let routing = json!({
        "rules": [
            {"id": "ios", "os": ["ios"], "target": {"platform": "apple-music"}},
            {"id": "launch", "countries": ["fr", "BE"], "variants": [
                {"id": "a", "weight": 1, "target": {"platform": "spotify"}},
                {"id": "b", "weight": 1, "target": {"hide": ["deezer"]}}
            ]}
        ],
        "remember_choice": true,
        "params": {"apple-music": "at=1000lqx&ct={utm_campaign}"}
    });
    let body = json!({"slug": "routed", "track": {"title": "T", "artist_name": "A"},
        "platforms": {"spotify": "https://open.spotify.com/track/x", "apple-music": "https://music.apple.com/album/1"},
        "routing": routing});
    let v = e.ok(&key, Method::POST, "/v1/smartlinks", Some(body.clone())).await;
    assert_eq!(v["routing"]["rules"][1]["countries"], json!(["FR", "BE"]), "stored uppercase: {v}");
    assert_eq!(v["routing"]["rules"][1]["variants"][0]["weight"], 1);
    assert_eq!(v["routing"]["remember_choice"], true);
    let path = format!("/v1/smartlinks/{}", v["id"].as_str().unwrap());
    let got = e.ok(&key, Method::GET, &path, None).await;
    assert_eq!(got["routing"], v["routing"]);

    let bad = |r: Value| {
        let mut b = body.clone();
        b["slug"] = json!("bad");
        b["routing"] = r;
        b
    };
    for (r, field) in [
        (json!({"rules": [{"id": "Bad id"}]}), "routing.rules[0].id"),
        (json!({"rules": [{"id": "a", "devices": ["fridge"]}]}), "routing.rules[0].devices[0]"),
        (json!({"rules": [{"id": "a", "target": {"url": "javascript:alert(1)"}}]}), "routing.rules[0].target.url"),
        (json!({"params": {"spotify": "x={password}"}}), "routing.params.spotify"),
    ] {
        let (s, v) = e.call(Some(&key), Method::POST, "/v1/smartlinks", Some(bad(r))).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let (s, _) = e.call(Some(&key), Method::POST, "/v1/smartlinks", Some(bad(json!({"rulez": []})))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let v = e.ok(&key, Method::PATCH, &path, Some(json!({"routing": {}}))).await;
    assert_eq!(v["routing"], json!({"rules": [], "remember_choice": false, "app_links": false, "params": {}}));

    // Events the rules decided: views and click-outs by rule and variant.
    let link = v["id"].as_str().unwrap().to_string();
    let now = now_s();
    let routed = |kind, ts, visitor, rule: &str, variant: &str| EventRow {
        platform: if kind == KindCode::Click { "spotify".into() } else { Default::default() },
        rule_id: rule.into(),
        variant: variant.into(),
        ..ev(kind, ts, &tenant, &link, visitor, visitor, now)
    };
    let h = DAY + 10 * 3600;
    let rows = vec![
        routed(KindCode::View, h + 1, 1, "launch", "a"),
        routed(KindCode::Click, h + 2, 1, "launch", "a"),
        routed(KindCode::View, h + 3, 2, "launch", "b"),
        routed(KindCode::View, h + 4, 3, "launch", "b"),
        routed(KindCode::Click, h + 5, 3, "launch", "b"),
        routed(KindCode::View, h + 6, 4, "ios", ""),
        routed(KindCode::View, h + 7, 5, "", ""),
    ];
    e.insert_and_roll(&rows).await;
    let range = "from=2025-11-21T00:00:00Z&to=2025-11-22T00:00:00Z";
    let items = |b: &Value| {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["value"].as_str().unwrap().to_string(), i["count"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    let views = e
        .ok(&key, Method::GET, &format!("/v1/analytics/breakdown?smartlink_id={link}&{range}&dimension=route"), None)
        .await;
    assert_eq!(views["metric"], "views");
    assert_eq!(items(&views), vec![("launch/b".into(), 2), ("ios".into(), 1), ("launch/a".into(), 1)], "{views}");
    let clicks = e
        .ok(
            &key,
            Method::GET,
            &format!("/v1/analytics/breakdown?smartlink_id={link}&{range}&dimension=route_click"),
            None,
        )
        .await;
    assert_eq!(clicks["metric"], "clicks");
    assert_eq!(items(&clicks), vec![("launch/a".into(), 1), ("launch/b".into(), 1)], "{clicks}");
    let q = AnalyticsQuery {
        from: Some("2025-11-21T00:00:00Z".into()),
        to: Some("2025-11-22T00:00:00Z".into()),
        smartlink_id: Some(link.clone()),
        dimension: Some("route".into()),
        ..Default::default()
    };
    let st = &e.api.state;
    let rolled = a::breakdown_with(st, &Principal::Operator, &q, Some(u32::MAX)).await.unwrap();
    let raw = a::breakdown_with(st, &Principal::Operator, &q, Some(0)).await.unwrap();
    assert_eq!(rolled, raw, "rollups and raw events agree");
}
