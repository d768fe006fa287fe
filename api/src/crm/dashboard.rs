//! The pipeline dashboard: leads by stage with their value, conversion per
//! assignee and team, follow-ups and tasks due, the open pipeline.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::crm::{Lead, LeadStage, Opportunity, OpportunityStage};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::hex;

/// One stage of the pipeline dashboard.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StageTotal {
    /// Stage.
    pub stage: String,
    /// Leads in it.
    pub count: i64,
    /// Sum of their budgets, minor units.
    pub total_value_minor: i64,
}

/// Conversion of one assignee's leads.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AssigneeTotal {
    /// User id (`null`: unassigned).
    pub assigned_to: Option<String>,
    /// Leads assigned.
    pub leads: i64,
    /// Of which won.
    pub won: i64,
    /// won / leads, 0..=1.
    pub conversion_rate: f64,
}

/// `GET /v1/crm/dashboard` (seed 001 "Dashboard analytics").
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// Leads by stage, pipeline order, zeros included.
    pub leads_by_stage: Vec<StageTotal>,
    /// Conversion per assignee.
    pub by_assignee: Vec<AssigneeTotal>,
    /// Conversion of the whole team.
    pub team: AssigneeTotal,
    /// Open follow-ups due before now.
    pub follow_ups_due: i64,
    /// Open tasks due before now.
    pub tasks_due: u64,
    /// Value of open opportunities, minor units.
    pub open_pipeline_minor: i64,
}

/// Pipeline aggregates of the tenant.
#[utoipa::path(get, path = "/v1/crm/dashboard", tag = "crm", params(crate::tenants::ClientScope),
    responses((status = 200, body = Dashboard), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn dashboard(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<Dashboard>, ApiError> {
    p.can(Resource::Leads, Action::Read)?;
    let leads: Vec<Lead> = st
        .mongo
        .collection::<Lead>(collections::LEADS)
        .find(doc! { "clientId": client.id })
        .await?
        .try_collect()
        .await?;
    let now = DateTime::now();
    let mut by_stage: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    let mut by_user: BTreeMap<Option<ObjectId>, (i64, i64)> = BTreeMap::new();
    let mut due = 0;
    for l in &leads {
        let i = LeadStage::ALL.iter().position(|s| *s == l.pipeline.stage).unwrap_or(0);
        let e = by_stage.entry(i).or_default();
        e.0 += 1;
        e.1 += l.business.budget_minor.unwrap_or(0);
        let u = by_user.entry(l.assignment.assigned_to).or_default();
        u.0 += 1;
        u.1 += i64::from(l.pipeline.stage == LeadStage::Won);
        due += l.notes.iter().filter(|n| n.kind == "follow_up" && n.due_at.is_some_and(|d| d < now)).count() as i64;
    }
    let total = |who: Option<String>, (n, won): (i64, i64)| AssigneeTotal {
        assigned_to: who,
        leads: n,
        won,
        conversion_rate: if n == 0 { 0.0 } else { won as f64 / n as f64 },
    };
    let team = by_user.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let tasks_due = st
        .mongo
        .collection::<schemas::crm::Task>(collections::TASKS)
        .count_documents(
            doc! { "clientId": client.id, "status": { "$in": ["PENDING", "IN_PROGRESS"] }, "dueAt": { "$lt": now } },
        )
        .await?;
    let opps: Vec<Opportunity> = st
        .mongo
        .collection::<Opportunity>(collections::OPPORTUNITIES)
        .find(doc! { "clientId": client.id })
        .await?
        .try_collect()
        .await?;
    Ok(Json(Dashboard {
        leads_by_stage: LeadStage::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (count, value) = by_stage.get(&i).copied().unwrap_or_default();
                StageTotal { stage: s.name().into(), count, total_value_minor: value }
            })
            .collect(),
        by_assignee: by_user.into_iter().map(|(u, t)| total(hex(u), t)).collect(),
        team: total(None, team),
        follow_ups_due: due,
        tasks_due,
        open_pipeline_minor: opps
            .iter()
            .filter(|o| !matches!(o.stage, OpportunityStage::Won | OpportunityStage::Lost))
            .map(|o| o.value_minor)
            .sum(),
    }))
}
