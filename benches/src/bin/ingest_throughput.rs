//! `ingest_throughput`: how fast ingest turns raw events into ClickHouse rows.
//!
//! One run, the same N events throughout (user agents drawn by weight from
//! the npm `user-agents` dataset, client IPs spread over public IPv4 space,
//! 1.6 events per visitor,
//! GeoIP on the DB-IP Lite databases `deploy/local/up.sh` installs):
//! 1. enrichment on one core: simd-json parse + validate + GeoIP + UA (cached)
//!    + bot flag + visitor hash + session, events/s;
//! 2. raw insert: the already-enriched rows inserted straight into ClickHouse
//!    (batches of 50k, lz4), rows/s: the ceiling for ingest's writes;
//! 3. end to end: the events produced to a fresh Kafka topic first, then an
//!    in-process ingest (one, then two consumers) consumes, enriches and
//!    writes them; events/s from its first record until ClickHouse holds all N.
//!
//! Usage: `cargo run --release -p benches --bin ingest_throughput -- [N]` (default 200000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use envconfig::Envconfig;
use schemas::clickhouse::{EventRow, EVENTS_TABLE};
use schemas::event::{Attribution, Consent, EventKind, RawEvent, RAW_EVENT_VERSION};

/// The allocator the `ingest` binary runs with (see ingest/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Processes whose CPU time the end-to-end runs print: this one (ingest in
/// process), ClickHouse, the Kafka broker (a JVM), and the machine's busy
/// time (of its 2 cores: 200% is all of it).
const CPU_NAMES: &[&str] = &["self", "clickhouse", "java", "machine"];

fn events(n: usize) -> anyhow::Result<Vec<RawEvent>> {
    let uas = benches::UserAgents::load()?;
    let mut rng = benches::Rng(0x9E37_79B9_7F4A_7C15);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // Visitors: a user agent and an address each; every event comes from
    // one drawn at random, 1.6 events per visitor on average (a view, a
    // click 40% of the time, some returns), which is what a GeoIP cache by
    // network can hit on: addresses are spread uniformly over public IPv4,
    // so two visitors almost never share a /24 (real ones do, more often).
    let visitors: Vec<(String, std::net::Ipv4Addr)> = (0..(n * 10 / 16).max(1))
        .map(|_| {
            let ua = uas.pick(&mut rng).to_string();
            (ua, std::net::Ipv4Addr::from((rng.next_u64() as u32 % 0xDF00_0000).max(0x0100_0000)))
        })
        .collect();
    Ok((0..n)
        .map(|i| {
            let (ua, ip) = visitors[rng.next_u64() as usize % visitors.len()].clone();
            let click = rng.unit() < 0.4;
            let mut attribution = Attribution::default();
            attribution.set("utm_source", ["instagram", "tiktok", "newsletter", "youtube"][i % 4]);
            RawEvent {
                v: RAW_EVENT_VERSION,
                event_id: uuid::Uuid::now_v7(),
                kind: if click { EventKind::Click } else { EventKind::View },
                ts_ms: now - (n - i) as i64,
                tenant_id: "65f1c0ffee0000000000beef".into(),
                link_id: format!("65f1c0ffee0000000000{:04x}", i % 50).into(),
                slug: "jiro".into(),
                host: "links.bench.test".into(),
                path: "/jiro".into(),
                method: "GET".into(),
                platform: click.then(|| ["spotify", "apple-music", "deezer"][i % 3].into()),
                ip: ip.into(),
                user_agent: Some(ua.into()),
                accept_language: Some("en-US,en;q=0.9".into()),
                referrer: Some("https://www.instagram.com/".into()),
                attribution,
                consent: Consent::Unknown,
                dnt: false,
                visitor_id: None,
                ad_cookies: Default::default(),
                engagement: None,
                keep_full_ip: false,
                rule_id: None,
                variant: None,
            }
        })
        .collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let name = testkit::unique_name("bench_ingest");
    let mut cfg = ingest::Config::init_from_env()?;
    cfg.admin_listen = "127.0.0.1:0".parse()?;
    cfg.group_id = format!("g.{name}");
    cfg.kafka.raw_topic = format!("bench.raw.{name}");
    cfg.kafka.dead_letter_topic = format!("bench.dlq.{name}");
    cfg.clickhouse.database = name.clone();
    let geo_paths = benches::dbip_paths();
    cfg.geoip_databases = geo_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");

    eprintln!("generating {n} events…");
    let events = events(n)?;
    let payloads: Vec<Vec<u8>> = events.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?;

    // 1. Enrichment on one core.
    let mut enricher = ingest::enrich::Enricher {
        geoip: Arc::new(ingest::geoip::GeoIp::open(&geo_paths)?),
        geo_cache: ingest::geoip::GeoCache::new(cfg.geoip_cache_size),
        ua: Arc::new(ingest::device::UaParser::new(cfg.ua_cache_size)),
        visitors: ingest::visitor::VisitorHasher::new(b"bench"),
        sessions: ingest::visitor::Sessions::new(1_800_000, 1_000_000),
        geoip_errors: prometheus::IntCounter::new("geoip_errors", "bench")?,
    };
    let mut parser = ingest::enrich::Parser::default();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // `BENCH_PROFILE=1` (benches/profile.sh): parse + enrich, over and over
    // for 10 s, for a profiler attached to this process.
    let profile_e2e = std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "e2e");
    if std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1") {
        eprintln!("measuring: enrichment, 1 core, 10 s (pid {})", std::process::id());
        let (t, mut done) = (Instant::now(), 0usize);
        while t.elapsed() < Duration::from_secs(10) {
            // Each pass starts from empty GeoIP and session caches, as the
            // timed single pass does (the UA cache stays: it is warm in
            // production too).
            enricher.geo_cache = ingest::geoip::GeoCache::new(cfg.geoip_cache_size);
            enricher.sessions = ingest::visitor::Sessions::new(1_800_000, 1_000_000);
            for p in &payloads {
                let e = parser.parse(p, now_ms).map_err(|r| anyhow::anyhow!("{}: {}", r.reason, r.error))?;
                std::hint::black_box(enricher.enrich(e, (now_ms / 1000) as u32));
            }
            done += payloads.len();
        }
        println!(
            "| parse + validate + enrich (1 core, profiled) | {done} | {:.2} | {:.0} |",
            t.elapsed().as_secs_f64(),
            done as f64 / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let t = Instant::now();
    let mut rows: Vec<EventRow> = Vec::with_capacity(n);
    for p in &payloads {
        let e = parser.parse(p, now_ms).map_err(|r| anyhow::anyhow!("{}: {}", r.reason, r.error))?;
        rows.push(enricher.enrich(e, (now_ms / 1000) as u32));
    }
    let enrich_secs = t.elapsed().as_secs_f64();
    let (hits, misses) = enricher.ua.cache_stats();
    let (geo_hits, geo_misses) = enricher.geo_cache.stats();
    let t = Instant::now();
    let (mut buf, mut buffers) = (Vec::new(), simd_json::Buffers::default());
    for p in payloads.iter().take(n.min(50_000)) {
        buf.clear();
        buf.extend_from_slice(p);
        let _: RawEvent = simd_json::serde::from_slice_with_buffers(&mut buf, &mut buffers)?;
    }
    let parse_only = n.min(50_000) as f64 / t.elapsed().as_secs_f64();

    // 2. Raw insert of the same rows.
    let raw_db = format!("{name}_raw");
    let mut raw_cfg = cfg.clickhouse.clone();
    raw_cfg.database = raw_db.clone();
    migrate::apply_clickhouse(&raw_cfg).await?;
    let raw_client = raw_cfg.client().with_database(&raw_db);
    let t = Instant::now();
    let cpu0 = benches::cpu_seconds(CPU_NAMES);
    for chunk in rows.chunks(50_000) {
        let mut insert = raw_client.insert::<EventRow>(EVENTS_TABLE).await?;
        for r in chunk {
            insert.write(r).await?;
        }
        insert.end().await?;
    }
    let raw_secs = t.elapsed().as_secs_f64();
    eprintln!("raw insert: CPU: {}", benches::cpu_share(&cpu0, &benches::cpu_seconds(CPU_NAMES), raw_secs));

    // 3. End to end through Kafka and ingest.
    kafka_util::ensure_topics(&cfg.kafka.brokers, &cfg.kafka.topic_names().specs(1)).await?;
    let producer: rdkafka::producer::FutureProducer = kafka_util::base_config(&cfg.kafka.brokers, "bench")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let t = Instant::now();
    let keys: Vec<String> = events.iter().map(RawEvent::partition_key).collect();
    let mut pending = Vec::with_capacity(10_000);
    for (key, p) in keys.iter().zip(&payloads) {
        pending.push(producer.send(
            rdkafka::producer::FutureRecord::to(&cfg.kafka.raw_topic).key(key).payload(p),
            Duration::from_secs(60),
        ));
        if pending.len() == 10_000 {
            for r in futures::future::join_all(pending.drain(..)).await {
                r.map_err(|(e, _)| e)?;
            }
        }
    }
    for r in futures::future::join_all(pending.drain(..)).await {
        r.map_err(|(e, _)| e)?;
    }
    let produce_secs = t.elapsed().as_secs_f64();
    // The same topic read by a fresh group into a fresh database, with one
    // then two consumers in the process (`INGEST_CONSUMERS`).
    let mut e2e = Vec::new();
    for consumers in [1usize, 2] {
        let mut run = cfg.clone();
        run.consumers = consumers;
        run.group_id = format!("{}.c{consumers}", cfg.group_id);
        run.clickhouse.database = format!("{name}_c{consumers}");
        migrate::apply_clickhouse(&run.clickhouse).await?;
        let shutdown = common::shutdown::CancellationToken::new();
        // `BENCH_PROFILE=e2e` (benches/profile.sh ingest-e2e): the word a
        // profiler waits for before attaching, at the one-consumer run.
        let word = if consumers == 1 && profile_e2e { "measuring" } else { "timing" };
        eprintln!("{word}: end to end, {consumers} consumer(s) (pid {})", std::process::id());
        let t = Instant::now();
        let ing = ingest::start(run.clone(), prometheus::Registry::new(), shutdown.clone()).await?;
        // Timed from the first record consumed: joining the group is a
        // start-up cost, not throughput.
        while ing.metrics.consumed.get() == 0 {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "ingest never consumed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let t = Instant::now();
        let cpu0 = benches::cpu_seconds(CPU_NAMES);
        // Done when ClickHouse holds every event once. The written-rows
        // counter alone is not enough: when the second consumer joins after
        // the first has started, the group rebalances and the batches in
        // flight are delivered again (at-least-once), so rows are written
        // twice (collapsed by the table) before the last ones land.
        let ch = run.clickhouse.client().with_database(&run.clickhouse.database);
        let mut stored: u64 = 0;
        while stored < n as u64 {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "ingest did not finish: {stored} of {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ing.metrics.written.get() >= n as u64 {
                stored = ch.query("SELECT uniqExact(event_id) FROM events").fetch_one().await?;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{consumers} consumer(s): consumed {} records, {} duplicates skipped, {} rows written; CPU while ingesting: {}",
            ing.metrics.consumed.get(),
            ing.metrics.duplicates.get(),
            ing.metrics.written.get(),
            benches::cpu_share(&cpu0, &benches::cpu_seconds(CPU_NAMES), secs)
        );
        shutdown.cancel();
        ing.wait().await;
        e2e.push((consumers, secs, stored, run.clickhouse.database));
    }

    println!("| stage | events | seconds | events/s |");
    println!("|---|---|---|---|");
    println!("| simd-json parse only (1 core) | {} | - | {parse_only:.0} |", n.min(50_000));
    println!("| parse + validate + enrich (1 core) | {n} | {enrich_secs:.2} | {:.0} |", n as f64 / enrich_secs);
    println!(
        "| raw ClickHouse insert of the same rows (50k batches) | {n} | {raw_secs:.2} | {:.0} |",
        n as f64 / raw_secs
    );
    println!(
        "| produce to Kafka (bench client, for reference) | {n} | {produce_secs:.2} | {:.0} |",
        n as f64 / produce_secs
    );
    for (consumers, secs, _, _) in &e2e {
        println!(
            "| end to end: ingest from Kafka to ClickHouse, {consumers} consumer(s) | {n} | {secs:.2} | {:.0} |",
            n as f64 / secs
        );
    }
    println!();
    println!(
        "UA cache: {hits} hits / {misses} misses ({:.1}% hits); GeoIP cache: {geo_hits} hits / {geo_misses} misses ({:.1}% hits); rows in ClickHouse: {:?} of {n}",
        100.0 * hits as f64 / (hits + misses).max(1) as f64,
        100.0 * geo_hits as f64 / (geo_hits + geo_misses).max(1) as f64,
        e2e.iter().map(|r| r.2).collect::<Vec<_>>()
    );
    benches::ratio("enrichment, 1 core", n as f64 / enrich_secs, 1_000_000.0, "events/s", ">= 100% (1M/s)");
    let best = e2e.iter().map(|r| r.1).fold(f64::MAX, f64::min);
    benches::ratio(
        "ingest end to end (best of 1, 2 consumers) vs raw insert",
        n as f64 / best,
        n as f64 / raw_secs,
        "events/s",
        ">= 80%",
    );
    let admin = cfg.clickhouse.client();
    for db in [&raw_db].into_iter().chain(e2e.iter().map(|r| &r.3)) {
        admin.query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await?;
    }
    for (consumers, _, stored, _) in &e2e {
        anyhow::ensure!(*stored == n as u64, "{consumers} consumer(s): only {stored} of {n} rows stored");
    }
    Ok(())
}
