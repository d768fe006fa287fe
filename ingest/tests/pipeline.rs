//! Ingest against the real Kafka broker and ClickHouse: enrichment, dead
//! letters, exactly-N after `kill -9`, and a ClickHouse outage with ingest
//! restarted in the middle of it. Each test has
//! its own topics and database.

// Helpers of an integration test fail the test by panicking, like its asserts.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use envconfig::Envconfig;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::clickhouse::{DeviceCode, EventRow};
use schemas::event::{Attribution, Consent, EventKind, RawEvent, RAW_EVENT_VERSION};
use testkit::{eventually, unique_name, ClickHouseInstance, KafkaInstance};

fn geoip_test_db() -> String {
    testkit::geoip_test_db("GeoIP2-City-Test.mmdb").display().to_string()
}

struct Env {
    cfg: ingest::Config,
    ch: clickhouse::Client,
}

async fn env(clickhouse_url: Option<String>) -> Env {
    env_on(None, clickhouse_url).await
}

/// [`env`] on the Kafka bootstrap servers `brokers` (a private broker)
/// instead of the local stack's.
async fn env_on(brokers: Option<&str>, clickhouse_url: Option<String>) -> Env {
    common::telemetry::init_logging();
    let name = unique_name("ingest");
    let mut vars = HashMap::new();
    vars.insert("INGEST_ADMIN_LISTEN".to_string(), "127.0.0.1:0".to_string());
    vars.insert("INGEST_GROUP_ID".to_string(), format!("g.{name}"));
    vars.insert("INGEST_GEOIP_DATABASES".to_string(), geoip_test_db());
    vars.insert("INGEST_BATCH_MAX_MS".to_string(), "200".to_string());
    vars.insert("INGEST_RETRY_MAX_MS".to_string(), "1000".to_string());
    vars.insert("KAFKA_RAW_TOPIC".to_string(), format!("raw.{name}"));
    vars.insert("KAFKA_DEAD_LETTER_TOPIC".to_string(), format!("dlq.{name}"));
    vars.insert("CLICKHOUSE_DATABASE".to_string(), name.clone());
    if let Some(url) = clickhouse_url {
        vars.insert("CLICKHOUSE_URL".to_string(), url);
    }
    if let Some(brokers) = brokers {
        vars.insert("KAFKA_BROKERS".to_string(), brokers.to_string());
    }
    let cfg = ingest::Config::init_from_hashmap(&vars).unwrap();
    kafka_util::ensure_topics(&cfg.kafka.brokers, &cfg.kafka.topic_names().specs(1)).await.unwrap();
    migrate::apply_clickhouse(&cfg.clickhouse).await.unwrap();
    let ch = cfg.clickhouse.client().with_database(&cfg.clickhouse.database);
    Env { cfg, ch }
}

fn event(ip: &str, ua: Option<&str>, method: &str, kind: EventKind, ts_ms: i64) -> RawEvent {
    let mut attribution = Attribution::default();
    attribution.set("utm_source", "tiktok");
    attribution.set("ttclid", "E.C.P.abc");
    RawEvent {
        v: RAW_EVENT_VERSION,
        event_id: uuid::Uuid::now_v7(),
        kind,
        ts_ms,
        tenant_id: "65f1c0ffee0000000000beef".into(),
        link_id: "65f1c0ffee0000000000cafe".into(),
        slug: "jiro".into(),
        host: "links.a.test".into(),
        path: "/jiro".into(),
        method: method.into(),
        platform: (kind == EventKind::Click).then(|| "spotify".into()),
        ip: ip.parse().unwrap(),
        user_agent: ua.map(Into::into),
        accept_language: Some("en-GB,en;q=0.8".into()),
        referrer: Some("https://www.tiktok.com/@jiro".into()),
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
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn produce(brokers: &str, topic: &str, records: Vec<(String, Vec<u8>)>) {
    let p: FutureProducer = kafka_util::base_config(brokers, "test-producer").set("linger.ms", "5").create().unwrap();
    let sends: Vec<_> = records
        .iter()
        .map(|(k, v)| p.send(FutureRecord::to(topic).key(k).payload(v), Duration::from_secs(30)))
        .collect();
    for s in futures::future::join_all(sends).await {
        s.expect("produced");
    }
}

async fn produce_events(brokers: &str, topic: &str, events: &[RawEvent]) {
    produce(brokers, topic, events.iter().map(|e| (e.partition_key(), serde_json::to_vec(e).unwrap())).collect()).await;
}

/// `(distinct event ids, rows after FINAL)` in the events table.
async fn counts(ch: &clickhouse::Client) -> Option<(u64, u64)> {
    let uniq: u64 = ch.query("SELECT uniqExact(event_id) FROM events").fetch_one().await.ok()?;
    let fin: u64 = ch.query("SELECT count() FROM events FINAL").fetch_one().await.ok()?;
    Some((uniq, fin))
}

/// `n` events of `kind` from `ip_prefix.{0..250}` with `ua`, one a
/// millisecond from `t_ms`.
fn stream(n: usize, ip_prefix: &str, ua: &str, kind: EventKind, t_ms: i64) -> Vec<RawEvent> {
    (0..n).map(|i| event(&format!("{ip_prefix}.{}", i % 250), Some(ua), "GET", kind, t_ms + i as i64)).collect()
}

/// Drops the test's ClickHouse database.
async fn drop_database(env: &Env) {
    env.ch
        .query("DROP DATABASE ?")
        .bind(clickhouse::sql::Identifier(&env.cfg.clickhouse.database))
        .execute()
        .await
        .unwrap();
}

async fn wait_rows(ch: &clickhouse::Client, n: u64, within: Duration) {
    eventually(within, &format!("{n} distinct events in ClickHouse"), || async {
        counts(ch).await.filter(|(u, _)| *u >= n).map(|_| ())
    })
    .await;
}

fn user_agents(n: usize) -> Vec<(String, String)> {
    let path = testkit::state_dir().join("data/user-agents.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} (deploy/local/up.sh installs it): {e}", path.display()));
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.iter()
        .take(n)
        .map(|v| (v["userAgent"].as_str().unwrap().to_string(), v["deviceCategory"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_enriched_and_written_to_clickhouse() {
    let env = env(None).await;
    let t = now_ms();
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let a = event("81.2.69.142", Some(iphone), "GET", EventKind::Click, t);
    let b = event("2001:218::1", Some(iphone), "HEAD", EventKind::View, t);
    let c = event(
        "89.160.20.128",
        Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        "GET",
        EventKind::View,
        t,
    );
    let mut d = event("216.160.83.56", Some(iphone), "GET", EventKind::View, t);
    d.keep_full_ip = true;
    d.consent = Consent::Granted;
    d.visitor_id = Some("0123456789abcdef0123456789abcdef".into());
    let uas = user_agents(600);
    let mut events = vec![a.clone(), b.clone(), c.clone(), d.clone()];
    for (i, (ua, _)) in uas.iter().enumerate() {
        events.push(event(&format!("81.2.69.{}", 140 + i % 4), Some(ua), "GET", EventKind::View, t + i as i64));
    }
    produce_events(&env.cfg.kafka.brokers, &env.cfg.kafka.raw_topic, &events).await;

    let ingest =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    wait_rows(&env.ch, events.len() as u64, Duration::from_secs(60)).await;

    let row = |id: uuid::Uuid| {
        let ch = env.ch.clone();
        async move {
            ch.query("SELECT ?fields FROM events FINAL WHERE event_id = ?")
                .bind(id.to_string())
                .fetch_one::<EventRow>()
                .await
                .unwrap()
        }
    };
    let ra = row(a.event_id).await;
    assert_eq!(
        (ra.country, ra.region.as_str(), ra.city.as_str(), ra.timezone.as_str()),
        (*b"GB", "England", "London", "Europe/London")
    );
    assert_eq!(ra.ip, "81.2.69.0", "anonymised /24");
    assert_eq!(
        (ra.device, ra.os.as_str(), ra.browser.as_str(), ra.vendor.as_str()),
        (DeviceCode::Mobile, "iPhone", "Safari", "Apple")
    );
    assert_eq!(
        (ra.is_bot, ra.platform.as_str(), ra.utm_source.as_str(), ra.ttclid.as_str()),
        (0, "spotify", "tiktok", "E.C.P.abc")
    );
    assert_eq!((ra.referrer_host.as_str(), ra.language.as_str(), ra.ts_ms), ("tiktok.com", "en", t as u64));
    assert_ne!(ra.visitor_hash, 0);
    let rb = row(b.event_id).await;
    assert_eq!((rb.country, rb.timezone.as_str(), rb.ip.as_str()), (*b"JP", "Asia/Tokyo", "2001:218::"));
    assert_eq!((rb.is_bot, rb.bot_reason.as_str(), rb.device), (1, "head_request", DeviceCode::Bot));
    let rc = row(c.event_id).await;
    assert_eq!((rc.country, rc.city.as_str()), (*b"SE", "Linköping"));
    assert_eq!((rc.is_bot, rc.bot_reason.as_str()), (1, "crawler_ua"));
    let rd = row(d.event_id).await;
    assert_eq!(
        (rd.ip.as_str(), rd.city.as_str(), rd.visitor_id.as_str()),
        ("216.160.83.56", "Milton", "0123456789abcdef0123456789abcdef")
    );

    // Real user agents from the npm `user-agents` dataset: the device class
    // agrees with the dataset's label for (nearly) all of them.
    let mut agree = 0;
    for (i, (_, label)) in uas.iter().enumerate() {
        let r = row(events[4 + i].event_id).await;
        let ours = match r.device {
            DeviceCode::Mobile => "mobile",
            DeviceCode::Desktop => "desktop",
            DeviceCode::Tablet => "tablet",
            _ => "other",
        };
        agree += usize::from(ours == label);
        assert!(!r.browser.is_empty() && !r.os.is_empty(), "browser and OS for {:?}", events[4 + i].user_agent);
    }
    let rate = agree as f64 / uas.len() as f64;
    eprintln!("device class agreement with the user-agents dataset: {:.1}%", rate * 100.0);
    assert!(rate >= 0.97, "device class agreement {rate}");
    // Rows show before ingest reads ClickHouse's answer: wait for its count.
    eventually(Duration::from_secs(30), "ingest counted every row written", || async {
        (ingest.metrics.written.get() == events.len() as u64).then_some(())
    })
    .await;
    // 604 events from 7 addresses: the GeoIP cache answered nearly all
    // (MaxMind's test file splits 81.2.69.0/24 finer: cached by address).
    let geo = |r: &str| ingest.metrics.geoip_cache.with_label_values(&[r]).get();
    assert_eq!(geo("hit") + geo("miss"), events.len() as u64, "every event's lookup is counted");
    assert!(geo("miss") <= 7 && geo("hit") >= 597, "hits {} misses {}", geo("hit"), geo("miss"));
    drop_database(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_goes_to_the_dead_letter_topic_and_the_rest_is_written() {
    let env = env(None).await;
    let t = now_ms();
    let good1 = event("81.2.69.142", Some("Mozilla/5.0"), "GET", EventKind::View, t);
    let good2 = event("81.2.69.142", Some("Mozilla/5.0"), "GET", EventKind::View, t + 1);
    let mut bad = event("81.2.69.142", Some("Mozilla/5.0"), "GET", EventKind::View, t);
    bad.tenant_id = "not-an-object-id".into();
    // One key: all on one partition, in this order.
    let key = "k".to_string();
    produce(
        &env.cfg.kafka.brokers,
        &env.cfg.kafka.raw_topic,
        vec![
            (key.clone(), serde_json::to_vec(&good1).unwrap()),
            (key.clone(), b"{\"v\":1,\"event_id\":".to_vec()),
            (key.clone(), serde_json::to_vec(&bad).unwrap()),
            (key.clone(), serde_json::to_vec(&good2).unwrap()),
        ],
    )
    .await;
    let ingest =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    wait_rows(&env.ch, 2, Duration::from_secs(60)).await;

    let (b, t) = (env.cfg.kafka.brokers.clone(), env.cfg.kafka.dead_letter_topic.clone());
    let dead = tokio::task::spawn_blocking(move || dead_letters(&b, &t, 2)).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["dlq-reason"], "parse_error");
    assert_eq!(dead[1]["dlq-reason"], "bad_id");
    assert_eq!(dead[0]["dlq-source-topic"], env.cfg.kafka.raw_topic);
    assert_eq!(dead[0]["dlq-source-offset"], "1");
    assert_eq!(dead[1]["dlq-source-offset"], "2");
    assert!(dead[1]["dlq-error"].contains("tenant_id"));
    assert!(dead[0]["value"].starts_with("{\"v\":1"), "kept as received");
    assert_eq!(ingest.metrics.dead_letter.with_label_values(&["parse_error"]).get(), 1);
    drop_database(&env).await;
}

/// Dead-letter records as header maps (plus `value`).
fn dead_letters(brokers: &str, topic: &str, n: usize) -> Vec<HashMap<String, String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        kafka_util::base_config(brokers, "dlq-reader").set("group.id", unique_name("dlq")).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let mut h: HashMap<String, String> = HashMap::new();
            if let Some(hs) = m.headers() {
                for hd in hs.iter() {
                    h.insert(hd.key.to_string(), String::from_utf8_lossy(hd.value.unwrap_or_default()).to_string());
                }
            }
            h.insert("value".into(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
            out.push(h);
        }
    }
    out
}

/// The ingest binary as a child process, killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_ingest(env: &Env) -> Proc {
    spawn_ingest_with(env, &[])
}

/// [`spawn_ingest`] with `extra` settings on top.
fn spawn_ingest_with(env: &Env, extra: &[(&str, &str)]) -> Proc {
    let c = &env.cfg;
    Proc(
        Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env("INGEST_ADMIN_LISTEN", "127.0.0.1:0")
            .env("INGEST_GROUP_ID", &c.group_id)
            .env("INGEST_GEOIP_DATABASES", &c.geoip_databases)
            .env("INGEST_BATCH_MAX_MS", "100")
            .env("INGEST_BATCH_MAX_ROWS", "500")
            // What production requires (common::config::Deployment).
            .env("INGEST_VISITOR_SECRET", "pipeline-test-visitor-secret-0123")
            .env("KAFKA_BROKERS", &c.kafka.brokers)
            .env("KAFKA_RAW_TOPIC", &c.kafka.raw_topic)
            .env("KAFKA_DEAD_LETTER_TOPIC", &c.kafka.dead_letter_topic)
            .env("CLICKHOUSE_URL", &c.clickhouse.url)
            .env("CLICKHOUSE_DATABASE", &c.clickhouse.database)
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest"),
    )
}

/// Issue #21: consumer-group rebalances under load. A second instance
/// joins while events stream in (the group's 6 partitions are split), then
/// the first leaves (the second takes them all); nothing is lost and each
/// event counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_joining_then_another_leaving_under_load_lose_nothing() {
    const N: usize = 12_000;
    let env = env(None).await;
    let t = now_ms();
    let events = stream(N, "203.0.113", "Mozilla/5.0 (X11; Linux x86_64)", EventKind::Click, t);
    let producer = tokio::spawn({
        let (b, topic) = (env.cfg.kafka.brokers.clone(), env.cfg.kafka.raw_topic.clone());
        async move {
            for chunk in events.chunks(N / 12) {
                produce_events(&b, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let first_stop = common::shutdown::CancellationToken::new();
    let first = ingest::start(env.cfg.clone(), prometheus::Registry::new(), first_stop.clone()).await.unwrap();
    eventually(Duration::from_secs(60), "the first instance writing", || async {
        (first.metrics.written.get() > 0).then_some(())
    })
    .await;
    let second =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    eventually(Duration::from_secs(60), "the second instance given partitions and writing", || async {
        (second.metrics.written.get() > 0).then_some(())
    })
    .await;
    first_stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), first.wait()).await.expect("the first instance leaves");
    producer.await.unwrap();
    wait_rows(&env.ch, N as u64, Duration::from_secs(120)).await;
    eventually(Duration::from_secs(30), "each event counted once", || async {
        counts(&env.ch).await.filter(|c| *c == (N as u64, N as u64))
    })
    .await;
    drop_database(&env).await;
}

/// Issue #21: the broker killed (SIGKILL) and restarted while events
/// stream in and ingest consumes them. Ingest rides out the outage
/// (fetches and commits fail, nothing is lost), resumes from the group's
/// committed offsets once the broker is back, and each event counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_under_load_loses_nothing() {
    const N: usize = 10_000;
    let mut kafka = tokio::task::spawn_blocking(KafkaInstance::start_new).await.unwrap();
    let brokers = kafka.brokers();
    let env = env_on(Some(&brokers), None).await;
    let events = stream(N, "198.51.100", "Mozilla/5.0 (X11; Linux x86_64)", EventKind::View, now_ms());
    let ingest =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = tokio::spawn({
        let (b, topic, produced) = (brokers.clone(), env.cfg.kafka.raw_topic.clone(), produced.clone());
        async move {
            // Acknowledged chunks: a chunk sent while the broker is down
            // waits in the producer's queue until it is back.
            for chunk in events.chunks(N / 20) {
                produce_events(&b, &topic, chunk).await;
                produced.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    eventually(Duration::from_secs(60), "ingest writing", || async {
        (ingest.metrics.written.get() >= (N / 10) as u64).then_some(())
    })
    .await;
    kafka = tokio::task::spawn_blocking(move || {
        kafka.kill();
        kafka
    })
    .await
    .unwrap();
    let (written_at_kill, produced_at_kill) =
        (ingest.metrics.written.get(), produced.load(std::sync::atomic::Ordering::SeqCst));
    eprintln!("broker killed with {produced_at_kill} of {N} produced, {written_at_kill} written");
    assert!(produced_at_kill < N, "killed under load, with events still to produce");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _kafka = tokio::task::spawn_blocking(move || {
        kafka.start();
        kafka
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(120), producer).await.expect("every chunk acknowledged").unwrap();
    wait_rows(&env.ch, N as u64, Duration::from_secs(120)).await;
    assert!(ingest.metrics.written.get() > written_at_kill, "the same instance resumed after the restart");
    eventually(Duration::from_secs(30), "each event counted once", || async {
        counts(&env.ch).await.filter(|c| *c == (N as u64, N as u64))
    })
    .await;
    drop_database(&env).await;
}

/// The offsets consumer group `group` has committed on `topic`, summed
/// over its partitions (a partition without a commit counts 0).
fn committed_offsets(brokers: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements().iter().map(|e| if let rdkafka::Offset::Offset(o) = e.offset() { o } else { 0 }).sum()
}

/// Issue #21: a crash after a batch is written and before its offsets are
/// committed (held open by `INGEST_COMMIT_DELAY_MS`). The next instance of
/// the group reads the batch's events again and writes them a second time
/// (duplicates really produced: counted from the committed offsets and
/// what each instance wrote); `FINAL` counts each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_a_write_and_its_commit_the_batch_is_written_again_and_counted_once() {
    const N: u64 = 3_000;
    const BATCH: u64 = 1_000;
    let env = env(None).await;
    let t = now_ms();
    let events = stream(N as usize, "192.0.2", "Mozilla/5.0 (X11; Linux x86_64)", EventKind::View, t);
    produce_events(&env.cfg.kafka.brokers, &env.cfg.kafka.raw_topic, &events).await;
    // Batches of 1000 rows (not closed by age), each committed 60 s after
    // its write: the first one stays written and uncommitted.
    let mut child = spawn_ingest_with(
        &env,
        &[("INGEST_BATCH_MAX_ROWS", "1000"), ("INGEST_BATCH_MAX_MS", "30000"), ("INGEST_COMMIT_DELAY_MS", "60000")],
    );
    wait_rows(&env.ch, BATCH, Duration::from_secs(60)).await;
    child.0.kill().expect("kill -9");
    child.0.wait().unwrap();
    let written_at_kill: u64 = env.ch.query("SELECT count() FROM events").fetch_one().await.unwrap();
    let (b, g, topic) = (env.cfg.kafka.brokers.clone(), env.cfg.group_id.clone(), env.cfg.kafka.raw_topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed_offsets(&b, &g, &topic)).await.unwrap();
    assert_eq!((written_at_kill, committed), (BATCH, 0), "killed with a batch written and its offsets not committed");

    let second =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    wait_rows(&env.ch, N, Duration::from_secs(120)).await;
    eventually(Duration::from_secs(30), "the new instance wrote every event after the committed offsets", || async {
        (second.metrics.written.get() >= N - committed as u64).then_some(())
    })
    .await;
    let duplicates = written_at_kill + second.metrics.written.get() - N;
    assert_eq!(duplicates, BATCH, "the uncommitted batch was written a second time");
    eventually(Duration::from_secs(30), "each event counted once", || async {
        counts(&env.ch).await.filter(|c| *c == (N, N))
    })
    .await;
    drop_database(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_mid_stream_and_a_restart_clickhouse_counts_exactly_n() {
    const N: usize = 20_000;
    let env = env(None).await;
    let t = now_ms();
    let events = stream(N, "198.51.100", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", EventKind::View, t);
    let mut child = spawn_ingest(&env);
    // Stream the events while ingest runs, and kill it in the middle.
    let (b, topic, first_half) =
        (env.cfg.kafka.brokers.clone(), env.cfg.kafka.raw_topic.clone(), events[..N / 2].to_vec());
    produce_events(&b, &topic, &first_half).await;
    eventually(Duration::from_secs(60), "some rows written", || async {
        counts(&env.ch).await.filter(|(u, _)| *u >= 1000).map(|_| ())
    })
    .await;
    let producer = tokio::spawn({
        let (b, topic, rest) = (b.clone(), topic.clone(), events[N / 2..].to_vec());
        async move { produce_events(&b, &topic, &rest).await }
    });
    child.0.kill().expect("kill -9");
    child.0.wait().unwrap();
    let (written_at_kill, _) = counts(&env.ch).await.unwrap();
    eprintln!("killed with {written_at_kill} of {N} events written");
    assert!((written_at_kill as usize) < N, "killed mid-stream");
    producer.await.unwrap();
    let _child = spawn_ingest(&env);
    wait_rows(&env.ch, N as u64, Duration::from_secs(120)).await;
    // Redelivered events may have been written twice: FINAL sees them once.
    eventually(Duration::from_secs(30), "exactly N", || async {
        counts(&env.ch).await.filter(|c| *c == (N as u64, N as u64))
    })
    .await;
    let raw_rows: u64 = env.ch.query("SELECT count() FROM events").fetch_one().await.unwrap();
    eprintln!("raw rows before merges: {raw_rows} (duplicates from redelivery: {})", raw_rows - N as u64);

    // Redeliver everything: a new consumer group reads the topic from the
    // start into the same table. Rows are written twice; counts stay N.
    let mut again = env.cfg.clone();
    again.group_id = unique_name("redeliver");
    let second =
        ingest::start(again, prometheus::Registry::new(), common::shutdown::CancellationToken::new()).await.unwrap();
    eventually(Duration::from_secs(120), "the whole topic redelivered", || async {
        (second.metrics.written.get() >= N as u64).then_some(())
    })
    .await;
    let raw_rows: u64 = env.ch.query("SELECT count() FROM events").fetch_one().await.unwrap();
    // Between N and 2N raw rows, depending on how far background merges got.
    eprintln!("raw rows after redelivering everything: {raw_rows}");
    assert!(raw_rows >= N as u64);
    assert_eq!(counts(&env.ch).await.unwrap(), (N as u64, N as u64), "duplicates never count twice");
    drop_database(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_stopped_for_30s_and_ingest_restarted_meanwhile_nothing_is_lost() {
    const N: usize = 2_000;
    let mut clickhouse = tokio::task::spawn_blocking(ClickHouseInstance::start_new).await.unwrap();
    let env = env(Some(clickhouse.url())).await;
    let t = now_ms();
    let events = stream(N, "203.0.113", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)", EventKind::Click, t);
    let first_stop = common::shutdown::CancellationToken::new();
    let ingest = ingest::start(env.cfg.clone(), prometheus::Registry::new(), first_stop.clone()).await.unwrap();
    produce_events(&env.cfg.kafka.brokers, &env.cfg.kafka.raw_topic, &events[..N / 2]).await;
    wait_rows(&env.ch, (N / 2) as u64, Duration::from_secs(60)).await;
    // The rows are visible as soon as ClickHouse commits the part, a moment
    // before ingest reads the answer: a kill in between fails a write that
    // landed (CI saw it). Kill only once ingest has counted the write.
    eventually(Duration::from_secs(30), "ingest counted the first half written", || async {
        (ingest.metrics.written.get() >= (N / 2) as u64).then_some(())
    })
    .await;

    clickhouse = tokio::task::spawn_blocking(move || {
        clickhouse.kill();
        clickhouse
    })
    .await
    .unwrap();
    produce_events(&env.cfg.kafka.brokers, &env.cfg.kafka.raw_topic, &events[N / 2..]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        ingest.metrics.clickhouse_errors.with_label_values(&["network"]).get() > 0,
        "writes were attempted and failed"
    );
    assert!(!ingest.health.is_ready(), "readiness reports the outage");
    assert_eq!(ingest.metrics.written.get(), (N / 2) as u64, "nothing written while down");

    // Issue #21: ingest restarted during the outage. The stopping instance
    // cannot write what it holds, so it commits nothing of it; the next one
    // (same consumer group) reads those events again.
    first_stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), ingest.wait()).await.expect("ingest stops during the outage");
    let ingest =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    eventually(Duration::from_secs(60), "the new instance tries to write", || async {
        (ingest.metrics.clickhouse_errors.with_label_values(&["network"]).get() > 0).then_some(())
    })
    .await;

    let _clickhouse = tokio::task::spawn_blocking(move || {
        clickhouse.start();
        clickhouse
    })
    .await
    .unwrap();
    wait_rows(&env.ch, N as u64, Duration::from_secs(60)).await;
    assert_eq!(counts(&env.ch).await.unwrap(), (N as u64, N as u64));
    assert!(ingest.metrics.written.get() >= (N - N / 2) as u64, "the restarted instance wrote the outage's events");
    assert!(ingest.health.is_ready());
}

/// Issue #19: engagement beacons go to `engagements` (never `events`),
/// filed at their view's time; a page reporting twice counts once; a
/// bot's beacon is flagged; one without its report is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_beacons_are_written_to_their_table_once_per_view() {
    let env = env(None).await;
    let t = now_ms();
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15";
    let view = event("81.2.69.142", Some(iphone), "GET", EventKind::View, t - 60_000);
    let bot_view = event("81.2.69.143", Some(iphone), "GET", EventKind::View, t - 30_000);
    let beacon = |view: &RawEvent, ua: &str, ms: u32, clicked: bool, at: i64| {
        let mut e = event("81.2.69.142", Some(ua), "POST", EventKind::Engagement, at);
        e.platform = None;
        e.consent = Consent::Granted;
        e.engagement = Some(schemas::event::Engagement {
            view_id: view.event_id,
            view_ts_ms: view.ts_ms,
            visible_ms: ms,
            clicked,
            consented_on_page: false,
        });
        e
    };
    let first = beacon(&view, iphone, 4_000, false, t);
    let again = beacon(&view, iphone, 9_000, true, t + 1_000);
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let bot = beacon(&bot_view, googlebot, 1, false, t + 2_000);
    let mut bad = beacon(&view, iphone, 1, false, t);
    bad.engagement = None;
    let all = [view.clone(), bot_view.clone(), first, again, bot, bad];
    produce_events(&env.cfg.kafka.brokers, &env.cfg.kafka.raw_topic, &all).await;
    let ingest =
        ingest::start(env.cfg.clone(), prometheus::Registry::new(), common::shutdown::CancellationToken::new())
            .await
            .unwrap();
    wait_rows(&env.ch, 2, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(30), "views and beacons written", || async {
        (ingest.metrics.written.get() == 5).then_some(())
    })
    .await;
    let rows: Vec<schemas::clickhouse::EngagementRow> =
        env.ch.query("SELECT ?fields FROM engagements FINAL ORDER BY is_bot").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2, "one row per view: {rows:?}");
    let r = &rows[0];
    assert_eq!((r.view_event_id, r.ts, r.is_bot), (view.event_id, (view.ts_ms / 1000) as u32, 0), "filed at the view");
    assert!([(4_000, 0), (9_000, 1)].contains(&(r.visible_ms, r.clicked)), "{r:?}");
    assert_eq!((rows[1].view_event_id, rows[1].is_bot), (bot_view.event_id, 1));
    assert_eq!(counts(&env.ch).await, Some((2, 2)), "events holds the views only");
    assert_eq!(ingest.metrics.dead_letter.with_label_values(&["bad_engagement"]).get(), 1);
    drop_database(&env).await;
}
