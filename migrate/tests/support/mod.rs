//! Helpers of migrate's integration tests.

use schemas::clickhouse::{ddl, Topology, EVENTS_TABLE, MIGRATIONS_TABLE};

/// Creates `db` at the schema released before migrations existed (the
/// baseline `CREATE TABLE`s of `topology`, without the migrations log) and
/// writes `rows` click events of tenant `t`, link `l`, platform `spotify`,
/// one a second from 2025-11-21T04:40:00Z.
pub async fn previous_schema_with_events(client: &clickhouse::Client, db: &str, topology: &Topology, rows: u64) {
    for stmt in ddl(db, topology).iter().filter(|s| !s.contains(MIGRATIONS_TABLE)) {
        client.query(stmt).execute().await.expect("baseline DDL");
    }
    client
        .query(&format!(
            "INSERT INTO {db}.{EVENTS_TABLE} (event_id, kind, ts, tenant_id, link_id, platform, ingested_at)
             SELECT generateUUIDv4(), 'click', toDateTime(1763700000 + number, 'UTC'), 't', 'l', 'spotify',
                    toDateTime(1763700000, 'UTC')
             FROM system.numbers LIMIT {rows}"
        ))
        .execute()
        .await
        .expect("baseline events");
}
