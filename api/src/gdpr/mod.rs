//! GDPR self-service (issue #7; seeds 002 and 004): consents (analytics,
//! marketing, functional) and newsletter subscriptions with their history,
//! and data-subject requests: export everything held about a person and
//! erase it (GDPR art. 15, 17, 20).
//!
//! A person is found by email (through the blind indexes of leads,
//! contacts, invoices, consents, subscribers and email logs) and by the
//! smartlink visitor ids (`sl_vid` cookie) given in the request or recorded
//! with their consents. Visitor hashes are salted daily and cannot be tied
//! to a person, so only cookie ids find events.
//!
//! Erasure anonymises leads and contacts (names, email, phone, address,
//! notes and custom fields replaced; pipeline figures kept), deletes
//! consents, subscriptions and email logs, and erases the visitor's events
//! through the rollup library's erasure path (`rollup::lifecycle::erase_visitor`,
//! which re-rolls the affected windows). Titles and texts of the tasks and
//! activities about the erased records, and the old/new values in the
//! audit diffs of those records, are replaced too (the audit keeps who
//! changed which field when). Invoices are kept unchanged: their
//! retention is a legal obligation (GDPR art. 17(3)(b), accounting law);
//! the report says so. Every export and erasure is audited.
mod handlers;

use axum::routing::{get, post, put};
use axum::Router;
use utoipa::OpenApi;

use crate::state::AppState;

/// The GDPR and newsletter routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/gdpr/consents", put(handlers::put_consent).get(handlers::get_consent))
        .route("/v1/gdpr/export", post(handlers::export))
        .route("/v1/gdpr/erase", post(handlers::erase))
        .route("/v1/newsletter", get(handlers::list_subscribers))
        .route("/v1/newsletter/subscribe", post(handlers::subscribe))
        .route("/v1/newsletter/unsubscribe", post(handlers::unsubscribe))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::put_consent,
    handlers::get_consent,
    handlers::export,
    handlers::erase,
    handlers::subscribe,
    handlers::unsubscribe,
    handlers::list_subscribers
))]
pub struct Doc;
