//! CRM settings of a tenant (issue #6, seed 003 `crm_settings`): labels of
//! the lead stages and priorities, the lead sources and task types a
//! tenant uses, and typed custom fields on leads and contacts. Leads,
//! contacts and tasks are validated against them; a tenant that never
//! saved settings gets [`CrmSettings::defaults`].

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::{Extension, Json};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use schemas::crm::{CrmSettings, CustomField, FieldKind, Label, LeadStage};
use schemas::mongo::collections;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::Meta;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Body;
use crate::rbac::{Action, Resource};
use crate::state::AppState;
use crate::tenants::ClientScope;
use crate::tenants::Tenant;
use crate::validate::{self, rfc, wire};

/// A custom field as the API shows and takes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldView {
    /// Key, `[a-z0-9_]`, 1..=40, unique per entity.
    pub key: String,
    /// Label, 1..=60.
    pub label: String,
    /// `lead` or `contact`.
    pub entity: String,
    /// `text`, `number`, `boolean`, `date` (`YYYY-MM-DD`) or `select`.
    pub kind: String,
    /// Values of a `select` (1..=50 of 1..=60 characters); empty otherwise.
    #[serde(default)]
    pub options: Vec<String>,
    /// Required when a record is created.
    #[serde(default)]
    pub required: bool,
}

/// The CRM settings (`GET` answers them, `PUT` replaces them whole).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SettingsView {
    /// Labels of the lead stages by key (`new` … `lost`); every stage once.
    pub stage_labels: BTreeMap<String, String>,
    /// Labels of the priorities by key (`low`, `medium`, `high`, `urgent`); every one once.
    pub priority_labels: BTreeMap<String, String>,
    /// Lead sources, 1..=30 lowercase slugs.
    pub lead_sources: Vec<String>,
    /// Task types, 1..=30 uppercase names (`CALL`, `DEMO`).
    pub task_types: Vec<String>,
    /// Custom fields, at most 50.
    pub custom_fields: Vec<CustomFieldView>,
    /// Last change, RFC 3339 (read only; ignored on `PUT`).
    #[serde(default)]
    pub updated_at: Option<String>,
}

const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];

/// The tenant's settings, or the defaults when it has none.
pub async fn load(st: &AppState, client_id: ObjectId) -> Result<CrmSettings, ApiError> {
    Ok(st
        .mongo
        .collection::<CrmSettings>(collections::CRM_SETTINGS)
        .find_one(doc! { "_id": client_id })
        .await?
        .unwrap_or_else(|| CrmSettings::defaults(client_id)))
}

fn view(s: &CrmSettings) -> SettingsView {
    let labels = |v: &[Label]| v.iter().map(|l| (l.key.clone(), l.label.clone())).collect();
    SettingsView {
        stage_labels: labels(&s.stage_labels),
        priority_labels: labels(&s.priority_labels),
        lead_sources: s.lead_sources.clone(),
        task_types: s.task_types.clone(),
        custom_fields: s
            .custom_fields
            .iter()
            .map(|f| CustomFieldView {
                key: f.key.clone(),
                label: f.label.clone(),
                entity: f.entity.clone(),
                kind: wire(&f.kind),
                options: f.options.clone(),
                required: f.required,
            })
            .collect(),
        updated_at: (s.updated_at.timestamp_millis() > 0).then(|| rfc(s.updated_at)),
    }
}

fn labels(field: &str, given: &BTreeMap<String, String>, keys: &[&str]) -> Result<Vec<Label>, ApiError> {
    if let Some(k) = given.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("{field}.{k}"),
            format!("unknown key; the keys are {}", keys.join(", ")),
        ));
    }
    keys.iter()
        .map(|k| {
            let label = given.get(*k).ok_or_else(|| ApiError::invalid(format!("{field}.{k}"), "missing"))?;
            Ok(Label { key: k.to_string(), label: validate::text(&format!("{field}.{k}"), label, 1, 40)? })
        })
        .collect()
}

fn names(field: &str, v: &[String], upper: bool) -> Result<Vec<String>, ApiError> {
    if v.is_empty() || v.len() > 30 {
        return Err(ApiError::invalid(field, "must hold 1 to 30 names"));
    }
    let mut seen = BTreeSet::new();
    for (i, n) in v.iter().enumerate() {
        let ok = (1..=30).contains(&n.len())
            && n.bytes().all(|b| {
                b == b'_'
                    || b == b'-'
                    || b.is_ascii_digit()
                    || if upper { b.is_ascii_uppercase() } else { b.is_ascii_lowercase() }
            });
        if !ok {
            let case = if upper { "A-Z" } else { "a-z" };
            return Err(ApiError::invalid(format!("{field}[{i}]"), format!("must be 1 to 30 of {case}, 0-9, _ and -")));
        }
        if !seen.insert(n) {
            return Err(ApiError::invalid(format!("{field}[{i}]"), "duplicate"));
        }
    }
    Ok(v.to_vec())
}

fn custom_field(i: usize, f: &CustomFieldView) -> Result<CustomField, ApiError> {
    let at = |name: &str| format!("custom_fields[{i}].{name}");
    if !(1..=40).contains(&f.key.len())
        || !f.key.bytes().all(|b| b == b'_' || b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(ApiError::invalid(at("key"), "must be 1 to 40 of a-z, 0-9 and _"));
    }
    if f.entity != "lead" && f.entity != "contact" {
        return Err(ApiError::invalid(at("entity"), "must be lead or contact"));
    }
    let kind: FieldKind = validate::parse_enum(&at("kind"), &f.kind, "must be text, number, boolean, date or select")?;
    let options = if kind == FieldKind::Select {
        if f.options.is_empty() || f.options.len() > 50 {
            return Err(ApiError::invalid(at("options"), "a select needs 1 to 50 options"));
        }
        f.options
            .iter()
            .enumerate()
            .map(|(j, o)| validate::text(&format!("{}[{j}]", at("options")), o, 1, 60))
            .collect::<Result<Vec<_>, _>>()?
    } else if f.options.is_empty() {
        Vec::new()
    } else {
        return Err(ApiError::invalid(at("options"), "only a select has options"));
    };
    Ok(CustomField {
        key: f.key.clone(),
        label: validate::text(&at("label"), &f.label, 1, 60)?,
        entity: f.entity.clone(),
        kind,
        options,
        required: f.required,
    })
}

/// Validates `input` (field key → JSON value; `null` removes) against the
/// tenant's custom fields of `entity` and merges it into `current`.
/// Unknown keys, wrong types, values outside a select's options, and (when
/// `creating`) missing required fields are 400s naming
/// `custom_fields.{key}`.
pub fn custom_values(
    settings: &CrmSettings,
    entity: &str,
    input: &BTreeMap<String, serde_json::Value>,
    current: &Document,
    creating: bool,
) -> Result<Document, ApiError> {
    let defs: Vec<&CustomField> = settings.custom_fields.iter().filter(|f| f.entity == entity).collect();
    let mut out = current.clone();
    for (key, value) in input {
        let field = format!("custom_fields.{key}");
        let def = defs
            .iter()
            .find(|d| d.key == *key)
            .ok_or_else(|| ApiError::invalid(&field, format!("no such custom field for a {entity}")))?;
        let v = match (def.kind, value) {
            (_, serde_json::Value::Null) => {
                out.remove(key);
                continue;
            }
            (FieldKind::Text, serde_json::Value::String(s)) => Bson::String(validate::text(&field, s, 1, 500)?),
            (FieldKind::Number, serde_json::Value::Number(n)) => Bson::Double(
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| ApiError::invalid(&field, "must be a finite number"))?,
            ),
            (FieldKind::Boolean, serde_json::Value::Bool(b)) => Bson::Boolean(*b),
            (FieldKind::Date, serde_json::Value::String(s)) => {
                validate::date(&field, s)?;
                Bson::String(s.clone())
            }
            (FieldKind::Select, serde_json::Value::String(s)) if def.options.contains(s) => Bson::String(s.clone()),
            (FieldKind::Select, _) => {
                return Err(ApiError::invalid(&field, format!("must be one of {}", def.options.join(", "))))
            }
            (kind, _) => return Err(ApiError::invalid(&field, format!("must be a {}", wire(&kind)))),
        };
        out.insert(key.clone(), v);
    }
    if creating {
        if let Some(d) = defs.iter().find(|d| d.required && !out.contains_key(&d.key)) {
            return Err(ApiError::invalid(format!("custom_fields.{}", d.key), "required"));
        }
    }
    Ok(out)
}

/// The caller's CRM settings (defaults until an admin saves them).
#[utoipa::path(get, path = "/v1/crm/settings", tag = "crm", params(ClientScope),
    responses((status = 200, body = SettingsView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Tenant(client): Tenant,
) -> Result<Json<SettingsView>, ApiError> {
    p.can(Resource::Settings, Action::Read)?;
    Ok(Json(view(&load(&st, client.id).await?)))
}

/// Replaces the CRM settings (admins). Custom field values already stored
/// on records stay; they are validated again when the record changes.
#[utoipa::path(put, path = "/v1/crm/settings", tag = "crm", params(ClientScope), request_body = SettingsView,
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    meta: Meta,
    Tenant(client): Tenant,
    Body(b): Body<SettingsView>,
) -> Result<Json<SettingsView>, ApiError> {
    p.can(Resource::Settings, Action::Update)?;
    let stages: Vec<&str> = LeadStage::ALL.iter().map(|s| s.name()).collect();
    if b.custom_fields.len() > 50 {
        return Err(ApiError::invalid("custom_fields", "at most 50"));
    }
    let custom_fields =
        b.custom_fields.iter().enumerate().map(|(i, f)| custom_field(i, f)).collect::<Result<Vec<_>, _>>()?;
    let mut keys = BTreeSet::new();
    if let Some((i, _)) =
        custom_fields.iter().enumerate().find(|(_, f)| !keys.insert((f.entity.clone(), f.key.clone())))
    {
        return Err(ApiError::invalid(format!("custom_fields[{i}].key"), "duplicate for this entity"));
    }
    let new = CrmSettings {
        client_id: client.id,
        stage_labels: labels("stage_labels", &b.stage_labels, &stages)?,
        priority_labels: labels("priority_labels", &b.priority_labels, &PRIORITIES)?,
        lead_sources: names("lead_sources", &b.lead_sources, false)?,
        task_types: names("task_types", &b.task_types, true)?,
        custom_fields,
        updated_at: DateTime::now(),
    };
    let old = st.mongo.collection::<CrmSettings>(collections::CRM_SETTINGS).find_one(doc! { "_id": client.id }).await?;
    let coll = collections::CRM_SETTINGS;
    crate::store::save_tenant_document(&st, &p, &meta, coll, "settings", client.id, old.as_ref(), &new).await?;
    Ok(Json(view(&new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_values_follow_their_definitions() {
        let mut s = CrmSettings::defaults(ObjectId::new());
        s.custom_fields = vec![
            CustomField {
                key: "tier".into(),
                label: "Tier".into(),
                entity: "lead".into(),
                kind: FieldKind::Select,
                options: vec!["gold".into(), "silver".into()],
                required: true,
            },
            CustomField {
                key: "followers".into(),
                label: "Followers".into(),
                entity: "lead".into(),
                kind: FieldKind::Number,
                options: vec![],
                required: false,
            },
            CustomField {
                key: "signed".into(),
                label: "Signed".into(),
                entity: "lead".into(),
                kind: FieldKind::Date,
                options: vec![],
                required: false,
            },
        ];
        let input = |v: serde_json::Value| serde_json::from_value::<BTreeMap<String, serde_json::Value>>(v).unwrap();
        let d = custom_values(
            &s,
            "lead",
            &input(serde_json::json!({"tier": "gold", "followers": 1200, "signed": "2024-02-29"})),
            &Document::new(),
            true,
        )
        .unwrap();
        assert_eq!(d.get_str("tier").unwrap(), "gold");
        assert_eq!(d.get_f64("followers").unwrap(), 1200.0);
        for (bad, field) in [
            (serde_json::json!({"tier": "bronze"}), "custom_fields.tier"),
            (serde_json::json!({"tier": "gold", "followers": "many"}), "custom_fields.followers"),
            (serde_json::json!({"tier": "gold", "signed": "2023-02-29"}), "custom_fields.signed"),
            (serde_json::json!({"tier": "gold", "nope": 1}), "custom_fields.nope"),
            (serde_json::json!({"followers": 1}), "custom_fields.tier"),
            (serde_json::json!({"tier": {"$gt": ""}}), "custom_fields.tier"),
        ] {
            let e = custom_values(&s, "lead", &input(bad.clone()), &Document::new(), true).unwrap_err();
            assert_eq!(crate::validate::invalid_field(e), field, "{bad}");
        }
        let d2 = custom_values(&s, "lead", &input(serde_json::json!({"followers": null})), &d, false).unwrap();
        assert!(!d2.contains_key("followers") && d2.contains_key("tier"));
        assert!(
            custom_values(&s, "contact", &input(serde_json::json!({"tier": "gold"})), &Document::new(), false).is_err(),
            "lead fields are not contact fields"
        );
    }
}
