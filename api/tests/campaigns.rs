//! Campaigns against the real services: CRUD and status moves, daily KPIs
//! entered as JSON and imported as CSV (derived ratios computed, never
//! taken), and the performance join of ad KPIs with the pipeline's
//! click-outs from ClickHouse rollups for exactly the campaign's links.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use schemas::clickhouse::{EventRow, KindCode};
use serde_json::{json, Value};
use support::{code, env, Env};

const D1: u32 = 1_772_323_200; // 2026-03-01T00:00:00Z
const D2: u32 = D1 + 86_400;

fn click(ts: u32, tenant: &str, link: &str, platform: &str, visitor: u64) -> EventRow {
    EventRow {
        platform: platform.into(),
        ..EventRow::minimal(uuid::Uuid::now_v7(), KindCode::Click, ts, tenant, link, visitor, visitor, ts + 5)
    }
}

fn view(ts: u32, tenant: &str, link: &str, visitor: u64) -> EventRow {
    EventRow::minimal(uuid::Uuid::now_v7(), KindCode::View, ts, tenant, link, visitor, visitor, ts + 5)
}

async fn csv(e: &Env, key: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let r = e
        .http
        .post(format!("{}{path}", e.base))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn kpis_and_performance_join_ad_numbers_with_our_click_outs_exactly() {
    let e = env().await;
    let (tenant, links_key) = e.tenant("camp-a").await;
    let (other, other_key) = e.tenant("camp-b").await;
    let key = e
        .ok(
            &e.op,
            Method::POST,
            &format!("/v1/clients/{tenant}/api-keys"),
            Some(json!({"name": "marketing", "scopes": ["campaigns:write", "analytics:read", "links:read"]})),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b, c) = (
        e.link(&links_key, "camp-a1").await,
        e.link(&links_key, "camp-a2").await,
        e.link(&links_key, "not-in-campaign").await,
    );
    let foreign = e.link(&other_key, "foreign").await;

    // Creation: validation, tenant checks, status moves.
    let body = json!({"name": "Jiro — In Your Light", "kind": "acquisition", "artist_name": "Jiro", "song_title": "In Your Light", "isrc": "FRZ032600001",
        "start_date": "2026-03-01", "end_date": "2026-03-03", "budget_minor": 500_000, "currency": "EUR", "billing_model": "percentage", "commission_bp": 1500,
        "platforms": [{"name": "meta", "objective": "traffic", "targeting": {"age_min": 18, "age_max": 34, "countries": ["FR", "BE"], "interests": ["electro"]}, "daily_budget_minor": 10_000},
                      {"name": "tiktok"}, {"name": "spotify"}],
        "creatives": [{"name": "Teaser 15s", "kind": "video", "platform": "meta", "url": "https://cdn.example/teaser.mp4", "impressions": 1000, "clicks": 25, "spend_minor": 1000}],
        "smartlink_ids": [a, b], "objective": "streams", "target_streams": 100_000});
    for (patch, field, status) in [
        (json!({"smartlink_ids": [foreign]}), "smartlink_ids[0]", StatusCode::NOT_FOUND),
        (json!({"platforms": [{"name": "myspace"}]}), "platforms[0].name", StatusCode::BAD_REQUEST),
        (
            json!({"platforms": [{"name": "meta", "targeting": {"age_min": 40, "age_max": 20}}]}),
            "platforms[0].targeting.age_max",
            StatusCode::BAD_REQUEST,
        ),
        (json!({"end_date": "2026-02-01"}), "end_date", StatusCode::BAD_REQUEST),
        (json!({"isrc": "nope"}), "isrc", StatusCode::BAD_REQUEST),
        (json!({"commission_bp": 20_000}), "commission_bp", StatusCode::BAD_REQUEST),
    ] {
        let mut bad = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let (s, v) = e.call(Some(&key), Method::POST, "/v1/campaigns", Some(bad)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (status, Some(field)), "{v}");
    }
    let camp = e.ok(&key, Method::POST, "/v1/campaigns", Some(body)).await;
    let id = camp["id"].as_str().unwrap().to_string();
    assert_eq!(
        (camp["status"].as_str(), camp["creatives"][0]["ctr"].as_f64(), camp["creatives"][0]["cpc_minor"].as_i64()),
        (Some("draft"), Some(0.025), Some(40))
    );
    let path = format!("/v1/campaigns/{id}");
    let (s, v) = e.call(Some(&key), Method::PATCH, &path, Some(json!({"status": "completed"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "invalid_transition"));
    let live = e
        .ok(
            &key,
            Method::PATCH,
            &path,
            Some(
                json!({"status": "active", "add_note": {"kind": "optimization", "content": "Shift budget to TikTok"}}),
            ),
        )
        .await;
    assert_eq!((live["status"].as_str(), live["notes"][0]["kind"].as_str()), (Some("active"), Some("optimization")));
    let (s, _) = e.call(Some(&other_key), Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a key without campaign scopes");
    let other_campaigns = e
        .ok(
            &e.op,
            Method::POST,
            &format!("/v1/clients/{other}/api-keys"),
            Some(json!({"name": "m", "scopes": ["campaigns:read", "analytics:read"]})),
        )
        .await;
    let (s, _) = e.call(Some(other_campaigns["key"].as_str().unwrap()), Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's campaign");

    // KPIs: JSON for day 1, CSV for day 2; derived ratios refused as input.
    let kpis = format!("{path}/kpis");
    let (s, _) = e
        .call(
            Some(&key),
            Method::PUT,
            &kpis,
            Some(json!([{"date": "2026-03-01", "platform": "meta", "impressions": 10, "ctr": 0.5}])),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "ctr is computed, not taken");
    let stored = e
        .ok(&key, Method::PUT, &kpis, Some(json!([
            {"date": "2026-03-01", "platform": "meta", "impressions": 20_000, "views": 5_000, "clicks": 300, "reach": 15_000, "spend_minor": 12_345, "conversions": 40, "conversion_value_minor": 30_000},
            {"date": "2026-03-01", "platform": "tiktok", "impressions": 8_000, "views": 6_000, "clicks": 100, "spend_minor": 4_000, "platform_specific": {"profile_views": 120}},
        ])))
        .await;
    assert_eq!(stored["rows"], 2);
    let (s, v) = csv(
        &e,
        &key,
        &format!("{kpis}/import"),
        "date,platform,impressions,clicks,spend_minor,ctr\n2026-03-02,meta,1,1,1,0.1\n",
    )
    .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("line 1.ctr")));
    let (s, v) = csv(
        &e,
        &key,
        &format!("{kpis}/import"),
        "date,platform,impressions,clicks,spend_minor\n2026-03-02,meta,100,5,50\n2026-03-02,spotify,10,many,5\n",
    )
    .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("line 3.clicks")));
    let import =
        "date,platform,impressions,views,clicks,reach,spend_minor,conversions,conversion_value_minor,streams\n\
                  2026-03-02,meta,10000,0,150,8000,6000,10,9000,\n\
                  2026-03-02,spotify,4000,0,40,3000,2000,0,0,350\n";
    for _ in 0..2 {
        let (s, v) = csv(&e, &key, &format!("{kpis}/import"), import).await;
        assert_eq!((s, v["rows"].as_i64()), (StatusCode::OK, Some(2)), "{v}");
    }
    let listed = e.ok(&key, Method::GET, &kpis, None).await;
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4, "re-importing a day replaces it: {listed}");
    assert_eq!(
        (
            rows[0]["derived"]["cpc_minor"].as_i64(),
            rows[0]["derived"]["cpm_minor"].as_i64(),
            rows[0]["derived"]["cpv_minor"].as_i64()
        ),
        (Some(41), Some(617), Some(2))
    );
    assert_eq!(rows[3]["platform_specific"]["streams"], 350.0);

    // Pipeline events: A and B are the campaign's links, C is not; a bot does not count.
    let mut events = vec![
        view(D1 + 3600, &tenant, &a, 1),
        click(D1 + 3610, &tenant, &a, "spotify", 1),
        click(D1 + 7200, &tenant, &a, "spotify", 2),
        click(D1 + 7300, &tenant, &a, "spotify", 3),
        click(D2 + 600, &tenant, &a, "apple-music", 4),
        view(D2 + 900, &tenant, &b, 5),
        click(D2 + 910, &tenant, &b, "deezer", 5),
        click(D2 + 920, &tenant, &b, "deezer", 6),
        click(D1 + 100, &tenant, &c, "spotify", 7),
        click(D1 + 200, &tenant, &c, "spotify", 8),
    ];
    events.push(EventRow { is_bot: 1, bot_reason: "crawler_ua".into(), ..click(D1 + 500, &tenant, &a, "spotify", 9) });
    e.insert_and_roll(&events).await;

    let perf = e.ok(&key, Method::GET, &format!("{path}/performance"), None).await;
    let days = perf["days"].as_array().unwrap();
    assert_eq!(
        days.iter().map(|d| d["date"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["2026-03-01", "2026-03-02", "2026-03-03"]
    );
    let d1 = &days[0];
    assert_eq!(
        (d1["ad"]["spend_minor"].as_i64(), d1["ad"]["clicks"].as_i64(), d1["ad"]["impressions"].as_i64()),
        (Some(16_345), Some(400), Some(28_000))
    );
    assert_eq!(d1["ad_by_platform"]["tiktok"]["derived"]["cpc_minor"], 40);
    assert_eq!(
        d1["pipeline"],
        json!({"views": 1, "stream_clicks": 3, "conversions": 3, "stream_clicks_by_platform": {"spotify": 3}}),
        "C's clicks and the bot are not the campaign's"
    );
    assert_eq!(d1["cost_per_stream_click_minor"], 5_448, "16345 / 3 = 5448.33");
    let d2 = &days[1];
    assert_eq!(
        d2["pipeline"],
        json!({"views": 1, "stream_clicks": 3, "conversions": 3, "stream_clicks_by_platform": {"apple-music": 1, "deezer": 2}})
    );
    assert_eq!(
        (d2["ad"]["spend_minor"].as_i64(), d2["cost_per_stream_click_minor"].as_i64()),
        (Some(8_000), Some(2_667))
    );
    assert_eq!(days[2]["pipeline"]["stream_clicks"], 0);
    assert_eq!(days[2]["cost_per_stream_click_minor"], Value::Null);
    let total = &perf["total"];
    assert_eq!(
        (total["ad"]["spend_minor"].as_i64(), total["pipeline"]["stream_clicks"].as_i64()),
        (Some(24_345), Some(6))
    );
    assert_eq!(total["pipeline"]["stream_clicks_by_platform"], json!({"apple-music": 1, "deezer": 2, "spotify": 3}));
    assert_eq!(
        total["ad"]["derived"]["roas"].as_f64().map(|r| (r * 1000.0).round() / 1000.0),
        Some(1.602),
        "39000 / 24345"
    );

    // The same numbers as the analytics API gives for each link.
    for link in [&a, &b] {
        let ts = e.ok(&key, Method::GET, &format!("/v1/analytics/timeseries?smartlink_id={link}&from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z&interval=day"), None).await;
        let clicks: i64 = ts["points"].as_array().unwrap().iter().map(|p| p["clicks"].as_i64().unwrap()).sum();
        assert_eq!(clicks, if link == &a { 4 } else { 2 }, "{ts}");
    }
    let (s, v) =
        e.call(Some(&key), Method::GET, &format!("{path}/performance?from=2026-03-05&to=2026-03-01"), None).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("to")));
}

/// Issue #21: a CSV import is refused whole, with the line and column at
/// fault: a missing column, an empty body, a header without data, too many
/// lines, a date outside the campaign, another tenant's campaign; nothing of
/// a refused file is written.
#[tokio::test]
async fn csv_import_refuses_bad_files_whole() {
    let e = env().await;
    let (tenant, _) = e.tenant("csv-a").await;
    let (other, _) = e.tenant("csv-b").await;
    let ((key, _), (other_key, _)) =
        (e.key_with(&tenant, &["campaigns:write"]).await, e.key_with(&other, &["campaigns:write"]).await);
    let body = json!({"name": "Import", "kind": "acquisition", "start_date": "2026-03-01", "end_date": "2026-03-31",
        "budget_minor": 100_000, "currency": "EUR", "billing_model": "fixed", "platforms": [{"name": "meta"}]});
    let id = e.ok(&key, Method::POST, "/v1/campaigns", Some(body.clone())).await["id"].as_str().unwrap().to_string();
    let import = format!("/v1/campaigns/{id}/kpis/import");
    let good = "date,platform,impressions,clicks\n2026-03-02,meta,100,5\n";
    assert_eq!(csv(&e, &key, &import, good).await.0, StatusCode::OK);

    let long: String = std::iter::once("date,platform,impressions\n".to_string())
        .chain((0..5001).map(|i| format!("2026-03-{:02},meta,{i}\n", 1 + i % 31)))
        .collect();
    for (file, field) in [
        ("date,impressions\n2026-03-03,10\n", "line 1.platform"),
        ("", "line 1.date"),
        ("date,platform,impressions\n", "body"),
        (long.as_str(), "body"),
        ("date,platform,impressions\n2026-03-03,meta,10\n2026-04-01,meta,10\n", "line 3.date"),
        ("date,platform,impressions\n2026-03-03,meta,10\n2026-02-28,meta,10\n", "line 3.date"),
        ("date,platform,impressions\n2026-03-03,meta,10\n2026-03-04,meta,-5\n", "line 3.impressions"),
    ] {
        let (s, v) = csv(&e, &key, &import, file).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    // Another tenant's campaign is not found, and nothing was written by any refused file.
    let (s, _) = csv(&e, &other_key, &import, good).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let listed = e.ok(&key, Method::GET, &format!("/v1/campaigns/{id}/kpis"), None).await;
    let days: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(days, ["2026-03-02"], "only the good file's line: {listed}");
    // A file too large for the route is a JSON error too.
    let huge = format!("date,platform\n{}", "2026-03-02,meta\n".repeat(70_000));
    let (s, v) = csv(&e, &key, &import, &huge).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_body"), "{v}");
}

/// A campaign longer than a year: KPI and performance reads without days
/// answer its last 365 days (a request that names no day is never refused);
/// naming both days more than 366 apart is a 400 on `to`; days are
/// `YYYY-MM-DD` (the document says so; an RFC 3339 instant is refused).
#[tokio::test]
async fn reads_of_a_long_campaign_default_to_a_year() {
    let e = env().await;
    let (tenant, _) = e.tenant("long-campaign").await;
    let (key, _) = e.key_with(&tenant, &["campaigns:write", "analytics:read"]).await;
    let body = json!({"name": "Long", "kind": "acquisition", "start_date": "2024-01-01", "end_date": "2026-06-30",
        "budget_minor": 100_000, "currency": "EUR", "billing_model": "fixed", "platforms": [{"name": "meta"}]});
    let id = e.ok(&key, Method::POST, "/v1/campaigns", Some(body)).await["id"].as_str().unwrap().to_string();
    let import = format!("/v1/campaigns/{id}/kpis/import");
    let file = "date,platform,impressions\n2024-01-02,meta,1\n2026-06-29,meta,2\n";
    assert_eq!(csv(&e, &key, &import, file).await.0, StatusCode::OK);
    let listed = e.ok(&key, Method::GET, &format!("/v1/campaigns/{id}/kpis"), None).await;
    let days: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(days, ["2026-06-29"], "the last 365 days: {listed}");
    let p = e.ok(&key, Method::GET, &format!("/v1/campaigns/{id}/performance"), None).await;
    assert_eq!(p["days"].as_array().map(Vec::len), Some(366), "2025-06-30 to 2026-06-30: {}", p["days"]);
    let from_only = e.ok(&key, Method::GET, &format!("/v1/campaigns/{id}/kpis?from=2024-01-01"), None).await;
    assert_eq!(from_only.as_array().map(Vec::len), Some(1), "a year from `from`: {from_only}");
    let (s, v) =
        e.call(Some(&key), Method::GET, &format!("/v1/campaigns/{id}/kpis?from=2024-01-01&to=2026-06-30"), None).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("to")), "{v}");
    let (s, v) = e
        .call(Some(&key), Method::GET, &format!("/v1/campaigns/{id}/performance?from=2026-01-01T00:00:00Z"), None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")), "{v}");
    let doc = e.ok(&key, Method::GET, "/v1/openapi.json", None).await;
    let params = &doc["paths"]["/v1/campaigns/{id}/kpis"]["get"]["parameters"];
    let from = params.as_array().unwrap().iter().find(|p| p["name"] == "from").unwrap();
    assert_eq!(from["schema"]["format"], "date", "{from}");
}
