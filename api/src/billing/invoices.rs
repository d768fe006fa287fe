//! Invoices and payments (issue #7; seeds 003, 004; arithmetic and
//! rounding in [`super::money`], PDF in [`super::pdf`]).
//!
//! - Numbers `INV-{year}-{seq:05}` per tenant and year without gaps or
//!   duplicates, also under concurrent creation: the next number is the
//!   year's highest + 1, and the insert itself claims it through the
//!   unique index `(clientId, year, seq)`; a lost race retries with the
//!   next one. A number therefore exists only once its invoice does, and
//!   invoices are never deleted (cancelled instead), so no gap can appear.
//! - Status DRAFT → SENT → PAID | OVERDUE | CANCELLED
//!   ([`InvoiceStatus::can_move_to`]); lines, VAT and client change only
//!   in DRAFT; PAID is reached exactly when payments cover the total.
//! - Payments and refunds need an `Idempotency-Key` header: a retried
//!   request with the same key records nothing new and answers the same
//!   payment (`Idempotent-Replayed: true`); the same key with another
//!   request is 409 `idempotency_key_reused`. A payment is stored
//!   `PENDING`, applied to the invoice by a version-checked update (which
//!   also lists it in `appliedPayments`, so applying twice is impossible),
//!   then marked `COMPLETED`; a retry after a crash resumes there.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use schemas::billing::{
    Invoice, InvoiceClient, InvoiceLine, InvoiceLinks, InvoiceStatus, Issuer, Payment, PaymentKind, PaymentStatus,
};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::money::{self, line_total, quantity_milli};
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::mail::{MailAttachment, Outgoing};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::email;
use crate::validate::{self, day, rfc, wire};
use crate::validate::{currency, hex};
use crypto::Field;

/// Largest invoice total accepted, minor units (10^15).
const MAX_TOTAL_MINOR: i64 = 1_000_000_000_000_000;

/// The billed client in requests and answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBlock {
    /// Name, 1..=100.
    #[schema(schema_with = crate::openapi::text_100)]
    pub name: String,
    /// Company, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub company: String,
    /// Email (the invoice is sent there).
    pub email: String,
    /// Postal address, free text with line breaks, 0..=300.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::multiline_300)]
    pub address: String,
    /// ISO 3166-1 alpha-2 country.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::country_or_empty)]
    pub country: String,
    /// VAT number, 0..=30.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_30)]
    pub vat_number: String,
}

/// The issuer block (defaults: the tenant's name).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerBlock {
    /// Company name, at most 100 characters (default, or blank: the tenant's name).
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub name: String,
    /// Address, free text with line breaks, 0..=300.
    #[schema(schema_with = crate::openapi::multiline_300)]
    pub address: String,
    /// VAT number, 0..=30.
    #[schema(schema_with = crate::openapi::opt_text_30)]
    pub vat_number: String,
    /// Bank details (IBAN, BIC) printed under the terms, 0..=300.
    #[schema(schema_with = crate::openapi::multiline_300)]
    pub bank_details: String,
}

/// A line in requests.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// What is billed, 1..=200.
    #[schema(schema_with = crate::openapi::text_200)]
    pub description: String,
    /// Quantity, > 0, at most 3 decimals, ≤ 10^6.
    #[schema(exclusive_minimum = 0, maximum = 1000000, multiple_of = 0.001)]
    pub quantity: f64,
    /// Unit price, minor units (negative for a discount), |p| ≤ 10^12.
    #[schema(minimum = -1000000000000i64, maximum = 1000000000000i64)]
    pub unit_price_minor: i64,
}

/// A line in answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// Description.
    pub description: String,
    /// Quantity.
    pub quantity: f64,
    /// Unit price, minor units.
    pub unit_price_minor: i64,
    /// Line total, minor units (rounded half away from zero).
    pub total_minor: i64,
}

/// Records an invoice is about (ids of the tenant's records).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LinksBlock {
    /// Contact.
    pub contact_id: Option<String>,
    /// Lead.
    pub lead_id: Option<String>,
    /// Opportunity.
    pub opportunity_id: Option<String>,
    /// Campaign.
    pub campaign_id: Option<String>,
}

/// `POST /v1/invoices` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceCreate {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Billed client.
    pub client: ClientBlock,
    /// Issuer block.
    #[serde(default)]
    pub issuer: Option<IssuerBlock>,
    /// Lines, 1..=100.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<LineInput>,
    /// ISO 4217 currency, default `EUR`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::currency)]
    pub currency: Option<String>,
    /// VAT rate, basis points 0..=10000 (2000 = 20 %).
    #[schema(schema_with = crate::openapi::basis_points)]
    pub vat_rate_bp: i64,
    /// Issue date `YYYY-MM-DD` (UTC), default today; its year numbers the invoice.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::date)]
    pub issue_date: Option<String>,
    /// Days until due, 0..=365, default 30.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 365)]
    pub payment_terms_days: Option<i64>,
    /// Terms text, 1..=300, default "Payment due within N days.".
    #[serde(default)]
    #[schema(schema_with = crate::openapi::text_300)]
    pub payment_terms: Option<String>,
    /// Note printed on the invoice, 0..=1000, line breaks allowed.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::multiline_1000)]
    pub notes: Option<String>,
    /// Related records.
    #[serde(default)]
    pub links: LinksBlock,
}

/// `PATCH /v1/invoices/{id}` body. Content fields only while DRAFT;
/// `status` moves it (`SENT`, `CANCELLED`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoicePatch {
    /// New status: `SENT` (without emailing; see `/send`) or `CANCELLED`
    /// (moves: 409 `invalid_transition` otherwise).
    #[schema(schema_with = status_schema)]
    pub status: Option<String>,
    /// Lines, 1..=100 (DRAFT).
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Option<Vec<LineInput>>,
    /// VAT rate, basis points 0..=10000 (DRAFT).
    #[schema(schema_with = crate::openapi::basis_points)]
    pub vat_rate_bp: Option<i64>,
    /// Client block (DRAFT).
    pub client: Option<ClientBlock>,
    /// Due date `YYYY-MM-DD`, not before the issue date (DRAFT).
    #[schema(schema_with = crate::openapi::date)]
    pub due_date: Option<String>,
    /// Notes, 0..=1000, line breaks allowed (DRAFT).
    #[schema(schema_with = crate::openapi::multiline_1000)]
    pub notes: Option<String>,
}

/// An invoice as the API shows it (client email and address decrypted).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    /// Invoice id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// `INV-YYYY-NNNNN`.
    pub number: String,
    /// `DRAFT`, `SENT`, `PAID`, `OVERDUE`, `CANCELLED`.
    pub status: String,
    /// Issuer.
    pub issuer: IssuerBlock,
    /// Client.
    pub client: ClientBlock,
    /// Lines.
    pub lines: Vec<LineView>,
    /// Currency.
    pub currency: String,
    /// Subtotal, minor units.
    pub subtotal_minor: i64,
    /// VAT rate, basis points.
    pub vat_rate_bp: i64,
    /// VAT, minor units.
    pub vat_minor: i64,
    /// Total, minor units.
    pub total_minor: i64,
    /// Paid (payments − refunds), minor units.
    pub paid_minor: i64,
    /// Still due, minor units.
    pub due_minor: i64,
    /// Issue date `YYYY-MM-DD`.
    pub issue_date: String,
    /// Due date `YYYY-MM-DD`.
    pub due_date: String,
    /// Payment terms.
    pub payment_terms: String,
    /// Notes.
    pub notes: String,
    /// Related records.
    pub links: LinksBlock,
    /// First sent, RFC 3339.
    pub sent_at: Option<String>,
    /// Paid, RFC 3339.
    pub paid_at: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
}

/// `i` as the API shows it (client email and address decrypted; 503 without PII keys).
pub fn view(st: &AppState, i: &Invoice) -> Result<InvoiceView, ApiError> {
    let pii = st.pii()?;
    Ok(InvoiceView {
        id: i.id.to_hex(),
        client_id: i.client_id.to_hex(),
        number: i.number.clone(),
        status: wire(&i.status),
        issuer: IssuerBlock {
            name: i.issuer.name.clone(),
            address: i.issuer.address.clone(),
            vat_number: i.issuer.vat_number.clone(),
            bank_details: i.issuer.bank_details.clone(),
        },
        client: ClientBlock {
            name: i.client.name.clone(),
            company: i.client.company.clone(),
            email: pii.decrypt(&i.client.email_enc, field(i.id, "client.email"))?,
            address: i
                .client
                .address_enc
                .as_deref()
                .map(|a| pii.decrypt(a, field(i.id, "client.address")))
                .transpose()?
                .unwrap_or_default(),
            country: i.client.country.clone(),
            vat_number: i.client.vat_number.clone(),
        },
        lines: i
            .lines
            .iter()
            .map(|l| LineView {
                description: l.description.clone(),
                quantity: l.quantity_milli as f64 / 1000.0,
                unit_price_minor: l.unit_price_minor,
                total_minor: l.total_minor,
            })
            .collect(),
        currency: i.currency.clone(),
        subtotal_minor: i.subtotal_minor,
        vat_rate_bp: i.vat_rate_bp,
        vat_minor: i.vat_minor,
        total_minor: i.total_minor,
        paid_minor: i.paid_minor,
        due_minor: i.total_minor - i.paid_minor,
        issue_date: day(i.issue_date),
        due_date: day(i.due_date),
        payment_terms: i.payment_terms.clone(),
        notes: i.notes.clone(),
        links: LinksBlock {
            contact_id: hex(i.links.contact_id),
            lead_id: hex(i.links.lead_id),
            opportunity_id: hex(i.links.opportunity_id),
            campaign_id: hex(i.links.campaign_id),
        },
        sent_at: i.sent_at.map(rfc),
        paid_at: i.paid_at.map(rfc),
        created_at: rfc(i.created_at),
    })
}

fn lines(input: &[LineInput]) -> Result<Vec<InvoiceLine>, ApiError> {
    if input.is_empty() || input.len() > 100 {
        return Err(ApiError::invalid("lines", "must hold 1 to 100 lines"));
    }
    input
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let q = quantity_milli(l.quantity).ok_or_else(|| {
                ApiError::invalid(format!("lines[{i}].quantity"), "must be > 0 and ≤ 1000000 with at most 3 decimals")
            })?;
            if l.unit_price_minor.abs() > 1_000_000_000_000 {
                return Err(ApiError::invalid(
                    format!("lines[{i}].unit_price_minor"),
                    "must be within ±10^12 minor units",
                ));
            }
            Ok(InvoiceLine {
                description: validate::text(&format!("lines[{i}].description"), &l.description, 1, 200)?,
                quantity_milli: q,
                unit_price_minor: l.unit_price_minor,
                total_minor: line_total(q, l.unit_price_minor),
            })
        })
        .collect()
}

fn vat_rate(v: i64) -> Result<i64, ApiError> {
    if (0..=10_000).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid("vat_rate_bp", "must be 0 to 10000 basis points"))
    }
}

/// Sets the totals of `inv` from its lines and rate; 400 when they are out of range.
fn compute(inv: &mut Invoice) -> Result<(), ApiError> {
    let t = money::totals(&inv.lines, inv.vat_rate_bp);
    if t.subtotal_minor < 0 {
        return Err(ApiError::invalid("lines", "the subtotal cannot be negative"));
    }
    if t.total_minor > MAX_TOTAL_MINOR || inv.lines.iter().any(|l| l.total_minor.abs() > MAX_TOTAL_MINOR) {
        return Err(ApiError::invalid("lines", "the total exceeds 10^15 minor units"));
    }
    inv.subtotal_minor = t.subtotal_minor;
    inv.vat_minor = t.vat_minor;
    inv.total_minor = t.total_minor;
    Ok(())
}

/// Where invoice `id`'s client `email` or `address` ciphertext is bound.
fn field(id: ObjectId, name: &'static str) -> Field<'static> {
    Field::new(collections::INVOICES, id, name)
}

fn client_block(st: &AppState, invoice: ObjectId, c: &ClientBlock) -> Result<InvoiceClient, ApiError> {
    let pii = st.pii()?;
    let mail = email("client.email", &c.email)?;
    let address = Some(validate::multiline("client.address", &c.address, 300)?).filter(|a| !a.is_empty());
    if !(c.country.is_empty() || validate::is_country(&c.country)) {
        return Err(ApiError::invalid("client.country", "must be an ISO 3166-1 alpha-2 code such as FR"));
    }
    Ok(InvoiceClient {
        name: validate::text("client.name", &c.name, 1, 100)?,
        company: validate::opt_text("client.company", Some(&c.company), 100)?.unwrap_or_default(),
        email_enc: pii.encrypt(&mail, field(invoice, "client.email"))?,
        email_index: pii.email_index(&mail),
        address_enc: address.map(|a| pii.encrypt(&a, field(invoice, "client.address"))).transpose()?,
        country: c.country.clone(),
        vat_number: validate::opt_text("client.vat_number", Some(&c.vat_number), 30)?.unwrap_or_default(),
    })
}

/// Checks that each linked record is the tenant's.
async fn links(st: &AppState, client_id: ObjectId, l: &LinksBlock) -> Result<InvoiceLinks, ApiError> {
    let mut out = InvoiceLinks::default();
    for (field, value, coll, slot) in [
        ("links.contact_id", &l.contact_id, collections::CONTACTS, &mut out.contact_id),
        ("links.lead_id", &l.lead_id, collections::LEADS, &mut out.lead_id),
        ("links.opportunity_id", &l.opportunity_id, collections::OPPORTUNITIES, &mut out.opportunity_id),
        ("links.campaign_id", &l.campaign_id, collections::CAMPAIGNS, &mut out.campaign_id),
    ] {
        if let Some(v) = value {
            let id = validate::object_id(field, v)?;
            if st.mongo.collection::<Document>(coll).count_documents(doc! { "_id": id, "clientId": client_id }).await?
                == 0
            {
                return Err(ApiError::unknown(field, "record"));
            }
            *slot = Some(id);
        }
    }
    Ok(out)
}

fn year_of(t: DateTime) -> i32 {
    day(t).get(..4).and_then(|y| y.parse().ok()).unwrap_or(1970)
}

/// Inserts `inv` under the next free number of its tenant and year.
async fn insert_numbered(st: &AppState, inv: &mut Invoice) -> Result<(), ApiError> {
    let invoices = st.mongo.collection::<Invoice>(collections::INVOICES);
    for attempt in 0..200u32 {
        let last = st
            .mongo
            .collection::<Document>(collections::INVOICES)
            .find_one(doc! { "clientId": inv.client_id, "year": inv.year })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "seq": 1 })
            .await?;
        inv.seq = last.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0) + 1;
        inv.number = money::number(inv.year, inv.seq);
        match invoices.insert_one(&*inv).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                st.metrics.retries.with_label_values(&["invoice_number"]).inc();
                // Another request took this number: back off a little and take the next.
                let jitter = u64::from(inv.id.timestamp().timestamp_millis() as u32 % 7) + u64::from(attempt.min(20));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable {
        store: "mongodb",
        detail: "could not claim an invoice number after 200 attempts".into(),
    })
}

/// Creates a DRAFT invoice with the next number of its tenant and year.
#[utoipa::path(post, path = "/v1/invoices", tag = "billing", request_body = InvoiceCreate,
    responses((status = 201, body = InvoiceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<InvoiceCreate>,
) -> Result<(StatusCode, Json<InvoiceView>), ApiError> {
    p.can(Resource::Billing, Action::Create)?;
    let tenant = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let now = DateTime::now();
    let issue_date = match &b.issue_date {
        Some(d) => validate::date("issue_date", d)?,
        None => validate::date("issue_date", &day(now))?,
    };
    let terms_days = b.payment_terms_days.unwrap_or(30);
    if !(0..=365).contains(&terms_days) {
        return Err(ApiError::invalid("payment_terms_days", "must be 0 to 365"));
    }
    let issuer = b.issuer.clone().unwrap_or_default();
    let id = ObjectId::new();
    let mut inv = Invoice {
        id,
        client_id: tenant.id,
        number: String::new(),
        year: year_of(issue_date),
        seq: 0,
        status: InvoiceStatus::Draft,
        issuer: Issuer {
            name: if issuer.name.trim().is_empty() {
                tenant.name.clone()
            } else {
                validate::text("issuer.name", &issuer.name, 1, 100)?
            },
            address: validate::multiline("issuer.address", &issuer.address, 300)?,
            vat_number: validate::opt_text("issuer.vat_number", Some(&issuer.vat_number), 30)?.unwrap_or_default(),
            bank_details: validate::multiline("issuer.bank_details", &issuer.bank_details, 300)?,
        },
        client: client_block(&st, id, &b.client)?,
        lines: lines(&b.lines)?,
        currency: currency(b.currency.as_deref())?,
        subtotal_minor: 0,
        vat_rate_bp: vat_rate(b.vat_rate_bp)?,
        vat_minor: 0,
        total_minor: 0,
        paid_minor: 0,
        applied_payments: Vec::new(),
        version: 0,
        issue_date,
        due_date: DateTime::from_millis(issue_date.timestamp_millis() + terms_days * 86_400_000),
        payment_terms: match &b.payment_terms {
            Some(t) => validate::text("payment_terms", t, 1, 300)?,
            None => format!("Payment due within {terms_days} days."),
        },
        notes: validate::multiline("notes", b.notes.as_deref().unwrap_or_default(), 1000)?,
        links: links(&st, tenant.id, &b.links).await?,
        sent_at: None,
        paid_at: None,
        cancelled_at: None,
        created_at: now,
        updated_at: now,
    };
    compute(&mut inv)?;
    insert_numbered(&st, &mut inv).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: tenant.id, action: "create", resource: "invoices", id: inv.id },
        None,
        Some(&inv),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&st, &inv)?)))
}

async fn load(st: &AppState, p: &Principal, id: &str) -> Result<Invoice, ApiError> {
    crate::store::load_owned(st, p, collections::INVOICES, "invoice", id, |d: &Invoice| d.client_id).await
}

/// Reads an invoice.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "billing", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, body = InvoiceView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<InvoiceView>, ApiError> {
    p.can(Resource::Billing, Action::Read)?;
    Ok(Json(view(&st, &load(&st, &p, &id).await?)?))
}

/// `GET /v1/invoices` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Year of the number.
    pub year: Option<i32>,
}

/// An invoice's statuses on the wire ([`InvoiceStatus`]'s serde names).
const STATUSES: [&str; 5] = ["DRAFT", "SENT", "PAID", "OVERDUE", "CANCELLED"];

/// Schema of an invoice status ([`STATUSES`]).
fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&STATUSES)
}

fn parse_status(field: &str, s: &str) -> Result<InvoiceStatus, ApiError> {
    validate::parse_enum(field, s, &format!("must be one of {}", STATUSES.join(", ")))
}

/// Lists invoices by number, newest first (at most 1000).
#[utoipa::path(get, path = "/v1/invoices", tag = "billing", params(InvoiceQuery),
    responses((status = 200, body = Vec<InvoiceView>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<InvoiceQuery>,
) -> Result<Json<Vec<InvoiceView>>, ApiError> {
    p.can(Resource::Billing, Action::Read)?;
    let tenant = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let mut f = doc! { "clientId": tenant.id };
    if let Some(s) = &q.status {
        f.insert("status", wire(&parse_status("status", s)?));
    }
    if let Some(y) = q.year {
        f.insert("year", y);
    }
    let rows: Vec<Invoice> = st
        .mongo
        .collection::<Invoice>(collections::INVOICES)
        .find(f)
        .sort(doc! { "year": -1, "seq": -1 })
        .limit(1000)
        .await?
        .try_collect()
        .await?;
    rows.iter().map(|i| view(&st, i)).collect::<Result<Vec<_>, _>>().map(Json)
}

/// Writes `new` over `old` if nobody changed it meanwhile (409 `conflict` otherwise) and audits it.
async fn save(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    action: &str,
    old: &Invoice,
    mut new: Invoice,
) -> Result<Invoice, ApiError> {
    new.version = old.version + 1;
    new.updated_at = DateTime::now();
    let r = st
        .mongo
        .collection::<Invoice>(collections::INVOICES)
        .replace_one(doc! { "_id": old.id, "version": old.version }, &new)
        .await?;
    if r.matched_count == 0 {
        return Err(ApiError::Conflict {
            code: "conflict",
            message: "the invoice changed meanwhile; read it again".into(),
        });
    }
    audit::changed(
        st,
        p,
        meta,
        Target { client_id: new.client_id, action, resource: "invoices", id: new.id },
        Some(old),
        Some(&new),
    )
    .await?;
    Ok(new)
}

fn transition(from: InvoiceStatus, to: InvoiceStatus, paid_minor: i64) -> Result<(), ApiError> {
    if !from.can_move_to(to) {
        return Err(ApiError::Conflict {
            code: "invalid_transition",
            message: format!("an invoice cannot go from {} to {}", wire(&from), wire(&to)),
        });
    }
    if to == InvoiceStatus::Cancelled && paid_minor != 0 {
        return Err(ApiError::Conflict {
            code: "invalid_transition",
            message: "refund the payments before cancelling".into(),
        });
    }
    Ok(())
}

/// Edits a DRAFT invoice or moves its status (`SENT`, `CANCELLED`).
/// 409 `invalid_transition`, 409 `not_draft` for content changes after DRAFT.
#[utoipa::path(patch, path = "/v1/invoices/{id}", tag = "billing", params(("id" = String, Path, description = "Invoice id")), request_body = InvoicePatch,
    responses((status = 200, body = InvoiceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<InvoicePatch>,
) -> Result<Json<InvoiceView>, ApiError> {
    p.can(Resource::Billing, Action::Update)?;
    // Lock first, then read: the read under the lock is the one that counts (a
    // malformed or foreign id still answers 404 from it).
    let oid = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("invoice"))?;
    let guard = crate::lock::invoice(&st, oid).await?;
    let r = patch_locked(&st, &p, &meta, &id, b).await;
    guard.release().await;
    r
}

async fn patch_locked(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    id: &str,
    b: InvoicePatch,
) -> Result<Json<InvoiceView>, ApiError> {
    let old = load(st, p, id).await?;
    let mut inv = old.clone();
    let content =
        b.lines.is_some() || b.vat_rate_bp.is_some() || b.client.is_some() || b.due_date.is_some() || b.notes.is_some();
    if content && old.status != InvoiceStatus::Draft {
        return Err(ApiError::Conflict { code: "not_draft", message: "only a DRAFT invoice can be edited".into() });
    }
    if let Some(l) = &b.lines {
        inv.lines = lines(l)?;
    }
    if let Some(v) = b.vat_rate_bp {
        inv.vat_rate_bp = vat_rate(v)?;
    }
    if let Some(c) = &b.client {
        inv.client = client_block(st, inv.id, c)?;
    }
    if let Some(d) = &b.due_date {
        inv.due_date = validate::date("due_date", d)?;
        if inv.due_date < inv.issue_date {
            return Err(ApiError::invalid("due_date", "must not be before the issue date"));
        }
    }
    if let Some(n) = &b.notes {
        inv.notes = validate::multiline("notes", n, 1000)?;
    }
    compute(&mut inv)?;
    let mut action = "update";
    if let Some(s) = &b.status {
        let to = parse_status("status", s)?;
        if to != old.status {
            transition(old.status, to, old.paid_minor)?;
            inv.status = to;
            let now = DateTime::now();
            match to {
                InvoiceStatus::Sent => {
                    inv.sent_at.get_or_insert(now);
                    action = "send";
                }
                InvoiceStatus::Cancelled => {
                    inv.cancelled_at = Some(now);
                    action = "cancel";
                }
                _ => {}
            }
        }
    }
    let inv = save(st, p, meta, action, &old, inv).await?;
    Ok(Json(view(st, &inv)?))
}

fn render(st: &AppState, inv: &Invoice) -> Result<Vec<u8>, ApiError> {
    let pii = st.pii()?;
    let mail = pii.decrypt(&inv.client.email_enc, field(inv.id, "client.email"))?;
    let address =
        inv.client.address_enc.as_deref().map(|a| pii.decrypt(a, field(inv.id, "client.address"))).transpose()?;
    Ok(super::pdf::invoice_pdf(inv, &mail, address.as_deref()))
}

/// The invoice as a PDF (`application/pdf`, `INV-YYYY-NNNNN.pdf`).
#[utoipa::path(get, path = "/v1/invoices/{id}/pdf", tag = "billing", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn pdf(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    p.can(Resource::Billing, Action::Read)?;
    let inv = load(&st, &p, &id).await?;
    let bytes = render(&st, &inv)?;
    let disposition = format!("attachment; filename=\"{}.pdf\"", inv.number);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/pdf")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// What `/send` did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// The invoice after sending.
    pub invoice: InvoiceView,
    /// Email log id.
    pub email_log_id: String,
}

/// Emails the invoice PDF to the client (DRAFT becomes SENT; a SENT,
/// OVERDUE or PAID invoice is sent again). 409 for a CANCELLED one.
#[utoipa::path(post, path = "/v1/invoices/{id}/send", tag = "billing", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, body = SendResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
pub async fn send(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<Json<SendResult>, ApiError> {
    p.can(Resource::Billing, Action::Update)?;
    // Lock first, then read: the read under the lock is the one that counts (a
    // malformed or foreign id still answers 404 from it).
    let oid = validate::object_id("id", &id).map_err(|_| ApiError::NotFound("invoice"))?;
    let guard = crate::lock::invoice(&st, oid).await?;
    let r = send_locked(&st, &p, &meta, &id).await;
    guard.release().await;
    r
}

async fn send_locked(st: &AppState, p: &Principal, meta: &Meta, id: &str) -> Result<Json<SendResult>, ApiError> {
    let old = load(st, p, id).await?;
    if old.status == InvoiceStatus::Cancelled {
        return Err(ApiError::Conflict {
            code: "invalid_transition",
            message: "a cancelled invoice is not sent".into(),
        });
    }
    let mut inv = old.clone();
    if inv.status == InvoiceStatus::Draft {
        inv.status = InvoiceStatus::Sent;
        inv.sent_at = Some(DateTime::now());
    }
    let bytes = render(st, &inv)?;
    let to = st.pii()?.decrypt(&inv.client.email_enc, field(inv.id, "client.email"))?;
    let text = format!(
        "Hello {},\n\nplease find attached invoice {} of {} for {}, due on {}.\n\n{}\n\n{}\n",
        inv.client.name,
        inv.number,
        inv.issuer.name,
        money::format_amount(inv.total_minor - inv.paid_minor, &inv.currency),
        day(inv.due_date),
        inv.payment_terms,
        inv.issuer.name
    );
    let m = Outgoing {
        client_id: inv.client_id,
        to,
        subject: format!("Invoice {} from {}", inv.number, inv.issuer.name),
        template: "invoice",
        text,
        attachments: vec![MailAttachment {
            name: format!("{}.pdf", inv.number),
            content_type: "application/pdf".into(),
            bytes,
        }],
        related: Some(("invoice", inv.id)),
    };
    let log = st.send_mail(m).await?;
    let inv = if inv.status != old.status { save(st, p, meta, "send", &old, inv).await? } else { inv };
    Ok(Json(SendResult { invoice: view(st, &inv)?, email_log_id: log.id.to_hex() }))
}

/// `POST /v1/invoices/{id}/payments` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentCreate {
    /// `PAYMENT` (default) or `REFUND`.
    #[serde(default)]
    #[schema(schema_with = payment_kind_schema)]
    pub kind: Option<String>,
    /// Amount, minor units, 1..=10^15.
    #[schema(minimum = 1, maximum = 1000000000000000i64)]
    pub amount_minor: i64,
    /// `CARD`, `BANK_TRANSFER`, `CASH`, `CHECK`, `OTHER`.
    #[schema(schema_with = method_schema)]
    pub method: String,
    /// Provider (`monetico`, `stripe`...), 0..=50.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_50)]
    pub provider: Option<String>,
    /// The provider's reference, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub provider_reference: Option<String>,
}

/// A payment as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// Payment id.
    pub id: String,
    /// Invoice.
    pub invoice_id: String,
    /// `PAYMENT` or `REFUND`.
    pub kind: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Method.
    pub method: String,
    /// Provider.
    pub provider: String,
    /// Provider reference.
    pub provider_reference: String,
    /// `PENDING`, `COMPLETED`, `FAILED`.
    pub status: String,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// Recorded, RFC 3339.
    pub created_at: String,
}

/// A recorded payment and its invoice afterwards.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentResult {
    /// The payment.
    pub payment: PaymentView,
    /// The invoice after it.
    pub invoice: InvoiceView,
}

/// A payment or refund as the API shows it.
pub fn payment_view(pm: &Payment) -> PaymentView {
    PaymentView {
        id: pm.id.to_hex(),
        invoice_id: pm.invoice_id.to_hex(),
        kind: wire(&pm.kind),
        amount_minor: pm.amount_minor,
        currency: pm.currency.clone(),
        method: pm.method.clone(),
        provider: pm.provider.clone(),
        provider_reference: pm.provider_reference.clone(),
        status: wire(&pm.status),
        failure_reason: pm.failure_reason.clone(),
        idempotency_key: pm.idempotency_key.clone(),
        created_at: rfc(pm.created_at),
    }
}

const METHODS: [&str; 5] = ["CARD", "BANK_TRANSFER", "CASH", "CHECK", "OTHER"];

/// Schema of [`PaymentCreate::method`] ([`METHODS`]).
fn method_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&METHODS)
}

/// A payment's kinds on the wire.
const PAYMENT_KINDS: [&str; 2] = ["PAYMENT", "REFUND"];

/// Schema of [`PaymentCreate::kind`] ([`PAYMENT_KINDS`]).
fn payment_kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&PAYMENT_KINDS)
}

/// Applies `pm` to its invoice once, under the invoice's lock; marks it
/// COMPLETED or FAILED.
async fn apply(st: &AppState, p: &Principal, meta: &Meta, pm: &mut Payment) -> Result<Invoice, ApiError> {
    let guard = crate::lock::invoice(st, pm.invoice_id).await?;
    // Another request may have finished this payment while we waited.
    if let Some(current) = st.mongo.collection::<Payment>(collections::PAYMENTS).find_one(doc! { "_id": pm.id }).await?
    {
        *pm = current;
    }
    let r = apply_locked(st, p, meta, pm).await;
    guard.release().await;
    r
}

async fn apply_locked(st: &AppState, p: &Principal, meta: &Meta, pm: &mut Payment) -> Result<Invoice, ApiError> {
    let payments = st.mongo.collection::<Payment>(collections::PAYMENTS);
    for _ in 0..50 {
        let old = st
            .mongo
            .collection::<Invoice>(collections::INVOICES)
            .find_one(doc! { "_id": pm.invoice_id })
            .await?
            .ok_or(ApiError::NotFound("invoice"))?;
        if old.applied_payments.contains(&pm.id) || pm.status != PaymentStatus::Pending {
            if pm.status == PaymentStatus::Pending {
                pm.status = PaymentStatus::Completed;
                pm.completed_at = Some(DateTime::now());
                payments
                    .update_one(
                        doc! { "_id": pm.id },
                        doc! { "$set": { "status": "COMPLETED", "completedAt": pm.completed_at } },
                    )
                    .await?;
            }
            return Ok(old);
        }
        let refusal = match pm.kind {
            PaymentKind::Payment if !matches!(old.status, InvoiceStatus::Sent | InvoiceStatus::Overdue) => {
                Some(format!("invoice_not_payable: the invoice is {}", wire(&old.status)))
            }
            PaymentKind::Payment if pm.amount_minor > old.total_minor - old.paid_minor => {
                Some(format!("overpayment: {} due, {} offered", old.total_minor - old.paid_minor, pm.amount_minor))
            }
            PaymentKind::Refund if pm.amount_minor > old.paid_minor => {
                Some(format!("overrefund: {} paid, {} refunded", old.paid_minor, pm.amount_minor))
            }
            _ => None,
        };
        if let Some(reason) = refusal {
            pm.status = PaymentStatus::Failed;
            pm.failure_reason = Some(reason.clone());
            payments
                .update_one(doc! { "_id": pm.id }, doc! { "$set": { "status": "FAILED", "failureReason": &reason } })
                .await?;
            st.metrics.payments_refused.with_label_values(&[reason.split(':').next().unwrap_or("other")]).inc();
            return Ok(old);
        }
        let mut inv = old.clone();
        let now = DateTime::now();
        inv.paid_minor += if pm.kind == PaymentKind::Payment { pm.amount_minor } else { -pm.amount_minor };
        inv.applied_payments.push(pm.id);
        if inv.paid_minor == inv.total_minor {
            inv.status = InvoiceStatus::Paid;
            inv.paid_at = Some(now);
        } else if old.status == InvoiceStatus::Paid {
            inv.status = if inv.due_date < now { InvoiceStatus::Overdue } else { InvoiceStatus::Sent };
            inv.paid_at = None;
        }
        inv.version = old.version + 1;
        inv.updated_at = now;
        let r = st
            .mongo
            .collection::<Invoice>(collections::INVOICES)
            .replace_one(doc! { "_id": old.id, "version": old.version }, &inv)
            .await?;
        if r.matched_count == 0 {
            st.metrics.retries.with_label_values(&["invoice_version"]).inc();
            continue;
        }
        pm.status = PaymentStatus::Completed;
        pm.completed_at = Some(now);
        payments
            .update_one(doc! { "_id": pm.id }, doc! { "$set": { "status": "COMPLETED", "completedAt": now } })
            .await?;
        let action = if pm.kind == PaymentKind::Payment { "payment" } else { "refund" };
        audit::changed(
            st,
            p,
            meta,
            Target { client_id: inv.client_id, action, resource: "invoices", id: inv.id },
            Some(&old),
            Some(&inv),
        )
        .await?;
        return Ok(inv);
    }
    Err(ApiError::Unavailable {
        store: "mongodb",
        detail: "the invoice kept changing; retry with the same Idempotency-Key".into(),
    })
}

/// Records a payment or refund. Requires `Idempotency-Key` (1..=100
/// printable ASCII): a retry with the same key and body answers the same
/// payment without recording another (`Idempotent-Replayed: true`).
/// 409 `overpayment`, `overrefund`, `invoice_not_payable`,
/// `idempotency_key_reused`.
#[utoipa::path(post, path = "/v1/invoices/{id}/payments", tag = "billing", params(("id" = String, Path, description = "Invoice id"),
        ("Idempotency-Key" = String, Header, description = "Unique per payment request (1 to 100 printable ASCII characters); retries reuse it",
            min_length = 1, max_length = 100, pattern = "^[!-~]+$")), request_body = PaymentCreate,
    responses((status = 201, body = PaymentResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn record_payment(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<PaymentCreate>,
) -> Result<Response, ApiError> {
    p.can(Resource::Billing, Action::Create)?;
    let key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default().to_string();
    if key.is_empty() || key.len() > 100 || !key.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid("Idempotency-Key", "header required: 1 to 100 printable ASCII characters"));
    }
    let inv = load(&st, &p, &id).await?;
    let kind = match b.kind.as_deref().unwrap_or("PAYMENT") {
        "PAYMENT" => PaymentKind::Payment,
        "REFUND" => PaymentKind::Refund,
        _ => return Err(ApiError::invalid("kind", "must be PAYMENT or REFUND")),
    };
    if b.amount_minor <= 0 || b.amount_minor > MAX_TOTAL_MINOR {
        return Err(ApiError::invalid("amount_minor", "must be > 0 and ≤ 10^15"));
    }
    if !METHODS.contains(&b.method.as_str()) {
        return Err(ApiError::invalid("method", format!("must be one of {}", METHODS.join(", "))));
    }
    let provider = validate::opt_text("provider", b.provider.as_deref(), 50)?.unwrap_or_default();
    let reference = validate::opt_text("provider_reference", b.provider_reference.as_deref(), 100)?.unwrap_or_default();
    let request_hash = hex::encode(Sha256::digest(format!(
        "{}|{:?}|{}|{}|{}|{}",
        inv.id, kind, b.amount_minor, b.method, provider, reference
    )));
    let payments = st.mongo.collection::<Payment>(collections::PAYMENTS);
    let existing = payments.find_one(doc! { "clientId": inv.client_id, "idempotencyKey": &key }).await?;
    let (mut pm, replayed) = match existing {
        Some(pm) => (pm, true),
        None => {
            let pm = Payment {
                id: ObjectId::new(),
                client_id: inv.client_id,
                invoice_id: inv.id,
                kind,
                amount_minor: b.amount_minor,
                currency: inv.currency.clone(),
                method: b.method.clone(),
                provider,
                provider_reference: reference,
                status: PaymentStatus::Pending,
                failure_reason: None,
                idempotency_key: key.clone(),
                request_hash: request_hash.clone(),
                created_at: DateTime::now(),
                completed_at: None,
            };
            match payments.insert_one(&pm).await {
                Ok(_) => (pm, false),
                Err(e) if is_duplicate_key(&e) => (
                    payments
                        .find_one(doc! { "clientId": inv.client_id, "idempotencyKey": &key })
                        .await?
                        .ok_or(ApiError::NotFound("payment"))?,
                    true,
                ),
                Err(e) => return Err(e.into()),
            }
        }
    };
    if pm.request_hash != request_hash {
        return Err(ApiError::Conflict {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used for another payment request".into(),
        });
    }
    let inv = apply(&st, &p, &meta, &mut pm).await?;
    if !replayed {
        audit::changed(
            &st,
            &p,
            &meta,
            Target { client_id: pm.client_id, action: "create", resource: "payments", id: pm.id },
            None,
            Some(&pm),
        )
        .await?;
    }
    if let Some(reason) = &pm.failure_reason {
        let code = match reason.split(':').next() {
            Some("overpayment") => "overpayment",
            Some("overrefund") => "overrefund",
            _ => "invoice_not_payable",
        };
        return Err(ApiError::Conflict { code, message: reason.clone() });
    }
    let body = PaymentResult { payment: payment_view(&pm), invoice: view(&st, &inv)? };
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The payments and refunds of an invoice, oldest first.
#[utoipa::path(get, path = "/v1/invoices/{id}/payments", tag = "billing", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, body = Vec<PaymentView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_payments(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PaymentView>>, ApiError> {
    p.can(Resource::Billing, Action::Read)?;
    let inv = load(&st, &p, &id).await?;
    let rows: Vec<Payment> = st
        .mongo
        .collection::<Payment>(collections::PAYMENTS)
        .find(doc! { "invoiceId": inv.id })
        .sort(doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    Ok(Json(rows.iter().map(payment_view).collect()))
}

/// Marks every SENT invoice of `tenant` (all tenants when `None`) whose due
/// date is before `now` OVERDUE, each audited; returns how many.
pub async fn sweep_overdue(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    tenant: Option<ObjectId>,
    now: DateTime,
) -> Result<u64, ApiError> {
    let mut f = doc! { "status": "SENT", "dueDate": { "$lt": now } };
    if let Some(t) = tenant {
        f.insert("clientId", t);
    }
    let due: Vec<Invoice> = st.mongo.collection::<Invoice>(collections::INVOICES).find(f).await?.try_collect().await?;
    let mut n = 0;
    for candidate in due {
        let guard = crate::lock::invoice(st, candidate.id).await?;
        let result = async {
            let old = st
                .mongo
                .collection::<Invoice>(collections::INVOICES)
                .find_one(doc! { "_id": candidate.id })
                .await?
                .ok_or(ApiError::NotFound("invoice"))?;
            if old.status != InvoiceStatus::Sent || old.due_date >= now {
                return Err(ApiError::Conflict { code: "conflict", message: "changed meanwhile".into() });
            }
            let mut inv = old.clone();
            inv.status = InvoiceStatus::Overdue;
            save(st, p, meta, "overdue", &old, inv).await
        }
        .await;
        guard.release().await;
        match result {
            Ok(_) => n += 1,
            Err(ApiError::Conflict { .. }) => {} // paid or changed meanwhile: the next sweep looks again
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What a sweep did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SweepResult {
    /// Invoices marked OVERDUE.
    pub marked_overdue: u64,
}

/// Marks the caller's SENT invoices past their due date OVERDUE now (the
/// API also sweeps every `API_OVERDUE_SWEEP_SECS`).
#[utoipa::path(post, path = "/v1/invoices/overdue-sweep", tag = "billing", params(crate::tenants::ClientScope),
    responses((status = 200, body = SweepResult), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn overdue_sweep(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Tenant(tenant): Tenant,
) -> Result<Json<SweepResult>, ApiError> {
    p.can(Resource::Billing, Action::Update)?;
    Ok(Json(SweepResult { marked_overdue: sweep_overdue(&st, &p, &meta, Some(tenant.id), DateTime::now()).await? }))
}
