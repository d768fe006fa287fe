//! `sweep`: drops what earlier test runs left on the local stack — Kafka
//! topics, MongoDB databases and ClickHouse databases whose name ends in a
//! [`testkit::unique_name`] suffix (`_` + 12 hex digits). Integration tests
//! make one of each per test and never drop them, so a long-lived machine
//! piles up thousands (Kafka then took a minute to start on 1,800
//! partitions, FerretDB held 2.3 GB). Names without that suffix (the demo's
//! `smartlinks` database and topics) are never touched.
//!
//! `deploy/local/test.sh` runs it before `cargo test`. Do not run it while
//! tests run: it drops their databases under them.
//!
//! Configured like the stages ([`common::config`]: `KAFKA_BROKERS`,
//! `MONGODB_URI`, `CLICKHOUSE_URL`..., defaults on loopback). Prints what
//! it dropped per engine; exits 1 when an engine could not be swept.

use std::time::Duration;

use common::config::{ClickHouseConfig, KafkaConfig, MongoConfig};
use envconfig::Envconfig;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

async fn sweep_kafka(brokers: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = kafka_util::base_config(brokers, "smartlinks-sweep").create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    let names: Vec<String> =
        metadata.topics().iter().map(|t| t.name().to_string()).filter(|n| testkit::is_unique_name(n)).collect();
    let admin: AdminClient<DefaultClientContext> = kafka_util::base_config(brokers, "smartlinks-sweep").create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let mut dropped = 0;
    for chunk in names.chunks(200) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        dropped += admin.delete_topics(&refs, &opts).await?.into_iter().filter(Result::is_ok).count();
    }
    Ok(dropped)
}

async fn sweep_mongo(cfg: &MongoConfig) -> anyhow::Result<usize> {
    let client = cfg.database().await?.client().clone();
    let mut dropped = 0;
    for name in client.list_database_names().await? {
        if testkit::is_unique_name(&name) {
            client.database(&name).drop().await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

async fn sweep_clickhouse(cfg: &ClickHouseConfig) -> anyhow::Result<usize> {
    let client = cfg.client();
    let names: Vec<String> = client.query("SELECT name FROM system.databases").fetch_all().await?;
    let mut dropped = 0;
    for name in names.into_iter().filter(|n| testkit::is_unique_name(n)) {
        client.query(&format!("DROP DATABASE IF EXISTS `{name}`")).execute().await?;
        dropped += 1;
    }
    Ok(dropped)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (kafka, mongo, clickhouse) =
        (KafkaConfig::init_from_env()?, MongoConfig::init_from_env()?, ClickHouseConfig::init_from_env()?);
    let mut failed = false;
    let report = |engine: &str, r: anyhow::Result<usize>, failed: &mut bool| match r {
        Ok(n) => println!("sweep: {engine}: dropped {n} test leftovers"),
        Err(e) => {
            eprintln!("sweep: {engine}: {e:#}");
            *failed = true;
        }
    };
    report("kafka topics", sweep_kafka(&kafka.brokers).await, &mut failed);
    report("mongodb databases", sweep_mongo(&mongo).await, &mut failed);
    report("clickhouse databases", sweep_clickhouse(&clickhouse).await, &mut failed);
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
