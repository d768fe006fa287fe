//! Helpers for integration tests that run against the local stack
//! (`deploy/local/up.sh`): unique names so tests run in parallel, and
//! polling with a deadline instead of sleeps.

use std::future::Future;
use std::time::Duration;

/// A name unique to this call: `{prefix}_{12 hex digits}`, valid as a
/// ClickHouse database, MongoDB database and Kafka topic suffix.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`
/// after `timeout`. For tests only.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
