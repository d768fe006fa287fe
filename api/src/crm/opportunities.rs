//! Opportunities (seed 003: 8 stages plus `LOST`), created by a lead's
//! conversion, listed and moved through their stages.

use axum::extract::State;
use axum::{Extension, Json};
use bson::{doc, DateTime};
use futures::TryStreamExt;
use schemas::crm::{Opportunity, OpportunityStage};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::percent;
use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Path};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, wire};
use crate::validate::{hex, money};

/// An opportunity as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpportunityView {
    /// Opportunity id.
    pub id: String,
    /// Tenant.
    pub client_id: String,
    /// Title.
    pub title: String,
    /// Contact.
    pub contact_id: String,
    /// Lead it came from.
    pub lead_id: Option<String>,
    /// Value, minor units.
    pub value_minor: i64,
    /// Currency.
    pub currency: String,
    /// Stage (`INITIAL_INTEREST` … `WON`, `LOST`).
    pub stage: String,
    /// Probability.
    pub probability: i64,
    /// Whether closed (`WON` or `LOST`).
    pub is_closed: bool,
    /// Whether won.
    pub is_won: bool,
    /// Assignee.
    pub assigned_to: Option<String>,
}

/// `o` as the API shows it.
pub fn opportunity_view(o: &Opportunity) -> OpportunityView {
    OpportunityView {
        id: o.id.to_hex(),
        client_id: o.client_id.to_hex(),
        title: o.title.clone(),
        contact_id: o.contact_id.to_hex(),
        lead_id: hex(o.lead_id),
        value_minor: o.value_minor,
        currency: o.currency.clone(),
        stage: wire(&o.stage),
        probability: o.probability,
        is_closed: matches!(o.stage, OpportunityStage::Won | OpportunityStage::Lost),
        is_won: o.stage == OpportunityStage::Won,
        assigned_to: hex(o.assigned_to),
    }
}

async fn load_opportunity(st: &AppState, p: &Principal, id: &str) -> Result<Opportunity, ApiError> {
    crate::store::load_owned(st, p, collections::OPPORTUNITIES, "opportunity", id, |d: &Opportunity| d.client_id).await
}

/// Lists the tenant's opportunities, newest first (at most 500).
#[utoipa::path(get, path = "/v1/opportunities", tag = "crm", params(crate::tenants::ClientScope),
    responses((status = 200, body = Vec<OpportunityView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_opportunities(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<Vec<OpportunityView>>, ApiError> {
    p.can(Resource::Opportunities, Action::Read)?;
    let rows: Vec<Opportunity> = st
        .mongo
        .collection::<Opportunity>(collections::OPPORTUNITIES)
        .find(doc! { "clientId": client.id })
        .sort(doc! { "_id": -1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    Ok(Json(rows.iter().map(opportunity_view).collect()))
}

/// `PATCH /v1/opportunities/{id}` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpportunityPatch {
    /// Stage; a closed one (`WON`, `LOST`) is final.
    pub stage: Option<String>,
    /// Probability, 0..=100.
    pub probability: Option<i64>,
    /// Value, minor units.
    pub value_minor: Option<i64>,
    /// Title.
    pub title: Option<String>,
}

/// Moves or edits an opportunity.
#[utoipa::path(patch, path = "/v1/opportunities/{id}", tag = "crm", params(("id" = String, Path, description = "Opportunity id")), request_body = OpportunityPatch,
    responses((status = 200, body = OpportunityView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn patch_opportunity(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<OpportunityPatch>,
) -> Result<Json<OpportunityView>, ApiError> {
    p.can(Resource::Opportunities, Action::Update)?;
    let old = load_opportunity(&st, &p, &id).await?;
    let mut o = old.clone();
    if let Some(s) = &b.stage {
        let to: OpportunityStage = validate::parse_enum("stage", s, "unknown stage")?;
        if matches!(o.stage, OpportunityStage::Won | OpportunityStage::Lost) && to != o.stage {
            return Err(ApiError::invalid("stage", "a closed opportunity cannot move"));
        }
        o.stage = to;
        if to == OpportunityStage::Won {
            o.probability = 100;
        } else if to == OpportunityStage::Lost {
            o.probability = 0;
        }
    }
    if b.probability.is_some() {
        o.probability = percent("probability", b.probability, o.probability)?;
    }
    if b.value_minor.is_some() {
        o.value_minor = money("value_minor", b.value_minor)?.unwrap_or(0);
    }
    if let Some(t) = &b.title {
        o.title = validate::text("title", t, 1, 200)?;
    }
    o.updated_at = DateTime::now();
    st.mongo
        .collection::<Opportunity>(collections::OPPORTUNITIES)
        .replace_one(doc! { "_id": o.id, "clientId": o.client_id }, &o)
        .await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: o.client_id, action: "update", resource: "opportunities", id: o.id },
        Some(&old),
        Some(&o),
    )
    .await?;
    Ok(Json(opportunity_view(&o)))
}
