//! Rollups against the real ClickHouse and MongoDB-wire server: exact
//! numbers, daily uniques over the day, duplicates and bots, idempotent
//! re-rolls, late events, link counters, and zeroing after erasure.

// Helpers of an integration test fail the test by panicking, like its asserts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aggregator::Metrics;
use bson::{doc, oid::ObjectId, DateTime};
use envconfig::Envconfig;
use rollup::Stores;
use schemas::clickhouse::{DeviceCode, EventRow, KindCode, RollupRow, EVENTS_TABLE};
use schemas::mongo::{collections, LinkMetadata, LinkStatus, Rollup, Smartlink, Track};
use testkit::{eventually, unique_name};

const DAY: u32 = 1_763_683_200; // 2025-11-21T00:00:00Z
const H10: u32 = DAY + 10 * 3600;
const H11: u32 = DAY + 11 * 3600;

struct T {
    stores: Stores,
    tenant: ObjectId,
    link_a: ObjectId,
    link_b: ObjectId,
}

async fn setup() -> T {
    let name = unique_name("agg");
    let mut ch_cfg = common::config::ClickHouseConfig::init_from_env().unwrap();
    ch_cfg.database = name.clone();
    migrate::apply_clickhouse(&ch_cfg).await.unwrap();
    let mut m_cfg = common::config::MongoConfig::init_from_env().unwrap();
    m_cfg.database = name.clone();
    let mongo = m_cfg.database().await.unwrap();
    migrate::apply_mongo_indexes(&mongo).await.unwrap();
    let tenant = ObjectId::new();
    let (link_a, link_b) = (ObjectId::new(), ObjectId::new());
    for (id, slug) in [(link_a, "a"), (link_b, "b")] {
        let l = Smartlink {
            id,
            client_id: tenant,
            slug: slug.into(),
            track: Track { title: "T".into(), artist_name: "A".into(), ..Default::default() },
            platforms: Default::default(),
            media: Default::default(),
            seo: Default::default(),
            routing: Default::default(),
            metadata: LinkMetadata::new(DateTime::now(), LinkStatus::Active),
        };
        mongo.collection::<Smartlink>(collections::SMARTLINKS).insert_one(l).await.unwrap();
    }
    T {
        stores: Stores { ch: ch_cfg.client().with_database(&name), ch_db: name, mongo, topology: Default::default() },
        tenant,
        link_a,
        link_b,
    }
}

struct Ev {
    link: ObjectId,
    kind: KindCode,
    ts: u32,
    visitor: u64,
    session: u64,
    bot: bool,
    country: [u8; 2],
    platform: &'static str,
}

fn row(t: &T, e: &Ev, id: uuid::Uuid, ingested_at: u32) -> EventRow {
    EventRow {
        platform: e.platform.into(),
        is_bot: u8::from(e.bot),
        bot_reason: if e.bot { "crawler_ua".into() } else { Default::default() },
        country: e.country,
        device: if e.bot { DeviceCode::Bot } else { DeviceCode::Mobile },
        os: "iOS".into(),
        browser: "Safari".into(),
        referrer_host: "instagram.com".into(),
        utm_source: "ig".into(),
        ..EventRow::minimal(id, e.kind, e.ts, &t.tenant.to_hex(), &e.link.to_hex(), e.visitor, e.session, ingested_at)
    }
}

async fn insert(t: &T, rows: &[EventRow]) {
    let mut ins = t.stores.ch.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
    for r in rows {
        ins.write(r).await.unwrap();
    }
    ins.end().await.unwrap();
}

async fn daily(t: &T, link: Option<ObjectId>) -> Rollup {
    let id = rollup::rollup_id(&t.tenant.to_hex(), &link.map(|l| l.to_hex()).unwrap_or_default(), DAY);
    t.stores
        .mongo
        .collection::<Rollup>(collections::ANALYTICS_DAILY)
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .expect("daily rollup")
}

async fn hourly(t: &T, link: ObjectId, hour: u32) -> Rollup {
    let id = rollup::rollup_id(&t.tenant.to_hex(), &link.to_hex(), hour);
    t.stores
        .mongo
        .collection::<Rollup>(collections::ANALYTICS_HOURLY)
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .expect("hourly rollup")
}

fn metrics() -> Metrics {
    Metrics::register(&prometheus::Registry::new()).unwrap()
}

#[tokio::test]
async fn rollups_are_exact_idempotent_follow_late_events_and_zero_after_erasure() {
    let t = setup().await;
    let (a, b) = (t.link_a, t.link_b);
    let now = 1_900_000_000;
    let events = [
        // Visitor 1: views link A at 10h and 11h, clicks Spotify at 10h.
        Ev {
            link: a,
            kind: KindCode::View,
            ts: H10 + 60,
            visitor: 1,
            session: 11,
            bot: false,
            country: *b"GB",
            platform: "",
        },
        Ev {
            link: a,
            kind: KindCode::Click,
            ts: H10 + 90,
            visitor: 1,
            session: 11,
            bot: false,
            country: *b"GB",
            platform: "spotify",
        },
        Ev {
            link: a,
            kind: KindCode::View,
            ts: H11 + 60,
            visitor: 1,
            session: 12,
            bot: false,
            country: *b"GB",
            platform: "",
        },
        // Visitor 2: one view of A at 11h, from Japan.
        Ev {
            link: a,
            kind: KindCode::View,
            ts: H11 + 120,
            visitor: 2,
            session: 21,
            bot: false,
            country: *b"JP",
            platform: "",
        },
        // A crawler on A, and visitor 3 on link B.
        Ev {
            link: a,
            kind: KindCode::View,
            ts: H10 + 30,
            visitor: 9,
            session: 91,
            bot: true,
            country: *b"US",
            platform: "",
        },
        Ev {
            link: b,
            kind: KindCode::View,
            ts: H10 + 10,
            visitor: 3,
            session: 31,
            bot: false,
            country: [0, 0],
            platform: "",
        },
        Ev {
            link: b,
            kind: KindCode::Click,
            ts: H10 + 20,
            visitor: 3,
            session: 31,
            bot: false,
            country: [0, 0],
            platform: "deezer",
        },
    ];
    let ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let mut rows: Vec<EventRow> = events.iter().zip(&ids).map(|(e, id)| row(&t, e, *id, now)).collect();
    // The click of visitor 1 redelivered and written twice.
    rows.push(row(&t, &events[1], ids[1], now + 1));
    insert(&t, &rows).await;

    let m = metrics();
    let watermark = aggregator::pass(&t.stores, 0, &m).await.unwrap();
    assert_eq!(watermark, now + 1);

    let day_a = daily(&t, Some(a)).await;
    assert_eq!(
        (
            day_a.metrics.total_views,
            day_a.metrics.total_clicks,
            day_a.metrics.unique_visitors,
            day_a.metrics.bots,
            day_a.metrics.total_conversions
        ),
        (3, 1, 2, 1, 1),
        "duplicate click once, bot excluded, visitor 1 unique once over the day"
    );
    assert!((day_a.metrics.conversion_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(day_a.breakdown.countries.get("GB"), Some(&2));
    assert_eq!(day_a.breakdown.countries.get("JP"), Some(&1));
    assert!(!day_a.breakdown.countries.contains_key("US"), "bots not in breakdowns");
    assert_eq!(day_a.breakdown.platforms.get("spotify"), Some(&1));
    assert_eq!(day_a.breakdown.hours[10], 1);
    assert_eq!(day_a.breakdown.hours[11], 2);
    assert_eq!(day_a.breakdown.referrers.get("instagram.com"), Some(&3));
    let h10 = hourly(&t, a, H10).await;
    let h11 = hourly(&t, a, H11).await;
    assert_eq!((h10.metrics.unique_visitors, h11.metrics.unique_visitors), (1, 2), "hours count their own uniques");
    assert!(h10.breakdown.hours.is_empty(), "hour-of-day only on daily rollups");
    let day_all = daily(&t, None).await;
    assert_eq!(
        (
            day_all.metrics.total_views,
            day_all.metrics.total_clicks,
            day_all.metrics.unique_visitors,
            day_all.metrics.bots
        ),
        (4, 2, 3, 1)
    );
    assert_eq!(day_all.breakdown.platforms.get("deezer"), Some(&1));
    assert_eq!(day_all.smartlink_id, None);

    // ClickHouse rollups equal MongoDB's.
    let ch_day: Vec<RollupRow> = t
        .stores
        .ch
        .query("SELECT ?fields FROM rollups FINAL WHERE grain = 'day' ORDER BY link_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(ch_day.len(), 3);
    for r in &ch_day {
        let link = (!r.link_id.is_empty()).then(|| ObjectId::parse_str(&r.link_id).unwrap());
        let mg = daily(&t, link).await;
        assert_eq!(
            (r.views, r.clicks, r.unique_visitors, r.bots),
            (
                mg.metrics.total_views as u64,
                mg.metrics.total_clicks as u64,
                mg.metrics.unique_visitors as u64,
                mg.metrics.bots as u64
            )
        );
        assert_eq!(serde_json::from_str::<schemas::mongo::RollupBreakdown>(&r.breakdown).unwrap(), mg.breakdown);
    }

    // Link counters followed.
    let link_a: Smartlink =
        t.stores.mongo.collection(collections::SMARTLINKS).find_one(doc! { "_id": a }).await.unwrap().unwrap();
    assert_eq!((link_a.metadata.total_views, link_a.metadata.unique_visitors), (3, 2));

    // Re-running changes nothing.
    aggregator::pass(&t.stores, 0, &m).await.unwrap();
    let again = daily(&t, Some(a)).await;
    assert_eq!((again.metrics.clone(), again.breakdown.clone()), (day_a.metrics.clone(), day_a.breakdown.clone()));

    // A late event for 10h, written now: that hour and the day are re-rolled.
    let late = Ev {
        link: a,
        kind: KindCode::View,
        ts: H10 + 500,
        visitor: 4,
        session: 41,
        bot: false,
        country: *b"SE",
        platform: "",
    };
    insert(&t, &[row(&t, &late, uuid::Uuid::now_v7(), now + 100)]).await;
    let w2 = aggregator::pass(&t.stores, watermark - 120, &m).await.unwrap();
    assert_eq!(w2, now + 100);
    let day_late = daily(&t, Some(a)).await;
    assert_eq!((day_late.metrics.total_views, day_late.metrics.unique_visitors), (4, 3));
    assert_eq!(day_late.breakdown.countries.get("SE"), Some(&1));
    assert_eq!(hourly(&t, a, H10).await.metrics.total_views, 2);
    assert_eq!(hourly(&t, a, H11).await.metrics.total_views, 2, "other hours untouched");

    // Erasure of link B's only visitor: its rollups are zeroed by a re-roll.
    t.stores
        .ch
        .query(&format!("ALTER TABLE {}.events DELETE WHERE link_id = ?", t.stores.ch_db))
        .bind(b.to_hex())
        .execute()
        .await
        .unwrap();
    let db = t.stores.ch_db.clone();
    let ch = t.stores.ch.clone();
    eventually(Duration::from_secs(30), "mutation done", || {
        let (ch, db) = (ch.clone(), db.clone());
        async move {
            let pending: u64 = ch
                .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
                .bind(db)
                .fetch_one()
                .await
                .ok()?;
            (pending == 0).then_some(())
        }
    })
    .await;
    rollup::roll_day(&t.stores, rollup::RollConfig::default(), DAY, &[DAY].into(), now + 200).await.unwrap();
    rollup::mirror::mirror_day(&t.stores, DAY, now + 200).await.unwrap();
    let day_b = daily(&t, Some(b)).await;
    assert_eq!((day_b.metrics.total_views, day_b.metrics.total_clicks, day_b.metrics.unique_visitors), (0, 0, 0));
    assert_eq!(daily(&t, None).await.metrics.total_clicks, 1, "tenant-wide follows");

    t.stores.mongo.drop().await.unwrap();
    t.stores.ch.query(&format!("DROP DATABASE {}", t.stores.ch_db)).execute().await.unwrap();
}

#[tokio::test]
async fn erasure_removes_a_visitor_and_re_rolls_and_retention_drops_old_days() {
    let t = setup().await;
    let a = t.link_a;
    let now = 1_900_000_000;
    let keep = Ev {
        link: a,
        kind: KindCode::View,
        ts: H10 + 1,
        visitor: 1,
        session: 1,
        bot: false,
        country: *b"GB",
        platform: "",
    };
    let erase1 = Ev {
        link: a,
        kind: KindCode::View,
        ts: H10 + 2,
        visitor: 77,
        session: 7,
        bot: false,
        country: *b"FR",
        platform: "",
    };
    let erase2 = Ev {
        link: a,
        kind: KindCode::Click,
        ts: H11 + 2,
        visitor: 77,
        session: 7,
        bot: false,
        country: *b"FR",
        platform: "tidal",
    };
    let rows: Vec<EventRow> = [&keep, &erase1, &erase2].iter().map(|e| row(&t, e, uuid::Uuid::now_v7(), now)).collect();
    insert(&t, &rows).await;
    let m = metrics();
    aggregator::pass(&t.stores, 0, &m).await.unwrap();
    assert_eq!(daily(&t, Some(a)).await.metrics.unique_visitors, 2);

    let done = rollup::lifecycle::erase_visitor(
        &t.stores,
        &t.tenant.to_hex(),
        &rollup::lifecycle::Visitor::Hash(77),
        now + 10,
    )
    .await
    .unwrap();
    assert_eq!(done, rollup::lifecycle::Erasure { events: 2, windows: 3 });
    let left: u64 = t.stores.ch.query("SELECT count() FROM events WHERE visitor_hash = 77").fetch_one().await.unwrap();
    assert_eq!(left, 0, "the visitor's events are gone");
    let day = daily(&t, Some(a)).await;
    assert_eq!((day.metrics.total_views, day.metrics.total_clicks, day.metrics.unique_visitors), (1, 0, 1));
    assert!(!day.breakdown.countries.contains_key("FR"));
    assert_eq!(hourly(&t, a, H11).await.metrics.total_clicks, 0, "the 11h window was re-rolled to zero");

    // Retention: a tenant keeping 30 days loses events and rollups older than that.
    let client = doc! { "_id": t.tenant, "name": "T", "slug": "t", "domain": "t.test",
    "settings": { "analyticsRetentionDays": 30_i32 },
    "metadata": { "createdAt": DateTime::now(), "updatedAt": DateTime::now() } };
    t.stores.mongo.collection::<bson::Document>(collections::CLIENTS).insert_one(client).await.unwrap();
    let today = DAY + 40 * 86_400; // 40 days after the events
    let recent = Ev {
        link: a,
        kind: KindCode::View,
        ts: today - 86_400 + 5,
        visitor: 5,
        session: 5,
        bot: false,
        country: *b"GB",
        platform: "",
    };
    insert(&t, &[row(&t, &recent, uuid::Uuid::now_v7(), now + 20)]).await;
    aggregator::pass(&t.stores, now + 15, &m).await.unwrap();
    let tenants = rollup::lifecycle::apply_retention(&t.stores, today).await.unwrap();
    assert_eq!(tenants, 1);
    let events: u64 = t.stores.ch.query("SELECT count() FROM events").fetch_one().await.unwrap();
    assert_eq!(events, 1, "only the recent event is kept");
    let old = t
        .stores
        .mongo
        .collection::<Rollup>(collections::ANALYTICS_DAILY)
        .count_documents(doc! { "date": DateTime::from_millis(i64::from(DAY) * 1000) })
        .await
        .unwrap();
    assert_eq!(old, 0, "rollups of expired days are gone");
    let kept =
        t.stores.mongo.collection::<Rollup>(collections::ANALYTICS_DAILY).count_documents(doc! {}).await.unwrap();
    assert_eq!(kept, 2, "the recent day's link and tenant rollups remain");

    t.stores.mongo.drop().await.unwrap();
    t.stores.ch.query(&format!("DROP DATABASE {}", t.stores.ch_db)).execute().await.unwrap();
}

/// Issue #13 (and security finding 1): one link flooded with 20k distinct
/// 1,000-byte referrers in one hour. While MongoDB refuses that hour's
/// document, its day fails, stays pending and is counted, and another
/// tenant's day still rolls; then it rolls, with at most top N + 1
/// referrer values (each cut to 253 bytes) whose sum is the views.
#[tokio::test]
async fn a_flooded_link_still_rolls_and_never_stops_other_tenants() {
    let t = setup().await;
    let other = T { tenant: ObjectId::new(), ..setup_same(&t) };
    let now = rollup::now_s();
    let flood_day = DAY;
    let quiet_day = DAY + 86_400;
    let big = "r".repeat(980);
    let rows: Vec<EventRow> = (0..20_000u64)
        .map(|i| EventRow {
            referrer_host: format!("{i:08}.{big}.example").into(),
            ..row(&t, &view(t.link_a, H10 + (i % 3600) as u32, i), uuid::Uuid::new_v4(), now)
        })
        .collect();
    for chunk in rows.chunks(5000) {
        insert(&t, chunk).await;
    }
    insert(&other, &[row(&other, &view(other.link_b, quiet_day + 3600, 7), uuid::Uuid::new_v4(), now)]).await;

    // A MongoDB refusal of the flooded hour's document (a unique index and a
    // document it collides with) makes that day fail.
    let hourly_coll = t.stores.mongo.collection::<bson::Document>(collections::ANALYTICS_HOURLY);
    let index = doc! { "clientId": 1, "smartlinkId": 1, "metrics.totalViews": 1 };
    let unique = mongodb::options::IndexOptions::builder().unique(true).name("blocker".to_string()).build();
    hourly_coll.create_index(mongodb::IndexModel::builder().keys(index).options(unique).build()).await.unwrap();
    let blocker = doc! { "_id": "blocker", "clientId": t.tenant, "smartlinkId": t.link_a, "metrics": { "totalViews": 20_000_i64 } };
    hourly_coll.insert_one(blocker).await.unwrap();
    let report = rollup::pass_since(&t.stores, &rollup::PassConfig::unbounded(), 0, now).await.unwrap();
    assert_eq!(report.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![flood_day], "{:?}", report.failed);
    let state = rollup::watermark::load_state(&t.stores.mongo).await.unwrap();
    assert_eq!(state.mirror_pending, vec![flood_day], "the failed day is kept for the next pass");
    let quiet = rollup::rollup_id(&other.tenant.to_hex(), "", quiet_day);
    let doc = t.stores.mongo.collection::<Rollup>(collections::ANALYTICS_DAILY).find_one(doc! { "_id": quiet }).await;
    assert_eq!(doc.unwrap().expect("the other tenant's day rolled").metrics.total_views, 1);
    hourly_coll.delete_one(doc! { "_id": "blocker" }).await.unwrap();

    let m = metrics();
    let report = rollup::pass(&t.stores, &rollup::PassConfig::unbounded(), now).await.unwrap();
    m.record(&report);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!((report.pending, report.mirror_pending), (0, 0));
    let h = hourly(&t, t.link_a, H10).await;
    assert_eq!(h.metrics.total_views, 20_000);
    assert!(h.breakdown.referrers.len() <= 101, "{} referrer values", h.breakdown.referrers.len());
    assert_eq!(h.breakdown.referrers.values().sum::<i64>(), 20_000, "the other bucket keeps the sum");
    assert!(h.breakdown.referrers.keys().all(|k| k.len() <= rollup::select::MAX_VALUE_BYTES));
    let d = daily(&t, None).await;
    assert_eq!((d.metrics.total_views, d.metrics.unique_visitors), (20_000, 20_000));
    assert_eq!(d.breakdown.referrers.values().sum::<i64>(), 20_000);
    // The range merge of the states agrees with the exact per-day counter.
    let sel = rollup::Selection { tenant_id: Some(t.tenant.to_hex()), ..Default::default() };
    let pieces = rollup::states::Pieces { days: &[flood_day], ..Default::default() };
    let merged = rollup::states::distinct(&t.stores.ch, &t.stores.ch_db, &sel, pieces).await.unwrap();
    let err = (merged.visitors as f64 - 20_000.0).abs() / 20_000.0;
    assert!(err < 0.01, "HLL merge {} vs 20000", merged.visitors);

    t.stores.mongo.drop().await.unwrap();
    t.stores.ch.query(&format!("DROP DATABASE {}", t.stores.ch_db)).execute().await.unwrap();
}

/// Another tenant in the same databases as `t`.
fn setup_same(t: &T) -> T {
    T { stores: t.stores.clone(), tenant: t.tenant, link_a: ObjectId::new(), link_b: ObjectId::new() }
}

fn view(link: ObjectId, ts: u32, visitor: u64) -> Ev {
    Ev { link, kind: KindCode::View, ts, visitor, session: visitor, bot: false, country: *b"FR", platform: "" }
}

/// Issue #13: distinct counters over blocks of days (`rollup_spans`) equal
/// the merge of the day states and the exact count over raw events (small
/// counts are exact), after a roll, after an erasure across several days,
/// and after spans are rebuilt for a store that had none.
#[tokio::test]
async fn day_blocks_merge_to_the_same_distinct_counts_as_days() {
    let t = setup().await;
    let now = rollup::now_s();
    let days: Vec<u32> = (0..20).map(|i| DAY - 5 * 86_400 + i * 86_400).collect();
    // Visitor v comes back on the days i where i % (v % 4 + 1) == 0.
    let mut rows = Vec::new();
    for (i, d) in days.iter().enumerate() {
        for v in 0..40u64 {
            if (i as u64).is_multiple_of(v % 4 + 1) {
                rows.push(row(&t, &view(t.link_a, d + 3600 + v as u32, v), uuid::Uuid::new_v4(), now));
            }
        }
    }
    insert(&t, &rows).await;
    let report = rollup::pass_since(&t.stores, &rollup::PassConfig::unbounded(), 0, now).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let state = rollup::watermark::load_state(&t.stores.mongo).await.unwrap();
    assert!(state.spans, "spans are built");
    assert!(state.spans_dirty.is_empty(), "old days are re-merged once nothing is pending: {:?}", state.spans_dirty);
    let sel = rollup::Selection { tenant_id: Some(t.tenant.to_hex()), ..Default::default() };
    let distinct = |use_spans: bool| {
        let (t, sel, days) = (&t, &sel, &days);
        async move {
            let (blocks, rest) = if use_spans { rollup::spans::cover(days, &[]) } else { (Vec::new(), days.clone()) };
            if use_spans {
                assert!(blocks.len() >= 3 && rest.len() < 6, "{blocks:?} {rest:?}");
            }
            let pieces = rollup::states::Pieces { spans: &blocks, days: &rest, ..Default::default() };
            rollup::states::distinct(&t.stores.ch, &t.stores.ch_db, sel, pieces).await.unwrap()
        }
    };
    let (with, without) = (distinct(true).await, distinct(false).await);
    assert_eq!(with, without);
    assert_eq!(with.visitors, 40, "every visitor once over the 20 days");

    // Erasing visitor 0 (there every day) re-merges every block it was in.
    let erased =
        rollup::lifecycle::erase_visitor(&t.stores, &t.tenant.to_hex(), &rollup::lifecycle::Visitor::Hash(0), now + 1)
            .await
            .unwrap();
    assert_eq!(erased.events, 20);
    assert_eq!(distinct(true).await.visitors, 39);
    assert_eq!(distinct(false).await.visitors, 39);

    // A store whose day states predate spans gets them built on the next pass.
    t.stores.ch.query("TRUNCATE TABLE rollup_spans").execute().await.unwrap();
    let mut state = rollup::watermark::load_state(&t.stores.mongo).await.unwrap();
    state.spans = false;
    rollup::watermark::save_state(&t.stores.mongo, &state).await.unwrap();
    rollup::pass(&t.stores, &rollup::PassConfig::unbounded(), now + 2).await.unwrap();
    assert!(rollup::watermark::load_state(&t.stores.mongo).await.unwrap().spans);
    assert_eq!(distinct(true).await.visitors, 39);

    t.stores.mongo.drop().await.unwrap();
    t.stores.ch.query(&format!("DROP DATABASE {}", t.stores.ch_db)).execute().await.unwrap();
}
