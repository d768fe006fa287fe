//! The shared contract of the pipeline, and nothing else: every stage agrees
//! on these types and names, so a change here is a change of contract.
//!
//! - [`event`]: the raw event the edge produces to Kafka (JSON, versioned).
//! - [`clickhouse`]: the enriched row ingest writes, and the ClickHouse DDL.
//! - [`mongo`]: MongoDB collections, documents (seed 000 field names) and indexes.
//! - [`topics`]: Kafka topic names, partition counts, dead-letter headers.
//! - [`ids`]: ObjectId, slug and platform id rules.
//! - [`routing`]: a smartlink's routing rules (device, country, language, A/B, preferred service).
//! - [`alerts`]: tenants' tracking-health alert settings, states and delivery log.
//! - [`conversions`]: the ad platforms a tenant forwards conversions to, and the delivery log.
//! - [`webhooks`]: tenants' webhook endpoints and the messages sent to them.
//! - [`billing`]: invoices and payments; [`campaign`]: campaigns and their daily ad KPIs; [`gdpr`]: consents and newsletter subscribers.
//! - [`crm`]: CRM (leads, contacts, opportunities) and audit documents, and how the seeds map onto them.
//!
//! It performs no I/O; `migrate` applies the DDL, indexes and topics.
//!
//! String fields of events and rows are [`Text`]: inline up to 24 bytes.

/// A string field of an event ([`event::RawEvent`]) or of an analytics row
/// ([`clickhouse::EventRow`]): UTF-8 like `String`, serialised the same,
/// but held inline up to 24 bytes (`compact_str`), so ids, slugs, hosts,
/// platforms, places and device names cost no allocation. Ingest builds a
/// row of ~30 of them per event and frees it on another thread: as
/// `String`s they were a fifth of its CPU (benches/README.md, 2026-12-07).
pub type Text = compact_str::CompactString;

pub mod alerts;
pub mod billing;
pub mod campaign;
pub mod clickhouse;
pub mod conversions;
pub mod crm;
pub mod event;
pub mod gdpr;
pub mod ids;
pub mod mongo;
pub mod routing;
pub mod topics;
pub mod webhooks;
