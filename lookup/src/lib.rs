//! `lookup`: what a request's IP address and user agent say about the
//! visitor, shared by the stages that need it (stages never import each
//! other):
//! - the edge evaluates routing rules by country, device, OS and browser
//!   (issue #18) from memory, on the request path;
//! - ingest enriches every event with the same answers before ClickHouse,
//!   so a rule's condition and the dashboards' breakdowns agree.
//!
//! Modules: [`geoip`] (IP → [`geoip::Geo`] with MaxMind DB files, reloaded
//! on change, corrupt files isolated) and [`device`] (user agent →
//! [`device::Device`], cached, with the bot flag and its reason).

pub mod device;
pub mod geoip;
