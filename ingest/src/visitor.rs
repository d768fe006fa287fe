//! Privacy-safe visitor identity, IP anonymisation and sessions.
//!
//! - **Visitor hash** (no cookie needed): SipHash-1-3 of (tenant, IP, user
//!   agent) keyed with a salt that rotates every UTC day. The salt is derived
//!   from a secret (HMAC-SHA256(secret, day number)) so every ingest replica
//!   computes the same hash, and it is never stored: once the day is over,
//!   nobody can recompute a visitor's hash from an IP (the approach of
//!   cookieless analytics such as Plausible).
//! - **IP anonymisation** (seed 002, GDPR): IPv4 keeps its /24, IPv6 its /48.
//! - **Sessions**: per (link, visitor), a visit ends after 30 min without an
//!   event. The edge keys Kafka records by tenant + visitor cookie or IP, so
//!   one visitor's events reach one partition, hence one ingest consumer, in
//!   order: the state lives in memory, bounded. After a restart or a
//!   rebalance the state starts empty, so a visitor may be counted once more
//!   as new on a link; rollups count uniques from the visitor keys, not from
//!   these flags.

use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip::SipHasher13;

const DAY_MS: i64 = 86_400_000;

/// `ip` anonymised: IPv4 to its /24 (`81.2.69.0`), IPv6 to its /48.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// Computes visitor hashes with the daily salt of a secret. One per
/// consumer (it keeps the last day's salt, no lock).
pub struct VisitorHasher {
    secret: Vec<u8>,
    /// (day, salt) of the last day used.
    salt: (i64, [u8; 16]),
}

impl VisitorHasher {
    /// A hasher keyed by `secret` (`INGEST_VISITOR_SECRET`).
    pub fn new(secret: &[u8]) -> Self {
        Self { secret: secret.to_vec(), salt: (i64::MIN, [0; 16]) }
    }

    fn salt(&mut self, day: i64) -> [u8; 16] {
        let g = &mut self.salt;
        if g.0 != day {
            // HMAC accepts keys of any length.
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
            m.update(b"visitor-salt:");
            m.update(&day.to_le_bytes());
            let out = m.finalize().into_bytes();
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&out[..16]);
            *g = (day, salt);
        }
        g.1
    }

    /// The visitor hash of an event at `ts_ms` (ms since the Unix epoch, UTC).
    pub fn hash(&mut self, ts_ms: i64, tenant: &str, ip: IpAddr, user_agent: &str) -> u64 {
        let salt = self.salt(ts_ms.div_euclid(DAY_MS));
        let mut h = SipHasher13::new_with_key(&salt);
        h.write(tenant.as_bytes());
        h.write_u8(0);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.write_u8(0);
        h.write(user_agent.as_bytes());
        h.finish()
    }
}

/// What [`Sessions::observe`] says of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    /// 1-based visit number of this visitor on this link.
    pub visit_number: u32,
    /// First event of this visitor on this link (as far as this consumer knows).
    pub is_unique: bool,
    /// Seen on this link before.
    pub is_returning: bool,
    /// Session id.
    pub session_id: u64,
}

#[derive(Clone, Copy)]
struct State {
    last_ms: i64,
    visit_number: u32,
    session_id: u64,
}

/// Per (link, visitor) visit state, bounded (least recently used evicted).
pub struct Sessions {
    timeout_ms: i64,
    map: quick_cache::unsync::Cache<(u64, u64), State>,
}

impl Sessions {
    /// Sessions ending after `timeout_ms` of inactivity, remembering at most
    /// `capacity` (link, visitor) pairs.
    pub fn new(timeout_ms: i64, capacity: usize) -> Self {
        Self { timeout_ms, map: quick_cache::unsync::Cache::new(capacity.max(16)) }
    }

    /// Records an event of `visitor` on `link` at `ts_ms`. Events a little
    /// out of order stay in their session.
    pub fn observe(&mut self, link: u64, visitor: u64, ts_ms: i64) -> Visit {
        let key = (link, visitor);
        let new_session = |n: u32| {
            let mut h = SipHasher13::new();
            h.write_u64(link);
            h.write_u64(visitor);
            h.write_u32(n);
            h.finish()
        };
        // One probe of the map: updated in place, or inserted through the guard.
        let first = State { last_ms: ts_ms, visit_number: 1, session_id: new_session(1) };
        let seen = match self.map.get_mut_or_guard(&key) {
            Ok(Some(mut s)) => {
                if ts_ms - s.last_ms > self.timeout_ms {
                    let n = s.visit_number + 1;
                    *s = State { last_ms: ts_ms, visit_number: n, session_id: new_session(n) };
                } else {
                    s.last_ms = s.last_ms.max(ts_ms);
                }
                Ok(*s)
            }
            // Present but not readable (not in this unsync cache): replace.
            Ok(None) => Err(false),
            Err(guard) => {
                guard.insert(first);
                Err(true)
            }
        };
        let (state, is_unique) = match seen {
            Ok(s) => (s, false),
            Err(inserted) => {
                if !inserted {
                    self.map.insert(key, first);
                }
                (first, true)
            }
        };
        Visit {
            visit_number: state.visit_number,
            is_unique,
            is_returning: state.visit_number > 1,
            session_id: state.session_id,
        }
    }
}

/// A stable 64-bit key of a string id (link id, visitor cookie).
pub fn key64(s: &str) -> u64 {
    let mut h = SipHasher13::new();
    h.write(s.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymizes_v4_to_24_and_v6_to_48() {
        assert_eq!(anonymize("81.2.69.142".parse().unwrap()).to_string(), "81.2.69.0");
        assert_eq!(anonymize("2001:db8:cafe:1:2:3:4:5".parse().unwrap()).to_string(), "2001:db8:cafe::");
    }

    #[test]
    fn visitor_hash_is_stable_within_a_day_and_rotates_across_days() {
        let mut h = VisitorHasher::new(b"secret");
        let ip: IpAddr = "81.2.69.142".parse().unwrap();
        let day = 1_763_683_200_000; // 2025-11-21T00:00:00Z
        let a = h.hash(day + 1000, "t1", ip, "ua");
        assert_eq!(a, h.hash(day + DAY_MS - 1, "t1", ip, "ua"));
        assert_ne!(a, h.hash(day + DAY_MS, "t1", ip, "ua"), "new salt the next day");
        assert_ne!(a, h.hash(day + 1000, "t2", ip, "ua"), "per tenant");
        assert_ne!(a, h.hash(day + 1000, "t1", ip, "ub"));
        assert_ne!(a, VisitorHasher::new(b"other").hash(day + 1000, "t1", ip, "ua"), "keyed by the secret");
    }

    #[test]
    fn sessions_end_after_30_minutes_of_inactivity() {
        let mut s = Sessions::new(30 * 60_000, 1000);
        let first = s.observe(1, 7, 0);
        assert_eq!((first.visit_number, first.is_unique, first.is_returning), (1, true, false));
        let same = s.observe(1, 7, 29 * 60_000);
        assert_eq!((same.visit_number, same.is_unique, same.session_id), (1, false, first.session_id));
        let late = s.observe(1, 7, 29 * 60_000 + 30 * 60_000 + 1);
        assert_eq!((late.visit_number, late.is_returning), (2, true));
        assert_ne!(late.session_id, first.session_id);
        assert!(s.observe(2, 7, 0).is_unique, "per link");
    }
}
