//! Settings of the aggregator, from environment variables (prefix
//! `AGGREGATOR_`; shared names for ClickHouse and MongoDB).

use std::net::SocketAddr;

use common::config::{ClickHouseConfig, MongoConfig};
use envconfig::Envconfig;
use rollup::{PassConfig, RollConfig};

/// Everything the aggregator reads at start.
#[derive(Envconfig, Clone, Debug)]
pub struct Config {
    /// `AGGREGATOR_ADMIN_LISTEN`: `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9182`.
    #[envconfig(from = "AGGREGATOR_ADMIN_LISTEN", default = "127.0.0.1:9182")]
    pub admin_listen: SocketAddr,
    /// `AGGREGATOR_INTERVAL_MS`: pause between two passes, ms. Default 5000.
    #[envconfig(from = "AGGREGATOR_INTERVAL_MS", default = "5000")]
    pub interval_ms: u64,
    /// `AGGREGATOR_OVERLAP_SECS`: each pass looks at rows written since the
    /// last pass minus this margin (ingest's write time, clock skew between
    /// replicas), s. Default 120.
    #[envconfig(from = "AGGREGATOR_OVERLAP_SECS", default = "120")]
    pub overlap_secs: u32,
    /// `AGGREGATOR_BREAKDOWN_TOP_N`: values kept per breakdown dimension of a
    /// window (country, referrer, UTM, ...); the rest is summed under
    /// `(other)`. 0 keeps all. Default 100.
    #[envconfig(from = "AGGREGATOR_BREAKDOWN_TOP_N", default = "100")]
    pub breakdown_top_n: usize,
    /// `AGGREGATOR_BACKLOG_BUDGET_MS`: time a pass may spend on old dirty
    /// days once the fresh ones (current and previous hour) are rolled, ms;
    /// the rest waits for the next pass, which starts at once. Default 3000.
    #[envconfig(from = "AGGREGATOR_BACKLOG_BUDGET_MS", default = "3000")]
    pub backlog_budget_ms: u64,
    /// `AGGREGATOR_MIRROR_BUDGET_MS`: time a pass may spend mirroring rolled
    /// days into MongoDB (the freshest day always runs), ms. Default 2000.
    #[envconfig(from = "AGGREGATOR_MIRROR_BUDGET_MS", default = "2000")]
    pub mirror_budget_ms: u64,
    /// `AGGREGATOR_ROLL_CONCURRENCY`: backlog days rolled at the same time
    /// (ClickHouse reads one day's partition with one thread under `FINAL`;
    /// about the ClickHouse server's cores). Default 2.
    #[envconfig(from = "AGGREGATOR_ROLL_CONCURRENCY", default = "2")]
    pub roll_concurrency: usize,
    /// `AGGREGATOR_LEASE_SECS`: the leader lease's TTL, s (MongoDB
    /// `leases`, `_id: aggregator`). Of several aggregators one rolls, the
    /// others stand by and try the lease every third of it (or every
    /// `AGGREGATOR_INTERVAL_MS` when shorter): a leader that dies is replaced
    /// within this time and one try more (at its standby's next try when it
    /// stops cleanly and releases it). The leader renews before each pass,
    /// so keep it above the longest pass. Default 15.
    #[envconfig(from = "AGGREGATOR_LEASE_SECS", default = "15")]
    pub lease_secs: u64,
    /// ClickHouse endpoint and database.
    #[envconfig(nested)]
    pub clickhouse: ClickHouseConfig,
    /// MongoDB URI and database.
    #[envconfig(nested)]
    pub mongo: MongoConfig,
}

impl Config {
    /// The pass settings these values give.
    pub fn pass_config(&self) -> PassConfig {
        PassConfig {
            roll: RollConfig { top_n: self.breakdown_top_n },
            overlap_secs: self.overlap_secs,
            backlog_budget: std::time::Duration::from_millis(self.backlog_budget_ms),
            mirror_budget: std::time::Duration::from_millis(self.mirror_budget_ms),
            concurrency: self.roll_concurrency,
        }
    }
}
