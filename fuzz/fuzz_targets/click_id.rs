//! Click-id tokens from landing-page links (`?eid=`): arbitrary tokens never
//! panic and never verify; a signed one verifies only for its link and
//! platform.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-click-id-key";

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let now = 1_780_000_000_000;
    if let Some((id, ts)) = edge::eid::verify(KEY, &token, "link", "spotify", now) {
        // Only a token we signed verifies: forging an 8-byte HMAC is not something a fuzzer does.
        assert_eq!(token, edge::eid::sign(KEY, &id, "link", "spotify"), "forged token accepted");
        assert!(ts <= now + 60_000);
    }
});
