//! `api`: The HTTP API of dashboards and back-office tools: tenants, API keys, smartlinks, analytics; authenticated and tenant-isolated.
//!
//! Not built yet: this crate reserves the stage's place in the workspace and
//! is filled by issue #5.
