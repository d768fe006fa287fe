//! Conversion of a lead into a contact and an opportunity. Resumable
//! without transactions (FerretDB has none): the lead first reserves the
//! ids of both, so a retry after a failure finishes the same conversion.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime, Document};
use schemas::crm::{Contact, Conversion, Lead, LeadStage, Opportunity, OpportunityStage};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::percent;
use super::leads::{lead_view, load_lead, LeadView};
use super::opportunities::{opportunity_view, OpportunityView};
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Path};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::validate::money;
use crate::validate::{self};

/// `POST /v1/leads/{id}/convert` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertRequest {
    /// Opportunity title, default "{artist} deal".
    #[serde(default)]
    pub title: Option<String>,
    /// Deal value, minor units; default the lead's budget (or 0).
    #[serde(default)]
    pub value_minor: Option<i64>,
    /// Probability, 0..=100 (default the lead's).
    #[serde(default)]
    pub probability: Option<i64>,
}

/// The result of a conversion.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversionView {
    /// The lead, now `won`.
    pub lead: LeadView,
    /// The contact (created, or the tenant's existing one with the same email).
    pub contact: super::contacts::ContactView,
    /// The opportunity opened.
    pub opportunity: OpportunityView,
}

/// Converts a lead into a contact and an opportunity.
///
/// Atomic from the caller's point of view without multi-document
/// transactions (FerretDB has none): the lead first records the ids it will
/// use (`conversion.startedAt`, only if no conversion started), then the
/// contact and opportunity are upserted under those ids, then the lead is
/// marked `won` with `conversion.completedAt`. A retry after a failure
/// resumes with the same ids, so nothing is created twice; the lead shows
/// its contact and opportunity only once all three writes are done. 409
/// `already_converted` when it was.
#[utoipa::path(post, path = "/v1/leads/{id}/convert", tag = "crm", params(("id" = String, Path, description = "Lead id")), request_body = ConvertRequest,
    responses((status = 201, body = ConversionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn convert(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<ConvertRequest>,
) -> Result<(StatusCode, Json<ConversionView>), ApiError> {
    p.can(Resource::Leads, Action::Update)?;
    p.can(Resource::Contacts, Action::Create)?;
    p.can(Resource::Opportunities, Action::Create)?;
    crate::lock::lead(&st, &id, || convert_locked(&st, &p, &meta, &id, b)).await
}

/// [`convert`] under the lead's lock.
async fn convert_locked(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    id: &str,
    b: ConvertRequest,
) -> Result<(StatusCode, Json<ConversionView>), ApiError> {
    let pii = st.pii()?;
    let old = load_lead(st, p, id).await?;
    if old.conversion.as_ref().is_some_and(|c| c.completed_at.is_some()) {
        return Err(ApiError::Conflict { code: "already_converted", message: "this lead was converted".into() });
    }
    if old.pipeline.stage == LeadStage::Lost {
        return Err(ApiError::invalid("stage", "a lost lead must be reopened before conversion"));
    }
    let value_minor = money("value_minor", b.value_minor.or(old.business.budget_minor))?.unwrap_or(0);
    let probability = percent("probability", b.probability, old.pipeline.probability)?;
    let title = match &b.title {
        Some(t) => validate::text("title", t, 1, 200)?,
        None => format!("{} deal", old.artist.name),
    };
    let leads = st.mongo.collection::<Lead>(collections::LEADS);
    let contacts = st.mongo.collection::<Contact>(collections::CONTACTS);
    let now = DateTime::now();
    // 1. Reserve the ids (or resume a started conversion).
    let conversion = match &old.conversion {
        Some(c) => c.clone(),
        None => {
            let existing =
                contacts.find_one(doc! { "clientId": old.client_id, "emailIndex": &old.personal.email_index }).await?;
            let c = Conversion {
                contact_id: existing.map_or_else(ObjectId::new, |c| c.id),
                opportunity_id: ObjectId::new(),
                started_at: now,
                completed_at: None,
            };
            let r = leads
                .update_one(doc! { "_id": old.id, "conversion": { "$exists": false } }, doc! { "$set": { "conversion": bson::to_bson(&c).map_err(|e| ApiError::Unavailable { store: "mongodb", detail: e.to_string() })? } })
                .await?;
            if r.modified_count == 0 {
                // Another request started it: resume with its ids.
                load_lead(st, p, id).await?.conversion.ok_or(ApiError::NotFound("lead"))?
            } else {
                c
            }
        }
    };
    // 2. The contact (kept if it exists) and the opportunity, under the reserved ids.
    let contact = match contacts.find_one(doc! { "_id": conversion.contact_id }).await? {
        Some(c) => c,
        None => {
            let c = Contact {
                id: conversion.contact_id,
                client_id: old.client_id,
                person: super::person::rebind(
                    pii,
                    &old.personal,
                    super::leads::owner(old.id),
                    super::contacts::owner(conversion.contact_id),
                )?,
                company: old.artist.name.clone(),
                tags: old.pipeline.tags.clone(),
                source_lead_id: Some(old.id),
                assigned_to: old.assignment.assigned_to,
                custom_fields: Document::new(),
                created_at: now,
                updated_at: now,
            };
            contacts.replace_one(doc! { "_id": c.id }, &c).upsert(true).await?;
            audit::changed(
                st,
                p,
                meta,
                Target { client_id: c.client_id, action: "create", resource: "contacts", id: c.id },
                None,
                Some(&c),
            )
            .await?;
            c
        }
    };
    let opportunities = st.mongo.collection::<Opportunity>(collections::OPPORTUNITIES);
    let opportunity = match opportunities.find_one(doc! { "_id": conversion.opportunity_id }).await? {
        Some(o) => o,
        None => {
            let o = Opportunity {
                id: conversion.opportunity_id,
                client_id: old.client_id,
                title,
                contact_id: contact.id,
                lead_id: Some(old.id),
                value_minor,
                currency: old.business.currency.clone(),
                stage: OpportunityStage::InitialInterest,
                probability,
                assigned_to: old.assignment.assigned_to,
                created_at: now,
                updated_at: now,
            };
            opportunities.replace_one(doc! { "_id": o.id }, &o).upsert(true).await?;
            audit::changed(
                st,
                p,
                meta,
                Target { client_id: o.client_id, action: "create", resource: "opportunities", id: o.id },
                None,
                Some(&o),
            )
            .await?;
            o
        }
    };
    // 3. The lead, won.
    let mut lead = load_lead(st, p, id).await?;
    let before = lead.clone();
    lead.pipeline.stage = LeadStage::Won;
    lead.pipeline.probability = 100;
    lead.conversion = Some(Conversion { completed_at: Some(DateTime::now()), ..conversion });
    lead.updated_at = DateTime::now();
    leads.replace_one(doc! { "_id": lead.id }, &lead).await?;
    audit::changed(
        st,
        p,
        meta,
        Target { client_id: lead.client_id, action: "convert", resource: "leads", id: lead.id },
        Some(&before),
        Some(&lead),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConversionView {
            lead: lead_view(pii, &lead)?,
            contact: super::contacts::contact_view(pii, &contact)?,
            opportunity: opportunity_view(&opportunity),
        }),
    ))
}
