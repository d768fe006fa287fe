//! The `gdpr` handlers: request and response types, validation and the
//! operations behind each route of [`super::router`].

use axum::extract::State;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use schemas::billing::{Invoice, Payment};
use schemas::clickhouse::EVENTS_TABLE;
use schemas::crm::{Contact, Lead, Opportunity};
use schemas::gdpr::{Consent, ConsentState, NewsletterSubscriber, SubscriptionChange};
use schemas::mongo::{collections, EmailLog};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Entry, Meta};
use crate::auth::Principal;
use crate::crm::person;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::email;
use crate::validate::rfc;
use crypto::{Field, Pii};

const ERASED: &str = "[erased]";

/// `PUT /v1/gdpr/consents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The person's email.
    pub email: String,
    /// Analytics consent.
    pub analytics: bool,
    /// Marketing consent.
    pub marketing: bool,
    /// Functional consent.
    pub functional: bool,
    /// Where it was given: `banner`, `form`, `api` (default), `email`.
    #[serde(default)]
    #[schema(schema_with = consent_source_schema)]
    pub source: Option<String>,
    /// The smartlink visitor id (`sl_vid`) of the browser that gave it.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::visitor_id)]
    pub visitor_id: Option<String>,
}

/// One state of a person's consents.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ConsentStateView {
    /// Analytics.
    pub analytics: bool,
    /// Marketing.
    pub marketing: bool,
    /// Functional.
    pub functional: bool,
    /// Source.
    pub source: String,
    /// When, RFC 3339.
    pub at: String,
}

/// A person's consents with their history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsentView {
    /// Email.
    pub email: String,
    /// Visitor ids seen with this person.
    pub visitor_ids: Vec<String>,
    /// Current state.
    pub current: ConsentStateView,
    /// Every state, oldest first.
    pub history: Vec<ConsentStateView>,
}

fn state_view(s: &ConsentState) -> ConsentStateView {
    ConsentStateView {
        analytics: s.analytics,
        marketing: s.marketing,
        functional: s.functional,
        source: s.source.clone(),
        at: rfc(s.at),
    }
}

fn consent_view(pii: &Pii, c: &Consent) -> Result<ConsentView, ApiError> {
    Ok(ConsentView {
        email: pii.decrypt(&c.email_enc, Field::new(collections::CONSENTS, c.id, "email"))?,
        visitor_ids: c.visitor_ids.clone(),
        current: state_view(&c.current),
        history: c.history.iter().map(state_view).collect(),
    })
}

fn visitor_id(field: &str, v: &str) -> Result<String, ApiError> {
    if (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(v.to_string())
    } else {
        Err(ApiError::invalid(field, "must be a visitor id: 8 to 64 of A-Z, a-z, 0-9, - and _"))
    }
}

/// Where consents are given.
const CONSENT_SOURCES: [&str; 4] = ["banner", "form", "api", "email"];

/// Schema of [`ConsentInput::source`] ([`CONSENT_SOURCES`]).
fn consent_source_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&CONSENT_SOURCES)
}

fn source(v: Option<&str>, allowed: &[&str]) -> Result<String, ApiError> {
    crate::validate::one_of("source", v.unwrap_or("api"), allowed)
}

/// Records a person's consents (a new state appended to the history).
#[utoipa::path(put, path = "/v1/gdpr/consents", tag = "gdpr", request_body = ConsentInput,
    responses((status = 200, body = ConsentView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_consent(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<ConsentInput>,
) -> Result<Json<ConsentView>, ApiError> {
    p.can(Resource::Gdpr, Action::Update)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let mail = email("email", &b.email)?;
    let index = pii.email_index(&mail);
    let state = ConsentState {
        analytics: b.analytics,
        marketing: b.marketing,
        functional: b.functional,
        source: source(b.source.as_deref(), &CONSENT_SOURCES)?,
        at: DateTime::now(),
    };
    let vid = b.visitor_id.as_deref().map(|v| visitor_id("visitor_id", v)).transpose()?;
    let consents = st.mongo.collection::<Consent>(collections::CONSENTS);
    let guard = crate::lock::acquire(
        &st,
        format!("consent:{}:{index}", tenant.id.to_hex()),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(5),
    )
    .await?;
    let result = async {
        let old = consents.find_one(doc! { "clientId": tenant.id, "emailIndex": &index }).await?;
        let mut c = old.clone().unwrap_or_else(|| Consent {
            id: ObjectId::new(),
            client_id: tenant.id,
            email_enc: String::new(),
            email_index: index.clone(),
            visitor_ids: Vec::new(),
            current: state.clone(),
            history: Vec::new(),
        });
        c.email_enc = pii.encrypt(&mail, Field::new(collections::CONSENTS, c.id, "email"))?;
        c.current = state.clone();
        c.history.push(state.clone());
        if let Some(v) = vid {
            if !c.visitor_ids.contains(&v) {
                c.visitor_ids.push(v);
            }
        }
        match consents.replace_one(doc! { "_id": c.id }, &c).upsert(true).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                return Err(ApiError::Conflict { code: "conflict", message: "recorded concurrently; retry".into() })
            }
            Err(e) => return Err(e.into()),
        }
        let action = if old.is_some() { "update" } else { "create" };
        audit::changed(
            &st,
            &p,
            &meta,
            audit::Target { client_id: tenant.id, action, resource: "consents", id: c.id },
            old.as_ref(),
            Some(&c),
        )
        .await?;
        Ok(c)
    }
    .await;
    guard.release().await;
    Ok(Json(consent_view(pii, &result?)?))
}

/// `?email=` of a person.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PersonQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// The person's email.
    pub email: String,
}

/// A person's consents and their history.
#[utoipa::path(get, path = "/v1/gdpr/consents", tag = "gdpr", params(PersonQuery),
    responses((status = 200, body = ConsentView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_consent(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<PersonQuery>,
) -> Result<Json<ConsentView>, ApiError> {
    p.can(Resource::Gdpr, Action::Read)?;
    let tenant = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let index = pii.email_index(&email("email", &q.email)?);
    let c = st
        .mongo
        .collection::<Consent>(collections::CONSENTS)
        .find_one(doc! { "clientId": tenant.id, "emailIndex": index })
        .await?
        .ok_or(ApiError::NotFound("consent"))?;
    Ok(Json(consent_view(pii, &c)?))
}

/// `POST /v1/newsletter/{subscribe,unsubscribe}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Email.
    pub email: String,
    /// Language, ISO 639-1 (`fr`, `en`, `he`); default `en`.
    #[serde(default)]
    #[schema(pattern = "^[a-z]{2}$")]
    pub language: Option<String>,
    /// `form`, `email_link`, `api` (default).
    #[serde(default)]
    #[schema(pattern = "^(form|email_link|api)$")]
    pub source: Option<String>,
}

/// A subscriber as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriberView {
    /// Email.
    pub email: String,
    /// Language.
    pub language: String,
    /// Subscribed now.
    pub is_active: bool,
    /// Changes, oldest first: `{action, source, at}`.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<serde_json::Value>,
}

fn subscriber_view(pii: &Pii, s: &NewsletterSubscriber) -> Result<SubscriberView, ApiError> {
    Ok(SubscriberView {
        email: pii.decrypt(&s.email_enc, Field::new(collections::NEWSLETTER_SUBSCRIBERS, s.id, "email"))?,
        language: s.language.clone(),
        is_active: s.is_active,
        history: s
            .history
            .iter()
            .map(|h| serde_json::json!({"action": h.action, "source": h.source, "at": rfc(h.at)}))
            .collect(),
    })
}

async fn subscription(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    b: &SubscriptionInput,
    subscribe: bool,
) -> Result<SubscriberView, ApiError> {
    p.can(Resource::Gdpr, Action::Update)?;
    let tenant = Tenant::resolve(st, p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let mail = email("email", &b.email)?;
    let index = pii.email_index(&mail);
    let language = match b.language.as_deref() {
        None => None,
        Some(l) if l.len() == 2 && l.bytes().all(|c| c.is_ascii_lowercase()) => Some(l.to_string()),
        Some(_) => return Err(ApiError::invalid("language", "must be an ISO 639-1 code such as fr")),
    };
    let change = SubscriptionChange {
        action: if subscribe { "subscribe" } else { "unsubscribe" }.into(),
        source: source(b.source.as_deref(), &["form", "email_link", "api"])?,
        at: DateTime::now(),
    };
    let subs = st.mongo.collection::<NewsletterSubscriber>(collections::NEWSLETTER_SUBSCRIBERS);
    let old = subs.find_one(doc! { "clientId": tenant.id, "emailIndex": &index }).await?;
    if old.is_none() && !subscribe {
        return Err(ApiError::NotFound("subscriber"));
    }
    let mut s = old.clone().unwrap_or_else(|| NewsletterSubscriber {
        id: ObjectId::new(),
        client_id: tenant.id,
        email_enc: String::new(),
        email_index: index.clone(),
        language: "en".into(),
        is_active: false,
        history: Vec::new(),
    });
    s.email_enc = pii.encrypt(&mail, Field::new(collections::NEWSLETTER_SUBSCRIBERS, s.id, "email"))?;
    if let Some(l) = language {
        s.language = l;
    }
    s.is_active = subscribe;
    s.history.push(change);
    match subs.replace_one(doc! { "_id": s.id }, &s).upsert(true).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => {
            return Err(ApiError::Conflict { code: "conflict", message: "changed concurrently; retry".into() })
        }
        Err(e) => return Err(e.into()),
    }
    let action = if subscribe { "subscribe" } else { "unsubscribe" };
    audit::changed(
        st,
        p,
        meta,
        audit::Target { client_id: tenant.id, action, resource: "newsletter", id: s.id },
        old.as_ref(),
        Some(&s),
    )
    .await?;
    subscriber_view(pii, &s)
}

/// Subscribes an email to the tenant's newsletter (again, if it left).
#[utoipa::path(post, path = "/v1/newsletter/subscribe", tag = "gdpr", request_body = SubscriptionInput,
    responses((status = 200, body = SubscriberView), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn subscribe(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<SubscriptionInput>,
) -> Result<Json<SubscriberView>, ApiError> {
    subscription(&st, &p, &meta, &b, true).await.map(Json)
}

/// Unsubscribes an email (kept with its history, inactive). 404 when it never subscribed.
#[utoipa::path(post, path = "/v1/newsletter/unsubscribe", tag = "gdpr", request_body = SubscriptionInput,
    responses((status = 200, body = SubscriberView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn unsubscribe(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<SubscriptionInput>,
) -> Result<Json<SubscriberView>, ApiError> {
    subscription(&st, &p, &meta, &b, false).await.map(Json)
}

/// Lists the tenant's active subscribers (at most 10 000).
#[utoipa::path(get, path = "/v1/newsletter", tag = "gdpr", params(crate::tenants::ClientScope),
    responses((status = 200, body = Vec<SubscriberView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_subscribers(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<SubscriberView>>, ApiError> {
    p.can(Resource::Gdpr, Action::Read)?;
    let pii = st.pii()?;
    let rows: Vec<NewsletterSubscriber> = st
        .mongo
        .collection::<NewsletterSubscriber>(collections::NEWSLETTER_SUBSCRIBERS)
        .find(doc! { "clientId": tenant.id, "isActive": true })
        .limit(10_000)
        .await?
        .try_collect()
        .await?;
    rows.iter().map(|s| subscriber_view(pii, s)).collect::<Result<Vec<_>, _>>().map(Json)
}

/// `POST /v1/gdpr/export` and `/erase` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The person's email.
    pub email: String,
    /// Smartlink visitor ids (`sl_vid`) of the person's browsers, at most 50.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::visitor_ids)]
    pub visitor_ids: Vec<String>,
}

/// One smartlink event of the person.
#[derive(Debug, Serialize, Deserialize, ToSchema, clickhouse::Row)]
pub struct EventExport {
    /// Event id.
    pub event_id: String,
    /// `view` or `click`.
    pub kind: String,
    /// Time, Unix s UTC.
    pub ts: u32,
    /// Link id.
    pub link_id: String,
    /// Slug.
    pub slug: String,
    /// Streaming platform of a click.
    pub platform: String,
    /// Visitor id.
    pub visitor_id: String,
    /// Country (ISO alpha-2).
    pub country: String,
    /// City.
    pub city: String,
    /// Device class.
    pub device: String,
    /// Browser.
    pub browser: String,
    /// OS.
    pub os: String,
    /// Referrer host.
    pub referrer_host: String,
    /// UTM source.
    pub utm_source: String,
    /// UTM campaign.
    pub utm_campaign: String,
}

/// Everything held about a person (GDPR art. 15 and 20).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectExport {
    /// The email asked for.
    pub email: String,
    /// Visitor ids searched (given and found with the consents).
    pub visitor_ids: Vec<String>,
    /// Export time, RFC 3339.
    pub exported_at: String,
    /// Leads.
    pub leads: Vec<crate::crm::LeadView>,
    /// Contacts.
    pub contacts: Vec<crate::crm::ContactView>,
    /// Opportunities of those leads and contacts.
    pub opportunities: Vec<crate::crm::OpportunityView>,
    /// Tasks and manual activities about those records.
    #[schema(value_type = Vec<Object>)]
    pub tasks_and_activities: Vec<serde_json::Value>,
    /// Invoices billed to the email, with their payments.
    pub invoices: Vec<crate::billing::InvoiceView>,
    /// Payments of those invoices.
    pub payments: Vec<crate::billing::PaymentView>,
    /// Consents.
    pub consent: Option<ConsentView>,
    /// Newsletter subscription.
    pub newsletter: Option<SubscriberView>,
    /// Emails sent to the person (subject, template, status, time).
    #[schema(value_type = Vec<Object>)]
    pub emails: Vec<serde_json::Value>,
    /// Smartlink events of the visitor ids, oldest first (at most 10 000).
    pub events: Vec<EventExport>,
}

struct Found {
    email: String,
    index: String,
    visitor_ids: Vec<String>,
    leads: Vec<Lead>,
    contacts: Vec<Contact>,
    consent: Option<Consent>,
    subscriber: Option<NewsletterSubscriber>,
    invoices: Vec<Invoice>,
    email_logs: Vec<EmailLog>,
}

async fn find(st: &AppState, tenant: ObjectId, b: &SubjectRequest) -> Result<Found, ApiError> {
    let pii = st.pii()?;
    let mail = email("email", &b.email)?;
    let index = pii.email_index(&mail);
    if b.visitor_ids.len() > 50 {
        return Err(ApiError::invalid("visitor_ids", "at most 50"));
    }
    let mut visitor_ids = b
        .visitor_ids
        .iter()
        .enumerate()
        .map(|(i, v)| visitor_id(&format!("visitor_ids[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()?;
    let m = &st.mongo;
    let consent = m
        .collection::<Consent>(collections::CONSENTS)
        .find_one(doc! { "clientId": tenant, "emailIndex": &index })
        .await?;
    for v in consent.iter().flat_map(|c| c.visitor_ids.iter()) {
        if !visitor_ids.contains(v) {
            visitor_ids.push(v.clone());
        }
    }
    Ok(Found {
        leads: m
            .collection::<Lead>(collections::LEADS)
            .find(doc! { "clientId": tenant, "personal.emailIndex": &index })
            .await?
            .try_collect()
            .await?,
        contacts: m
            .collection::<Contact>(collections::CONTACTS)
            .find(doc! { "clientId": tenant, "emailIndex": &index })
            .await?
            .try_collect()
            .await?,
        subscriber: m
            .collection::<NewsletterSubscriber>(collections::NEWSLETTER_SUBSCRIBERS)
            .find_one(doc! { "clientId": tenant, "emailIndex": &index })
            .await?,
        invoices: m
            .collection::<Invoice>(collections::INVOICES)
            .find(doc! { "clientId": tenant, "client.emailIndex": &index })
            .await?
            .try_collect()
            .await?,
        email_logs: m
            .collection::<EmailLog>(collections::EMAIL_LOGS)
            .find(doc! { "clientId": tenant, "toIndex": &index })
            .await?
            .try_collect()
            .await?,
        consent,
        email: mail,
        index,
        visitor_ids,
    })
}

/// The tenant's opportunities tied to any of `records` (contact or lead ids).
async fn opportunities_of(
    m: mongodb::Database,
    tenant: ObjectId,
    records: &[ObjectId],
) -> Result<Vec<Opportunity>, ApiError> {
    Ok(m
        .collection::<Opportunity>(collections::OPPORTUNITIES)
        .find(doc! { "clientId": tenant, "$or": [ { "contactId": { "$in": records } }, { "leadId": { "$in": records } } ] })
        .await?
        .try_collect()
        .await?)
}

async fn events(st: &AppState, tenant: ObjectId, visitor_ids: &[String]) -> Result<Vec<EventExport>, ApiError> {
    if visitor_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT toString(event_id) AS eid, toString(kind) AS kind_s, ts, link_id, slug, platform, visitor_id,
            replaceAll(toString(country), '\\0', '') AS country_s, city, toString(device) AS device_s, browser, os, referrer_host, utm_source, utm_campaign
         FROM {}.{EVENTS_TABLE} FINAL
         WHERE tenant_id = ? AND has(?, visitor_id)
         ORDER BY ts
         LIMIT 10000",
        st.ch_db
    );
    Ok(st.ch.query(&sql).bind(tenant.to_hex()).bind(visitor_ids).fetch_all::<EventExport>().await?)
}

/// Exports everything held about a person as JSON (admins, or a key with
/// `gdpr:write`); audited.
#[utoipa::path(post, path = "/v1/gdpr/export", tag = "gdpr", request_body = SubjectRequest,
    responses((status = 200, body = SubjectExport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<SubjectRequest>,
) -> Result<Json<SubjectExport>, ApiError> {
    p.can(Resource::Gdpr, Action::Export)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let f = find(&st, tenant.id, &b).await?;
    let m = &st.mongo;
    let mut record_ids: Vec<ObjectId> = f.leads.iter().map(|l| l.id).chain(f.contacts.iter().map(|c| c.id)).collect();
    let opportunities = opportunities_of(st.mongo.clone(), tenant.id, &record_ids).await?;
    record_ids.extend(opportunities.iter().map(|o| o.id));
    let mut tasks_and_activities = Vec::new();
    for coll in [collections::TASKS, collections::ACTIVITIES] {
        let docs: Vec<Document> = m
            .collection::<Document>(coll)
            .find(doc! { "clientId": tenant.id, "related.id": { "$in": &record_ids } })
            .await?
            .try_collect()
            .await?;
        tasks_and_activities.extend(docs.into_iter().map(|d| {
            let mut v = bson::Bson::Document(d).into_relaxed_extjson();
            v["collection"] = serde_json::Value::String(coll.to_string());
            v
        }));
    }
    let invoice_ids: Vec<ObjectId> = f.invoices.iter().map(|i| i.id).collect();
    let payments: Vec<Payment> = m
        .collection::<Payment>(collections::PAYMENTS)
        .find(doc! { "invoiceId": { "$in": &invoice_ids } })
        .await?
        .try_collect()
        .await?;
    let out = SubjectExport {
        email: f.email.clone(),
        visitor_ids: f.visitor_ids.clone(),
        exported_at: rfc(DateTime::now()),
        leads: f.leads.iter().map(|l| crate::crm::lead_view(pii, l)).collect::<Result<_, _>>()?,
        contacts: f.contacts.iter().map(|c| crate::crm::contact_view(pii, c)).collect::<Result<_, _>>()?,
        opportunities: opportunities.iter().map(crate::crm::opportunity_view).collect(),
        tasks_and_activities,
        invoices: f.invoices.iter().map(|i| crate::billing::invoice_view(&st, i)).collect::<Result<_, _>>()?,
        payments: payments.iter().map(crate::billing::payment_view).collect(),
        consent: f.consent.as_ref().map(|c| consent_view(pii, c)).transpose()?,
        newsletter: f.subscriber.as_ref().map(|s| subscriber_view(pii, s)).transpose()?,
        emails: f.email_logs.iter().map(|l| serde_json::json!({"subject": l.subject, "template": l.template, "status": l.status, "at": rfc(l.created_at)})).collect(),
        events: events(&st, tenant.id, &f.visitor_ids).await?,
    };
    let changes = vec![schemas::crm::FieldChange {
        field: "records".into(),
        old: bson::Bson::Null,
        new: bson::Bson::Int64((out.leads.len() + out.contacts.len() + out.invoices.len() + out.events.len()) as i64),
    }];
    let entry = Entry {
        client_id: Some(tenant.id),
        action: "gdpr_export",
        resource: "gdpr",
        resource_id: Some(f.index.clone()),
        changes,
        outcome: Ok(()),
    };
    audit::record(&st, Some(&p), &meta, entry).await?;
    Ok(Json(out))
}

/// What an erasure did.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErasureReport {
    /// Leads anonymised.
    pub leads_anonymised: u64,
    /// Contacts anonymised.
    pub contacts_anonymised: u64,
    /// Consent records deleted.
    pub consents_deleted: u64,
    /// Newsletter subscriptions deleted.
    pub subscriptions_deleted: u64,
    /// Email logs deleted.
    pub email_logs_deleted: u64,
    /// Smartlink events erased.
    pub events_erased: u64,
    /// Rollup windows recomputed after the events went.
    pub windows_rerolled: usize,
    /// Invoices kept (legal retention, GDPR art. 17(3)(b)).
    pub invoices_retained: u64,
}

/// Erases a person: CRM records anonymised, consents, subscription and
/// email logs deleted, smartlink events erased and rollups recomputed;
/// invoices retained. Admins, or a key with `gdpr:write`; audited.
#[utoipa::path(post, path = "/v1/gdpr/erase", tag = "gdpr", request_body = SubjectRequest,
    responses((status = 200, body = ErasureReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn erase(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<SubjectRequest>,
) -> Result<Json<ErasureReport>, ApiError> {
    p.can(Resource::Gdpr, Action::Delete)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let f = find(&st, tenant.id, &b).await?;
    let m = &st.mongo;
    let now = DateTime::now();
    let mut report = ErasureReport {
        leads_anonymised: 0,
        contacts_anonymised: 0,
        consents_deleted: 0,
        subscriptions_deleted: 0,
        email_logs_deleted: 0,
        events_erased: 0,
        windows_rerolled: 0,
        invoices_retained: f.invoices.len() as u64,
    };
    // Events first: if this fails, nothing else changed and the request can be retried.
    let stores = rollup::Stores {
        ch: st.ch.clone(),
        ch_db: st.ch_db.clone(),
        mongo: st.mongo.clone(),
        topology: st.cfg.clickhouse.topology(),
    };
    for v in &f.visitor_ids {
        let e = rollup::lifecycle::erase_visitor(
            &stores,
            &tenant.id.to_hex(),
            &rollup::lifecycle::Visitor::Cookie(v.clone()),
            (now.timestamp_millis() / 1000) as u32,
        )
        .await?;
        report.events_erased += e.events;
        report.windows_rerolled += e.windows;
    }
    if report.events_erased > 0 {
        // No answer cached before the erasure may show the erased events.
        st.answers.clear();
    }
    for old in &f.leads {
        let mut l = old.clone();
        let placeholder = format!("erased-{}@erased.invalid", l.id.to_hex());
        person::anonymise(pii, crate::crm::lead_owner(l.id), &mut l.personal, ERASED, &placeholder)?;
        // The artist name is often the person's own name (and is copied
        // into the contact's company and the opportunity's title).
        l.artist.name = ERASED.into();
        l.artist.links.clear();
        for n in &mut l.notes {
            n.content = ERASED.into();
        }
        l.custom_fields = Document::new();
        l.updated_at = now;
        m.collection::<Lead>(collections::LEADS).replace_one(doc! { "_id": l.id }, &l).await?;
        audit::changed(
            &st,
            &p,
            &meta,
            audit::Target { client_id: tenant.id, action: "gdpr_erase", resource: "leads", id: l.id },
            Some(old),
            Some(&l),
        )
        .await?;
        report.leads_anonymised += 1;
    }
    for old in &f.contacts {
        let mut c = old.clone();
        let placeholder = format!("erased-{}@erased.invalid", c.id.to_hex());
        person::anonymise(pii, crate::crm::contact_owner(c.id), &mut c.person, ERASED, &placeholder)?;
        c.company = ERASED.into();
        c.custom_fields = Document::new();
        c.updated_at = now;
        m.collection::<Contact>(collections::CONTACTS).replace_one(doc! { "_id": c.id }, &c).await?;
        audit::changed(
            &st,
            &p,
            &meta,
            audit::Target { client_id: tenant.id, action: "gdpr_erase", resource: "contacts", id: c.id },
            Some(old),
            Some(&c),
        )
        .await?;
        report.contacts_anonymised += 1;
    }
    // Free text about the person on related opportunities (their titles
    // default to the artist's name), tasks and activities, and the values
    // (not the field names) of the audit diffs of every one of those records
    // (security review finding 6: the diffs kept what the records lost).
    let mut erased: Vec<ObjectId> = f.leads.iter().map(|l| l.id).chain(f.contacts.iter().map(|c| c.id)).collect();
    let opportunities = opportunities_of(m.clone(), tenant.id, &erased).await?;
    erased.extend(opportunities.iter().map(|o| o.id));
    m.collection::<Opportunity>(collections::OPPORTUNITIES)
        .update_many(
            doc! { "clientId": tenant.id, "_id": { "$in": opportunities.iter().map(|o| o.id).collect::<Vec<_>>() } },
            doc! { "$set": { "title": ERASED, "updatedAt": now } },
        )
        .await?;
    for (coll, set) in [
        (collections::TASKS, doc! { "title": ERASED, "description": "" }),
        (collections::ACTIVITIES, doc! { "subject": ERASED, "body": ERASED }),
    ] {
        let related = doc! { "clientId": tenant.id, "related.id": { "$in": &erased } };
        let ids: Vec<Document> = m
            .collection::<Document>(coll)
            .find(related.clone())
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        m.collection::<Document>(coll).update_many(related, doc! { "$set": set }).await?;
        erased.extend(ids.iter().filter_map(|d| d.get_object_id("_id").ok()));
    }
    let hex_ids: Vec<String> = erased.iter().map(|i| i.to_hex()).collect();
    let records: Vec<schemas::crm::AuditRecord> = m
        .collection::<schemas::crm::AuditRecord>(collections::AUDIT_LOGS)
        .find(doc! { "clientId": tenant.id, "resourceId": { "$in": &hex_ids } })
        .await?
        .try_collect()
        .await?;
    for mut r in records {
        for c in &mut r.changes {
            for v in [&mut c.old, &mut c.new] {
                if !matches!(
                    v,
                    bson::Bson::Null
                        | bson::Bson::Boolean(_)
                        | bson::Bson::Int32(_)
                        | bson::Bson::Int64(_)
                        | bson::Bson::Double(_)
                ) {
                    *v = bson::Bson::String(ERASED.into());
                }
            }
        }
        m.collection::<schemas::crm::AuditRecord>(collections::AUDIT_LOGS)
            .replace_one(doc! { "_id": r.id }, &r)
            .await?;
    }
    report.consents_deleted = m
        .collection::<Consent>(collections::CONSENTS)
        .delete_many(doc! { "clientId": tenant.id, "emailIndex": &f.index })
        .await?
        .deleted_count;
    report.subscriptions_deleted = m
        .collection::<NewsletterSubscriber>(collections::NEWSLETTER_SUBSCRIBERS)
        .delete_many(doc! { "clientId": tenant.id, "emailIndex": &f.index })
        .await?
        .deleted_count;
    report.email_logs_deleted = m
        .collection::<EmailLog>(collections::EMAIL_LOGS)
        .delete_many(doc! { "clientId": tenant.id, "toIndex": &f.index })
        .await?
        .deleted_count;
    let changes = [
        ("leads_anonymised", report.leads_anonymised),
        ("contacts_anonymised", report.contacts_anonymised),
        ("consents_deleted", report.consents_deleted),
        ("subscriptions_deleted", report.subscriptions_deleted),
        ("email_logs_deleted", report.email_logs_deleted),
        ("events_erased", report.events_erased),
        ("invoices_retained", report.invoices_retained),
    ]
    .into_iter()
    .map(|(k, v)| schemas::crm::FieldChange {
        field: k.into(),
        old: bson::Bson::Null,
        new: bson::Bson::Int64(v as i64),
    })
    .collect();
    let entry = Entry {
        client_id: Some(tenant.id),
        action: "gdpr_erase",
        resource: "gdpr",
        resource_id: Some(f.index.clone()),
        changes,
        outcome: Ok(()),
    };
    audit::record(&st, Some(&p), &meta, entry).await?;
    Ok(Json(report))
}
