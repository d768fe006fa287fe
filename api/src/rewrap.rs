//! `api rewrap-pii`: rewrites every stored personal-data ciphertext that
//! is not bound to its place or not under the current key, as a bound
//! value under the current key ([`crypto`], security review finding
//! 17). Run once after upgrading from `enc:v1:` values (they are refused
//! from then on), and after putting a new key first in `API_PII_KEYS`
//! (then the old key can be dropped once a run finds nothing left).
//!
//! Each value is rewritten with a compare-and-set (`$set` where the field
//! still holds the value read), so a run is safe beside a serving API and
//! beside another run; a value changed meanwhile is counted as raced and
//! left to the next run. Idempotent: a second run finds nothing to do.

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use schemas::mongo::collections;

use crypto::{CryptoError, Field, Pii};

/// Where ciphertexts are stored: the field holding them (a string, or an
/// array of strings), and the [`Field`] name they are bound to (with the
/// document's `_id`).
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// The collection.
    pub collection: &'static str,
    /// The BSON path of the value (`auth.emailEnc`).
    pub path: &'static str,
    /// The [`Field::name`] the value is bound to (`email`).
    pub field: &'static str,
}

const fn place(collection: &'static str, path: &'static str, field: &'static str) -> Place {
    Place { collection, path, field }
}

/// Every place the API stores a ciphertext (the `*_enc` fields of
/// `schemas`), with the binding the code that writes it uses.
pub const PLACES: [Place; 17] = [
    place(collections::USERS, "auth.emailEnc", "email"),
    place(collections::USERS, "auth.totpSecretEnc", "totp_secret"),
    place(collections::USERS, "auth.totpPendingEnc", "totp_secret"),
    place(collections::LEADS, "personal.emailEnc", "email"),
    place(collections::LEADS, "personal.phoneEnc", "phone"),
    place(collections::LEADS, "personal.addressEnc", "address"),
    place(collections::CONTACTS, "person.emailEnc", "email"),
    place(collections::CONTACTS, "person.phoneEnc", "phone"),
    place(collections::CONTACTS, "person.addressEnc", "address"),
    place(collections::INVOICES, "client.emailEnc", "client.email"),
    place(collections::INVOICES, "client.addressEnc", "client.address"),
    place(collections::CONSENTS, "emailEnc", "email"),
    place(collections::NEWSLETTER_SUBSCRIBERS, "emailEnc", "email"),
    place(collections::EMAIL_LOGS, "toEnc", "to"),
    place(collections::ALERT_SETTINGS, "emailsEnc", "emails"),
    place(collections::ALERT_SETTINGS, "webhookSecretEnc", "webhook_secret"),
    place(collections::ALERT_DELIVERIES, "targetEnc", "target"),
];

/// What a run did at one place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Documents whose value was rewritten.
    pub rewritten: u64,
    /// Documents changed between the read and the write: left to the next run.
    pub raced: u64,
    /// Documents whose value does not decrypt (corrupt, another place's,
    /// or under a key no longer configured): left as they are.
    pub failed: u64,
}

/// Errors of a run: the store failed (the run can be repeated).
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// MongoDB failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// No randomness for new nonces.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The value at dotted `path` of `d`.
fn at_path<'a>(d: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = d.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_document()?.get(p)?;
    }
    Some(cur)
}

/// `v` (a ciphertext, or an array of them) rewritten for `field` under the
/// current key; `None` when nothing in it is stale. Values that do not
/// decrypt are errors.
fn rewritten(pii: &Pii, v: &Bson, field: Field<'_>) -> Result<Option<Bson>, CryptoError> {
    let one = |s: &str| -> Result<Option<String>, CryptoError> {
        if pii.needs_rewrap(s) {
            Ok(Some(pii.encrypt(&pii.decrypt(s, field)?, field)?))
        } else {
            Ok(None)
        }
    };
    match v {
        Bson::String(s) => Ok(one(s)?.map(Bson::String)),
        Bson::Array(items) => {
            let mut changed = false;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str().map(one).transpose()?.flatten() {
                    Some(new) => {
                        changed = true;
                        out.push(Bson::String(new));
                    }
                    None => out.push(item.clone()),
                }
            }
            Ok(changed.then_some(Bson::Array(out)))
        }
        _ => Ok(None),
    }
}

/// Rewrites the stale ciphertexts of one place in `db` with `pii` (which
/// reads `enc:v1:` values whatever its setting).
pub async fn place_run(db: &mongodb::Database, pii: &Pii, p: Place) -> Result<Counts, RewrapError> {
    let pii = pii.clone().with_legacy_v1(true);
    let pattern = format!("^({})", pii.rewrap_prefixes().join("|"));
    let coll = db.collection::<Document>(p.collection);
    let mut cursor = coll.find(doc! { p.path: { "$regex": pattern } }).projection(doc! { p.path: 1 }).await?;
    let mut counts = Counts::default();
    while let Some(d) = cursor.try_next().await? {
        let (Ok(id), Some(old)) = (d.get_object_id("_id"), at_path(&d, p.path)) else { continue };
        match rewritten(&pii, old, Field::new(p.collection, id, p.field)) {
            Ok(Some(new)) => {
                let r =
                    coll.update_one(doc! { "_id": id, p.path: old.clone() }, doc! { "$set": { p.path: new } }).await?;
                if r.matched_count == 1 {
                    counts.rewritten += 1;
                } else {
                    counts.raced += 1;
                }
            }
            Ok(None) => {}
            Err(CryptoError::Random(e)) => return Err(CryptoError::Random(e).into()),
            Err(e) => {
                tracing::warn!(collection = p.collection, path = p.path, id = %id, error = %e, "ciphertext left as it is");
                counts.failed += 1;
            }
        }
    }
    Ok(counts)
}

/// Rewrites every place of [`PLACES`] in `db`; returns each place's counts.
pub async fn run(db: &mongodb::Database, pii: &Pii) -> Result<Vec<(Place, Counts)>, RewrapError> {
    let mut out = Vec::with_capacity(PLACES.len());
    for p in PLACES {
        out.push((p, place_run(db, pii, p).await?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_at_dotted_paths() {
        let d = doc! { "auth": { "emailEnc": "x" }, "emailsEnc": ["a", "b"] };
        assert_eq!(at_path(&d, "auth.emailEnc"), Some(&Bson::String("x".into())));
        assert_eq!(at_path(&d, "emailsEnc").and_then(Bson::as_array).map(Vec::len), Some(2));
        assert_eq!(at_path(&d, "auth.phoneEnc"), None);
    }
}
