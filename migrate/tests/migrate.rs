//! Integration tests of `migrate` against the real local stack
//! (`deploy/local/up.sh`): each test uses its own database / topic names, so
//! they run in parallel and never touch the demo's data.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::config::{ClickHouseConfig, KafkaConfig, MongoConfig};
use envconfig::Envconfig;
use mongodb::bson::{oid::ObjectId, DateTime};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use schemas::clickhouse::{ConsentCode, DeviceCode, EventRow, KindCode, EVENTS_TABLE};
use schemas::event::{Attribution, Consent, EventKind, RawEvent, RAW_EVENT_VERSION};
use schemas::mongo::{self, collections, LinkMetadata, LinkStatus, Smartlink, Track};
use testkit::unique_name;
use uuid::Uuid;

fn clickhouse_config(database: &str) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::init_from_env().expect("clickhouse config");
    c.database = database.to_string();
    c
}

fn mongo_config(database: &str) -> MongoConfig {
    let mut c = MongoConfig::init_from_env().expect("mongo config");
    c.database = database.to_string();
    c
}

fn sample_row(event_id: Uuid, ingested_at: u32) -> EventRow {
    EventRow {
        event_id,
        kind: KindCode::Click,
        ts: 1_763_700_000,
        ts_ms: 1_763_700_000_123,
        tenant_id: "65f1c0ffee0000000000beef".into(),
        link_id: "65f1c0ffee0000000000cafe".into(),
        slug: "jiro-in-your-light".into(),
        host: "links.client.com".into(),
        platform: "spotify".into(),
        is_bot: 0,
        bot_reason: Default::default(),
        ip: "81.2.69.0".into(),
        visitor_hash: 0xdead_beef_cafe_f00d,
        visitor_id: Default::default(),
        session_id: 42,
        visit_number: 1,
        is_unique: 1,
        is_returning: 0,
        country: *b"GB",
        region: "England".into(),
        city: "London".into(),
        timezone: "Europe/London".into(),
        device: DeviceCode::Mobile,
        os: "iOS".into(),
        os_version: "17.1".into(),
        browser: "Safari".into(),
        browser_version: "17.1".into(),
        vendor: "Apple".into(),
        referrer: "https://l.instagram.com/".into(),
        referrer_host: "l.instagram.com".into(),
        utm_source: "instagram".into(),
        utm_medium: Default::default(),
        utm_campaign: "launch".into(),
        utm_term: Default::default(),
        utm_content: Default::default(),
        gclid: Default::default(),
        fbclid: "IwAR0".into(),
        ttclid: Default::default(),
        language: "fr".into(),
        consent: ConsentCode::Granted,
        dnt: 0,
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)".into(),
        ingested_at,
        rule_id: "iphone".into(),
        variant: "b".into(),
    }
}

#[tokio::test]
async fn clickhouse_ddl_applies_twice_and_the_row_type_round_trips_with_dedup() {
    let db = unique_name("t_ddl");
    let cfg = clickhouse_config(&db);
    let tables = migrate::apply_clickhouse(&cfg).await.expect("first apply");
    use schemas::clickhouse::{
        ENGAGEMENTS_TABLE, ENGAGEMENTS_WRITTEN_VIEW, EVENTS_WRITTEN_TABLE, EVENTS_WRITTEN_VIEW, MIGRATIONS_TABLE,
        ROLLUPS_TABLE, ROLLUP_MIRROR_TABLE, ROLLUP_SPANS_TABLE, ROLLUP_STATES_TABLE,
    };
    let expected = [
        ENGAGEMENTS_TABLE,
        ENGAGEMENTS_WRITTEN_VIEW,
        EVENTS_TABLE,
        EVENTS_WRITTEN_TABLE,
        EVENTS_WRITTEN_VIEW,
        ROLLUP_MIRROR_TABLE,
        ROLLUP_SPANS_TABLE,
        ROLLUP_STATES_TABLE,
        ROLLUPS_TABLE,
        MIGRATIONS_TABLE,
    ];
    assert_eq!(tables, expected.map(String::from));
    let again = migrate::apply_clickhouse(&cfg).await.expect("second apply is a no-op");
    assert_eq!(again, tables);

    let client = cfg.client();
    let engine: String = client
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = ?")
        .bind(&db)
        .bind(EVENTS_TABLE)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(engine, "ReplacingMergeTree");

    // The same event written twice (an at-least-once redelivery) and another event.
    let dup = Uuid::now_v7();
    let other = Uuid::now_v7();
    for (id, at) in [(dup, 1_763_700_001), (dup, 1_763_700_002), (other, 1_763_700_001)] {
        let mut insert = client.clone().with_database(&db).insert::<EventRow>(EVENTS_TABLE).await.unwrap();
        insert.write(&sample_row(id, at)).await.unwrap();
        insert.end().await.unwrap();
    }
    let raw: u64 = client.query(&format!("SELECT count() FROM {db}.{EVENTS_TABLE}")).fetch_one().await.unwrap();
    assert_eq!(raw, 3, "three inserts are three rows before any merge");
    let deduped: u64 =
        client.query(&format!("SELECT uniqExact(event_id) FROM {db}.{EVENTS_TABLE}")).fetch_one().await.unwrap();
    assert_eq!(deduped, 2);
    let final_rows: Vec<EventRow> = client
        .query(&format!("SELECT ?fields FROM {db}.{EVENTS_TABLE} FINAL ORDER BY ingested_at DESC"))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(final_rows.len(), 2, "FINAL collapses duplicates by sorting key");
    let kept = final_rows.iter().find(|r| r.event_id == dup).unwrap();
    assert_eq!(*kept, sample_row(dup, 1_763_700_002), "every column round-trips; the latest write wins");

    client.query(&format!("DROP DATABASE {db}")).execute().await.unwrap();
}

/// A database at the previous schema (the baseline `CREATE TABLE`s, no
/// migration recorded) holding events is upgraded in place: every row is
/// still there with its values, new columns read empty, each version is
/// recorded once, and a second run does nothing.
#[tokio::test]
async fn migrations_upgrade_the_previous_schema_in_place_without_losing_rows() {
    use schemas::clickhouse::{MIGRATIONS, MIGRATIONS_TABLE};
    let db = unique_name("t_upgrade");
    let cfg = clickhouse_config(&db);
    let client = cfg.client();
    let rows = 1000;
    support::previous_schema_with_events(&client, &db, &schemas::clickhouse::Topology::Single, rows).await;
    let before: Vec<String> = client
        .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
        .bind(&db)
        .bind(EVENTS_TABLE)
        .fetch_all()
        .await
        .unwrap();
    assert!(!before.contains(&"rule_id".to_string()), "the baseline has no rule column: {before:?}");
    // And rollups, which migration 2 widens.
    client
        .query(&format!(
            "INSERT INTO {db}.rollups (grain, bucket, tenant_id, link_id, views, breakdown, computed_at)
             SELECT 'hour', toDateTime(1763700000 + number * 3600, 'UTC'), 't', '', 5, '{{}}', toDateTime(1763700000, 'UTC')
             FROM system.numbers LIMIT 10"
        ))
        .execute()
        .await
        .unwrap();

    let tables = migrate::apply_clickhouse(&cfg).await.expect("upgrade");
    assert!(tables.contains(&MIGRATIONS_TABLE.to_string()), "{tables:?}");
    let (n, platforms, rules): (u64, u64, u64) = client
        .query(&format!(
            "SELECT count(), countIf(platform = 'spotify'), countIf(rule_id = '' AND variant = '') FROM {db}.{EVENTS_TABLE}"
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((n, platforms, rules), (rows, rows, rows), "every row kept, new columns empty");
    let (rollups, views, engaged): (u64, u64, u64) = client
        .query(&format!("SELECT count(), sum(views), sum(engaged_views + engaged_ms + bounces) FROM {db}.rollups"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((rollups, views, engaged), (10, 50, 0), "rollups kept, engagement columns zero");
    let recorded: Vec<u32> = client
        .query(&format!("SELECT version FROM {db}.{MIGRATIONS_TABLE} FINAL ORDER BY version"))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(recorded, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
    // Up to date: nothing to apply, nothing recorded twice.
    assert_eq!(
        migrate::apply_migrations(&client, &db, &schemas::clickhouse::Topology::Single).await.unwrap(),
        Vec::<u32>::new()
    );
    let log_rows: u64 =
        client.query(&format!("SELECT count() FROM {db}.{MIGRATIONS_TABLE}")).fetch_one().await.unwrap();
    assert_eq!(log_rows as usize, MIGRATIONS.len());

    // A run that added a column but stopped before recording its version
    // is finished by the next one instead of failing on the column.
    client.query(&format!("TRUNCATE TABLE {db}.{MIGRATIONS_TABLE}")).execute().await.unwrap();
    assert_eq!(
        migrate::apply_migrations(&client, &db, &schemas::clickhouse::Topology::Single).await.unwrap(),
        vec![1, 2]
    );
    // A row of today's type round-trips through the upgraded table.
    let id = Uuid::now_v7();
    let mut insert = client.clone().with_database(&db).insert::<EventRow>(EVENTS_TABLE).await.unwrap();
    insert.write(&sample_row(id, 1_763_700_005)).await.unwrap();
    insert.end().await.unwrap();
    let back: EventRow = client
        .query(&format!("SELECT ?fields FROM {db}.{EVENTS_TABLE} WHERE event_id = toUUID(?)"))
        .bind(id.to_string())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(back, sample_row(id, 1_763_700_005));
    client.query(&format!("DROP DATABASE {db}")).execute().await.unwrap();
}

fn link(client_id: ObjectId, slug: &str) -> Smartlink {
    let now = DateTime::now();
    Smartlink {
        id: ObjectId::new(),
        client_id,
        slug: slug.into(),
        track: Track { title: "In Your Light".into(), artist_name: "Jiro".into(), ..Default::default() },
        platforms: Default::default(),
        media: Default::default(),
        seo: Default::default(),
        routing: Default::default(),
        metadata: LinkMetadata::new(now, LinkStatus::Active),
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(
        &*e.kind,
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == 11000
    )
}

#[tokio::test]
async fn mongo_indexes_apply_twice_and_enforce_unique_slug_per_tenant() {
    let name = unique_name("t_idx");
    let db = mongo_config(&name).database().await.unwrap();
    let first = migrate::apply_mongo_indexes(&db).await.expect("first apply");
    let second = migrate::apply_mongo_indexes(&db).await.expect("second apply is a no-op");
    assert_eq!(first, second);
    for spec in mongo::INDEXES {
        let full = format!("{}.{}", spec.collection, spec.name);
        assert!(first.contains(&full), "{full} missing from {first:?}");
    }

    let links = db.collection::<Smartlink>(collections::SMARTLINKS);
    let (tenant_a, tenant_b) = (ObjectId::new(), ObjectId::new());
    links.insert_one(link(tenant_a, "jiro")).await.unwrap();
    let err = links.insert_one(link(tenant_a, "jiro")).await.expect_err("same tenant + slug must be rejected");
    assert!(is_duplicate_key(&err), "expected E11000, got {err}");
    links.insert_one(link(tenant_b, "jiro")).await.expect("another tenant may use the same slug");
    assert_eq!(links.count_documents(mongodb::bson::doc! {}).await.unwrap(), 2);

    let read: Smartlink = links
        .find_one(mongodb::bson::doc! { "clientId": tenant_b, "slug": "jiro" })
        .await
        .unwrap()
        .expect("inserted link reads back");
    assert_eq!(read.client_id, tenant_b);

    db.drop().await.unwrap();
}

#[tokio::test]
async fn kafka_topics_are_created_once_with_their_partitions_and_carry_raw_events() {
    let cfg = KafkaConfig::init_from_hashmap(&HashMap::new()).unwrap();
    let names = schemas::topics::TopicNames::with_suffix(&unique_name("t"));
    let specs = names.specs(1);
    let first = kafka_util::ensure_topics(&cfg.brokers, &specs).await.expect("create");
    assert!(first.iter().all(|t| t.created), "{first:?}");
    assert_eq!(first[0].partitions, 6);
    assert_eq!(first[1].partitions, 1);
    let second = kafka_util::ensure_topics(&cfg.brokers, &specs).await.expect("idempotent");
    assert!(second.iter().all(|t| !t.created), "{second:?}");

    // A retention changed in the specs reaches the existing topic (the raw
    // events' personal data must not outlive it).
    let retention = |specs: &[schemas::topics::TopicSpec]| {
        let mut specs = specs.to_vec();
        specs[0].config.retain(|(k, _)| *k != "retention.ms");
        specs[0].config.push(("retention.ms", "3600000".into()));
        specs
    };
    kafka_util::ensure_topics(&cfg.brokers, &retention(&specs)).await.expect("configs set");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka_util::base_config(&cfg.brokers, "test").create().unwrap();
    let described = admin
        .describe_configs(
            [&rdkafka::admin::ResourceSpecifier::Topic(&names.raw_events)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = described.into_iter().next().unwrap().unwrap();
    let entry = config.get("retention.ms").expect("retention.ms described");
    assert_eq!(entry.value.as_deref(), Some("3600000"));

    // A raw event survives the real broker byte for byte.
    let mut attribution = Attribution::default();
    attribution.set("utm_source", "tiktok");
    let event = RawEvent {
        v: RAW_EVENT_VERSION,
        event_id: Uuid::now_v7(),
        kind: EventKind::View,
        ts_ms: 1_763_700_000_000,
        tenant_id: "65f1c0ffee0000000000beef".into(),
        link_id: "65f1c0ffee0000000000cafe".into(),
        slug: "jiro".into(),
        host: "links.client.com".into(),
        path: "/jiro".into(),
        method: "GET".into(),
        platform: None,
        ip: "2001:218::1".parse().unwrap(),
        user_agent: Some("Mozilla/5.0".into()),
        accept_language: None,
        referrer: None,
        attribution,
        consent: Consent::Denied,
        dnt: true,
        visitor_id: None,
        ad_cookies: Default::default(),
        engagement: None,
        keep_full_ip: false,
        rule_id: None,
        variant: None,
    };
    let producer: FutureProducer = kafka_util::base_config(&cfg.brokers, "test").create().unwrap();
    let payload = serde_json::to_vec(&event).unwrap();
    let key = event.partition_key();
    producer
        .send(FutureRecord::to(&names.raw_events).key(&key).payload(&payload), Duration::from_secs(10))
        .await
        .expect("delivered");

    let consumer: BaseConsumer = kafka_util::base_config(&cfg.brokers, "test")
        .set("group.id", unique_name("g"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(&names.raw_events, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let received = loop {
        assert!(std::time::Instant::now() < deadline, "no record within 20 s");
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("consume");
            assert_eq!(msg.key(), Some(key.as_bytes()));
            break serde_json::from_slice::<RawEvent>(msg.payload().unwrap()).unwrap();
        }
    };
    assert_eq!(received, event);
}
