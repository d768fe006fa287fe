//! `migrate`: creates the Kafka topics, ClickHouse tables and MongoDB indexes
//! the pipeline needs, idempotently. Settings from the environment
//! (`migrate::MigrateConfig`); exits non-zero on failure.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = migrate::MigrateConfig::init_from_env().context("reading migrate config from the environment")?;
    tracing::info!(config = ?cfg, "migrating");
    let report = migrate::run(&cfg).await.context("migration failed")?;
    for t in &report.topics {
        println!(
            "kafka       topic {} ({} partitions) {}",
            t.name,
            t.partitions,
            if t.created { "created" } else { "exists" }
        );
    }
    println!("clickhouse  {}: tables {}", cfg.clickhouse.database, report.clickhouse_tables.join(", "));
    println!(
        "mongodb     {}: {} indexes ({})",
        cfg.mongo.database,
        report.mongo_indexes.len(),
        report.mongo_indexes.join(", ")
    );
    Ok(())
}
