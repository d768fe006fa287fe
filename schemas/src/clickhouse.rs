//! ClickHouse: the enriched event row ingest writes and the DDL that creates
//! its table.
//!
//! SQL rules: every statement here runs on ClickHouse 18.16 (the build Debian
//! ships, used locally and in CI) and on current ClickHouse. That rules out
//! `DateTime64`, `TTL`, `CODEC`, `LowCardinality` without a setting, and
//! `IF NOT EXISTS` on columns (see `../shared/docs/infra.md`). Every statement
//! is idempotent (`IF NOT EXISTS`), so `migrate` can run at every start.
//!
//! ## Why `ReplacingMergeTree` keyed by the event id
//! Ingest is at-least-once: a rebalance or a crash between the ClickHouse
//! write and the offset commit redelivers events, which are then written
//! twice. Duplicates carry the same `event_id` and the same `ts` (set by the
//! edge), so they share the sorting key and the day partition, and
//! `ReplacingMergeTree(ingested_at)` collapses them to one row at merge time
//! (keeping the latest enrichment). Merges are eventual, so every query that
//! counts reads through the dedup: `uniqExact(event_id)`, `FINAL`, or a
//! `GROUP BY event_id` subquery. The rollups (aggregator) do the same, so
//! "duplicates never inflate a count" holds before and after merges.

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};
use uuid::Uuid;

use crate::Text;

/// Default ClickHouse database.
pub const DEFAULT_DATABASE: &str = "smartlinks";
/// Table of enriched events, one row per event id after dedup.
pub const EVENTS_TABLE: &str = "events";
/// Table of hourly and daily rollups written by the aggregator.
pub const ROLLUPS_TABLE: &str = "rollups";
/// Table of the mergeable distinct-count states of each rollup window
/// ([`rollup_states_table_ddl`]).
pub const ROLLUP_STATES_TABLE: &str = "rollup_states";
/// Table of the distinct-count states of aligned blocks of 2 to 64 days,
/// merged from day states ([`rollup_spans_table_ddl`]).
pub const ROLLUP_SPANS_TABLE: &str = "rollup_spans";
/// Log of the rollups mirrored into MongoDB: key and fingerprint
/// ([`rollup_mirror_table_ddl`]).
pub const ROLLUP_MIRROR_TABLE: &str = "rollup_mirror";
/// Table of what each write to `events` touched: (write second, event hour)
/// → rows ([`events_written_table_ddl`]).
pub const EVENTS_WRITTEN_TABLE: &str = "events_written";
/// The materialized view that fills [`EVENTS_WRITTEN_TABLE`] from every
/// insert into `events`.
pub const EVENTS_WRITTEN_VIEW: &str = "events_written_mv";
/// Table of the landing pages' engagement beacons (issue #19), one row per
/// view ([`engagements_table_ddl`]).
pub const ENGAGEMENTS_TABLE: &str = "engagements";
/// The materialized view that marks the hours of engagements written as
/// dirty in [`EVENTS_WRITTEN_TABLE`], so a late beacon re-rolls its view's hour.
pub const ENGAGEMENTS_WRITTEN_VIEW: &str = "engagements_written_mv";

/// A page counts as a bounce when it was left without a click-out after
/// less than this much visible time, ms (10 s: GA4's "engaged session"
/// threshold, seed 000 `bounceRate`).
pub const BOUNCE_MS: u32 = 10_000;

/// One engagement beacon: a row of [`ENGAGEMENTS_TABLE`]. No personal data
/// (no IP, no visitor id): an erasure has nothing to delete here.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EngagementRow {
    /// The view's event id; with the view's time, the dedup key (a page
    /// reporting twice counts once: the last report wins).
    #[serde(with = "clickhouse::serde::uuid")]
    pub view_event_id: Uuid,
    /// The view's time, seconds since the Unix epoch, UTC: the engagement is
    /// counted in the view's window.
    pub ts: u32,
    /// Tenant id, 24 hex digits.
    pub tenant_id: Text,
    /// Smartlink id, 24 hex digits.
    pub link_id: Text,
    /// Time the page was visible, ms.
    pub visible_ms: u32,
    /// 1 when a platform button was clicked on the page.
    pub clicked: u8,
    /// 1 when the beacon's request was flagged as a bot's.
    pub is_bot: u8,
    /// When written, seconds since the Unix epoch, UTC (the replacing version).
    pub ingested_at: u32,
}
/// Precision of the distinct-count states: `uniqCombined(18)`, 2^18
/// HyperLogLog cells (≤ 192 KiB a state; exact below a few thousand
/// values). Relative standard error ≈ 1.04 / √2^18 ≈ 0.2%; the measured
/// error (up to 2.4% near 655k values, where the estimator switches) is
/// in `benches/README.md` (`analytics_scale`).
pub const HLL_PRECISION: u8 = 18;

/// A row of [`ROLLUP_MIRROR_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct MirrorRow {
    /// Grain of the rollup.
    pub grain: GrainCode,
    /// Window start, Unix s.
    pub bucket: u32,
    /// MongoDB `_id` of the rollup.
    pub id: String,
    /// Fingerprint of the numbers the MongoDB document holds.
    pub fingerprint: i64,
    /// When mirrored, Unix s.
    pub mirrored_at: u32,
}

/// Rollup grain as stored: `Enum8('hour' = 1, 'day' = 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum GrainCode {
    /// One UTC hour.
    Hour = 1,
    /// One UTC day.
    Day = 2,
}

/// One rollup: the counts of a tenant (`link_id` empty) or of one of its
/// links over one hour or day. A row of [`ROLLUPS_TABLE`], in DDL order.
/// Re-rolling a window writes the same key with a newer `computed_at`;
/// `ReplacingMergeTree(computed_at)` keeps the newest, read with `FINAL`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct RollupRow {
    /// Hour or day.
    pub grain: GrainCode,
    /// Start of the window, seconds since the Unix epoch, UTC.
    pub bucket: u32,
    /// Tenant.
    pub tenant_id: String,
    /// Link; empty for the tenant-wide rollup.
    pub link_id: String,
    /// Views by people (bots excluded).
    pub views: u64,
    /// Click-outs by people.
    pub clicks: u64,
    /// Distinct visitors over the whole window.
    pub unique_visitors: u64,
    /// Distinct visitors seen on the link before.
    pub returning_visitors: u64,
    /// Sessions with at least one click-out.
    pub conversions: u64,
    /// Events flagged as bots.
    pub bots: u64,
    /// Breakdowns as JSON (`schemas::mongo::RollupBreakdown`): 18.16 has no Map type.
    pub breakdown: String,
    /// When computed, seconds since the Unix epoch, UTC.
    pub computed_at: u32,
    /// Views whose page reported its engagement (consenting humans).
    /// Added by migration 2 ([`MIGRATIONS`]), as the next two.
    pub engaged_views: u64,
    /// Their visible time on page, summed, ms.
    pub engaged_ms: u64,
    /// Those left without a click-out within [`BOUNCE_MS`].
    pub bounces: u64,
}

/// Event kind as stored: `Enum8('view' = 1, 'click' = 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum KindCode {
    /// A landing-page view.
    View = 1,
    /// A click-out to a platform.
    Click = 2,
}

impl KindCode {
    /// The stored kind of a view or click; `None` for an engagement, which
    /// is not an `events` row (`engagements` holds it).
    pub fn of(k: crate::event::EventKind) -> Option<KindCode> {
        match k {
            crate::event::EventKind::View => Some(KindCode::View),
            crate::event::EventKind::Click => Some(KindCode::Click),
            crate::event::EventKind::Engagement => None,
        }
    }
}

/// Device class as stored: `Enum8('other' = 0, 'desktop' = 1, 'mobile' = 2,
/// 'tablet' = 3, 'bot' = 4)` (seed 000 `device.type`, plus `other` for what a
/// user agent does not tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum DeviceCode {
    /// Unknown or not a browser (smart TVs, consoles, libraries).
    #[default]
    Other = 0,
    /// Desktop or laptop browser.
    Desktop = 1,
    /// Phone.
    Mobile = 2,
    /// Tablet.
    Tablet = 3,
    /// Crawler, unfurler, scanner.
    Bot = 4,
}

/// Consent state as stored: `Enum8('unknown' = 0, 'granted' = 1, 'denied' = 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
pub enum ConsentCode {
    /// No answer to the banner.
    #[default]
    Unknown = 0,
    /// Accepted.
    Granted = 1,
    /// Refused.
    Denied = 2,
}

impl From<crate::event::Consent> for ConsentCode {
    fn from(c: crate::event::Consent) -> Self {
        match c {
            crate::event::Consent::Unknown => ConsentCode::Unknown,
            crate::event::Consent::Granted => ConsentCode::Granted,
            crate::event::Consent::Denied => ConsentCode::Denied,
        }
    }
}

/// One enriched event: a row of [`EVENTS_TABLE`], in the column order of
/// [`events_table_ddl`] (RowBinary is positional). Strings are empty, not
/// NULL, when unknown; `country` is `[0, 0]` when unknown.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EventRow {
    /// UUIDv7 from the edge; the dedup key.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// View or click.
    pub kind: KindCode,
    /// Event time, seconds since the Unix epoch, UTC (`DateTime('UTC')`).
    pub ts: u32,
    /// Event time, ms since the Unix epoch, UTC (sub-second order).
    pub ts_ms: u64,
    /// Tenant id, 24 hex digits.
    pub tenant_id: Text,
    /// Smartlink id, 24 hex digits.
    pub link_id: Text,
    /// Slug as stored.
    pub slug: Text,
    /// Host the request came to.
    pub host: Text,
    /// Platform id of a click; empty on views.
    pub platform: Text,
    /// 1 when flagged as a bot (crawler UA, HEAD, unfurler, scanner).
    pub is_bot: u8,
    /// Why it is a bot (`crawler_ua`, `head_request`, `unfurler`, ...); empty if not.
    pub bot_reason: Text,
    /// Client IP, anonymised (IPv4 /24, IPv6 /48) unless the tenant opted out.
    pub ip: Text,
    /// Keyed hash of (tenant, IP, user agent, daily salt): counts uniques without cookies.
    pub visitor_hash: u64,
    /// First-party visitor cookie, when the visitor consented; else empty.
    pub visitor_id: Text,
    /// Session id (30 min of inactivity ends a session).
    pub session_id: u64,
    /// 1-based number of this visitor's visit to this link.
    pub visit_number: u32,
    /// 1 on the visitor's first event on this link.
    pub is_unique: u8,
    /// 1 when the visitor was seen on this link before (visit_number > 1).
    pub is_returning: u8,
    /// ISO 3166-1 alpha-2 country code (`FixedString(2)`).
    pub country: [u8; 2],
    /// Region or subdivision name.
    pub region: Text,
    /// City name.
    pub city: Text,
    /// IANA time zone of the location.
    pub timezone: Text,
    /// Device class.
    pub device: DeviceCode,
    /// Operating system name (`iOS`, `Windows 10`).
    pub os: Text,
    /// Operating system version.
    pub os_version: Text,
    /// Browser name.
    pub browser: Text,
    /// Browser version.
    pub browser_version: Text,
    /// Browser or device vendor.
    pub vendor: Text,
    /// Full `Referer`.
    pub referrer: Text,
    /// Host of the `Referer`, lowercased, without `www.`.
    pub referrer_host: Text,
    /// `utm_source`.
    pub utm_source: Text,
    /// `utm_medium`.
    pub utm_medium: Text,
    /// `utm_campaign`.
    pub utm_campaign: Text,
    /// `utm_term`.
    pub utm_term: Text,
    /// `utm_content`.
    pub utm_content: Text,
    /// Google Ads click id.
    pub gclid: Text,
    /// Meta click id.
    pub fbclid: Text,
    /// TikTok click id.
    pub ttclid: Text,
    /// Primary language of `Accept-Language` (`fr`, `en`), lowercase; empty if none.
    pub language: Text,
    /// Cookie-consent state.
    pub consent: ConsentCode,
    /// 1 when `DNT: 1` or `Sec-GPC: 1` was sent.
    pub dnt: u8,
    /// `User-Agent` as received.
    pub user_agent: Text,
    /// When ingest's write of the row landed (set on each write attempt),
    /// seconds since the Unix epoch, UTC; the `ReplacingMergeTree` version
    /// (the latest write of a duplicate wins) and how the aggregator finds
    /// rows written since its last pass.
    pub ingested_at: u32,
    /// The routing rule that decided the visit (`smartlinks.routing.rules[].id`,
    /// or `preferred` for a remembered service); empty when none matched.
    /// Added by migration 1 ([`MIGRATIONS`]).
    pub rule_id: Text,
    /// The A/B variant the visitor was assigned within [`Self::rule_id`];
    /// empty without a split. Added by migration 1.
    pub variant: Text,
}

impl EventRow {
    /// A human event of `kind` at `ts` (Unix s, UTC) on `link_id` of
    /// `tenant_id`, by visitor `visitor_hash` in session `session_id`,
    /// written at `ingested_at`; every other column empty or zero (no
    /// country, device `Other`, consent unknown). Handy to build rows whose
    /// rollups are known (tests, benchmarks).
    #[allow(clippy::too_many_arguments, reason = "one argument per column that sets the rollup keys; the rest default")]
    pub fn minimal(
        event_id: Uuid,
        kind: KindCode,
        ts: u32,
        tenant_id: &str,
        link_id: &str,
        visitor_hash: u64,
        session_id: u64,
        ingested_at: u32,
    ) -> Self {
        EventRow {
            event_id,
            kind,
            ts,
            ts_ms: u64::from(ts) * 1000,
            tenant_id: tenant_id.into(),
            link_id: link_id.into(),
            slug: Text::default(),
            host: Text::default(),
            platform: Text::default(),
            is_bot: 0,
            bot_reason: Text::default(),
            ip: Text::default(),
            visitor_hash,
            visitor_id: Text::default(),
            session_id,
            visit_number: 1,
            is_unique: 1,
            is_returning: 0,
            country: [0, 0],
            region: Text::default(),
            city: Text::default(),
            timezone: Text::default(),
            device: DeviceCode::Other,
            os: Text::default(),
            os_version: Text::default(),
            browser: Text::default(),
            browser_version: Text::default(),
            vendor: Text::default(),
            referrer: Text::default(),
            referrer_host: Text::default(),
            utm_source: Text::default(),
            utm_medium: Text::default(),
            utm_campaign: Text::default(),
            utm_term: Text::default(),
            utm_content: Text::default(),
            gclid: Text::default(),
            fbclid: Text::default(),
            ttclid: Text::default(),
            language: Text::default(),
            consent: ConsentCode::Unknown,
            dnt: 0,
            user_agent: Text::default(),
            ingested_at,
            rule_id: Text::default(),
            variant: Text::default(),
        }
    }
}

/// Where the tables live (issue #15): one server, or a ClickHouse cluster
/// (`remote_servers` in the servers' config, ZooKeeper for replication and
/// `ON CLUSTER` DDL), chosen by config (`CLICKHOUSE_CLUSTER`).
///
/// On a cluster every table `t` is a `Replicated*MergeTree` named
/// `t_local` on each server (`/clickhouse/tables/{shard}/{database}/t`,
/// replica `{replica}`: the servers' macros) with a `Distributed` table `t`
/// in front, so that reads and inserts name `t` as on one server; the
/// materialized views read the local tables and write the local targets
/// (each replica's view fires for the blocks inserted there; replication
/// copies its output). Inserts through `Distributed` are synchronous (the
/// client sets `insert_distributed_sync`), so the rollup watermark
/// (`max(ingested_at)`) never passes rows still queued. Each table is
/// sharded by a key its duplicates share ([`Topology::shard_key`]): `FINAL`
/// deduplicates within a shard only, so a redelivered event lands on the
/// shard of its first copy and a re-rolled rollup on the shard of the row it
/// replaces. A read through `Distributed` may go to a replica a moment
/// behind the one an insert reached: the aggregator's overlap
/// (`AGGREGATOR_OVERLAP_SECS`) re-rolls the windows of rows that show up
/// after its watermark passed, so rollups stay exact while replicas lag less
/// than it. Mutations (`ALTER … DELETE`: erasure, retention) name the local
/// tables `ON CLUSTER` ([`Topology::mutation_target`]) and are awaited on
/// every replica ([`Topology::mutations_source`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Topology {
    /// One server: plain `*MergeTree` tables.
    #[default]
    Single,
    /// The cluster of that name in the servers' `remote_servers`.
    Cluster(String),
}

impl Topology {
    /// `Single` for an empty name, else the named cluster.
    pub fn from_cluster(name: &str) -> Topology {
        if name.trim().is_empty() {
            Topology::Single
        } else {
            Topology::Cluster(name.trim().to_owned())
        }
    }

    /// ` ON CLUSTER {name}`, or nothing on one server.
    pub fn on_cluster(&self) -> String {
        match self {
            Topology::Single => String::new(),
            Topology::Cluster(c) => format!(" ON CLUSTER {c}"),
        }
    }

    /// The table an `ALTER TABLE … DELETE` (or `DROP PARTITION`) names:
    /// `{database}.{table}`, or `{database}.{table}_local ON CLUSTER {name}`
    /// (a `Distributed` table has no rows to mutate).
    pub fn mutation_target(&self, database: &str, table: &str) -> String {
        match self {
            Topology::Single => format!("{database}.{table}"),
            Topology::Cluster(c) => format!("{database}.{table}_local ON CLUSTER {c}"),
        }
    }

    /// Where mutations are listed: `system.mutations`, or on a cluster
    /// every server's (`cluster('{name}', system, mutations)`): a mutation
    /// is done when every replica did it.
    pub fn mutations_source(&self) -> String {
        match self {
            Topology::Single => "system.mutations".into(),
            Topology::Cluster(c) => format!("cluster('{c}', system, mutations)"),
        }
    }

    /// The sharding key of `table` on a cluster: one its duplicates share
    /// (events and rollups by tenant and link: a redelivered event and a
    /// re-rolled window land where their first copy is).
    pub fn shard_key(table: &str) -> &'static str {
        match table {
            ROLLUP_MIRROR_TABLE => "cityHash64(id)",
            EVENTS_WRITTEN_TABLE => "cityHash64(hour)",
            MIGRATIONS_TABLE => "version",
            _ => "cityHash64(tenant_id, link_id)",
        }
    }

    /// The statements creating `table` from its one-server `CREATE TABLE
    /// IF NOT EXISTS {database}.{table} (…) ENGINE = X(args) …` statement:
    /// that statement on one server; on a cluster the replicated local
    /// table and the `Distributed` table in front, both `ON CLUSTER`.
    fn table(&self, database: &str, table: &str, single: String) -> Vec<String> {
        let Topology::Cluster(c) = self else { return vec![single] };
        let head = format!("CREATE TABLE IF NOT EXISTS {database}.{table} (");
        let local =
            single.replacen(&head, &format!("CREATE TABLE IF NOT EXISTS {database}.{table}_local ON CLUSTER {c} ("), 1);
        let local = replicated_engine(&local, &format!("/clickhouse/tables/{{shard}}/{database}/{table}"));
        vec![local, distributed_ddl(c, database, table)]
    }

    /// On a cluster, the statements making the `Distributed` table in front
    /// of `table` again with its local table's columns, after a migration
    /// changed them (ClickHouse 18.16 refuses `ALTER … ON CLUSTER` on a
    /// `Distributed` table over replicated shards; it holds no rows, inserts
    /// being synchronous, so nothing is lost); nothing on one server.
    pub fn refresh_distributed(&self, database: &str, table: &str) -> Vec<String> {
        match self {
            Topology::Single => vec![],
            Topology::Cluster(c) => vec![
                format!("DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {c}"),
                distributed_ddl(c, database, table),
            ],
        }
    }
}

/// `CREATE TABLE … AS {table}_local ENGINE = Distributed(…)` on `cluster`.
fn distributed_ddl(cluster: &str, database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{table}_local \
ENGINE = Distributed({cluster}, {database}, {table}_local, {})",
        Topology::shard_key(table)
    )
}

/// `ENGINE = XMergeTree(args)` of `stmt` as `ENGINE =
/// ReplicatedXMergeTree('{path}', '{replica}', args)`.
fn replicated_engine(stmt: &str, path: &str) -> String {
    let Some(at) = stmt.find("ENGINE = ") else { return stmt.to_owned() };
    let rest = &stmt[at + "ENGINE = ".len()..];
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else { return stmt.to_owned() };
    let (engine, args) = (&rest[..open], &rest[open + 1..close]);
    let args = if args.is_empty() { String::new() } else { format!(", {args}") };
    format!("{}ENGINE = Replicated{engine}('{path}', '{{replica}}'{args}){}", &stmt[..at], &rest[close + 1..])
}

/// `CREATE DATABASE IF NOT EXISTS {database}` (on every server of a cluster).
pub fn database_ddl(database: &str, topology: &Topology) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {database}{}", topology.on_cluster())
}

/// The `CREATE TABLE IF NOT EXISTS {database}.events` statement.
///
/// Partitioned by UTC day (`toYYYYMMDD(ts)`): retention drops whole day
/// partitions (18.16 has no TTL). Ordered by `(tenant_id, link_id, ts,
/// event_id)`: per-tenant and per-link time ranges read a contiguous range
/// of the primary index, and the trailing `event_id` makes duplicates
/// collapse (see the module docs).
pub fn events_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{EVENTS_TABLE} (
    event_id UUID,
    kind Enum8('view' = 1, 'click' = 2),
    ts DateTime('UTC'),
    ts_ms UInt64,
    tenant_id String,
    link_id String,
    slug String,
    host String,
    platform String,
    is_bot UInt8,
    bot_reason String,
    ip String,
    visitor_hash UInt64,
    visitor_id String,
    session_id UInt64,
    visit_number UInt32,
    is_unique UInt8,
    is_returning UInt8,
    country FixedString(2),
    region String,
    city String,
    timezone String,
    device Enum8('other' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4),
    os String,
    os_version String,
    browser String,
    browser_version String,
    vendor String,
    referrer String,
    referrer_host String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    gclid String,
    fbclid String,
    ttclid String,
    language String,
    consent Enum8('unknown' = 0, 'granted' = 1, 'denied' = 2),
    dnt UInt8,
    user_agent String,
    ingested_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant_id, link_id, ts, event_id)
SETTINGS index_granularity = 8192"
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.rollups` statement: monthly
/// partitions, ordered for per-tenant time ranges, in granules of 256 rows
/// (a dashboard reads tens of rows with their breakdown JSON; the mirror a
/// day of every tenant: under `FINAL` whole granules are read, so small
/// ones keep both from reading a month of breakdowns).
pub fn rollups_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{ROLLUPS_TABLE} (
    grain Enum8('hour' = 1, 'day' = 2),
    bucket DateTime('UTC'),
    tenant_id String,
    link_id String,
    views UInt64,
    clicks UInt64,
    unique_visitors UInt64,
    returning_visitors UInt64,
    conversions UInt64,
    bots UInt64,
    breakdown String,
    computed_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, grain, bucket, link_id)
SETTINGS index_granularity = 256"
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.rollup_states` statement:
/// per rollup key (same as `rollups`), the mergeable states of its distinct
/// counters, so a range merges window states instead of rescanning events:
/// visitors and returning visitors (`uniqCombinedIf(18)` over the visitor
/// key, humans only) and conversions (over the session id of click-outs).
/// The `-If` form lets the rollup SQL apply each counter's condition and an
/// empty state be written for a key that lost all its events (erasure).
/// `ReplacingMergeTree(computed_at)`: re-rolling a window replaces its row.
pub fn rollup_states_table_ddl(database: &str) -> String {
    states_table_ddl(
        database,
        ROLLUP_STATES_TABLE,
        "grain Enum8('hour' = 1, 'day' = 2),\n    bucket DateTime('UTC')",
        "bucket",
        "tenant_id, grain, bucket, link_id",
    )
}

/// A table of distinct-count states: the `window` columns, then tenant,
/// link, the three states and `computed_at` (the version of a
/// `ReplacingMergeTree`), partitioned by the month of `month_of`.
fn states_table_ddl(database: &str, table: &str, window: &str, month_of: &str, order: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} (
    {window},
    tenant_id String,
    link_id String,
    visitors AggregateFunction(uniqCombinedIf({HLL_PRECISION}), String, UInt8),
    returning AggregateFunction(uniqCombinedIf({HLL_PRECISION}), String, UInt8),
    conversions AggregateFunction(uniqCombinedIf({HLL_PRECISION}), UInt64, UInt8),
    computed_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM({month_of})
ORDER BY ({order})
SETTINGS index_granularity = 256"
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.rollup_spans` statement: the
/// states of [`ROLLUP_STATES_TABLE`] merged over aligned blocks of `2^level`
/// UTC days (`level` 1..=6: 2 to 64 days; a block starts at a multiple of
/// its length since 1970-01-01), per tenant (`link_id` empty) and link, so
/// a range's distinct counters merge a few blocks instead of a state per
/// day. `ReplacingMergeTree(computed_at)`: re-merging a block replaces it.
/// Ordered by block first: both the re-merge of a block (every key) and a
/// range's read (a few blocks of one key) read only their blocks' rows.
pub fn rollup_spans_table_ddl(database: &str) -> String {
    states_table_ddl(
        database,
        ROLLUP_SPANS_TABLE,
        "level UInt8,\n    start DateTime('UTC')",
        "start",
        "level, start, tenant_id, link_id",
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.rollup_mirror` statement: for
/// each rollup mirrored into MongoDB, the fingerprint of the numbers the
/// MongoDB document holds, so the mirror writes only what changed without
/// reading MongoDB back (a MongoDB-wire server without the right index
/// scans a collection for that).
pub fn rollup_mirror_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{ROLLUP_MIRROR_TABLE} (
    grain Enum8('hour' = 1, 'day' = 2),
    bucket DateTime('UTC'),
    id String,
    fingerprint Int64,
    mirrored_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(mirrored_at)
PARTITION BY toYYYYMM(bucket)
ORDER BY (grain, bucket, id)"
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.events_written` statement:
/// rows written to `events` per write second and event hour, summed. The
/// aggregator finds the hours made dirty since its watermark here, reading
/// a few rows instead of scanning every event's `ingested_at`.
pub fn events_written_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{EVENTS_WRITTEN_TABLE} (
    ingested_at DateTime('UTC'),
    hour DateTime('UTC'),
    rows UInt64
) ENGINE = SummingMergeTree(rows)
PARTITION BY toYYYYMM(ingested_at)
ORDER BY (ingested_at, hour)"
    )
}

/// The materialized view that feeds [`events_written_table_ddl`] from every
/// block inserted into `events` (ingest, backfills, tests alike).
pub fn events_written_view_ddl(database: &str, topology: &Topology) -> String {
    written_view_ddl(database, EVENTS_WRITTEN_VIEW, EVENTS_TABLE, topology)
}

/// `CREATE MATERIALIZED VIEW {view}`: every block inserted into `source`
/// (which has `ts` and `ingested_at`) counted into [`EVENTS_WRITTEN_TABLE`]
/// by write second and hour. On a cluster, on every server, from the local
/// table into the local target ([`Topology`]).
fn written_view_ddl(database: &str, view: &str, source: &str, topology: &Topology) -> String {
    let (on, local) = match topology {
        Topology::Single => (String::new(), ""),
        Topology::Cluster(_) => (topology.on_cluster(), "_local"),
    };
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view}{on}
TO {database}.{EVENTS_WRITTEN_TABLE}{local}
AS SELECT ingested_at, toStartOfHour(ts) AS hour, count() AS rows
FROM {database}.{source}{local}
GROUP BY ingested_at, hour"
    )
}

/// The `CREATE TABLE IF NOT EXISTS {database}.engagements` statement: day
/// partitions like `events` (retention drops them alike), ordered like
/// `events` with the view id last so a view's repeated reports collapse.
pub fn engagements_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{ENGAGEMENTS_TABLE} (
    view_event_id UUID,
    ts DateTime('UTC'),
    tenant_id String,
    link_id String,
    visible_ms UInt32,
    clicked UInt8,
    is_bot UInt8,
    ingested_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant_id, link_id, ts, view_event_id)"
    )
}

/// The materialized view feeding [`EVENTS_WRITTEN_TABLE`] from every insert
/// into `engagements` (the view's hour is dirty again).
pub fn engagements_written_view_ddl(database: &str, topology: &Topology) -> String {
    written_view_ddl(database, ENGAGEMENTS_WRITTEN_VIEW, ENGAGEMENTS_TABLE, topology)
}

/// The table recording which [`MIGRATIONS`] a database has: one row per
/// applied version.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// One change of a [`Migration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `ALTER TABLE {table} ADD COLUMN {column} {ty}`: appended after the
    /// last column (RowBinary readers list their columns by name, and
    /// [`EventRow`] keeps the same order). Existing rows read the type's
    /// default. 18.16 has no `ADD COLUMN IF NOT EXISTS`: `migrate` checks
    /// `system.columns` first, so a step interrupted before its version was
    /// recorded is not run twice.
    AddColumn {
        /// Table, without the database.
        table: &'static str,
        /// New column.
        column: &'static str,
        /// Its ClickHouse type.
        ty: &'static str,
    },
}

impl Step {
    /// The table this step changes, without the database.
    pub fn table(&self) -> &'static str {
        let Step::AddColumn { table, .. } = self;
        table
    }

    /// The table whose columns this step changes, as `system.columns` names
    /// it on a server: `{table}`, or `{table}_local` on a cluster.
    pub fn local_table(&self, topology: &Topology) -> String {
        let Step::AddColumn { table, .. } = self;
        match topology {
            Topology::Single => (*table).to_owned(),
            Topology::Cluster(_) => format!("{table}_local"),
        }
    }

    /// The statement of this step for `database`: on a cluster, the local
    /// table altered `ON CLUSTER` (then [`Topology::refresh_distributed`]).
    pub fn sql(&self, database: &str, topology: &Topology) -> String {
        let Step::AddColumn { table, column, ty } = self;
        format!("ALTER TABLE {} ADD COLUMN {column} {ty}", topology.mutation_target(database, table))
    }
}

/// A versioned, forward-only change to the tables [`ddl`] creates. The
/// `CREATE TABLE` statements stay the baseline (version 0), so a new
/// database and an upgraded one reach the same schema by the same steps;
/// `migrate` applies every version above the highest in
/// [`MIGRATIONS_TABLE`], in order, and records each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version, from 1, increasing by one.
    pub version: u32,
    /// What it does and why (the issue).
    pub name: &'static str,
    /// Its changes, in order.
    pub steps: &'static [Step],
}

/// Every migration, in version order. Never edit or remove a released one:
/// add the next version.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events: the routing rule and A/B variant of each visit (issue #18)",
        steps: &[
            Step::AddColumn { table: EVENTS_TABLE, column: "rule_id", ty: "String" },
            Step::AddColumn { table: EVENTS_TABLE, column: "variant", ty: "String" },
        ],
    },
    Migration {
        version: 2,
        name: "rollups: engaged views, their visible time and bounces (issue #19)",
        steps: &[
            Step::AddColumn { table: ROLLUPS_TABLE, column: "engaged_views", ty: "UInt64" },
            Step::AddColumn { table: ROLLUPS_TABLE, column: "engaged_ms", ty: "UInt64" },
            Step::AddColumn { table: ROLLUPS_TABLE, column: "bounces", ty: "UInt64" },
        ],
    },
];

/// `CREATE TABLE IF NOT EXISTS {database}.schema_migrations`: version,
/// name and when it was applied (UTC).
pub fn migrations_table_ddl(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE} (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version"
    )
}

/// Every statement `migrate` runs, in order, for `database` on
/// `topology`, before the [`MIGRATIONS`]: one source for one server and a
/// cluster ([`Topology`]).
pub fn ddl(database: &str, topology: &Topology) -> Vec<String> {
    let t = |table: &str, single: String| topology.table(database, table, single);
    let mut out = vec![database_ddl(database, topology)];
    out.extend(t(EVENTS_TABLE, events_table_ddl(database)));
    out.extend(t(ROLLUPS_TABLE, rollups_table_ddl(database)));
    out.extend(t(ROLLUP_STATES_TABLE, rollup_states_table_ddl(database)));
    out.extend(t(ROLLUP_SPANS_TABLE, rollup_spans_table_ddl(database)));
    out.extend(t(ROLLUP_MIRROR_TABLE, rollup_mirror_table_ddl(database)));
    out.extend(t(EVENTS_WRITTEN_TABLE, events_written_table_ddl(database)));
    out.push(events_written_view_ddl(database, topology));
    out.extend(t(ENGAGEMENTS_TABLE, engagements_table_ddl(database)));
    out.push(engagements_written_view_ddl(database, topology));
    out.extend(t(MIGRATIONS_TABLE, migrations_table_ddl(database)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_is_idempotent_and_names_the_database() {
        let stmts = ddl("db_x", &Topology::Single);
        // The database, events, rollups, states, spans, mirror log,
        // events_written and its materialized view, engagements and theirs,
        // the migrations log.
        assert_eq!(stmts.len(), 11);
        for stmt in stmts {
            assert!(stmt.contains("IF NOT EXISTS"), "{stmt}");
            assert!(stmt.contains("db_x"), "{stmt}");
        }
    }

    #[test]
    fn cluster_ddl_replicates_every_table_behind_a_distributed_one() {
        let c = Topology::Cluster("sl".into());
        let stmts = ddl("db", &c);
        // The database, 8 tables twice (local + Distributed), 2 views.
        assert_eq!(stmts.len(), 1 + 8 * 2 + 2);
        for stmt in &stmts {
            assert!(stmt.contains(" ON CLUSTER sl"), "{stmt}");
            assert!(
                !stmt.contains("ENGINE = ReplacingMergeTree") && !stmt.contains("ENGINE = SummingMergeTree"),
                "{stmt}"
            );
        }
        let events = stmts.iter().find(|s| s.contains("db.events_local ON CLUSTER sl (")).unwrap();
        assert!(events.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/events', '{replica}', ingested_at)\nPARTITION BY toYYYYMMDD(ts)"
        ), "{events}");
        assert!(stmts.contains(
            &"CREATE TABLE IF NOT EXISTS db.events ON CLUSTER sl AS db.events_local ENGINE = Distributed(sl, db, events_local, cityHash64(tenant_id, link_id))".to_owned()
        ));
        let view = stmts.iter().find(|s| s.contains(EVENTS_WRITTEN_VIEW)).unwrap();
        assert!(view.contains("TO db.events_written_local") && view.contains("FROM db.events_local"), "{view}");
        // The local tables keep the one-server columns (RowBinary is positional).
        assert_eq!(columns(events), columns(&events_table_ddl("db")));
        let step = MIGRATIONS[0].steps[0];
        assert_eq!(step.sql("db", &c), "ALTER TABLE db.events_local ON CLUSTER sl ADD COLUMN rule_id String");
        assert_eq!(step.local_table(&c), "events_local");
        assert_eq!(c.refresh_distributed("db", step.table()).len(), 2);
        assert!(Topology::Single.refresh_distributed("db", step.table()).is_empty());
        assert_eq!(c.mutation_target("db", "events"), "db.events_local ON CLUSTER sl");
        assert_eq!(c.mutations_source(), "cluster('sl', system, mutations)");
        assert_eq!(Topology::from_cluster(" "), Topology::Single);
    }

    /// Column names of a `CREATE TABLE` statement, in order.
    fn columns(ddl: &str) -> Vec<&str> {
        let body = &ddl[ddl.find('(').unwrap() + 1..ddl.find(") ENGINE").unwrap()];
        body.lines().filter_map(|l| l.split_whitespace().next()).collect()
    }

    #[test]
    fn ddl_columns_match_row_fields_in_order() {
        // RowBinary is positional: each DDL column list must follow its struct.
        // Events and rollups: the baseline table, then the columns
        // migrations append.
        let with_migrations = |ddl: String, of: &str| {
            let mut cols: Vec<String> = columns(&ddl).into_iter().map(str::to_string).collect();
            for m in MIGRATIONS {
                for Step::AddColumn { table, column, .. } in m.steps {
                    if *table == of {
                        cols.push(column.to_string());
                    }
                }
            }
            cols
        };
        assert_eq!(
            with_migrations(events_table_ddl("d"), EVENTS_TABLE),
            <EventRow as clickhouse::Row>::COLUMN_NAMES.to_vec()
        );
        assert_eq!(
            with_migrations(rollups_table_ddl("d"), ROLLUPS_TABLE),
            <RollupRow as clickhouse::Row>::COLUMN_NAMES.to_vec()
        );
        assert_eq!(columns(&engagements_table_ddl("d")), <EngagementRow as clickhouse::Row>::COLUMN_NAMES.to_vec());
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.steps.is_empty(), "{}", m.name);
        }
        assert_eq!(
            MIGRATIONS[0].steps[0].sql("db", &Topology::Single),
            "ALTER TABLE db.events ADD COLUMN rule_id String"
        );
    }

    #[test]
    fn enum_codes_serialize_as_i8() {
        assert_eq!(serde_json::to_string(&KindCode::Click).unwrap(), "2");
        assert_eq!(serde_json::to_string(&DeviceCode::Bot).unwrap(), "4");
        assert_eq!(serde_json::to_string(&ConsentCode::Denied).unwrap(), "2");
    }
}
