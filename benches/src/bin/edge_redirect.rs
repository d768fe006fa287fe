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
//! The edge is measured twice, interleaved over two rounds (best of each
//! kept): a link without routing, and a link with 20 routing rules (issue
//! #18) where the request is evaluated against all of them: 19 that do not
//! match (device, OS, country, language) and a last one, by country, that
//! sends Spotify clicks to a storefront URL and is recorded in the event.
//! Requests carry a desktop Chrome user agent, `Accept-Language` and a
//! public client IP (`X-Forwarded-For` from loopback, a trusted proxy), so
//! the user agent parse and the GeoIP lookup are paid as for real visitors.
//!
//! Then the plain link once more while a child process holds 10,000 idle
//! keep-alive connections to the edge (each used for one redirect first),
//! with the process's resident memory before and with them (bytes per
//! connection), its peak, and a check that the edge still serves every
//! one of them afterwards.
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

/// Where the routed link's last rule sends Spotify clicks.
const STOREFRONT: &str = "https://open.spotify.com/intl-gb/track/4uLU6hMCjMI75M1A2tKUQC";

/// Headers of every benchmark request: a desktop browser in the UK (MaxMind
/// and DB-IP place 81.2.69.142 there) behind the trusted proxy.
fn visitor_headers() -> Vec<String> {
    vec![
        format!("Host: {HOST}"),
        "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36".into(),
        "Accept-Language: en-GB,en;q=0.9".into(),
        "X-Forwarded-For: 81.2.69.142".into(),
    ]
}

/// 20 rules: 19 the benchmark's visitor does not match, each with a
/// different condition kind, then one by country that it does.
fn twenty_rules() -> schemas::routing::Routing {
    use schemas::routing::{Routing, Rule, Target};
    let miss = |i: usize| {
        let id = format!("miss-{i}");
        match i % 4 {
            0 => Rule { id, os: vec!["ios".into(), "android".into()], ..Rule::default() },
            1 => Rule { id, countries: ["JP", "KR", "BR", "MX", "IN"].map(String::from).to_vec(), ..Rule::default() },
            2 => Rule { id, languages: vec!["ja".into(), "ko".into()], ..Rule::default() },
            _ => Rule { id, devices: vec!["mobile".into()], browsers: vec!["safari".into()], ..Rule::default() },
        }
    };
    let mut rules: Vec<Rule> = (0..19).map(miss).collect();
    rules.push(Rule {
        id: "uk".into(),
        countries: vec!["GB".into(), "IE".into()],
        target: Target { urls: [("spotify".to_string(), STOREFRONT.to_string())].into(), ..Target::default() },
        ..Rule::default()
    });
    Routing { rules, ..Routing::default() }
}

/// The `Location` the edge answers for `path` with the benchmark's headers.
async fn location_of(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = visitor_headers().join("\r\n");
    s.write_all(format!("GET {path} HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap_or("")
        .trim()
        .to_string())
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

/// Keeps in `best` the faster of it and `r` (best of several runs).
fn keep_faster(best: &mut Option<benches::WrkReport>, r: benches::WrkReport) {
    if best.as_ref().is_none_or(|b| r.rps > b.rps) {
        *best = Some(r);
    }
}

/// Processes whose CPU time each run prints.
const CPU_NAMES: &[&str] = &["self", "java", "machine"];

/// Idle keep-alive connections the run holds open while it measures the
/// edge again (issue #17: held without moving p99).
const IDLE_CONNECTIONS: usize = 10_000;

/// Resident and peak resident memory of this process (`VmRSS`, `VmHWM` of
/// `/proc/self/status`), bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// One GET of `/jiro/spotify` on `stream` as a visitor, keep-alive, and its
/// answer read to the end of its head and body. Whether it was a 302.
fn request(stream: &mut std::net::TcpStream) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut req = String::from("GET /jiro/spotify HTTP/1.1\r\n");
    for h in visitor_headers() {
        req.push_str(&h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let (mut buf, mut len) = ([0u8; 4096], 0);
    loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(false);
        }
        len += n;
        let head = &buf[..len];
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let body: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while len < end + 4 + body {
                let n = stream.read(&mut buf[len..])?;
                if n == 0 {
                    return Ok(false);
                }
                len += n;
            }
            return Ok(text.starts_with("http/1.1 302"));
        }
        if len == buf.len() {
            return Ok(false);
        }
    }
}

/// The child process of the idle-connection step (`edge_redirect --hold
/// ADDR N`): opens N connections to ADDR, one redirect on each (so each is
/// an idle keep-alive connection, as a visitor's browser leaves it), says
/// `held N` on stdout, waits for a line on stdin, then asks for a redirect
/// again on every connection and says `alive M`: how many the edge kept.
/// A process of its own, so the client side's sockets are neither in the
/// edge's memory nor in its file-descriptor limit.
fn hold(addr: &str, n: usize) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr)?;
        anyhow::ensure!(request(&mut s)?, "no redirect on a new connection");
        conns.push(s);
    }
    println!("held {}", conns.len());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let alive = conns.iter_mut().filter_map(|s| request(s).ok()).filter(|ok| *ok).count();
    println!("alive {alive}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--hold") {
        let addr = args.get(2).ok_or_else(|| anyhow::anyhow!("--hold ADDR N"))?;
        return hold(addr, args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(IDLE_CONNECTIONS));
    }
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
    let routed = Smartlink { id: ObjectId::new(), slug: "routed".into(), routing: twenty_rules(), ..link };
    db.collection::<Smartlink>(collections::SMARTLINKS).insert_one(&routed).await?;
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
    let routed_url = format!("http://{}/routed/spotify", edge.addr);
    let bare_url = format!("http://{bare}/jiro/spotify");
    // Each measured run also says where the two cores went: this process
    // (the server), the Kafka broker, the whole machine (wrk, which exits
    // before the second reading, is in the machine's share).
    let wrk = |url: &str, secs: Duration| {
        let u = url.to_string();
        tokio::task::spawn_blocking(move || {
            let cpu = benches::cpu_seconds(CPU_NAMES);
            let t = Instant::now();
            let r = benches::run_wrk_with(&u, &visitor_headers(), 1, conns, secs);
            if secs >= Duration::from_secs(3) {
                let share = benches::cpu_share(&cpu, &benches::cpu_seconds(CPU_NAMES), t.elapsed().as_secs_f64());
                eprintln!("{u}: CPU {share}");
            }
            r
        })
    };
    for url in [&edge_url, &routed_url, &bare_url] {
        wrk(url, Duration::from_secs(2)).await??;
    }
    let r = location_of(edge.addr, "/routed/spotify").await?;
    anyhow::ensure!(r == STOREFRONT, "the routed link answers {r:?}, not the rule's storefront");
    let produced_before = edge.metrics.produced.get();

    // `BENCH_PROFILE=1` (benches/profile.sh): the plain edge alone, once,
    // for a profiler attached to this process.
    if std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1") {
        eprintln!("measuring: edge only, {secs} s (pid {})", std::process::id());
        let r = wrk(&edge_url, duration).await??;
        println!("{}", row("edge 302 + event to Kafka", &r));
        shutdown.cancel();
        edge.wait().await;
        db.drop().await?;
        return Ok(());
    }

    eprintln!("measuring: {secs} s per server and round, 2 rounds, {conns} connections, wrk 1 thread");
    let bare_report = wrk(&bare_url, duration).await??;
    let mut edge_report: Option<benches::WrkReport> = None;
    let mut routed_report: Option<benches::WrkReport> = None;
    let mut requests = 0;
    for _ in 0..2 {
        for (url, best) in [(&edge_url, &mut edge_report), (&routed_url, &mut routed_report)] {
            let r = wrk(url, duration).await??;
            requests += r.requests;
            keep_faster(best, r);
        }
    }
    let (edge_report, routed_report) = (
        edge_report.ok_or_else(|| anyhow::anyhow!("no run"))?,
        routed_report.ok_or_else(|| anyhow::anyhow!("no run"))?,
    );

    // The plain edge again with IDLE_CONNECTIONS idle keep-alive
    // connections open (held by a child process), and what they cost.
    let (rss_before, _) = memory();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--hold", &edge.addr.to_string(), &IDLE_CONNECTIONS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
    let mut line = String::new();
    let read_line = |out: &mut std::io::BufReader<std::process::ChildStdout>, line: &mut String| {
        line.clear();
        std::io::BufRead::read_line(out, line).map(|_| line.trim().to_string())
    };
    let held = read_line(&mut out, &mut line)?;
    anyhow::ensure!(held == format!("held {IDLE_CONNECTIONS}"), "the holder said {held:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = memory();
    // Best of two, as for the runs without them.
    let mut idle_report: Option<benches::WrkReport> = None;
    for _ in 0..2 {
        let r = wrk(&edge_url, duration).await??;
        requests += r.requests;
        keep_faster(&mut idle_report, r);
    }
    let idle_report = idle_report.ok_or_else(|| anyhow::anyhow!("no run"))?;
    use std::io::Write as _;
    writeln!(child.stdin.as_mut().ok_or_else(|| anyhow::anyhow!("no stdin"))?, "check")?;
    let alive = read_line(&mut out, &mut line)?;
    child.wait()?;
    let alive: usize = alive.strip_prefix("alive ").and_then(|n| n.parse().ok()).unwrap_or(0);
    let (rss_after, rss_peak) = memory();
    let per_connection = rss_idle.saturating_sub(rss_before) as f64 / IDLE_CONNECTIONS as f64;

    // Every answered redirect is an event Kafka must acknowledge (the
    // holder's 2 × IDLE_CONNECTIONS redirects are on top).
    let expected = requests;
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
    println!("{}", row("edge 302, 20 routing rules + event", &routed_report));
    println!(
        "{}",
        row(&format!("edge 302 + event, {IDLE_CONNECTIONS} idle keep-alive connections open"), &idle_report)
    );
    println!();
    println!(
        "memory: RSS {:.1} MiB before the idle connections, {:.1} MiB with {IDLE_CONNECTIONS} open ({:.1} KiB per \
         connection), {:.1} MiB after; peak RSS {:.1} MiB; {alive} of {IDLE_CONNECTIONS} still served after the run",
        rss_before as f64 / 1048576.0,
        rss_idle as f64 / 1048576.0,
        per_connection / 1024.0,
        rss_after as f64 / 1048576.0,
        rss_peak as f64 / 1048576.0,
    );
    println!(
        "edge throughput = {:.0}% of bare hyper; with 20 rules = {:.1}% of the plain redirect (p99 {:.2}x); \
         events acknowledged by Kafka: {produced} of {expected} redirects (spooled: {spooled})",
        100.0 * edge_report.rps / bare_report.rps,
        100.0 * routed_report.rps / edge_report.rps,
        routed_report.p99.as_secs_f64() / edge_report.p99.as_secs_f64(),
    );
    benches::ratio("edge redirects/s vs bare hyper", edge_report.rps, bare_report.rps, "req/s", ">= 80%");
    benches::ratio(
        "edge p99 vs bare hyper p99",
        edge_report.p99.as_secs_f64() * 1e6,
        bare_report.p99.as_secs_f64() * 1e6,
        "µs",
        "<= 200%",
    );
    benches::ratio("20 routing rules vs plain redirect", routed_report.rps, edge_report.rps, "req/s", ">= 95%");
    benches::ratio(
        &format!("edge p99 with {IDLE_CONNECTIONS} idle connections vs without"),
        idle_report.p99.as_secs_f64() * 1e6,
        edge_report.p99.as_secs_f64() * 1e6,
        "µs",
        "<= 110%",
    );
    shutdown.cancel();
    edge.wait().await;
    db.drop().await?;
    anyhow::ensure!(produced >= expected, "only {produced} of {expected} events acknowledged");
    anyhow::ensure!(alive == IDLE_CONNECTIONS, "the edge kept {alive} of {IDLE_CONNECTIONS} idle connections");
    Ok(())
}
