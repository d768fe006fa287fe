//! Tenant handlers (`/v1/clients`): create and list (operator), read
//! (operator, or the tenant's own key).

use std::collections::BTreeMap;
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
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, rfc, wire};

/// Client-side pixel ids of the dual engine (seed 002); each optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// GA4 measurement id, `G-` + 4..30 of A-Z0-9.
    #[schema(schema_with = crate::openapi::ga4_id)]
    pub ga4: Option<String>,
    /// GTM container id, `GTM-` + 4..30 of A-Z0-9.
    #[schema(schema_with = crate::openapi::gtm_id)]
    pub gtm: Option<String>,
    /// Meta Pixel id, digits.
    #[schema(schema_with = crate::openapi::meta_pixel_id)]
    pub meta_pixel: Option<String>,
    /// TikTok Pixel id, A-Z0-9.
    #[schema(schema_with = crate::openapi::tiktok_pixel_id)]
    pub tiktok: Option<String>,
}

/// Landing-page look; URLs are http(s), colours `#rgb`/`#rrggbb`/`#rrggbbaa`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingDto {
    /// Logo URL.
    #[schema(schema_with = crate::openapi::http_url)]
    pub logo: Option<String>,
    /// Favicon URL.
    #[schema(schema_with = crate::openapi::http_url)]
    pub favicon: Option<String>,
    /// Primary colour.
    #[schema(schema_with = crate::openapi::color)]
    pub primary_color: Option<String>,
    /// Secondary colour.
    #[schema(schema_with = crate::openapi::color)]
    pub secondary_color: Option<String>,
    /// Accent colour.
    #[schema(schema_with = crate::openapi::color)]
    pub accent_color: Option<String>,
    /// CSS font family (ASCII letters, digits, spaces, `-`, `,`), at most 100 characters.
    #[schema(schema_with = crate::openapi::font)]
    pub font: Option<String>,
    /// The tenant's wording of its landing and error pages by language
    /// (`en`, `fr`; the edge picks the visitor's from `Accept-Language`);
    /// what is absent keeps the edge's text.
    #[serde(default)]
    #[schema(schema_with = page_texts_by_language)]
    pub texts: BTreeMap<String, PageTextsDto>,
}

/// The languages landing pages are written in (the edge's `i18n`).
const PAGE_LANGUAGES: [&str; 2] = ["en", "fr"];

/// Schema of [`BrandingDto::texts`]: a [`PageTextsDto`] by language.
fn page_texts_by_language() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .property_names(Some(crate::openapi::enumeration(&PAGE_LANGUAGES)))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
            utoipa::openapi::Ref::from_schema_name("PageTextsDto").into(),
        )))
        .build()
}

/// A tenant's texts of its pages in one language; each plain text of at
/// most 300 characters (no control character), empty or absent for the
/// edge's own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageTextsDto {
    /// Page description when the link has none; `{title}` and `{artist}`
    /// are replaced by the track's.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub description: Option<String>,
    /// The action on each platform button ("Listen", "Play").
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub listen: Option<String>,
    /// The consent banner's sentence.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub consent: Option<String>,
    /// The banner's accept button.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub accept: Option<String>,
    /// The banner's refuse button.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub refuse: Option<String>,
    /// The 404 page's message.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub not_found: Option<String>,
    /// The 410 page's message.
    #[schema(schema_with = crate::openapi::opt_text_300)]
    pub gone: Option<String>,
}

/// Limits and privacy settings; absent fields take the defaults shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Days raw events are kept, 1..=3650. Default 365.
    #[schema(minimum = 1, maximum = 3650)]
    pub analytics_retention_days: i64,
    /// Store visitor IPs anonymised (IPv4 /24, IPv6 /48). Default true.
    pub anonymize_ip: bool,
    /// Platform ids (`spotify`, `apple-music`, ...) in button order.
    #[schema(schema_with = platform_ids)]
    pub default_platform_order: Vec<String>,
    /// Smartlinks the tenant may create per calendar month (UTC),
    /// 1..=1000000; 403 `monthly_link_limit` beyond. Default 1000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_smartlinks_per_month: i64,
    /// Back-office users the tenant may have, 1..=100000; 403 `user_limit`
    /// beyond. Default 50.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_users_per_client: i64,
    /// Requests per hour the tenant's API keys may send together,
    /// 1..=100000000; 429 `hourly_request_limit` beyond (sessions are
    /// limited by the plan's requests per second only). Default 1000.
    #[schema(minimum = 1, maximum = 100000000)]
    pub api_rate_limit: i64,
    /// What a click-out to each platform is worth, in minor units of the
    /// tenant's currency (seed 000 `conversionGoals`): the analytics'
    /// `conversion_value_minor`. A platform listed twice keeps its last value.
    pub conversion_values: Vec<ConversionValue>,
}

/// The value of a click-out to one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversionValue {
    /// Platform id (`spotify`, `apple-music`, ...).
    #[schema(schema_with = platform_id)]
    pub platform: String,
    /// Minor units, 0..=100000000.
    #[schema(minimum = 0, maximum = 100000000)]
    pub value_minor: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&mongo::ClientSettings::default())
    }
}

impl From<&mongo::ClientSettings> for Settings {
    fn from(s: &mongo::ClientSettings) -> Self {
        Settings {
            analytics_retention_days: s.analytics_retention_days,
            anonymize_ip: s.anonymize_ip,
            default_platform_order: s.default_platform_order.clone(),
            max_smartlinks_per_month: s.max_smartlinks_per_month,
            max_users_per_client: s.max_users_per_client,
            api_rate_limit: s.api_rate_limit,
            conversion_values: s
                .conversion_values
                .iter()
                .map(|(p, v)| ConversionValue { platform: p.clone(), value_minor: *v })
                .collect(),
        }
    }
}

/// `PATCH /v1/clients/{id}` settings: each field present replaces the stored
/// one (rules as in [`Settings`]). The limits (`max_*`, `api_rate_limit`)
/// are the operator's to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsPatch {
    /// Days raw events are kept, 1..=3650.
    #[schema(minimum = 1, maximum = 3650)]
    pub analytics_retention_days: Option<i64>,
    /// Store visitor IPs anonymised.
    pub anonymize_ip: Option<bool>,
    /// Platform ids in button order.
    #[schema(schema_with = platform_ids)]
    pub default_platform_order: Option<Vec<String>>,
    /// Smartlinks per calendar month, 1..=1000000 (operator).
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_smartlinks_per_month: Option<i64>,
    /// Back-office users, 1..=100000 (operator).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_users_per_client: Option<i64>,
    /// API-key requests per hour, 1..=100000000 (operator).
    #[schema(minimum = 1, maximum = 100000000)]
    pub api_rate_limit: Option<i64>,
    /// Values of click-outs per platform (replaced whole).
    pub conversion_values: Option<Vec<ConversionValue>>,
}

/// `PATCH /v1/clients/{id}` body: each field present replaces the stored
/// one; `tracking` and `branding` are replaced whole. `status` and
/// `plan_type` are the operator's; a tenant admin changes the rest but the
/// limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClientPatch {
    /// Display name, 1..=200 characters.
    #[schema(schema_with = crate::openapi::text_200)]
    pub name: Option<String>,
    /// `active`, `trial` or `suspended` (operator). A suspended tenant's
    /// links answer the edge's neutral 404 page (nothing redirected, no
    /// pixel) until it is active again.
    #[schema(schema_with = client_statuses)]
    pub status: Option<String>,
    /// `starter`, `professional` or `enterprise` (operator): the requests
    /// per second its keys and users may send together.
    #[schema(schema_with = plans)]
    pub plan_type: Option<String>,
    /// Pixel ids (replace the stored ones).
    pub tracking: Option<Tracking>,
    /// Landing-page look (replaces the stored one).
    pub branding: Option<BrandingDto>,
    /// Settings to change.
    pub settings: Option<SettingsPatch>,
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
    #[schema(schema_with = client_statuses)]
    pub status: Option<String>,
    /// `starter` (default), `professional` or `enterprise`.
    #[serde(default)]
    #[schema(schema_with = plans)]
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
                texts: c
                    .branding
                    .texts
                    .iter()
                    .map(|(lang, t)| {
                        let t = t.clone();
                        let dto = PageTextsDto {
                            description: t.description,
                            listen: t.listen,
                            consent: t.consent,
                            accept: t.accept,
                            refuse: t.refuse,
                            not_found: t.not_found,
                            gone: t.gone,
                        };
                        (lang.clone(), dto)
                    })
                    .collect(),
            },
            settings: Settings::from(&c.settings),
            created_at: rfc(c.metadata.created_at),
            updated_at: rfc(c.metadata.updated_at),
        }
    }
}

/// `value` of `settings.{field}` when within `range`; 400 otherwise.
fn in_range(field: &str, value: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(format!("settings.{field}"), format!("must be {} to {}", range.start(), range.end())))
    }
}

/// `order` when every id is a known platform; 400 on the first that is not.
/// Schema of one known platform id.
fn platform_id() -> utoipa::openapi::Object {
    let ids: Vec<&str> = PlatformId::ALL.iter().map(|p| p.id()).collect();
    crate::openapi::enumeration(&ids)
}

/// The values of `v` by platform (a platform listed twice keeps its last).
fn conversion_values(v: &[ConversionValue]) -> Result<std::collections::BTreeMap<String, i64>, ApiError> {
    let mut out = std::collections::BTreeMap::new();
    for (i, c) in v.iter().enumerate() {
        if PlatformId::from_id(&c.platform).is_none() {
            return Err(ApiError::invalid(format!("settings.conversion_values[{i}].platform"), "unknown platform id"));
        }
        let value = in_range("conversion_values.value_minor", c.value_minor, 0..=100_000_000)?;
        out.insert(c.platform.clone(), value);
    }
    Ok(out)
}

fn platform_order(order: &[String]) -> Result<Vec<String>, ApiError> {
    for (i, p) in order.iter().enumerate() {
        if PlatformId::from_id(p).is_none() {
            return Err(ApiError::invalid(format!("settings.default_platform_order[{i}]"), "unknown platform id"));
        }
    }
    Ok(order.to_vec())
}

fn build_tracking(t: &Tracking) -> Result<mongo::ClientTracking, ApiError> {
    Ok(mongo::ClientTracking {
        ga4: validate::tag_id("tracking.ga4", t.ga4.as_deref(), "G-", false)?,
        gtm: validate::tag_id("tracking.gtm", t.gtm.as_deref(), "GTM-", false)?,
        facebook: validate::tag_id("tracking.meta_pixel", t.meta_pixel.as_deref(), "", true)?,
        tiktok: validate::tag_id("tracking.tiktok", t.tiktok.as_deref(), "", false)?,
    })
}

fn build_branding(b: &BrandingDto) -> Result<mongo::Branding, ApiError> {
    let font = validate::opt_text("branding.font", b.font.as_deref(), 100)?;
    if font.as_deref().is_some_and(|f| !f.chars().all(|c| c.is_ascii_alphanumeric() || " -,".contains(c))) {
        return Err(ApiError::invalid("branding.font", "ASCII letters, digits, spaces, '-' and ',' only"));
    }
    Ok(mongo::Branding {
        logo: validate::opt_http_url("branding.logo", b.logo.as_deref())?,
        favicon: validate::opt_http_url("branding.favicon", b.favicon.as_deref())?,
        primary_color: validate::color("branding.primary_color", b.primary_color.as_deref())?,
        secondary_color: validate::color("branding.secondary_color", b.secondary_color.as_deref())?,
        accent_color: validate::color("branding.accent_color", b.accent_color.as_deref())?,
        font,
        texts: page_texts(&b.texts)?,
    })
}

/// Validated page texts by language (400 naming `branding.texts.{lang}` or
/// its field).
fn page_texts(by_lang: &BTreeMap<String, PageTextsDto>) -> Result<BTreeMap<String, mongo::PageTexts>, ApiError> {
    let mut out = BTreeMap::new();
    for (lang, t) in by_lang {
        let at = format!("branding.texts.{lang}");
        if !PAGE_LANGUAGES.contains(&lang.as_str()) {
            return Err(ApiError::invalid(at, format!("pages are written in {}", PAGE_LANGUAGES.join(", "))));
        }
        let one = |name: &str, v: &Option<String>| validate::opt_text(&format!("{at}.{name}"), v.as_deref(), 300);
        let texts = mongo::PageTexts {
            description: one("description", &t.description)?,
            listen: one("listen", &t.listen)?,
            consent: one("consent", &t.consent)?,
            accept: one("accept", &t.accept)?,
            refuse: one("refuse", &t.refuse)?,
            not_found: one("not_found", &t.not_found)?,
            gone: one("gone", &t.gone)?,
        };
        if texts != mongo::PageTexts::default() {
            out.insert(lang.clone(), texts);
        }
    }
    Ok(out)
}

const STATUS_RULE: &str = "must be one of active, trial, suspended";
const PLAN_RULE: &str = "must be one of starter, professional, enterprise";
/// A tenant's statuses ([`ClientStatus`]).
const STATUSES: [&str; 3] = ["active", "trial", "suspended"];
/// Plans ([`PlanType`]).
const PLANS: [&str; 3] = ["starter", "professional", "enterprise"];

/// Schema of a tenant's status.
fn client_statuses() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&STATUSES)
}

/// Schema of a plan.
fn plans() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&PLANS)
}

/// Schema of a button order: known platform ids ([`PlatformId::ALL`]).
fn platform_ids() -> utoipa::openapi::schema::Array {
    let ids: Vec<&str> = PlatformId::ALL.iter().map(|p| p.id()).collect();
    utoipa::openapi::schema::Array::new(crate::openapi::enumeration(&ids))
}

fn build_client(body: ClientCreate, now: DateTime) -> Result<Client, ApiError> {
    let s = &body.settings;
    let settings = mongo::ClientSettings {
        analytics_retention_days: in_range("analytics_retention_days", s.analytics_retention_days, 1..=3650)?,
        anonymize_ip: s.anonymize_ip,
        default_platform_order: platform_order(&s.default_platform_order)?,
        max_smartlinks_per_month: in_range("max_smartlinks_per_month", s.max_smartlinks_per_month, 1..=1_000_000)?,
        max_users_per_client: in_range("max_users_per_client", s.max_users_per_client, 1..=100_000)?,
        api_rate_limit: in_range("api_rate_limit", s.api_rate_limit, 1..=100_000_000)?,
        conversion_values: conversion_values(&s.conversion_values)?,
        ..Default::default()
    };
    Ok(Client {
        id: ObjectId::new(),
        name: validate::text("name", &body.name, 1, 200)?,
        slug: validate::slug("slug", &body.slug)?,
        domain: validate::hostname("domain", &body.domain)?,
        subdomain: match body.subdomain.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(validate::hostname("subdomain", s)?),
            None => None,
        },
        tracking: build_tracking(&body.tracking)?,
        branding: build_branding(&body.branding)?,
        settings,
        metadata: ClientMetadata {
            created_at: now,
            updated_at: now,
            status: match body.status.as_deref() {
                None => ClientStatus::Active,
                Some(v) => validate::parse_enum("status", v, STATUS_RULE)?,
            },
            plan_type: match body.plan_type.as_deref() {
                None => PlanType::Starter,
                Some(v) => validate::parse_enum("plan_type", v, PLAN_RULE)?,
            },
        },
    })
}

/// `client` with `patch` applied (validated); 403 when a field is the
/// operator's and `operator` is false, naming the field.
fn apply_patch(mut client: Client, patch: ClientPatch, operator: bool, now: DateTime) -> Result<Client, ApiError> {
    let operator_only = |field: &str| {
        if operator {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("the operator role to change {field}")))
        }
    };
    if let Some(name) = &patch.name {
        client.name = validate::text("name", name, 1, 200)?;
    }
    if let Some(v) = &patch.status {
        operator_only("status")?;
        client.metadata.status = validate::parse_enum("status", v, STATUS_RULE)?;
    }
    if let Some(v) = &patch.plan_type {
        operator_only("plan_type")?;
        client.metadata.plan_type = validate::parse_enum("plan_type", v, PLAN_RULE)?;
    }
    if let Some(t) = &patch.tracking {
        client.tracking = build_tracking(t)?;
    }
    if let Some(b) = &patch.branding {
        client.branding = build_branding(b)?;
    }
    if let Some(s) = patch.settings {
        let c = &mut client.settings;
        if let Some(v) = s.analytics_retention_days {
            c.analytics_retention_days = in_range("analytics_retention_days", v, 1..=3650)?;
        }
        if let Some(v) = s.anonymize_ip {
            c.anonymize_ip = v;
        }
        if let Some(v) = &s.default_platform_order {
            c.default_platform_order = platform_order(v)?;
        }
        if let Some(v) = &s.conversion_values {
            c.conversion_values = conversion_values(v)?;
        }
        if let Some(v) = s.max_smartlinks_per_month {
            operator_only("settings.max_smartlinks_per_month")?;
            c.max_smartlinks_per_month = in_range("max_smartlinks_per_month", v, 1..=1_000_000)?;
        }
        if let Some(v) = s.max_users_per_client {
            operator_only("settings.max_users_per_client")?;
            c.max_users_per_client = in_range("max_users_per_client", v, 1..=100_000)?;
        }
        if let Some(v) = s.api_rate_limit {
            operator_only("settings.api_rate_limit")?;
            c.api_rate_limit = in_range("api_rate_limit", v, 1..=100_000_000)?;
        }
    }
    client.metadata.updated_at = now;
    Ok(client)
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

/// Changes a tenant: the operator any field; an admin of the tenant (a
/// session with the `admin` role) its name, pixels, branding and
/// privacy/display settings, and 403 on the rest (status, plan, limits).
/// The change is audited (before and after) and reaches the edge at its next
/// cache refresh (a suspended tenant's links stop redirecting) and this API's
/// request limits at once.
#[utoipa::path(patch, path = "/v1/clients/{id}", tag = "tenants", request_body = ClientPatch,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ClientView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(body): Body<ClientPatch>,
) -> Result<Json<ClientView>, ApiError> {
    let id = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("client"))?;
    let operator = p.require_operator().is_ok();
    // Another tenant's id is a 404 before any permission answer; the
    // document itself is read once, under the lock.
    p.check_tenant(id, "client")?;
    if !operator {
        p.can(Resource::Settings, Action::Update)?;
    }
    // Read-modify-write under the tenant's lock (crate::lock: a
    // version-checked replace is not atomic on FerretDB).
    let (before, after) = crate::lock::with_lock(
        &st,
        format!("client:{}", id.to_hex()),
        Duration::from_secs(30),
        Duration::from_secs(10),
        || async {
            let before = Tenant::load(&st, &p, id).await?;
            let after = apply_patch(before.clone(), body, operator, DateTime::now())?;
            let done =
                st.mongo.collection::<Client>(collections::CLIENTS).replace_one(doc! { "_id": id }, &after).await?;
            if done.matched_count == 0 {
                return Err(ApiError::NotFound("client"));
            }
            Ok((before, after))
        },
    )
    .await?;
    st.request_limits.forget(id).await;
    let target = Target { client_id: id, action: "update", resource: "clients", id };
    audit::changed(&st, &p, &meta, target, Some(&before), Some(&after)).await?;
    Ok(Json(ClientView::from(&after)))
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
