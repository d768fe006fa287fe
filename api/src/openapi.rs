//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and the DTOs' `ToSchema`, so it
//! cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::{alerts, analytics, audit_log, billing, campaigns, crm, gdpr, identity, links, ops, tenants};

/// The API's OpenAPI document: the info, tags and security scheme here,
/// every domain's paths merged in.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        tenants::Doc::openapi(),
        identity::Doc::openapi(),
        links::Doc::openapi(),
        analytics::Doc::openapi(),
        crm::Doc::openapi(),
        campaigns::Doc::openapi(),
        billing::Doc::openapi(),
        gdpr::Doc::openapi(),
        audit_log::Doc::openapi(),
        ops::Doc::openapi(),
        alerts::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// The API's OpenAPI frame (info, tags, bearer scheme); [`document`] adds
/// the paths.
#[derive(OpenApi)]
#[openapi(
    info(title = "smartlinks API", version = "1", description = "Tenants, API keys, smartlinks and analytics. Authenticate with `Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."),
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
        (name = "alerts", description = "Tracking-health alerts to tenants (seed 002): settings, health now, delivery log"),
        (name = "ops", description = "Operations: Alertmanager's webhook receiver, emailing the operators (operator key)"),
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

    /// `(method, path)` of the routes served without a key
    /// ([`crate::identity::public_router`]), read from its source.
    fn identity_public_routes() -> std::collections::BTreeSet<(String, String)> {
        let src = include_str!("identity/mod.rs");
        let body = &src[src.find("pub fn public_router").unwrap()..];
        let body = &body[..body.find("\n}").unwrap()];
        body.split(".route(\"")
            .skip(1)
            .map(|part| {
                let (path, rest) = part.split_once('"').unwrap();
                let method = ["get", "post", "patch", "put", "delete"]
                    .into_iter()
                    .find(|m| rest.contains(&format!("{m}(")))
                    .unwrap();
                (method.to_string(), path.to_string())
            })
            .collect()
    }

    #[test]
    fn document_lists_every_route_of_the_router_with_bearer_auth() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // Every `.route("/v1/…", method(…))` of the routers, read from their source.
        let src = [
            include_str!("lib.rs"),
            include_str!("tenants/mod.rs"),
            include_str!("identity/mod.rs"),
            include_str!("links/mod.rs"),
            include_str!("analytics/mod.rs"),
            include_str!("crm/mod.rs"),
            include_str!("campaigns/mod.rs"),
            include_str!("billing/mod.rs"),
            include_str!("gdpr/mod.rs"),
            include_str!("audit_log/mod.rs"),
            include_str!("ops/mod.rs"),
            include_str!("alerts/mod.rs"),
        ]
        .concat();
        // `.route(\n "/path", …)` as rustfmt breaks a long one: the same as on one line.
        let src = src.split(".route(").map(str::trim_start).collect::<Vec<_>>().join(".route(");
        let mut routed = std::collections::BTreeSet::new();
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
                    routed.insert((m.to_string(), path.to_string()));
                }
            }
        }
        // The routers' real size (a parse that misses routes fails here).
        assert_eq!(routed.len(), 82, "routes read from the routers: {routed:?}");
        for r in crate::audit::PERSONAL_READS {
            assert!(routed.contains(&("get".to_string(), r.to_string())), "audited read {r} is not a GET route");
        }
        // The other direction: every documented operation is routed, and
        // needs the bearer key unless it is one of the public routes.
        let public = identity_public_routes();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let key = (method.clone(), path.clone());
                assert!(routed.contains(&key), "{method} {path} is documented but not routed");
                let bearer = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                assert_eq!(bearer, !public.contains(&key), "{method} {path}: security {:?}", op["security"]);
            }
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["SmartlinkCreate"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
