//! Tenant webhooks (issue #19): endpoints a tenant subscribes to events
//! of its account, and the deliveries sent to them. MongoDB documents; the
//! api writes the endpoints and most deliveries and sends them all, the
//! forwarder adds the batched click-outs.
//!
//! - [`WebhookEndpoint`] (`webhook_endpoints`): a URL, its Standard
//!   Webhooks signing secret (encrypted, bound to
//!   `webhook_endpoints/{id}/secret`), the [`WebhookEvent`]s it wants.
//! - [`WebhookDelivery`] (`webhook_deliveries`): one message to one
//!   endpoint, its body fixed at creation (`{"type", "timestamp",
//!   "data"}`, as Standard Webhooks suggests), its attempts: the delivery
//!   log; its `_id` is the `webhook-id` of every attempt and replay.

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

pub use crate::alerts::DeliveryStatus;

/// What a tenant may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A smartlink was created (`data`: the link as the API shows it).
    #[serde(rename = "link.created")]
    LinkCreated,
    /// A smartlink was changed (`data`: the link after the change).
    #[serde(rename = "link.updated")]
    LinkUpdated,
    /// A smartlink was archived (`data`: its id and slug).
    #[serde(rename = "link.archived")]
    LinkArchived,
    /// A tracking-health alert started firing (seed 002).
    #[serde(rename = "alert.firing")]
    AlertFiring,
    /// A tracking-health alert resolved.
    #[serde(rename = "alert.resolved")]
    AlertResolved,
    /// Yesterday's numbers (UTC day), once a day.
    #[serde(rename = "digest.daily")]
    DigestDaily,
    /// Click-outs, batched (at most [`MAX_CLICKS_PER_BATCH`] per message).
    #[serde(rename = "clicks.batch")]
    ClicksBatch,
}

impl WebhookEvent {
    /// Every event, in a stable order.
    pub const ALL: [WebhookEvent; 7] = [
        WebhookEvent::LinkCreated,
        WebhookEvent::LinkUpdated,
        WebhookEvent::LinkArchived,
        WebhookEvent::AlertFiring,
        WebhookEvent::AlertResolved,
        WebhookEvent::DigestDaily,
        WebhookEvent::ClicksBatch,
    ];

    /// The wire name (`link.created`, ...), also a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::LinkCreated => "link.created",
            WebhookEvent::LinkUpdated => "link.updated",
            WebhookEvent::LinkArchived => "link.archived",
            WebhookEvent::AlertFiring => "alert.firing",
            WebhookEvent::AlertResolved => "alert.resolved",
            WebhookEvent::DigestDaily => "digest.daily",
            WebhookEvent::ClicksBatch => "clicks.batch",
        }
    }

    /// Parses a wire name; `None` for any other.
    pub fn parse(s: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Most click-outs in one `clicks.batch` message.
pub const MAX_CLICKS_PER_BATCH: usize = 500;

/// Where the signing secret of endpoint `id` is bound
/// (`crypto::Field::new(collections::WEBHOOK_ENDPOINTS, id, SECRET_FIELD)`).
pub const SECRET_FIELD: &str = "secret";

/// One endpoint of a tenant (`webhook_endpoints`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// Endpoint id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The tenant.
    pub client_id: ObjectId,
    /// Where messages are POSTed (https).
    pub url: String,
    /// The signing secret (`whsec_…`), encrypted.
    pub secret_enc: String,
    /// The events it receives.
    pub events: Vec<WebhookEvent>,
    /// A note for people.
    #[serde(default)]
    pub description: String,
    /// Receives messages when true.
    pub enabled: bool,
    /// Created, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// One message to one endpoint (`webhook_deliveries`): the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Message id: the `webhook-id` header of every attempt and replay.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The tenant.
    pub client_id: ObjectId,
    /// The endpoint.
    pub endpoint_id: ObjectId,
    /// What it is about.
    pub event: WebhookEvent,
    /// The JSON body, the same on every attempt.
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (or the claim of one running expires).
    pub next_attempt_at: DateTime,
    /// The last HTTP status, if an answer came.
    #[serde(default)]
    pub last_status: Option<u16>,
    /// The last failure, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime,
    /// Accepted by the endpoint.
    #[serde(default)]
    pub delivered_at: Option<DateTime>,
}

impl WebhookDelivery {
    /// A pending message of `event` to `endpoint` of tenant `client_id`,
    /// due at once, with body `{"type", "timestamp", "data"}` (RFC 3339 UTC).
    pub fn new(client_id: ObjectId, endpoint_id: ObjectId, event: WebhookEvent, data: serde_json::Value) -> Self {
        let now = DateTime::now();
        let payload = serde_json::json!({
            "type": event.as_str(),
            "timestamp": now.try_to_rfc3339_string().unwrap_or_default(),
            "data": data,
        });
        WebhookDelivery {
            id: ObjectId::new(),
            client_id,
            endpoint_id,
            event,
            payload: payload.to_string(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_status: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_their_wire_names() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).ok(), Some(serde_json::Value::String(e.as_str().into())));
        }
        let d = WebhookDelivery::new(
            ObjectId::new(),
            ObjectId::new(),
            WebhookEvent::LinkCreated,
            serde_json::json!({"id": 1}),
        );
        let body: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
        assert_eq!((body["type"].as_str(), body["data"]["id"].as_i64()), (Some("link.created"), Some(1)));
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
