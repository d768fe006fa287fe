//! Loading one tenant-owned document by id, the same way for every
//! resource: a malformed id, a missing document and another tenant's
//! document all answer 404, so ids never reveal what exists elsewhere.

use bson::{doc, oid::ObjectId};
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Loads document `id` (24 hex) of `collection` if the caller may see its
/// tenant (`owner`); 404 naming `what` otherwise, also for malformed ids and
/// other tenants' documents.
pub async fn load_owned<T>(
    st: &AppState,
    p: &Principal,
    collection: &str,
    what: &'static str,
    id: &str,
    owner: fn(&T) -> ObjectId,
) -> Result<T, ApiError>
where
    T: DeserializeOwned + Send + Sync,
{
    let id = crate::validate::object_id("id", id).map_err(|_| ApiError::NotFound(what))?;
    let doc =
        st.mongo.collection::<T>(collection).find_one(doc! { "_id": id }).await?.ok_or(ApiError::NotFound(what))?;
    p.check_tenant(owner(&doc), what)?;
    Ok(doc)
}

/// Saves `new` as the one document of tenant `client_id` in `collection`
/// (`_id` = the tenant: settings), replacing `old` or creating it, and
/// audits it as an `update` of `resource` with the field changes from
/// `old`. Errors: MongoDB (503).
#[allow(clippy::too_many_arguments)]
pub async fn save_tenant_document<T>(
    st: &AppState,
    p: &Principal,
    meta: &crate::audit::Meta,
    collection: &str,
    resource: &'static str,
    client_id: ObjectId,
    old: Option<&T>,
    new: &T,
) -> Result<(), ApiError>
where
    T: serde::Serialize + Send + Sync,
{
    st.mongo.collection::<T>(collection).replace_one(doc! { "_id": client_id }, new).upsert(true).await?;
    let target = crate::audit::Target { client_id, action: "update", resource, id: client_id };
    crate::audit::changed(st, p, meta, target, old, Some(new)).await
}

/// Deletes the document `t.id` of tenant `t.client_id` from `collection`
/// and audits it (`t`, with `old` as it was). Errors: MongoDB (503).
pub async fn delete_owned<T>(
    st: &AppState,
    p: &Principal,
    meta: &crate::audit::Meta,
    collection: &str,
    t: crate::audit::Target<'_>,
    old: &T,
) -> Result<(), ApiError>
where
    T: serde::Serialize + Send + Sync,
{
    st.mongo.collection::<T>(collection).delete_one(doc! { "_id": t.id, "clientId": t.client_id }).await?;
    crate::audit::changed(st, p, meta, t, Some(old), None).await
}
