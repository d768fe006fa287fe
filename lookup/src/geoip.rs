//! IP → location with MaxMind DB files (`maxminddb`).
//!
//! Two record schemas are read, told apart by the database's metadata
//! (`database_type`):
//! - MaxMind GeoIP2 / GeoLite2 City (`GeoIP2-City`, `GeoLite2-City`, ...):
//!   nested `country.iso_code`, `subdivisions[0].names.en`, `city.names.en`,
//!   `location.time_zone` (what production users bring);
//! - the flat schema of ip-location-db's DB-IP Lite (`database_type` `city ipv4` / `city ipv6`):
//!   `country_code`, `state1`, `city`, `timezone` (the local demo's
//!   database, CC BY 4.0, "IP Geolocation by DB-IP").
//!
//! `maxminddb` 0.26 can panic on a corrupt file (an index out of range in
//! its pointer resolution; reproduced with MaxMind's
//! `GeoIP2-City-Test-Invalid-Node-Count.mmdb`). A lookup therefore runs under
//! `catch_unwind`: a database that panics once is marked broken, logged and
//! skipped from then on ([`GeoIp::broken`]), and the event keeps flowing.
//!
//! Several files can be configured (DB-IP ships IPv4 and IPv6 apart); a
//! lookup asks each in order until one knows the address. An IPv4-only file
//! (metadata `ip_version` 4) is never asked about an IPv6 address: the reader
//! would answer with the record of the address's first 32 bits. Files are
//! re-read when their modification time changes ([`GeoIp::reload_if_changed`]),
//! without a restart; a file that fails to load keeps the previous version.

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use maxminddb::{geoip2, Reader};
use schemas::Text;
use serde::Deserialize;

/// A location. Empty strings and `[0, 0]` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geo {
    /// ISO 3166-1 alpha-2, uppercase.
    pub country: [u8; 2],
    /// First subdivision (region, state), English name.
    pub region: Text,
    /// City, English name.
    pub city: Text,
    /// IANA time zone.
    pub timezone: Text,
}

/// Errors opening a database.
#[derive(Debug, thiserror::Error)]
#[error("geoip database {path}: {source}")]
pub struct GeoIpError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: maxminddb::MaxMindDbError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    MaxMind,
    Flat,
}

struct Db {
    reader: Reader<Vec<u8>>,
    schema: Schema,
    path: PathBuf,
    modified: Option<SystemTime>,
    /// The reader panicked on this file once: skip it until it is reloaded.
    broken: AtomicBool,
}

#[derive(Deserialize)]
struct FlatCity<'a> {
    country_code: Option<&'a str>,
    state1: Option<&'a str>,
    city: Option<&'a str>,
    timezone: Option<&'a str>,
}

/// Only the country of a MaxMind record (no allocation).
#[derive(Deserialize)]
struct MaxMindCountry<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

/// Only the country of a flat record.
#[derive(Deserialize)]
struct FlatCountry<'a> {
    country_code: Option<&'a str>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn open(path: &Path) -> Result<Db, GeoIpError> {
    let reader = Reader::open_readfile(path).map_err(|source| GeoIpError { path: path.to_path_buf(), source })?;
    let t = reader.metadata.database_type.to_ascii_lowercase();
    let schema = if t.starts_with("geoip") || t.starts_with("geolite") { Schema::MaxMind } else { Schema::Flat };
    Ok(Db { reader, schema, path: path.to_path_buf(), modified: modified(path), broken: AtomicBool::new(false) })
}

fn country_code(s: Option<&str>) -> [u8; 2] {
    match s.map(str::as_bytes) {
        Some([a, b]) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
        }
        _ => [0, 0],
    }
}

impl Db {
    /// The country alone (what routing rules ask, on the request path):
    /// decoded without allocating. `None` when the address is not in this
    /// file; with the prefix length of the network the answer holds for.
    fn country(&self, ip: IpAddr) -> Result<(Option<[u8; 2]>, usize), maxminddb::MaxMindDbError> {
        Ok(match self.schema {
            Schema::MaxMind => {
                let (c, len) = self.reader.lookup_prefix::<MaxMindCountry>(ip)?;
                (c.map(|c| country_code(c.country.and_then(|c| c.iso_code))), len)
            }
            Schema::Flat => {
                let (c, len) = self.reader.lookup_prefix::<FlatCountry>(ip)?;
                (c.map(|c| country_code(c.country_code)), len)
            }
        })
    }

    /// The location of `ip`, `None` when the address is not in this file;
    /// with the prefix length of the network the answer holds for.
    fn lookup(&self, ip: IpAddr) -> Result<(Option<Geo>, usize), maxminddb::MaxMindDbError> {
        match self.schema {
            Schema::MaxMind => {
                let (c, len) = self.reader.lookup_prefix::<geoip2::City>(ip)?;
                Ok((
                    c.map(|c| Geo {
                        country: country_code(c.country.as_ref().and_then(|c| c.iso_code)),
                        region: c
                            .subdivisions
                            .as_ref()
                            .and_then(|s| s.first())
                            .and_then(|s| s.names.as_ref())
                            .and_then(|n| n.get("en"))
                            .map(|s| Text::from(*s))
                            .unwrap_or_default(),
                        city: c
                            .city
                            .as_ref()
                            .and_then(|c| c.names.as_ref())
                            .and_then(|n| n.get("en"))
                            .map(|s| Text::from(*s))
                            .unwrap_or_default(),
                        timezone: c.location.as_ref().and_then(|l| l.time_zone).map(Text::from).unwrap_or_default(),
                    }),
                    len,
                ))
            }
            Schema::Flat => {
                let (c, len) = self.reader.lookup_prefix::<FlatCity>(ip)?;
                Ok((
                    c.map(|c| Geo {
                        country: country_code(c.country_code),
                        region: c.state1.map(Text::from).unwrap_or_default(),
                        city: c.city.map(Text::from).unwrap_or_default(),
                        timezone: c.timezone.map(Text::from).unwrap_or_default(),
                    }),
                    len,
                ))
            }
        }
    }
}

/// The `.mmdb` paths of a comma-separated list (a stage's
/// `*_GEOIP_DATABASES` setting), in order; blanks and empty items skipped.
pub fn paths(list: &str) -> Vec<PathBuf> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect()
}

/// The configured databases, swappable at run time.
pub struct GeoIp {
    dbs: ArcSwap<Vec<Arc<Db>>>,
    /// Bumped by every reload that changed a file: [`GeoCache`]s drop
    /// their answers when it moves.
    generation: AtomicU64,
}

impl GeoIp {
    /// Opens every file of `paths` (in lookup order). Errors on the first
    /// that is missing or corrupt.
    pub fn open(paths: &[PathBuf]) -> Result<Self, GeoIpError> {
        let dbs = paths.iter().map(|p| open(p).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { dbs: ArcSwap::from_pointee(dbs), generation: AtomicU64::new(0) })
    }

    /// No database: every lookup is empty.
    pub fn empty() -> Self {
        Self { dbs: ArcSwap::from_pointee(Vec::new()), generation: AtomicU64::new(0) }
    }

    /// `database_type` of each file, in order (for logs and tests).
    pub fn database_types(&self) -> Vec<String> {
        self.dbs.load().iter().map(|d| d.reader.metadata.database_type.clone()).collect()
    }

    /// The location of `ip`; empty when no file knows it. A corrupt record
    /// is an error (counted by the caller), not a panic.
    pub fn lookup(&self, ip: IpAddr) -> Result<Geo, maxminddb::MaxMindDbError> {
        Ok(self.lookup_network(ip)?.0)
    }

    /// The ISO 3166-1 alpha-2 country of `ip`, uppercase, `[0, 0]` when no
    /// file knows it: [`Self::lookup`]'s country without decoding the rest
    /// of the record (the edge's routing rules, per request).
    pub fn country(&self, ip: IpAddr) -> Result<[u8; 2], maxminddb::MaxMindDbError> {
        Ok(self.ask(ip, Db::country)?.0.unwrap_or_default())
    }

    /// Asks each file in order with `read` until one knows `ip`. IPv4-only
    /// files are not asked about IPv6 addresses; a file whose reader panics
    /// is marked broken, logged and skipped from then on. Gives the answer
    /// and the longest prefix length of the networks the files asked
    /// answered for: every address of that network gets the same answer.
    fn ask<T>(
        &self,
        ip: IpAddr,
        read: impl Fn(&Db, IpAddr) -> Result<(Option<T>, usize), maxminddb::MaxMindDbError>,
    ) -> Result<(Option<T>, usize), maxminddb::MaxMindDbError> {
        let mut prefix = 0;
        for db in self.dbs.load().iter() {
            if db.broken.load(Ordering::Relaxed) || (ip.is_ipv6() && db.reader.metadata.ip_version == 4) {
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| read(db, ip))) {
                Ok(Ok((Some(g), len))) => return Ok((Some(g), prefix.max(len))),
                Ok(Ok((None, len))) => prefix = prefix.max(len),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    db.broken.store(true, Ordering::Relaxed);
                    tracing::error!(path = %db.path.display(), "geoip database is corrupt (the reader panicked); skipping it until it is replaced");
                    return Err(maxminddb::MaxMindDbError::InvalidDatabase(format!(
                        "{} is corrupt",
                        db.path.display()
                    )));
                }
            }
        }
        Ok((None, prefix))
    }

    /// [`Self::lookup`] and the prefix length of the network the answer
    /// holds for (what [`GeoCache`] keys by).
    pub fn lookup_network(&self, ip: IpAddr) -> Result<(Geo, usize), maxminddb::MaxMindDbError> {
        let (geo, len) = self.ask(ip, Db::lookup)?;
        Ok((geo.unwrap_or_default(), len))
    }

    /// Counts reloads that changed a file (see [`GeoCache`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Files found corrupt at lookup time (skipped until replaced).
    pub fn broken(&self) -> Vec<PathBuf> {
        self.dbs.load().iter().filter(|d| d.broken.load(Ordering::Relaxed)).map(|d| d.path.clone()).collect()
    }

    /// Re-opens files whose modification time changed. Returns how many were
    /// reloaded; a file that fails to open keeps its previous version and is
    /// reported in the error.
    pub fn reload_if_changed(&self) -> Result<usize, GeoIpError> {
        let current = self.dbs.load_full();
        let mut next = Vec::with_capacity(current.len());
        let mut reloaded = 0;
        let mut first_error = None;
        for db in current.iter() {
            if modified(&db.path) != db.modified {
                match open(&db.path) {
                    Ok(fresh) => {
                        next.push(Arc::new(fresh));
                        reloaded += 1;
                        continue;
                    }
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            next.push(db.clone());
        }
        if reloaded > 0 {
            self.dbs.store(Arc::new(next));
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(reloaded),
        }
    }
}

/// The network a [`GeoCache`] entry answers for: an IPv4 /24 or IPv6 /48
/// (what [`GeoCache::NET_V4`] / [`GeoCache::NET_V6`] cover), or one address
/// when the databases split that network finer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NetKey {
    /// The /24 of an IPv4 address (its first three octets).
    V4Net(u32),
    V4(u32),
    /// The /48 of an IPv6 address (its first three segments).
    V6Net(u64),
    V6(u128),
}

/// What a [`GeoCache`] holds for a key.
#[derive(Debug, Clone)]
enum Cached {
    /// The answer (for the whole network under a network key).
    Geo(Geo),
    /// Under a network key: the databases split this network finer, look
    /// for the address's own entry.
    Split,
}

/// A per-consumer cache of locations by network, in front of [`GeoIp`]
/// (not thread-safe: one per consumer, no lock on the hot path).
///
/// Exact by construction: an answer is cached for a whole /24 (IPv4) or
/// /48 (IPv6) only when every database asked returned a network at least
/// that wide (a prefix length ≤ 24 or ≤ 48, `maxminddb`'s
/// `lookup_prefix`), so every address of it has the same record; otherwise
/// for its address alone. Visitors of one place share networks (a mobile
/// carrier's NAT, a city's ISP block) and each visitor sends several
/// events (a view, then clicks), so most lookups hit. Least recently used
/// entries are evicted past the capacity; a reload of the databases
/// ([`GeoIp::generation`]) empties it.
pub struct GeoCache {
    map: quick_cache::unsync::Cache<NetKey, Cached>,
    generation: u64,
    hits: u64,
    misses: u64,
}

impl GeoCache {
    /// Prefix length an IPv4 entry covers.
    pub const NET_V4: usize = 24;
    /// Prefix length an IPv6 entry covers.
    pub const NET_V6: usize = 48;

    /// A cache of at most `capacity` networks (at least 16).
    pub fn new(capacity: usize) -> Self {
        Self { map: quick_cache::unsync::Cache::new(capacity.max(16)), generation: 0, hits: 0, misses: 0 }
    }

    /// `(hits, misses)` since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// The location of `ip` as [`GeoIp::lookup`] gives it, from the cache
    /// when its network was asked before. Errors (a corrupt record) are not
    /// cached.
    pub fn lookup(&mut self, geoip: &GeoIp, ip: IpAddr) -> Result<Geo, maxminddb::MaxMindDbError> {
        let generation = geoip.generation();
        if generation != self.generation {
            self.map.clear();
            self.generation = generation;
        }
        let (net, exact, net_len) = match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                (NetKey::V4Net(a >> (32 - Self::NET_V4)), NetKey::V4(a), Self::NET_V4)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                (NetKey::V6Net((a >> (128 - Self::NET_V6)) as u64), NetKey::V6(a), Self::NET_V6)
            }
        };
        // One probe for most lookups: the network's entry, which is either
        // the answer or says to look for the address's own.
        let found = match self.map.get(&net) {
            Some(Cached::Geo(g)) => Some(g.clone()),
            Some(Cached::Split) => match self.map.get(&exact) {
                Some(Cached::Geo(g)) => Some(g.clone()),
                _ => None,
            },
            None => None,
        };
        if let Some(g) = found {
            self.hits += 1;
            return Ok(g);
        }
        self.misses += 1;
        let (geo, len) = geoip.lookup_network(ip)?;
        if len <= net_len {
            self.map.insert(net, Cached::Geo(geo.clone()));
        } else {
            self.map.insert(net, Cached::Split);
            self.map.insert(exact, Cached::Geo(geo.clone()));
        }
        Ok(geo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn test_db(name: &str) -> PathBuf {
        testkit::geoip_test_db(name)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn maxmind_city_test_database_gives_the_known_answers() {
        let g = GeoIp::open(&[test_db("GeoIP2-City-Test.mmdb")]).unwrap();
        assert_eq!(g.database_types(), ["GeoIP2-City"]);
        assert_eq!(
            g.lookup(ip("81.2.69.142")).unwrap(),
            Geo { country: *b"GB", region: "England".into(), city: "London".into(), timezone: "Europe/London".into() }
        );
        assert_eq!(
            g.lookup(ip("89.160.20.128")).unwrap(),
            Geo {
                country: *b"SE",
                region: "Östergötland County".into(),
                city: "Linköping".into(),
                timezone: "Europe/Stockholm".into()
            }
        );
        let jp = g.lookup(ip("2001:218::1")).unwrap();
        assert_eq!((jp.country, jp.timezone.as_str(), jp.city.as_str()), (*b"JP", "Asia/Tokyo", ""));
        assert_eq!(g.lookup(ip("1.2.3.4")).unwrap(), Geo::default());
        let lite = GeoIp::open(&[test_db("GeoLite2-City-Test.mmdb")]).unwrap();
        assert_eq!(lite.lookup(ip("81.2.69.142")).unwrap().country, *b"GB");
        // The country alone agrees with the full lookup.
        for a in ["81.2.69.142", "89.160.20.128", "2001:218::1", "1.2.3.4", "216.160.83.56"] {
            assert_eq!(g.country(ip(a)).unwrap(), g.lookup(ip(a)).unwrap().country, "{a}");
        }
    }

    /// Which of the three lookups of the broken-double test database fail:
    /// all (MaxMind's test file breaks the record they all lead to).
    const BROKEN_DOUBLE_ERRORS: [bool; 3] = [true, true, true];

    #[test]
    fn corrupt_databases_are_errors_not_panics() {
        // Opens (the header is fine) but its search tree points out of the file.
        let g = GeoIp::open(&[test_db("GeoIP2-City-Test-Invalid-Node-Count.mmdb"), test_db("GeoIP2-City-Test.mmdb")])
            .unwrap();
        assert!(g.lookup(ip("81.2.69.142")).is_err(), "the corrupt file is reported");
        assert_eq!(g.broken().len(), 1);
        assert_eq!(g.lookup(ip("81.2.69.142")).unwrap().country, *b"GB", "then skipped: the good file answers");
        // A record with a malformed double: opening works (the header is
        // fine); every lookup reaches that record and is an error (the
        // decoder's panic is caught), never a crash or a made-up answer.
        let g = GeoIp::open(&[test_db("GeoIP2-City-Test-Broken-Double-Format.mmdb")]).unwrap();
        let answers: Vec<bool> =
            ["81.2.69.142", "2001:220::1", "89.160.20.128"].iter().map(|a| g.lookup(ip(a)).is_err()).collect();
        assert_eq!(answers, BROKEN_DOUBLE_ERRORS, "which lookups reach the broken record");
        assert!(GeoIp::open(&[PathBuf::from("/nonexistent.mmdb")]).is_err());
    }

    #[test]
    fn reload_picks_up_a_replaced_file_and_keeps_the_old_on_failure() {
        let dir = std::env::temp_dir().join(format!("geoip-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("city.mmdb");
        std::fs::copy(test_db("GeoLite2-City-Test.mmdb"), &path).unwrap();
        let g = GeoIp::open(std::slice::from_ref(&path)).unwrap();
        assert_eq!(g.database_types(), ["GeoLite2-City"]);
        assert_eq!(g.reload_if_changed().unwrap(), 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::copy(test_db("GeoIP2-City-Test.mmdb"), &path).unwrap();
        let t = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(t).unwrap();
        assert_eq!(g.reload_if_changed().unwrap(), 1);
        assert_eq!(g.database_types(), ["GeoIP2-City"]);
        std::fs::write(&path, b"not a database").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(g.reload_if_changed().is_err());
        assert_eq!(g.lookup(ip("81.2.69.142")).unwrap().country, *b"GB", "old version still serves");
    }

    #[test]
    fn the_cache_answers_as_the_databases_do_network_by_network() {
        let g = GeoIp::open(&[test_db("GeoIP2-City-Test.mmdb")]).unwrap();
        let mut cache = GeoCache::new(10_000);
        // /24s the test file splits finer (London's 81.2.69.142/31 beside
        // other records and holes) and /24s it answers as a whole.
        let nets = ["81.2.69", "89.160.20", "216.160.83", "2.125.160", "175.16.199", "67.43.156", "1.2.3"];
        for pass in 0..2 {
            for net in nets {
                for last in 0..=255 {
                    let a = ip(&format!("{net}.{last}"));
                    assert_eq!(cache.lookup(&g, a).unwrap(), g.lookup(a).unwrap(), "{a}, pass {pass}");
                }
            }
            for a in ["2001:218::1", "2001:218::ffff", "2001:218:0:1::1", "2001:220::1", "2a02:cf40::1"] {
                assert_eq!(cache.lookup(&g, ip(a)).unwrap(), g.lookup(ip(a)).unwrap(), "{a}, pass {pass}");
            }
        }
        let (hits, misses) = cache.stats();
        assert_eq!(hits + misses, 2 * (7 * 256 + 5));
        assert!(misses < 7 * 256, "whole /24s answered once: {misses} misses");
        assert_eq!(hits, 7 * 256 + 5 + (7 * 256 + 5 - misses), "the second pass hits every time");
        // A reload empties it.
        g.generation.fetch_add(1, Ordering::AcqRel);
        cache.lookup(&g, ip("175.16.199.1")).unwrap();
        assert_eq!(cache.stats().1, misses + 1);
    }
}
