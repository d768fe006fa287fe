//! GDPR self-service documents (issue #7; seed 004 `consents`,
//! `newsletter_subscribers`; seed 002 on consent).
//!
//! Seed 004 keys both by plain `email`; here the email is encrypted
//! (`emailEnc`) and found by its blind index (`emailIndex`, unique per
//! tenant), and every change is appended to `history`, so what a person
//! agreed to, and when, stays provable after it changes.

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

/// One state of a person's consents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentState {
    /// Analytics cookies and measurement.
    pub analytics: bool,
    /// Marketing (ads pixels, retargeting).
    pub marketing: bool,
    /// Functional (preferences).
    pub functional: bool,
    /// Where it was given (`banner`, `form`, `api`).
    pub source: String,
    /// When, UTC.
    pub at: DateTime,
}

/// A person's consents (one per tenant and email).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// Record id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Email, encrypted.
    pub email_enc: String,
    /// Blind index of the email.
    pub email_index: String,
    /// Smartlink visitor ids (`sl_vid`) seen with this person.
    #[serde(default)]
    pub visitor_ids: Vec<String>,
    /// Current state.
    pub current: ConsentState,
    /// Every state, oldest first (the current one last).
    pub history: Vec<ConsentState>,
}

/// A subscription change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionChange {
    /// `subscribe` or `unsubscribe`.
    pub action: String,
    /// Where (`form`, `email_link`, `api`).
    pub source: String,
    /// When, UTC.
    pub at: DateTime,
}

/// A newsletter subscriber (one per tenant and email).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterSubscriber {
    /// Record id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Email, encrypted.
    pub email_enc: String,
    /// Blind index of the email.
    pub email_index: String,
    /// Language (ISO 639-1).
    pub language: String,
    /// Subscribed now.
    pub is_active: bool,
    /// Changes, oldest first.
    pub history: Vec<SubscriptionChange>,
}
