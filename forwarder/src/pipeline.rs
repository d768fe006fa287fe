//! The consumer loop: Kafka → filter → per-destination requests → commit.
//!
//! ## Rounds, at-least-once
//! The loop reads raw events for up to `FORWARDER_BATCH_MAX_MS` or
//! `FORWARDER_BATCH_MAX_EVENTS`, groups the forwardable ones by
//! destination, sends every destination's requests (destinations in
//! parallel, one destination's requests in order), dead-letters what ended
//! refused or abandoned, writes the delivery log, and only then commits the
//! round's offsets. A crash or rebalance mid-round sends that round again:
//! the platforms deduplicate by `event_id` (Meta, TikTok; GA4 does not, see
//! [`crate::platforms`]). A platform that keeps failing holds its round for
//! at most its retries (`FORWARDER_MAX_ATTEMPTS`), then its requests go to
//! the dead-letter topic and the round commits: nothing is dropped
//! silently, and one tenant's broken platform delays the others by at most
//! that.
//!
//! ## What is forwarded
//! A view or click of a visitor who consented (`consent: granted`; a view
//! whose visitor accepted the banner on its page comes with the page's
//! engagement beacon, [`late_view`]), sends no `DNT`/`Sec-GPC`, is no bot (our bot rules on the user agent, HEAD
//! requests), to each enabled destination of its tenant whose `events`
//! name its kind. Everything else is counted in `forwarder_skipped_total`
//! by reason. Events consumed while their tenant had no destination are
//! not sent later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bson::{oid::ObjectId, DateTime};
use common::shutdown::CancellationToken;
use futures::StreamExt;
use lookup::device::{bot_reason, UaParser};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use schemas::conversions::{DeliveryLog, DeliveryOutcome};
use schemas::event::{Consent, EventKind, RawEvent};
use schemas::topics::conversion_dead_letter_headers as dlh;
use schemas::webhooks::{WebhookDelivery, WebhookEvent, MAX_CLICKS_PER_BATCH};

use crate::destinations::{Dest, Destinations};
use crate::metrics::Metrics;
use crate::platforms::{self, Endpoints, Request};
use crate::sender::{Attempted, Sender};

/// The view an engagement beacon stands for when its visitor accepted the
/// consent banner on that page ([`schemas::event::Engagement::consented_on_page`]):
/// the view was recorded without consent and never sent; the pixels fire
/// it on accepting with the view's id, so the platforms get it from both
/// engines with one id. The view's id and time, the beacon's request facts
/// (IP, user agent, the landing query's attribution, the platforms'
/// cookies). Any other event as it is.
pub fn late_view(e: RawEvent) -> RawEvent {
    match e.engagement {
        Some(g) if e.kind == EventKind::Engagement && g.consented_on_page => RawEvent {
            event_id: g.view_id,
            kind: EventKind::View,
            ts_ms: g.view_ts_ms,
            method: "GET".into(),
            engagement: None,
            ..e
        },
        _ => e,
    }
}

/// Why an event is not forwarded, if it is not: `engagement` (a page's
/// beacon, not a conversion), `dnt`, `no_consent` or `bot`.
pub fn skip_reason(e: &RawEvent, ua: &UaParser) -> Option<&'static str> {
    if e.kind == EventKind::Engagement {
        Some("engagement")
    } else if e.dnt {
        Some("dnt")
    } else if e.consent != Consent::Granted {
        Some("no_consent")
    } else if bot_reason(&e.method, &ua.parse(e.user_agent.as_deref())).is_some() {
        Some("bot")
    } else {
        None
    }
}

/// Bounds of a round.
#[derive(Debug, Clone, Copy)]
pub struct RoundLimits {
    /// Raw events read.
    pub max_events: usize,
    /// Age of the round's first event.
    pub max_age: Duration,
    /// Requests in flight to one destination.
    pub concurrency: usize,
}

/// The consumer loop's state.
pub struct Pipeline {
    /// The group member.
    pub consumer: Arc<StreamConsumer>,
    /// Destinations by tenant.
    pub destinations: Destinations,
    /// HTTP to the platforms.
    pub sender: Arc<Sender>,
    /// Where the platforms are.
    pub endpoints: Endpoints,
    /// User agents to bot verdicts.
    pub ua: Arc<UaParser>,
    /// Producer of conversion dead letters.
    pub dlq: FutureProducer,
    /// Conversion dead-letter topic.
    pub dlq_topic: String,
    /// The delivery log.
    pub log: mongodb::Collection<DeliveryLog>,
    /// Tenant webhook messages (`clicks.batch`), sent by the api.
    pub webhooks: mongodb::Collection<WebhookDelivery>,
    /// Metrics.
    pub metrics: Metrics,
    /// Round bounds.
    pub limits: RoundLimits,
}

/// One tenant's click-outs of a round for its `clicks.batch` webhooks:
/// its endpoints `(endpoint id, tenant id)` and the clicks (no personal data).
type TenantClicks = (Vec<(ObjectId, ObjectId)>, Vec<serde_json::Value>);

/// Raw events of one round, by destination, and the offsets they cover.
#[derive(Default)]
struct Round {
    by_dest: HashMap<ObjectId, (Arc<Dest>, Vec<Arc<RawEvent>>)>,
    /// Click-outs for tenants' `clicks.batch` webhooks, by tenant.
    clicks: HashMap<String, TenantClicks>,
    /// Next offset to commit, per (topic, partition).
    offsets: HashMap<(String, i32), i64>,
    records: usize,
}

impl Pipeline {
    /// Runs rounds until `shutdown`; a round cut by it is not committed.
    /// Waits for the first load of the destinations before reading.
    pub async fn run(self, shutdown: CancellationToken) {
        while !self.destinations.snapshot().ready {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        loop {
            let Some(round) = self.collect(&shutdown).await else { return };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.send(&round, &shutdown) => {}
            }
            if shutdown.is_cancelled() {
                return;
            }
            self.commit(&round);
        }
    }

    /// Reads one round; `None` on shutdown.
    async fn collect(&self, shutdown: &CancellationToken) -> Option<Round> {
        let mut round = Round::default();
        let first = tokio::select! {
            _ = shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
        };
        self.take(&mut round, first);
        let deadline = tokio::time::Instant::now() + self.limits.max_age;
        while round.records < self.limits.max_events {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline) => break,
                m = self.consumer.recv() => self.take(&mut round, m),
            }
        }
        Some(round)
    }

    fn take(&self, round: &mut Round, m: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "kafka consume error");
                return;
            }
        };
        round.records += 1;
        round.offsets.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
        // Records ingest dead-letters are skipped here (ingest keeps them).
        let Some(event) = m.payload().and_then(|p| serde_json::from_slice::<RawEvent>(p).ok()) else {
            self.metrics.skipped.with_label_values(&["unparsable"]).inc();
            return;
        };
        let snapshot = self.destinations.snapshot();
        if event.kind == EventKind::Click {
            self.take_click(round, &event, &snapshot);
        }
        let event = late_view(event);
        if let Some(reason) = skip_reason(&event, &self.ua) {
            self.metrics.skipped.with_label_values(&[reason]).inc();
            return;
        }
        let wanted: Vec<&Arc<Dest>> = snapshot
            .by_tenant
            .get(event.tenant_id.as_str())
            .map(|ds| ds.iter().filter(|d| d.events.contains(&event.kind)).collect())
            .unwrap_or_default();
        if wanted.is_empty() {
            self.metrics.skipped.with_label_values(&["no_destination"]).inc();
            return;
        }
        let event = Arc::new(event);
        for d in wanted {
            round.by_dest.entry(d.id).or_insert_with(|| (d.clone(), Vec::new())).1.push(event.clone());
        }
    }

    /// Adds click `e` (a person's) to the round's `clicks.batch` messages
    /// when its tenant has endpoints for them: what the tenant's own
    /// systems may know of a click-out, without IP, user agent or visitor.
    fn take_click(&self, round: &mut Round, e: &RawEvent, snapshot: &crate::destinations::Loaded) {
        let Some(hooks) = snapshot.click_hooks.get(e.tenant_id.as_str()) else { return };
        if bot_reason(&e.method, &self.ua.parse(e.user_agent.as_deref())).is_some() {
            return;
        }
        let ts = bson::DateTime::from_millis(e.ts_ms).try_to_rfc3339_string().unwrap_or_default();
        let click = serde_json::json!({
            "event_id": e.event_id.to_string(),
            "link_id": e.link_id.as_str(),
            "slug": e.slug.as_str(),
            "platform": e.platform.as_deref(),
            "ts": ts,
            "utm_source": e.attribution.utm_source.as_deref(),
            "utm_medium": e.attribution.utm_medium.as_deref(),
            "utm_campaign": e.attribution.utm_campaign.as_deref(),
            "rule_id": e.rule_id.as_deref(),
            "variant": e.variant.as_deref(),
        });
        let entry = round.clicks.entry(e.tenant_id.to_string()).or_insert_with(|| (hooks.clone(), Vec::new()));
        entry.1.push(click);
    }

    /// Queues the round's `clicks.batch` messages (at most
    /// [`MAX_CLICKS_PER_BATCH`] clicks each) in `webhook_deliveries`, which
    /// the api sends; retried until MongoDB takes them or `shutdown`.
    async fn queue_clicks(&self, round: &Round, shutdown: &CancellationToken) {
        let mut deliveries = Vec::new();
        for (hooks, clicks) in round.clicks.values() {
            for chunk in clicks.chunks(MAX_CLICKS_PER_BATCH) {
                for (endpoint, client) in hooks {
                    let data = serde_json::json!({ "clicks": chunk });
                    deliveries.push(WebhookDelivery::new(*client, *endpoint, WebhookEvent::ClicksBatch, data));
                }
            }
        }
        if deliveries.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(200);
        loop {
            match self.webhooks.insert_many(&deliveries).await {
                Ok(_) => {
                    let clicks: usize = round.clicks.values().map(|(h, c)| h.len() * c.len()).sum();
                    self.metrics.webhook_clicks.inc_by(clicks as u64);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "queuing click webhooks failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Sends every destination's requests of `round`, dead-letters the
    /// failed ones and writes the delivery log.
    async fn send(&self, round: &Round, shutdown: &CancellationToken) {
        self.queue_clicks(round, shutdown).await;
        let sends = round.by_dest.values().map(|(dest, events)| async move {
            let requests = platforms::build(dest, events, &self.endpoints);
            let carried: usize = requests.iter().map(|r| r.event_ids.len()).sum();
            if carried < events.len() {
                self.metrics.skipped.with_label_values(&["no_client_id"]).inc_by((events.len() - carried) as u64);
            }
            // A destination's requests go out a few at a time (GA4 takes
            // one per visitor); once one of them is abandoned (the platform
            // is down through every retry), the rest of the round's are
            // dead-lettered unsent instead of each waiting out its retries:
            // a round, and so every tenant's conversions, stays bounded.
            let broken = std::sync::atomic::AtomicBool::new(false);
            let broken = &broken;
            futures::stream::iter(requests)
                .map(|r| async move {
                    let a = if broken.load(std::sync::atomic::Ordering::Relaxed) {
                        Attempted {
                            outcome: DeliveryOutcome::Abandoned,
                            status: None,
                            attempts: 0,
                            answer: Some("not attempted: another request of this round was abandoned".into()),
                        }
                    } else {
                        self.sender.deliver(dest, &r).await
                    };
                    if a.outcome == DeliveryOutcome::Abandoned {
                        broken.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    (dest.clone(), r, a)
                })
                .buffer_unordered(self.limits.concurrency.max(1))
                .collect::<Vec<_>>()
                .await
        });
        let results: Vec<(Arc<Dest>, Request, Attempted)> =
            futures::future::join_all(sends).await.into_iter().flatten().collect();
        let now = DateTime::now();
        let mut logs = Vec::with_capacity(results.len());
        for (dest, req, a) in results {
            let platform = dest.platform.as_str();
            self.metrics.events.with_label_values(&[platform, a.outcome.as_str()]).inc_by(req.event_ids.len() as u64);
            if a.outcome != DeliveryOutcome::Delivered {
                tracing::warn!(destination = %dest.id, tenant = %dest.tenant_hex, platform, outcome = a.outcome.as_str(),
                    status = ?a.status, attempts = a.attempts, events = req.event_ids.len(), "conversion request dead-lettered");
                self.dead_letter(&dest, &req, &a, shutdown).await;
            }
            logs.push(DeliveryLog {
                id: ObjectId::new(),
                client_id: ObjectId::parse_str(&dest.tenant_hex).unwrap_or_default(),
                destination_id: dest.id,
                platform: dest.platform,
                outcome: a.outcome,
                status: a.status,
                attempts: a.attempts,
                event_ids: req.event_ids.iter().map(|id| id.to_string()).collect(),
                answer: a.answer,
                at: now,
            });
        }
        if !logs.is_empty() {
            if let Err(e) = self.log.insert_many(&logs).await {
                self.metrics.delivery_log_errors.inc_by(logs.len() as u64);
                tracing::warn!(error = %e, entries = logs.len(), "writing the delivery log failed; the requests were sent");
            }
        }
    }

    /// Produces `req`'s body to the conversion dead-letter topic with
    /// headers naming the destination and the answer; retried until the
    /// broker acknowledges it or `shutdown` (then the round is not
    /// committed and comes again).
    async fn dead_letter(&self, dest: &Dest, req: &Request, a: &Attempted, shutdown: &CancellationToken) {
        let reason = a.outcome.as_str();
        let status = a.status.map(|s| s.to_string());
        let attempts = a.attempts.to_string();
        let ts = DateTime::now().timestamp_millis().to_string();
        let tenant = dest.tenant_hex.as_str();
        let destination = dest.id.to_hex();
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: dlh::REASON, value: Some(reason) })
            .insert(Header { key: dlh::PLATFORM, value: Some(dest.platform.as_str()) })
            .insert(Header { key: dlh::TENANT, value: Some(tenant) })
            .insert(Header { key: dlh::DESTINATION, value: Some(destination.as_str()) })
            .insert(Header { key: dlh::ATTEMPTS, value: Some(attempts.as_str()) })
            .insert(Header { key: dlh::TS_MS, value: Some(ts.as_str()) });
        if let Some(s) = &status {
            headers = headers.insert(Header { key: dlh::STATUS, value: Some(s.as_str()) });
        }
        if let Some(answer) = &a.answer {
            headers = headers.insert(Header { key: dlh::ANSWER, value: Some(answer.as_str()) });
        }
        let mut wait = Duration::from_millis(200);
        loop {
            let record = FutureRecord::to(&self.dlq_topic).key(tenant).payload(&req.body).headers(headers.clone());
            match self.dlq.send(record, Duration::from_secs(10)).await {
                Ok(_) => {
                    self.metrics.dead_letters.with_label_values(&[dest.platform.as_str(), reason]).inc();
                    return;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, "producing a conversion dead letter failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn commit(&self, round: &Round) {
        if round.offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &round.offsets {
            if tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).is_err() {
                continue;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            self.metrics.commit_errors.inc();
            tracing::warn!(error = %e, "offset commit failed; the next round's commit covers it");
        }
    }
}
