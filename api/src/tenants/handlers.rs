//! Tenant handlers (`/v1/clients`): create and list (operator), read
//! (operator, or the tenant's own key).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::mongo::{self, collections, Client, ClientMetadata, ClientStatus, PlanType, PlatformId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc, wire};

/// Client-side pixel ids of the dual engine (seed 002); each optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// GA4 measurement id, `G-` + 4..30 of A-Z0-9.
    pub ga4: Option<String>,
    /// GTM container id, `GTM-` + 4..30 of A-Z0-9.
    pub gtm: Option<String>,
    /// Meta Pixel id, digits.
    pub meta_pixel: Option<String>,
    /// TikTok Pixel id, A-Z0-9.
    pub tiktok: Option<String>,
}

/// Landing-page look; URLs are http(s), colours `#rgb`/`#rrggbb`/`#rrggbbaa`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingDto {
    /// Logo URL.
    pub logo: Option<String>,
    /// Favicon URL.
    pub favicon: Option<String>,
    /// Primary colour.
    pub primary_color: Option<String>,
    /// Secondary colour.
    pub secondary_color: Option<String>,
    /// Accent colour.
    pub accent_color: Option<String>,
    /// CSS font family (letters, digits, spaces, `-`, `,`), at most 100 characters.
    pub font: Option<String>,
}

/// Limits and privacy settings; absent fields take the defaults shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Days raw events are kept, 1..=3650. Default 365.
    pub analytics_retention_days: i64,
    /// Store visitor IPs anonymised (IPv4 /24, IPv6 /48). Default true.
    pub anonymize_ip: bool,
    /// Platform ids (`spotify`, `apple-music`, ...) in button order.
    pub default_platform_order: Vec<String>,
    /// Smartlinks the tenant may create per month. Default 1000.
    pub max_smartlinks_per_month: i64,
}

impl Default for Settings {
    fn default() -> Self {
        let d = mongo::ClientSettings::default();
        Settings {
            analytics_retention_days: d.analytics_retention_days,
            anonymize_ip: d.anonymize_ip,
            default_platform_order: d.default_platform_order,
            max_smartlinks_per_month: d.max_smartlinks_per_month,
        }
    }
}

/// `POST /v1/clients` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCreate {
    /// Display name, 1..=200 characters.
    pub name: String,
    /// URL-safe name, unique (slug rules).
    pub slug: String,
    /// Domain serving the tenant's links (`links.client.com`), unique.
    pub domain: String,
    /// Subdomain of the agency's shared domain also serving them, if any.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// `active` (default), `trial` or `suspended`.
    #[serde(default)]
    pub status: Option<String>,
    /// `starter` (default), `professional` or `enterprise`.
    #[serde(default)]
    pub plan_type: Option<String>,
    /// Pixel ids.
    #[serde(default)]
    pub tracking: Tracking,
    /// Landing-page look.
    #[serde(default)]
    pub branding: BrandingDto,
    /// Settings.
    #[serde(default)]
    pub settings: Settings,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// Tenant id (24 hex digits).
    pub id: String,
    /// Display name.
    pub name: String,
    /// URL-safe name.
    pub slug: String,
    /// Domain serving its links.
    pub domain: String,
    /// Shared-domain subdomain serving them, if any.
    pub subdomain: Option<String>,
    /// `active`, `trial` or `suspended`.
    pub status: String,
    /// `starter`, `professional` or `enterprise`.
    pub plan_type: String,
    /// Pixel ids.
    pub tracking: Tracking,
    /// Landing-page look.
    pub branding: BrandingDto,
    /// Settings.
    pub settings: Settings,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            id: c.id.to_hex(),
            name: c.name.clone(),
            slug: c.slug.clone(),
            domain: c.domain.clone(),
            subdomain: c.subdomain.clone(),
            status: wire(&c.metadata.status),
            plan_type: wire(&c.metadata.plan_type),
            tracking: Tracking {
                ga4: c.tracking.ga4.clone(),
                gtm: c.tracking.gtm.clone(),
                meta_pixel: c.tracking.facebook.clone(),
                tiktok: c.tracking.tiktok.clone(),
            },
            branding: BrandingDto {
                logo: c.branding.logo.clone(),
                favicon: c.branding.favicon.clone(),
                primary_color: c.branding.primary_color.clone(),
                secondary_color: c.branding.secondary_color.clone(),
                accent_color: c.branding.accent_color.clone(),
                font: c.branding.font.clone(),
            },
            settings: Settings {
                analytics_retention_days: c.settings.analytics_retention_days,
                anonymize_ip: c.settings.anonymize_ip,
                default_platform_order: c.settings.default_platform_order.clone(),
                max_smartlinks_per_month: c.settings.max_smartlinks_per_month,
            },
            created_at: rfc(c.metadata.created_at),
            updated_at: rfc(c.metadata.updated_at),
        }
    }
}

fn build_client(body: ClientCreate, now: DateTime) -> Result<Client, ApiError> {
    let t = &body.tracking;
    let b = &body.branding;
    let s = &body.settings;
    if !(1..=3650).contains(&s.analytics_retention_days) {
        return Err(ApiError::invalid("settings.analytics_retention_days", "must be 1 to 3650"));
    }
    if !(1..=1_000_000).contains(&s.max_smartlinks_per_month) {
        return Err(ApiError::invalid("settings.max_smartlinks_per_month", "must be 1 to 1000000"));
    }
    for (i, p) in s.default_platform_order.iter().enumerate() {
        if PlatformId::from_id(p).is_none() {
            return Err(ApiError::invalid(format!("settings.default_platform_order[{i}]"), "unknown platform id"));
        }
    }
    let font = validate::opt_text("branding.font", b.font.as_deref(), 100)?;
    if font.as_deref().is_some_and(|f| !f.chars().all(|c| c.is_alphanumeric() || " -,".contains(c))) {
        return Err(ApiError::invalid("branding.font", "letters, digits, spaces, '-' and ',' only"));
    }
    Ok(Client {
        id: ObjectId::new(),
        name: validate::text("name", &body.name, 1, 200)?,
        slug: validate::slug("slug", &body.slug)?,
        domain: validate::hostname("domain", &body.domain)?,
        subdomain: match body.subdomain.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(validate::hostname("subdomain", s)?),
            None => None,
        },
        tracking: mongo::ClientTracking {
            ga4: validate::tag_id("tracking.ga4", t.ga4.as_deref(), "G-", false)?,
            gtm: validate::tag_id("tracking.gtm", t.gtm.as_deref(), "GTM-", false)?,
            facebook: validate::tag_id("tracking.meta_pixel", t.meta_pixel.as_deref(), "", true)?,
            tiktok: validate::tag_id("tracking.tiktok", t.tiktok.as_deref(), "", false)?,
        },
        branding: mongo::Branding {
            logo: validate::opt_http_url("branding.logo", b.logo.as_deref())?,
            favicon: validate::opt_http_url("branding.favicon", b.favicon.as_deref())?,
            primary_color: validate::color("branding.primary_color", b.primary_color.as_deref())?,
            secondary_color: validate::color("branding.secondary_color", b.secondary_color.as_deref())?,
            accent_color: validate::color("branding.accent_color", b.accent_color.as_deref())?,
            font,
        },
        settings: mongo::ClientSettings {
            analytics_retention_days: s.analytics_retention_days,
            anonymize_ip: s.anonymize_ip,
            default_platform_order: s.default_platform_order.clone(),
            max_smartlinks_per_month: s.max_smartlinks_per_month,
            ..Default::default()
        },
        metadata: ClientMetadata {
            created_at: now,
            updated_at: now,
            status: match body.status.as_deref() {
                None => ClientStatus::Active,
                Some(v) => validate::parse_enum("status", v, "must be one of active, trial, suspended")?,
            },
            plan_type: match body.plan_type.as_deref() {
                None => PlanType::Starter,
                Some(v) => validate::parse_enum("plan_type", v, "must be one of starter, professional, enterprise")?,
            },
        },
    })
}

/// Creates a tenant (operator only). 409 `slug_taken` / `domain_taken`
/// when another tenant has the slug, or already serves the domain or the
/// subdomain as either (issue #14: the unique index covers `domain` only,
/// so a tenant could claim another's domain as its subdomain); each
/// hostname is locked while it is checked and claimed.
#[utoipa::path(post, path = "/v1/clients", tag = "tenants", request_body = ClientCreate,
    responses((status = 201, body = ClientView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(body): Body<ClientCreate>,
) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    p.require_operator()?;
    let client = build_client(body, DateTime::now())?;
    let mut hosts = vec![client.domain.clone()];
    hosts.extend(client.subdomain.clone());
    if hosts.len() == 2 && hosts[0] == hosts[1] {
        return Err(ApiError::invalid("subdomain", "must differ from the domain"));
    }
    hosts.sort();
    let mut guards = Vec::new();
    for h in &hosts {
        let lock =
            crate::lock::acquire(&st, format!("host:{h}"), Duration::from_secs(30), Duration::from_secs(10)).await;
        match lock {
            Ok(g) => guards.push(g),
            Err(e) => {
                for g in guards {
                    g.release().await;
                }
                return Err(e);
            }
        }
    }
    let created = insert_client(&st, &p, &meta, &client, &hosts).await;
    for g in guards {
        g.release().await;
    }
    created.map(|()| (StatusCode::CREATED, Json(ClientView::from(&client))))
}

/// Checks that no tenant has `client`'s slug or serves any of `hosts`
/// (as domain or subdomain), then inserts and audits it.
async fn insert_client(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    client: &Client,
    hosts: &[String],
) -> Result<(), ApiError> {
    let coll = st.mongo.collection::<Client>(collections::CLIENTS);
    if coll.find_one(doc! { "slug": &client.slug }).await?.is_some() {
        let message = format!("another client has slug {}", client.slug);
        return Err(ApiError::Conflict { code: "slug_taken", message });
    }
    for h in hosts {
        if coll.find_one(doc! { "$or": [{ "domain": h }, { "subdomain": h }] }).await?.is_some() {
            return Err(ApiError::Conflict { code: "domain_taken", message: format!("another client serves {h}") });
        }
    }
    match coll.insert_one(client).await {
        Ok(_) => {
            let target = Target { client_id: client.id, action: "create", resource: "clients", id: client.id };
            audit::changed(st, p, meta, target, None, Some(client)).await
        }
        Err(e) if is_duplicate_key(&e) => {
            Err(ApiError::Conflict { code: "domain_taken", message: "another client has this slug or domain".into() })
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/clients` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientListQuery {
    /// Only the tenant serving this domain (exact, case-insensitive).
    pub domain: Option<String>,
}

/// Lists tenants (operator only), newest first, at most 500.
#[utoipa::path(get, path = "/v1/clients", tag = "tenants", params(ClientListQuery),
    responses((status = 200, body = Vec<ClientView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ClientListQuery>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    p.require_operator()?;
    let filter = match q.domain.as_deref() {
        Some(d) => doc! { "domain": validate::hostname("domain", d)? },
        None => doc! {},
    };
    let clients: Vec<Client> = st
        .mongo
        .collection::<Client>(collections::CLIENTS)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    Ok(Json(clients.iter().map(ClientView::from).collect()))
}

/// Reads a tenant: any tenant for the operator, its own for a tenant key.
#[utoipa::path(get, path = "/v1/clients/{id}", tag = "tenants", params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ClientView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let id = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("client"))?;
    Ok(Json(ClientView::from(&Tenant::load(&st, &p, id).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> ClientCreate {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn builds_and_validates_clients() {
        let c = build_client(
            body(
                serde_json::json!({"name": " Label ", "slug": "label", "domain": "Links.Label.com", "status": "trial",
                "tracking": {"ga4": "G-ABC123", "meta_pixel": "1234567"}, "branding": {"primary_color": "#112233"},
                "settings": {"analytics_retention_days": 30}}),
            ),
            DateTime::now(),
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.domain.as_str()), ("Label", "links.label.com"));
        assert_eq!(c.metadata.status, ClientStatus::Trial);
        assert_eq!(c.tracking.facebook.as_deref(), Some("1234567"));
        assert_eq!(c.settings.analytics_retention_days, 30);
        assert!(c.settings.anonymize_ip, "absent settings keep defaults");
        let view = ClientView::from(&c);
        assert_eq!(view.status, "trial");
        assert_eq!(view.plan_type, "starter");
        let err = |v| match build_client(body(v), DateTime::now()) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(serde_json::json!({"name": "x", "slug": "Bad Slug", "domain": "a.com"})), "slug");
        assert_eq!(err(serde_json::json!({"name": "x", "slug": "x", "domain": "a.com", "status": "gone"})), "status");
        assert_eq!(
            err(serde_json::json!({"name": "x", "slug": "x", "domain": "a.com", "branding": {"logo": "javascript:x"}})),
            "branding.logo"
        );
        assert_eq!(
            err(
                serde_json::json!({"name": "x", "slug": "x", "domain": "a.com", "settings": {"default_platform_order": ["spotify", "myspace"]}})
            ),
            "settings.default_platform_order[1]"
        );
        assert!(serde_json::from_value::<ClientCreate>(
            serde_json::json!({"name": "x", "slug": "x", "domain": "a.com", "extra": 1})
        )
        .is_err());
    }
}
