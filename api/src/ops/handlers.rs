//! Alertmanager's webhook payload (version 4,
//! <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>)
//! and the email sent for it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Body;
use crate::mail::Outgoing;
use crate::state::AppState;

/// One notification of Alertmanager: a group of alerts (unknown fields are
/// ignored: Alertmanager adds some across versions).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct AlertNotification {
    /// `firing` or `resolved` (the group's).
    pub status: String,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is made of (`alertname`, `service`).
    #[serde(default, rename = "groupLabels")]
    pub group_labels: BTreeMap<String, String>,
    /// The alerts, firing and resolved.
    #[serde(default)]
    pub alerts: Vec<AlertItem>,
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct AlertItem {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname`, `severity`, `service`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing, RFC 3339.
    #[serde(default, rename = "startsAt")]
    pub starts_at: String,
    /// When it resolved, RFC 3339 (a zero time while firing).
    #[serde(default, rename = "endsAt")]
    pub ends_at: String,
}

/// What the receiver did with a notification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertReceipt {
    /// Alerts in the notification.
    pub alerts: usize,
    /// Emails sent (one per operator address).
    pub emails: usize,
}

/// Operator emails are logged under this tenant id (all zeros): they are
/// about the platform, not a tenant.
const PLATFORM: [u8; 12] = [0; 12];

/// The subject and text of the email for `n`.
fn render(n: &AlertNotification) -> (String, String) {
    let firing = n.alerts.iter().filter(|a| a.status == "firing").count();
    let name = n.group_labels.get("alertname").map_or("alerts", String::as_str);
    let service = n.group_labels.get("service").map(|s| format!(" ({s})")).unwrap_or_default();
    let subject =
        if firing > 0 { format!("[FIRING:{firing}] {name}{service}") } else { format!("[RESOLVED] {name}{service}") };
    let mut text = String::new();
    for a in &n.alerts {
        let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        text.push_str(&format!(
            "{} {} [{}] {}\n{}\nsince: {}\nrunbook: {}\nlabels: {}\n\n",
            a.status.to_uppercase(),
            get(&a.labels, "alertname"),
            get(&a.labels, "severity"),
            get(&a.annotations, "summary"),
            get(&a.annotations, "description"),
            a.starts_at,
            get(&a.annotations, "runbook_url"),
            a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        ));
    }
    (subject, text)
}

/// Receives an Alertmanager notification and emails it to the operators.
#[utoipa::path(post, path = "/v1/ops/alerts", tag = "ops", request_body = AlertNotification,
    responses((status = 200, body = AlertReceipt), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn receive_alerts(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(n): Body<AlertNotification>,
) -> Result<Json<AlertReceipt>, ApiError> {
    p.require_operator()?;
    if n.status != "firing" && n.status != "resolved" {
        return Err(ApiError::invalid("status", "must be firing or resolved"));
    }
    st.metrics.ops_alerts.with_label_values(&[n.status.as_str()]).inc_by(n.alerts.len() as u64);
    let (subject, text) = render(&n);
    let mut emails = 0;
    for to in st.cfg.ops_alert_emails.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        st.send_mail(Outgoing {
            client_id: ObjectId::from_bytes(PLATFORM),
            to: to.to_string(),
            subject: subject.clone(),
            template: "ops_alert",
            text: text.clone(),
            attachments: Vec::new(),
            related: None,
        })
        .await?;
        emails += 1;
    }
    if emails == 0 {
        tracing::warn!(subject = %subject, "alert received but API_OPS_ALERT_EMAILS is empty: nobody emailed");
    }
    Ok(Json(AlertReceipt { alerts: n.alerts.len(), emails }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_say_how_many_fire_and_bodies_carry_the_runbook() {
        let alert = |status: &str| AlertItem {
            status: status.into(),
            labels: [("alertname".to_string(), "TargetDown".to_string()), ("severity".into(), "page".into())].into(),
            annotations: [("runbook_url".to_string(), "deploy/runbooks/TargetDown.md".to_string())].into(),
            starts_at: "2026-12-01T10:00:00Z".into(),
            ends_at: String::new(),
        };
        let mut n = AlertNotification {
            status: "firing".into(),
            receiver: "operators".into(),
            group_labels: [("alertname".to_string(), "TargetDown".to_string()), ("service".into(), "ingest".into())]
                .into(),
            alerts: vec![alert("firing"), alert("firing")],
        };
        let (subject, text) = render(&n);
        assert_eq!(subject, "[FIRING:2] TargetDown (ingest)");
        assert!(text.contains("runbook: deploy/runbooks/TargetDown.md"));
        n.alerts = vec![alert("resolved")];
        assert_eq!(render(&n).0, "[RESOLVED] TargetDown (ingest)");
    }
}
