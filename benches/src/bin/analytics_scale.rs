//! `analytics_scale`: dashboards at scale (issue #13).
//!
//! One run, its own ClickHouse and MongoDB databases:
//! 1. four tenants with five links each, created through an in-process api;
//! 2. N events (default 10M) over the 30 days before now written straight
//!    into ClickHouse (`INSERT … SELECT … FROM numbers(N)`): 70% for the big
//!    tenant; visitors drawn from a pool of N/3, so they return; 1 in 3
//!    events a click-out; 2% bots; countries, regions, cities, devices,
//!    referrers and UTMs with long tails;
//! 3. catch-up: the aggregator's passes (fresh hours first, backlog within
//!    its budget) until nothing is pending; prints the time, the first
//!    pass (how long a fresh hour waits behind the backlog) and the passes;
//! 4. each route once through an api without answer cache (the cold cost),
//!    then 16 concurrent dashboard clients through the api: overview (tenant,
//!    link), timeseries hour (2 days) and day, every breakdown, realtime,
//!    export, over 1, 7 and 30 days; p50/p99 per route;
//! 5. rows read per route (ClickHouse `system.query_log`, one call each);
//! 6. the api's numbers against `count()` / `uniqExact` over raw events on
//!    a sample, with the relative error of the distinct counters.
//!
//! Usage: `cargo run --release -p benches --bin analytics_scale -- [N] [rounds]`
//! (default 10000000 and 3). Needs the local stack (`deploy/local/up.sh`).
//! `CLIENTS` sets the concurrent clients (default 16); `KEEP=1` keeps the
//! databases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use envconfig::Envconfig;
use serde_json::{json, Value};

const TENANTS: usize = 4;
const LINKS: usize = 5;
/// Concurrent dashboard clients (`CLIENTS` overrides).
fn clients() -> usize {
    std::env::var("CLIENTS").ok().and_then(|c| c.parse().ok()).unwrap_or(16)
}
const DAY: u32 = 86_400;

struct Setup {
    base: String,
    http: reqwest::Client,
    keys: Vec<String>,
    tenants: Vec<String>,
    links: Vec<Vec<String>>,
}

async fn post(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
    Ok(v)
}

async fn setup(base: &str, op: &str) -> anyhow::Result<Setup> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (mut keys, mut tenants, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..TENANTS {
        let slug = format!("scale-{t}");
        let c = post(
            &http,
            base,
            op,
            "/v1/clients",
            json!({"name": slug, "slug": slug, "domain": format!("{slug}.links.test"), "plan_type": "enterprise",
                "settings": {"api_rate_limit": 100_000_000}}),
        )
        .await?;
        let id = c["id"].as_str().context("client id")?.to_string();
        let k = post(
            &http,
            base,
            op,
            &format!("/v1/clients/{id}/api-keys"),
            json!({"name": "bench", "scopes": ["links:write", "analytics:read"]}),
        )
        .await?;
        let key = k["key"].as_str().context("key")?.to_string();
        let mut ls = Vec::new();
        for l in 0..LINKS {
            let link = post(
                &http,
                base,
                &key,
                "/v1/smartlinks",
                json!({"slug": format!("track-{l}"),
                "track": {"title": "Track", "artist_name": "Artist"},
                "platforms": {"spotify": "https://open.spotify.com/track/x"}}),
            )
            .await?;
            ls.push(link["id"].as_str().context("link id")?.to_string());
        }
        keys.push(key);
        tenants.push(id);
        links.push(ls);
    }
    Ok(Setup { base: base.to_string(), http, keys, tenants, links })
}

/// The `INSERT … SELECT` that writes `n` events over `[start, start + 30d)`.
fn generate_sql(db: &str, n: u64, start: u32, s: &Setup, now: u32) -> String {
    let arr = |v: &[String]| v.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(",");
    let tenants = arr(&s.tenants);
    let links = arr(&s.links.concat());
    let visitors = (n / 3).max(1);
    let span = 30 * u64::from(DAY);
    format!(
        "INSERT INTO {db}.events
         SELECT generateUUIDv4() AS event_id,
            CAST(if(k % 3 = 0, 'click', 'view'), 'Enum8(\\'view\\' = 1, \\'click\\' = 2)') AS kind,
            toDateTime({start} + intDiv(k * {span}, {n})) AS ts,
            toUInt64({start} + intDiv(k * {span}, {n})) * 1000 AS ts_ms,
            [{tenants}][t + 1] AS tenant_id,
            [{links}][t * {LINKS} + intHash32(k) % {LINKS} + 1] AS link_id,
            'track' AS slug, 'links.test' AS host,
            if(k % 3 = 0, ['spotify', 'apple-music', 'deezer', 'youtube-music'][intHash32(k) % 4 + 1], '') AS platform,
            toUInt8(k % 50 = 0) AS is_bot, if(k % 50 = 0, 'crawler_ua', '') AS bot_reason,
            '203.0.113.0' AS ip,
            cityHash64(v) AS visitor_hash, if(v % 5 = 0, '', concat('vid', toString(v))) AS visitor_id,
            cityHash64(intDiv(k, 3)) AS session_id, toUInt32(1) AS visit_number,
            toUInt8(k < {visitors}) AS is_unique, toUInt8(k >= {visitors}) AS is_returning,
            toFixedString(['FR', 'GB', 'US', 'DE', 'BR', 'JP', 'ES', 'IT'][intHash32(v) % 8 + 1], 2) AS country,
            concat('Region ', toString(intHash32(v) % 40)) AS region, concat('City ', toString(intHash32(v) % 400)) AS city,
            'Europe/Paris' AS timezone,
            CAST(['mobile', 'desktop', 'tablet'][intHash32(k) % 3 + 1], 'Enum8(\\'other\\' = 0, \\'desktop\\' = 1, \\'mobile\\' = 2, \\'tablet\\' = 3, \\'bot\\' = 4)') AS device,
            ['iOS', 'Android', 'Windows', 'Mac OS X'][intHash32(k) % 4 + 1] AS os, '' AS os_version,
            ['Safari', 'Chrome', 'Firefox', 'Instagram'][intHash32(k) % 4 + 1] AS browser, '' AS browser_version, '' AS vendor,
            '' AS referrer,
            if(k % 10 = 0, concat('site', toString(intHash32(k) % 5000), '.example'),
               ['instagram.com', 'tiktok.com', 'google.com', ''][intHash32(k) % 4 + 1]) AS referrer_host,
            ['instagram', 'tiktok', 'newsletter', ''][intHash32(v) % 4 + 1] AS utm_source,
            ['social', 'email', 'paid', ''][intHash32(v) % 4 + 1] AS utm_medium,
            concat('release-', toString(intHash32(v) % 30)) AS utm_campaign,
            '' AS utm_term, '' AS utm_content, '' AS gclid, '' AS fbclid, '' AS ttclid, 'fr' AS language,
            CAST('granted', 'Enum8(\\'unknown\\' = 0, \\'granted\\' = 1, \\'denied\\' = 2)') AS consent,
            toUInt8(0) AS dnt, 'Mozilla/5.0' AS user_agent, toDateTime({now}) AS ingested_at,
            if(intHash32(v) % 5 = 0, 'ios', '') AS rule_id,
            if(intHash32(v) % 5 = 0, ['a', 'b'][intHash32(v) % 2 + 1], '') AS variant
         FROM (SELECT number AS k, k % {visitors} AS v,
                  multiIf(k % 10 < 7, 0, k % 10 < 8, 1, k % 10 < 9, 2, 3) AS t
               FROM system.numbers LIMIT {n})"
    )
}

fn rfc(t: u32) -> String {
    rollup::window::rfc3339(t)
}

/// The requests of one dashboard round: (label, path, key index).
fn requests(s: &Setup, now: u32) -> Vec<(String, String)> {
    let (t, l, k) = (&s.tenants[0], &s.links[0][0], &s.keys[0]);
    let _ = k;
    let mut out = Vec::new();
    for days in [1u32, 7, 30] {
        let range = format!("from={}&to={}", rfc(now - days * DAY), rfc(now));
        let r = |label: &str| format!("{label} {days}d");
        out.push((r("overview tenant"), format!("/v1/analytics/overview?client_id={t}&{range}")));
        out.push((r("overview link"), format!("/v1/analytics/overview?smartlink_id={l}&{range}")));
        out.push((r("timeseries day"), format!("/v1/analytics/timeseries?client_id={t}&{range}&interval=day")));
        for dim in [
            "country",
            "region",
            "city",
            "device",
            "os",
            "browser",
            "platform",
            "referrer",
            "utm_source",
            "utm_medium",
            "utm_campaign",
        ] {
            out.push((
                r(&format!("breakdown {dim}")),
                format!("/v1/analytics/breakdown?client_id={t}&{range}&dimension={dim}"),
            ));
        }
        out.push((r("export"), format!("/v1/analytics/export?client_id={t}&{range}")));
    }
    let two = format!("from={}&to={}", rfc(now - 2 * DAY), rfc(now));
    out.push(("timeseries hour 2d".into(), format!("/v1/analytics/timeseries?client_id={t}&{two}&interval=hour")));
    out.push(("realtime".into(), format!("/v1/analytics/realtime?client_id={t}")));
    out
}

async fn get(s: &Setup, key: &str, path: &str) -> anyhow::Result<Value> {
    let r = s.http.get(format!("{}{path}", s.base)).bearer_auth(key).send().await?;
    let status = r.status();
    let text = r.text().await?;
    anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let name = testkit::unique_name("bench_scale");
    let mut cfg = api::Config::init_from_env()?;
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.admin_listen = "127.0.0.1:0".parse()?;
    cfg.operator_key = format!("operator-key-bench-{name}").into();
    cfg.rate_limit_per_second = 100_000;
    cfg.rate_limit_burst = 100_000;
    cfg.clickhouse.database = name.clone();
    cfg.mongo.database = name.clone();
    migrate::apply_clickhouse(&cfg.clickhouse).await?;
    let mongo = cfg.mongo.database().await?;
    migrate::apply_mongo_indexes(&mongo).await?;
    let ch = cfg.clickhouse.client().with_database(&name);
    let op = cfg.operator_key.expose().to_owned();
    let shutdown = common::shutdown::CancellationToken::new();
    // A second api on the same databases with no answer cache: the cost
    // of a cold answer (step 4a).
    let mut cold_cfg = api::Config::init_from_env()?;
    cold_cfg.listen = "127.0.0.1:0".parse()?;
    cold_cfg.admin_listen = "127.0.0.1:0".parse()?;
    cold_cfg.operator_key = cfg.operator_key.clone();
    cold_cfg.rate_limit_per_second = 100_000;
    cold_cfg.rate_limit_burst = 100_000;
    cold_cfg.clickhouse.database = name.clone();
    cold_cfg.mongo.database = name.clone();
    cold_cfg.analytics_cache_ttl_ms = 0;
    let api = api::start(cfg, prometheus::Registry::new(), shutdown.clone()).await?;
    let cold_api = api::start(cold_cfg, prometheus::Registry::new(), shutdown.clone()).await?;
    let s = Arc::new(setup(&format!("http://{}", api.addr), &op).await?);

    // 2. Events.
    let now = rollup::now_s();
    let start = rollup::Grain::Day.floor(now) - 29 * DAY;
    let t0 = Instant::now();
    ch.query(&generate_sql(&name, n, start, &s, now)).execute().await.context("generating events")?;
    let generate_s = t0.elapsed().as_secs_f64();
    println!("generated {n} events over 30 days in {generate_s:.1} s");

    // 3. Catch-up, as the aggregator service runs it.
    let stores =
        rollup::Stores { ch: ch.clone(), ch_db: name.clone(), mongo: mongo.clone(), topology: Default::default() };
    let pass_cfg = rollup::PassConfig::default();
    let t0 = Instant::now();
    let (mut passes, mut first_pass_s, mut windows) = (0, 0.0, 0);
    loop {
        let p0 = Instant::now();
        let r = rollup::pass(&stores, &pass_cfg, rollup::now_s()).await?;
        passes += 1;
        if passes == 1 {
            first_pass_s = p0.elapsed().as_secs_f64();
        }
        windows += r.hours + r.days;
        anyhow::ensure!(r.failed.is_empty(), "failed days: {:?}", r.failed);
        if r.pending == 0 && r.newest >= now {
            break;
        }
    }
    let catch_up_s = t0.elapsed().as_secs_f64();
    println!(
        "catch-up: {catch_up_s:.1} s, {passes} passes, {windows} windows ({:.0} windows/s); first pass (fresh hours + first backlog day) {first_pass_s:.2} s",
        windows as f64 / catch_up_s
    );
    println!("aggregator: {:.1} ms per window over the catch-up", 1000.0 * catch_up_s / windows.max(1) as f64);
    // The issue #13 target: a month of late data rolled within 60 s.
    benches::ratio(
        "aggregator catch-up of the month vs 60 s",
        windows as f64 / catch_up_s,
        windows as f64 / 60.0,
        "windows/s",
        ">= 100%",
    );

    // 4a. Cold answers: one client, no answer cache, each route once.
    let reqs = Arc::new(requests(&s, now));
    let cold = Setup {
        base: format!("http://{}", cold_api.addr),
        http: s.http.clone(),
        keys: s.keys.clone(),
        tenants: s.tenants.clone(),
        links: s.links.clone(),
    };
    let mut cold_ms: BTreeMap<String, f64> = BTreeMap::new();
    for (label, path) in reqs.iter() {
        let started = Instant::now();
        get(&cold, &cold.keys[0], path).await?;
        cold_ms.insert(label.clone(), started.elapsed().as_secs_f64() * 1000.0);
    }

    // 4b. Dashboard load.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients() {
        let (s, reqs) = (s.clone(), reqs.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<(String, f64)> = Vec::new();
            for round in 0..rounds {
                for i in 0..reqs.len() {
                    let (label, path) = &reqs[(i + c * 7 + round) % reqs.len()];
                    let started = Instant::now();
                    get(&s, &s.keys[0], path).await?;
                    lat.push((label.clone(), started.elapsed().as_secs_f64() * 1000.0));
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut by_route: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for t in tasks {
        for (label, ms) in t.await?? {
            by_route.entry(label).or_default().push(ms);
        }
    }
    let load_s = t0.elapsed().as_secs_f64();
    let total: usize = by_route.values().map(Vec::len).sum();

    // 5. Rows read per route, one call each (no answer cache).
    let mut read_rows: BTreeMap<String, u64> = BTreeMap::new();
    let logged = |ch: clickhouse::Client, db: String| async move {
        ch.query("SYSTEM FLUSH LOGS").execute().await?;
        ch.query("SELECT sum(read_rows) FROM system.query_log WHERE type = 2 AND position(query, ?) > 0")
            .bind(db)
            .fetch_one::<u64>()
            .await
    };
    let log_on: String =
        ch.query("SELECT value FROM system.settings WHERE name = 'log_queries'").fetch_one().await.unwrap_or_default();
    if log_on == "1" {
        for (label, path) in reqs.iter() {
            let before = logged(ch.clone(), name.clone()).await?;
            get(&cold, &cold.keys[0], path).await?;
            let after = logged(ch.clone(), name.clone()).await?;
            read_rows.insert(label.clone(), after.saturating_sub(before));
        }
    }

    println!(
        "\n{} clients x {rounds} rounds: {total} requests in {load_s:.1} s ({:.0} req/s)",
        clients(),
        total as f64 / load_s
    );
    println!("| route | calls | p50 ms | p99 ms | max ms | cold ms (1 client, no cache) | rows read |");
    println!("|---|---|---|---|---|---|---|");
    for (label, v) in by_route.iter_mut() {
        let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
        let rows = read_rows.get(label).map_or("n/a".to_string(), u64::to_string);
        let c = cold_ms.get(label).copied().unwrap_or(f64::NAN);
        println!("| {label} | {} | {p50:.1} | {p99:.1} | {max:.1} | {c:.1} | {rows} |", v.len());
    }

    // 6. Numbers against raw events.
    println!("\n| sample (30 days) | api | raw (count / uniqExact) | relative error |");
    println!("|---|---|---|---|");
    let range = format!("from={}&to={}", rfc(now - 30 * DAY), rfc(now + 1));
    for (label, scope, col, value) in [
        ("tenant 0", format!("client_id={}", s.tenants[0]), "tenant_id", s.tenants[0].clone()),
        ("tenant 3", format!("client_id={}", s.tenants[3]), "tenant_id", s.tenants[3].clone()),
        ("link 0.0", format!("smartlink_id={}", s.links[0][0]), "link_id", s.links[0][0].clone()),
    ] {
        let key = if label == "tenant 3" { &s.keys[3] } else { &s.keys[0] };
        let o = get(&s, key, &format!("/v1/analytics/overview?{scope}&{range}")).await?;
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Raw {
            views: u64,
            clicks: u64,
            uniques: u64,
            returning: u64,
        }
        let raw: Raw = ch
            .query(&format!(
                "SELECT countIf(kind = 'view' AND is_bot = 0) AS views, countIf(kind = 'click' AND is_bot = 0) AS clicks,
                    uniqExactIf({v}, is_bot = 0) AS uniques, uniqExactIf({v}, is_bot = 0 AND is_returning = 1) AS returning
                 FROM {name}.events FINAL WHERE {col} = ? AND ts >= toDateTime(?) AND ts < toDateTime(?)",
                v = rollup::VISITOR_SQL
            ))
            .bind(value.as_str())
            .bind(now - 30 * DAY)
            .bind(now + 1)
            .fetch_one()
            .await?;
        for (what, api_v, raw_v) in [
            ("views", o["views"].as_u64().unwrap_or(0), raw.views),
            ("clicks", o["clicks"].as_u64().unwrap_or(0), raw.clicks),
            ("unique visitors", o["unique_visitors"].as_u64().unwrap_or(0), raw.uniques),
            ("returning visitors", o["returning_visitors"].as_u64().unwrap_or(0), raw.returning),
        ] {
            let err = if raw_v == 0 { 0.0 } else { (api_v as f64 - raw_v as f64) / raw_v as f64 * 100.0 };
            println!("| {label} {what} | {api_v} | {raw_v} | {err:+.3}% |");
        }
    }
    // The same distinct count the old way: a rescan of the raw events.
    let t0 = Instant::now();
    let _: u64 = ch
        .query(&format!(
            "SELECT uniqExactIf({v}, is_bot = 0) FROM {name}.events FINAL WHERE tenant_id = ? AND ts >= toDateTime(?)",
            v = rollup::VISITOR_SQL
        ))
        .bind(s.tenants[0].as_str())
        .bind(now - 30 * DAY)
        .fetch_one()
        .await?;
    println!(
        "\nreference: 30-day uniqExact rescan of the big tenant's raw events: {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );

    shutdown.cancel();
    api.wait().await;
    cold_api.wait().await;
    if std::env::var("KEEP").is_err() {
        mongo.drop().await?;
        ch.query(&format!("DROP DATABASE {name}")).execute().await?;
    } else {
        println!("kept databases {name}");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
