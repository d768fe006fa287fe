//! MongoDB-wire helpers the stages share: telling a duplicate key apart
//! ([`is_duplicate_key`]), and a leader lease ([`Lease`]) so that of several
//! instances of a stage exactly one works at a time (issue #15: two
//! aggregators, one rolling, the other taking over within seconds when the
//! first dies).

use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::Collection;

/// `true` when a MongoDB write failed on a unique index: E11000, or the
/// `InternalError` "UNIQUE constraint failed" FerretDB 1.24 answers to an
/// update that breaks a unique index (its inserts answer E11000).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000 || c.message.contains("UNIQUE constraint failed"),
        _ => e.to_string().contains("E11000"),
    }
}

/// A leader lease: a document `{_id: name, owner, expiresAt}` in
/// `collection` held by at most one instance at a time.
///
/// Taking it inserts (atomic against the unique `_id` on every engine we
/// target: FerretDB applies conditional updates by reading then writing, so
/// two version-checked updates can both match); the holder renews it by
/// pushing `expiresAt` ahead; an expired lease (a holder that died or
/// stalled longer than the TTL) is deleted and taken by the next caller.
/// The one overlap left: a holder renewing at the very moment its lease
/// expires and is taken may believe it holds it until its next renewal,
/// which it then loses (both run at most one pass together: callers' work
/// must be idempotent, as rollups are).
#[derive(Clone)]
pub struct Lease {
    coll: Collection<Document>,
    name: String,
    owner: ObjectId,
    ttl: Duration,
}

impl Lease {
    /// The lease `name` in `coll`, held `ttl` from each renewal, for a new
    /// owner id (one per process).
    pub fn new(coll: Collection<Document>, name: &str, ttl: Duration) -> Lease {
        Lease { coll, name: name.to_owned(), owner: ObjectId::new(), ttl }
    }

    /// This holder's id (logged by callers).
    pub fn owner(&self) -> ObjectId {
        self.owner
    }

    /// Renews the lease if ours, else takes it if free or expired. Returns
    /// whether we hold it now (valid `ttl` from now). Errors: MongoDB's; a
    /// caller that cannot reach the database must stop working as leader
    /// once its last renewal's `ttl` has passed.
    pub async fn hold(&self) -> Result<bool, mongodb::error::Error> {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + self.ttl.as_millis() as i64);
        let renewed = self
            .coll
            .update_one(doc! { "_id": &self.name, "owner": self.owner }, doc! { "$set": { "expiresAt": expires } })
            .await?;
        if renewed.matched_count == 1 {
            return Ok(true);
        }
        for _ in 0..2 {
            match self.coll.insert_one(doc! { "_id": &self.name, "owner": self.owner, "expiresAt": expires }).await {
                Ok(_) => return Ok(true),
                Err(e) if is_duplicate_key(&e) => {
                    let gone = self.coll.delete_one(doc! { "_id": &self.name, "expiresAt": { "$lt": now } }).await?;
                    if gone.deleted_count == 0 {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Gives the lease up (only if still ours), so a standby takes it at
    /// its next try instead of after the TTL.
    pub async fn release(&self) -> Result<(), mongodb::error::Error> {
        self.coll.delete_one(doc! { "_id": &self.name, "owner": self.owner }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_told_apart() {
        let other = mongodb::error::Error::custom("boom");
        assert!(!is_duplicate_key(&other));
    }
}
