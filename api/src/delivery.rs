//! Messages sent with retries (tenants' alert notifications, tenant
//! webhooks), the same way: the deliveries due are listed
//! ([`due_ids`]), each is attempted under its own lock when no other api
//! instance holds it ([`if_free`]), re-read and leased first
//! ([`begin_attempt`]) so an instance dying mid-attempt leaves it due again
//! after the lease, and each round's outcomes are counted ([`Sent`]).

use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::lock::acquire;
use crate::state::AppState;

/// What one round of sending did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Accepted by their receivers.
    pub delivered: usize,
    /// Failed, kept for a later attempt.
    pub retried: usize,
    /// Failed for good.
    pub failed: usize,
}

/// Ids of the deliveries of `collection` due at `now` (`status` pending,
/// `nextAttemptAt` not after `now`), oldest first, at most `limit`: what
/// a sender of retried messages (alert notifications, tenant webhooks)
/// attempts next. Errors: MongoDB (503).
pub async fn due_ids(
    st: &AppState,
    collection: &str,
    now: bson::DateTime,
    limit: i64,
) -> Result<Vec<ObjectId>, ApiError> {
    use futures::TryStreamExt;
    let due: Vec<bson::Document> = st
        .mongo
        .collection::<bson::Document>(collection)
        .find(bson::doc! { "status": "pending", "nextAttemptAt": { "$lte": now } })
        .projection(bson::doc! { "_id": 1 })
        .sort(bson::doc! { "nextAttemptAt": 1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(due.iter().filter_map(|d| d.get_object_id("_id").ok()).collect())
}

/// Runs `f` holding the lock `name` (at most `ttl`) when no one else holds
/// it: `Some` of its result, or `None` when the lock is taken (another
/// instance is on it). Errors: `f`'s, or MongoDB's (503).
pub async fn if_free<T, F, Fut>(st: &AppState, name: String, ttl: Duration, f: F) -> Result<Option<T>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let guard = match acquire(st, name, ttl, Duration::ZERO).await {
        Ok(g) => g,
        Err(ApiError::Unavailable { store: "lock", .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let out = f().await;
    guard.release().await;
    out.map(Some)
}

/// Starts an attempt of delivery `id` in `coll`, held under its lock:
/// re-reads it and, when it is still due at `now` (`due` says whether it
/// is pending with its next attempt not after `now`, and its attempts so
/// far), pushes `nextAttemptAt` to `now + lease` and counts the attempt.
/// `Some((delivery, attempt number))`, or `None` when it was sent or
/// rescheduled meanwhile. Errors: MongoDB (503).
pub async fn begin_attempt<T>(
    coll: &mongodb::Collection<T>,
    id: ObjectId,
    now: DateTime,
    lease: Duration,
    due: impl Fn(&T) -> (bool, u32),
) -> Result<Option<(T, u32)>, ApiError>
where
    T: DeserializeOwned + Send + Sync,
{
    let Some(d) = coll.find_one(doc! { "_id": id }).await? else { return Ok(None) };
    let (still_due, attempts) = due(&d);
    if !still_due {
        return Ok(None);
    }
    let attempts = attempts + 1;
    let until = DateTime::from_millis(now.timestamp_millis() + lease.as_millis() as i64);
    coll.update_one(doc! { "_id": id }, doc! { "$set": { "nextAttemptAt": until, "attempts": attempts } }).await?;
    Ok(Some((d, attempts)))
}
