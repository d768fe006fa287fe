//! The rollup watermark: the row write time (`events.ingested_at`, Unix
//! seconds) up to which rows are rolled, kept in MongoDB `aggregator_state`
//! under `_id: "rollups"` so a restarted aggregator resumes where it stopped
//! and the api knows which windows are closed.

use bson::doc;

/// Collection holding the watermark.
pub const COLLECTION: &str = "aggregator_state";

/// Reads the persisted watermark (Unix seconds; 0 when none).
pub async fn load(mongo: &mongodb::Database) -> Result<u32, mongodb::error::Error> {
    let d = mongo.collection::<bson::Document>(COLLECTION).find_one(doc! { "_id": "rollups" }).await?;
    Ok(d.and_then(|d| d.get("watermark").and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))).unwrap_or(0)
        as u32)
}

/// Persists the watermark `w` (Unix seconds) in `aggregator_state`.
pub async fn save(mongo: &mongodb::Database, w: u32) -> Result<(), mongodb::error::Error> {
    mongo
        .collection::<bson::Document>(COLLECTION)
        .replace_one(doc! { "_id": "rollups" }, doc! { "_id": "rollups", "watermark": i64::from(w) })
        .upsert(true)
        .await?;
    Ok(())
}
