//! `edge_redirect`: redirect throughput and latency of the edge, compared in
//! the same run with a bare hyper server that answers the same 302 from a
//! constant (the ceiling of any hyper server on this machine).
//!
//! Needs the local stack (`deploy/local/up.sh`) and `wrk`. The edge runs
//! in-process against the real MongoDB-wire server (its own database) and
//! the real Kafka broker (its own topic), with rate limiting off; every
//! redirect it answers produces one event, and the run waits until Kafka has
//! acknowledged all of them.
//!
//! Usage: `cargo run --release -p benches --bin edge_redirect -- [SECONDS] [CONNECTIONS]`
//! (defaults 10 and 64). wrk uses one thread, the servers two tokio workers.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bson::{oid::ObjectId, DateTime};
use bytes::Bytes;
use envconfig::Envconfig;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use schemas::mongo::*;

const HOST: &str = "bench.links.test";
const TARGET: &str = "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC";

/// The baseline: a hyper server answering the same 302 from a constant.
async fn bare_hyper() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::FOUND;
                    r.headers_mut().insert(hyper::header::LOCATION, hyper::header::HeaderValue::from_static(TARGET));
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(addr)
}

fn row(name: &str, r: &benches::WrkReport) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
        r.rps,
        r.p50.as_secs_f64() * 1e6,
        r.p90.as_secs_f64() * 1e6,
        r.p99.as_secs_f64() * 1e6,
        r.requests as f64,
        r.non_2xx_3xx + r.socket_errors
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let conns: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let duration = Duration::from_secs(secs);

    // The edge, on its own database and topic.
    let name = testkit::unique_name("bench");
    let mut cfg = edge::Config::init_from_env()?;
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.admin_listen = "127.0.0.1:0".parse()?;
    cfg.rate_limit_per_sec = 0;
    cfg.spool_dir = std::env::temp_dir().join(&name);
    cfg.kafka.raw_topic = format!("bench.raw.{name}");
    cfg.mongo.database = name.clone();
    kafka_util::ensure_topics(&cfg.kafka.brokers, &cfg.kafka.topic_names().specs(1)).await?;
    let db = cfg.mongo.database().await?;
    let now = DateTime::now();
    let client = Client {
        id: ObjectId::new(),
        name: "Bench".into(),
        slug: "bench".into(),
        domain: HOST.into(),
        subdomain: None,
        tracking: ClientTracking::default(),
        branding: Branding::default(),
        settings: ClientSettings::default(),
        metadata: ClientMetadata::new(now, ClientStatus::Active, PlanType::Enterprise),
    };
    db.collection::<Client>(collections::CLIENTS).insert_one(&client).await?;
    let link = Smartlink {
        id: ObjectId::new(),
        client_id: client.id,
        slug: "jiro".into(),
        track: Track { title: "In Your Light".into(), artist_name: "Jiro".into(), ..Default::default() },
        platforms: Platforms { spotify: Some(TARGET.into()), ..Default::default() },
        media: Media::default(),
        seo: Seo::default(),
        routing: Default::default(),
        metadata: LinkMetadata::new(now, LinkStatus::Active),
    };
    db.collection::<Smartlink>(collections::SMARTLINKS).insert_one(&link).await?;
    let shutdown = common::shutdown::CancellationToken::new();
    let edge = edge::start(cfg.clone(), prometheus::Registry::new(), shutdown.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !edge.health.is_ready() {
        anyhow::ensure!(Instant::now() < deadline, "edge not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bare = bare_hyper().await?;

    eprintln!("warming up…");
    let edge_url = format!("http://{}/jiro/spotify", edge.addr);
    let bare_url = format!("http://{bare}/jiro/spotify");
    for url in [&edge_url, &bare_url] {
        let u = url.clone();
        tokio::task::spawn_blocking(move || benches::run_wrk(&u, HOST, 1, conns, Duration::from_secs(2))).await??;
    }
    let produced_before = edge.metrics.produced.get();

    eprintln!("measuring: {secs} s per server, {conns} connections, wrk 1 thread");
    let u = bare_url.clone();
    let bare_report = tokio::task::spawn_blocking(move || benches::run_wrk(&u, HOST, 1, conns, duration)).await??;
    let u = edge_url.clone();
    let edge_report = tokio::task::spawn_blocking(move || benches::run_wrk(&u, HOST, 1, conns, duration)).await??;

    // Every answered redirect is an event Kafka must acknowledge.
    let expected = edge_report.requests;
    let started = Instant::now();
    while edge.metrics.produced.get() - produced_before < expected && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let produced = edge.metrics.produced.get() - produced_before;
    let spooled = edge.metrics.spooled.get();

    println!("| server | requests/s | p50 µs | p90 µs | p99 µs | requests | errors |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", row("bare hyper 302 (baseline)", &bare_report));
    println!("{}", row("edge 302 + event to Kafka", &edge_report));
    println!();
    println!(
        "edge throughput = {:.0}% of bare hyper; events acknowledged by Kafka: {produced} of {expected} redirects (spooled: {spooled})",
        100.0 * edge_report.rps / bare_report.rps
    );
    shutdown.cancel();
    edge.wait().await;
    db.drop().await?;
    anyhow::ensure!(produced >= expected, "only {produced} of {expected} events acknowledged");
    Ok(())
}
