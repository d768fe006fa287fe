//! `forwarder` binary: reads `forwarder::Config` from the environment,
//! forwards conversions until SIGTERM/SIGINT.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = forwarder::Config::init_from_env().context("reading forwarder config from the environment")?;
    cfg.deployment.refuse_insecure(cfg.insecure_settings()).context("refusing to start the forwarder")?;
    tracing::info!(config = ?cfg, "starting the forwarder");
    let shutdown = common::shutdown::on_signal();
    let f = forwarder::start(cfg, prometheus::Registry::new(), shutdown).await?;
    tracing::info!(admin = %f.admin_addr, "forwarder consuming");
    f.wait().await;
    tracing::info!("forwarder stopped");
    Ok(())
}
