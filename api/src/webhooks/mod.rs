//! `/v1/webhooks`: tenant webhooks (issue #19). A tenant registers
//! endpoints (https URLs) and the events each wants ([`WebhookEvent`]:
//! links created, changed or archived, tracking-health alerts firing and
//! resolved, a daily digest, batched click-outs); every message is signed
//! as Standard Webhooks describes ([`signing`]: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), retried with doubling waits,
//! logged per endpoint (`GET /v1/webhooks/{id}/deliveries`) and replayable
//! by hand (`POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`).
//!
//! - [`enqueue`]: what the api's own changes and alerts call; one pending
//!   [`WebhookDelivery`] per subscribed endpoint (the forwarder writes the
//!   `clicks.batch` ones from the raw topic);
//! - [`dispatch`]: every `API_WEBHOOKS_SECS` in each api process, sends
//!   what is due (claimed per delivery across instances) and creates the
//!   daily digests (claimed per endpoint and day).
//!
//! Permissions: resource `webhooks` (admins manage, managers read; keys:
//! `webhooks:write`).
pub mod dispatch;
pub mod handlers;
pub mod signing;

use axum::routing::{get, post};
use axum::Router;
use bson::{doc, oid::ObjectId};
use futures::TryStreamExt;
use schemas::mongo::collections;
use schemas::webhooks::{WebhookDelivery, WebhookEndpoint, WebhookEvent};
use utoipa::OpenApi;

use crate::state::AppState;

/// The webhook routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(handlers::list).post(handlers::create))
        .route("/v1/webhooks/{id}", get(handlers::get).patch(handlers::patch).delete(handlers::delete))
        .route("/v1/webhooks/{id}/deliveries", get(handlers::deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/replay", post(handlers::replay))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    handlers::list,
    handlers::create,
    handlers::get,
    handlers::patch,
    handlers::delete,
    handlers::deliveries,
    handlers::replay
))]
pub struct Doc;

/// Queues `event` with `data` for every enabled endpoint of tenant `client`
/// subscribed to it (a pending delivery each, sent by [`dispatch`] within
/// `API_WEBHOOKS_SECS`). Never fails the caller's change: a MongoDB error
/// is logged and counted (`api_webhook_enqueue_errors_total`) and the
/// message is lost to the endpoints (the change itself stands).
pub async fn enqueue(st: &AppState, client: ObjectId, event: WebhookEvent, data: serde_json::Value) {
    enqueue_all(st, client, event, vec![data]).await;
}

/// [`enqueue`] for several messages of one event (a CSV import's links):
/// the tenant's endpoints are looked up once, the deliveries written in
/// one insert.
pub async fn enqueue_all(st: &AppState, client: ObjectId, event: WebhookEvent, data: Vec<serde_json::Value>) {
    if data.is_empty() {
        return;
    }
    let r = async {
        let endpoints: Vec<WebhookEndpoint> = st
            .mongo
            .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
            .find(doc! { "clientId": client, "enabled": true, "events": event.as_str() })
            .await?
            .try_collect()
            .await?;
        let deliveries: Vec<WebhookDelivery> = endpoints
            .iter()
            .flat_map(|e| data.iter().map(|d| WebhookDelivery::new(client, e.id, event, d.clone())))
            .collect();
        if !deliveries.is_empty() {
            st.mongo.collection::<WebhookDelivery>(collections::WEBHOOK_DELIVERIES).insert_many(&deliveries).await?;
        }
        Ok::<_, mongodb::error::Error>(deliveries.len())
    }
    .await;
    if let Err(e) = r {
        st.metrics.webhook_enqueue_errors.inc();
        tracing::error!(tenant = %client, event = event.as_str(), error = %e, "queuing a webhook message failed");
    }
}
