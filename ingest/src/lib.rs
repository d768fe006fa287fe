//! `ingest`: Consumes the raw topic in a consumer group, enriches events (GeoIP, user agent, bot flag, anonymised IP, visitor hash) and writes them to ClickHouse in batches, committing offsets only after the write.
//!
//! Not built yet: this crate reserves the stage's place in the workspace and
//! is filled by issue #4.
