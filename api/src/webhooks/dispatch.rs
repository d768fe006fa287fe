//! Sends the tenant webhook messages due and makes the daily digests.
//!
//! Delivery: each due [`WebhookDelivery`] is attempted under its own lock
//! (`webhook:{id}`, [`crate::lock`]) after re-reading it, `nextAttemptAt`
//! pushed past the attempt's lease first, so two api instances never send
//! the same attempt and one dying mid-attempt leaves it due again. A
//! message is POSTed with the Standard Webhooks headers (`webhook-id` = the
//! delivery id on every attempt and replay, `webhook-timestamp` = the
//! attempt's Unix s, `webhook-signature`); 2xx is delivered; 408, 429, 5xx
//! and transport errors are retried after `API_WEBHOOKS_RETRY_BASE_SECS`
//! doubling (at most an hour) up to `API_WEBHOOKS_MAX_ATTEMPTS`; any other
//! status, a deleted or paused endpoint, fails it for good (a replay
//! through the API sends it again). Redirects are not followed.
//!
//! Digests: for each enabled endpoint subscribed to `digest.daily`, once
//! per UTC day, `API_ALERTS_SETTLE_SECS` after it ends, its numbers (the
//! analytics overview); claimed by inserting `{endpoint}:{day}` into
//! `webhook_digests` (a unique `_id`), so one instance makes it.

use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime};
use common::shutdown::CancellationToken;
use futures::TryStreamExt;
use schemas::mongo::collections;
use schemas::webhooks::{DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent, SECRET_FIELD};

use super::signing::{backoff, sign, without_url};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a claimed attempt may run before another instance may retry it.
const ATTEMPT_LEASE: Duration = Duration::from_secs(120);
/// Messages sent per round.
const BATCH: i64 = 200;

pub use crate::delivery::Sent;

/// Why an attempt failed, and whether to retry it.
struct Failure {
    retry: bool,
    status: Option<u16>,
    error: String,
}

/// Sends webhook messages; see the module docs.
pub struct Dispatcher {
    st: AppState,
    http: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher over `st` (requests time out after
    /// `API_ALERTS_WEBHOOK_TIMEOUT_MS` and follow no redirect).
    pub fn new(st: AppState) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(st.cfg.alerts_webhook_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("smartlinks-webhooks/1")
            .build()?;
        Ok(Dispatcher { st, http })
    }

    /// Sends up to 200 messages due at `now`, oldest first. Errors: MongoDB (503).
    pub async fn deliver_due(&self, now: DateTime) -> Result<Sent, ApiError> {
        let st = &self.st;
        let coll = st.mongo.collection::<WebhookDelivery>(collections::WEBHOOK_DELIVERIES);
        let mut sent = Sent::default();
        for id in crate::delivery::due_ids(st, collections::WEBHOOK_DELIVERIES, now, BATCH).await? {
            let name = format!("webhook:{}", id.to_hex());
            crate::delivery::if_free(st, name, ATTEMPT_LEASE, || self.attempt(&coll, id, now, &mut sent)).await?;
        }
        Ok(sent)
    }

    /// One attempt of message `id` (held under its lock): re-read, still
    /// due, lease, send, record.
    async fn attempt(
        &self,
        coll: &mongodb::Collection<WebhookDelivery>,
        id: ObjectId,
        now: DateTime,
        sent: &mut Sent,
    ) -> Result<(), ApiError> {
        let st = &self.st;
        let due = |d: &WebhookDelivery| (d.status == DeliveryStatus::Pending && d.next_attempt_at <= now, d.attempts);
        let Some((d, attempts)) = crate::delivery::begin_attempt(coll, id, now, ATTEMPT_LEASE, due).await? else {
            return Ok(()); // sent or rescheduled meanwhile
        };
        let event = d.event.as_str();
        let update = match self.send(&d, now).await {
            Ok(status) => {
                sent.delivered += 1;
                st.metrics.webhook_deliveries.with_label_values(&["delivered"]).inc();
                doc! { "$set": { "status": "delivered", "deliveredAt": DateTime::now(), "lastError": null,
                "lastStatus": i32::from(status) } }
            }
            Err(Failure { retry, status, error }) if retry && attempts < st.cfg.webhooks_max_attempts => {
                sent.retried += 1;
                st.metrics.webhook_deliveries.with_label_values(&["retry"]).inc();
                let wait = backoff(st.cfg.webhooks_retry_base_secs, attempts);
                let next = DateTime::from_millis(now.timestamp_millis() + wait.as_millis() as i64);
                tracing::warn!(delivery = %d.id, event, attempts, error = %error, "webhook message failed; retrying");
                doc! { "$set": { "nextAttemptAt": next, "lastError": error, "lastStatus": status.map(i32::from) } }
            }
            Err(Failure { status, error, .. }) => {
                sent.failed += 1;
                st.metrics.webhook_deliveries.with_label_values(&["failed"]).inc();
                tracing::warn!(delivery = %d.id, event, attempts, error = %error, "webhook message failed for good");
                doc! { "$set": { "status": "failed", "lastError": error, "lastStatus": status.map(i32::from) } }
            }
        };
        coll.update_one(doc! { "_id": id }, update).await?;
        Ok(())
    }

    /// One POST of `d` to its endpoint; the status on success.
    async fn send(&self, d: &WebhookDelivery, now: DateTime) -> Result<u16, Failure> {
        let fatal = |error: String| Failure { retry: false, status: None, error };
        let retry = |error: String| Failure { retry: true, status: None, error };
        let endpoint = self
            .st
            .mongo
            .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
            .find_one(doc! { "_id": d.endpoint_id, "clientId": d.client_id })
            .await
            .map_err(|e| retry(format!("mongodb: {e}")))?
            .ok_or_else(|| fatal("the endpoint was deleted".into()))?;
        if !endpoint.enabled {
            return Err(fatal("the endpoint is paused".into()));
        }
        let pii = self.st.pii().map_err(|e| retry(e.to_string()))?;
        let secret = pii.decrypt(&endpoint.secret_enc, secret_field(endpoint.id)).map_err(|e| fatal(e.to_string()))?;
        let id = d.id.to_hex();
        let ts = (now.timestamp_millis() / 1000).to_string();
        let signature = sign(&secret, &id, &ts, &d.payload).map_err(fatal)?;
        let resp = self
            .http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &ts)
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| retry(format!("webhook: {}", without_url(&e))))?;
        let status = resp.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            let again = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            Err(Failure { retry: again, status: Some(status.as_u16()), error: format!("webhook answered {status}") })
        }
    }

    /// Makes the daily digests due at `now` (yesterday, UTC, for each
    /// subscribed endpoint that has none yet, once `API_ALERTS_SETTLE_SECS`
    /// of today passed); returns how many. Errors:
    /// MongoDB or ClickHouse (503), the claims already made are kept.
    pub async fn digests(&self, now: DateTime) -> Result<usize, ApiError> {
        let st = &self.st;
        let endpoints: Vec<WebhookEndpoint> = st
            .mongo
            .collection::<WebhookEndpoint>(collections::WEBHOOK_ENDPOINTS)
            .find(doc! { "enabled": true, "events": WebhookEvent::DigestDaily.as_str() })
            .await?
            .try_collect()
            .await?;
        let now_s = (now.timestamp_millis() / 1000) as u32;
        let today = now_s / 86_400 * 86_400;
        // Events of the day's last minutes are still on their way through
        // Kafka and ingest: the digest waits as the alerts do.
        if now_s < today + self.st.cfg.alerts_settle_secs {
            return Ok(0);
        }
        let day = today - 86_400;
        let date = crate::validate::to_rfc3339(day)[..10].to_string();
        // The day's claims already made: each round reads them once instead
        // of failing an insert per endpoint all day long.
        let claims = st.mongo.collection::<bson::Document>(collections::WEBHOOK_DIGESTS);
        let ids: Vec<String> = endpoints.iter().map(|e| format!("{}:{date}", e.id.to_hex())).collect();
        let done: std::collections::HashSet<String> = claims
            .find(doc! { "_id": { "$in": &ids } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect::<Vec<bson::Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        let mut engine = None;
        let mut made = 0;
        for (e, id) in endpoints.iter().zip(ids) {
            if done.contains(&id) {
                continue;
            }
            match claims.insert_one(doc! { "_id": id, "at": now }).await {
                Ok(_) => {}
                Err(err) if crate::error::is_duplicate_key(&err) => continue,
                Err(err) => return Err(err.into()),
            }
            // The rollups' watermark, loaded once per round that has work.
            let engine = match &mut engine {
                Some(en) => en,
                None => engine.insert(crate::analytics::engine_for(st, None).await?),
            };
            let scope = crate::analytics::Scope { tenant_id: e.client_id.to_hex(), link_id: None };
            let o = engine.overview(&scope, day, today, false).await?;
            let m = &o.metrics;
            let top = |b: &std::collections::BTreeMap<String, i64>| {
                let mut v: Vec<(&String, &i64)> = b.iter().collect();
                v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                v.into_iter().take(5).map(|(k, n)| serde_json::json!({"value": k, "count": n})).collect::<Vec<_>>()
            };
            let data = serde_json::json!({
                "client_id": e.client_id.to_hex(),
                "date": date,
                "views": m.total_views,
                "clicks": m.total_clicks,
                "unique_visitors": m.unique_visitors,
                "conversions": m.total_conversions,
                "conversion_rate": m.conversion_rate,
                "engaged_views": m.engaged_views,
                "avg_time_on_page_s": m.avg_time_on_page,
                "bounce_rate": m.bounce_rate,
                "top_countries": top(&o.breakdown.countries),
                "clicks_by_platform": top(&o.breakdown.platforms),
            });
            let d = WebhookDelivery::new(e.client_id, e.id, WebhookEvent::DigestDaily, data);
            st.mongo.collection::<WebhookDelivery>(collections::WEBHOOK_DELIVERIES).insert_one(&d).await?;
            made += 1;
        }
        Ok(made)
    }
}

/// Where endpoint `id`'s signing secret is bound.
pub fn secret_field(id: ObjectId) -> crypto::Field<'static> {
    crypto::Field::new(collections::WEBHOOK_ENDPOINTS, id, SECRET_FIELD)
}

/// Runs `d` until `shutdown`: every `every`, the digests due, then the
/// messages due. Failures are logged and retried at the next round.
pub async fn run(d: Dispatcher, every: Duration, shutdown: CancellationToken) {
    loop {
        let now = DateTime::now();
        if let Err(e) = d.digests(now).await {
            tracing::warn!(error = %e, "making the daily webhook digests failed; retrying at the next round");
        }
        match d.deliver_due(now).await {
            Ok(s) if s.delivered + s.retried + s.failed > 0 => {
                tracing::info!(delivered = s.delivered, retried = s.retried, failed = s.failed, "webhook messages sent")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sending webhook messages failed; retrying at the next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
