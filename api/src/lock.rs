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

/// Takes the lock `name` for at most `ttl`, waiting up to `wait` for it;
/// 503 `unavailable` when it stays held.
pub async fn acquire(st: &AppState, name: String, ttl: Duration, wait: Duration) -> Result<Guard, ApiError> {
    let locks = st.mongo.collection::<bson::Document>(collections::LOCKS);
    let owner = ObjectId::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut attempt = 0u64;
    loop {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        match locks.insert_one(doc! { "_id": &name, "owner": owner, "expiresAt": expires }).await {
            Ok(_) => return Ok(Guard { db: st.mongo.clone(), name, owner }),
            Err(e) if is_duplicate_key(&e) => {
                locks.delete_one(doc! { "_id": &name, "expiresAt": { "$lt": now } }).await?;
            }
            Err(e) => return Err(e.into()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Unavailable {
                store: "lock",
                detail: format!("{name} stayed busy for {} ms; retry", wait.as_millis()),
            });
        }
        st.metrics.retries.with_label_values(&["lock_busy"]).inc();
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(2 + (attempt % 8) * 3)).await;
    }
}

/// The lock of an invoice, held 30 s at most, waited for 10 s at most.
pub async fn invoice(st: &AppState, id: ObjectId) -> Result<Guard, ApiError> {
    acquire(st, format!("invoice:{}", id.to_hex()), Duration::from_secs(30), Duration::from_secs(10)).await
}
