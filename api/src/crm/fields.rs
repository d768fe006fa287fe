//! Field rules shared by the CRM records (leads, contacts, opportunities,
//! tasks): tags, percentages, priorities and custom field values as JSON.

use bson::Document;
use schemas::crm::Priority;

use crate::error::ApiError;
use crate::validate;

/// Custom field values as a JSON object.
pub fn custom_json(d: &Document) -> serde_json::Value {
    bson::Bson::Document(d.clone()).into_relaxed_extjson()
}

/// A percentage 0..=100 (`default` when absent); 400 on `field` otherwise.
pub fn percent(field: &str, v: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if (0..=100).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(field, "must be 0 to 100")),
    }
}

/// A lead's priorities on the wire ([`Priority`]'s serde names).
pub const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];

/// Schema of a lead priority ([`PRIORITIES`]).
pub fn priority_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&PRIORITIES)
}

/// A priority (`medium` when absent); 400 otherwise.
pub fn priority(v: Option<&str>) -> Result<Priority, ApiError> {
    let v = validate::one_of("priority", v.unwrap_or("medium"), &PRIORITIES)?;
    validate::parse_enum("priority", &v, "must be low, medium, high or urgent")
}

/// Schema of a lead stage name ([`schemas::crm::LeadStage::ALL`]).
pub fn lead_stage_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = schemas::crm::LeadStage::ALL.iter().map(|s| s.name()).collect();
    crate::openapi::enumeration(&names)
}

/// Schema of a new lead's stage: an open one (not `won` or `lost`).
pub fn open_lead_stage_schema() -> utoipa::openapi::Object {
    use schemas::crm::LeadStage;
    let names: Vec<&str> =
        LeadStage::ALL.iter().filter(|s| !matches!(s, LeadStage::Won | LeadStage::Lost)).map(|s| s.name()).collect();
    crate::openapi::enumeration(&names)
}

/// Tags: at most 20 of 1..=30 characters each.
pub fn tags(field: &str, v: &[String]) -> Result<Vec<String>, ApiError> {
    validate::texts(field, v, 20, 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_priorities_are_the_priorities_the_api_reads() {
        for p in PRIORITIES {
            assert_eq!(validate::wire(&priority(Some(p)).unwrap()), p);
        }
        assert!(priority(Some("HIGH")).is_err());
        assert_eq!(priority(None).unwrap(), Priority::Medium);
    }
}
