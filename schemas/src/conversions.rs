//! Server-side conversions (issue #19, seed 002 "dual engine"): the ad
//! platforms a tenant forwards its consented views and click-outs to, and
//! the log of what was sent. MongoDB documents; the api writes the
//! destinations, the `forwarder` stage reads them and writes the log.
//!
//! - [`Destination`] (`conversion_destinations`): one platform account of
//!   one tenant (a Meta pixel, a GA4 data stream, a TikTok pixel) with its
//!   credential, encrypted (`crypto`, bound to
//!   `conversion_destinations/{id}/credential`) and never shown by the API.
//! - [`DeliveryLog`] (`conversion_deliveries`): one request to one
//!   destination after its last attempt: delivered, refused (dead-lettered
//!   with the platform's answer) or abandoned after its retries.

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

use crate::event::EventKind;

/// An ad platform the forwarder sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Meta Conversions API (`graph.facebook.com/{version}/{pixel}/events`).
    Meta,
    /// Google Analytics 4 Measurement Protocol (`/mp/collect`).
    Ga4,
    /// TikTok Events API 2.0 (`/open_api/v1.3/event/track/`).
    Tiktok,
}

impl Platform {
    /// Every platform, in a stable order.
    pub const ALL: [Platform; 3] = [Platform::Meta, Platform::Ga4, Platform::Tiktok];

    /// The wire name (`meta`, `ga4`, `tiktok`), also a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Meta => "meta",
            Platform::Ga4 => "ga4",
            Platform::Tiktok => "tiktok",
        }
    }

    /// Parses a wire name; `None` for any other.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The most events one request may carry (Meta: 1,000 per
    /// `/events` call; GA4: 25 per `/mp/collect` call, all of one
    /// `client_id`; TikTok: 1,000 per `/event/track/` call).
    pub fn max_batch(self) -> usize {
        match self {
            Platform::Meta | Platform::Tiktok => 1000,
            Platform::Ga4 => 25,
        }
    }
}

/// One tenant's account on one platform (`conversion_destinations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Destination id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The tenant.
    pub client_id: ObjectId,
    /// The platform.
    pub platform: Platform,
    /// A name for people ("Meta – label main pixel"), at most 100 characters.
    pub name: String,
    /// The platform's id of the account: Meta pixel id (digits), GA4
    /// measurement id (`G-…`), TikTok pixel code.
    pub pixel_id: String,
    /// The credential, encrypted: Meta access token, GA4 API secret, TikTok
    /// access token.
    pub credential_enc: String,
    /// The event kinds sent (`view`, `click`).
    pub events: Vec<EventKind>,
    /// The platform's test code (Meta `test_event_code`, TikTok
    /// `test_event_code`): events show in its test tool and are not used
    /// for ads. Ignored by GA4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// Sends when true; a paused destination is skipped.
    pub enabled: bool,
    /// Created, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// Where the credential of destination `id` is bound
/// (`crypto::Field::new(collections::CONVERSION_DESTINATIONS, id, CREDENTIAL_FIELD)`).
pub const CREDENTIAL_FIELD: &str = "credential";

/// How a request to a destination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Accepted by the platform (2xx, and for TikTok `code` 0).
    Delivered,
    /// Refused for good (a 4xx but 408/429, or an error the platform calls
    /// permanent): dead-lettered with the answer.
    Rejected,
    /// Still failing (429, 5xx, timeouts) after the last retry:
    /// dead-lettered with the last answer.
    Abandoned,
}

impl DeliveryOutcome {
    /// The wire name, also a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Rejected => "rejected",
            DeliveryOutcome::Abandoned => "abandoned",
        }
    }
}

/// One request to one destination (`conversion_deliveries`), written after
/// its last attempt: the delivery log. Kept [`DELIVERY_LOG_DAYS`] days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLog {
    /// Log entry id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The tenant.
    pub client_id: ObjectId,
    /// The destination.
    pub destination_id: ObjectId,
    /// Its platform.
    pub platform: Platform,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// The last HTTP status, absent when no answer came (timeout, refused connection).
    #[serde(default)]
    pub status: Option<u16>,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
    /// The event ids the request carried (UUIDv7, the pixels' ids too).
    pub event_ids: Vec<String>,
    /// The platform's last answer (or the transport error), at most
    /// [`MAX_ANSWER_BYTES`]; absent when delivered without a body worth keeping.
    #[serde(default)]
    pub answer: Option<String>,
    /// When the last attempt ended, UTC.
    pub at: DateTime,
}

/// Days the delivery log is kept (the forwarder deletes older entries).
pub const DELIVERY_LOG_DAYS: i64 = 30;

/// Longest platform answer kept in the log and in a dead letter, bytes.
pub const MAX_ANSWER_BYTES: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_round_trip_their_wire_names() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(serde_json::Value::String(p.as_str().into())));
        }
        assert_eq!(Platform::parse("snapchat"), None);
    }
}
