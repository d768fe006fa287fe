//! The campaign KPI CSV import (`POST /v1/campaigns/{id}/kpis/import`):
//! arbitrary bodies give rows or a 400 naming where, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use schemas::campaign::Campaign;

fn campaign() -> &'static Campaign {
    static C: OnceLock<Campaign> = OnceLock::new();
    C.get_or_init(|| {
        let now = bson::DateTime::from_millis(1_767_225_600_000); // 2026-01-01
        bson::from_document(bson::doc! {
            "_id": bson::oid::ObjectId::new(), "clientId": bson::oid::ObjectId::new(), "name": "c",
            "status": "active", "kind": "release", "startDate": now,
            "endDate": bson::DateTime::from_millis(1_798_675_200_000), "createdAt": now, "updatedAt": now,
        })
        .expect("campaign")
    })
}

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    match api::campaigns::parse_kpi_csv(campaign(), &body) {
        Ok(rows) => assert!(!rows.is_empty() && rows.len() <= api::campaigns::IMPORT_MAX_LINES),
        Err(e) => assert_eq!(e.status().as_u16(), 400, "{e}"),
    }
});
