//! CRM contacts (issue #6, seed 003 `contacts`): made by lead conversion
//! or created directly; email, phone and address encrypted at rest, email
//! unique per tenant through its blind index; custom fields from the CRM
//! settings. Every change is audited with its diff.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use schemas::crm::Contact;
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{custom_json, tags};
use super::person::{self, Address, PersonInput, PersonView};
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{is_duplicate_key, ApiError, ErrorBody};
use crate::extract::{Body, Path};
use crate::identity::assignee;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::ClientScope;
use crate::tenants::Tenant;
use crate::validate;
use crate::validate::hex;
use crypto::Pii;

/// A contact as the API shows it (personal data decrypted).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactView {
    /// Contact id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// Names, email, phone and address.
    #[serde(flatten)]
    pub person: PersonView,
    /// Company or artist.
    pub company: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Lead it came from.
    pub source_lead_id: Option<String>,
    /// Assignee.
    pub assigned_to: Option<String>,
    /// Custom field values by key.
    #[schema(value_type = Object)]
    pub custom_fields: serde_json::Value,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// `POST /v1/contacts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactCreate {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// First name, 1..=50.
    #[schema(schema_with = crate::openapi::text_50)]
    pub first_name: String,
    /// Last name, 1..=50.
    #[schema(schema_with = crate::openapi::text_50)]
    pub last_name: String,
    /// Email; unique among the tenant's contacts.
    pub email: String,
    /// Phone, E.164.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::phone)]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(default)]
    pub address: Option<Address>,
    /// Company or artist, 0..=100.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub company: Option<String>,
    /// Tags, at most 20 of 1..=30 characters.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Vec<String>,
    /// Assignee: a user of the tenant.
    #[serde(default)]
    pub assigned_to: Option<String>,
    /// Values of the tenant's contact custom fields, by key.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
}

/// `PATCH /v1/contacts/{id}` body; present fields replace (`""` clears
/// phone, `null` a custom field).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// First name.
    #[schema(schema_with = crate::openapi::text_50)]
    pub first_name: Option<String>,
    /// Last name.
    #[schema(schema_with = crate::openapi::text_50)]
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone, E.164 (`""` clears it).
    #[schema(schema_with = crate::openapi::phone_or_empty)]
    pub phone: Option<String>,
    /// Address.
    pub address: Option<Address>,
    /// Company, 0..=100.
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub company: Option<String>,
    /// Tags, at most 20 of 1..=30 characters.
    #[schema(schema_with = crate::openapi::tags)]
    pub tags: Option<Vec<String>>,
    /// Assignee (empty string unassigns).
    pub assigned_to: Option<String>,
    /// Custom field values to set.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
}

/// Where contact `id`'s personal data is bound.
pub fn owner(id: ObjectId) -> person::Owner<'static> {
    person::Owner { collection: collections::CONTACTS, id }
}

/// `c` with its personal data decrypted.
pub fn contact_view(pii: &Pii, c: &Contact) -> Result<ContactView, ApiError> {
    Ok(ContactView {
        id: c.id.to_hex(),
        client_id: c.client_id.to_hex(),
        person: person::view(pii, owner(c.id), &c.person)?,
        company: c.company.clone(),
        tags: c.tags.clone(),
        source_lead_id: hex(c.source_lead_id),
        assigned_to: hex(c.assigned_to),
        custom_fields: custom_json(&c.custom_fields),
        created_at: validate::rfc(c.created_at),
        updated_at: validate::rfc(c.updated_at),
    })
}

fn email_taken() -> ApiError {
    ApiError::Conflict { code: "email_taken", message: "the tenant already has a contact with this email".into() }
}

/// Writes `c` (insert or replace); a second contact with the email is 409 `email_taken`.
async fn save(st: &AppState, c: &Contact, insert: bool) -> Result<(), ApiError> {
    let contacts = st.mongo.collection::<Contact>(collections::CONTACTS);
    if !insert {
        // FerretDB reports unique violations on update as internal errors: check first.
        if contacts
            .find_one(doc! { "clientId": c.client_id, "emailIndex": &c.person.email_index, "_id": { "$ne": c.id } })
            .await?
            .is_some()
        {
            return Err(email_taken());
        }
    }
    let r = if insert {
        contacts.insert_one(c).await.map(|_| ())
    } else {
        contacts.replace_one(doc! { "_id": c.id, "clientId": c.client_id }, c).await.map(|_| ())
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Err(email_taken()),
        Err(e) => Err(e.into()),
    }
}

/// Creates a contact. 409 `email_taken` when the tenant has one with this email.
#[utoipa::path(post, path = "/v1/contacts", tag = "crm", request_body = ContactCreate,
    responses((status = 201, body = ContactView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<ContactCreate>,
) -> Result<(StatusCode, Json<ContactView>), ApiError> {
    p.can(Resource::Contacts, Action::Create)?;
    let client = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let pii = st.pii()?;
    let settings = super::settings::load(&st, client.id).await?;
    let now = DateTime::now();
    let id = ObjectId::new();
    let c = Contact {
        id,
        client_id: client.id,
        person: person::create(
            pii,
            owner(id),
            PersonInput {
                first_name: Some(&b.first_name),
                last_name: Some(&b.last_name),
                email: Some(&b.email),
                phone: b.phone.as_deref(),
                address: b.address.as_ref(),
            },
        )?,
        company: validate::opt_text("company", b.company.as_deref(), 100)?.unwrap_or_default(),
        tags: tags("tags", &b.tags)?,
        source_lead_id: None,
        assigned_to: match b.assigned_to.as_deref() {
            Some(a) => assignee(&st, client.id, a).await?,
            None => None,
        },
        custom_fields: super::settings::custom_values(&settings, "contact", &b.custom_fields, &Document::new(), true)?,
        created_at: now,
        updated_at: now,
    };
    save(&st, &c, true).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: client.id, action: "create", resource: "contacts", id: c.id },
        None,
        Some(&c),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(contact_view(pii, &c)?)))
}

async fn load_contact(st: &AppState, p: &Principal, id: &str) -> Result<Contact, ApiError> {
    crate::store::load_owned(st, p, collections::CONTACTS, "contact", id, |d: &Contact| d.client_id).await
}

/// Reads a contact.
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "crm", params(("id" = String, Path, description = "Contact id")),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ContactView>, ApiError> {
    p.can(Resource::Contacts, Action::Read)?;
    let c = load_contact(&st, &p, &id).await?;
    Ok(Json(contact_view(st.pii()?, &c)?))
}

/// Changes a contact.
#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "crm", params(("id" = String, Path, description = "Contact id")), request_body = ContactPatch,
    responses((status = 200, body = ContactView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<ContactPatch>,
) -> Result<Json<ContactView>, ApiError> {
    p.can(Resource::Contacts, Action::Update)?;
    let pii = st.pii()?;
    let old = load_contact(&st, &p, &id).await?;
    let mut c = old.clone();
    person::patch(
        pii,
        owner(c.id),
        &mut c.person,
        PersonInput {
            first_name: b.first_name.as_deref(),
            last_name: b.last_name.as_deref(),
            email: b.email.as_deref(),
            phone: b.phone.as_deref(),
            address: b.address.as_ref(),
        },
    )?;
    if let Some(v) = &b.company {
        c.company = validate::opt_text("company", Some(v), 100)?.unwrap_or_default();
    }
    if let Some(t) = &b.tags {
        c.tags = tags("tags", t)?;
    }
    if let Some(a) = &b.assigned_to {
        c.assigned_to = assignee(&st, c.client_id, a).await?;
    }
    if !b.custom_fields.is_empty() {
        let settings = super::settings::load(&st, c.client_id).await?;
        c.custom_fields =
            super::settings::custom_values(&settings, "contact", &b.custom_fields, &c.custom_fields, false)?;
    }
    c.updated_at = DateTime::now();
    save(&st, &c, false).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: c.client_id, action: "update", resource: "contacts", id: c.id },
        Some(&old),
        Some(&c),
    )
    .await?;
    Ok(Json(contact_view(pii, &c)?))
}

/// Deletes a contact (managers and admins). 409 `contact_in_use` while an
/// opportunity refers to it.
#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "crm", params(("id" = String, Path, description = "Contact id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.can(Resource::Contacts, Action::Delete)?;
    let c = load_contact(&st, &p, &id).await?;
    let used = st
        .mongo
        .collection::<Document>(collections::OPPORTUNITIES)
        .count_documents(doc! { "clientId": c.client_id, "contactId": c.id })
        .await?;
    if used > 0 {
        return Err(ApiError::Conflict {
            code: "contact_in_use",
            message: format!("{used} opportunities refer to this contact"),
        });
    }
    st.mongo
        .collection::<Contact>(collections::CONTACTS)
        .delete_one(doc! { "_id": c.id, "clientId": c.client_id })
        .await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: c.client_id, action: "delete", resource: "contacts", id: c.id },
        Some(&c),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the tenant's contacts, newest first (at most 500).
#[utoipa::path(get, path = "/v1/contacts", tag = "crm", params(ClientScope),
    responses((status = 200, body = Vec<ContactView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<Vec<ContactView>>, ApiError> {
    p.can(Resource::Contacts, Action::Read)?;
    let pii = st.pii()?;
    let rows: Vec<Contact> = st
        .mongo
        .collection::<Contact>(collections::CONTACTS)
        .find(doc! { "clientId": client.id })
        .sort(doc! { "_id": -1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    rows.iter().map(|c| contact_view(pii, c)).collect::<Result<Vec<_>, _>>().map(Json)
}
