//! The CRM (issue #6; seeds 001, 003, 004, mapped in `schemas::crm`):
//! leads with their pipeline, notes and assignment history,
//! conversion of a lead into a contact and an opportunity (resumable),
//! contacts, opportunities (the 8 stages of seed 003 plus `LOST`), tasks and
//! the activity timeline of a record, the pipeline dashboard, and the
//! tenant's CRM settings (labels, sources, task types, custom fields).
//!
//! Emails, phones and addresses are encrypted at rest ([`person`]); email
//! lookups and uniqueness (per tenant) go through the blind index. Every
//! change is audited with its diff (encrypted fields redacted).

mod contacts;
mod convert;
mod dashboard;
mod fields;
mod leads;
mod opportunities;
pub mod person;
mod settings;
mod tasks;

use axum::routing::{get, patch, post};
use axum::Router;
use utoipa::OpenApi;

pub use contacts::{contact_view, owner as contact_owner, ContactView};
pub use leads::{lead_view, owner as lead_owner, LeadView};
pub use opportunities::{opportunity_view, OpportunityView};

use crate::state::AppState;

/// The CRM routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/leads", post(leads::create_lead).get(leads::list_leads))
        .route("/v1/leads/{id}", get(leads::get_lead).patch(leads::patch_lead).delete(leads::delete_lead))
        .route("/v1/leads/{id}/notes", post(leads::add_note))
        .route("/v1/leads/{id}/convert", post(convert::convert))
        .route("/v1/contacts", post(contacts::create).get(contacts::list))
        .route("/v1/contacts/{id}", get(contacts::get).patch(contacts::patch).delete(contacts::delete))
        .route("/v1/opportunities", get(opportunities::list_opportunities))
        .route("/v1/opportunities/{id}", patch(opportunities::patch_opportunity))
        .route("/v1/crm/dashboard", get(dashboard::dashboard))
        .route("/v1/crm/settings", get(settings::get).put(settings::put))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/tasks/{id}", patch(tasks::patch))
        .route("/v1/activities", post(tasks::create_activity).get(tasks::timeline))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    leads::create_lead,
    leads::list_leads,
    leads::get_lead,
    leads::patch_lead,
    leads::delete_lead,
    leads::add_note,
    convert::convert,
    contacts::create,
    contacts::list,
    contacts::get,
    contacts::patch,
    contacts::delete,
    opportunities::list_opportunities,
    opportunities::patch_opportunity,
    dashboard::dashboard,
    settings::get,
    settings::put,
    tasks::create,
    tasks::list,
    tasks::patch,
    tasks::create_activity,
    tasks::timeline
))]
pub struct Doc;
