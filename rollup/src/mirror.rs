//! The MongoDB mirror of the rollups (`analytics_hourly`,
//! `analytics_daily`, seed 000), written from the ClickHouse `rollups`
//! rows, one UTC day at a time, in bulk and only for what changed.
//!
//! The ClickHouse rollups are the source the api reads; the mirror follows
//! them, after them, with its own queue of days (the pass mirrors the days
//! it rolled, fresh first, within a budget), so a slow MongoDB-wire server
//! never holds the dashboards back. For each rollup of the day the mirror
//! log (`rollup_mirror` in ClickHouse) says which numbers MongoDB holds:
//! unchanged rollups are skipped, rollups MongoDB never had are inserted
//! (`insert` command, a batch at a time), others replaced (one `update`
//! command with many upsert statements per batch). The log is written once
//! MongoDB took the batch, so a failed mirror is redone, never skipped.

use std::collections::HashMap;

use bson::{doc, oid::ObjectId, DateTime, Document};
use schemas::clickhouse::{MirrorRow, RollupRow, ROLLUPS_TABLE, ROLLUP_MIRROR_TABLE};
use schemas::mongo::{Rollup, RollupBreakdown};

use crate::window::{fingerprint, metrics_of, rollup_id};
use crate::{Grain, RollupError, Stores};

/// Largest batch of documents sent in one command, bytes (MongoDB's limit
/// for a command is 16 MiB).
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Largest MongoDB document, bytes (MongoDB's `maxBsonObjectSize`).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Most documents in one command.
const BATCH_DOCS: usize = 500;

/// What [`mirror_day`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mirrored {
    /// Documents inserted (new rollups).
    pub inserted: usize,
    /// Documents replaced (changed rollups).
    pub replaced: usize,
    /// Rollups skipped (MongoDB holds the same numbers).
    pub unchanged: usize,
}

/// Mirrors the hour and day rollups of the UTC day at `day` (Unix s) from
/// ClickHouse into MongoDB. `now` is `lastUpdated` (Unix s).
pub async fn mirror_day(stores: &Stores, day: u32, now: u32) -> Result<Mirrored, RollupError> {
    let day = Grain::Day.floor(day);
    let mut out = Mirrored::default();
    for (grain, lo, hi) in [(Grain::Hour, day, day + 23 * 3600), (Grain::Day, day, day)] {
        let rows: Vec<RollupRow> = stores
            .ch
            .query(&format!(
                "SELECT ?fields FROM {}.{ROLLUPS_TABLE} FINAL
                 WHERE grain = ? AND bucket >= toDateTime(?) AND bucket <= toDateTime(?)",
                stores.ch_db
            ))
            .bind(grain.name())
            .bind(lo)
            .bind(hi)
            .fetch_all()
            .await?;
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Logged {
            id: String,
            fingerprint: i64,
        }
        let logged: HashMap<String, i64> = stores
            .ch
            .query(&format!(
                "SELECT id, fingerprint FROM {}.{ROLLUP_MIRROR_TABLE} FINAL
                 WHERE grain = ? AND bucket >= toDateTime(?) AND bucket <= toDateTime(?)",
                stores.ch_db
            ))
            .bind(grain.name())
            .bind(lo)
            .bind(hi)
            .fetch_all::<Logged>()
            .await?
            .into_iter()
            .map(|l| (l.id, l.fingerprint))
            .collect();
        let (mut inserts, mut replaces, mut log) = (Batch::default(), Batch::default(), Vec::new());
        for r in rows {
            let Ok(client_id) = ObjectId::parse_str(&r.tenant_id) else { continue };
            let smartlink_id = if r.link_id.is_empty() { None } else { ObjectId::parse_str(&r.link_id).ok() };
            let breakdown: RollupBreakdown = serde_json::from_str(&r.breakdown)?;
            let metrics = metrics_of(&r);
            let fp = fingerprint(&metrics, &breakdown);
            let id = rollup_id(&r.tenant_id, &r.link_id, r.bucket);
            let known = logged.get(&id).copied();
            if known == Some(fp) {
                out.unchanged += 1;
                continue;
            }
            let doc = bson::to_document(&Rollup {
                id: id.clone(),
                date: DateTime::from_millis(i64::from(r.bucket) * 1000),
                client_id,
                smartlink_id,
                metrics,
                breakdown,
                last_updated: DateTime::from_millis(i64::from(now) * 1000),
                fingerprint: fp,
            })?;
            let size = bson::to_vec(&doc).map_or(0, |v| v.len());
            if size > MAX_DOCUMENT_BYTES {
                // What MongoDB refuses (BSONObjectTooLarge); refused here too,
                // whatever the server, so a window fails the same everywhere.
                return Err(RollupError::DocumentTooLarge { id, bytes: size });
            }
            log.push(MirrorRow {
                grain: grain.code(),
                bucket: r.bucket,
                id: id.clone(),
                fingerprint: fp,
                mirrored_at: now,
            });
            if known.is_some() {
                replaces.push(doc! { "q": { "_id": id }, "u": doc, "upsert": true }, size);
                if replaces.full() {
                    out.replaced += replaces.send(stores, grain, "update", "updates").await?;
                }
            } else {
                inserts.push(doc, size);
                if inserts.full() {
                    out.inserted += inserts.send(stores, grain, "insert", "documents").await?;
                }
            }
        }
        out.inserted += inserts.send(stores, grain, "insert", "documents").await?;
        out.replaced += replaces.send(stores, grain, "update", "updates").await?;
        if !log.is_empty() {
            let mut insert = stores.ch.insert::<MirrorRow>(ROLLUP_MIRROR_TABLE).await?;
            for l in &log {
                insert.write(l).await?;
            }
            insert.end().await?;
        }
    }
    Ok(out)
}

/// Statements (or documents) of one command, bounded in count and bytes.
#[derive(Default)]
struct Batch {
    items: Vec<Document>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, d: Document, bytes: usize) {
        self.items.push(d);
        self.bytes += bytes;
    }

    fn full(&self) -> bool {
        self.items.len() >= BATCH_DOCS || self.bytes >= BATCH_BYTES
    }

    /// Sends the batch as one `command` (`insert` or `update`) with the
    /// items under `field`, unordered; any write error fails it (a retry
    /// rewrites the day, idempotently: an insert that meets an existing
    /// `_id` is a duplicate, then replaced by the retry's log-driven path).
    async fn send(&mut self, stores: &Stores, grain: Grain, command: &str, field: &str) -> Result<usize, RollupError> {
        if self.items.is_empty() {
            return Ok(0);
        }
        let items = std::mem::take(&mut self.items);
        self.bytes = 0;
        let n = items.len();
        let reply = stores
            .mongo
            .run_command(doc! { command: grain.collection(), field: items.clone(), "ordered": false })
            .await?;
        let errors = reply.get_array("writeErrors").cloned().unwrap_or_default();
        if errors.is_empty() {
            return Ok(n);
        }
        // An insert of a document MongoDB already has (mirrored before the
        // log existed, or the log write was lost): replace it instead.
        let duplicates: Vec<usize> = errors
            .iter()
            .filter_map(|e| e.as_document())
            .filter(|e| e.get_i32("code").ok() == Some(11000))
            .filter_map(|e| e.get_i32("index").ok().and_then(|i| usize::try_from(i).ok()))
            .collect();
        if command != "insert" || duplicates.len() != errors.len() {
            return Err(RollupError::MongoWrite { failed: errors.len(), first: errors[0].to_string() });
        }
        let mut again = Batch::default();
        for i in duplicates {
            let Some(d) = items.get(i) else { continue };
            let id = d.get("_id").cloned().unwrap_or(bson::Bson::Null);
            again.push(doc! { "q": { "_id": id }, "u": d.clone(), "upsert": true }, 0);
        }
        Box::pin(again.send(stores, grain, "update", "updates")).await?;
        Ok(n)
    }
}
