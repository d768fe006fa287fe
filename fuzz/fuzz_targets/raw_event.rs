//! A Kafka record as ingest decodes it (simd-json into `RawEvent`, then the
//! schema's validation) and the enrichers that read its free-text fields:
//! arbitrary bytes give an event or a dead-letter reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::enrich::parse(data, 1_780_000_000_000) {
        Ok(e) => {
            if let Some(r) = &e.referrer {
                let h = ingest::enrich::referrer_host(r);
                assert!(h.len() <= ingest::enrich::MAX_HOST_BYTES);
            }
            if let Some(l) = &e.accept_language {
                let _ = ingest::enrich::language(l);
            }
            if let Some(u) = &e.attribution.utm_source {
                assert!(ingest::enrich::utm_value(u).chars().count() <= ingest::enrich::MAX_UTM_CHARS);
            }
        }
        Err(reject) => assert!(!reject.reason.is_empty()),
    }
    // The enrichers on raw text too (they also read headers that never were JSON).
    let s = String::from_utf8_lossy(data);
    let _ = ingest::enrich::referrer_host(&s);
    let _ = ingest::enrich::language(&s);
    let _ = ingest::enrich::utm_value(&s);
});
