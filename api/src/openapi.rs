//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and the DTOs' `ToSchema`, so it
//! cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes::{
    account, analytics, audit_log, campaigns, clients, contacts, crm, crm_settings, gdpr, invoices, smartlinks, tasks,
    users,
};

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
        account::request_verification, account::verify_email, account::request_reset, account::reset_password,
        contacts::create, contacts::list, contacts::get, contacts::patch, contacts::delete, crm_settings::get, crm_settings::put,
        crm::list_opportunities, crm::patch_opportunity, crm::dashboard,
        campaigns::create, campaigns::list_campaigns, campaigns::get, campaigns::patch, campaigns::put_kpis, campaigns::list_kpis, campaigns::import_kpis, campaigns::performance,
        gdpr::put_consent, gdpr::get_consent, gdpr::export, gdpr::erase, gdpr::subscribe, gdpr::unsubscribe, gdpr::list_subscribers,
        invoices::create, invoices::list, invoices::get, invoices::patch, invoices::pdf, invoices::send, invoices::record_payment, invoices::list_payments, invoices::overdue_sweep,
        tasks::create, tasks::list, tasks::patch, tasks::create_activity, tasks::timeline,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their API keys (operator)"),
        (name = "smartlinks", description = "Smartlinks of a tenant"),
        (name = "crm", description = "Leads, contacts, opportunities, pipeline dashboard"),
        (name = "campaigns", description = "Campaigns, daily ad KPIs (derived ratios computed), performance beside the pipeline's click-outs"),
        (name = "gdpr", description = "Consents and newsletter with history; data-subject export and erasure"),
        (name = "billing", description = "Invoices (gapless numbers, minor units, VAT), PDFs, payments with idempotency keys"),
        (name = "users", description = "Back-office users, login sessions, TOTP"),
        (name = "analytics", description = "Views, clicks, visitors: rollups for closed windows, raw events for the open ones"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_of_the_router_with_bearer_auth() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // Every `.route("/v1/…", method(…))` of the router, read from its source.
        let src = include_str!("lib.rs");
        let mut seen = 0;
        for part in src.split(".route(\"").skip(1) {
            let (path, rest) = part.split_once('"').unwrap();
            if path == "/v1/openapi.json" {
                continue;
            }
            let methods = rest.split_once("))\n").map_or(rest, |(m, _)| m);
            for m in ["get", "post", "patch", "put", "delete"] {
                if methods.contains(&format!("{m}(")) {
                    assert!(
                        paths.get(path).and_then(|p| p.get(m)).is_some(),
                        "{m} {path} is routed but not in the OpenAPI document"
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen >= 52, "read {seen} routes from lib.rs: the parse above missed some");
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["SmartlinkCreate"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
