//! Bulk creation of smartlinks from CSV (issue #18):
//! `POST /v1/smartlinks/import` with a `text/csv` body, one link per line.
//! Every line is checked by the same rules as `POST /v1/smartlinks`
//! ([`super::handlers::build`]), slugs against each other and the tenant's
//! links, and the batch against the plan's links per month, before
//! anything is written: the first invalid line answers 400 naming
//! `line N.column`, and nothing is created.
//!
//! Columns (header line, any order, case-insensitive): `slug`, `title`,
//! `artist` (required), `status` (`active` or `draft`), `featured`
//! (`true`/`false`), `album`, `genre`, `release_date` (RFC 3339), `isrc`,
//! `cover_art`, `tags` (separated by `|`), `publish_at`, `expires_at`
//! (RFC 3339), `expired_url`, and one column per platform id (`spotify`,
//! `apple-music`, ...: the destination URL, empty for none).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, DateTime};
use futures::TryStreamExt;
use schemas::mongo::{collections, Client, PlatformId, Smartlink};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::handlers::{build, view, MediaDto, SmartlinkCreate, SmartlinkView, TrackDto};
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::{limits, Tenant};

/// Most data lines in one import.
pub const IMPORT_MAX_LINES: usize = 1000;
/// Largest import body, bytes.
pub const IMPORT_MAX_BYTES: usize = 1024 * 1024;

/// Columns other than the platform ids.
const COLUMNS: [&str; 14] = [
    "slug",
    "title",
    "artist",
    "status",
    "featured",
    "album",
    "genre",
    "release_date",
    "isrc",
    "cover_art",
    "tags",
    "publish_at",
    "expires_at",
    "expired_url",
];

/// `POST /v1/smartlinks/import` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Tenant; required with the operator key, defaults to the key's tenant.
    pub client_id: Option<String>,
}

/// What an import created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// Links created, one per data line.
    pub created: usize,
    /// The links, in line order.
    pub items: Vec<SmartlinkView>,
}

/// The CSV column a request field of [`SmartlinkCreate`] comes from.
fn column_of(field: &str) -> String {
    let column = match field {
        "track.title" => "title",
        "track.artist_name" => "artist",
        "track.album_name" => "album",
        "track.genre" => "genre",
        "track.release_date" => "release_date",
        "track.isrc" => "isrc",
        "media.cover_art" => "cover_art",
        f if f.starts_with("tags") => "tags",
        f => f.strip_prefix("platforms.").unwrap_or(f),
    };
    column.to_string()
}

/// The error `e` of data line `line`, its field named as `line N.column`.
fn at_line(line: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::Invalid { field, message } => {
            ApiError::Invalid { field: format!("line {line}.{}", column_of(&field)), message }
        }
        e => e,
    }
}

/// Parses `body` into one creation request per data line, each with its
/// line number (the header is line 1); 400 naming `line N.column` at the
/// first cell that cannot be read, or `body` when there is no data line or
/// more than [`IMPORT_MAX_LINES`]. Pure.
pub fn parse_links_csv(body: &str) -> Result<Vec<(usize, SmartlinkCreate)>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::invalid("line 1", e.to_string()))?
        .iter()
        .map(str::to_lowercase)
        .collect();
    for (i, h) in headers.iter().enumerate() {
        if !COLUMNS.contains(&h.as_str()) && PlatformId::from_id(h).is_none() {
            return Err(ApiError::invalid(
                format!("line 1.{h}"),
                "unknown column: slug, title, artist, status, featured, album, genre, release_date, isrc, cover_art, tags, publish_at, expires_at, expired_url or a platform id",
            ));
        }
        if headers[..i].contains(h) {
            return Err(ApiError::invalid(format!("line 1.{h}"), "column given twice"));
        }
    }
    for need in ["slug", "title", "artist"] {
        if !headers.iter().any(|h| h == need) {
            return Err(ApiError::invalid(format!("line 1.{need}"), "column required"));
        }
    }
    let mut out = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let line = n + 2;
        if out.len() == IMPORT_MAX_LINES {
            return Err(ApiError::invalid("body", format!("at most {IMPORT_MAX_LINES} lines")));
        }
        let rec = rec.map_err(|e| ApiError::invalid(format!("line {line}"), e.to_string()))?;
        let mut link = SmartlinkCreate {
            client_id: None,
            slug: String::new(),
            status: None,
            featured: false,
            tags: Vec::new(),
            publish_at: None,
            expires_at: None,
            expired_url: None,
            track: TrackDto {
                title: String::new(),
                artist_name: String::new(),
                album_name: None,
                genre: None,
                release_date: None,
                duration_s: None,
                isrc: None,
            },
            platforms: BTreeMap::new(),
            custom_platforms: Vec::new(),
            media: MediaDto::default(),
            seo: Default::default(),
            routing: None,
        };
        for (h, v) in headers.iter().zip(rec.iter()) {
            let some = || (!v.is_empty()).then(|| v.to_string());
            match h.as_str() {
                "slug" => link.slug = v.to_string(),
                "title" => link.track.title = v.to_string(),
                "artist" => link.track.artist_name = v.to_string(),
                "status" => link.status = some(),
                "featured" => {
                    link.featured = match v.to_ascii_lowercase().as_str() {
                        "" | "false" | "0" | "no" => false,
                        "true" | "1" | "yes" => true,
                        _ => return Err(ApiError::invalid(format!("line {line}.featured"), "must be true or false")),
                    }
                }
                "album" => link.track.album_name = some(),
                "genre" => link.track.genre = some(),
                "release_date" => link.track.release_date = some(),
                "isrc" => link.track.isrc = some(),
                "cover_art" => link.media.cover_art = some(),
                "publish_at" => link.publish_at = some(),
                "expires_at" => link.expires_at = some(),
                "expired_url" => link.expired_url = some(),
                "tags" => link.tags = v.split('|').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect(),
                platform => {
                    if let Some(url) = some() {
                        link.platforms.insert(platform.to_string(), url);
                    }
                }
            }
        }
        out.push((line, link));
    }
    if out.is_empty() {
        return Err(ApiError::invalid("body", "no data line after the header"));
    }
    Ok(out)
}

/// Creates one smartlink per line of a CSV body (module docs: columns and
/// rules); all or nothing: 400 naming `line N.column` at the first invalid
/// line (a slug given twice, or one the tenant has, names `slug`), 403
/// `monthly_link_limit` when the batch would pass the plan's links this
/// month. At most [`IMPORT_MAX_LINES`] lines and [`IMPORT_MAX_BYTES`].
#[utoipa::path(post, path = "/v1/smartlinks/import", tag = "smartlinks", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 201, body = ImportResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Query(q): Query<ImportQuery>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    p.can(Resource::Links, Action::Create)?;
    let body = body.map_err(|r| ApiError::Malformed { code: "malformed_body", message: r.body_text() })?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let now = DateTime::now();
    let mut links = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (line, dto) in parse_links_csv(&body)? {
        let link = build(&dto, &client, now).map_err(|e| at_line(line, e))?;
        if let Some(first) = lines.insert(link.slug.clone(), line) {
            return Err(ApiError::invalid(
                format!("line {line}.slug"),
                format!("{} is also on line {first}", link.slug),
            ));
        }
        links.push(link);
    }
    let coll = st.mongo.collection::<Smartlink>(collections::SMARTLINKS);
    let created = limits::within_monthly_links(&st, &client, links.len() as u64, || async {
        let slugs: Vec<&str> = links.iter().map(|l| l.slug.as_str()).collect();
        let taken: Vec<Smartlink> =
            coll.find(doc! { "clientId": client.id, "slug": { "$in": slugs } }).await?.try_collect().await?;
        if let Some(first) = taken.iter().filter_map(|t| lines.get(&t.slug)).min() {
            let slug = &links[first - 2].slug;
            return Err(ApiError::invalid(
                format!("line {first}.slug"),
                format!("the tenant already has a link with slug {slug}"),
            ));
        }
        insert_all(&coll, &links, &client).await
    })
    .await?;
    for link in &links {
        let target = Target { client_id: client.id, action: "create", resource: "smartlinks", id: link.id };
        audit::changed(&st, &p, &meta, target, None, Some(link)).await?;
    }
    let items: Vec<_> = links.iter().map(|l| view(l, &client, &st.cfg.link_scheme)).collect();
    let data = items.iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect();
    crate::webhooks::enqueue_all(&st, client.id, schemas::webhooks::WebhookEvent::LinkCreated, data).await;
    Ok((StatusCode::CREATED, Json(ImportResult { created, items })))
}

/// Inserts `links` (ordered). When one fails (a slug taken meanwhile by a
/// rename), removes those already inserted and answers 409 `slug_taken`
/// (or 503): an import writes all its links or none.
async fn insert_all(
    coll: &mongodb::Collection<Smartlink>,
    links: &[Smartlink],
    client: &Client,
) -> Result<usize, ApiError> {
    match coll.insert_many(links).await {
        Ok(r) => Ok(r.inserted_ids.len()),
        Err(e) => {
            let ids: Vec<_> = links.iter().map(|l| l.id).collect();
            coll.delete_many(doc! { "_id": { "$in": ids }, "clientId": client.id }).await?;
            if crate::error::is_duplicate_key(&e) {
                Err(ApiError::Conflict {
                    code: "slug_taken",
                    message: "a slug of the import was taken meanwhile; nothing was created".into(),
                })
            } else {
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_become_creation_requests() {
        let csv = "Slug,Title,Artist,spotify,deezer,tags,featured\n\
                   jiro,In Your Light,Jiro,https://open.spotify.com/track/1,,single| Summer ,true\n\
                   \"b-side\",\"Title, with comma\",Jiro,,https://www.deezer.com/track/2,,\n";
        let rows = parse_links_csv(csv).unwrap();
        assert_eq!(rows.len(), 2);
        let (line, first) = &rows[0];
        assert_eq!((*line, first.slug.as_str(), first.featured), (2, "jiro", true));
        assert_eq!(first.tags, ["single", "Summer"]);
        assert_eq!(first.platforms.keys().collect::<Vec<_>>(), ["spotify"], "empty cells are no destination");
        assert_eq!(rows[1].1.track.title, "Title, with comma");
        assert_eq!(rows[1].0, 3);
    }

    #[test]
    fn unreadable_files_name_line_and_column() {
        assert_eq!(field(parse_links_csv("slug,title\njiro,T\n").unwrap_err()), "line 1.artist");
        assert_eq!(field(parse_links_csv("slug,title,artist,myspace\n").unwrap_err()), "line 1.myspace");
        assert_eq!(field(parse_links_csv("slug,title,artist,slug\n").unwrap_err()), "line 1.slug");
        assert_eq!(field(parse_links_csv("slug,title,artist\n").unwrap_err()), "body");
        assert_eq!(field(parse_links_csv("slug,title,artist,featured\na,T,A,maybe\n").unwrap_err()), "line 2.featured");
        assert_eq!(field(parse_links_csv("slug,title,artist\na,T\n").unwrap_err()), "line 2");
        let many = format!("slug,title,artist\n{}", "a,T,A\n".repeat(IMPORT_MAX_LINES + 1));
        assert_eq!(field(parse_links_csv(&many).unwrap_err()), "body");
    }

    #[test]
    fn request_fields_map_to_their_columns() {
        for (f, c) in [
            ("track.title", "title"),
            ("track.artist_name", "artist"),
            ("platforms.apple-music", "apple-music"),
            ("tags[3]", "tags"),
            ("slug", "slug"),
            ("platforms", "platforms"),
        ] {
            assert_eq!(column_of(f), c);
        }
        assert_eq!(field(at_line(7, ApiError::invalid("track.isrc", "x"))), "line 7.isrc");
    }
}
