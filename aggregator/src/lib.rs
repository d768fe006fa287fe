//! `aggregator`: Rolls events up per hour and day (per tenant and per link) into ClickHouse rollup tables and mirrors them into MongoDB `analytics_hourly` / `analytics_daily`.
//!
//! Not built yet: this crate reserves the stage's place in the workspace and
//! is filled by issue #5.
