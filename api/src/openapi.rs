//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and the DTOs' `ToSchema`, so it
//! cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes::{analytics, audit_log, clients, crm, smartlinks, tasks, users};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "smartlinks API", version = "1", description = "Tenants, API keys, smartlinks and analytics. Authenticate with `Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."),
    paths(
        clients::create, clients::list, clients::get, clients::create_key, clients::list_keys, clients::revoke_key,
        smartlinks::create, smartlinks::list, smartlinks::get, smartlinks::patch, smartlinks::archive,
        analytics::overview, analytics::timeseries, analytics::breakdown, analytics::realtime, analytics::health, analytics::export,
        users::create, users::list, users::me, users::patch, users::login, users::logout, users::totp_setup, users::totp_enable, audit_log::list,
        crm::create_lead, crm::list_leads, crm::get_lead, crm::patch_lead, crm::delete_lead, crm::add_note, crm::convert,
        crm::list_contacts, crm::list_opportunities, crm::patch_opportunity, crm::dashboard,
        tasks::create, tasks::list, tasks::patch, tasks::create_activity, tasks::timeline,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their API keys (operator)"),
        (name = "smartlinks", description = "Smartlinks of a tenant"),
        (name = "crm", description = "Leads, contacts, opportunities, pipeline dashboard"),
        (name = "users", description = "Back-office users, login sessions, TOTP"),
        (name = "analytics", description = "Views, clicks, visitors: rollups for closed windows, raw events for the open ones"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_with_bearer_auth() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/clients",
            "/v1/clients/{id}",
            "/v1/clients/{id}/api-keys",
            "/v1/clients/{id}/api-keys/{key_id}",
            "/v1/smartlinks",
            "/v1/smartlinks/{id}",
            "/v1/analytics/overview",
            "/v1/analytics/timeseries",
            "/v1/analytics/breakdown",
            "/v1/analytics/realtime",
            "/v1/analytics/health",
            "/v1/analytics/export",
            "/v1/users",
            "/v1/auth/login",
            "/v1/audit",
            "/v1/leads",
            "/v1/leads/{id}/convert",
            "/v1/opportunities/{id}",
            "/v1/crm/dashboard",
            "/v1/tasks",
            "/v1/activities",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["SmartlinkCreate"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
