//! Tracking-health alerts of tenants (seed 002 "Alertes automatiques",
//! issue #16): what a tenant asked to be told, the state of each alert, and
//! the delivery log. MongoDB documents; the api's notifier writes them.
//!
//! - [`AlertSettings`] (`alert_settings`, one per tenant, `_id` = the
//!   tenant): recipients (emails, a webhook) and thresholds.
//! - [`AlertState`] (`alert_states`, one per tenant and [`AlertKind`],
//!   `_id` = `"{tenant hex}:{kind}"`): firing or not, since when, and the
//!   evaluation slot that last judged it (the claim that makes several api
//!   instances send one notification per change).
//! - [`AlertDelivery`] (`alert_deliveries`): one notification to one
//!   recipient, with its attempts; the delivery log.

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

/// What a tracking-health alert is about (seed 002: tracking rate below
/// 95%, unusual traffic spike, client tracking failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Share of the last 24 h's human views whose page could fire the
    /// tenant's pixels (consent granted, no DNT/GPC) below the threshold:
    /// the client-side tools see less than that share of the visits the
    /// server counted.
    ClientRateLow,
    /// Views of the last complete hour at least `spike_ratio` times those of
    /// the same hour a week before.
    TrafficSpike,
    /// Views of the last complete hour at most `drop_ratio` times those of
    /// the same hour a week before.
    TrafficDrop,
    /// The tenant has pixels configured, yet none of the last 24 h's views
    /// (at least `min_views`) could fire them: the consent banner or the
    /// pixel setup is broken.
    PixelsSilent,
}

impl AlertKind {
    /// Every kind, in a stable order.
    pub const ALL: [AlertKind; 4] =
        [AlertKind::ClientRateLow, AlertKind::TrafficSpike, AlertKind::TrafficDrop, AlertKind::PixelsSilent];

    /// The wire name (`client_rate_low`, ...), also a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ClientRateLow => "client_rate_low",
            AlertKind::TrafficSpike => "traffic_spike",
            AlertKind::TrafficDrop => "traffic_drop",
            AlertKind::PixelsSilent => "pixels_silent",
        }
    }
}

/// When each alert fires. Defaults: seed 002's 95%, a spike at 3× and a
/// drop at a third of the same hour last week, judged from 100 views.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertThresholds {
    /// Fewer views than this in the window judged: no alert (too little
    /// traffic to say anything). For a drop, last week's hour must reach it.
    pub min_views: u64,
    /// [`AlertKind::ClientRateLow`] fires below this share, 0..=1.
    pub client_rate_min: f64,
    /// [`AlertKind::TrafficSpike`] fires at this ratio or above, > 1.
    pub spike_ratio: f64,
    /// [`AlertKind::TrafficDrop`] fires at this ratio or below, 0..1.
    pub drop_ratio: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds { min_views: 100, client_rate_min: 0.95, spike_ratio: 3.0, drop_ratio: 0.33 }
    }
}

/// A tenant's alert settings (`alert_settings`); a tenant without one is
/// judged with [`AlertThresholds::default`] and notified of nothing (its
/// alerts still show in the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSettings {
    /// The tenant.
    #[serde(rename = "_id")]
    pub client_id: ObjectId,
    /// Recipient emails, each encrypted (api `crypto::Pii`), at most 10.
    #[serde(default)]
    pub emails_enc: Vec<String>,
    /// Webhook URL (https, or http where the api allows it), notified with a
    /// Standard Webhooks signature.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The webhook's signing secret (`whsec_` + base64 of 32 bytes), encrypted.
    #[serde(default)]
    pub webhook_secret_enc: Option<String>,
    /// The kinds the tenant is notified of (all by default).
    pub kinds: Vec<AlertKind>,
    /// When alerts fire.
    pub thresholds: AlertThresholds,
    /// Last change.
    pub updated_at: DateTime,
}

/// The state of one alert of one tenant (`alert_states`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertState {
    /// `"{tenant hex}:{kind}"`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant.
    pub client_id: ObjectId,
    /// The alert.
    pub kind: AlertKind,
    /// Firing at the last evaluation.
    pub firing: bool,
    /// When it last changed (started firing or resolved).
    pub since: DateTime,
    /// The evaluation slot (Unix s) that last judged it; an evaluation of an
    /// older or equal slot changes nothing.
    pub slot: i64,
    /// The measured value (a share or a ratio).
    pub value: f64,
    /// The threshold it was judged against.
    pub threshold: f64,
    /// Whether its start of firing was notified to anyone (recipients set,
    /// kind enabled); only then is its resolution notified.
    #[serde(default)]
    pub notified: bool,
}

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email through the api's mail transport.
    Email,
    /// An HTTP POST to the tenant's webhook.
    Webhook,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not sent yet, or to be retried at `next_attempt_at`.
    Pending,
    /// Accepted by the receiver (2xx, or the mail transport).
    Delivered,
    /// Refused for good (a 4xx but 408/429) or out of attempts.
    Failed,
}

/// One notification to one recipient (`alert_deliveries`): the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertDelivery {
    /// Delivery id; also the webhook's `webhook-id` (the same on every retry).
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The tenant.
    pub client_id: ObjectId,
    /// The alert.
    pub kind: AlertKind,
    /// `firing` or `resolved`.
    pub event: String,
    /// The channel.
    pub channel: Channel,
    /// The recipient (email or URL), encrypted.
    pub target_enc: String,
    /// The recipient, masked for display (`o***@label.com`, a URL's host).
    pub target_hint: String,
    /// The JSON body sent (the same on every retry).
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (or the claim of one running expires).
    pub next_attempt_at: DateTime,
    /// The last failure, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime,
    /// Accepted by the receiver.
    #[serde(default)]
    pub delivered_at: Option<DateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_wire_names() {
        for k in AlertKind::ALL {
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::String(k.as_str().into())));
        }
    }
}
