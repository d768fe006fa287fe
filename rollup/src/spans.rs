//! Span states (issue #13): the distinct-count states of the day windows
//! merged over aligned blocks of 2, 4, 8, 16, 32 and 64 UTC days, in
//! ClickHouse `rollup_spans`. A range's closed days are covered by the
//! fewest blocks ([`cover`]): a 30-day overview merges about 8 states per
//! counter instead of 30, a year of link counters about 12 instead of 365.
//! A merged HyperLogLog equals the HyperLogLog of the union, so the answer
//! is the same with or without spans (see [`crate::states`] for the
//! exactness).
//!
//! ## Freshness
//! Every day a pass rolls joins `spans_dirty` in the aggregator's state
//! ([`crate::watermark::State`]); the api uses no block containing a dirty
//! day (nor a pending one), so it never reads a stale block. Once no day
//! is pending, a pass re-merges the blocks of the dirty days that are no
//! longer fresh ([`refresh`]: each block from its two halves, level 1 from
//! day states), so a month of late data re-merges each block once, and
//! today's blocks are not re-merged every pass (today is read from its
//! day and hour states). A store that has day states from before spans
//! existed gets every block built once ([`rebuild_all`], the `spans` flag).

use std::collections::BTreeSet;

use schemas::clickhouse::{HLL_PRECISION, ROLLUP_SPANS_TABLE, ROLLUP_STATES_TABLE};

use crate::RollupError;

/// Largest level: blocks of 2^6 = 64 days.
pub const MAX_LEVEL: u8 = 6;
const DAY: u32 = 86_400;

/// Length of a block of `level` (1..=[`MAX_LEVEL`]), s.
pub fn block_len(level: u8) -> u32 {
    DAY << level
}

/// The blocks `(level, start)` of every level containing one of `days`
/// (day starts, Unix s, UTC).
pub fn blocks_containing(days: impl IntoIterator<Item = u32>) -> BTreeSet<(u8, u32)> {
    let mut out = BTreeSet::new();
    for d in days {
        for level in 1..=MAX_LEVEL {
            let len = block_len(level);
            out.insert((level, d - d % len));
        }
    }
    out
}

/// Covers `days` (closed day starts, Unix s, UTC, any order) with the
/// fewest whole blocks, largest first: `(blocks (level, start), days no
/// block covers)`. A block is used only when every one of its days is in
/// `days` and none is in `avoid` (days whose blocks are not re-merged yet).
pub fn cover(days: &[u32], avoid: &[u32]) -> (Vec<(u8, u32)>, Vec<u32>) {
    let set: BTreeSet<u32> = days.iter().map(|d| d - d % DAY).collect();
    let avoid: BTreeSet<u32> = avoid.iter().map(|d| d - d % DAY).collect();
    let sorted: Vec<u32> = set.iter().copied().collect();
    let (mut blocks, mut rest) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < sorted.len() {
        let d = sorted[i];
        let level = (1..=MAX_LEVEL).rev().find(|&l| {
            let (n, len) = (1u32 << l, block_len(l));
            d.is_multiple_of(len)
                && (0..n).all(|k| set.contains(&(d + k * DAY)))
                && avoid.range(d..d + len).next().is_none()
        });
        match level {
            Some(l) => {
                blocks.push((l, d));
                i += 1 << l;
            }
            None => {
                rest.push(d);
                i += 1;
            }
        }
    }
    (blocks, rest)
}

/// [`cover`] when blocks may be used (`spans` is the days whose blocks are
/// not re-merged yet, [`crate::watermark::State::usable_spans`]); every day
/// on its own when `spans` is `None` (blocks not built).
pub fn cover_if(days: &[u32], spans: Option<&[u32]>) -> (Vec<(u8, u32)>, Vec<u32>) {
    match spans {
        Some(avoid) => cover(days, avoid),
        None => (Vec::new(), days.to_vec()),
    }
}

/// The `INSERT … SELECT` that merges the level `level` blocks whose
/// children satisfy `children` (a condition on the day states' `bucket`
/// for level 1, on the spans' `(level, start)` above, or `1` for all).
fn merge_sql(db: &str, level: u8, children: &str, now: u32) -> String {
    let (p, len) = (HLL_PRECISION, block_len(level));
    let source = if level == 1 {
        format!(
            "SELECT tenant_id, link_id, bucket AS child, visitors, returning, conversions
             FROM {db}.{ROLLUP_STATES_TABLE} FINAL WHERE grain = 'day' AND {children}"
        )
    } else {
        format!(
            "SELECT tenant_id, link_id, start AS child, visitors, returning, conversions
             FROM {db}.{ROLLUP_SPANS_TABLE} FINAL WHERE level = {} AND {children}",
            level - 1
        )
    };
    format!(
        "INSERT INTO {db}.{ROLLUP_SPANS_TABLE}
         SELECT toUInt8({level}) AS level, toDateTime(intDiv(toUInt32(child), {len}) * {len}) AS start, tenant_id,
            link_id, uniqCombinedIfMergeState({p})(visitors) AS visitors,
            uniqCombinedIfMergeState({p})(returning) AS returning,
            uniqCombinedIfMergeState({p})(conversions) AS conversions, toDateTime({now}) AS computed_at
         FROM ({source})
         GROUP BY start, tenant_id, link_id"
    )
}

/// Re-merges every block containing one of `days` (day starts, Unix s),
/// level by level from the day states (every tenant and link), with
/// `computed_at = now`: one `INSERT … SELECT` per level.
pub async fn refresh(ch: &clickhouse::Client, db: &str, days: &BTreeSet<u32>, now: u32) -> Result<(), RollupError> {
    let blocks = blocks_containing(days.iter().copied());
    for level in 1..=MAX_LEVEL {
        let half = block_len(level) / 2;
        let children: Vec<u32> =
            blocks.iter().filter(|(l, _)| *l == level).flat_map(|(_, s)| [*s, *s + half]).collect();
        let cond = if level == 1 {
            crate::buckets_sql(&children)
        } else {
            blocks_sql(&children.iter().map(|s| (level - 1, *s)).collect::<Vec<_>>())
        };
        let Some(cond) = cond else { continue };
        ch.query(&merge_sql(db, level, &cond, now)).execute().await?;
    }
    Ok(())
}

/// Builds every block of every level from all day states (a store whose
/// day states predate spans), with `computed_at = now`.
pub async fn rebuild_all(ch: &clickhouse::Client, db: &str, now: u32) -> Result<(), RollupError> {
    for level in 1..=MAX_LEVEL {
        ch.query(&merge_sql(db, level, "1", now)).execute().await?;
    }
    Ok(())
}

/// Deletes the blocks of `tenants` (hex ids) starting before `cutoff` (a
/// day start, Unix s): retention. `ALTER … DELETE` is a mutation: once it
/// and the day states' deletion are done, [`refresh`] the cutoff day to
/// merge the blocks across it again from the days kept.
pub async fn delete_before(stores: &crate::Stores, tenants: &[String], cutoff: u32) -> Result<(), RollupError> {
    let target = stores.topology.mutation_target(&stores.ch_db, ROLLUP_SPANS_TABLE);
    stores
        .ch
        .query(&format!("ALTER TABLE {target} DELETE WHERE has(?, tenant_id) AND start < toDateTime(?)"))
        .bind(tenants)
        .bind(cutoff)
        .execute()
        .await?;
    Ok(())
}

/// The SQL condition selecting the rows of `blocks` in `rollup_spans`, one
/// `(level, start)` pair each (the table's key prefix, so only their rows
/// are read); `None` when there is none.
pub fn blocks_sql(blocks: &[(u8, u32)]) -> Option<String> {
    if blocks.is_empty() {
        return None;
    }
    let any = blocks.iter().map(|(l, s)| format!("(level = {l} AND start = toDateTime({s}))")).collect::<Vec<_>>();
    Some(format!("({})", any.join(" OR ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: u32 = 20_416 * DAY; // a multiple of 64 days: 2025-11-24

    #[test]
    fn thirty_days_are_covered_by_a_few_blocks() {
        let days: Vec<u32> = (0..30).map(|i| D0 - 3 * DAY + i * DAY).collect();
        let (blocks, rest) = cover(&days, &[]);
        let covered: u32 = blocks.iter().map(|(l, _)| 1u32 << l).sum::<u32>() + rest.len() as u32;
        assert_eq!(covered, 30, "every day once");
        assert!(blocks.len() + rest.len() <= 8, "{blocks:?} {rest:?}");
        for (l, s) in &blocks {
            assert_eq!(s % block_len(*l), 0, "aligned");
        }
        // A gap (a pending day) splits the cover.
        let gap: Vec<u32> = days.iter().copied().filter(|d| *d != D0 + 4 * DAY).collect();
        let (blocks, _) = cover(&gap, &[]);
        let holds = |(l, s): &(u8, u32), d: u32| d >= *s && d < s + block_len(*l);
        assert!(blocks.iter().all(|b| !holds(b, D0 + 4 * DAY)));
        assert_eq!(cover(&[D0], &[]), (vec![], vec![D0]));
        assert_eq!(cover(&[D0 + DAY, D0], &[]).0, vec![(1, D0)]);
        // A day whose blocks are not re-merged yet is read alone, its
        // neighbours in smaller blocks.
        let (blocks, rest) = cover(&days, &[D0 + 5 * DAY]);
        assert!(blocks.iter().all(|b| !holds(b, D0 + 5 * DAY)), "{blocks:?}");
        assert!(rest.contains(&(D0 + 5 * DAY)));
    }

    #[test]
    fn a_day_is_in_one_block_per_level() {
        let b = blocks_containing([D0 + 5 * DAY]);
        assert_eq!(b.len(), MAX_LEVEL as usize);
        assert!(b.contains(&(1, D0 + 4 * DAY)));
        assert!(b.contains(&(2, D0 + 4 * DAY)));
        assert!(b.contains(&(3, D0)));
        assert_eq!(
            blocks_sql(&[(1, 2 * DAY), (3, 0)]).unwrap(),
            "((level = 1 AND start = toDateTime(172800)) OR (level = 3 AND start = toDateTime(0)))"
        );
    }
}
