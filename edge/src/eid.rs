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

/// The click id in `token` when it verifies for `link_id` / `platform`, is a
/// UUIDv7 and is at most [`MAX_AGE_MS`] old at `now_ms` (ms since the Unix epoch).
pub fn verify(key: &[u8], token: &str, link_id: &str, platform: &str, now_ms: i64) -> Option<Uuid> {
    let (id_hex, tag_hex) = token.split_once('.')?;
    let id = Uuid::try_parse(id_hex).ok()?;
    let tag = hex::decode(tag_hex).ok()?;
    if tag.len() != 8 || id.get_version_num() != 7 {
        return None;
    }
    mac(key, &id, link_id, platform).verify_truncated_left(&tag).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let ts_ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
    (ts_ms <= now_ms + 60_000 && now_ms - ts_ms <= MAX_AGE_MS).then_some(id)
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
        assert_eq!(verify(key, &t, "link1", "spotify", now()), Some(id));
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
