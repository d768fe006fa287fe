//! Standard Webhooks (<https://www.standardwebhooks.com/>): the signature
//! every message carries, its secret, the wait between attempts, and
//! transport errors told without the URL. Used by tenant webhooks and
//! the alerts' own webhook.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest wait between two attempts.
const MAX_BACKOFF_SECS: u64 = 3600;

/// The `webhook-signature` header of Standard Webhooks: `v1,` and the
/// base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed by the base64
/// after `whsec_` in `secret`. Errors: a secret that is not `whsec_` + base64.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| b64.decode(k).ok())
        .ok_or_else(|| "the webhook secret is not whsec_ + base64".to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// A fresh webhook secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b)))
}

/// The wait after attempt `attempts` (1-based): `base · 2^(attempts-1)` s,
/// at most an hour.
pub fn backoff(base_secs: u32, attempts: u32) -> Duration {
    let secs = u64::from(base_secs).saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(MAX_BACKOFF_SECS))
}

/// A reqwest error without the URL (it may carry a tenant's token).
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}
