//! The smartlink CSV import (`POST /v1/smartlinks/import`): arbitrary
//! bodies give creation requests, each built into a link or refused with a
//! 400, or the body is refused with a 400 naming where; never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use schemas::mongo::Client;

fn client() -> &'static Client {
    static C: OnceLock<Client> = OnceLock::new();
    C.get_or_init(|| {
        let now = bson::DateTime::from_millis(1_767_225_600_000); // 2026-01-01
        bson::from_document(bson::doc! {
            "_id": bson::oid::ObjectId::new(), "name": "c", "slug": "c", "domain": "links.c.test",
            "metadata": { "createdAt": now, "updatedAt": now },
        })
        .expect("client")
    })
}

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let now = bson::DateTime::from_millis(1_767_225_600_000);
    match api::links::import::parse_links_csv(&body) {
        Ok(rows) => {
            assert!(!rows.is_empty() && rows.len() <= api::links::import::IMPORT_MAX_LINES);
            for (_, dto) in &rows {
                if let Err(e) = api::links::build(dto, client(), now) {
                    assert_eq!(e.status().as_u16(), 400, "{e}");
                }
            }
        }
        Err(e) => assert_eq!(e.status().as_u16(), 400, "{e}"),
    }
});
