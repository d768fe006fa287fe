//! The edge when Kafka goes away: redirects keep answering, events go to the
//! on-disk spool, and every one of them reaches the topic once the broker is
//! back, none lost and none duplicated; with traffic flowing across the
//! kill and restart, none lost; the spool survives `kill -9`.
//! Each test runs its own Apache Kafka broker (`testkit::KafkaInstance`)
//! so stopping it disturbs no other test.

// Helpers of an integration test fail the test by panicking, like its asserts.
#![allow(clippy::unwrap_used)]

mod common_env;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common_env::*;
use testkit::{eventually, KafkaInstance};

const N: usize = 200;

/// The two tests each run a Kafka JVM and stress the machine: one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn get_302s(addr: std::net::SocketAddr, host: &str, n: usize) {
    let c = http();
    for i in 0..n {
        let platform = ["spotify", "deezer", "apple-music"][i % 3];
        let r = c
            .get(format!("http://{addr}/jiro/{platform}"))
            .header("host", host)
            .header("x-forwarded-for", format!("198.51.100.{}", i % 250))
            .send()
            .await
            .expect("edge answers while the broker is down");
        assert_eq!(r.status(), 302);
    }
}

/// `kafka` killed (SIGKILL), off the test's runtime.
async fn killed(mut kafka: KafkaInstance) -> KafkaInstance {
    tokio::task::spawn_blocking(move || {
        kafka.kill();
        kafka
    })
    .await
    .unwrap()
}

/// `kafka` started again with its data, off the test's runtime.
async fn restarted(mut kafka: KafkaInstance) -> KafkaInstance {
    tokio::task::spawn_blocking(move || {
        kafka.start();
        kafka
    })
    .await
    .unwrap()
}

/// A broker of the test's own, and an in-process edge on it (3 s message
/// timeout) serving `host`/jiro, whose first redirect (event 1) answered.
async fn edge_on_own_broker(host: &str) -> (KafkaInstance, String, Env, edge::Edge) {
    let kafka = tokio::task::spawn_blocking(KafkaInstance::start_new).await.unwrap();
    let brokers = kafka.brokers();
    let mut env = env(&brokers).await;
    env.cfg.kafka_message_timeout_ms = 3_000;
    let tenant = insert_client(&env.db, host).await;
    insert_link(&env.db, &tenant, "jiro", "T", "https://open.spotify.com/track/A").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, host, "/jiro/spotify", 302, CACHE_WAIT).await;
    (kafka, brokers, env, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_stopped_redirects_answer_and_every_event_arrives_after_it_returns() {
    let _one_at_a_time = HEAVY.lock().await;
    let (mut kafka, brokers, env, edge) = edge_on_own_broker("links.outage.test").await;

    kafka = killed(kafka).await;
    get_302s(edge.addr, "links.outage.test", N).await;
    // Everything that could not be delivered is on disk.
    eventually(Duration::from_secs(30), "events spooled", || async {
        (metric(edge.admin_addr, "edge_events_spooled_total").await >= N as f64).then_some(())
    })
    .await;
    let readyz: serde_json::Value =
        http().get(format!("http://{}/readyz", edge.admin_addr)).send().await.unwrap().json().await.unwrap();
    assert!(readyz["components"]["kafka"].as_str().unwrap_or("").starts_with("degraded"), "{readyz}");

    let kafka = restarted(kafka).await;
    eventually(Duration::from_secs(120), "spool drained", || async {
        (metric(edge.admin_addr, "edge_spool_pending").await == 0.0
            && metric(edge.admin_addr, "edge_events_replayed_total").await >= 1.0)
            .then_some(())
    })
    .await;
    let events = events(&brokers, &env.cfg.kafka.raw_topic, N + 1).await;
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), N + 1, "none lost");
    assert_eq!(events.len(), N + 1, "none duplicated");
    assert_eq!(metric(edge.admin_addr, "edge_events_dropped_total{cause=\"spool_full\"}").await, 0.0);
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
    drop(kafka);
}

/// Issue #21: traffic keeps flowing while the broker is killed and started
/// again (not only while idle): every request answers 302, and every event
/// reaches the topic (a produce in flight when the broker died may arrive
/// twice, with its event id: ingest deduplicates by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flowing_across_a_broker_kill_and_restart_loses_no_event() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let _one_at_a_time = HEAVY.lock().await;
    let host = "links.flowing.test";
    let (mut kafka, brokers, env, edge) = edge_on_own_broker(host).await;

    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let traffic = tokio::spawn({
        let (stop, sent, addr) = (stop.clone(), sent.clone(), edge.addr);
        async move {
            while !stop.load(Ordering::SeqCst) {
                get_302s(addr, host, 5).await;
                sent.fetch_add(5, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    kafka = killed(kafka).await;
    eventually(Duration::from_secs(30), "events spooled during the outage", || async {
        (metric(edge.admin_addr, "edge_events_spooled_total").await >= 50.0).then_some(())
    })
    .await;
    let kafka = restarted(kafka).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.expect("every request answered 302");
    let n = 1 + sent.load(Ordering::SeqCst);
    eventually(Duration::from_secs(120), "spool drained", || async {
        (metric(edge.admin_addr, "edge_spool_pending").await == 0.0).then_some(())
    })
    .await;
    let events = events(&brokers, &env.cfg.kafka.raw_topic, n).await;
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    eprintln!("{n} requests, {} records, {} duplicates", events.len(), events.len() - ids.len());
    assert_eq!(ids.len(), n, "none lost");
    assert_eq!(metric(edge.admin_addr, "edge_events_dropped_total{cause=\"spool_full\"}").await, 0.0);
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
    drop(kafka);
}

/// The edge binary as a child process, killed (SIGKILL) on drop.
struct EdgeProcess(Child);

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_edge(env: &Env, listen: &str, admin: &str) -> EdgeProcess {
    spawn_edge_with(env, listen, admin, &[])
}

/// [`spawn_edge`] with `extra` settings on top.
fn spawn_edge_with(env: &Env, listen: &str, admin: &str, extra: &[(&str, &str)]) -> EdgeProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.env("EDGE_LISTEN", listen)
        .env("EDGE_ADMIN_LISTEN", admin)
        .env("EDGE_SPOOL_DIR", &env.cfg.spool_dir)
        .env("EDGE_RATE_LIMIT_PER_SEC", "0")
        .env("EDGE_KAFKA_MESSAGE_TIMEOUT_MS", "3000")
        // What production requires (common::config::Deployment).
        .env("EDGE_EVENT_ID_KEY", "broker-outage-test-click-id-key-0123")
        .env("KAFKA_BROKERS", &env.cfg.kafka.brokers)
        .env("KAFKA_RAW_TOPIC", &env.cfg.kafka.raw_topic)
        .env("MONGODB_URI", env.cfg.mongo.uri.expose())
        .env("MONGODB_DATABASE", &env.cfg.mongo.database)
        .env("RUST_LOG", "info,librdkafka=warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_path(env)).map(Stdio::from).unwrap_or_else(|_| Stdio::inherit()));
    EdgeProcess(cmd.spawn().expect("spawn edge binary"))
}

/// Where the spawned edge logs (appended across restarts is not needed: one file per start is fine).
fn log_path(env: &Env) -> std::path::PathBuf {
    env.cfg.spool_dir.with_extension(format!(
        "{}.log",
        std::process::id()
            ^ (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
    ))
}

/// Prints every log the spawned edges wrote next to the spool (shown when a test fails).
fn dump_logs(env: &Env) {
    let dir = env.cfg.spool_dir.parent().unwrap();
    let stem = env.cfg.spool_dir.file_name().unwrap().to_string_lossy().to_string();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(&stem) && name.ends_with(".log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- {name} (last 40 lines) ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_survives_kill_9_and_is_replayed_on_restart() {
    let _one_at_a_time = HEAVY.lock().await;
    let mut kafka = tokio::task::spawn_blocking(KafkaInstance::start_new).await.unwrap();
    let brokers = kafka.brokers();
    let env = env(&brokers).await;
    let tenant = insert_client(&env.db, "links.kill.test").await;
    insert_link(&env.db, &tenant, "jiro", "T", "https://open.spotify.com/track/A").await;
    let (listen, admin) = (free_addr(), free_addr());
    let mut child = spawn_edge(&env, &listen, &admin);
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let admin_addr: std::net::SocketAddr = admin.parse().unwrap();
    wait_status(addr, "links.kill.test", "/jiro/spotify", 302, Duration::from_secs(15)).await; // event 1
    eventually(Duration::from_secs(10), "first event delivered", || async {
        (metric(admin_addr, "edge_events_produced_total").await >= 1.0).then_some(())
    })
    .await;

    kafka = killed(kafka).await;
    get_302s(addr, "links.kill.test", N).await;
    eventually(Duration::from_secs(30), "events spooled and synced", || async {
        (metric(admin_addr, "edge_events_spooled_total").await >= N as f64).then_some(())
    })
    .await;
    // Crash hard at once: a counted append is already in the OS.
    child.0.kill().expect("kill -9");
    child.0.wait().unwrap();

    let kafka = restarted(kafka).await;
    let (listen2, admin2) = (free_addr(), free_addr());
    let mut child = spawn_edge(&env, &listen2, &admin2);
    let admin2: std::net::SocketAddr = admin2.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let replayed = try_metric(admin2, "edge_events_replayed_total").await;
        let pending = try_metric(admin2, "edge_spool_pending").await;
        if replayed.is_some_and(|r| r >= N as f64) && pending == Some(0.0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            dump_logs(&env);
            panic!("spool not replayed within 120 s after restart: replayed {replayed:?}, pending {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = events(&brokers, &env.cfg.kafka.raw_topic, N + 1).await;
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), N + 1, "every event of before the crash arrived");
    assert_eq!(events.len(), N + 1, "no duplicates");
    // SIGTERM: a clean stop.
    let _ = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    env.db.drop().await.unwrap();
    drop(kafka);
}

/// Issue #21: the edge killed at the moments its spool is written and read.
/// Mid-append: `kill -9` while requests stream into the spool (Kafka
/// down); every request that was answered (its `X-Event-Id` received)
/// reaches the topic. Mid-replay: `kill -9` while the next edge replays the
/// spool into Kafka (100 events a batch); the one after replays the rest.
/// A batch produced before its cursor moved arrives twice, with its event
/// id (ingest deduplicates by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_append_then_mid_replay_the_edge_loses_no_answered_event() {
    use std::sync::{Arc, Mutex};
    let _one_at_a_time = HEAVY.lock().await;
    let host = "links.midway.test";
    let mut kafka = tokio::task::spawn_blocking(KafkaInstance::start_new).await.unwrap();
    let brokers = kafka.brokers();
    let env = env(&brokers).await;
    let tenant = insert_client(&env.db, host).await;
    insert_link(&env.db, &tenant, "jiro", "T", "https://open.spotify.com/track/A").await;
    let slow_replay = [("EDGE_SPOOL_REPLAY_BATCH", "100")];
    let (listen, admin) = (free_addr(), free_addr());
    let mut child = spawn_edge_with(&env, &listen, &admin, &slow_replay);
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    wait_status(addr, host, "/jiro/spotify", 302, Duration::from_secs(15)).await; // not counted below
    kafka = killed(kafka).await;

    // The edge notices the broker is gone and spools from then on (what was
    // in the producer's memory is moved to the spool at that moment).
    let probe = http().get(format!("http://{addr}/jiro/deezer")).header("host", host).send().await.unwrap();
    let probe_id: uuid::Uuid = probe.headers()["x-event-id"].to_str().unwrap().parse().unwrap();
    let admin_addr: std::net::SocketAddr = admin.parse().unwrap();
    eventually(Duration::from_secs(30), "the edge spooling", || async {
        (metric(admin_addr, "edge_events_spooled_total").await >= 1.0).then_some(())
    })
    .await;

    // Mid-append: four clients until the edge dies under them.
    let answered = Arc::new(Mutex::new(vec![probe_id]));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let http = http();
                for i in 0.. {
                    let sent = http
                        .get(format!("http://{addr}/jiro/spotify"))
                        .header("host", host)
                        .header("x-forwarded-for", format!("198.51.100.{}", (c * 60 + i) % 250))
                        .send()
                        .await;
                    let Ok(r) = sent else { break };
                    let id = r.headers().get("x-event-id").and_then(|v| v.to_str().ok()?.parse().ok());
                    match (r.status().as_u16(), id) {
                        (302, Some(id)) => answered.lock().unwrap().push(id),
                        (status, _) => panic!("answered {status} while spooling"),
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "2000 requests answered while spooling", || async {
        (answered.lock().unwrap().len() >= 2000).then_some(())
    })
    .await;
    child.0.kill().expect("kill -9 mid-append");
    child.0.wait().unwrap();
    for c in clients {
        c.await.expect("clients stop when the edge is gone");
    }
    let answered: HashSet<uuid::Uuid> = answered.lock().unwrap().iter().copied().collect();

    // Mid-replay: Kafka back, a new edge replays; killed part way.
    let kafka = restarted(kafka).await;
    let (listen2, admin2) = (free_addr(), free_addr());
    let mut child = spawn_edge_with(&env, &listen2, &admin2, &slow_replay);
    let admin2: std::net::SocketAddr = admin2.parse().unwrap();
    eventually(Duration::from_secs(120), "replay under way", || async {
        (try_metric(admin2, "edge_events_replayed_total").await.unwrap_or(0.0) >= 300.0).then_some(())
    })
    .await;
    child.0.kill().expect("kill -9 mid-replay");
    child.0.wait().unwrap();
    let in_topic: usize = events(&brokers, &env.cfg.kafka.raw_topic, 300).await.len();
    assert!(in_topic < answered.len(), "killed before the replay ended: {in_topic} of {}", answered.len());

    // The next edge replays the rest.
    let (listen3, admin3) = (free_addr(), free_addr());
    let _child = spawn_edge_with(&env, &listen3, &admin3, &slow_replay);
    let admin3: std::net::SocketAddr = admin3.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while try_metric(admin3, "edge_spool_pending").await != Some(0.0)
        || try_metric(admin3, "edge_events_replayed_total").await.unwrap_or(0.0) == 0.0
    {
        if std::time::Instant::now() > deadline {
            dump_logs(&env);
            panic!("the spool's rest not replayed within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = events(&brokers, &env.cfg.kafka.raw_topic, answered.len() + 1).await;
    let ids: HashSet<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let lost: Vec<_> = answered.difference(&ids).collect();
    eprintln!(
        "{} answered, {} records in the topic, {} duplicates",
        answered.len(),
        events.len(),
        events.len() - ids.len()
    );
    assert!(lost.is_empty(), "{} answered events lost, e.g. {:?}", lost.len(), lost.first());
    env.db.drop().await.unwrap();
    drop(kafka);
}
