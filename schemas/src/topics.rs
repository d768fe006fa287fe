//! Kafka topics: names, partition counts and topic configs. `migrate` creates
//! them (`migrate`); the edge produces to [`RAW_EVENTS`], ingest
//! consumes it and produces rejects to [`DEAD_LETTERS`].

/// Raw events from the edge, JSON ([`crate::event::RawEvent`]), keyed by visitor.
pub const RAW_EVENTS: &str = "smartlinks.events.raw";
/// Records ingest could not parse or validate, as received, with
/// [`dead_letter_headers`] giving the reason and origin.
pub const DEAD_LETTERS: &str = "smartlinks.events.dead-letter";
/// Partitions of the raw topic: the most ingest consumers one group can use.
pub const RAW_EVENTS_PARTITIONS: i32 = 6;
/// Partitions of the dead-letter topic (low volume, read by people).
pub const DEAD_LETTERS_PARTITIONS: i32 = 1;
/// Days Kafka keeps raw events. They hold IPs (full when a tenant keeps
/// them), user agents and visitor ids: an erasure (GDPR art. 17) deletes a
/// visitor's events from ClickHouse at once, and Kafka's copies are gone
/// after at most this many days. `migrate` sets it on existing topics too.
pub const RAW_EVENTS_RETENTION_DAYS: i64 = 7;
/// Days Kafka keeps dead letters (raw records that failed parsing, as
/// received: the same personal data), long enough to fix and replay them.
pub const DEAD_LETTERS_RETENTION_DAYS: i64 = 14;
/// The consumer group of ingest.
pub const INGEST_GROUP: &str = "smartlinks-ingest";
/// The consumer group of the forwarder (issue #19): it reads the raw topic
/// on its own offsets, so a slow ad platform never holds ingest back.
pub const FORWARDER_GROUP: &str = "smartlinks-forwarder";
/// Requests the forwarder could not deliver to an ad platform (refused, or
/// still failing after its retries): the JSON body it sent, without the
/// credential, with [`conversion_dead_letter_headers`] naming the
/// destination, the reason and the platform's answer.
pub const CONVERSION_DEAD_LETTERS: &str = "smartlinks.conversions.dead-letter";
/// Days Kafka keeps conversion dead letters (they hold IPs and user agents).
pub const CONVERSION_DEAD_LETTERS_RETENTION_DAYS: i64 = 14;

/// Header names the forwarder sets on every conversion dead letter.
pub mod conversion_dead_letter_headers {
    /// `rejected` (the platform refused it) or `abandoned` (retries exhausted).
    pub const REASON: &str = "dlq-reason";
    /// The platform (`meta`, `ga4`, `tiktok`).
    pub const PLATFORM: &str = "dlq-platform";
    /// The tenant, 24 hex digits.
    pub const TENANT: &str = "dlq-tenant";
    /// The destination, 24 hex digits.
    pub const DESTINATION: &str = "dlq-destination";
    /// The last HTTP status, decimal; absent without an answer.
    pub const STATUS: &str = "dlq-status";
    /// The platform's answer or the transport error, at most 2 KiB.
    pub const ANSWER: &str = "dlq-answer";
    /// Attempts made, decimal.
    pub const ATTEMPTS: &str = "dlq-attempts";
    /// When it was dead-lettered: ms since the Unix epoch, UTC, decimal.
    pub const TS_MS: &str = "dlq-ts-ms";
}

/// Header names ingest sets on every dead-letter record.
pub mod dead_letter_headers {
    /// Stable snake_case reason (`parse_error`, `bad_timestamp`, ...).
    pub const REASON: &str = "dlq-reason";
    /// Human-readable error text.
    pub const ERROR: &str = "dlq-error";
    /// Source topic of the rejected record.
    pub const TOPIC: &str = "dlq-source-topic";
    /// Source partition, decimal.
    pub const PARTITION: &str = "dlq-source-partition";
    /// Source offset, decimal.
    pub const OFFSET: &str = "dlq-source-offset";
    /// When ingest rejected it: ms since the Unix epoch, UTC, decimal.
    pub const TS_MS: &str = "dlq-ts-ms";
}

/// What `migrate` creates for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count (created with exactly this many; never shrunk).
    pub partitions: i32,
    /// Replication factor: 1 on the local single broker; set 3 in production.
    pub replication: i32,
    /// Topic-level configs (`retention.ms`, `compression.type`, ...).
    pub config: Vec<(&'static str, String)>,
}

/// The topic names a deployment uses; tests pick unique names per test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    /// Raw events topic, default [`RAW_EVENTS`].
    pub raw_events: String,
    /// Dead-letter topic, default [`DEAD_LETTERS`].
    pub dead_letters: String,
    /// Conversion dead-letter topic, default [`CONVERSION_DEAD_LETTERS`].
    pub conversion_dead_letters: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            raw_events: RAW_EVENTS.into(),
            dead_letters: DEAD_LETTERS.into(),
            conversion_dead_letters: CONVERSION_DEAD_LETTERS.into(),
        }
    }
}

impl TopicNames {
    /// The default names with `.{suffix}` appended, for an isolated test.
    pub fn with_suffix(suffix: &str) -> Self {
        Self {
            raw_events: format!("{RAW_EVENTS}.{suffix}"),
            dead_letters: format!("{DEAD_LETTERS}.{suffix}"),
            conversion_dead_letters: format!("{CONVERSION_DEAD_LETTERS}.{suffix}"),
        }
    }

    /// The specs of the three topics with `replication` replicas: raw
    /// events with [`RAW_EVENTS_PARTITIONS`] partitions and
    /// [`RAW_EVENTS_RETENTION_DAYS`] of retention, dead letters with
    /// [`DEAD_LETTERS_PARTITIONS`] and [`DEAD_LETTERS_RETENTION_DAYS`],
    /// conversion dead letters with 1 partition and
    /// [`CONVERSION_DEAD_LETTERS_RETENTION_DAYS`]. All compress with lz4,
    /// as the edge produces.
    pub fn specs(&self, replication: i32) -> Vec<TopicSpec> {
        const DAY_MS: i64 = 86_400_000;
        vec![
            TopicSpec {
                name: self.raw_events.clone(),
                partitions: RAW_EVENTS_PARTITIONS,
                replication,
                config: vec![
                    ("retention.ms", (RAW_EVENTS_RETENTION_DAYS * DAY_MS).to_string()),
                    ("compression.type", "lz4".into()),
                ],
            },
            TopicSpec {
                name: self.dead_letters.clone(),
                partitions: DEAD_LETTERS_PARTITIONS,
                replication,
                config: vec![
                    ("retention.ms", (DEAD_LETTERS_RETENTION_DAYS * DAY_MS).to_string()),
                    ("compression.type", "lz4".into()),
                ],
            },
            TopicSpec {
                name: self.conversion_dead_letters.clone(),
                partitions: 1,
                replication,
                config: vec![
                    ("retention.ms", (CONVERSION_DEAD_LETTERS_RETENTION_DAYS * DAY_MS).to_string()),
                    ("compression.type", "lz4".into()),
                ],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_have_explicit_partitions() {
        let specs = TopicNames::default().specs(1);
        assert_eq!(specs[0].name, RAW_EVENTS);
        assert_eq!(specs[0].partitions, 6);
        assert_eq!(specs[1].name, DEAD_LETTERS);
        assert_eq!(specs[1].partitions, 1);
        let t = TopicNames::with_suffix("t1");
        assert_eq!(t.raw_events, "smartlinks.events.raw.t1");
    }
}
