//! Helpers of the aggregator's integration tests.

/// Now, Unix s.
pub fn now_s() -> u32 {
    (bson::DateTime::now().timestamp_millis() / 1000) as u32
}

/// The value of the first line of `admin`'s `/metrics` starting with
/// `line_start` (name and labels, then a space); `None` when absent.
pub async fn metric(admin: std::net::SocketAddr, line_start: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{admin}/metrics")).await.ok()?.text().await.ok()?;
    body.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// Test settings of an aggregator on database `name` (its own admin port,
/// passes every 200 ms), with the tables and indexes made: the settings,
/// the MongoDB database and a ClickHouse client on `name`. `change` adjusts
/// the settings first (another ClickHouse server, a lease TTL).
pub async fn migrated(
    name: &str,
    change: impl FnOnce(&mut aggregator::Config),
) -> (aggregator::Config, mongodb::Database, clickhouse::Client) {
    use envconfig::Envconfig;
    let mut cfg = aggregator::Config::init_from_env().expect("aggregator config");
    cfg.admin_listen = "127.0.0.1:0".parse().expect("address");
    cfg.interval_ms = 200;
    cfg.clickhouse.database = name.to_owned();
    cfg.mongo.database = name.to_owned();
    change(&mut cfg);
    migrate::apply_clickhouse(&cfg.clickhouse).await.expect("ClickHouse tables");
    let mongo = cfg.mongo.database().await.expect("MongoDB");
    migrate::apply_mongo_indexes(&mongo).await.expect("MongoDB indexes");
    let ch = cfg.clickhouse.client().with_database(name);
    (cfg, mongo, ch)
}
