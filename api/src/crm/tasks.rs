//! CRM tasks (seed 003 `tasks`) and the activity timeline of a CRM record:
//! manual entries (calls, emails, meetings, notes) merged with every change
//! the audit log holds for that record, newest first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, DateTime};
use futures::TryStreamExt;
use schemas::crm::{Activity, AuditRecord, Contact, Lead, Opportunity, Related, Task};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Meta, Target};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::identity::assignee;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::Tenant;
use crate::validate::{self, one_of, rfc};

const PRIORITIES: [&str; 4] = ["LOW", "MEDIUM", "HIGH", "URGENT"];
const STATUSES: [&str; 4] = ["PENDING", "IN_PROGRESS", "COMPLETED", "CANCELLED"];

/// The kinds of CRM records tasks and activities refer to.
const RELATED_KINDS: [&str; 3] = ["lead", "contact", "opportunity"];

/// Schema of [`RelatedDto::kind`].
fn related_kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&RELATED_KINDS)
}

/// The kinds of manual activities.
const ACTIVITY_KINDS: [&str; 4] = ["call", "email", "meeting", "note"];

/// Schema of [`ActivityCreate::kind`].
fn activity_kind_schema() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&ACTIVITY_KINDS)
}

/// A reference to a CRM record in a request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelatedDto {
    /// `lead`, `contact` or `opportunity`.
    #[schema(schema_with = related_kind_schema)]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// Checks that `r` names a record of tenant `client_id`: 400 when it is
/// malformed, 404 when the tenant has no such record.
async fn related(st: &AppState, client_id: ObjectId, r: &RelatedDto) -> Result<Related, ApiError> {
    let id = validate::object_id("related.id", &r.id)?;
    let f = doc! { "_id": id, "clientId": client_id };
    let kind = one_of("related.kind", &r.kind, &RELATED_KINDS)?;
    let found = match kind.as_str() {
        "lead" => st.mongo.collection::<Lead>(collections::LEADS).find_one(f).await?.is_some(),
        "contact" => st.mongo.collection::<Contact>(collections::CONTACTS).find_one(f).await?.is_some(),
        _ => st.mongo.collection::<Opportunity>(collections::OPPORTUNITIES).find_one(f).await?.is_some(),
    };
    if !found {
        return Err(ApiError::unknown("related.id", "record"));
    }
    Ok(Related { kind: r.kind.clone(), id })
}

/// `POST /v1/tasks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCreate {
    /// Tenant; required with the operator key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Title, 1..=200.
    #[schema(schema_with = crate::openapi::text_200)]
    pub title: String,
    /// Description, at most 5000.
    #[serde(default)]
    pub description: Option<String>,
    /// One of the tenant's task types (CRM settings; by default `CALL`,
    /// `EMAIL`, `MEETING`, `TODO`, `FOLLOWUP`); default `TODO`, or the first
    /// type when the tenant has no `TODO`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `LOW`, `MEDIUM` (default), `HIGH`, `URGENT`.
    #[serde(default)]
    #[schema(pattern = "^(LOW|MEDIUM|HIGH|URGENT)$")]
    pub priority: Option<String>,
    /// Due, RFC 3339.
    #[serde(default)]
    pub due_at: Option<String>,
    /// The record it is about.
    #[serde(default)]
    pub related: Option<RelatedDto>,
    /// Assignee (a user of the tenant).
    #[serde(default)]
    pub assigned_to: Option<String>,
}

/// `PATCH /v1/tasks/{id}` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// Title.
    #[schema(schema_with = crate::openapi::text_200)]
    pub title: Option<String>,
    /// `PENDING`, `IN_PROGRESS`, `COMPLETED`, `CANCELLED`.
    #[schema(pattern = "^(PENDING|IN_PROGRESS|COMPLETED|CANCELLED)$")]
    pub status: Option<String>,
    /// Priority.
    #[schema(pattern = "^(LOW|MEDIUM|HIGH|URGENT)$")]
    pub priority: Option<String>,
    /// Due, RFC 3339.
    pub due_at: Option<String>,
    /// Assignee (empty string unassigns).
    pub assigned_to: Option<String>,
}

/// A task as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Kind.
    pub kind: String,
    /// Priority.
    pub priority: String,
    /// Status.
    pub status: String,
    /// Due, RFC 3339.
    pub due_at: Option<String>,
    /// Open and past due.
    pub overdue: bool,
    /// The record it is about.
    pub related: Option<RelatedDto>,
    /// Assignee.
    pub assigned_to: Option<String>,
    /// Completed at, RFC 3339.
    pub completed_at: Option<String>,
}

fn open(t: &Task) -> bool {
    matches!(t.status.as_str(), "PENDING" | "IN_PROGRESS")
}

fn view(t: &Task) -> TaskView {
    TaskView {
        id: t.id.to_hex(),
        title: t.title.clone(),
        description: t.description.clone(),
        kind: t.kind.clone(),
        priority: t.priority.clone(),
        status: t.status.clone(),
        due_at: t.due_at.map(rfc),
        overdue: open(t) && t.due_at.is_some_and(|d| d < DateTime::now()),
        related: t.related.as_ref().map(|r| RelatedDto { kind: r.kind.clone(), id: r.id.to_hex() }),
        assigned_to: t.assigned_to.map(|a| a.to_hex()),
        completed_at: t.completed_at.map(rfc),
    }
}

fn due(v: Option<&str>) -> Result<Option<DateTime>, ApiError> {
    v.map(|d| validate::rfc3339("due_at", d).map(|s| DateTime::from_millis(i64::from(s) * 1000))).transpose()
}

/// Creates a task.
#[utoipa::path(post, path = "/v1/tasks", tag = "crm", request_body = TaskCreate,
    responses((status = 201, body = TaskView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<TaskCreate>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    p.can(Resource::Tasks, Action::Create)?;
    let client = Tenant::resolve(&st, &p, b.client_id.as_deref()).await?;
    let settings = super::settings::load(&st, client.id).await?;
    let kinds: Vec<&str> = settings.task_types.iter().map(String::as_str).collect();
    let t = Task {
        id: ObjectId::new(),
        client_id: client.id,
        title: validate::text("title", &b.title, 1, 200)?,
        description: validate::opt_text("description", b.description.as_deref(), 5000)?.unwrap_or_default(),
        kind: one_of(
            "kind",
            b.kind.as_deref().unwrap_or(if kinds.contains(&"TODO") {
                "TODO"
            } else {
                kinds.first().copied().unwrap_or("TODO")
            }),
            &kinds,
        )?,
        priority: one_of("priority", b.priority.as_deref().unwrap_or("MEDIUM"), &PRIORITIES)?,
        status: "PENDING".into(),
        due_at: due(b.due_at.as_deref())?,
        related: match &b.related {
            Some(r) => Some(related(&st, client.id, r).await?),
            None => None,
        },
        assigned_to: match b.assigned_to.as_deref() {
            Some(a) => assignee(&st, client.id, a).await?,
            None => p.user_id(),
        },
        created_by: p.user_id(),
        created_at: DateTime::now(),
        completed_at: None,
    };
    st.mongo.collection::<Task>(collections::TASKS).insert_one(&t).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: client.id, action: "create", resource: "tasks", id: t.id },
        None,
        Some(&t),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&t))))
}

/// `GET /v1/tasks` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// Tenant; required with the operator key.
    pub client_id: Option<String>,
    /// Status.
    #[param(pattern = "^(PENDING|IN_PROGRESS|COMPLETED|CANCELLED)$")]
    pub status: Option<String>,
    /// Assignee.
    pub assigned_to: Option<String>,
    /// Only open tasks past due.
    pub overdue: Option<bool>,
    /// Only tasks about this record id.
    pub related_id: Option<String>,
}

/// Lists tasks, soonest due first (at most 500).
#[utoipa::path(get, path = "/v1/tasks", tag = "crm", params(TaskQuery),
    responses((status = 200, body = Vec<TaskView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<TaskQuery>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    p.can(Resource::Tasks, Action::Read)?;
    let client = Tenant::resolve(&st, &p, q.client_id.as_deref()).await?;
    let mut f = doc! { "clientId": client.id };
    if let Some(s) = &q.status {
        f.insert("status", one_of("status", s, &STATUSES)?);
    }
    if let Some(a) = &q.assigned_to {
        f.insert("assignedTo", validate::object_id("assigned_to", a)?);
    }
    if let Some(r) = &q.related_id {
        f.insert("related.id", validate::object_id("related_id", r)?);
    }
    if q.overdue == Some(true) {
        f.insert("status", doc! { "$in": ["PENDING", "IN_PROGRESS"] });
        f.insert("dueAt", doc! { "$lt": DateTime::now() });
    }
    let rows: Vec<Task> = st
        .mongo
        .collection::<Task>(collections::TASKS)
        .find(f)
        .sort(doc! { "dueAt": 1, "_id": 1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    Ok(Json(rows.iter().map(view).collect()))
}

async fn load(st: &AppState, p: &Principal, id: &str) -> Result<Task, ApiError> {
    crate::store::load_owned(st, p, collections::TASKS, "task", id, |d: &Task| d.client_id).await
}

/// Changes a task; completing it stamps `completed_at`.
#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "crm", params(("id" = String, Path, description = "Task id")), request_body = TaskPatch,
    responses((status = 200, body = TaskView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn patch(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Path(id): Path<String>,
    Body(b): Body<TaskPatch>,
) -> Result<Json<TaskView>, ApiError> {
    p.can(Resource::Tasks, Action::Update)?;
    let old = load(&st, &p, &id).await?;
    let mut t = old.clone();
    if let Some(v) = &b.title {
        t.title = validate::text("title", v, 1, 200)?;
    }
    if let Some(v) = &b.priority {
        t.priority = one_of("priority", v, &PRIORITIES)?;
    }
    if let Some(v) = &b.status {
        t.status = one_of("status", v, &STATUSES)?;
        t.completed_at = (t.status == "COMPLETED").then(DateTime::now);
    }
    if b.due_at.is_some() {
        t.due_at = due(b.due_at.as_deref())?;
    }
    if let Some(a) = &b.assigned_to {
        t.assigned_to = assignee(&st, t.client_id, a).await?;
    }
    st.mongo
        .collection::<Task>(collections::TASKS)
        .replace_one(doc! { "_id": t.id, "clientId": t.client_id }, &t)
        .await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id: t.client_id, action: "update", resource: "tasks", id: t.id },
        Some(&old),
        Some(&t),
    )
    .await?;
    Ok(Json(view(&t)))
}

/// `POST /v1/activities` body: a call, email, meeting or note on a record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityCreate {
    /// `call`, `email`, `meeting`, `note`.
    #[schema(schema_with = activity_kind_schema)]
    pub kind: String,
    /// Subject, 1..=200.
    #[schema(schema_with = crate::openapi::text_200)]
    pub subject: String,
    /// Body, at most 5000.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::opt_text_5000)]
    pub body: Option<String>,
    /// The record.
    pub related: RelatedDto,
    /// When it happened, RFC 3339 (default now).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::time)]
    pub at: Option<String>,
}

/// One entry of a record's timeline.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// `call`, `email`, `meeting`, `note` (manual) or `change` (from the audit log).
    pub kind: String,
    /// Subject, or the audited action (`create`, `update`, `convert`, ...).
    pub subject: String,
    /// Body, or the changed fields joined by `, `.
    pub body: String,
    /// Who (user or key id).
    pub by: Option<String>,
    /// When, RFC 3339.
    pub at: String,
}

/// Records a manual activity.
#[utoipa::path(post, path = "/v1/activities", tag = "crm", request_body = ActivityCreate,
    responses((status = 201, body = TimelineEntry), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_activity(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Body(b): Body<ActivityCreate>,
) -> Result<(StatusCode, Json<TimelineEntry>), ApiError> {
    p.can(Resource::Activities, Action::Create)?;
    let client_id = p.own_client().ok_or_else(|| ApiError::invalid("related", "the operator records no activities"))?;
    let a = Activity {
        id: ObjectId::new(),
        client_id,
        kind: one_of("kind", &b.kind, &ACTIVITY_KINDS)?,
        subject: validate::text("subject", &b.subject, 1, 200)?,
        body: validate::opt_text("body", b.body.as_deref(), 5000)?.unwrap_or_default(),
        related: related(&st, client_id, &b.related).await?,
        by: p.user_id(),
        at: match b.at.as_deref() {
            Some(t) => validate::instant("at", t)?,
            None => DateTime::now(),
        },
    };
    st.mongo.collection::<Activity>(collections::ACTIVITIES).insert_one(&a).await?;
    audit::changed(
        &st,
        &p,
        &meta,
        Target { client_id, action: "create", resource: "activities", id: a.id },
        None,
        Some(&a),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TimelineEntry {
            kind: a.kind,
            subject: a.subject,
            body: a.body,
            by: a.by.map(|b| b.to_hex()),
            at: rfc(a.at),
        }),
    ))
}

/// The audited resources a timeline shows: the CRM records activities relate to.
const TIMELINE_RESOURCES: [&str; 3] = ["leads", "contacts", "opportunities"];

/// `GET /v1/activities` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// The record id (lead, contact or opportunity).
    pub related_id: String,
}

/// The timeline of a CRM record: manual activities and audited changes, newest first.
#[utoipa::path(get, path = "/v1/activities", tag = "crm", params(TimelineQuery),
    responses((status = 200, body = Vec<TimelineEntry>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn timeline(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Vec<TimelineEntry>>, ApiError> {
    p.can(Resource::Activities, Action::Read)?;
    let id = validate::object_id("related_id", &q.related_id)?;
    let client_id = p.own_client();
    let mut f = doc! { "related.id": id };
    // Only changes of CRM records: an id of anything else (a user's logins,
    // an invoice) is not a timeline (issue #14).
    let mut af =
        doc! { "resourceId": id.to_hex(), "success": true, "resource": { "$in": TIMELINE_RESOURCES.to_vec() } };
    if let Some(c) = client_id {
        f.insert("clientId", c);
        af.insert("clientId", c);
    }
    let manual: Vec<Activity> =
        st.mongo.collection::<Activity>(collections::ACTIVITIES).find(f).await?.try_collect().await?;
    let changes: Vec<AuditRecord> =
        st.mongo.collection::<AuditRecord>(collections::AUDIT_LOGS).find(af).await?.try_collect().await?;
    let mut out: Vec<(DateTime, TimelineEntry)> = manual
        .into_iter()
        .map(|a| {
            (
                a.at,
                TimelineEntry {
                    kind: a.kind,
                    subject: a.subject,
                    body: a.body,
                    by: a.by.map(|b| b.to_hex()),
                    at: rfc(a.at),
                },
            )
        })
        .chain(changes.into_iter().map(|r| {
            let fields: Vec<String> = r.changes.iter().map(|c| c.field.clone()).collect();
            (
                r.at,
                TimelineEntry {
                    kind: "change".into(),
                    subject: r.action,
                    body: fields.join(", "),
                    by: r.actor.id.map(|i| i.to_hex()),
                    at: rfc(r.at),
                },
            )
        }))
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(Json(out.into_iter().map(|(_, e)| e).collect()))
}
