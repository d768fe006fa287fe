//! Connection settings shared by several services, read from environment
//! variables with defaults that reach the local stack (`deploy/local/up.sh`).
//! Each service's own `Config` nests the ones it needs.

use std::fmt;
use std::str::FromStr;

use envconfig::Envconfig;

/// A secret setting (password, key, URI with credentials): read from the
/// environment like any string, but its `Debug` never shows it (`""` when
/// empty, else `<redacted>`; a URI keeps its scheme and host, see
/// [`redact_userinfo`]), so a config can derive `Debug` and be logged
/// whole at start. [`Secret::expose`] is the one way to read the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself: pass it to what needs it, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (the setting is off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else if self.0.contains("://") {
            write!(f, "{:?}", redact_userinfo(&self.0))
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// Kafka connection and topic names.
#[derive(Envconfig, Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `KAFKA_BROKERS`: bootstrap servers, comma-separated `host:port`.
    /// Default `127.0.0.1:9092`.
    #[envconfig(from = "KAFKA_BROKERS", default = "127.0.0.1:9092")]
    pub brokers: String,
    /// `KAFKA_RAW_TOPIC`: topic of raw events. Default `smartlinks.events.raw`
    /// ([`schemas::topics::RAW_EVENTS`]).
    #[envconfig(from = "KAFKA_RAW_TOPIC", default = "smartlinks.events.raw")]
    pub raw_topic: String,
    /// `KAFKA_DEAD_LETTER_TOPIC`: topic of rejected records. Default
    /// `smartlinks.events.dead-letter` ([`schemas::topics::DEAD_LETTERS`]).
    #[envconfig(from = "KAFKA_DEAD_LETTER_TOPIC", default = "smartlinks.events.dead-letter")]
    pub dead_letter_topic: String,
    /// `KAFKA_CONVERSION_DEAD_LETTER_TOPIC`: requests the forwarder could
    /// not deliver to an ad platform. Default
    /// `smartlinks.conversions.dead-letter` ([`schemas::topics::CONVERSION_DEAD_LETTERS`]).
    #[envconfig(from = "KAFKA_CONVERSION_DEAD_LETTER_TOPIC", default = "smartlinks.conversions.dead-letter")]
    pub conversion_dead_letter_topic: String,
    /// `KAFKA_REPLICATION`: replication factor of topics `migrate` creates.
    /// Default 1 (single local broker); 3 in production.
    #[envconfig(from = "KAFKA_REPLICATION", default = "1")]
    pub replication: i32,
}

impl KafkaConfig {
    /// The topic names in use.
    pub fn topic_names(&self) -> schemas::topics::TopicNames {
        schemas::topics::TopicNames {
            raw_events: self.raw_topic.clone(),
            dead_letters: self.dead_letter_topic.clone(),
            conversion_dead_letters: self.conversion_dead_letter_topic.clone(),
        }
    }
}

/// ClickHouse connection over HTTP.
#[derive(Envconfig, Clone, Debug, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// `CLICKHOUSE_URL`: HTTP endpoint. Default `http://127.0.0.1:8123`.
    #[envconfig(from = "CLICKHOUSE_URL", default = "http://127.0.0.1:8123")]
    pub url: String,
    /// `CLICKHOUSE_DATABASE`: database. Default `smartlinks`.
    #[envconfig(from = "CLICKHOUSE_DATABASE", default = "smartlinks")]
    pub database: String,
    /// `CLICKHOUSE_USER`: user. Default `default`.
    #[envconfig(from = "CLICKHOUSE_USER", default = "default")]
    pub user: String,
    /// `CLICKHOUSE_PASSWORD`: password. Default empty. Never logged.
    #[envconfig(from = "CLICKHOUSE_PASSWORD", default = "")]
    pub password: Secret,
    /// `CLICKHOUSE_CLUSTER`: the cluster (in the servers' `remote_servers`)
    /// whose replicated tables sit behind `Distributed` ones
    /// ([`schemas::clickhouse::Topology`], issue #15); empty (the default):
    /// one server.
    #[envconfig(from = "CLICKHOUSE_CLUSTER", default = "")]
    pub cluster: String,
}

impl ClickHouseConfig {
    /// A client for the configured server, without a default database (DDL
    /// names its database; queries name theirs with [`Self::database`]).
    /// Row validation is off: ClickHouse 18.16 lacks the
    /// `RowBinaryWithNamesAndTypes` format it needs (`../shared/docs/infra.md`).
    ///
    /// On a cluster, inserts through `Distributed` tables wait until the
    /// shard has the rows (`insert_distributed_sync`): the rollup watermark
    /// never passes rows still queued.
    pub fn client(&self) -> clickhouse::Client {
        let client = clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_validation(false);
        match self.topology() {
            schemas::clickhouse::Topology::Single => client,
            schemas::clickhouse::Topology::Cluster(_) => client.with_setting("insert_distributed_sync", "1"),
        }
    }

    /// One server or the cluster `cluster` names.
    pub fn topology(&self) -> schemas::clickhouse::Topology {
        schemas::clickhouse::Topology::from_cluster(&self.cluster)
    }
}

/// MongoDB (wire protocol) connection.
#[derive(Envconfig, Clone, Debug, PartialEq, Eq)]
pub struct MongoConfig {
    /// `MONGODB_URI`: connection string. Default `mongodb://127.0.0.1:27017`.
    /// Logged without its user and password.
    #[envconfig(from = "MONGODB_URI", default = "mongodb://127.0.0.1:27017")]
    pub uri: Secret,
    /// `MONGODB_DATABASE`: database. Default `smartlinks`.
    #[envconfig(from = "MONGODB_DATABASE", default = "smartlinks")]
    pub database: String,
}

impl MongoConfig {
    /// Connects (lazily: the driver dials on first use) and returns the
    /// configured database. Errors when the URI does not parse.
    pub async fn database(&self) -> Result<mongodb::Database, mongodb::error::Error> {
        let mut options = mongodb::options::ClientOptions::parse(self.uri.expose()).await?;
        options.app_name.get_or_insert_with(|| "smartlinks".into());
        options.server_selection_timeout.get_or_insert(std::time::Duration::from_secs(5));
        Ok(mongodb::Client::with_options(options)?.database(&self.database))
    }
}

/// `scheme://user:pass@host` → `scheme://<redacted>@host`; other strings unchanged.
pub fn redact_userinfo(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}<redacted>{}", &uri[..s + 3], &uri[at..]),
        _ => uri.to_owned(),
    }
}

/// Where a service runs, `SMARTLINKS_ENV`: `production` (the default) or
/// `local` (the loopback stack of `deploy/local/`, whose scripts set it).
/// Outside local mode a service refuses to start on a setting that is only
/// safe on a developer's machine (a default secret, cookies without
/// `Secure`): security review finding 16, "insecure defaults start silently".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deployment {
    /// Any real deployment: insecure settings are refused.
    #[default]
    Production,
    /// A developer's or CI's loopback stack: insecure settings are logged.
    Local,
}

/// `SMARTLINKS_ENV` holds neither `production` nor `local`.
#[derive(Debug, thiserror::Error)]
#[error("SMARTLINKS_ENV must be `production` or `local`, not {0:?}")]
pub struct BadDeployment(String);

impl FromStr for Deployment {
    type Err = BadDeployment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" | "" => Ok(Deployment::Production),
            "local" => Ok(Deployment::Local),
            other => Err(BadDeployment(other.to_owned())),
        }
    }
}

/// Settings a service will not run with outside local mode: each entry names
/// the variable and why.
#[derive(Debug, thiserror::Error)]
#[error("insecure settings outside SMARTLINKS_ENV=local: {}", .0.join("; "))]
pub struct InsecureSettings(pub Vec<String>);

impl Deployment {
    /// `Ok` when `problems` (what a service's config found unsafe, one line
    /// each) is empty or this is local mode (each one is then logged as a
    /// warning); [`InsecureSettings`] listing them otherwise.
    pub fn refuse_insecure(self, problems: Vec<String>) -> Result<(), InsecureSettings> {
        if problems.is_empty() {
            return Ok(());
        }
        if self == Deployment::Local {
            for p in &problems {
                tracing::warn!(setting = %p, "insecure setting accepted in local mode");
            }
            return Ok(());
        }
        Err(InsecureSettings(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_match_the_schemas_names_and_local_stack() {
        let k = KafkaConfig::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(k.topic_names(), schemas::topics::TopicNames::default());
        let c = ClickHouseConfig::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(c.database, schemas::clickhouse::DEFAULT_DATABASE);
        let m = MongoConfig::init_from_hashmap(&HashMap::new()).unwrap();
        assert_eq!(m.database, schemas::mongo::DEFAULT_DATABASE);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut env = HashMap::new();
        env.insert("CLICKHOUSE_PASSWORD".to_string(), "hunter2".to_string());
        env.insert("MONGODB_URI".to_string(), "mongodb://app:s3cret@db:27017/?x=1".to_string());
        let c = ClickHouseConfig::init_from_hashmap(&env).unwrap();
        let m = MongoConfig::init_from_hashmap(&env).unwrap();
        let out = format!("{c:?} {m:?}");
        assert!(!out.contains("hunter2") && !out.contains("s3cret"), "{out}");
        assert!(out.contains("mongodb://<redacted>@db:27017"), "{out}");
        assert_eq!(redact_userinfo("mongodb://h:1"), "mongodb://h:1");
    }

    #[test]
    fn insecure_settings_are_refused_outside_local_mode() {
        assert_eq!("".parse::<Deployment>().unwrap(), Deployment::Production);
        assert_eq!("local".parse::<Deployment>().unwrap(), Deployment::Local);
        assert!("dev".parse::<Deployment>().is_err());
        let problems = || vec!["X_SECRET is the default".to_string()];
        let err = Deployment::Production.refuse_insecure(problems()).unwrap_err();
        assert!(err.to_string().contains("X_SECRET is the default"), "{err}");
        assert!(Deployment::Local.refuse_insecure(problems()).is_ok());
        assert!(Deployment::Production.refuse_insecure(vec![]).is_ok());
    }
}
