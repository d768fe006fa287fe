//! `api` binary: reads `api::Config` from the environment and serves until
//! SIGTERM/SIGINT, draining in-flight requests.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = api::Config::init_from_env().context("reading api config from the environment")?;
    cfg.deployment.refuse_insecure(cfg.insecure_settings()).context("refusing to start api")?;
    tracing::info!(config = ?cfg, "starting api");
    if cfg.operator_key.is_empty() {
        tracing::warn!("API_OPERATOR_KEY is empty: tenants and keys cannot be created");
    }
    let shutdown = common::shutdown::on_signal();
    let api = api::start(cfg, prometheus::Registry::new(), shutdown).await?;
    tracing::info!(addr = %api.addr, admin = %api.admin_addr, "api running");
    api.wait().await;
    Ok(())
}
