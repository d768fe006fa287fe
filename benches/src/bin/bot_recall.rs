//! Bot detection measured on public lists (security review, "Bots"):
//! recall on crawler user agents and false positives on real browsers.
//!
//! - Crawlers: every `instances` entry of monperrus' `crawler-user-agents`
//!   (npm `crawler-user-agents`, the list the 88% was measured on).
//! - Browsers: the distinct user agents of the npm `user-agents` package
//!   (real browser traffic, weighted; each string counted once).
//!
//! `deploy/local/bot-data.sh` fetches both (pinned versions) into
//! `$SMARTLINKS_CACHE_DIR/bot-data/`. Run:
//! `cargo run --release -p benches --bin bot_recall [-- --misses]`.
//! Prints recall, the false-positive rate and, with `--misses`, every
//! crawler missed and every browser flagged. Exit 1 below 97 % recall or
//! above 0.5 % false positives (the bar).

use std::path::PathBuf;

use anyhow::Context;
use ingest::device::{bot_reason, UaParser};

fn data_dir() -> PathBuf {
    let cache = std::env::var("SMARTLINKS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/smartlinks"));
    cache.join("bot-data")
}

fn main() -> anyhow::Result<()> {
    let show = std::env::args().any(|a| a == "--misses");
    let dir = data_dir();
    let crawlers: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("crawler-user-agents.json")).context("run deploy/local/bot-data.sh first")?,
    )?;
    let browsers: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("user-agents.json"))?)?;
    let crawler_uas: Vec<String> = crawlers
        .as_array()
        .context("crawler list")?
        .iter()
        .flat_map(|p| p["instances"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut browser_uas: Vec<String> = browsers
        .as_array()
        .context("browser list")?
        .iter()
        .filter_map(|b| b["userAgent"].as_str().map(str::to_owned))
        .collect();
    browser_uas.sort();
    browser_uas.dedup();

    let parser = UaParser::new(1);
    let flagged = |ua: &str| bot_reason("GET", &parser.parse_uncached(ua)).is_some();
    let missed: Vec<&String> = crawler_uas.iter().filter(|ua| !flagged(ua)).collect();
    let false_pos: Vec<&String> = browser_uas.iter().filter(|ua| flagged(ua)).collect();
    let recall = 100.0 * (crawler_uas.len() - missed.len()) as f64 / crawler_uas.len().max(1) as f64;
    let fp = 100.0 * false_pos.len() as f64 / browser_uas.len().max(1) as f64;
    if show {
        for ua in &missed {
            println!("missed crawler: {ua}");
        }
        for ua in &false_pos {
            println!("flagged browser: {ua}");
        }
    }
    println!(
        "bot detection: recall {recall:.2}% ({} of {} crawler UAs), false positives {fp:.2}% ({} of {} browser UAs)",
        crawler_uas.len() - missed.len(),
        crawler_uas.len(),
        false_pos.len(),
        browser_uas.len()
    );
    benches::ratio("bot recall (crawler UAs flagged)", recall, 100.0, "%", ">= 97%");
    benches::ratio("browsers flagged as bots", fp, 100.0, "%", "<= 0.5%");
    if recall < 97.0 || fp > 0.5 {
        anyhow::bail!("below the bar: recall ≥ 97 %, false positives ≤ 0.5 %");
    }
    Ok(())
}
