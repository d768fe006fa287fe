//! Short per-record mutexes in MongoDB, for read-modify-write sequences
//! that must not interleave (an invoice's payments, refunds and status
//! changes).
//!
//! Conditional updates (`{_id, version}`) are not enough on every engine
//! we target: FerretDB applies an update by reading the matching documents
//! and writing them back, so two concurrent version-checked replaces can
//! both match (seen in `api/tests/billing.rs`: ten concurrent retries of
//! one payment audited it twice). An insert, though, is atomic against the
//! unique `_id` everywhere, so a lock is a document `{_id: name}`: taking
//! it inserts, releasing deletes. A holder that died leaves a lock that
//! expires after its TTL and is then taken over.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bson::{doc, oid::ObjectId, DateTime};
use schemas::mongo::collections;

use crate::error::{is_duplicate_key, ApiError};
use crate::state::AppState;

/// A held lock; call [`Guard::release`] when done (an unreleased lock
/// expires after its TTL).
pub struct Guard {
    db: mongodb::Database,
    name: String,
    owner: ObjectId,
}

impl Guard {
    /// Releases the lock (only if still ours).
    pub async fn release(self) {
        let r = self
            .db
            .collection::<bson::Document>(collections::LOCKS)
            .delete_one(doc! { "_id": &self.name, "owner": self.owner })
            .await;
        if let Err(e) = r {
            tracing::warn!(lock = %self.name, error = %e, "lock not released; it expires by itself");
        }
    }
}

/// Why one attempt at a lock did not take it.
enum Attempt {
    /// Another holder has it (retried).
    Busy,
    /// MongoDB failed (not retried).
    Failed(ApiError),
}

/// Takes the lock `name` for at most `ttl`, waiting up to `wait` for it
/// (retries with jittered exponential backoff from 2 to 25 ms, counted in
/// `api_retries_total{cause="lock_busy"}`); 503 `unavailable` when it stays
/// held, a MongoDB error as such.
pub async fn acquire(st: &AppState, name: String, ttl: Duration, wait: Duration) -> Result<Guard, ApiError> {
    let locks = st.mongo.collection::<bson::Document>(collections::LOCKS);
    let owner = ObjectId::new();
    let take = || async {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        match locks.insert_one(doc! { "_id": &name, "owner": owner, "expiresAt": expires }).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                // A crashed holder's lock is taken over once it expired.
                match locks.delete_one(doc! { "_id": &name, "expiresAt": { "$lt": now } }).await {
                    Ok(_) => Err(Attempt::Busy),
                    Err(e) => Err(Attempt::Failed(e.into())),
                }
            }
            Err(e) => Err(Attempt::Failed(e.into())),
        }
    };
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(2))
        .with_max_delay(Duration::from_millis(25))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(wait));
    let taken = take
        .retry(backoff)
        .when(|e| matches!(e, Attempt::Busy))
        .notify(|_, _| st.metrics.retries.with_label_values(&["lock_busy"]).inc())
        .await;
    match taken {
        Ok(()) => Ok(Guard { db: st.mongo.clone(), name, owner }),
        Err(Attempt::Failed(e)) => Err(e),
        Err(Attempt::Busy) => Err(ApiError::Unavailable {
            store: "lock",
            detail: format!("{name} stayed busy for {} ms; retry", wait.as_millis()),
        }),
    }
}

/// Runs `f` holding the lock `name` ([`acquire`] with `ttl` and `wait`),
/// released after `f` whatever it returned; `f`'s result, or the lock's
/// error when it could not be taken.
pub async fn with_lock<T, F, Fut>(
    st: &AppState,
    name: String,
    ttl: Duration,
    wait: Duration,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let guard = acquire(st, name, ttl, wait).await?;
    let out = f().await;
    guard.release().await;
    out
}

/// The lock of an invoice, held 30 s at most, waited for 10 s at most.
pub async fn invoice(st: &AppState, id: ObjectId) -> Result<Guard, ApiError> {
    acquire(st, format!("invoice:{}", id.to_hex()), Duration::from_secs(30), Duration::from_secs(10)).await
}

/// Runs `f` under the lock of lead `id`: its changes (PATCH, notes,
/// conversion) are read-modify-replace, and FerretDB's conditional updates
/// are not atomic, so two of them at once would lose one (issue #14).
pub async fn lead<T, F, Fut>(st: &AppState, id: &str, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let (ttl, wait) = (Duration::from_secs(30), Duration::from_secs(10));
    with_lock(st, format!("lead:{id}"), ttl, wait, f).await
}
