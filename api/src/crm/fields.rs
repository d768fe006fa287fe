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

/// A priority (`medium` when absent); 400 otherwise.
pub fn priority(v: Option<&str>) -> Result<Priority, ApiError> {
    match v.unwrap_or("medium") {
        "low" => Ok(Priority::Low),
        "medium" => Ok(Priority::Medium),
        "high" => Ok(Priority::High),
        "urgent" => Ok(Priority::Urgent),
        _ => Err(ApiError::invalid("priority", "must be low, medium, high or urgent")),
    }
}

/// Tags: at most 20 of 1..=30 characters each.
pub fn tags(field: &str, v: &[String]) -> Result<Vec<String>, ApiError> {
    validate::texts(field, v, 20, 30)
}
