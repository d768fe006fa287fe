//! The destinations of every tenant, in memory: loaded from MongoDB
//! (`conversion_destinations`, enabled ones) every `FORWARDER_REFRESH_SECS`
//! with their credentials decrypted, swapped in whole so the consumer
//! reads a consistent snapshot without a lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bson::{doc, oid::ObjectId};
use common::config::Secret;
use crypto::{Field, Pii};
use futures::TryStreamExt;
use schemas::conversions::{Destination, Platform, CREDENTIAL_FIELD};
use schemas::event::EventKind;
use schemas::mongo::collections;
use schemas::webhooks::{WebhookEndpoint, WebhookEvent};

/// One enabled destination, ready to send to.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Destination id.
    pub id: ObjectId,
    /// The tenant, 24 hex digits (as in raw events).
    pub tenant_hex: String,
    /// The platform.
    pub platform: Platform,
    /// Meta pixel id, GA4 measurement id or TikTok pixel code.
    pub pixel_id: String,
    /// The credential, decrypted.
    pub credential: Secret,
    /// The event kinds sent.
    pub events: Vec<EventKind>,
    /// The platform's test code, if any.
    pub test_event_code: Option<String>,
}

/// Errors of a load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// MongoDB failed (retried at the next refresh).
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

/// What a load found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// True once loaded from MongoDB (the empty default is not).
    pub ready: bool,
    /// The usable destinations by tenant.
    pub by_tenant: HashMap<String, Vec<Arc<Dest>>>,
    /// Destinations whose credential did not decrypt (a key missing from
    /// `FORWARDER_PII_KEYS`, or a copied value), left out.
    pub undecryptable: Vec<ObjectId>,
    /// Webhook endpoints subscribed to `clicks.batch` (enabled), by
    /// tenant: `(endpoint id, tenant id)`.
    pub click_hooks: HashMap<String, Vec<(ObjectId, ObjectId)>>,
}

impl Loaded {
    /// Destinations per platform, for the `forwarder_destinations` gauge.
    pub fn count(&self, p: Platform) -> usize {
        self.by_tenant.values().flatten().filter(|d| d.platform == p).count()
    }
}

/// Reads every enabled destination and decrypts its credential with `pii`,
/// and the webhook endpoints that want batched click-outs.
/// Errors only when MongoDB does; a credential that does not decrypt
/// leaves that destination out ([`Loaded::undecryptable`]).
pub async fn load(db: &mongodb::Database, pii: &Pii) -> Result<Loaded, LoadError> {
    let mut cursor =
        db.collection::<Destination>(collections::CONVERSION_DESTINATIONS).find(doc! { "enabled": true }).await?;
    let mut out = Loaded { ready: true, ..Loaded::default() };
    while let Some(d) = cursor.try_next().await? {
        let field = Field::new(collections::CONVERSION_DESTINATIONS, d.id, CREDENTIAL_FIELD);
        match pii.decrypt(&d.credential_enc, field) {
            Ok(credential) => {
                let tenant_hex = d.client_id.to_hex();
                out.by_tenant.entry(tenant_hex.clone()).or_default().push(Arc::new(Dest {
                    id: d.id,
                    tenant_hex,
                    platform: d.platform,
                    pixel_id: d.pixel_id,
                    credential: Secret::new(credential),
                    events: d.events,
                    test_event_code: d.test_event_code,
                }));
            }
            Err(e) => {
                tracing::error!(destination = %d.id, error = %e, "destination credential does not decrypt; skipped");
                out.undecryptable.push(d.id);
            }
        }
    }
    let mut hooks = db
        .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
        .find(doc! { "enabled": true, "events": WebhookEvent::ClicksBatch.as_str() })
        .await?;
    while let Some(e) = hooks.try_next().await? {
        out.click_hooks.entry(e.client_id.to_hex()).or_default().push((e.id, e.client_id));
    }
    Ok(out)
}

/// The current snapshot, shared by the consumer and the refresher.
#[derive(Clone, Default)]
pub struct Destinations(Arc<ArcSwap<Loaded>>);

impl Destinations {
    /// Replaces the snapshot.
    pub fn store(&self, loaded: Loaded) {
        self.0.store(Arc::new(loaded));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Loaded> {
        self.0.load_full()
    }
}
