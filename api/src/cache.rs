//! A short-lived cache of analytics answers (issue #13): dashboards ask the
//! same questions again and again (every widget, every open tab, every
//! refresh), and a 30-day overview merges dozens of distinct-count states.
//! Answers are kept as their JSON bytes for `API_ANALYTICS_CACHE_TTL_MS`
//! (default 5 s), keyed by who asks (operator, API key, or user and role)
//! and the request's path and query string, so an answer never crosses
//! principals and a principal sees at most that old an answer (an erasure
//! clears the cache at once, [`AnswerCache::clear`]). Concurrent
//! misses of one key compute once and share the answer (moka's
//! `try_get_with`); errors are not cached.
//!
//! Metrics: `api_analytics_cache_total{result}` (`hit`, `miss`).

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::Principal;
use crate::error::ApiError;

/// Cached answers: JSON bytes by key; `None` when disabled (TTL 0).
#[derive(Clone)]
pub struct AnswerCache {
    answers: Option<moka::future::Cache<String, Bytes>>,
    ttl: Duration,
    lookups: prometheus::IntCounterVec,
}

impl AnswerCache {
    /// A cache keeping answers `ttl` (none when zero), at most `entries`
    /// of them (least recently used out first), counting lookups in
    /// `lookups` (label `result`: `hit`, `miss`).
    pub fn new(ttl: Duration, entries: u64, lookups: prometheus::IntCounterVec) -> Self {
        let answers =
            (!ttl.is_zero()).then(|| moka::future::Cache::builder().max_capacity(entries).time_to_live(ttl).build());
        AnswerCache { answers, ttl, lookups }
    }

    /// Drops every cached answer (after an erasure: no answer may show
    /// erased events). Other api replicas keep theirs for at most the TTL.
    pub fn clear(&self) {
        if let Some(c) = &self.answers {
            c.invalidate_all();
        }
    }

    /// The cache key of a request by `p` for `uri` (path and query).
    pub fn key(p: &Principal, uri: &axum::http::Uri) -> String {
        let who = match p {
            Principal::Operator => "operator".to_string(),
            Principal::Tenant { key_id, .. } => format!("key:{key_id}"),
            Principal::User { user_id, role, .. } => format!("user:{user_id}:{role:?}"),
        };
        format!("{who} {uri}")
    }

    /// The answer of `key`: the cached bytes, or `compute`'s answer as
    /// JSON (cached when it succeeds). A JSON response with `Cache-Control:
    /// private, max-age` of the TTL and `X-Cache: hit|miss`.
    pub async fn json<T, F>(&self, key: String, compute: F) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<T, ApiError>>,
    {
        let encode = |v: T| {
            serde_json::to_vec(&v)
                .map(Bytes::from)
                .map_err(|e| ApiError::Unavailable { store: "json", detail: e.to_string() })
        };
        let (bytes, hit) = match &self.answers {
            None => (encode(compute.await?)?, false),
            Some(c) => {
                let mut computed = false;
                let bytes = c
                    .try_get_with(key, async {
                        computed = true;
                        encode(compute.await?)
                    })
                    .await
                    .map_err(|e| (*e).clone())?;
                (bytes, !computed)
            }
        };
        self.lookups.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
        let mut resp = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={}", self.ttl.as_secs())) {
            h.insert(header::CACHE_CONTROL, v);
        }
        h.insert("x-cache", HeaderValue::from_static(if hit { "hit" } else { "miss" }));
        Ok(resp)
    }
}
