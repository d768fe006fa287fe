//! Issue #15: the DDL's cluster mode on a real ClickHouse cluster (one shard
//! of two replicas and ZooKeeper, `deploy/cluster/up.sh`), run by
//! `deploy/cluster/test.sh` (ignored by the local test command, which has no
//! cluster): the previous schema upgraded in place on every replica without
//! losing rows, duplicates collapsing under `FINAL` through the
//! `Distributed` table, the written-rows view fed on the replica that took
//! the insert and replicated, and a delete mutation `ON CLUSTER` awaited on
//! every replica.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use common::config::ClickHouseConfig;
use envconfig::Envconfig;
use schemas::clickhouse::{EventRow, KindCode, Topology, EVENTS_TABLE, MIGRATIONS, MIGRATIONS_TABLE};
use testkit::{eventually, unique_name};
use uuid::Uuid;

/// Replica r1 (where `migrate` and the inserts go) and r2.
fn replicas(db: &str) -> (ClickHouseConfig, clickhouse::Client) {
    let mut c = ClickHouseConfig::init_from_env().unwrap();
    c.url = std::env::var("CLUSTER_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8124".into());
    c.cluster = "smartlinks".into();
    c.database = db.into();
    let mut r2 = c.clone();
    r2.url = std::env::var("CLUSTER_CLICKHOUSE_URL_2").unwrap_or_else(|_| "http://127.0.0.1:8125".into());
    (c, r2.client())
}

async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one().await.unwrap()
}

#[tokio::test]
#[ignore = "needs the loopback cluster: deploy/cluster/test.sh"]
async fn cluster_schema_upgrades_in_place_dedups_and_mutates_every_replica() {
    let db = unique_name("t_cluster");
    let (cfg, r2) = replicas(&db);
    let r1 = cfg.client();
    let topology = cfg.topology();
    assert_eq!(topology, Topology::Cluster("smartlinks".into()));

    // The previous schema (no migration applied), with rows, on both replicas.
    let rows = 1000u64;
    support::previous_schema_with_events(&r1, &db, &topology, rows).await;
    // Synchronous through Distributed: r1's local table has them at once; r2 by replication.
    assert_eq!(count(&r1, &format!("SELECT count() FROM {db}.events_local")).await, rows);
    eventually(Duration::from_secs(30), "replication to r2", || async {
        (count(&r2, &format!("SELECT count() FROM {db}.events_local")).await == rows).then_some(())
    })
    .await;

    let tables = migrate::apply_clickhouse(&cfg).await.expect("upgrade on the cluster");
    assert!(tables.contains(&"events_local".to_string()) && tables.contains(&"events".to_string()), "{tables:?}");
    for (name, client) in [("r1", &r1), ("r2", &r2)] {
        for table in ["events", "events_local"] {
            let has: u64 = client
                .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name IN ('rule_id', 'variant')")
                .bind(&db)
                .bind(table)
                .fetch_one()
                .await
                .unwrap();
            assert_eq!(has, 2, "{name} {table} has the migrated columns");
        }
        let kept =
            count(client, &format!("SELECT countIf(platform = 'spotify' AND rule_id = '') FROM {db}.{EVENTS_TABLE}"))
                .await;
        assert_eq!(kept, rows, "{name}: every row kept, the new column empty");
    }
    // Read on r2 once replication brought the log there (a read through
    // Distributed may go to a replica a moment behind the one written).
    let want: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    eventually(Duration::from_secs(30), "the migrations log on r2", || async {
        let recorded: Vec<u32> = r2
            .query(&format!("SELECT version FROM {db}.{MIGRATIONS_TABLE}_local FINAL ORDER BY version"))
            .fetch_all()
            .await
            .unwrap();
        (recorded == want).then_some(())
    })
    .await;
    assert!(migrate::apply_migrations(&r1, &db, &topology).await.unwrap().is_empty(), "up to date");

    // A redelivered event counts once under FINAL, read on the other
    // replica. (The second batch differs from the first, as a redelivered
    // batch does: an identical block would be dropped by the replicated
    // table's own insert deduplication before FINAL is needed.)
    let row = |id| EventRow::minimal(id, KindCode::View, 1_763_700_005, "t2", "l2", 1, 1, 1_763_700_006);
    let (first, other) = (Uuid::now_v7(), Uuid::now_v7());
    for batch in [vec![row(first)], vec![row(first), row(other)]] {
        let mut ins = r1.clone().with_database(&db).insert::<EventRow>(EVENTS_TABLE).await.unwrap();
        for r in &batch {
            ins.write(r).await.unwrap();
        }
        ins.end().await.unwrap();
    }
    eventually(Duration::from_secs(30), "both batches replicated", || async {
        (count(&r2, &format!("SELECT count() FROM {db}.events_local WHERE tenant_id = 't2'")).await == 3).then_some(())
    })
    .await;
    assert_eq!(count(&r2, &format!("SELECT count() FROM {db}.{EVENTS_TABLE} FINAL WHERE tenant_id = 't2'")).await, 2);
    // The written-rows view fired where the inserts landed; replication brings its rows to r2.
    eventually(Duration::from_secs(30), "events_written on r2", || async {
        (count(&r2, &format!("SELECT sum(rows) FROM {db}.events_written")).await == rows + 3).then_some(())
    })
    .await;

    // A delete mutation on the local tables ON CLUSTER, done on every replica.
    r1.query(&format!("ALTER TABLE {} DELETE WHERE tenant_id = 't'", topology.mutation_target(&db, EVENTS_TABLE)))
        .execute()
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "the mutation done on every replica", || async {
        let pending = count(
            &r1,
            &format!("SELECT count() FROM {} WHERE database = '{db}' AND is_done = 0", topology.mutations_source()),
        )
        .await;
        (pending == 0).then_some(())
    })
    .await;
    for client in [&r1, &r2] {
        assert_eq!(count(client, &format!("SELECT count() FROM {db}.events_local WHERE tenant_id = 't'")).await, 0);
    }
    r1.query(&format!("DROP DATABASE IF EXISTS {db} ON CLUSTER smartlinks")).execute().await.unwrap();
}
