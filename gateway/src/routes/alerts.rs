//! Alerts (电子监察): `GET /v1/alerts?open=&limit=` lists them (policy `read_audit`);
//! `POST /v1/alerts/evaluate` runs the supervision rules now and `POST
//! /v1/alerts/{id}/ack` `{"note"}` acknowledges one (policy `manage_alerts`). Shipped:
//! the auditors. Each alert carries the audit index behind it (`/v1/audit/entries/{idx}`).

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use paotui_policies::cedar::{Action, Resource};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{AuditScope, Identity};
use crate::authz::Authz;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(list))
        .route("/v1/alerts/evaluate", post(evaluate))
        .route("/v1/alerts/{id}/ack", post(ack))
}

fn allowed(authz: &Authz, action: Action, what: &str) -> Result<()> {
    authz.require(
        action,
        Resource::AuditLog,
        vec![],
        || format!("{what} by {}", authz.caller().dept),
        None,
    )
}

async fn list(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("alerts.list".to_owned()));
    allowed(&authz, Action::ReadAudit, "reading the alerts")?;
    let q = crate::extract::query_params(raw, &["open", "limit"])?;
    let open = match q.get("open").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(Error::BadRequest("open must be true or false".into())),
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| Error::BadRequest("limit must be 1-1000".into()))?,
    };
    let alerts: Vec<Value> = app
        .store
        .alerts(open, limit)
        .await?
        .into_iter()
        .map(|a| {
            let time =
                |us: i64| chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339());
            json!({
                "id": a.id,
                "rule": a.alert.rule,
                "severity": a.alert.severity,
                "audit_index": a.alert.idx,
                "detail": a.alert.detail,
                "raised_at": time(a.alert.raised_at_us),
                "acked_at": a.acked_at_us.and_then(time),
                "acked_by": a.acked_by,
                "note": a.note,
            })
        })
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}

async fn evaluate(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("alerts.evaluate".to_owned()));
    allowed(
        &authz,
        Action::ManageAlerts,
        "running the supervision rules",
    )?;
    let (_, now) = crate::vault::now();
    let raised =
        crate::alerts::evaluate(&app.store, &app.catalog, &app.sql, &app.alert_rules, now).await?;
    Ok(Json(json!({ "rules": raised })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    note: String,
}

async fn ack(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    Path(alert): Path<String>,
    body: std::result::Result<ApiJson<AckBody>, Error>,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("alerts.ack".to_owned()));
    allowed(&authz, Action::ManageAlerts, "acknowledging an alert")?;
    let alert: i64 = alert
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::BadRequest("the alert id must be a positive integer".into()))?;
    let ApiJson(body) = body?;
    let note = body.note.trim();
    if note.is_empty() || note.len() > 1000 || note.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "note must be 1-1000 bytes without control characters".into(),
        ));
    }
    let by = match crate::audit::operator(&headers) {
        Some(op) => format!("{}/{} ({op})", id.0.dept, id.0.system),
        None => format!("{}/{}", id.0.dept, id.0.system),
    };
    let (_, now) = crate::vault::now();
    app.store.ack_alert(alert, &by, note, now).await?;
    Ok(Json(json!({ "id": alert, "acked_by": by, "note": note })))
}
