//! The in-memory cache of tenants and smartlinks that every request resolves
//! against, kept in sync with MongoDB.
//!
//! ## Design
//! - A [`Snapshot`] is immutable: host → tenant → slug → link, with each
//!   link's buttons (ordered, URLs validated, `Location` values prebuilt) and
//!   ids computed once, so the hot path does two hash lookups and no
//!   allocation. Requests read it through [`ArcSwap`] (a pointer load).
//! - The refresher task polls MongoDB every `EDGE_CACHE_REFRESH_MS` for
//!   clients and links whose `metadata.updatedAt` is at or after the newest
//!   one it has seen minus [`POLL_OVERLAP_MS`] (our MongoDB-wire server has no
//!   change streams; the overlap absorbs writers' clock skew and equal
//!   timestamps; re-applying a document is idempotent). Any change rebuilds
//!   the snapshot and swaps it in atomically.
//! - A full reload every `EDGE_CACHE_FULL_RELOAD_SECS` also drops documents
//!   deleted outright (the API archives instead of deleting).
//! - When MongoDB is unreachable, the last good snapshot keeps serving; the
//!   `cache` component turns *degraded* in `/readyz` and
//!   `edge_cache_age_seconds` grows. Before the first load the edge is not
//!   ready and answers 503.
//! - A document that does not decode is skipped, logged and counted; it never
//!   takes the others down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use hyper::header::HeaderValue;
use schemas::mongo::{collections, Client, ClientStatus, LinkStatus, PlatformId, Smartlink};

use crate::metrics::Metrics;

/// How far before the newest seen `updatedAt` each poll starts, ms.
pub const POLL_OVERLAP_MS: i64 = 5_000;

/// One platform button of a link, ready to render and to redirect to.
#[derive(Debug, Clone)]
pub struct Button {
    /// Platform id in paths and events (`spotify`, `apple-music`, or a custom name slugified).
    pub id: String,
    /// Label on the button.
    pub label: String,
    /// Destination URL (http or https only).
    pub url: String,
    /// `url` as a `Location` header value.
    pub location: HeaderValue,
    /// The platform's mark as inline SVG ([`crate::icons`]), when it has one.
    pub icon: Option<String>,
}

/// A link as the edge serves it.
#[derive(Debug)]
pub struct Link {
    /// The document.
    pub doc: Smartlink,
    /// `_id` as 24 hex digits.
    pub id_hex: String,
    /// Buttons in the tenant's order; platforms with an invalid URL are left out.
    pub buttons: Vec<Button>,
    /// `metadata.expiredUrl` as a `Location` value, when it is a safe URL.
    pub expired_location: Option<HeaderValue>,
    /// The link's routing rules, compiled ([`crate::routing`]).
    pub routes: crate::routing::Routes,
}

/// Where a link is in its schedule at a given instant (issue #18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `publishAt`: the pre-release page, no redirect.
    Upcoming(DateTime),
    /// Live.
    Live,
    /// From `expiresAt` on: the fallback URL, or 410.
    Expired,
}

impl Link {
    /// The button of platform `id`.
    pub fn button(&self, id: &str) -> Option<&Button> {
        self.buttons.iter().find(|b| b.id == id)
    }

    /// The link's phase at `now_ms` (Unix ms, UTC).
    pub fn phase(&self, now_ms: i64) -> Phase {
        let m = &self.doc.metadata;
        if m.expires_at.is_some_and(|t| now_ms >= t.timestamp_millis()) {
            Phase::Expired
        } else if let Some(t) = m.publish_at.filter(|t| now_ms < t.timestamp_millis()) {
            Phase::Upcoming(t)
        } else {
            Phase::Live
        }
    }
}

/// A tenant as the edge serves it.
#[derive(Debug)]
pub struct Tenant {
    /// The document.
    pub client: Client,
    /// `_id` as 24 hex digits.
    pub id_hex: String,
    /// Links by slug (every status: drafts answer 404, archived 410).
    pub links: HashMap<String, Arc<Link>>,
}

/// An immutable view of every tenant and link.
#[derive(Debug, Default)]
pub struct Snapshot {
    hosts: HashMap<String, Arc<Tenant>>,
    /// Tenants (active or trial).
    pub tenants: usize,
    /// Links of those tenants.
    pub links: usize,
}

/// What a host + slug resolves to.
pub enum Resolved<'a> {
    /// No active tenant serves this host.
    UnknownHost,
    /// The tenant has no such slug (or it is a draft).
    UnknownSlug(&'a Tenant),
    /// The link is archived.
    Gone(&'a Tenant),
    /// An active link.
    Found(&'a Tenant, &'a Arc<Link>),
}

impl Snapshot {
    /// Resolves a request's host (lowercase, no port) and slug.
    pub fn resolve(&self, host: &str, slug: &str) -> Resolved<'_> {
        let Some(tenant) = self.hosts.get(host) else { return Resolved::UnknownHost };
        match tenant.links.get(slug) {
            None => Resolved::UnknownSlug(tenant),
            Some(l) => match l.doc.metadata.status {
                LinkStatus::Active => Resolved::Found(tenant, l),
                LinkStatus::Draft => Resolved::UnknownSlug(tenant),
                LinkStatus::Archived => Resolved::Gone(tenant),
            },
        }
    }

    /// The tenant serving `host`, if any.
    pub fn tenant(&self, host: &str) -> Option<&Tenant> {
        self.hosts.get(host).map(|t| t.as_ref())
    }

    /// Builds a snapshot from documents. Suspended tenants and links of
    /// unknown tenants are left out.
    pub fn build(clients: impl IntoIterator<Item = Client>, links: impl IntoIterator<Item = Smartlink>) -> Self {
        let mut by_tenant: HashMap<ObjectId, HashMap<String, Arc<Link>>> = HashMap::new();
        let clients: Vec<Client> =
            clients.into_iter().filter(|c| c.metadata.status != ClientStatus::Suspended).collect();
        let orders: HashMap<ObjectId, &Vec<String>> =
            clients.iter().map(|c| (c.id, &c.settings.default_platform_order)).collect();
        let mut link_count = 0;
        for l in links {
            let Some(order) = orders.get(&l.client_id) else { continue };
            let buttons = buttons(&l, order);
            let expired_location = l
                .metadata
                .expired_url
                .as_deref()
                .filter(|u| is_http_url(u))
                .and_then(|u| HeaderValue::from_str(u).ok());
            let routes = crate::routing::Routes::new(&l.routing);
            let link = Link { id_hex: l.id.to_hex(), buttons, expired_location, routes, doc: l };
            by_tenant.entry(link.doc.client_id).or_default().insert(link.doc.slug.clone(), Arc::new(link));
            link_count += 1;
        }
        let mut hosts = HashMap::new();
        let tenants = clients.len();
        for c in clients {
            let links = by_tenant.remove(&c.id).unwrap_or_default();
            let names: Vec<String> = std::iter::once(c.domain.to_ascii_lowercase())
                .chain(c.subdomain.iter().map(|s| s.to_ascii_lowercase()))
                .collect();
            let tenant = Arc::new(Tenant { id_hex: c.id.to_hex(), client: c, links });
            for n in names {
                hosts.insert(n, tenant.clone());
            }
        }
        Self { hosts, tenants, links: link_count }
    }
}

/// True for an absolute http(s) URL without whitespace or control characters.
pub fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && url.len() > lower.find("//").unwrap_or(0) + 2
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Lowercase slug of a custom platform name: runs of other characters become `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(schemas::ids::MAX_SLUG_LEN);
    out
}

fn buttons(link: &Smartlink, order: &[String]) -> Vec<Button> {
    let mut all: Vec<(String, String, String)> = PlatformId::ALL
        .iter()
        .filter_map(|p| link.platforms.get(*p).map(|u| (p.id().to_string(), p.label().to_string(), u.to_string())))
        .collect();
    for c in &link.platforms.custom {
        let id = slugify(&c.name);
        if schemas::ids::is_slug(&id) && !all.iter().any(|(i, _, _)| *i == id) {
            all.push((id, c.name.clone(), c.url.clone()));
        }
    }
    // Tenant order first, then the rest in default order (stable sort).
    all.sort_by_key(|(id, _, _)| order.iter().position(|o| o == id).unwrap_or(usize::MAX));
    all.into_iter()
        .filter(|(_, _, url)| is_http_url(url))
        .filter_map(|(id, label, url)| {
            let location = HeaderValue::from_str(&url).ok()?;
            Some(Button { icon: crate::icons::svg(&id), id, label, url, location })
        })
        .collect()
}

/// The shared cache: the current snapshot and when it last synced.
#[derive(Clone)]
pub struct Cache {
    current: Arc<ArcSwap<Snapshot>>,
    synced_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    /// An empty cache (nothing resolves; not loaded).
    pub fn new() -> Self {
        Self { current: Arc::new(ArcSwap::from_pointee(Snapshot::default())), synced_at: Default::default() }
    }

    /// The current snapshot (a pointer load; hold it for one request).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Replaces the snapshot.
    pub fn store(&self, s: Snapshot) {
        self.current.store(Arc::new(s));
    }

    /// True once a load from MongoDB succeeded.
    pub fn is_loaded(&self) -> bool {
        self.synced_at.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    fn mark_synced(&self) {
        if let Ok(mut g) = self.synced_at.lock() {
            *g = Some(Instant::now());
        }
    }

    /// Seconds since the last successful sync; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        self.synced_at.lock().ok().and_then(|g| g.map(|t| t.elapsed()))
    }
}

/// The documents the refresher holds, and the newest `updatedAt` seen.
#[derive(Default)]
struct State {
    clients: HashMap<ObjectId, Client>,
    links: HashMap<ObjectId, Smartlink>,
    watermark: Option<DateTime>,
}

impl State {
    fn bump(&mut self, t: DateTime) {
        if self.watermark.is_none_or(|w| t > w) {
            self.watermark = Some(t);
        }
    }
}

/// Reads every document of `coll` matching `filter`, decoding each on its
/// own: a bad document is logged, counted and skipped.
async fn fetch<T: serde::de::DeserializeOwned>(
    db: &mongodb::Database,
    coll: &str,
    filter: Document,
    metrics: &Metrics,
) -> Result<Vec<T>, mongodb::error::Error> {
    let docs: Vec<Document> = db.collection::<Document>(coll).find(filter).await?.try_collect().await?;
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let id = d.get("_id").map(|v| v.to_string()).unwrap_or_default();
        match bson::from_document::<T>(d) {
            Ok(v) => out.push(v),
            Err(e) => {
                metrics.cache_refresh_errors.inc();
                tracing::warn!(collection = coll, id = %id, error = %e, "skipping a document that does not decode");
            }
        }
    }
    Ok(out)
}

/// Keeps `cache` in sync with `db` until `shutdown`: a full load at once and
/// every `full_reload`, a poll for changes every `every`. Updates `health`
/// component `cache` and the cache metrics.
pub async fn run_refresher(
    cache: Cache,
    db: mongodb::Database,
    every: Duration,
    full_reload: Duration,
    metrics: Metrics,
    health: common::admin::Health,
    shutdown: common::shutdown::CancellationToken,
) {
    let mut state = State::default();
    let mut last_full: Option<Instant> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let full = last_full.is_none_or(|t| t.elapsed() >= full_reload);
        let result = if full {
            full_load(&db, &metrics).await.map(|s| (s, true))
        } else {
            poll(&db, &mut state, &metrics).await.map(|changed| (State::default(), changed))
        };
        match result {
            Ok((fresh, changed)) => {
                if full {
                    state = fresh;
                    last_full = Some(Instant::now());
                }
                if changed {
                    let snap = Snapshot::build(state.clients.values().cloned(), state.links.values().cloned());
                    metrics.cache_clients.set(snap.tenants as i64);
                    metrics.cache_links.set(snap.links as i64);
                    tracing::debug!(tenants = snap.tenants, links = snap.links, full, "cache updated");
                    cache.store(snap);
                }
                cache.mark_synced();
                metrics.cache_refreshes.inc();
                metrics.cache_age.set(0);
                health.ready("cache");
            }
            Err(e) => {
                metrics.cache_refresh_errors.inc();
                match cache.age() {
                    Some(age) => {
                        metrics.cache_age.set(age.as_secs() as i64);
                        health.degraded("cache", format!("serving a cache {}s old: mongodb: {e}", age.as_secs()));
                        tracing::warn!(error = %e, age_s = age.as_secs(), "cache refresh failed; serving the last good cache");
                    }
                    None => {
                        health.not_ready("cache", format!("never loaded: mongodb: {e}"));
                        tracing::warn!(error = %e, "initial cache load failed; retrying");
                    }
                }
            }
        }
    }
}

async fn full_load(db: &mongodb::Database, metrics: &Metrics) -> Result<State, mongodb::error::Error> {
    let mut s = State::default();
    for c in fetch::<Client>(db, collections::CLIENTS, doc! {}, metrics).await? {
        s.bump(c.metadata.updated_at);
        s.clients.insert(c.id, c);
    }
    for l in fetch::<Smartlink>(db, collections::SMARTLINKS, doc! {}, metrics).await? {
        s.bump(l.metadata.updated_at);
        s.links.insert(l.id, l);
    }
    Ok(s)
}

/// Applies documents changed since the watermark; true when any was found.
async fn poll(db: &mongodb::Database, s: &mut State, metrics: &Metrics) -> Result<bool, mongodb::error::Error> {
    let since = DateTime::from_millis(s.watermark.map_or(0, |w| w.timestamp_millis()) - POLL_OVERLAP_MS);
    let filter = doc! { "metadata.updatedAt": { "$gte": since } };
    let clients = fetch::<Client>(db, collections::CLIENTS, filter.clone(), metrics).await?;
    let links = fetch::<Smartlink>(db, collections::SMARTLINKS, filter, metrics).await?;
    let mut changed = false;
    for c in clients {
        s.bump(c.metadata.updated_at);
        if s.clients.get(&c.id) != Some(&c) {
            s.clients.insert(c.id, c);
            changed = true;
        }
    }
    for l in links {
        s.bump(l.metadata.updated_at);
        if s.links.get(&l.id) != Some(&l) {
            s.links.insert(l.id, l);
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::mongo::*;

    pub(crate) fn client(domain: &str) -> Client {
        Client {
            id: ObjectId::new(),
            name: "Label".into(),
            slug: domain.replace('.', "-"),
            domain: domain.into(),
            subdomain: Some("label.smartlinks.test".into()),
            tracking: Default::default(),
            branding: Default::default(),
            settings: ClientSettings { default_platform_order: vec!["deezer".into()], ..Default::default() },
            metadata: ClientMetadata::new(DateTime::now(), ClientStatus::Active, PlanType::Starter),
        }
    }

    pub(crate) fn link(client_id: ObjectId, slug: &str, status: LinkStatus) -> Smartlink {
        Smartlink {
            id: ObjectId::new(),
            client_id,
            slug: slug.into(),
            track: Track { title: "T".into(), artist_name: "A".into(), ..Default::default() },
            platforms: Platforms {
                spotify: Some("https://open.spotify.com/track/1".into()),
                deezer: Some("https://deezer.com/track/1".into()),
                youtube: Some("javascript:alert(1)".into()),
                custom: vec![CustomPlatform {
                    name: "Qobuz Store!".into(),
                    url: "https://qobuz.com/1".into(),
                    icon_url: None,
                }],
                ..Default::default()
            },
            media: Default::default(),
            seo: Default::default(),
            routing: Default::default(),
            metadata: LinkMetadata::new(DateTime::now(), status),
        }
    }

    #[test]
    fn resolves_by_domain_and_subdomain_with_statuses() {
        let c = client("links.label.com");
        let links = vec![
            link(c.id, "live", LinkStatus::Active),
            link(c.id, "soon", LinkStatus::Draft),
            link(c.id, "old", LinkStatus::Archived),
            link(ObjectId::new(), "orphan", LinkStatus::Active),
        ];
        let s = Snapshot::build(vec![c], links);
        assert_eq!((s.tenants, s.links), (1, 3));
        assert!(matches!(s.resolve("links.label.com", "live"), Resolved::Found(..)));
        assert!(matches!(s.resolve("label.smartlinks.test", "live"), Resolved::Found(..)));
        assert!(matches!(s.resolve("links.label.com", "soon"), Resolved::UnknownSlug(_)));
        assert!(matches!(s.resolve("links.label.com", "old"), Resolved::Gone(_)));
        assert!(matches!(s.resolve("links.label.com", "nope"), Resolved::UnknownSlug(_)));
        assert!(matches!(s.resolve("other.com", "live"), Resolved::UnknownHost));
    }

    #[test]
    fn suspended_tenants_do_not_resolve() {
        let mut c = client("x.com");
        c.metadata.status = ClientStatus::Suspended;
        let l = link(c.id, "a", LinkStatus::Active);
        let s = Snapshot::build(vec![c], vec![l]);
        assert!(matches!(s.resolve("x.com", "a"), Resolved::UnknownHost));
    }

    #[test]
    fn buttons_follow_tenant_order_and_skip_unsafe_urls() {
        let c = client("x.com");
        let l = link(c.id, "a", LinkStatus::Active);
        let s = Snapshot::build(vec![c], vec![l]);
        let Resolved::Found(_, link) = s.resolve("x.com", "a") else { panic!() };
        let ids: Vec<&str> = link.buttons.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["deezer", "spotify", "qobuz-store"], "javascript: URL dropped, custom slugified");
        assert_eq!(link.button("spotify").unwrap().location, "https://open.spotify.com/track/1");
    }

    #[test]
    fn url_and_slug_rules() {
        assert!(is_http_url("https://a.b/c?d=e"));
        assert!(is_http_url("HTTP://a.b"));
        for bad in
            ["javascript:alert(1)", "https://", "ftp://a", "https://a b", "https://a\r\nSet-Cookie: x", "//a.b", ""]
        {
            assert!(!is_http_url(bad), "{bad:?}");
        }
        assert_eq!(slugify("Apple Music"), "apple-music");
        assert_eq!(slugify("  --Qobuz!! "), "qobuz");
        assert_eq!(slugify("Ünïcode"), "n-code");
    }
}
