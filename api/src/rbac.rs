//! Who may do what: one permission check for API keys and user sessions
//! (issue #6; seed 001 `permissions`: create/read/update/delete per
//! resource, `analytics.export`, `admin.{users, settings, audit}`).
//!
//! | resource | admin | manager | agent | viewer |
//! |---|---|---|---|---|
//! | links | CRUD | CRUD | R | R |
//! | analytics | R, export | R, export | R | R |
//! | leads, contacts, opportunities, tasks, activities | CRUD | CRUD | CRU | R |
//! | users | CRUD | R | – | – |
//! | settings (CRM settings) | RU | R | R | R |
//! | audit | R | – | – | – |
//! | campaigns | CRUD | CRUD | CRU | R |
//! | billing (invoices, payments) | CRUD | CRU | R | – |
//! | gdpr (consents, newsletter, data-subject export and erasure) | CRUD, export | R | – | – |
//! | alerts (tracking-health settings, states, deliveries) | RU | RU | R | R |
//!
//! Tenant API keys hold scopes instead: `links:read`, `links:write`
//! (links CRUD), `analytics:read` (read, export), `crm:read`, `crm:write`
//! (CRM CRU; both read the CRM settings), `campaigns:read`,
//! `campaigns:write` (CRU), `billing:read`, `billing:write` (CRU),
//! `gdpr:write` (consents, newsletter, data-subject requests: what a
//! tenant's website backend needs), `alerts:write` (alert settings;
//! `analytics:read` reads alerts). The operator key may do everything.

use schemas::mongo::Role;

/// What is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Smartlinks.
    Links,
    /// Analytics.
    Analytics,
    /// CRM leads.
    Leads,
    /// CRM contacts.
    Contacts,
    /// CRM opportunities.
    Opportunities,
    /// CRM tasks.
    Tasks,
    /// CRM activities (timeline).
    Activities,
    /// Back-office users.
    Users,
    /// CRM settings.
    Settings,
    /// The audit log.
    Audit,
    /// Campaigns and their KPIs.
    Campaigns,
    /// Invoices and payments.
    Billing,
    /// Consents, newsletter, data-subject requests.
    Gdpr,
    /// Tracking-health alerts: settings, states, delivery log.
    Alerts,
    /// Conversion destinations (ad platforms' accounts and credentials)
    /// and their delivery log (issue #19).
    Destinations,
    /// Tenant webhook endpoints, their delivery log and replays (issue #19).
    Webhooks,
}

impl Resource {
    /// Every resource, in the table's order.
    pub const ALL: [Resource; 16] = [
        Resource::Links,
        Resource::Analytics,
        Resource::Leads,
        Resource::Contacts,
        Resource::Opportunities,
        Resource::Tasks,
        Resource::Activities,
        Resource::Users,
        Resource::Settings,
        Resource::Audit,
        Resource::Campaigns,
        Resource::Billing,
        Resource::Gdpr,
        Resource::Alerts,
        Resource::Destinations,
        Resource::Webhooks,
    ];

    /// The name used in audit records and errors (`leads`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Links => "links",
            Resource::Analytics => "analytics",
            Resource::Leads => "leads",
            Resource::Contacts => "contacts",
            Resource::Opportunities => "opportunities",
            Resource::Tasks => "tasks",
            Resource::Activities => "activities",
            Resource::Users => "users",
            Resource::Settings => "settings",
            Resource::Audit => "audit",
            Resource::Campaigns => "campaigns",
            Resource::Billing => "billing",
            Resource::Gdpr => "gdpr",
            Resource::Alerts => "alerts",
            Resource::Destinations => "destinations",
            Resource::Webhooks => "webhooks",
        }
    }

    fn is_crm(self) -> bool {
        matches!(
            self,
            Resource::Leads | Resource::Contacts | Resource::Opportunities | Resource::Tasks | Resource::Activities
        )
    }
}

/// What is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create.
    Create,
    /// Read.
    Read,
    /// Update.
    Update,
    /// Delete (or archive).
    Delete,
    /// Export (analytics CSV).
    Export,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [Action::Create, Action::Read, Action::Update, Action::Delete, Action::Export];

    /// `create`, `read`, ...
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
        }
    }
}

/// What `role` may do, as `resource:action` names (`links:create`): the
/// table above, for clients such as the dashboard to show only what the
/// user may do (the API checks every request regardless).
pub fn permissions(role: Role) -> Vec<String> {
    Resource::ALL
        .iter()
        .flat_map(|r| Action::ALL.iter().map(move |a| (*r, *a)))
        .filter(|(r, a)| role_allows(role, *r, *a))
        .map(|(r, a)| format!("{}:{}", r.name(), a.name()))
        .collect()
}

/// Whether a user with `role` may do `action` on `resource` (the table above).
pub fn role_allows(role: Role, resource: Resource, action: Action) -> bool {
    use Action::*;
    use Resource::*;
    match role {
        Role::Admin => {
            !(matches!(resource, Settings | Alerts) && matches!(action, Create | Delete))
                && (action != Export || matches!(resource, Analytics | Gdpr))
        }
        Role::Manager => match resource {
            Links | Campaigns => matches!(action, Create | Read | Update | Delete),
            Alerts => matches!(action, Read | Update),
            Destinations | Webhooks => action == Read,
            Billing => matches!(action, Create | Read | Update),
            Gdpr => action == Read,
            Analytics => matches!(action, Read | Export),
            r if r.is_crm() => matches!(action, Create | Read | Update | Delete),
            Users | Settings => action == Read,
            _ => false,
        },
        Role::Agent => match resource {
            Links | Analytics | Settings | Billing | Alerts => action == Read,
            r if r.is_crm() || r == Campaigns => matches!(action, Create | Read | Update),
            _ => false,
        },
        Role::Viewer => {
            action == Read
                && (matches!(resource, Links | Analytics | Settings | Campaigns | Alerts) || resource.is_crm())
        }
    }
}

/// Whether a tenant key with `scopes` may do `action` on `resource`.
pub fn scopes_allow(scopes: &[String], resource: Resource, action: Action) -> bool {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    match resource {
        Resource::Links => has("links:write") || (action == Action::Read && has("links:read")),
        Resource::Analytics => matches!(action, Action::Read | Action::Export) && has("analytics:read"),
        r if r.is_crm() => {
            (has("crm:write") && action != Action::Delete)
                || (action == Action::Read && (has("crm:read") || has("crm:write")))
        }
        Resource::Settings => action == Action::Read && (has("crm:read") || has("crm:write")),
        Resource::Campaigns => {
            (has("campaigns:write") && action != Action::Delete)
                || (action == Action::Read && (has("campaigns:read") || has("campaigns:write")))
        }
        Resource::Billing => {
            (has("billing:write") && action != Action::Delete)
                || (action == Action::Read && (has("billing:read") || has("billing:write")))
        }
        Resource::Gdpr => has("gdpr:write"),
        Resource::Alerts => {
            (has("alerts:write") && matches!(action, Action::Read | Action::Update))
                || (action == Action::Read && has("analytics:read"))
        }
        Resource::Destinations => has("destinations:write") && action != Action::Export,
        Resource::Webhooks => has("webhooks:write") && action != Action::Export,
        _ => false,
    }
}

/// Every scope a tenant key may hold.
pub const SCOPES: [&str; 13] = [
    "links:read",
    "links:write",
    "analytics:read",
    "crm:read",
    "crm:write",
    "campaigns:read",
    "campaigns:write",
    "billing:read",
    "billing:write",
    "gdpr:write",
    "alerts:write",
    "destinations:write",
    "webhooks:write",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_list_what_the_role_may_do() {
        let viewer = permissions(Role::Viewer);
        assert!(viewer.contains(&"links:read".to_owned()));
        assert!(!viewer.iter().any(|p| p == "links:create" || p == "analytics:export"));
        let manager = permissions(Role::Manager);
        assert!(manager.contains(&"links:create".to_owned()) && manager.contains(&"analytics:export".to_owned()));
        assert_eq!(
            permissions(Role::Admin).len(),
            Resource::ALL
                .iter()
                .flat_map(|r| Action::ALL.map(|a| (*r, a)))
                .filter(|(r, a)| role_allows(Role::Admin, *r, *a))
                .count()
        );
    }

    #[test]
    fn matrix_spot_checks() {
        assert!(role_allows(Role::Admin, Resource::Audit, Action::Read));
        assert!(role_allows(Role::Admin, Resource::Users, Action::Delete));
        assert!(!role_allows(Role::Manager, Resource::Audit, Action::Read));
        assert!(!role_allows(Role::Manager, Resource::Users, Action::Create));
        assert!(role_allows(Role::Manager, Resource::Leads, Action::Delete));
        assert!(role_allows(Role::Manager, Resource::Analytics, Action::Export));
        assert!(!role_allows(Role::Agent, Resource::Leads, Action::Delete));
        assert!(role_allows(Role::Agent, Resource::Leads, Action::Update));
        assert!(!role_allows(Role::Agent, Resource::Analytics, Action::Export));
        assert!(!role_allows(Role::Agent, Resource::Links, Action::Update));
        assert!(role_allows(Role::Viewer, Resource::Contacts, Action::Read));
        assert!(!role_allows(Role::Viewer, Resource::Contacts, Action::Create));
        assert!(!role_allows(Role::Viewer, Resource::Users, Action::Read));
        let s = vec!["links:write".to_string()];
        assert!(scopes_allow(&s, Resource::Links, Action::Read));
        assert!(!scopes_allow(&s, Resource::Analytics, Action::Read));
        assert!(!scopes_allow(&["crm:write".to_string()], Resource::Leads, Action::Delete));
        assert!(!scopes_allow(&["crm:write".to_string()], Resource::Users, Action::Read));
        assert!(
            role_allows(Role::Admin, Resource::Gdpr, Action::Export)
                && !role_allows(Role::Manager, Resource::Gdpr, Action::Export)
        );
        assert!(
            role_allows(Role::Manager, Resource::Billing, Action::Create)
                && !role_allows(Role::Agent, Resource::Billing, Action::Create)
        );
        assert!(
            !role_allows(Role::Viewer, Resource::Billing, Action::Read)
                && role_allows(Role::Viewer, Resource::Campaigns, Action::Read)
        );
        assert!(
            scopes_allow(&["billing:write".to_string()], Resource::Billing, Action::Update)
                && !scopes_allow(&["billing:read".to_string()], Resource::Billing, Action::Create)
        );
    }
}
