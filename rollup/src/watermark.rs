//! The rollup state in MongoDB `aggregator_state` (`_id: "rollups"`): the
//! watermark, the row write time (`events.ingested_at`, Unix seconds) up to
//! which rows were looked at, and the days still pending: made dirty by
//! rows before the watermark but not re-rolled yet (a backlog worked off
//! over several passes, or a day whose roll failed and is retried). A
//! restarted aggregator resumes from both; the api reads windows of a
//! pending day from raw events, never from a stale rollup.

use bson::doc;
use serde::{Deserialize, Serialize};

/// Collection holding the state.
pub const COLLECTION: &str = "aggregator_state";

/// The persisted rollup state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Write time (Unix s) up to which rows were looked at; 0 when none.
    #[serde(default, deserialize_with = "int_u32")]
    pub watermark: u32,
    /// Day starts (Unix s, UTC) to re-roll whole, oldest first.
    #[serde(default)]
    pub pending: Vec<u32>,
    /// Day starts rolled in ClickHouse but not mirrored into MongoDB yet.
    #[serde(default, rename = "mirror")]
    pub mirror_pending: Vec<u32>,
    /// Rows per hour written in the overlap before the watermark, as the
    /// last pass saw them ([`crate::pass::dirty_hours`]).
    #[serde(default)]
    pub seen: Vec<SeenHour>,
    /// Whether `rollup_spans` covers every rolled day
    /// ([`crate::spans`]); false for a store from before spans, until the
    /// aggregator has built them. The api merges spans only when true.
    #[serde(default)]
    pub spans: bool,
    /// Days (starts, Unix s) rolled since their blocks of days were last
    /// re-merged: the api uses no block containing one of them. The
    /// aggregator re-merges them once no day is pending and the day is no
    /// longer fresh ([`crate::spans`]).
    #[serde(default, rename = "spans_dirty")]
    pub spans_dirty: Vec<u32>,
}

/// Rows of one hour seen by the last pass (stored as a document: the
/// MongoDB-wire server in use refuses nested arrays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHour {
    /// Hour start, Unix s.
    #[serde(rename = "h", deserialize_with = "int_u32")]
    pub hour: u32,
    /// Rows written.
    #[serde(rename = "n")]
    pub rows: i64,
}

impl State {
    /// Whether the window `[start, start + len)` (Unix s) lies in a
    /// pending day, so its rollup may miss rows.
    pub fn is_pending(&self, start: u32, len: u32) -> bool {
        overlaps_pending(&self.pending, start, len)
    }

    /// `None` when `rollup_spans` is not built; otherwise the days whose
    /// blocks must not be used ([`crate::spans::cover_if`]).
    pub fn usable_spans(&self) -> Option<&[u32]> {
        self.spans.then_some(self.spans_dirty.as_slice())
    }
}

/// Whether `[start, start + len)` (Unix s) meets one of the `pending` days
/// (day starts).
pub fn overlaps_pending(pending: &[u32], start: u32, len: u32) -> bool {
    pending.iter().any(|d| start < d + 86_400 && start + len > *d)
}

/// An integer stored as Int32 or Int64 (FerretDB returns small Int64 as Int32).
fn int_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = bson::Bson::deserialize(d)?;
    Ok(v.as_i64().or_else(|| v.as_i32().map(i64::from)).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
}

/// Reads the state (default when none).
pub async fn load_state(mongo: &mongodb::Database) -> Result<State, mongodb::error::Error> {
    let d = mongo.collection::<bson::Document>(COLLECTION).find_one(doc! { "_id": "rollups" }).await?;
    Ok(d.and_then(|d| bson::from_document(d).ok()).unwrap_or_default())
}

/// Reads the watermark alone (Unix seconds; 0 when none).
pub async fn load(mongo: &mongodb::Database) -> Result<u32, mongodb::error::Error> {
    Ok(load_state(mongo).await?.watermark)
}

/// Persists `state` (watermark and pending days together, so a crash never
/// separates them).
pub async fn save_state(mongo: &mongodb::Database, state: &State) -> Result<(), mongodb::error::Error> {
    let pending: Vec<i64> = state.pending.iter().map(|d| i64::from(*d)).collect();
    let mirror: Vec<i64> = state.mirror_pending.iter().map(|d| i64::from(*d)).collect();
    let seen: Vec<bson::Document> = state.seen.iter().map(|s| doc! { "h": i64::from(s.hour), "n": s.rows }).collect();
    let spans_dirty: Vec<i64> = state.spans_dirty.iter().map(|d| i64::from(*d)).collect();
    mongo
        .collection::<bson::Document>(COLLECTION)
        .replace_one(
            doc! { "_id": "rollups" },
            doc! {
                "_id": "rollups", "watermark": i64::from(state.watermark), "pending": pending, "mirror": mirror,
                "seen": seen, "spans": state.spans, "spans_dirty": spans_dirty,
            },
        )
        .upsert(true)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_days_cover_their_windows_and_old_documents_read() {
        let s = State { watermark: 5, pending: vec![86_400], ..State::default() };
        assert!(s.is_pending(86_400 + 3600, 3600));
        assert!(s.is_pending(0, 2 * 86_400), "a range across the day");
        assert!(!s.is_pending(0, 3600));
        assert!(!s.is_pending(2 * 86_400, 86_400));
        let old: State = bson::from_document(doc! { "_id": "rollups", "watermark": 7_i32 }).unwrap();
        assert_eq!(old, State { watermark: 7, ..State::default() });
    }
}
