//! `ingest` binary: reads `ingest::Config` from the environment, consumes
//! until SIGTERM/SIGINT, then writes what it holds and commits.

use anyhow::Context;
use envconfig::Envconfig;

/// mimalloc: ingest allocates a row's strings on the consumer's thread and
/// frees them on the writer's, ~30 per event; glibc's allocator made that
/// ~10% of the CPU per event more than mimalloc (benches/README.md,
/// 2026-12-07).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = ingest::Config::init_from_env().context("reading ingest config from the environment")?;
    cfg.deployment.refuse_insecure(cfg.insecure_settings()).context("refusing to start ingest")?;
    tracing::info!(config = ?cfg, "starting ingest");
    let shutdown = common::shutdown::on_signal();
    let ingest = ingest::start(cfg, prometheus::Registry::new(), shutdown).await?;
    tracing::info!(admin = %ingest.admin_addr, "ingest consuming");
    ingest.wait().await;
    tracing::info!("ingest stopped");
    Ok(())
}
