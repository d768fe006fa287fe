//! Data lifecycle: retention per tenant and erasure of one visitor (GDPR,
//! seed 002 "droit à l'oubli").
//!
//! Both delete from ClickHouse with `ALTER TABLE ... DELETE` (a mutation:
//! asynchronous, so we wait for `system.mutations` to report it done), and
//! both keep the rollups true: retention deletes the rollups of the windows
//! it removes (and re-merges the blocks of days across its cutoff,
//! [`crate::spans`]); erasure re-rolls every window the visitor's events were in,
//! which lowers (or zeroes) their counts, then refreshes the link counters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::clickhouse::EVENTS_WRITTEN_TABLE;
use schemas::mongo::collections;
use serde::Deserialize;

use crate::Stores;
use crate::{Grain, RollConfig, RollupError};

/// Who to erase: the first-party cookie id, or the visitor hash of the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visitor {
    /// `events.visitor_id` (the `sl_vid` cookie).
    Cookie(String),
    /// `events.visitor_hash`.
    Hash(u64),
}

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Events deleted.
    pub events: u64,
    /// Windows re-rolled (hours and days).
    pub windows: usize,
}

/// Waits until no mutation of `db` is pending, polling `system.mutations`
/// every 100 ms for at most `timeout`; [`RollupError::MutationTimeout`]
/// when some are still running then (the caller's re-roll would read rows
/// the mutation has not deleted yet).
async fn wait_mutations(stores: &Stores, timeout: Duration) -> Result<(), RollupError> {
    enum Poll {
        Pending(u64),
        Failed(RollupError),
    }
    let every = Duration::from_millis(100);
    let check = || async {
        let pending: u64 = stores
            .ch
            .query(&format!(
                "SELECT count() FROM {} WHERE database = ? AND is_done = 0",
                stores.topology.mutations_source()
            ))
            .bind(&stores.ch_db)
            .fetch_one()
            .await
            .map_err(|e| Poll::Failed(e.into()))?;
        if pending == 0 {
            Ok(())
        } else {
            Err(Poll::Pending(pending))
        }
    };
    let polls = (timeout.as_millis() / every.as_millis()).max(1) as usize;
    match check
        .retry(ConstantBuilder::new().with_delay(every).with_max_times(polls))
        .when(|e| matches!(e, Poll::Pending(_)))
        .await
    {
        Ok(()) => Ok(()),
        Err(Poll::Pending(n)) => {
            Err(RollupError::MutationTimeout { pending: n, waited_ms: timeout.as_millis() as u64 })
        }
        Err(Poll::Failed(e)) => Err(e),
    }
}

fn visitor_sql(v: &Visitor) -> (&'static str, String) {
    match v {
        Visitor::Cookie(id) => ("visitor_id = ?", id.clone()),
        Visitor::Hash(h) => ("visitor_hash = toUInt64(?)", h.to_string()),
    }
}

/// [`erase_visitor_with`] with the default [`RollConfig`].
pub async fn erase_visitor(
    stores: &Stores,
    tenant_id: &str,
    visitor: &Visitor,
    now: u32,
) -> Result<Erasure, RollupError> {
    erase_visitor_with(stores, RollConfig::default(), tenant_id, visitor, now).await
}

/// Deletes every event of `visitor` in `tenant_id` and re-rolls the windows
/// they were in (rollups and states in ClickHouse, MongoDB mirrors, link
/// counters) with `cfg`. `now` is the rollups' `computed_at` (seconds, UTC).
pub async fn erase_visitor_with(
    stores: &Stores,
    cfg: RollConfig,
    tenant_id: &str,
    visitor: &Visitor,
    now: u32,
) -> Result<Erasure, RollupError> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Hit {
        hour: u32,
        link_id: String,
        n: u64,
    }
    let (cond, value) = visitor_sql(visitor);
    let hits: Vec<Hit> = stores
        .ch
        .query(&format!(
            "SELECT toUInt32(toStartOfHour(ts)) AS hour, link_id, count() AS n FROM {}.events FINAL
             WHERE tenant_id = ? AND {cond} GROUP BY hour, link_id",
            stores.ch_db
        ))
        .bind(tenant_id)
        .bind(&value)
        .fetch_all()
        .await?;
    if hits.is_empty() {
        return Ok(Erasure::default());
    }
    stores
        .ch
        .query(&format!(
            "ALTER TABLE {} DELETE WHERE tenant_id = ? AND {cond}",
            stores.topology.mutation_target(&stores.ch_db, "events")
        ))
        .bind(tenant_id)
        .bind(&value)
        .execute()
        .await?;
    wait_mutations(stores, Duration::from_secs(60)).await?;
    let mut days: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for h in &hits {
        days.entry(Grain::Day.floor(h.hour)).or_default().insert(h.hour);
    }
    let mut windows = 0;
    for (day, hours) in &days {
        let rolled = crate::roll_day(stores, cfg, *day, hours, now).await?;
        crate::mirror::mirror_day(stores, *day, now).await?;
        windows += rolled.hours + rolled.days;
    }
    let rolled: BTreeSet<u32> = days.keys().copied().collect();
    crate::spans::refresh(&stores.ch, &stores.ch_db, &rolled, now).await?;
    let state = crate::watermark::load_state(&stores.mongo).await?;
    let links: BTreeSet<String> = hits.iter().map(|h| h.link_id.clone()).collect();
    crate::refresh_link_counters(stores, links.into_iter().collect(), state.usable_spans()).await?;
    Ok(Erasure { events: hits.iter().map(|h| h.n).sum(), windows })
}

/// Deletes, for every tenant, the events and rollups older than its
/// `settings.analyticsRetentionDays` (whole UTC days before `now`). Tenants
/// sharing a retention are handled by one mutation. Returns the tenants seen.
pub async fn apply_retention(stores: &Stores, now: u32) -> Result<usize, RollupError> {
    #[derive(Deserialize)]
    struct ClientRetention {
        #[serde(rename = "_id")]
        id: ObjectId,
        #[serde(default)]
        settings: Option<Settings>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Settings {
        analytics_retention_days: Option<i64>,
    }
    let clients: Vec<ClientRetention> = stores
        .mongo
        .collection::<ClientRetention>(collections::CLIENTS)
        .find(doc! {})
        .projection(doc! { "_id": 1, "settings.analyticsRetentionDays": 1 })
        .await?
        .try_collect()
        .await?;
    let mut by_days: BTreeMap<i64, Vec<ObjectId>> = BTreeMap::new();
    let mut cutoffs = BTreeSet::new();
    for c in &clients {
        let days = c.settings.as_ref().and_then(|s| s.analytics_retention_days).unwrap_or(365).max(1);
        by_days.entry(days).or_default().push(c.id);
    }
    for (days, ids) in by_days {
        let cutoff = Grain::Day.floor(now).saturating_sub((days as u32).saturating_mul(86_400));
        let hex: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        crate::spans::delete_before(stores, &hex, cutoff).await?;
        cutoffs.insert(cutoff);
        for table in ["events", "engagements", "rollups", "rollup_states"] {
            let col = if matches!(table, "events" | "engagements") { "ts" } else { "bucket" };
            stores
                .ch
                .query(&format!(
                    "ALTER TABLE {} DELETE WHERE has(?, tenant_id) AND {col} < toDateTime(?)",
                    stores.topology.mutation_target(&stores.ch_db, table)
                ))
                .bind(&hex)
                .bind(cutoff)
                .execute()
                .await?;
        }
        let before = DateTime::from_millis(i64::from(cutoff) * 1000);
        for coll in [collections::ANALYTICS_HOURLY, collections::ANALYTICS_DAILY] {
            stores
                .mongo
                .collection::<bson::Document>(coll)
                .delete_many(doc! { "clientId": { "$in": ids.clone() }, "date": { "$lt": before } })
                .await?;
        }
    }
    // What was written when is only looked at since the watermark: two
    // weeks are plenty (an aggregator down longer re-rolls from there).
    stores
        .ch
        .query(&format!(
            "ALTER TABLE {} DELETE WHERE ingested_at < toDateTime(?)",
            stores.topology.mutation_target(&stores.ch_db, EVENTS_WRITTEN_TABLE)
        ))
        .bind(now.saturating_sub(14 * 86_400))
        .execute()
        .await?;
    wait_mutations(stores, Duration::from_secs(120)).await?;
    // Blocks of days across a cutoff are merged again from the days kept.
    crate::spans::refresh(&stores.ch, &stores.ch_db, &cutoffs, now).await?;
    Ok(clients.len())
}
