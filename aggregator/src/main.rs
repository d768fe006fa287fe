//! `aggregator` binary: reads `aggregator::Config` from the environment and
//! rolls up until SIGTERM/SIGINT.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = aggregator::Config::init_from_env().context("reading aggregator config from the environment")?;
    tracing::info!(config = ?cfg, "starting aggregator");
    let shutdown = common::shutdown::on_signal();
    let agg = aggregator::start(cfg, prometheus::Registry::new(), shutdown).await?;
    tracing::info!(admin = %agg.admin_addr, "aggregator running");
    agg.wait().await;
    Ok(())
}
