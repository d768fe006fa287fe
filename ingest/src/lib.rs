//! placeholder
pub mod device;
pub mod enrich;
pub mod geoip;
pub mod visitor;
