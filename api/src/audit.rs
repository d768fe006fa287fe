//! The audit log (issue #6, seed 001 `AuditLog`): every mutation through
//! the API leaves one record — who (operator, key or user with role), what
//! (action, resource, id, changed fields with old and new values), from
//! where (IP, user agent), when, and whether it succeeded. Secrets and
//! encrypted fields appear as `"[redacted]"`. Records are only ever
//! inserted; the API has no route that changes or deletes them.
//!
//! Successful mutations are recorded by their handlers with the diff
//! ([`record`]); refused or failed ones, and reads of personal data, by
//! [`trail`], a middleware behind authentication.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bson::{oid::ObjectId, Bson, DateTime, Document};
use schemas::crm::{AuditRecord, FieldChange};
use schemas::mongo::collections;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Shown instead of secret and encrypted values.
pub const REDACTED: &str = "[redacted]";

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Client IP: the last `X-Forwarded-For` hop (the one the proxy
    /// appended; earlier ones are the client's to write) when the peer is a
    /// loopback proxy, else the peer.
    pub ip: String,
    /// `User-Agent`, at most 512 bytes.
    pub user_agent: String,
}

impl Meta {
    /// The client IP of [`Meta::ip`], parsed; `None` when unknown.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.ip.parse().ok()
    }

    /// Reads the request's origin from its parts (peer, headers).
    pub fn from_parts(parts: &Parts) -> Meta {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
        let ip = match (peer, forwarded) {
            (Some(p), Some(f)) if p.is_loopback() => f,
            (Some(p), _) => p.to_string(),
            (None, f) => f.unwrap_or_default(),
        };
        let mut user_agent = parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if user_agent.len() > 512 {
            let mut cut = 512;
            while !user_agent.is_char_boundary(cut) {
                cut -= 1;
            }
            user_agent.truncate(cut);
        }
        Meta { ip, user_agent }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta::from_parts(parts))
    }
}

fn is_secret(key: &str) -> bool {
    key.ends_with("Enc") || key.ends_with("Hash") || key.ends_with("Index") || key == "password" || key == "secret"
}

/// Leaves of `doc` by dotted path: `(stored value, secret?)`. A secret key
/// is a leaf even when its value is a document.
fn flatten(prefix: &str, doc: &Document, out: &mut BTreeMap<String, (Bson, bool)>) {
    for (k, v) in doc {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            _ if is_secret(k) => {
                out.insert(path, (v.clone(), true));
            }
            Bson::Document(d) => flatten(&path, d, out),
            other => {
                out.insert(path, (other.clone(), false));
            }
        }
    }
}

/// The fields that differ between `old` and `new` (dotted paths; arrays
/// compared whole; `_id` and `updatedAt` left out). A secret field is
/// listed when its stored value changed, with both sides redacted.
pub fn diff(old: Option<&Document>, new: Option<&Document>) -> Vec<FieldChange> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    if let Some(d) = old {
        flatten("", d, &mut a);
    }
    if let Some(d) = new {
        flatten("", d, &mut b);
    }
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let shown = |v: Option<&(Bson, bool)>| match v {
        None => Bson::Null,
        Some((_, true)) => Bson::String(REDACTED.into()),
        Some((v, false)) => v.clone(),
    };
    keys.into_iter()
        .filter(|k| *k != "_id" && !k.ends_with("updatedAt"))
        .filter(|k| a.get(*k).map(|v| &v.0) != b.get(*k).map(|v| &v.0))
        .map(|k| FieldChange { field: k.clone(), old: shown(a.get(k)), new: shown(b.get(k)) })
        .collect()
}

/// What one audit record says.
pub struct Entry<'a> {
    /// Tenant concerned.
    pub client_id: Option<ObjectId>,
    /// `create`, `update`, `delete`, `login`, ...
    pub action: &'a str,
    /// `leads`, `smartlinks`, ...
    pub resource: &'a str,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Changed fields ([`diff`]).
    pub changes: Vec<FieldChange>,
    /// Success, or the error code.
    pub outcome: Result<(), String>,
}

/// Appends one record for `entry` by `p` from `meta`.
pub async fn record(st: &AppState, p: Option<&Principal>, meta: &Meta, entry: Entry<'_>) -> Result<(), ApiError> {
    let r = AuditRecord {
        id: ObjectId::new(),
        client_id: entry.client_id.or_else(|| p.and_then(Principal::own_client)),
        actor: p.map(Principal::actor).unwrap_or_else(|| schemas::crm::Actor {
            kind: "anonymous".into(),
            id: None,
            role: String::new(),
        }),
        action: entry.action.into(),
        resource: entry.resource.into(),
        resource_id: entry.resource_id,
        changes: entry.changes,
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        at: DateTime::now(),
        success: entry.outcome.is_ok(),
        error_code: entry.outcome.err(),
    };
    st.mongo.collection::<AuditRecord>(collections::AUDIT_LOGS).insert_one(r).await?;
    Ok(())
}

/// What a successful change touched.
pub struct Target<'a> {
    /// Tenant.
    pub client_id: ObjectId,
    /// `create`, `update`, `delete`, ...
    pub action: &'a str,
    /// Collection-like resource name (`smartlinks`).
    pub resource: &'a str,
    /// Document id.
    pub id: ObjectId,
}

/// Records `p`'s successful change of `t` from `old` to `new`
/// (serialisable documents; `None` for create or delete).
pub async fn changed<T: serde::Serialize>(
    st: &AppState,
    p: &Principal,
    meta: &Meta,
    t: Target<'_>,
    old: Option<&T>,
    new: Option<&T>,
) -> Result<(), ApiError> {
    let to_doc = |v: Option<&T>| v.and_then(|v| bson::to_document(v).ok());
    let (o, n) = (to_doc(old), to_doc(new));
    let entry = Entry {
        client_id: Some(t.client_id),
        action: t.action,
        resource: t.resource,
        resource_id: Some(t.id.to_hex()),
        changes: diff(o.as_ref(), n.as_ref()),
        outcome: Ok(()),
    };
    record(st, Some(p), meta, entry).await
}

/// `GET` routes whose answers carry decrypted personal data (emails,
/// phones, addresses, names of people) or a document made of them (the
/// invoice PDF). Each successful read is audited (security review finding
/// 17; GDPR art. 5(2) accountability), the caller's own profile excepted.
pub const PERSONAL_READS: &[&str] = &[
    "/v1/users",
    "/v1/leads",
    "/v1/leads/{id}",
    "/v1/contacts",
    "/v1/contacts/{id}",
    "/v1/invoices",
    "/v1/invoices/{id}",
    "/v1/invoices/{id}/pdf",
    "/v1/invoices/{id}/payments",
    "/v1/gdpr/consents",
    "/v1/newsletter",
    "/v1/alerts/settings",
];

/// Middleware (behind authentication), the audit trail of what handlers do
/// not record themselves:
/// - refused or failed mutations (`POST`, `PUT`, `PATCH`, `DELETE` answered
///   4xx/5xx) as `METHOD /route` with `http_<status>` as the error code;
/// - successful reads of [`PERSONAL_READS`], as action `read` with the
///   route's first segment as resource (`leads`) and the record's id as
///   resource id on `{id}` routes (nothing of the query, which may hold
///   an email).
pub async fn trail(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mutation = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let personal_read = req.method() == Method::GET && PERSONAL_READS.contains(&route.as_str());
    if !mutation && !personal_read {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let meta = Meta::from_parts(&parts);
    let principal = parts.extensions.get::<Principal>().cloned();
    // The record's id: the `{id}` segment of the path, if the route has one.
    let id = route.split('/').position(|seg| seg == "{id}").and_then(|i| parts.uri.path().split('/').nth(i));
    let resource_id = id.map(str::to_owned);
    let action = format!("{} {route}", parts.method);
    let resp = next.run(Request::from_parts(parts, body)).await;
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    let resource = route.trim_start_matches("/v1/").split('/').next().unwrap_or("").to_string();
    let entry = if mutation && failed {
        Entry {
            client_id: None,
            action: &action,
            resource: &resource,
            resource_id: None,
            changes: Vec::new(),
            outcome: Err(format!("http_{}", resp.status().as_u16())),
        }
    } else if personal_read && resp.status().is_success() {
        Entry {
            client_id: None,
            action: "read",
            resource: &resource,
            resource_id,
            changes: Vec::new(),
            outcome: Ok(()),
        }
    } else {
        return resp;
    };
    if let Err(e) = record(&st, principal.as_ref(), &meta, entry).await {
        tracing::warn!(error = %e, route = %route, "audit record not written");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn diffs_name_fields_and_redact_secrets() {
        let old = doc! { "_id": 1, "slug": "a", "track": { "title": "T", "artistName": "A" }, "auth": { "passwordHash": "h1", "emailEnc": "e1" }, "updatedAt": 1 };
        let new = doc! { "_id": 1, "slug": "b", "track": { "title": "T", "artistName": "B" }, "auth": { "passwordHash": "h2", "emailEnc": "e1" }, "updatedAt": 2 };
        let d = diff(Some(&old), Some(&new));
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["auth.passwordHash", "slug", "track.artistName"]);
        assert_eq!(d[0].old, Bson::String(REDACTED.into()));
        assert_eq!(d[0].new, Bson::String(REDACTED.into()));
        assert_eq!(d[1].new, Bson::String("b".into()));
        let created = diff(None, Some(&doc! { "a": 1 }));
        assert_eq!((created[0].old.clone(), created[0].new.clone()), (Bson::Null, Bson::Int32(1)));
    }
}
