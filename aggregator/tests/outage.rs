//! Issue #21: the aggregator's loop (watermark, overlap, passes) with
//! ClickHouse down and back. On its own ClickHouse server, stopped after a
//! first roll: the loop keeps running, counts each failed pass, does not
//! claim success (`aggregator_last_success_seconds` stays), and once the
//! server is back it rolls what arrived meanwhile, a late day included,
//! to the exact totals.

// Helpers of an integration test fail the test by panicking, like its asserts.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bson::{doc, oid::ObjectId};
use schemas::clickhouse::{EventRow, KindCode, EVENTS_TABLE};
use schemas::mongo::{collections, Rollup};
use support::{metric, migrated, now_s};
use testkit::{eventually, unique_name, ClickHouseInstance};

async fn daily_views(mongo: &mongodb::Database, tenant: &str, day: u32) -> Option<(i64, i64)> {
    let id = rollup::rollup_id(tenant, "", day);
    let r = mongo.collection::<Rollup>(collections::ANALYTICS_DAILY).find_one(doc! { "_id": id }).await.ok()??;
    Some((r.metrics.total_views, r.metrics.total_clicks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_survives_clickhouse_down_and_rolls_what_arrived_meanwhile() {
    let mut clickhouse = tokio::task::spawn_blocking(ClickHouseInstance::start_new).await.unwrap();
    let name = unique_name("agg_outage");
    let (cfg, mongo, ch) = migrated(&name, |c| c.clickhouse.url = clickhouse.url()).await;
    let insert = |rows: Vec<EventRow>| {
        let ch = ch.clone();
        async move {
            let mut ins = ch.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
            for r in &rows {
                ins.write(r).await.unwrap();
            }
            ins.end().await.unwrap();
        }
    };
    let tenant = ObjectId::new().to_hex();
    let link = ObjectId::new().to_hex();
    let ev = |kind, ts: u32, n: u64| EventRow::minimal(uuid::Uuid::now_v7(), kind, ts, &tenant, &link, n, n, now_s());
    let now = now_s();
    let (today, yesterday) = (now / 86_400 * 86_400, now / 86_400 * 86_400 - 86_400);
    // Early in the UTC day the "recent" events could fall before midnight: keep them in today.
    let recent = now.saturating_sub(60).max(today);

    let shutdown = common::shutdown::CancellationToken::new();
    let agg = aggregator::start(cfg.clone(), prometheus::Registry::new(), shutdown.clone()).await.unwrap();
    insert((0..10).map(|i| ev(KindCode::View, recent, i)).collect()).await;
    eventually(Duration::from_secs(60), "the first roll", || async {
        (daily_views(&mongo, &tenant, today).await == Some((10, 0))).then_some(())
    })
    .await;

    clickhouse = tokio::task::spawn_blocking(move || {
        clickhouse.kill();
        clickhouse
    })
    .await
    .unwrap();
    let failed = r#"aggregator_errors_total{kind="clickhouse"}"#;
    eventually(Duration::from_secs(30), "failed passes counted", || async {
        (metric(agg.admin_addr, failed).await? >= 3.0).then_some(())
    })
    .await;
    let last_ok = metric(agg.admin_addr, "aggregator_last_success_seconds ").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metric(agg.admin_addr, "aggregator_last_success_seconds ").await, Some(last_ok), "no success claimed");

    clickhouse = tokio::task::spawn_blocking(move || {
        clickhouse.start();
        clickhouse
    })
    .await
    .unwrap();
    // What ingest writes once ClickHouse is back: today's and a late day's.
    let mut rows: Vec<EventRow> = (10..15).map(|i| ev(KindCode::View, recent, i)).collect();
    rows.extend((0..3).map(|i| ev(KindCode::Click, recent, i)));
    rows.extend((20..24).map(|i| ev(KindCode::View, yesterday + 3600, i)));
    eventually(Duration::from_secs(60), "ClickHouse back", || {
        let probe = ch.clone();
        async move { probe.query("SELECT 1").fetch_one::<u8>().await.ok() }
    })
    .await;
    insert(rows).await;
    eventually(Duration::from_secs(60), "the rolls after the outage", || async {
        let both = (daily_views(&mongo, &tenant, today).await?, daily_views(&mongo, &tenant, yesterday).await?);
        (both == ((15, 3), (4, 0))).then_some(())
    })
    .await;
    // The pass that mirrored them ends after its documents are visible.
    eventually(Duration::from_secs(30), "a pass succeeding again", || async {
        (metric(agg.admin_addr, "aggregator_last_success_seconds ").await? > last_ok).then_some(())
    })
    .await;

    shutdown.cancel();
    agg.wait().await;
    mongo.drop().await.unwrap();
    drop(clickhouse);
}
