//! Issue #15: of several aggregators exactly one rolls (the MongoDB leader
//! lease, `common::mongo::Lease`). The lease's rules on the real MongoDB-wire
//! server (one holder; renewal; an expired holder replaced; release), then
//! two aggregators on the same stores: one leads and rolls, the other
//! stands by; the leader stops and the standby takes over and rolls what
//! arrives next.

// Helpers of an integration test fail the test by panicking, like its asserts.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bson::{doc, oid::ObjectId, Document};
use common::mongo::Lease;
use envconfig::Envconfig;
use schemas::clickhouse::{EventRow, KindCode, EVENTS_TABLE};
use schemas::mongo::{collections, Rollup};
use support::{metric, migrated, now_s};
use testkit::{eventually, unique_name};

#[tokio::test]
async fn one_holder_renewal_expiry_and_release() {
    let name = unique_name("lease");
    let mut cfg = aggregator::Config::init_from_env().unwrap();
    cfg.mongo.database = name.clone();
    let db = cfg.mongo.database().await.unwrap();
    let coll = db.collection::<Document>(collections::LEASES);
    let a = Lease::new(coll.clone(), "aggregator", Duration::from_millis(1500));
    let b = Lease::new(coll.clone(), "aggregator", Duration::from_millis(1500));
    assert!(a.hold().await.unwrap(), "a free lease is taken");
    assert!(!b.hold().await.unwrap(), "a held lease is not");
    assert!(a.hold().await.unwrap(), "its holder renews it");
    // Renewed, a lease outlives its first TTL.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(a.hold().await.unwrap());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!b.hold().await.unwrap(), "renewed 0.9 s ago: still a's");
    // A holder that stops renewing (died, stalled) is replaced after the TTL.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(b.hold().await.unwrap(), "expired: b takes it");
    assert!(!a.hold().await.unwrap(), "and a, back, has lost it");
    // A clean stop hands it over at once.
    b.release().await.unwrap();
    assert!(a.hold().await.unwrap(), "released: taken at the next try");
    a.release().await.unwrap();
    b.release().await.unwrap(); // not b's: nothing happens
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 0);
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_one_rolls_the_standby_takes_over() {
    let name = unique_name("agg_lease");
    let (cfg, mongo, ch) = migrated(&name, |c| c.lease_secs = 3).await;
    let tenant = ObjectId::new().to_hex();
    let link = ObjectId::new().to_hex();
    let now = now_s();
    let today = now / 86_400 * 86_400;
    let recent = now.saturating_sub(60).max(today);
    let insert = |from: u64, n: u64| {
        let (ch, tenant, link) = (ch.clone(), tenant.clone(), link.clone());
        async move {
            let mut ins = ch.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
            for i in from..from + n {
                ins.write(&EventRow::minimal(
                    uuid::Uuid::now_v7(),
                    KindCode::View,
                    recent,
                    &tenant,
                    &link,
                    i,
                    i,
                    now_s(),
                ))
                .await
                .unwrap();
            }
            ins.end().await.unwrap();
        }
    };
    let daily = || async {
        let id = rollup::rollup_id(&tenant, "", today);
        let r = mongo.collection::<Rollup>(collections::ANALYTICS_DAILY).find_one(doc! { "_id": id }).await.ok()??;
        Some(r.metrics.total_views)
    };

    let (stop_a, stop_b) = (common::shutdown::CancellationToken::new(), common::shutdown::CancellationToken::new());
    let a = aggregator::start(cfg.clone(), prometheus::Registry::new(), stop_a.clone()).await.unwrap();
    eventually(Duration::from_secs(10), "a leads", || async {
        (metric(a.admin_addr, "aggregator_leader ").await == Some(1.0)).then_some(())
    })
    .await;
    let b = aggregator::start(cfg.clone(), prometheus::Registry::new(), stop_b.clone()).await.unwrap();
    insert(0, 10).await;
    eventually(Duration::from_secs(30), "a rolls the first events", || async {
        (daily().await == Some(10)).then_some(())
    })
    .await;
    // b stands by: ready, not leading, never ran a pass.
    assert_eq!(metric(b.admin_addr, "aggregator_leader ").await, Some(0.0));
    assert_eq!(metric(b.admin_addr, "aggregator_last_success_seconds ").await, Some(0.0), "b never ran a pass");
    let ready = reqwest::get(format!("http://{}/readyz", b.admin_addr)).await.unwrap().status();
    assert!(ready.is_success(), "a standby is ready");

    // The leader stops (a rolling restart): b takes over and rolls what comes next.
    stop_a.cancel();
    a.wait().await;
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(10), "b leads", || async {
        (metric(b.admin_addr, "aggregator_leader ").await == Some(1.0)).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "a released lease is taken at the standby's next try ({took:?})");
    insert(10, 5).await;
    eventually(Duration::from_secs(30), "b rolls the later events", || async {
        (daily().await == Some(15)).then_some(())
    })
    .await;
    assert!(metric(b.admin_addr, "aggregator_last_success_seconds ").await.unwrap() > 0.0, "b ran the passes");
    stop_b.cancel();
    b.wait().await;
    let _ = ch.query("DROP DATABASE IF EXISTS ?").bind(clickhouse::sql::Identifier(&name)).execute().await;
    mongo.drop().await.unwrap();
}
