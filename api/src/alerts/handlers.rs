//! The alert routes: settings, current health and alerts, delivery log.

use axum::extract::State;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::alerts::{AlertDelivery, AlertKind, AlertSettings, AlertState, AlertThresholds};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::health::{self, Windows};
use super::notifier::{default_settings, new_secret};
use crate::audit::Meta;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::store;
use crate::tenants::{ClientScope, Tenant};
use crate::validate::{self, rfc, to_rfc3339};
use crypto::Field;

/// Most recipient emails.
const MAX_EMAILS: usize = 10;

/// When alerts fire (every field optional on `PUT`: the default is kept).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertThresholdsView {
    /// Views needed in a window before anything is judged, 1..=1e9. Default 100.
    #[serde(default = "d_min_views")]
    #[schema(minimum = 1, maximum = 1000000000)]
    pub min_views: u64,
    /// `client_rate_low` fires below this share, 0..=1. Default 0.95 (seed 002).
    #[serde(default = "d_client_rate_min")]
    #[schema(minimum = 0, maximum = 1)]
    pub client_rate_min: f64,
    /// `traffic_spike` fires at this ratio to the same hour last week or above, 1.1..=1000. Default 3.
    #[serde(default = "d_spike_ratio")]
    #[schema(minimum = 1.1, maximum = 1000)]
    pub spike_ratio: f64,
    /// `traffic_drop` fires at this ratio or below, 0..=0.9. Default 0.33.
    #[serde(default = "d_drop_ratio")]
    #[schema(minimum = 0, maximum = 0.9)]
    pub drop_ratio: f64,
}

fn d_min_views() -> u64 {
    AlertThresholds::default().min_views
}
fn d_client_rate_min() -> f64 {
    AlertThresholds::default().client_rate_min
}
fn d_spike_ratio() -> f64 {
    AlertThresholds::default().spike_ratio
}
fn d_drop_ratio() -> f64 {
    AlertThresholds::default().drop_ratio
}

impl Default for AlertThresholdsView {
    fn default() -> Self {
        AlertThresholds::default().into()
    }
}

impl From<AlertThresholds> for AlertThresholdsView {
    fn from(t: AlertThresholds) -> Self {
        AlertThresholdsView {
            min_views: t.min_views,
            client_rate_min: t.client_rate_min,
            spike_ratio: t.spike_ratio,
            drop_ratio: t.drop_ratio,
        }
    }
}

/// A tenant's alert settings as `PUT` takes them (replaced whole).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSettingsInput {
    /// Recipient emails, at most 10 (a repeated one counts once).
    #[serde(default)]
    #[schema(max_items = 10)]
    pub emails: Vec<String>,
    /// Webhook URL (https), or null for none.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::https_url)]
    pub webhook_url: Option<String>,
    /// Kinds notified: `client_rate_low`, `traffic_spike`, `traffic_drop`,
    /// `pixels_silent`. Default all.
    #[serde(default)]
    #[schema(schema_with = kinds_schema)]
    pub kinds: Option<Vec<String>>,
    /// Thresholds. Default seed 002's.
    #[serde(default)]
    pub thresholds: AlertThresholdsView,
    /// A new webhook signing secret even when the URL did not change.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// A tenant's alert settings as the API shows them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertSettingsView {
    /// Recipient emails.
    pub emails: Vec<String>,
    /// Webhook URL, if any.
    pub webhook_url: Option<String>,
    /// Whether a webhook signing secret exists.
    pub webhook_secret_set: bool,
    /// The webhook signing secret (`whsec_…`, Standard Webhooks): only in
    /// the answer of the `PUT` that created it; never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Kinds notified.
    pub kinds: Vec<String>,
    /// Thresholds.
    pub thresholds: AlertThresholdsView,
    /// Last change, RFC 3339; null until saved once.
    pub updated_at: Option<String>,
}

/// Where tenant `id`'s alert recipient emails are bound (settings `_id`
/// is the tenant's).
pub(crate) fn emails_field(id: ObjectId) -> Field<'static> {
    Field::new(collections::ALERT_SETTINGS, id, "emails")
}

/// Where tenant `id`'s webhook signing secret is bound.
pub(crate) fn secret_field(id: ObjectId) -> Field<'static> {
    Field::new(collections::ALERT_SETTINGS, id, "webhook_secret")
}

fn view(st: &AppState, s: &AlertSettings) -> Result<AlertSettingsView, ApiError> {
    let pii = st.pii()?;
    Ok(AlertSettingsView {
        emails: s.emails_enc.iter().map(|e| pii.decrypt(e, emails_field(s.client_id))).collect::<Result<_, _>>()?,
        webhook_url: s.webhook_url.clone(),
        webhook_secret_set: s.webhook_secret_enc.is_some(),
        webhook_secret: None,
        kinds: s.kinds.iter().map(|k| k.as_str().to_string()).collect(),
        thresholds: s.thresholds.into(),
        updated_at: (s.updated_at.timestamp_millis() > 0).then(|| rfc(s.updated_at)),
    })
}

async fn load(st: &AppState, client: bson::oid::ObjectId) -> Result<Option<AlertSettings>, ApiError> {
    Ok(st.mongo.collection::<AlertSettings>(collections::ALERT_SETTINGS).find_one(doc! { "_id": client }).await?)
}

fn thresholds(t: &AlertThresholdsView) -> Result<AlertThresholds, ApiError> {
    let within = |field: &str, v: f64, lo: f64, hi: f64| {
        if v.is_finite() && (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(ApiError::invalid(format!("thresholds.{field}"), format!("must be within {lo} and {hi}")))
        }
    };
    if !(1..=1_000_000_000).contains(&t.min_views) {
        return Err(ApiError::invalid("thresholds.min_views", "must be within 1 and 1000000000"));
    }
    Ok(AlertThresholds {
        min_views: t.min_views,
        client_rate_min: within("client_rate_min", t.client_rate_min, 0.0, 1.0)?,
        spike_ratio: within("spike_ratio", t.spike_ratio, 1.1, 1000.0)?,
        drop_ratio: within("drop_ratio", t.drop_ratio, 0.0, 0.9)?,
    })
}

/// The caller's alert settings (defaults, no recipient, until saved).
#[utoipa::path(get, path = "/v1/alerts/settings", tag = "alerts", params(ClientScope),
    responses((status = 200, body = AlertSettingsView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<AlertSettingsView>, ApiError> {
    p.can(Resource::Alerts, Action::Read)?;
    let s = load(&st, client.id).await?.unwrap_or_else(|| default_settings(client.id));
    Ok(Json(view(&st, &s)?))
}

/// Replaces the alert settings: recipients (emails, a webhook) and
/// thresholds. Setting or changing the webhook URL (or `rotate_secret`)
/// makes a new signing secret, answered once in `webhook_secret`.
#[utoipa::path(put, path = "/v1/alerts/settings", tag = "alerts", params(ClientScope), request_body = AlertSettingsInput,
    responses((status = 200, body = AlertSettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_settings(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Tenant(client): Tenant,
    Body(b): Body<AlertSettingsInput>,
) -> Result<Json<AlertSettingsView>, ApiError> {
    p.can(Resource::Alerts, Action::Update)?;
    let pii = st.pii()?;
    if b.emails.len() > MAX_EMAILS {
        return Err(ApiError::invalid("emails", format!("at most {MAX_EMAILS}")));
    }
    let mut emails = Vec::new();
    for (i, e) in b.emails.iter().enumerate() {
        let e = validate::email(&format!("emails[{i}]"), e)?;
        if !emails.contains(&e) {
            emails.push(e);
        }
    }
    let webhook_url = validate::opt_http_url("webhook_url", b.webhook_url.as_deref())?;
    if let Some(u) = &webhook_url {
        if !u.starts_with("https://") && !st.cfg.alerts_allow_http_webhooks {
            return Err(ApiError::invalid("webhook_url", "must be an https URL"));
        }
    }
    let kinds = match &b.kinds {
        None => AlertKind::ALL.to_vec(),
        Some(ks) => {
            let mut out = Vec::new();
            for (i, k) in ks.iter().enumerate() {
                let k: AlertKind = validate::parse_enum(
                    &format!("kinds[{i}]"),
                    k,
                    "must be client_rate_low, traffic_spike, traffic_drop or pixels_silent",
                )?;
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            out
        }
    };
    let old = load(&st, client.id).await?;
    let old_url = old.as_ref().and_then(|o| o.webhook_url.clone());
    let mut secret = None;
    let webhook_secret_enc = match &webhook_url {
        None => None,
        Some(u) if Some(u) == old_url.as_ref() && !b.rotate_secret => {
            old.as_ref().and_then(|o| o.webhook_secret_enc.clone())
        }
        Some(_) => {
            let s = new_secret()?;
            let enc = pii.encrypt(&s, secret_field(client.id))?;
            secret = Some(s);
            Some(enc)
        }
    };
    let new = AlertSettings {
        client_id: client.id,
        emails_enc: emails.iter().map(|e| pii.encrypt(e, emails_field(client.id))).collect::<Result<_, _>>()?,
        webhook_url,
        webhook_secret_enc,
        kinds,
        thresholds: thresholds(&b.thresholds)?,
        updated_at: DateTime::now(),
    };
    let coll = collections::ALERT_SETTINGS;
    store::save_tenant_document(&st, &p, &meta, coll, "alert_settings", client.id, old.as_ref(), &new).await?;
    let mut v = view(&st, &new)?;
    v.webhook_secret = secret;
    Ok(Json(v))
}

/// A tenant's tracking health now (seed 002's health check).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsHealthView {
    /// `healthy`, or `warning` while an alert fires.
    pub status: String,
    /// Start of the 24 h window, RFC 3339.
    pub window_start: String,
    /// End of the 24 h window (`API_ALERTS_SETTLE_SECS` ago), RFC 3339.
    pub window_end: String,
    /// Human views in the window.
    pub views_24h: u64,
    /// Views whose page could fire the tenant's pixels (consent, no DNT/GPC).
    pub client_views_24h: u64,
    /// Their share, 0..1; null without views.
    pub client_rate: Option<f64>,
    /// Start of the last complete hour, RFC 3339.
    pub hour: String,
    /// Views in that hour.
    pub hour_views: u64,
    /// Views in the same hour a week before.
    pub last_week_views: u64,
    /// Each alert's state as the notifier last judged it.
    pub alerts: Vec<AlertView>,
}

/// One alert's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// `client_rate_low`, `traffic_spike`, `traffic_drop` or `pixels_silent`.
    pub kind: String,
    /// Firing at the last evaluation.
    pub firing: bool,
    /// When it last changed, RFC 3339.
    pub since: String,
    /// The last evaluation, RFC 3339.
    pub judged_at: String,
    /// Measured share or ratio.
    pub value: f64,
    /// Threshold.
    pub threshold: f64,
}

/// The tenant's tracking health over the last 24 h and its alerts (the
/// dashboard's notifications).
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(ClientScope),
    responses((status = 200, body = AlertsHealthView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_health(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<AlertsHealthView>, ApiError> {
    p.can(Resource::Alerts, Action::Read)?;
    let now = (DateTime::now().timestamp_millis() / 1000) as u32;
    let w = Windows::ending(now.saturating_sub(st.cfg.alerts_settle_secs));
    let hex = client.id.to_hex();
    let h =
        health::measure(&st.ch, &st.ch_db, w, Some(&hex)).await?.into_iter().next().map(|r| r.1).unwrap_or_default();
    let mut states: Vec<AlertState> = st
        .mongo
        .collection::<AlertState>(collections::ALERT_STATES)
        .find(doc! { "clientId": client.id })
        .await?
        .try_collect()
        .await?;
    states.sort_by_key(|s| s.kind);
    let alerts: Vec<AlertView> = states
        .iter()
        .map(|s| AlertView {
            kind: s.kind.as_str().into(),
            firing: s.firing,
            since: rfc(s.since),
            judged_at: to_rfc3339(s.slot.clamp(0, i64::from(u32::MAX)) as u32),
            value: s.value,
            threshold: s.threshold,
        })
        .collect();
    Ok(Json(AlertsHealthView {
        status: if alerts.iter().any(|a| a.firing) { "warning" } else { "healthy" }.into(),
        window_start: to_rfc3339(w.start()),
        window_end: to_rfc3339(w.end),
        views_24h: h.views_24h,
        client_views_24h: h.client_views_24h,
        client_rate: h.client_rate(),
        hour: to_rfc3339(w.hour),
        hour_views: h.hour_views,
        last_week_views: h.last_week_views,
        alerts,
    }))
}

/// Query of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Newest first, at most this many, 1..=200. Default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One notification in the delivery log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertDeliveryView {
    /// Delivery id (the webhook's `webhook-id`).
    pub id: String,
    /// The alert.
    pub kind: String,
    /// `firing` or `resolved`.
    pub event: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// The recipient, masked (`a***@label.com`, a webhook's host).
    pub target: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Accepted by the receiver, RFC 3339.
    pub delivered_at: Option<String>,
    /// Next attempt of a pending one, RFC 3339.
    pub next_attempt_at: Option<String>,
}

/// The tenant's alert notifications and their attempts, newest first.
#[utoipa::path(get, path = "/v1/alerts/deliveries", tag = "alerts", params(DeliveriesQuery),
    responses((status = 200, body = Vec<AlertDeliveryView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Vec<AlertDeliveryView>>, ApiError> {
    p.can(Resource::Alerts, Action::Read)?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let limit = validate::log_limit(q.limit)?;
    let found: Vec<AlertDelivery> = st
        .mongo
        .collection::<AlertDelivery>(collections::ALERT_DELIVERIES)
        .find(doc! { "clientId": client.id })
        .sort(doc! { "createdAt": -1, "_id": -1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(Json(
        found
            .into_iter()
            .map(|d| AlertDeliveryView {
                id: d.id.to_hex(),
                kind: d.kind.as_str().into(),
                event: d.event,
                channel: validate::wire(&d.channel),
                target: d.target_hint,
                status: validate::wire(&d.status),
                attempts: d.attempts,
                last_error: d.last_error,
                created_at: rfc(d.created_at),
                delivered_at: d.delivered_at.map(rfc),
                next_attempt_at: (d.status == schemas::alerts::DeliveryStatus::Pending).then(|| rfc(d.next_attempt_at)),
            })
            .collect(),
    ))
}

/// The schema of `kinds`: alert kind names, each once at most.
fn kinds_schema() -> utoipa::openapi::schema::Array {
    let name = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some("^(client_rate_low|traffic_spike|traffic_drop|pixels_silent)$"));
    utoipa::openapi::schema::ArrayBuilder::new().items(name).unique_items(true).build()
}
