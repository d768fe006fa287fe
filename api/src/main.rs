//! `api` binary: reads `api::Config` from the environment and serves until
//! SIGTERM/SIGINT, draining in-flight requests.
//!
//! `api rewrap-pii` instead rewrites the stored personal-data ciphertexts
//! that are unbound (`enc:v1:`) or under an older key ([`api::rewrap`]),
//! prints what it did per place and exits: non-zero when a value did not
//! decrypt.

use anyhow::Context;
use envconfig::Envconfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_logging();
    let cfg = api::Config::init_from_env().context("reading api config from the environment")?;
    if std::env::args().nth(1).as_deref() == Some("rewrap-pii") {
        return rewrap_pii(&cfg).await;
    }
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

/// `api rewrap-pii`: one [`api::rewrap::run`] on the configured database.
async fn rewrap_pii(cfg: &api::Config) -> anyhow::Result<()> {
    let pii = crypto::Pii::new(cfg.pii_keys.expose(), cfg.blind_index_key.expose())
        .context("API_PII_KEYS / API_BLIND_INDEX_KEY")?;
    let db = cfg.mongo.database().await.context("MongoDB URI")?;
    let report = api::rewrap::run(&db, &pii).await.context("rewrapping personal data")?;
    let mut failed = 0;
    for (p, c) in &report {
        if c != &api::rewrap::Counts::default() {
            println!("{}.{}: {} rewritten, {} raced, {} failed", p.collection, p.path, c.rewritten, c.raced, c.failed);
        }
        failed += c.failed;
    }
    let total: u64 = report.iter().map(|(_, c)| c.rewritten).sum();
    println!("rewrap-pii: {total} values rewritten under key {}", pii.current_key_id());
    anyhow::ensure!(failed == 0, "{failed} values did not decrypt (logged with their ids)");
    Ok(())
}
