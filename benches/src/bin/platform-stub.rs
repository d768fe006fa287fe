//! `platform-stub`: stands in for the ad platforms in the demo (issue #19).
//! Answers the forwarder as Meta's Conversions API
//! (`POST /{version}/{pixel}/events`), GA4's Measurement Protocol
//! (`POST /mp/collect`) and TikTok's Events API
//! (`POST /open_api/v1.3/event/track/`) answer a success, and appends one
//! JSON line per event received to a file, for `loadgen` to check that each
//! consented event reached each destination once with the pixel's id:
//! `{"platform":"meta","account":"1234","event_id":"…","name":"SmartlinkClick"}`.
//! It also plays a tenant's webhook receiver (`POST /webhook`): one line
//! `{"platform":"webhook","webhook_id","timestamp","signature","body"}`
//! per message. `GET /readyz` answers 200 (the demo's stage runner waits on it).
//!
//! Settings: `PLATFORM_STUB_LISTEN` (default `127.0.0.1:9190`),
//! `PLATFORM_STUB_LOG` (default `$SMARTLINKS_STATE_DIR/platform-stub.jsonl`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

type Log = Arc<Mutex<std::fs::File>>;

fn record(log: &Log, platform: &str, account: &str, events: &[Value], id: &str, name: &str) {
    let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
    for e in events {
        let line = json!({"platform": platform, "account": account, "event_id": e[id], "name": e[name]});
        let _ = writeln!(f, "{line}");
    }
}

async fn meta(State(log): State<Log>, Path((_v, pixel)): Path<(String, String)>, Json(b): Json<Value>) -> Json<Value> {
    let data = b["data"].as_array().cloned().unwrap_or_default();
    record(&log, "meta", &pixel, &data, "event_id", "event_name");
    Json(json!({"events_received": data.len(), "fbtrace_id": "stub"}))
}

async fn ga4(State(log): State<Log>, Query(q): Query<HashMap<String, String>>, Json(b): Json<Value>) {
    let events: Vec<Value> = b["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| json!({"event_id": e["params"]["event_id"], "name": e["name"]}))
        .collect();
    record(&log, "ga4", q.get("measurement_id").map_or("", String::as_str), &events, "event_id", "name");
}

/// A tenant webhook (issue #19): the Standard Webhooks headers and the body,
/// one JSON line, for loadgen to verify the signature with the secret.
async fn webhook(State(log): State<Log>, headers: axum::http::HeaderMap, body: String) -> axum::http::StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let line = json!({"platform": "webhook", "webhook_id": h("webhook-id"), "timestamp": h("webhook-timestamp"),
        "signature": h("webhook-signature"), "body": body});
    let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(f, "{line}");
    axum::http::StatusCode::NO_CONTENT
}

async fn tiktok(State(log): State<Log>, Json(b): Json<Value>) -> Json<Value> {
    let data = b["data"].as_array().cloned().unwrap_or_default();
    record(&log, "tiktok", b["event_source_id"].as_str().unwrap_or(""), &data, "event_id", "event");
    Json(json!({"code": 0, "message": "OK"}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("PLATFORM_STUB_LISTEN").unwrap_or_else(|_| "127.0.0.1:9190".into());
    let path = std::env::var("PLATFORM_STUB_LOG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| testkit::state_dir().join("platform-stub.jsonl"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let app = Router::new()
        .route("/{version}/{pixel}/events", post(meta))
        .route("/mp/collect", post(ga4))
        .route("/open_api/v1.3/event/track/", post(tiktok))
        .route("/webhook", post(webhook))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(Arc::new(Mutex::new(file)));
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!("platform-stub on {listen}, events to {}", path.display());
    axum::serve(listener, app).await?;
    Ok(())
}
