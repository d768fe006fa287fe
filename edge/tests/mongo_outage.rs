//! Issue #21: the edge keeps serving its last snapshot while MongoDB is
//! down (claimed in `edge/src/cache.rs`). The edge reaches the real
//! MongoDB-wire server through a TCP proxy the test cuts: every open
//! connection dropped, new ones refused. Landing pages and redirects keep
//! answering and their events reach Kafka; `/readyz` says degraded and
//! `edge_cache_age_seconds` grows; a link written meanwhile appears once
//! MongoDB is back.

mod common_env;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common_env::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to `target` that can be cut (connections dropped, new ones
/// closed at once) and restored.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (up2, cuts2) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let mut cut = cuts2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_its_last_snapshot_while_mongodb_is_down() {
    let brokers = shared_brokers();
    let mut env = env(&brokers).await;
    let host = "links.outage.test";
    let client = insert_client(&env.db, host).await;
    insert_link(&env.db, &client, "before", "Before", "https://open.spotify.com/track/BEFORE").await;

    // The edge talks to MongoDB through the proxy, with short timeouts.
    // `mongodb://host:port/...` of the local stack (no credentials, one host).
    let uri = env.cfg.mongo.uri.expose().to_string();
    let hostport = uri.trim_start_matches("mongodb://").split(['/', '?']).next().unwrap_or_default().to_string();
    let target: SocketAddr = tokio::net::lookup_host(hostport.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("MongoDB address of {uri}"));
    let proxy = Proxy::start(target).await;
    env.cfg.mongo.uri =
        format!("mongodb://{}/?serverSelectionTimeoutMS=500&connectTimeoutMS=500&directConnection=true", proxy.addr)
            .into();
    env.cfg.cache_refresh_ms = 200;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.expect("edge");
    wait_status(edge.addr, host, "/before", 200, Duration::from_secs(10)).await;

    proxy.cut();
    // The refresher notices: degraded, and the snapshot ages.
    testkit::eventually(Duration::from_secs(20), "the cache to report its age", || async {
        (try_metric(edge.admin_addr, "edge_cache_age_seconds").await? >= 2.0).then_some(())
    })
    .await;
    let ready = http().get(format!("http://{}/readyz", edge.admin_addr)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "degraded still serves");
    let body = ready.text().await.expect("readyz body");
    assert!(body.contains("degraded") && body.contains("cache"), "{body}");

    // Written while the edge cannot see MongoDB.
    insert_link(&env.db, &client, "during", "During", "https://open.spotify.com/track/DURING").await;
    let c = http();
    for _ in 0..10 {
        let page = c.get(format!("http://{}/before", edge.addr)).header("host", host).send().await.expect("page");
        assert_eq!(page.status(), 200);
        assert!(page.text().await.expect("html").contains("Before"));
        let go = c.get(format!("http://{}/before/spotify", edge.addr)).header("host", host).send().await.expect("go");
        assert_eq!(go.status(), 302);
        assert_eq!(go.headers()["location"], "https://open.spotify.com/track/BEFORE");
    }
    let unseen = c.get(format!("http://{}/during", edge.addr)).header("host", host).send().await.expect("during");
    assert_eq!(unseen.status(), 404, "MongoDB really is out of reach");
    // The view that found the link before the cut, and the outage's 20.
    let produced = events(&brokers, &env.cfg.kafka.raw_topic, 21).await;
    assert_eq!(
        produced.iter().filter(|e| e.slug == "before").count(),
        21,
        "every view and click of the outage reached Kafka"
    );

    proxy.restore();
    wait_status(edge.addr, host, "/during", 200, Duration::from_secs(20)).await;
    testkit::eventually(Duration::from_secs(10), "the cache age back to fresh", || async {
        (try_metric(edge.admin_addr, "edge_cache_age_seconds").await? < 2.0).then_some(())
    })
    .await;
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.expect("drop database");
}
