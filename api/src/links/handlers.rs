//! The `links` handlers: request and response types, validation and the
//! operations behind each route of [`super::router`].

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::mongo::{
    collections, Client, CustomPlatform, LinkMetadata, LinkStatus, Media, PlatformId, Platforms, Seo, Smartlink, Track,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use schemas::webhooks::WebhookEvent;

use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::{limits, Tenant};
use crate::validate::{self, rfc};

use super::routing::RoutingDto;

/// The track a smartlink promotes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackDto {
    /// Title, 1..=200 characters.
    #[schema(schema_with = crate::openapi::text_200)]
    pub title: String,
    /// Artist, 1..=200 characters.
    #[schema(schema_with = crate::openapi::text_200)]
    pub artist_name: String,
    /// Album, at most 200 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::text_200)]
    pub album_name: Option<String>,
    /// Genre, at most 100 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::text_100)]
    pub genre: Option<String>,
    /// Release date, RFC 3339 (`2026-11-21T00:00:00Z`).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::time)]
    pub release_date: Option<String>,
    /// Duration, seconds (1..=36000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 36000)]
    pub duration_s: Option<i64>,
    /// ISRC, 12 characters of A-Z0-9.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::isrc)]
    pub isrc: Option<String>,
}

/// A destination that is not one of the known platforms.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomPlatformDto {
    /// Button label, 1..=60 characters, with a letter or digit.
    #[schema(schema_with = crate::openapi::label_60)]
    pub name: String,
    /// Destination, http(s).
    #[schema(schema_with = crate::openapi::http_url)]
    pub url: String,
    /// Icon, http(s).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::http_url)]
    pub icon_url: Option<String>,
}

/// Media URLs, http(s).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaDto {
    /// Cover art.
    #[schema(schema_with = crate::openapi::http_url)]
    pub cover_art: Option<String>,
    /// Background image.
    #[schema(schema_with = crate::openapi::http_url)]
    pub background_image: Option<String>,
    /// 30 s audio preview.
    #[schema(schema_with = crate::openapi::http_url)]
    pub audio_preview: Option<String>,
}

/// SEO, Open Graph and Twitter card values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeoDto {
    /// Page title, at most 200 characters; defaults to "Title - Artist".
    #[schema(schema_with = crate::openapi::text_200)]
    pub meta_title: Option<String>,
    /// Description, at most 500 characters.
    #[schema(schema_with = crate::openapi::text_500)]
    pub meta_description: Option<String>,
    /// Keywords, at most 20 of 50 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::keywords)]
    pub keywords: Vec<String>,
    /// `og:image`, http(s); defaults to the cover art.
    #[schema(schema_with = crate::openapi::http_url)]
    pub og_image: Option<String>,
}

/// `POST /v1/smartlinks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartlinkCreate {
    /// Owning tenant; required with the operator key, defaults to the key's
    /// tenant otherwise.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Slug, unique per tenant: 1..=64 of a-z, 0-9, `-`.
    #[schema(schema_with = crate::openapi::slug)]
    pub slug: String,
    /// `active` (default) or `draft`. An active link needs a destination
    /// (`platforms` or `custom_platforms`).
    #[serde(default)]
    #[schema(schema_with = new_status_schema)]
    pub status: Option<String>,
    /// Featured on the tenant's dashboard.
    #[serde(default)]
    pub featured: bool,
    /// Tags, at most 20 of 1..=30 characters; stored lowercase, each once.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Vec<String>,
    /// Go-live time, RFC 3339: before it the edge serves a pre-release
    /// page (the track and its date, no button) and redirects nowhere.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::time)]
    pub publish_at: Option<String>,
    /// Expiry, RFC 3339, after `publish_at`: from it every visit goes to
    /// `expired_url`, or is answered 410 Gone without one.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::time)]
    pub expires_at: Option<String>,
    /// Where visits of the expired link go (http or https).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::http_url)]
    pub expired_url: Option<String>,
    /// The track.
    pub track: TrackDto,
    /// Destinations by platform id (`spotify`, `apple-music`, `deezer`,
    /// `youtube`, `soundcloud`, `tidal`, `amazon-music`, `bandcamp`).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::platform_urls)]
    pub platforms: BTreeMap<String, String>,
    /// Other destinations, at most 10.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub custom_platforms: Vec<CustomPlatformDto>,
    /// Media URLs.
    #[serde(default)]
    pub media: MediaDto,
    /// SEO values.
    #[serde(default)]
    pub seo: SeoDto,
    /// Routing rules (device, OS, browser, country, language, A/B split),
    /// preferred service, app links and destination parameters.
    #[serde(default)]
    pub routing: Option<RoutingDto>,
}

/// `PATCH /v1/smartlinks/{id}` body: each field present replaces the
/// stored one whole; absent fields stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartlinkPatch {
    /// New slug (unique per tenant).
    #[schema(schema_with = crate::openapi::slug)]
    pub slug: Option<String>,
    /// `active`, `draft` or `archived`.
    #[schema(schema_with = status_schema)]
    pub status: Option<String>,
    /// Featured flag.
    pub featured: Option<bool>,
    /// Tags (replace the stored ones).
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Option<Vec<String>>,
    /// Go-live time, RFC 3339; `""` removes it.
    #[schema(schema_with = crate::openapi::time_or_empty)]
    pub publish_at: Option<String>,
    /// Expiry, RFC 3339, after `publish_at`; `""` removes it.
    #[schema(schema_with = crate::openapi::time_or_empty)]
    pub expires_at: Option<String>,
    /// Where visits of the expired link go; `""` removes it.
    #[schema(schema_with = crate::openapi::http_url_or_empty)]
    pub expired_url: Option<String>,
    /// The track.
    pub track: Option<TrackDto>,
    /// Destinations by platform id.
    #[schema(schema_with = crate::openapi::platform_urls)]
    pub platforms: Option<BTreeMap<String, String>>,
    /// Other destinations, at most 10.
    #[schema(max_items = 10)]
    pub custom_platforms: Option<Vec<CustomPlatformDto>>,
    /// Media URLs.
    pub media: Option<MediaDto>,
    /// SEO values.
    pub seo: Option<SeoDto>,
    /// Routing (replaces the stored one whole; `{}` removes every rule).
    pub routing: Option<RoutingDto>,
}

/// Counters the aggregator keeps on the link (all time, bots excluded).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkStats {
    /// Views.
    pub total_views: i64,
    /// Distinct visitors.
    pub unique_visitors: i64,
    /// Click-outs / views, 0..=1.
    pub conversion_rate: f64,
}

/// A smartlink as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SmartlinkView {
    /// Link id.
    pub id: String,
    /// Tenant id.
    pub client_id: String,
    /// Slug.
    pub slug: String,
    /// Public URL (`https://{tenant domain}/{slug}`).
    pub url: String,
    /// `active`, `draft` or `archived`.
    pub status: String,
    /// Featured flag.
    pub featured: bool,
    /// Tags, lowercase.
    pub tags: Vec<String>,
    /// Go-live time, RFC 3339 UTC.
    #[schema(schema_with = crate::openapi::time)]
    pub publish_at: Option<String>,
    /// Expiry, RFC 3339 UTC.
    #[schema(schema_with = crate::openapi::time)]
    pub expires_at: Option<String>,
    /// Where visits of the expired link go.
    #[schema(schema_with = crate::openapi::http_url)]
    pub expired_url: Option<String>,
    /// The track.
    pub track: TrackDto,
    /// Destinations by platform id.
    pub platforms: BTreeMap<String, String>,
    /// Other destinations.
    pub custom_platforms: Vec<CustomPlatformDto>,
    /// Media URLs.
    pub media: MediaDto,
    /// SEO values.
    pub seo: SeoDto,
    /// Routing rules and options.
    pub routing: RoutingDto,
    /// Cached counters.
    pub stats: LinkStats,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
}

/// A page of smartlinks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SmartlinkPage {
    /// Links, newest first.
    pub items: Vec<SmartlinkView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/smartlinks` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Tenant; required with the operator key, defaults to the key's tenant.
    pub client_id: Option<String>,
    /// Only links with this status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Only links with this tag (lowercase match).
    #[param(schema_with = crate::openapi::text_30)]
    pub tag: Option<String>,
    /// Only links whose slug, title or artist contains this text
    /// (case-insensitive), 1..=100 characters.
    #[param(schema_with = crate::openapi::text_100)]
    pub q: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn status_name(s: LinkStatus) -> &'static str {
    match s {
        LinkStatus::Active => "active",
        LinkStatus::Draft => "draft",
        LinkStatus::Archived => "archived",
    }
}

/// A link's statuses on the wire; a new link is one of the first two.
const STATUSES: [&str; 3] = ["active", "draft", "archived"];

/// Schema of a link status ([`STATUSES`]).
fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&STATUSES)
}

/// Schema of a new link's status (`active` or `draft`).
fn new_status_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&STATUSES[..2])
}

fn parse_status(field: &str, v: &str, allow_archived: bool) -> Result<LinkStatus, ApiError> {
    match v {
        "active" => Ok(LinkStatus::Active),
        "draft" => Ok(LinkStatus::Draft),
        "archived" if allow_archived => Ok(LinkStatus::Archived),
        _ => {
            let allowed = if allow_archived { &STATUSES[..] } else { &STATUSES[..2] };
            Err(ApiError::invalid(field, format!("must be one of {}", allowed.join(", "))))
        }
    }
}

/// The known platforms' URLs of `p`, by platform id.
fn known_urls(p: &Platforms) -> BTreeMap<String, String> {
    PlatformId::ALL.into_iter().filter_map(|id| p.get(id).map(|u| (id.id().to_string(), u.to_string()))).collect()
}

/// The custom destinations of `p` as the API shows them.
fn custom_dtos(p: &Platforms) -> Vec<CustomPlatformDto> {
    p.custom
        .iter()
        .map(|c| CustomPlatformDto { name: c.name.clone(), url: c.url.clone(), icon_url: c.icon_url.clone() })
        .collect()
}

/// The view of `l`, whose tenant is `c`; link URLs use `scheme`.
pub fn view(l: &Smartlink, c: &Client, scheme: &str) -> SmartlinkView {
    let t = &l.track;
    SmartlinkView {
        id: l.id.to_hex(),
        client_id: l.client_id.to_hex(),
        slug: l.slug.clone(),
        url: format!("{scheme}://{}/{}", c.domain, l.slug),
        status: status_name(l.metadata.status).into(),
        featured: l.metadata.featured,
        tags: l.metadata.tags.clone(),
        publish_at: l.metadata.publish_at.map(rfc),
        expires_at: l.metadata.expires_at.map(rfc),
        expired_url: l.metadata.expired_url.clone(),
        track: TrackDto {
            title: t.title.clone(),
            artist_name: t.artist_name.clone(),
            album_name: t.album_name.clone(),
            genre: t.genre.clone(),
            release_date: t.release_date.map(rfc),
            duration_s: t.duration,
            isrc: t.isrc.clone(),
        },
        platforms: known_urls(&l.platforms),
        custom_platforms: custom_dtos(&l.platforms),
        media: MediaDto {
            cover_art: l.media.cover_art.clone(),
            background_image: l.media.background_image.clone(),
            audio_preview: l.media.audio_preview.clone(),
        },
        seo: SeoDto {
            meta_title: l.seo.meta_title.clone(),
            meta_description: l.seo.meta_description.clone(),
            keywords: l.seo.keywords.clone(),
            og_image: l.seo.og_image.clone(),
        },
        routing: super::routing::view(&l.routing),
        stats: LinkStats {
            total_views: l.metadata.total_views,
            unique_visitors: l.metadata.unique_visitors,
            conversion_rate: l.metadata.conversion_rate,
        },
        created_at: rfc(l.metadata.created_at),
        updated_at: rfc(l.metadata.updated_at),
    }
}

/// The link `body` describes, of tenant `client`, created at `now`,
/// validated (400 naming the field).
pub fn build(body: &SmartlinkCreate, client: &Client, now: DateTime) -> Result<Smartlink, ApiError> {
    let status = match body.status.as_deref() {
        None => LinkStatus::Active,
        Some(s) => parse_status("status", s, false)?,
    };
    let mut metadata = LinkMetadata::new(now, status);
    metadata.featured = body.featured;
    metadata.tags = tags(&body.tags)?;
    metadata.publish_at = validate::opt_instant("publish_at", body.publish_at.as_deref())?;
    metadata.expires_at = validate::opt_instant("expires_at", body.expires_at.as_deref())?;
    metadata.expired_url = validate::opt_http_url("expired_url", body.expired_url.as_deref())?;
    require_schedule(&metadata)?;
    let link = Smartlink {
        id: ObjectId::new(),
        client_id: client.id,
        slug: validate::slug("slug", &body.slug)?,
        track: track(&body.track)?,
        platforms: platforms(&body.platforms, &body.custom_platforms)?,
        media: media(&body.media)?,
        seo: seo(&body.seo)?,
        routing: body.routing.as_ref().map(super::routing::parse).transpose()?.unwrap_or_default(),
        metadata,
    };
    require_destination(&link)?;
    Ok(link)
}

/// A link's schedule rule: it expires after it goes live.
fn require_schedule(m: &LinkMetadata) -> Result<(), ApiError> {
    match (m.publish_at, m.expires_at) {
        (Some(start), Some(end)) if end <= start => Err(ApiError::invalid("expires_at", "must be after publish_at")),
        _ => Ok(()),
    }
}

/// Tags as stored: trimmed, lowercase, each once, in the order given; at
/// most 20 of 1..=30 characters (400 naming `tags[i]`).
fn tags(v: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for t in validate::texts("tags", v, 20, 30)? {
        let t = t.to_lowercase();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn track(t: &TrackDto) -> Result<Track, ApiError> {
    let isrc = validate::opt_text("track.isrc", t.isrc.as_deref(), 12)?;
    if isrc.as_deref().is_some_and(|i| !validate::is_isrc(i)) {
        return Err(ApiError::invalid("track.isrc", "must be 12 characters of A-Z, 0-9"));
    }
    if t.duration_s.is_some_and(|d| !(1..=36_000).contains(&d)) {
        return Err(ApiError::invalid("track.duration_s", "must be 1 to 36000 seconds"));
    }
    let release_date = match t.release_date.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            DateTime::parse_rfc3339_str(s)
                .map_err(|_| ApiError::invalid("track.release_date", "must be an RFC 3339 time"))?,
        ),
    };
    Ok(Track {
        title: validate::text("track.title", &t.title, 1, 200)?,
        artist_name: validate::text("track.artist_name", &t.artist_name, 1, 200)?,
        album_name: validate::opt_text("track.album_name", t.album_name.as_deref(), 200)?,
        genre: validate::opt_text("track.genre", t.genre.as_deref(), 100)?,
        release_date,
        duration: t.duration_s,
        isrc,
    })
}

fn platforms(known: &BTreeMap<String, String>, custom: &[CustomPlatformDto]) -> Result<Platforms, ApiError> {
    let mut p = Platforms::default();
    for (id, url) in known {
        let field = format!("platforms.{id}");
        let platform = PlatformId::from_id(id).ok_or_else(|| ApiError::invalid(&field, "unknown platform id"))?;
        *p.slot(platform) = Some(validate::http_url(&field, url)?);
    }
    if custom.len() > 10 {
        return Err(ApiError::invalid("custom_platforms", "at most 10"));
    }
    for (i, c) in custom.iter().enumerate() {
        let name = validate::text(&format!("custom_platforms[{i}].name"), &c.name, 1, 60)?;
        if !name.chars().any(|ch| ch.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid(format!("custom_platforms[{i}].name"), "must contain a letter or digit"));
        }
        p.custom.push(CustomPlatform {
            name,
            url: validate::http_url(&format!("custom_platforms[{i}].url"), &c.url)?,
            icon_url: validate::opt_http_url(&format!("custom_platforms[{i}].icon_url"), c.icon_url.as_deref())?,
        });
    }
    Ok(p)
}

fn media(m: &MediaDto) -> Result<Media, ApiError> {
    Ok(Media {
        cover_art: validate::opt_http_url("media.cover_art", m.cover_art.as_deref())?,
        background_image: validate::opt_http_url("media.background_image", m.background_image.as_deref())?,
        audio_preview: validate::opt_http_url("media.audio_preview", m.audio_preview.as_deref())?,
    })
}

fn seo(s: &SeoDto) -> Result<Seo, ApiError> {
    if s.keywords.len() > 20 {
        return Err(ApiError::invalid("seo.keywords", "at most 20"));
    }
    let keywords = s
        .keywords
        .iter()
        .enumerate()
        .map(|(i, k)| validate::text(&format!("seo.keywords[{i}]"), k, 1, 50))
        .collect::<Result<_, _>>()?;
    Ok(Seo {
        meta_title: validate::opt_text("seo.meta_title", s.meta_title.as_deref(), 200)?,
        meta_description: validate::opt_text("seo.meta_description", s.meta_description.as_deref(), 500)?,
        keywords,
        og_image: validate::opt_http_url("seo.og_image", s.og_image.as_deref())?,
    })
}

fn has_destination(p: &Platforms) -> bool {
    PlatformId::ALL.into_iter().any(|id| p.get(id).is_some()) || !p.custom.is_empty()
}

fn require_destination(l: &Smartlink) -> Result<(), ApiError> {
    if l.metadata.status == LinkStatus::Active && !has_destination(&l.platforms) {
        return Err(ApiError::invalid("platforms", "an active link needs at least one destination"));
    }
    Ok(())
}

/// Loads link `id` and its tenant if the caller may see them; 404 otherwise.
pub async fn load_link(st: &AppState, p: &Principal, id: &str) -> Result<(Smartlink, Client), ApiError> {
    let link =
        crate::store::load_owned(st, p, collections::SMARTLINKS, "smartlink", id, |l: &Smartlink| l.client_id).await?;
    let client = Tenant::load(st, p, link.client_id).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::NotFound("smartlink"),
        e => e,
    })?;
    Ok((link, client))
}

fn slug_taken(slug: &str) -> ApiError {
    ApiError::Conflict { code: "slug_taken", message: format!("the tenant already has a link with slug {slug}") }
}

/// Creates a smartlink; it is served by the edge within about a second.
/// 403 `monthly_link_limit` when the tenant already made its plan's
/// `max_smartlinks_per_month` links this UTC month.
#[utoipa::path(post, path = "/v1/smartlinks", tag = "smartlinks", request_body = SmartlinkCreate,
    responses((status = 201, body = SmartlinkView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(body): Body<SmartlinkCreate>,
) -> Result<(StatusCode, Json<SmartlinkView>), ApiError> {
    p.can(Resource::Links, Action::Create)?;
    let client = Tenant::resolve(&st, &p, body.client_id.as_deref()).await?;
    let link = build(&body, &client, DateTime::now())?;
    limits::within_monthly_links(&st, &client, 1, || async {
        st.mongo.collection::<Smartlink>(collections::SMARTLINKS).insert_one(&link).await.map_err(|e| {
            if is_duplicate_key(&e) {
                slug_taken(&link.slug)
            } else {
                e.into()
            }
        })
    })
    .await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: client.id, action: "create", resource: "smartlinks", id: link.id },
        None,
        Some(&link),
    )
    .await?;
    let v = view(&link, &client, &st.cfg.link_scheme);
    tell(&st, client.id, WebhookEvent::LinkCreated, &v).await;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Queues `event` about link `v` for the tenant's webhooks ([`crate::webhooks::enqueue`]).
pub(crate) async fn tell(st: &AppState, client: bson::oid::ObjectId, event: WebhookEvent, v: &impl serde::Serialize) {
    crate::webhooks::enqueue(st, client, event, serde_json::to_value(v).unwrap_or_default()).await;
}

/// Lists a tenant's smartlinks, newest first, by pages; `tag` and `q`
/// narrow them (a tag, a text in the slug, title or artist).
#[utoipa::path(get, path = "/v1/smartlinks", tag = "smartlinks", params(ListQuery),
    responses((status = 200, body = SmartlinkPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SmartlinkPage>, ApiError> {
    p.can(Resource::Links, Action::Read)?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    let mut filter = doc! { "clientId": client.id };
    if let Some(s) = q.status.as_deref() {
        filter.insert("metadata.status", status_name(parse_status("status", s, true)?));
    }
    if let Some(t) = q.tag.as_deref() {
        filter.insert("metadata.tags", validate::text("tag", t, 1, 30)?.to_lowercase());
    }
    if let Some(text) = q.q.as_deref() {
        // A literal, case-insensitive substring: the text is escaped, so
        // no regular-expression syntax reaches the store.
        let contains = doc! { "$regex": regex::escape(&validate::text("q", text, 1, 100)?), "$options": "i" };
        filter.insert(
            "$or",
            vec![
                doc! { "slug": contains.clone() },
                doc! { "track.title": contains.clone() },
                doc! { "track.artistName": contains },
            ],
        );
    }
    if let Some(c) = q.cursor.as_deref() {
        filter.insert("_id", doc! { "$lt": validate::object_id("cursor", c)? });
    }
    let mut links: Vec<Smartlink> = st
        .mongo
        .collection::<Smartlink>(collections::SMARTLINKS)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    let next_cursor = if links.len() as i64 > limit {
        links.truncate(limit as usize);
        links.last().map(|l| l.id.to_hex())
    } else {
        None
    };
    Ok(Json(SmartlinkPage {
        items: links.iter().map(|l| view(l, &client, &st.cfg.link_scheme)).collect(),
        next_cursor,
    }))
}

/// Reads one smartlink.
#[utoipa::path(get, path = "/v1/smartlinks/{id}", tag = "smartlinks", params(("id" = String, Path, description = "Link id")),
    responses((status = 200, body = SmartlinkView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<SmartlinkView>, ApiError> {
    p.can(Resource::Links, Action::Read)?;
    let (link, client) = load_link(&st, &p, &id).await?;
    Ok(Json(view(&link, &client, &st.cfg.link_scheme)))
}

/// Changes a smartlink; fields present replace the stored ones whole.
#[utoipa::path(patch, path = "/v1/smartlinks/{id}", tag = "smartlinks", params(("id" = String, Path, description = "Link id")),
    request_body = SmartlinkPatch,
    responses((status = 200, body = SmartlinkView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(body): Body<SmartlinkPatch>,
) -> Result<Json<SmartlinkView>, ApiError> {
    p.can(Resource::Links, Action::Update)?;
    let (mut link, client) = load_link(&st, &p, &id).await?;
    let old = link.clone();
    if let Some(s) = &body.slug {
        link.slug = validate::slug("slug", s)?;
    }
    if let Some(s) = &body.status {
        link.metadata.status = parse_status("status", s, true)?;
    }
    if let Some(f) = body.featured {
        link.metadata.featured = f;
    }
    if let Some(t) = &body.tags {
        link.metadata.tags = tags(t)?;
    }
    if let Some(v) = &body.publish_at {
        link.metadata.publish_at = validate::opt_instant("publish_at", Some(v))?;
    }
    if let Some(v) = &body.expires_at {
        link.metadata.expires_at = validate::opt_instant("expires_at", Some(v))?;
    }
    if let Some(v) = &body.expired_url {
        link.metadata.expired_url = validate::opt_http_url("expired_url", Some(v))?;
    }
    require_schedule(&link.metadata)?;
    if let Some(t) = &body.track {
        link.track = track(t)?;
    }
    if body.platforms.is_some() || body.custom_platforms.is_some() {
        let known = match &body.platforms {
            Some(k) => k.clone(),
            None => known_urls(&link.platforms),
        };
        let custom = match &body.custom_platforms {
            Some(c) => c.clone(),
            None => custom_dtos(&link.platforms),
        };
        link.platforms = platforms(&known, &custom)?;
    }
    if let Some(m) = &body.media {
        link.media = media(m)?;
    }
    if let Some(r) = &body.routing {
        link.routing = super::routing::parse(r)?;
    }
    if let Some(s) = &body.seo {
        link.seo = seo(s)?;
    }
    require_destination(&link)?;
    let coll = st.mongo.collection::<Smartlink>(collections::SMARTLINKS);
    if body.slug.is_some()
        && coll
            .find_one(doc! { "clientId": link.client_id, "slug": &link.slug, "_id": { "$ne": link.id } })
            .await?
            .is_some()
    {
        return Err(slug_taken(&link.slug));
    }
    link.metadata.updated_at = DateTime::now();
    let update = patch_update(&old, &link)?;
    match coll.update_one(doc! { "_id": link.id, "clientId": link.client_id }, update).await {
        Ok(r) if r.matched_count == 0 => Err(ApiError::NotFound("smartlink")),
        Ok(_) => {
            audit::changed(
                &st,
                &p,
                &meta,
                Target { client_id: client.id, action: "update", resource: "smartlinks", id: link.id },
                Some(&old),
                Some(&link),
            )
            .await?;
            let v = view(&link, &client, &st.cfg.link_scheme);
            tell(&st, client.id, WebhookEvent::LinkUpdated, &v).await;
            Ok(Json(v))
        }
        Err(e) if is_duplicate_key(&e) => Err(slug_taken(&link.slug)),
        Err(e) => Err(e.into()),
    }
}

/// Counters of `smartlinks.metadata` the aggregator writes
/// (`rollup::refresh_link_counters`); a PATCH never writes them.
const AGGREGATOR_COUNTERS: [&str; 3] = ["totalViews", "uniqueVisitors", "conversionRate"];

/// The update turning `old` into `new` field by field (`$set` of every
/// field, `$unset` of those `new` dropped), leaving the aggregator's
/// counters alone: replacing the whole document would write back counters
/// read before the aggregator's last refresh (issue #14).
fn patch_update(old: &Smartlink, new: &Smartlink) -> Result<bson::Document, ApiError> {
    let flat = |l: &Smartlink| -> Result<bson::Document, ApiError> {
        let mut d = bson::to_document(l)
            .map_err(|e| ApiError::Unavailable { store: "mongodb", detail: format!("encoding a link: {e}") })?;
        d.remove("_id");
        let mut out = bson::Document::new();
        if let Some(bson::Bson::Document(meta)) = d.remove("metadata") {
            for (k, v) in meta.into_iter().filter(|(k, _)| !AGGREGATOR_COUNTERS.contains(&k.as_str())) {
                out.insert(format!("metadata.{k}"), v);
            }
        }
        out.extend(d);
        Ok(out)
    };
    let (before, set) = (flat(old)?, flat(new)?);
    let unset: bson::Document = before
        .keys()
        .filter(|k| !set.contains_key(k.as_str()))
        .map(|k| (k.clone(), bson::Bson::String(String::new())))
        .collect();
    let mut update = doc! { "$set": set };
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    Ok(update)
}

/// Archives a smartlink: the edge answers 410 Gone from then on; its
/// analytics stay. Archiving an archived link is a no-op.
#[utoipa::path(delete, path = "/v1/smartlinks/{id}", tag = "smartlinks", params(("id" = String, Path, description = "Link id")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn archive(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.can(Resource::Links, Action::Delete)?;
    let (link, _) = load_link(&st, &p, &id).await?;
    st.mongo
        .collection::<Smartlink>(collections::SMARTLINKS)
        .update_one(
            doc! { "_id": link.id, "clientId": link.client_id },
            doc! { "$set": { "metadata.status": "archived", "metadata.updatedAt": DateTime::now() } },
        )
        .await?;
    let mut archived = link.clone();
    archived.metadata.status = LinkStatus::Archived;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: link.client_id, action: "delete", resource: "smartlinks", id: link.id },
        Some(&link),
        Some(&archived),
    )
    .await?;
    let data = serde_json::json!({"id": link.id.to_hex(), "slug": link.slug});
    tell(&st, link.client_id, WebhookEvent::LinkArchived, &data).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_patch_never_writes_the_aggregators_counters_and_unsets_what_it_drops() {
        use schemas::mongo::{LinkMetadata, LinkStatus, Track};
        let mut old = Smartlink {
            id: ObjectId::new(),
            client_id: ObjectId::new(),
            slug: "jiro".into(),
            track: Track {
                title: "T".into(),
                artist_name: "A".into(),
                genre: Some("electro".into()),
                ..Default::default()
            },
            platforms: Default::default(),
            media: Default::default(),
            seo: Default::default(),
            routing: Default::default(),
            metadata: LinkMetadata::new(DateTime::now(), LinkStatus::Active),
        };
        old.metadata.total_views = 77;
        let mut new = old.clone();
        new.slug = "jiro-2".into();
        new.metadata.created_by = Some(ObjectId::new());
        let u = patch_update(&old, &new).unwrap();
        let set = u.get_document("$set").unwrap();
        assert_eq!(set.get_str("slug").unwrap(), "jiro-2");
        assert!(set.contains_key("metadata.createdBy") && set.contains_key("metadata.updatedAt"));
        for c in AGGREGATOR_COUNTERS {
            assert!(!set.contains_key(format!("metadata.{c}")), "{c} is the aggregator's");
        }
        assert!(u.get("$unset").is_none());
        // An optional field the new link drops is unset, not left behind.
        let dropped = patch_update(&new, &old).unwrap();
        assert!(dropped.get_document("$unset").unwrap().contains_key("metadata.createdBy"), "{dropped}");
    }

    use super::*;

    use crate::validate::invalid_field as field;

    #[test]
    fn destinations_are_validated_and_round_trip() {
        let mut known = BTreeMap::new();
        known.insert("apple-music".to_string(), "https://music.apple.com/x".to_string());
        let p = platforms(&known, &[]).unwrap();
        assert_eq!(p.apple_music.as_deref(), Some("https://music.apple.com/x"));
        known.insert("myspace".to_string(), "https://myspace.com".to_string());
        assert_eq!(field(platforms(&known, &[]).unwrap_err()), "platforms.myspace");
        let mut bad = BTreeMap::new();
        bad.insert("spotify".to_string(), "javascript:alert(1)".to_string());
        assert_eq!(field(platforms(&bad, &[]).unwrap_err()), "platforms.spotify");
        let custom = [CustomPlatformDto { name: "Qobuz".into(), url: "ftp://q".into(), icon_url: None }];
        assert_eq!(field(platforms(&BTreeMap::new(), &custom).unwrap_err()), "custom_platforms[0].url");
        assert!(!has_destination(&Platforms::default()));
    }

    #[test]
    fn tracks_and_statuses() {
        let t = TrackDto {
            title: "In Your Light".into(),
            artist_name: "Jiro".into(),
            album_name: None,
            genre: None,
            release_date: Some("2026-11-21T00:00:00Z".into()),
            duration_s: Some(200),
            isrc: Some("USRC17607839".into()),
        };
        assert_eq!(track(&t).unwrap().duration, Some(200));
        assert_eq!(field(track(&TrackDto { isrc: Some("short".into()), ..t.clone() }).unwrap_err()), "track.isrc");
        assert_eq!(field(track(&TrackDto { title: String::new(), ..t }).unwrap_err()), "track.title");
        assert!(parse_status("status", "archived", false).is_err());
        assert_eq!(parse_status("status", "archived", true).unwrap(), LinkStatus::Archived);
    }
}
