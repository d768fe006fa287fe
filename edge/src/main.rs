//! `edge` binary: reads `edge::Config` from the environment, serves until
//! SIGTERM/SIGINT, then shuts down gracefully.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = edge::Config::init_from_env().context("reading edge config from the environment")?;
    cfg.deployment.refuse_insecure(cfg.insecure_settings()).context("refusing to start edge")?;
    tracing::info!(config = ?cfg, "starting edge");
    let shutdown = common::shutdown::on_signal();
    let edge = edge::start(cfg, prometheus::Registry::new(), shutdown).await?;
    tracing::info!(addr = %edge.addr, admin = %edge.admin_addr, "edge listening");
    edge.wait().await;
    tracing::info!("edge stopped");
    Ok(())
}
