//! `migrate`: applies the shared contract of [`schemas`] to the real engines,
//! idempotently, so it runs at every `deploy/local/up.sh` and before every
//! deployment:
//! 1. Kafka topics with their partition counts ([`schemas::topics`]);
//! 2. ClickHouse database and tables ([`schemas::clickhouse::ddl`]);
//! 3. MongoDB indexes ([`schemas::mongo::INDEXES`]), which also creates
//!    the collections.
//!
//! Engines that were just started may refuse connections for a moment: each
//! step is retried with exponential backoff until [`MigrateConfig::timeout_secs`].

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use envconfig::Envconfig;
use mongodb::bson::Document;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use common::config::{ClickHouseConfig, KafkaConfig, MongoConfig};
use kafka_util::{ensure_topics, TopicError, TopicOutcome};

/// Settings of the `migrate` command.
#[derive(Envconfig, Clone, Debug)]
pub struct MigrateConfig {
    /// Kafka brokers and topic names.
    #[envconfig(nested)]
    pub kafka: KafkaConfig,
    /// ClickHouse endpoint and database.
    #[envconfig(nested)]
    pub clickhouse: ClickHouseConfig,
    /// MongoDB URI and database.
    #[envconfig(nested)]
    pub mongo: MongoConfig,
    /// `MIGRATE_TIMEOUT_SECS`: how long each step retries an unreachable
    /// engine, in seconds. Default 60.
    #[envconfig(from = "MIGRATE_TIMEOUT_SECS", default = "60")]
    pub timeout_secs: u64,
}

/// Errors of a migration step, after retries.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Topic creation failed.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// A DDL statement failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// Index creation failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// What a migration did, for the log and the console.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One outcome per topic.
    pub topics: Vec<TopicOutcome>,
    /// Tables of the ClickHouse database after the DDL.
    pub clickhouse_tables: Vec<String>,
    /// `collection.index` names present after the run.
    pub mongo_indexes: Vec<String>,
}

fn backoff(timeout_secs: u64) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(Duration::from_secs(timeout_secs)))
        .without_max_times()
}

/// Runs the three steps in order; stops at the first that fails after retries.
pub async fn run(cfg: &MigrateConfig) -> Result<Report, MigrateError> {
    let specs = cfg.kafka.topic_names().specs(cfg.kafka.replication);
    let topics = (|| ensure_topics(&cfg.kafka.brokers, &specs))
        .retry(backoff(cfg.timeout_secs))
        .when(|e| matches!(e, TopicError::Kafka(_)))
        .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "kafka not ready"))
        .await?;
    let clickhouse_tables = (|| apply_clickhouse(&cfg.clickhouse))
        .retry(backoff(cfg.timeout_secs))
        .when(is_network_error)
        .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "clickhouse not ready"))
        .await?;
    let db = cfg.mongo.database().await?;
    let mongo_indexes = (|| apply_mongo_indexes(&db))
        .retry(backoff(cfg.timeout_secs))
        .when(|e| {
            matches!(*e.kind, mongodb::error::ErrorKind::ServerSelection { .. } | mongodb::error::ErrorKind::Io(_))
        })
        .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "mongodb not ready"))
        .await;
    // Closed before the runtime ends: a pool still working when it is torn
    // down makes the driver panic at exit.
    db.client().clone().shutdown().await;
    Ok(Report { topics, clickhouse_tables, mongo_indexes: mongo_indexes? })
}

fn is_network_error(e: &clickhouse::error::Error) -> bool {
    matches!(e, clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut)
}

/// Runs every statement of [`schemas::clickhouse::ddl`] for the configured
/// database, then the [`schemas::clickhouse::MIGRATIONS`] it has not
/// recorded ([`apply_migrations`]), and returns the database's tables.
pub async fn apply_clickhouse(cfg: &ClickHouseConfig) -> Result<Vec<String>, clickhouse::error::Error> {
    let client = cfg.client();
    let topology = cfg.topology();
    for stmt in schemas::clickhouse::ddl(&cfg.database, &topology) {
        client.query(&stmt).execute().await?;
    }
    apply_migrations(&client, &cfg.database, &topology).await?;
    client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&cfg.database)
        .fetch_all::<String>()
        .await
}

/// Applies, in order, every migration of [`schemas::clickhouse::MIGRATIONS`]
/// above the highest version recorded in `database`'s
/// [`schemas::clickhouse::MIGRATIONS_TABLE`], recording each once its steps
/// ran; returns the versions applied now (empty when up to date). A step
/// whose effect is already there (a column added by a run that stopped
/// before recording) is skipped, so a rerun is safe. Concurrent runs are
/// not locked against each other: deployments run `migrate` once, before
/// the stages.
pub async fn apply_migrations(
    client: &clickhouse::Client,
    database: &str,
    topology: &schemas::clickhouse::Topology,
) -> Result<Vec<u32>, clickhouse::error::Error> {
    use schemas::clickhouse::{Step, MIGRATIONS, MIGRATIONS_TABLE};
    let current: u32 =
        client.query(&format!("SELECT toUInt32(max(version)) FROM {database}.{MIGRATIONS_TABLE}")).fetch_one().await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for step in m.steps {
            let Step::AddColumn { column, .. } = step;
            let present: u64 = client
                .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                .bind(database)
                .bind(step.local_table(topology))
                .bind(*column)
                .fetch_one()
                .await?;
            if present == 0 {
                client.query(&step.sql(database, topology)).execute().await?;
            }
        }
        // On a cluster the Distributed tables in front take the new columns
        // (also when an interrupted run added them locally), once per table.
        let mut tables: Vec<&str> = m.steps.iter().map(Step::table).collect();
        tables.sort_unstable();
        tables.dedup();
        for table in tables {
            for stmt in topology.refresh_distributed(database, table) {
                client.query(&stmt).execute().await?;
            }
        }
        client
            .query(&format!(
                "INSERT INTO {database}.{MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, now())"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "clickhouse migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}

/// Creates every index of [`schemas::mongo::INDEXES`] in `db` (a no-op for
/// those that exist with the same definition) and returns
/// `collection.index` for every index found afterwards.
pub async fn apply_mongo_indexes(db: &mongodb::Database) -> Result<Vec<String>, mongodb::error::Error> {
    for spec in schemas::mongo::INDEXES {
        let keys: Document = spec.keys.iter().map(|(k, dir)| ((*k).to_string(), (*dir).into())).collect();
        let model = IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(spec.name.to_string()).unique(spec.unique).build())
            .build();
        db.collection::<Document>(spec.collection).create_index(model).await?;
    }
    let mut names = Vec::new();
    let mut collections: Vec<&str> = schemas::mongo::INDEXES.iter().map(|i| i.collection).collect();
    collections.dedup();
    for c in collections {
        for n in db.collection::<Document>(c).list_index_names().await? {
            names.push(format!("{c}.{n}"));
        }
    }
    Ok(names)
}
