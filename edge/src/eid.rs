//! Click event ids issued in landing pages (the dual engine's shared id).
//!
//! A landing page knows, before the visitor clicks, the id the server will
//! record for each button's click: each button links to
//! `/{slug}/{platform}?eid={token}` and pushes the same id to `dataLayer`,
//! `fbq` and `ttq` when clicked. The token is `{uuid, 32 hex}.{mac, 16 hex}`,
//! with `mac` = HMAC-SHA256(key, uuid ‖ link id ‖ platform) cut to 8 bytes,
//! so a client cannot choose an id (or reuse one on another link or
//! platform) to overwrite or suppress someone else's event. A token older
//! than [`MAX_AGE_MS`], or one that does not verify, is ignored and the click
//! gets a fresh id.
//!
//! A click that carries a page-issued id is timed at the id's own instant
//! (the page's render, UUIDv7 ms): the events table deduplicates on
//! `(tenant_id, link_id, ts, event_id)`, so a double click, a retried request
//! or a token replayed hours later must map to the same `ts` to collapse into
//! one row instead of being counted twice (security review finding 11). It
//! also files the click in the hour of the view it came from.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a page's click ids stay valid, ms (24 h).
pub const MAX_AGE_MS: i64 = 86_400_000;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], id: &Uuid, link_id: &str, platform: &str) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(id.as_bytes());
    m.update(link_id.as_bytes());
    m.update(b"/");
    m.update(platform.as_bytes());
    m
}

/// The token for click id `id` on `link_id` / `platform`.
pub fn sign(key: &[u8], id: &Uuid, link_id: &str, platform: &str) -> String {
    let tag = mac(key, id, link_id, platform).finalize().into_bytes();
    format!("{}.{}", id.simple(), hex::encode(&tag[..8]))
}

/// The click id in `token` and its instant (ms since the Unix epoch, UTC,
/// the event's `ts`) when it verifies for `link_id` / `platform`, is a UUIDv7
/// and is at most [`MAX_AGE_MS`] old at `now_ms` (ms since the Unix epoch).
pub fn verify(key: &[u8], token: &str, link_id: &str, platform: &str, now_ms: i64) -> Option<(Uuid, i64)> {
    let (id_hex, tag_hex) = token.split_once('.')?;
    let id = Uuid::try_parse(id_hex).ok()?;
    let tag = hex::decode(tag_hex).ok()?;
    if tag.len() != 8 || id.get_version_num() != 7 {
        return None;
    }
    mac(key, &id, link_id, platform).verify_truncated_left(&tag).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let ts_ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
    (ts_ms <= now_ms + 60_000 && now_ms - ts_ms <= MAX_AGE_MS).then_some((id, ts_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }

    #[test]
    fn signed_ids_verify_only_for_their_link_and_platform() {
        let key = b"k";
        let id = Uuid::now_v7();
        let t = sign(key, &id, "link1", "spotify");
        let (got, ts) = verify(key, &t, "link1", "spotify", now()).unwrap();
        assert_eq!(got, id);
        // Replayed later, the same id keeps the same instant (one row after dedup).
        assert_eq!(verify(key, &t, "link1", "spotify", now() + 3_600_000), Some((id, ts)));
        assert!((now() - ts).abs() < 60_000, "{ts}");
        assert_eq!(verify(key, &t, "link2", "spotify", now()), None);
        assert_eq!(verify(key, &t, "link1", "deezer", now()), None);
        assert_eq!(verify(b"other", &t, "link1", "spotify", now()), None);
        assert_eq!(verify(key, &t, "link1", "spotify", now() + MAX_AGE_MS + 120_000), None);
        for bad in ["", ".", "x.y", &t[..t.len() - 1], &t.replace('.', "")] {
            assert_eq!(verify(key, bad, "link1", "spotify", now()), None, "{bad}");
        }
        let v4 = Uuid::new_v4();
        assert_eq!(verify(key, &sign(key, &v4, "l", "p"), "l", "p", now()), None);
    }
}
