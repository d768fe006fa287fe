//! Plumbing shared by the stages, so it is written once: environment config
//! pieces ([`config`]), logging ([`telemetry`]), the admin listener with
//! metrics and health ([`admin`]), graceful shutdown ([`shutdown`]), Kafka
//! helpers ([`kafka`]), the `migrate` command ([`migrate`]) and helpers for
//! integration tests against the real engines ([`testing`]).
//!
//! Nothing here knows about smartlinks beyond the names in [`schemas`].

pub mod admin;
pub mod config;
pub mod kafka;
pub mod migrate;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
