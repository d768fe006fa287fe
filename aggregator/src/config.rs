//! Settings of the aggregator, from environment variables (prefix
//! `AGGREGATOR_`; shared names for ClickHouse and MongoDB).

use std::net::SocketAddr;

use common::config::{ClickHouseConfig, MongoConfig};
use envconfig::Envconfig;

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
    /// ClickHouse endpoint and database.
    #[envconfig(nested)]
    pub clickhouse: ClickHouseConfig,
    /// MongoDB URI and database.
    #[envconfig(nested)]
    pub mongo: MongoConfig,
}
