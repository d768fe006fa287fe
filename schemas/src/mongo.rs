//! MongoDB: the collections the pipeline touches, their documents and their
//! indexes.
//!
//! Field names are camelCase as in seed 000 (`clients`, `smartlinks`,
//! `users`, `analytics_daily`), so documents written by older tools stay
//! readable. Where we diverge from the seed it is said on the field:
//! - `settings.anonymizeIp` and `settings.defaultPlatformOrder` are added to
//!   clients (seed 002's GDPR anonymisation is per tenant; seed 000 keeps the
//!   platform order on users, but the landing page is the tenant's);
//! - `api_keys` is new (the seed has no machine credentials); keys are stored
//!   as SHA-256 hashes only;
//! - rollup documents have a deterministic string `_id` so that a re-run of a
//!   window is an idempotent upsert.
//!
//! Money is stored as integer minor units, integers are read type-tolerantly
//! (serde widens Int32 to i64), and times are BSON dates (UTC, ms).

use std::collections::BTreeMap;

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

/// Default MongoDB database name.
pub const DEFAULT_DATABASE: &str = "smartlinks";

/// Collection names.
pub mod collections {
    /// Tenants (seed 000 `clients`).
    pub const CLIENTS: &str = "clients";
    /// Smartlinks (seed 000 `smartlinks`).
    pub const SMARTLINKS: &str = "smartlinks";
    /// Hourly rollups (same shape as daily, `hours` empty).
    pub const ANALYTICS_HOURLY: &str = "analytics_hourly";
    /// Daily rollups (seed 000 `analytics_daily`).
    pub const ANALYTICS_DAILY: &str = "analytics_daily";
    /// Back-office users (seed 000 `users`).
    pub const USERS: &str = "users";
    /// API keys, hashed.
    pub const API_KEYS: &str = "api_keys";
    /// Login sessions, hashed.
    pub const SESSIONS: &str = "sessions";
    /// Audit log (seed 001 `AuditLog`), append-only.
    pub const AUDIT_LOGS: &str = "audit_logs";
    /// CRM leads (seeds 001, 003, 004).
    pub const LEADS: &str = "leads";
    /// CRM contacts (seed 003).
    pub const CONTACTS: &str = "contacts";
    /// CRM opportunities (seed 003, 8 stages).
    pub const OPPORTUNITIES: &str = "opportunities";
    /// CRM tasks (seed 003).
    pub const TASKS: &str = "tasks";
    /// Manual CRM activities (calls, emails, meetings, notes).
    pub const ACTIVITIES: &str = "activities";
    /// CRM settings, one document per tenant (seed 003 `crm_settings`).
    pub const CRM_SETTINGS: &str = "crm_settings";
    /// Email-verification and password-reset tokens, hashed.
    pub const AUTH_TOKENS: &str = "auth_tokens";
    /// Emails sent (seed 003 `email_logs`), recipient encrypted.
    pub const EMAIL_LOGS: &str = "email_logs";
    /// Campaigns (seed 001).
    pub const CAMPAIGNS: &str = "campaigns";
    /// Daily ad KPIs of campaigns, one per (campaign, day, platform).
    pub const CAMPAIGN_KPIS: &str = "campaign_kpis";
    /// Invoices (seeds 003, 004).
    pub const INVOICES: &str = "invoices";
    /// Payments and refunds (seeds 003, 004).
    pub const PAYMENTS: &str = "payments";
    /// GDPR consents with history (seed 004).
    pub const CONSENTS: &str = "consents";
    /// Newsletter subscribers with history (seed 004).
    pub const NEWSLETTER_SUBSCRIBERS: &str = "newsletter_subscribers";
    /// Short-lived mutexes (`_id` = the locked record), see `api::lock`.
    pub const LOCKS: &str = "locks";
    /// Leader leases (`_id` = the role, e.g. `aggregator`), see `common::mongo::Lease`.
    pub const LEASES: &str = "leases";
    /// Tracking-health alert settings, one per tenant ([`crate::alerts::AlertSettings`]).
    pub const ALERT_SETTINGS: &str = "alert_settings";
    /// Tracking-health alert states, one per tenant and kind ([`crate::alerts::AlertState`]).
    pub const ALERT_STATES: &str = "alert_states";
    /// Tracking-health notifications and their attempts ([`crate::alerts::AlertDelivery`]).
    pub const ALERT_DELIVERIES: &str = "alert_deliveries";
    /// Tenants' ad-platform accounts for server-side conversions ([`crate::conversions::Destination`]).
    pub const CONVERSION_DESTINATIONS: &str = "conversion_destinations";
    /// What the forwarder sent to them ([`crate::conversions::DeliveryLog`]).
    pub const CONVERSION_DELIVERIES: &str = "conversion_deliveries";
    /// Tenants' webhook endpoints ([`crate::webhooks::WebhookEndpoint`]).
    pub const WEBHOOK_ENDPOINTS: &str = "webhook_endpoints";
    /// Messages to them, with their attempts ([`crate::webhooks::WebhookDelivery`]).
    pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries";
    /// Daily digests claimed, one per endpoint and day (`_id` = `{endpoint}:{YYYY-MM-DD}`).
    pub const WEBHOOK_DIGESTS: &str = "webhook_digests";
}

/// Status of a tenant (seed 000 `clients.metadata.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    /// Serving.
    #[default]
    Active,
    /// Links answer 404 until reactivated.
    Suspended,
    /// Serving, on trial.
    Trial,
}

/// A tenant: an agency client with its domain, branding and pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// Tenant id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Display name ("Universal Music").
    pub name: String,
    /// URL-safe name ("universal-music"), unique.
    pub slug: String,
    /// Custom domain serving its links, lowercase ("links.client.com"), unique.
    pub domain: String,
    /// Subdomain of the agency's shared domain, lowercase, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Client-side pixel ids for the dual engine (seed 002).
    #[serde(default)]
    pub tracking: ClientTracking,
    /// Landing page look.
    #[serde(default)]
    pub branding: Branding,
    /// Limits and privacy settings.
    #[serde(default)]
    pub settings: ClientSettings,
    /// Timestamps and status.
    pub metadata: ClientMetadata,
}

/// Pixel and tag ids of a tenant; each is optional, and the page loads only
/// those present, and only with consent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTracking {
    /// GA4 measurement id (`G-XXXXXXXXXX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga4: Option<String>,
    /// GTM container id (`GTM-XXXXXXX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtm: Option<String>,
    /// Meta Pixel id (digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebook: Option<String>,
    /// TikTok Pixel id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiktok: Option<String>,
}

impl ClientTracking {
    /// Whether any pixel or tag is configured: only then can client-side
    /// tracking see a visit (seed 002's dual engine).
    pub fn any(&self) -> bool {
        self.ga4.is_some() || self.gtm.is_some() || self.facebook.is_some() || self.tiktok.is_some()
    }
}

/// Branding of a tenant's landing pages (seed 000 `clients.branding`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    /// Logo URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// Favicon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub favicon: Option<String>,
    /// CSS colour, e.g. `#1DB954`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// CSS colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_color: Option<String>,
    /// CSS colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// CSS font stack, e.g. `Inter, sans-serif`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub font: Option<String>,
    /// The tenant's own wording of the landing and error pages, by
    /// language (`en`, `fr`); what is absent keeps the edge's text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub texts: BTreeMap<String, PageTexts>,
}

/// A tenant's wording of its pages in one language (issue #18); each text
/// at most 300 characters, plain text (the edge escapes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageTexts {
    /// Page description when the link has none; `{title}` and `{artist}`
    /// are replaced by the track's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The action on each platform button ("Listen", "Play").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The consent banner's sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// The banner's accept button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// The banner's refuse button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<String>,
    /// The 404 page's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<String>,
    /// The 410 page's message (an archived link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone: Option<String>,
}

/// Business and privacy settings of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientSettings {
    /// Links a tenant may create per calendar month.
    pub max_smartlinks_per_month: i64,
    /// Back-office users per tenant.
    pub max_users_per_client: i64,
    /// Whether the tenant may serve from its own domain.
    pub allow_custom_domains: bool,
    /// Days raw events are kept; older day partitions are dropped.
    pub analytics_retention_days: i64,
    /// API requests per hour for the tenant's keys.
    pub api_rate_limit: i64,
    /// Feature flags (`advanced-analytics`, `white-label`).
    pub features: Vec<String>,
    /// Store client IPs anonymised (IPv4 /24, IPv6 /48); default true (GDPR).
    pub anonymize_ip: bool,
    /// Platform ids in the order buttons appear on landing pages; platforms
    /// not listed follow in [`PlatformId::ALL`] order.
    pub default_platform_order: Vec<String>,
    /// What a click-out to each platform is worth to the tenant, in minor
    /// units of its currency (seed 000 `conversionGoals[].value`,
    /// `conversionValue`; issue #19): platform id → value. A platform not
    /// listed is worth nothing.
    pub conversion_values: BTreeMap<String, i64>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            max_smartlinks_per_month: 1000,
            max_users_per_client: 50,
            allow_custom_domains: true,
            analytics_retention_days: 365,
            api_rate_limit: 1000,
            features: Vec::new(),
            anonymize_ip: true,
            default_platform_order: Vec::new(),
            conversion_values: BTreeMap::new(),
        }
    }
}

/// Plan of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanType {
    /// Entry plan.
    #[default]
    Starter,
    /// Mid plan.
    Professional,
    /// Top plan.
    Enterprise,
}

/// Timestamps and status of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientMetadata {
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC; the edge polls for documents changed since its last load.
    pub updated_at: DateTime,
    /// Status.
    #[serde(default)]
    pub status: ClientStatus,
    /// Plan.
    #[serde(default)]
    pub plan_type: PlanType,
}

impl ClientMetadata {
    /// Metadata of a tenant created at `now` (UTC) with `status` and `plan`.
    pub fn new(now: DateTime, status: ClientStatus, plan: PlanType) -> Self {
        Self { created_at: now, updated_at: now, status, plan_type: plan }
    }
}

/// Status of a smartlink (seed 000 `smartlinks.metadata.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// Served.
    #[default]
    Active,
    /// Not yet published: 404.
    Draft,
    /// Taken down: 410.
    Archived,
}

/// The known streaming platforms, with their ids (in events, URLs, rollups)
/// and the seed's camelCase field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformId {
    /// Spotify.
    Spotify,
    /// Apple Music.
    AppleMusic,
    /// Deezer.
    Deezer,
    /// YouTube / YouTube Music.
    Youtube,
    /// SoundCloud.
    Soundcloud,
    /// Tidal.
    Tidal,
    /// Amazon Music.
    AmazonMusic,
    /// Bandcamp.
    Bandcamp,
}

impl PlatformId {
    /// Every known platform, in the default button order.
    pub const ALL: [PlatformId; 8] = [
        PlatformId::Spotify,
        PlatformId::AppleMusic,
        PlatformId::Deezer,
        PlatformId::Youtube,
        PlatformId::Soundcloud,
        PlatformId::Tidal,
        PlatformId::AmazonMusic,
        PlatformId::Bandcamp,
    ];

    /// The id used in paths, events and rollups (`apple-music`).
    pub fn id(self) -> &'static str {
        match self {
            PlatformId::Spotify => "spotify",
            PlatformId::AppleMusic => "apple-music",
            PlatformId::Deezer => "deezer",
            PlatformId::Youtube => "youtube",
            PlatformId::Soundcloud => "soundcloud",
            PlatformId::Tidal => "tidal",
            PlatformId::AmazonMusic => "amazon-music",
            PlatformId::Bandcamp => "bandcamp",
        }
    }

    /// The button label (`Apple Music`).
    pub fn label(self) -> &'static str {
        match self {
            PlatformId::Spotify => "Spotify",
            PlatformId::AppleMusic => "Apple Music",
            PlatformId::Deezer => "Deezer",
            PlatformId::Youtube => "YouTube",
            PlatformId::Soundcloud => "SoundCloud",
            PlatformId::Tidal => "TIDAL",
            PlatformId::AmazonMusic => "Amazon Music",
            PlatformId::Bandcamp => "Bandcamp",
        }
    }

    /// The platform with path id `id`, if known.
    pub fn from_id(id: &str) -> Option<PlatformId> {
        PlatformId::ALL.into_iter().find(|p| p.id() == id)
    }
}

/// A custom platform button (seed 000 `platforms.custom`). Its id is `name`
/// slugified ([`crate::ids::is_slug`] rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomPlatform {
    /// Label, also the source of its id.
    pub name: String,
    /// Destination URL, http or https.
    pub url: String,
    /// Icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// Destination URLs of a smartlink, by platform (seed 000 `platforms`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platforms {
    /// Spotify URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify: Option<String>,
    /// Apple Music URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_music: Option<String>,
    /// Deezer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deezer: Option<String>,
    /// YouTube URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub youtube: Option<String>,
    /// SoundCloud URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soundcloud: Option<String>,
    /// Tidal URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tidal: Option<String>,
    /// Amazon Music URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amazon_music: Option<String>,
    /// Bandcamp URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandcamp: Option<String>,
    /// Other destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomPlatform>,
}

impl Platforms {
    /// The field holding a known platform's URL.
    pub fn slot(&mut self, p: PlatformId) -> &mut Option<String> {
        match p {
            PlatformId::Spotify => &mut self.spotify,
            PlatformId::AppleMusic => &mut self.apple_music,
            PlatformId::Deezer => &mut self.deezer,
            PlatformId::Youtube => &mut self.youtube,
            PlatformId::Soundcloud => &mut self.soundcloud,
            PlatformId::Tidal => &mut self.tidal,
            PlatformId::AmazonMusic => &mut self.amazon_music,
            PlatformId::Bandcamp => &mut self.bandcamp,
        }
    }

    /// The URL stored for a known platform.
    pub fn get(&self, p: PlatformId) -> Option<&str> {
        match p {
            PlatformId::Spotify => self.spotify.as_deref(),
            PlatformId::AppleMusic => self.apple_music.as_deref(),
            PlatformId::Deezer => self.deezer.as_deref(),
            PlatformId::Youtube => self.youtube.as_deref(),
            PlatformId::Soundcloud => self.soundcloud.as_deref(),
            PlatformId::Tidal => self.tidal.as_deref(),
            PlatformId::AmazonMusic => self.amazon_music.as_deref(),
            PlatformId::Bandcamp => self.bandcamp.as_deref(),
        }
    }
}

/// Track shown on the landing page (seed 000 `track`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Track {
    /// Title.
    pub title: String,
    /// Artist.
    pub artist_name: String,
    /// Album.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album_name: Option<String>,
    /// Genre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre: Option<String>,
    /// Release date, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_date: Option<DateTime>,
    /// Duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// ISRC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isrc: Option<String>,
}

/// Media of a smartlink (seed 000 `media`): URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// Cover art URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_art: Option<String>,
    /// Background image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_image: Option<String>,
    /// 30 s audio preview URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_preview: Option<String>,
}

/// SEO, Open Graph and Twitter card values (seed 000 `seo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seo {
    /// `<title>` and `og:title`; defaults to "Title - Artist".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_title: Option<String>,
    /// `<meta name=description>` and `og:description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_description: Option<String>,
    /// Keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// `og:image`; defaults to the cover art.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub og_image: Option<String>,
}

/// Timestamps, status and cached counters of a smartlink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkMetadata {
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC; polled by the edge.
    pub updated_at: DateTime,
    /// Creator (`users._id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<ObjectId>,
    /// Status.
    #[serde(default)]
    pub status: LinkStatus,
    /// Featured on the tenant's dashboard.
    #[serde(default)]
    pub featured: bool,
    /// Tags the tenant files the link under (`single`, `q4-campaign`):
    /// at most 20 of 1..=30 characters, lowercase, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Go-live time, UTC (issue #18): before it the edge serves a
    /// pre-release page (the track and its date, no button) and redirects
    /// nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_at: Option<DateTime>,
    /// Expiry, UTC: from it the edge redirects every visit to
    /// [`Self::expired_url`], or answers 410 Gone without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// Where an expired link sends its visitors (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_url: Option<String>,
    /// Cached total views (maintained by the aggregator).
    #[serde(default)]
    pub total_views: i64,
    /// Cached unique visitors (maintained by the aggregator).
    #[serde(default)]
    pub unique_visitors: i64,
    /// Cached click-outs / views, 0..=1 (maintained by the aggregator).
    #[serde(default)]
    pub conversion_rate: f64,
}

impl LinkMetadata {
    /// Metadata of a link created at `now` (UTC) with `status`: not
    /// featured, no creator recorded, counters at zero.
    pub fn new(now: DateTime, status: LinkStatus) -> Self {
        Self {
            created_at: now,
            updated_at: now,
            created_by: None,
            status,
            featured: false,
            tags: Vec::new(),
            publish_at: None,
            expires_at: None,
            expired_url: None,
            total_views: 0,
            unique_visitors: 0,
            conversion_rate: 0.0,
        }
    }
}

/// A smartlink: one track, one landing page, one URL per platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Smartlink {
    /// Link id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Owning tenant.
    pub client_id: ObjectId,
    /// Slug, unique per tenant ([`crate::ids::is_slug`]).
    pub slug: String,
    /// The track.
    pub track: Track,
    /// Destination URLs.
    #[serde(default)]
    pub platforms: Platforms,
    /// Media URLs.
    #[serde(default)]
    pub media: Media,
    /// SEO values.
    #[serde(default)]
    pub seo: Seo,
    /// How visitors are routed (issue #18); the default routes nobody.
    #[serde(default, skip_serializing_if = "crate::routing::Routing::is_empty")]
    pub routing: crate::routing::Routing,
    /// Timestamps, status, cached counters.
    pub metadata: LinkMetadata,
}

/// One rollup document of `analytics_hourly` or `analytics_daily` (seed 000
/// `analytics_daily`): the counts of one tenant, or one of its links, over
/// one hour or one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollup {
    /// `{clientId}:{smartlinkId or "all"}:{bucket start, RFC 3339}`: stable,
    /// so re-rolling a window upserts the same document.
    #[serde(rename = "_id")]
    pub id: String,
    /// Start of the hour or day, UTC.
    pub date: DateTime,
    /// Tenant.
    pub client_id: ObjectId,
    /// Link; absent for the tenant-wide rollup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smartlink_id: Option<ObjectId>,
    /// Counters.
    pub metrics: RollupMetrics,
    /// Breakdowns: dimension value → count of views (clicks for `platforms`).
    pub breakdown: RollupBreakdown,
    /// When written, UTC.
    pub last_updated: DateTime,
    /// Hash of `metrics` and `breakdown` (SipHash-1-3 with fixed keys): a
    /// re-roll that computes the same numbers writes nothing.
    #[serde(default)]
    pub fingerprint: i64,
}

/// Counters of a rollup. Bots are excluded from every counter but `bots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollupMetrics {
    /// Views (landing pages served).
    pub total_views: i64,
    /// Click-outs to platforms.
    pub total_clicks: i64,
    /// Distinct visitors over the whole window (not a sum of sub-windows).
    pub unique_visitors: i64,
    /// Distinct visitors seen on the link before.
    pub returning_visitors: i64,
    /// Views that led to a click-out.
    pub total_conversions: i64,
    /// `total_clicks / total_views`, 0 when no views.
    pub conversion_rate: f64,
    /// Events flagged as bots.
    pub bots: i64,
    /// Views whose page reported its engagement (consenting humans, issue #19).
    #[serde(default)]
    pub engaged_views: i64,
    /// Their visible time on page, summed, ms.
    #[serde(default)]
    pub engaged_ms: i64,
    /// Those left without a click-out within 10 s (`BOUNCE_MS`).
    #[serde(default)]
    pub bounces: i64,
    /// Seed 000 `avgTimeOnPage`: `engaged_ms / engaged_views` in seconds,
    /// 0 without engaged views.
    #[serde(default)]
    pub avg_time_on_page: f64,
    /// Seed 000 `bounceRate`: `bounces / engaged_views`, 0..1, 0 without
    /// engaged views.
    #[serde(default)]
    pub bounce_rate: f64,
}

impl RollupMetrics {
    /// Sets [`Self::avg_time_on_page`] and [`Self::bounce_rate`] from the
    /// engagement counters.
    pub fn derive_engagement(&mut self) {
        let n = self.engaged_views.max(0) as f64;
        (self.avg_time_on_page, self.bounce_rate) = if n > 0.0 {
            (self.engaged_ms.max(0) as f64 / n / 1000.0, self.bounces.max(0) as f64 / n)
        } else {
            (0.0, 0.0)
        };
    }
}

/// Breakdowns of a rollup (seed 000 `breakdown`), each a map from dimension
/// value to count in memory, stored as an array of `{value, count}` (seed
/// 000 uses `Map<string, number>`, but map keys may not contain `.` on our
/// MongoDB-wire server, and referrer hosts do; arrays are also what MongoDB
/// queries and indexes well).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollupBreakdown {
    /// ISO country code → views.
    #[serde(with = "counts")]
    pub countries: BTreeMap<String, i64>,
    /// Device class → views.
    #[serde(with = "counts")]
    pub devices: BTreeMap<String, i64>,
    /// Browser → views.
    #[serde(with = "counts")]
    pub browsers: BTreeMap<String, i64>,
    /// OS → views.
    #[serde(with = "counts")]
    pub os: BTreeMap<String, i64>,
    /// Platform id → clicks.
    #[serde(with = "counts")]
    pub platforms: BTreeMap<String, i64>,
    /// Referrer host → views.
    #[serde(with = "counts")]
    pub referrers: BTreeMap<String, i64>,
    /// UTM source → views.
    #[serde(with = "counts")]
    pub sources: BTreeMap<String, i64>,
    /// `{country}|{region}` → views.
    #[serde(default, with = "counts")]
    pub regions: BTreeMap<String, i64>,
    /// `{country}|{city}` → views.
    #[serde(default, with = "counts")]
    pub cities: BTreeMap<String, i64>,
    /// UTM medium → views.
    #[serde(default, with = "counts")]
    pub mediums: BTreeMap<String, i64>,
    /// UTM campaign → views.
    #[serde(default, with = "counts")]
    pub campaigns: BTreeMap<String, i64>,
    /// `{rule id}` or `{rule id}/{variant}` → views the routing rule decided
    /// (issue #18).
    #[serde(default, with = "counts")]
    pub routes: BTreeMap<String, i64>,
    /// `{rule id}` or `{rule id}/{variant}` → click-outs the rule decided.
    #[serde(default, with = "counts")]
    pub route_clicks: BTreeMap<String, i64>,
    /// Views per hour of the day, 24 entries (daily rollups; empty on hourly).
    #[serde(default)]
    pub hours: Vec<i64>,
}

impl RollupBreakdown {
    /// The key under which [`RollupBreakdown::cap`] sums the values past
    /// the top N (parentheses: no country, host, platform or UTM value
    /// the pipeline writes has them).
    pub const OTHER: &'static str = "(other)";

    /// Every dimension map with its field name, in a fixed order.
    pub fn maps_mut(&mut self) -> [(&'static str, &mut BTreeMap<String, i64>); 13] {
        [
            ("countries", &mut self.countries),
            ("devices", &mut self.devices),
            ("browsers", &mut self.browsers),
            ("os", &mut self.os),
            ("platforms", &mut self.platforms),
            ("referrers", &mut self.referrers),
            ("sources", &mut self.sources),
            ("regions", &mut self.regions),
            ("cities", &mut self.cities),
            ("mediums", &mut self.mediums),
            ("campaigns", &mut self.campaigns),
            ("routes", &mut self.routes),
            ("route_clicks", &mut self.route_clicks),
        ]
    }

    /// Keeps the `top` largest values of each dimension (ties by value) and
    /// sums the others into [`Self::OTHER`], so a dimension never holds
    /// more than `top + 1` entries and its sum is unchanged (issue #13:
    /// bounded breakdowns). `top` 0 leaves everything as is.
    pub fn cap(&mut self, top: usize) {
        if top == 0 {
            return;
        }
        for (_, m) in self.maps_mut() {
            if m.len() <= top {
                continue;
            }
            let mut entries: Vec<(String, i64)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut other = 0;
            for (k, v) in entries {
                if m.len() < top && k != Self::OTHER {
                    m.insert(k, v);
                } else {
                    other += v;
                }
            }
            if other != 0 {
                *m.entry(Self::OTHER.to_string()).or_insert(0) += other;
            }
        }
    }

    /// Every dimension map with its field name, in the order of [`Self::maps_mut`].
    pub fn maps(&self) -> [(&'static str, &BTreeMap<String, i64>); 13] {
        [
            ("countries", &self.countries),
            ("devices", &self.devices),
            ("browsers", &self.browsers),
            ("os", &self.os),
            ("platforms", &self.platforms),
            ("referrers", &self.referrers),
            ("sources", &self.sources),
            ("regions", &self.regions),
            ("cities", &self.cities),
            ("mediums", &self.mediums),
            ("campaigns", &self.campaigns),
            ("routes", &self.routes),
            ("route_clicks", &self.route_clicks),
        ]
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &RollupBreakdown) {
        for ((_, into), (_, from)) in self.maps_mut().into_iter().zip(other.maps()) {
            for (k, v) in from {
                *into.entry(k.clone()).or_insert(0) += v;
            }
        }
        if !other.hours.is_empty() {
            self.hours.resize(24, 0);
            for (h, v) in other.hours.iter().enumerate().take(24) {
                self.hours[h] += v;
            }
        }
    }
}

/// `BTreeMap<String, i64>` ↔ `[{"value": .., "count": ..}]`, ordered by value.
mod counts {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        value: String,
        count: i64,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, i64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|(value, count)| Entry { value: value.clone(), count: *count }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i64>, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?.into_iter().map(|e| (e.value, e.count)).collect())
    }
}

/// Role of a back-office user (seed 001 `role`: admin / manager / agent;
/// seed 000 calls the agent `editor`, seed 003 `sales`; seed 000 adds
/// `viewer`). Its permissions: `api::rbac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, settings and audit.
    Admin,
    /// Everything but administration.
    Manager,
    /// Creates and edits CRM records; reads links and analytics.
    #[serde(alias = "editor", alias = "sales")]
    Agent,
    /// Reads.
    Viewer,
}

/// A back-office user (seed 000 `users` merged with seed 001 `User`): a
/// tenant's staff, or the agency's when `client_id` is the agency tenant.
/// The email is stored encrypted with a blind index (`api::crypto`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Credentials, second factor and lockout state.
    pub auth: UserAuth,
    /// Role and API scopes.
    pub permissions: UserPermissions,
    /// A deactivated user cannot log in; their sessions stop working.
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

fn yes() -> bool {
    true
}

/// Credentials of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAuth {
    /// Login email, encrypted (`enc:v1:...`).
    pub email_enc: String,
    /// Blind index of the lowercase email; unique.
    pub email_index: String,
    /// Password hash (argon2id PHC string), never the password.
    pub password_hash: String,
    /// Failed logins since the last success.
    #[serde(default)]
    pub login_attempts: i64,
    /// Locked until this time, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_until: Option<DateTime>,
    /// Email verified.
    #[serde(default)]
    pub email_verified: bool,
    /// TOTP secret (RFC 6238), encrypted, once enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret_enc: Option<String>,
    /// TOTP secret being set up, encrypted, until confirmed with a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_pending_enc: Option<String>,
    /// The RFC 6238 time step (Unix s / 30) of the last TOTP code accepted;
    /// a code of this step or an earlier one is refused (one-time, RFC 6238
    /// §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<i64>,
    /// Last successful login, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<DateTime>,
}

/// Role and scopes of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPermissions {
    /// Role.
    pub role: Role,
    /// Extra API scopes (unused by roles; kept from seed 000).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A login session: an opaque bearer token (`sls_` + 64 hex) whose SHA-256
/// only is stored, valid until `expires_at` unless revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Session id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// User.
    pub user_id: ObjectId,
    /// The user's tenant.
    pub client_id: ObjectId,
    /// Lowercase hex SHA-256 of the token; unique.
    pub token_hash: String,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Expiry, UTC.
    pub expires_at: DateTime,
    /// Revocation time (logout), UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime>,
}

/// What an [`AuthToken`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    /// Proves the user reads the mailbox of their login email.
    VerifyEmail,
    /// Lets the user choose a new password without the old one.
    PasswordReset,
}

/// A single-use token mailed to a user. Only its SHA-256 is stored; it is
/// spent by setting `usedAt` (once, atomically) before `expiresAt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthToken {
    /// Token id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Lowercase hex SHA-256 of the token; unique.
    pub token_hash: String,
    /// Purpose.
    pub purpose: TokenPurpose,
    /// User.
    pub user_id: ObjectId,
    /// The user's tenant.
    pub client_id: ObjectId,
    /// Issued at, UTC.
    pub created_at: DateTime,
    /// Expiry, UTC.
    pub expires_at: DateTime,
    /// Spent at, UTC (also set on older tokens when a newer one is issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime>,
}

/// One email sent or attempted (seed 003 `email_logs`). The recipient is
/// encrypted with a blind index; bodies are never stored (they may carry
/// tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailLog {
    /// Log id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Recipient, encrypted.
    pub to_enc: String,
    /// Blind index of the recipient.
    pub to_index: String,
    /// Subject.
    pub subject: String,
    /// Template (`verify_email`, `password_reset`, `invoice`).
    pub template: String,
    /// `SENT` or `FAILED`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `Message-ID` given to the transport.
    pub message_id: String,
    /// Kind of the record it is about (`user`, `invoice`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_kind: Option<String>,
    /// Id of that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_id: Option<ObjectId>,
    /// Attachment file names.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// Sent (or failed) at, UTC.
    pub created_at: DateTime,
}

/// An API key. The key itself is shown once at creation; only its SHA-256
/// is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Key id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant the key acts for.
    pub client_id: ObjectId,
    /// Human label.
    pub name: String,
    /// The first characters of the key, to recognise it in lists.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key; unique.
    pub key_hash: String,
    /// Scopes (`links:read`, `links:write`, `analytics:read`, ...).
    pub scopes: Vec<String>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Revocation time, UTC; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime>,
}

/// An index `migrate` creates. Keys are `(field path, 1 | -1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    /// Collection.
    pub collection: &'static str,
    /// Index name (stable, so re-creating it is a no-op).
    pub name: &'static str,
    /// Keys in order.
    pub keys: &'static [(&'static str, i32)],
    /// Rejects a second document with the same key (E11000).
    pub unique: bool,
}

/// Every index of the collections above (seed 000 "index stratégiques",
/// restricted to the collections the pipeline keeps in MongoDB; raw events
/// live in ClickHouse, not in an `analytics` collection).
pub const INDEXES: &[IndexSpec] = &[
    IndexSpec { collection: collections::CLIENTS, name: "domain_unique", keys: &[("domain", 1)], unique: true },
    IndexSpec { collection: collections::CLIENTS, name: "slug_unique", keys: &[("slug", 1)], unique: true },
    IndexSpec { collection: collections::CLIENTS, name: "subdomain", keys: &[("subdomain", 1)], unique: false },
    IndexSpec {
        collection: collections::CLIENTS,
        name: "updated_at",
        keys: &[("metadata.updatedAt", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::SMARTLINKS,
        name: "client_slug_unique",
        keys: &[("clientId", 1), ("slug", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::SMARTLINKS,
        name: "client_status_created",
        keys: &[("clientId", 1), ("metadata.status", 1), ("metadata.createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::SMARTLINKS,
        name: "client_tags",
        keys: &[("clientId", 1), ("metadata.tags", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::SMARTLINKS,
        name: "client_created",
        keys: &[("clientId", 1), ("metadata.createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::SMARTLINKS,
        name: "updated_at",
        keys: &[("metadata.updatedAt", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ANALYTICS_HOURLY,
        name: "client_date",
        keys: &[("clientId", 1), ("date", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ANALYTICS_HOURLY,
        name: "link_date",
        keys: &[("smartlinkId", 1), ("date", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ANALYTICS_DAILY,
        name: "client_date",
        keys: &[("clientId", 1), ("date", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ANALYTICS_DAILY,
        name: "link_date",
        keys: &[("smartlinkId", 1), ("date", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::USERS,
        name: "email_index_unique",
        keys: &[("auth.emailIndex", 1)],
        unique: true,
    },
    IndexSpec { collection: collections::USERS, name: "client", keys: &[("clientId", 1)], unique: false },
    IndexSpec { collection: collections::SESSIONS, name: "token_hash_unique", keys: &[("tokenHash", 1)], unique: true },
    IndexSpec {
        collection: collections::AUDIT_LOGS,
        name: "client_at",
        keys: &[("clientId", 1), ("at", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::AUDIT_LOGS,
        name: "resource",
        keys: &[("resource", 1), ("resourceId", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::LEADS,
        name: "client_email_index_unique",
        keys: &[("clientId", 1), ("personal.emailIndex", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::LEADS,
        name: "client_stage_priority",
        keys: &[("clientId", 1), ("pipeline.stage", 1), ("pipeline.priority", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::LEADS,
        name: "client_assignee",
        keys: &[("clientId", 1), ("assignment.assignedTo", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::CONTACTS,
        name: "client_email_index_unique",
        keys: &[("clientId", 1), ("emailIndex", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::OPPORTUNITIES,
        name: "client_stage",
        keys: &[("clientId", 1), ("stage", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::TASKS,
        name: "client_status_due",
        keys: &[("clientId", 1), ("status", 1), ("dueAt", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ACTIVITIES,
        name: "related",
        keys: &[("related.id", 1), ("at", -1)],
        unique: false,
    },
    IndexSpec { collection: collections::API_KEYS, name: "key_hash_unique", keys: &[("keyHash", 1)], unique: true },
    IndexSpec { collection: collections::API_KEYS, name: "client", keys: &[("clientId", 1)], unique: false },
    IndexSpec {
        collection: collections::AUTH_TOKENS,
        name: "token_hash_unique",
        keys: &[("tokenHash", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::AUTH_TOKENS,
        name: "user_purpose",
        keys: &[("userId", 1), ("purpose", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::EMAIL_LOGS,
        name: "client_at",
        keys: &[("clientId", 1), ("createdAt", -1)],
        unique: false,
    },
    IndexSpec { collection: collections::EMAIL_LOGS, name: "related", keys: &[("relatedId", 1)], unique: false },
    IndexSpec {
        collection: collections::EMAIL_LOGS,
        name: "client_to",
        keys: &[("clientId", 1), ("toIndex", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::CAMPAIGNS,
        name: "client_status",
        keys: &[("clientId", 1), ("status", 1)],
        unique: false,
    },
    IndexSpec { collection: collections::CAMPAIGNS, name: "lead", keys: &[("leadId", 1)], unique: false },
    IndexSpec {
        collection: collections::CAMPAIGN_KPIS,
        name: "campaign_date",
        keys: &[("campaignId", 1), ("date", 1)],
        unique: false,
    },
    // Gapless numbering: a number exists only once its invoice is inserted.
    IndexSpec {
        collection: collections::INVOICES,
        name: "client_year_seq_unique",
        keys: &[("clientId", 1), ("year", 1), ("seq", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::INVOICES,
        name: "client_status_due",
        keys: &[("clientId", 1), ("status", 1), ("dueDate", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::INVOICES,
        name: "client_email",
        keys: &[("clientId", 1), ("client.emailIndex", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::PAYMENTS,
        name: "client_idempotency_unique",
        keys: &[("clientId", 1), ("idempotencyKey", 1)],
        unique: true,
    },
    IndexSpec { collection: collections::PAYMENTS, name: "invoice", keys: &[("invoiceId", 1)], unique: false },
    IndexSpec {
        collection: collections::CONSENTS,
        name: "client_email_unique",
        keys: &[("clientId", 1), ("emailIndex", 1)],
        unique: true,
    },
    IndexSpec {
        collection: collections::NEWSLETTER_SUBSCRIBERS,
        name: "client_email_unique",
        keys: &[("clientId", 1), ("emailIndex", 1)],
        unique: true,
    },
    IndexSpec { collection: collections::ALERT_STATES, name: "client", keys: &[("clientId", 1)], unique: false },
    IndexSpec {
        collection: collections::ALERT_DELIVERIES,
        name: "client_created",
        keys: &[("clientId", 1), ("createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::ALERT_DELIVERIES,
        name: "due",
        keys: &[("status", 1), ("nextAttemptAt", 1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::CONVERSION_DESTINATIONS,
        name: "client",
        keys: &[("clientId", 1), ("createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::CONVERSION_DELIVERIES,
        name: "destination_at",
        keys: &[("clientId", 1), ("destinationId", 1), ("at", -1)],
        unique: false,
    },
    IndexSpec { collection: collections::CONVERSION_DELIVERIES, name: "at", keys: &[("at", 1)], unique: false },
    IndexSpec {
        collection: collections::WEBHOOK_ENDPOINTS,
        name: "client",
        keys: &[("clientId", 1), ("createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::WEBHOOK_DELIVERIES,
        name: "endpoint_created",
        keys: &[("clientId", 1), ("endpointId", 1), ("createdAt", -1)],
        unique: false,
    },
    IndexSpec {
        collection: collections::WEBHOOK_DELIVERIES,
        name: "due",
        keys: &[("status", 1), ("nextAttemptAt", 1)],
        unique: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime {
        DateTime::from_millis(1_763_700_000_000)
    }

    fn sample_link() -> Smartlink {
        Smartlink {
            id: ObjectId::new(),
            client_id: ObjectId::new(),
            slug: "jiro-in-your-light".into(),
            track: Track { title: "In Your Light".into(), artist_name: "Jiro".into(), ..Default::default() },
            platforms: Platforms {
                spotify: Some("https://open.spotify.com/track/x".into()),
                apple_music: Some("https://music.apple.com/x".into()),
                custom: vec![CustomPlatform {
                    name: "Qobuz".into(),
                    url: "https://qobuz.com/x".into(),
                    icon_url: None,
                }],
                ..Default::default()
            },
            media: Media { cover_art: Some("https://cdn/x.jpg".into()), ..Default::default() },
            seo: Seo::default(),
            routing: Default::default(),
            metadata: LinkMetadata::new(now(), LinkStatus::Active),
        }
    }

    #[test]
    fn smartlink_round_trips_through_json_and_bson_with_seed_field_names() {
        let link = sample_link();
        let json = serde_json::to_value(&link).unwrap();
        assert_eq!(json["platforms"]["appleMusic"], "https://music.apple.com/x");
        assert_eq!(json["track"]["artistName"], "Jiro");
        assert_eq!(json["metadata"]["status"], "active");
        let back: Smartlink = serde_json::from_value(json).unwrap();
        assert_eq!(back, link);
        let doc = bson::to_document(&link).unwrap();
        assert!(doc.get_object_id("clientId").is_ok());
        assert_eq!(bson::from_document::<Smartlink>(doc).unwrap(), link);
    }

    #[test]
    fn client_round_trips_and_defaults_settings() {
        let c = Client {
            id: ObjectId::new(),
            name: "Universal".into(),
            slug: "universal".into(),
            domain: "links.universal.com".into(),
            subdomain: None,
            tracking: ClientTracking { ga4: Some("G-ABC".into()), ..Default::default() },
            branding: Branding { primary_color: Some("#1DB954".into()), ..Default::default() },
            settings: ClientSettings::default(),
            metadata: ClientMetadata::new(now(), ClientStatus::Trial, PlanType::Enterprise),
        };
        let back: Client = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        // A seed-era document without the fields we added still reads.
        let doc = bson::doc! { "_id": c.id, "name": "U", "slug": "u", "domain": "d",
        "settings": { "analyticsRetentionDays": 30_i32 },
        "metadata": { "createdAt": now(), "updatedAt": now() } };
        let old: Client = bson::from_document(doc).unwrap();
        assert_eq!(old.settings.analytics_retention_days, 30);
        assert!(old.settings.anonymize_ip);
        assert_eq!(old.metadata.status, ClientStatus::Active);
    }

    #[test]
    fn capped_breakdowns_keep_the_top_values_and_the_sums() {
        let mut b = RollupBreakdown::default();
        for i in 0..10 {
            b.referrers.insert(format!("r{i}.example"), i + 1);
        }
        b.countries.insert("FR".into(), 4);
        b.cap(3);
        assert_eq!(b.referrers.len(), 4, "3 values and the other bucket");
        assert_eq!(b.referrers.values().sum::<i64>(), 55, "sum unchanged");
        assert_eq!(b.referrers.get("r9.example"), Some(&10));
        assert_eq!(b.referrers.get(RollupBreakdown::OTHER), Some(&(55 - 10 - 9 - 8)));
        assert_eq!(b.countries.len(), 1, "short dimensions untouched");
        // Capping a merge of capped windows keeps one other bucket.
        let mut m = b.clone();
        m.merge(&b);
        m.cap(3);
        assert_eq!(m.referrers.len(), 4);
        assert_eq!(m.referrers.values().sum::<i64>(), 110);
    }

    #[test]
    fn rollup_and_user_and_key_round_trip() {
        let r = Rollup {
            id: "a:all:2026-11-21T00:00:00Z".into(),
            date: now(),
            client_id: ObjectId::new(),
            smartlink_id: None,
            metrics: RollupMetrics { total_views: 3, conversion_rate: 0.5, ..Default::default() },
            breakdown: RollupBreakdown { hours: vec![0; 24], ..Default::default() },
            last_updated: now(),
            fingerprint: 7,
        };
        let mut r = r;
        r.breakdown.referrers.insert("l.instagram.com".into(), 3);
        let doc = bson::to_document(&r).unwrap();
        let refs = doc.get_document("breakdown").unwrap().get_array("referrers").unwrap();
        assert_eq!(refs[0].as_document().unwrap().get_str("value").unwrap(), "l.instagram.com", "no dotted keys");
        assert_eq!(bson::from_document::<Rollup>(doc).unwrap(), r);
        let u = User {
            id: ObjectId::new(),
            client_id: ObjectId::new(),
            first_name: "Ada".into(),
            last_name: "L".into(),
            auth: UserAuth {
                email_enc: "enc:v1:k:x".into(),
                email_index: "00".into(),
                password_hash: "$argon2id$".into(),
                login_attempts: 0,
                lock_until: None,
                email_verified: true,
                totp_secret_enc: None,
                totp_pending_enc: None,
                totp_last_step: None,
                last_login: None,
            },
            permissions: UserPermissions { role: Role::Agent, scopes: vec![] },
            is_active: true,
            created_at: now(),
            updated_at: now(),
        };
        assert_eq!(serde_json::from_value::<User>(serde_json::to_value(&u).unwrap()).unwrap(), u);
        assert_eq!(serde_json::from_value::<Role>(serde_json::json!("editor")).unwrap(), Role::Agent, "seed 000 name");
        assert_eq!(serde_json::from_value::<Role>(serde_json::json!("sales")).unwrap(), Role::Agent, "seed 003 name");
        let k = ApiKey {
            id: ObjectId::new(),
            client_id: ObjectId::new(),
            name: "ci".into(),
            prefix: "sk_abcd".into(),
            key_hash: "00".repeat(32),
            scopes: vec!["links:write".into()],
            created_at: now(),
            revoked_at: None,
        };
        assert_eq!(bson::from_document::<ApiKey>(bson::to_document(&k).unwrap()).unwrap(), k);
    }

    #[test]
    fn platform_ids_are_slugs_and_resolve() {
        for p in PlatformId::ALL {
            assert!(crate::ids::is_slug(p.id()));
            assert_eq!(PlatformId::from_id(p.id()), Some(p));
        }
        assert_eq!(sample_link().platforms.get(PlatformId::AppleMusic), Some("https://music.apple.com/x"));
    }

    #[test]
    fn index_names_are_unique_per_collection() {
        let mut seen = std::collections::HashSet::new();
        for i in INDEXES {
            assert!(seen.insert((i.collection, i.name)), "{i:?}");
        }
        assert!(INDEXES.iter().any(|i| i.collection == collections::SMARTLINKS && i.unique));
    }
}
