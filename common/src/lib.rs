//! Plumbing shared by the stages, so it is written once: environment config
//! pieces and the [`config::Secret`] type ([`config`]), logging
//! ([`telemetry`]), the admin listener with metrics and health ([`admin`])
//! graceful shutdown ([`shutdown`]), MongoDB helpers and a leader lease
//! ([`mongo`]) and rate-limit keys of client
//! addresses ([`net`]). It links no Kafka client: Kafka
//! helpers live in `kafka-util`, the `migrate` command in `migrate`, test
//! launchers in the dev-only `testkit`.
//!
//! Nothing here knows about smartlinks beyond the names in [`schemas`].

pub mod admin;
pub mod config;
pub mod http;
pub mod mongo;
pub mod net;
pub mod shutdown;
pub mod telemetry;
