//! HTTP routes under `/v1`, one module per resource.

pub mod analytics;
pub mod audit_log;
pub mod clients;
pub mod crm;
pub mod smartlinks;
pub mod tasks;
pub mod users;
