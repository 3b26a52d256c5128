//! The electronic-license vault over HTTP.
//!
//! - `POST /v1/licenses`: issue (a system of the type's issuing department) → 201.
//! - `GET /v1/licenses/{id}?case_id=&matter=`: one license, signed document and status.
//! - `GET /v1/holders/{holder}/licenses?type=&case_id=&matter=`: a holder's licenses.
//! - `POST /v1/licenses/{id}/status`: suspend / restore / revoke, by the issuer, with a reason.
//! - `GET /v1/licenses/{id}/events`: the status history, for the issuer and auditors.
//! - `POST /v1/licenses/verify`: any system; 200 with a verdict, or 422 with its reasons.
//! - `POST /v1/licenses/import`: JSON lines (`application/x-ndjson`), read as they stream
//!   in, each row stored or rejected as by `paotui license import`; answers the outcomes.
//!
//! Every fetch names the case it serves — an open case of the holder that the caller
//! accepted or handles, with a matter listing the license's type (see [`bind_to_case`]) —
//! and leaves a usage record (用证记录) besides the audit entry.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paotui_policies::cedar::{Action, Binding, Policies, Resource};
use paotui_policies::licenses::{LicenseRequest, StatusAction};
use paotui_policies::purpose::Want;
use serde::Deserialize;
use serde_json::Value;

use crate::audit::{AuditScope, Identity, REQUEST_ID};
use crate::authz::Authz;
use crate::extract::{ApiJson, query_params, require_media_type};
use crate::license_import::{self, MAX_ROW_BYTES, Row, RowOutcome, Summary};
use crate::routes::services::{parse_case_id, parse_matter};
use crate::state::AppState;
use crate::vault::{Actor, Issued, LicenseView, Source, now};
use crate::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/licenses", post(issue))
        .route("/v1/licenses/verify", post(verify))
        .route("/v1/licenses/import", post(import))
        .route("/v1/licenses/{id}", get(fetch))
        .route("/v1/licenses/{id}/status", post(status))
        .route("/v1/licenses/{id}/events", get(events))
        .route("/v1/holders/{holder}/licenses", get(of_holder))
}

fn actor(id: &Identity, headers: &axum::http::HeaderMap) -> Actor {
    Actor {
        dept: id.0.dept.clone(),
        system: id.0.system.to_string(),
        operator: crate::audit::operator(headers),
        request_id: headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default(),
    }
}

/// Purpose binding (seed 004: data leaves only for a real case). A license fetch names a
/// case (`case_id`, and optionally one of its matters); the case store judges it — the
/// case is open, its applicant holds the license, the caller's department accepted the
/// case or handles one of its matters, and that matter lists the license's type (see
/// [`paotui_policies::purpose`]) — and the policies decide `fetch_license` with that as
/// context. Answers the case id and the (license type, matter) pairs the case grants, or
/// why it grants none.
async fn bind_to_case(
    app: &AppState,
    caller: &paotui_certs::SystemIdentity,
    scope: &AuditScope,
    q: &HashMap<String, String>,
    holder_hmac: &str,
) -> Result<(String, std::result::Result<Vec<(String, String)>, String>)> {
    let case_id = q.get("case_id").ok_or_else(|| {
        Error::BadRequest("case_id is required: name the case this license is used for".into())
    })?;
    let case_id = parse_case_id(case_id)?;
    let matter = q.get("matter").map(|m| parse_matter(m)).transpose()?;
    let bound = crate::cases::bind(
        app,
        scope,
        &caller.dept,
        &case_id,
        matter.as_ref(),
        holder_hmac,
        Want::Licenses,
    )
    .await?;
    let allowed = bound.map(|granted| {
        granted
            .iter()
            .flat_map(|g| {
                g.license_types
                    .iter()
                    .map(|t| (t.to_string(), g.matter.code.to_string()))
            })
            .collect()
    });
    Ok((case_id, allowed))
}

/// Decides `fetch_license` of licenses of type `type_code` for the case: granted when
/// the case grants the type (answers the matter it is used under).
fn decide_fetch(
    app: &AppState,
    authz: &Authz,
    case: &str,
    allowed: &std::result::Result<Vec<(String, String)>, String>,
    type_code: &str,
) -> Result<String> {
    let lt = app.vault.license_type(type_code)?;
    let (matter, because) = match allowed {
        Err(why) => (None, Some(why.clone())),
        Ok(pairs) => match pairs.iter().find(|(t, _)| t == type_code) {
            Some((_, m)) => (Some(m.clone()), None),
            None => (
                None,
                Some(format!(
                    "no matter of case {case} you take part in lists {type_code} licenses"
                )),
            ),
        },
    };
    authz.require(
        Action::FetchLicense,
        Resource::LicenseType(lt),
        Policies::binding_context(Binding {
            required: true,
            granted: matter.is_some(),
        }),
        || format!("fetching {type_code} licenses by {}", authz.caller().dept),
        because,
    )?;
    // A policy set may permit a fetch the case does not grant; the use is then recorded
    // under no matter of the case, which no such set should want: refuse it.
    matter.ok_or_else(|| {
        authz.refuse(format!(
            "case {case} grants no matter for {type_code} licenses"
        ))
    })
}

async fn issue(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    body: std::result::Result<ApiJson<LicenseRequest>, Error>,
) -> Result<Response> {
    scope.update(|c| c.action = Some("license.issue".into()));
    let ApiJson(req) = body?;
    if let Ok(t) = app.vault.license_type(&req.type_code) {
        scope.update(|c| c.service = Some(format!("license:{}", t.code)));
        if let Ok(h) = t.holder.parse(&req.holder_id) {
            scope.update(|c| c.subject_hmac = Some(app.vault.holder_hmac(&h)));
        }
    }
    // Numbers are assigned here; only imports carry an existing one.
    if req.number.is_some() {
        return Err(Error::BadRequest(
            "number is assigned by the vault; existing licenses come in by import".into(),
        ));
    }
    let (today, at) = now();
    let issued = app
        .vault
        .issue(&authz, &actor(&id, &headers), &req, Source::Api, today, at)
        .await?;
    match issued {
        Issued::New(view) => {
            scope.update(|c| c.fields = vec![view.id.clone()]);
            Ok((StatusCode::CREATED, Json(view)).into_response())
        }
        Issued::AlreadyStored(_) => Err(Error::Internal("issue without number matched".into())),
    }
}

async fn fetch(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    Path(license): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<LicenseView>> {
    scope.update(|c| c.action = Some("license.read".into()));
    let q = query_params(raw, &["case_id", "matter"])?;
    let (today, at) = now();
    let (row, view) = app.vault.get(&license, today).await?;
    scope.update(|c| {
        c.service = Some(format!("license:{}", row.type_code));
        c.subject_hmac = Some(row.holder_hmac.clone());
    });
    let (case, allowed) = bind_to_case(&app, &id.0, &scope, &q, &row.holder_hmac).await?;
    let matter = decide_fetch(&app, &authz, &case, &allowed, &row.type_code)?;
    scope.update(|c| c.matter = Some(matter.clone()));
    app.vault
        .record_uses(
            &actor(&id, &headers),
            &[(row.id.clone(), matter.clone())],
            &case,
            at,
        )
        .await?;
    scope.update(|c| c.fields = vec![row.id.clone()]);
    Ok(Json(view))
}

async fn of_holder(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    Path(holder): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("license.list".into()));
    let q = query_params(raw, &["case_id", "matter", "type"])?;
    let (holder, _) = crate::vault::canonical_holder(&holder)
        .map_err(|e| Error::BadRequest(format!("holder: {e}")))?;
    let hmac = app.vault.holder_hmac(&holder);
    scope.update(|c| c.subject_hmac = Some(hmac.clone()));
    let type_code = q.get("type").map(String::as_str);
    if let Some(t) = type_code {
        scope.update(|c| c.service = Some(format!("license:{t}")));
    }
    let (case, bound) = bind_to_case(&app, &id.0, &scope, &q, &hmac).await?;
    let allowed: Vec<(String, String)> = match (type_code, &bound) {
        (Some(t), _) => vec![(t.to_owned(), decide_fetch(&app, &authz, &case, &bound, t)?)],
        (None, Err(why)) => return Err(authz.refuse(why.clone())),
        (None, Ok(pairs)) if pairs.is_empty() => {
            return Err(authz.refuse(format!(
                "no matter of case {case} you take part in lists a license type"
            )));
        }
        // Each license type the case grants is its own decision; the listing carries
        // the types the policies allow.
        (None, Ok(pairs)) => {
            let mut kept = Vec::new();
            let mut policies = Vec::new();
            for (t, m) in pairs {
                let lt = app.vault.license_type(t)?;
                let v = authz.verdict(
                    Action::FetchLicense,
                    Resource::LicenseType(lt),
                    Policies::binding_context(Binding {
                        required: true,
                        granted: true,
                    }),
                )?;
                if v.allowed {
                    kept.push((t.clone(), m.clone()));
                    policies.extend(v.policies);
                }
            }
            policies.sort();
            policies.dedup();
            if kept.is_empty() {
                return Err(authz.refuse(format!(
                    "no policy permits fetching the license types case {case} grants"
                )));
            }
            authz.record(true, policies);
            kept
        }
    };
    let (today, at) = now();
    // Only the types the case's matters list leave, whatever else the holder has.
    let views: Vec<LicenseView> = app
        .vault
        .of_holder(&hmac, type_code, today)
        .await?
        .into_iter()
        .filter(|v| {
            allowed
                .iter()
                .any(|(t, _)| *t == v.document.type_code.as_str())
        })
        .collect();
    let uses: Vec<(String, String)> = views
        .iter()
        .filter_map(|v| {
            allowed
                .iter()
                .find(|(t, _)| *t == v.document.type_code.as_str())
                .map(|(_, m)| (v.id.clone(), m.clone()))
        })
        .collect();
    app.vault
        .record_uses(&actor(&id, &headers), &uses, &case, at)
        .await?;
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    scope.update(|c| c.fields = ids);
    Ok(Json(serde_json::json!({ "licenses": views })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    action: StatusAction,
    /// Why (printed in the license's history and the audit entry's context).
    reason: String,
}

async fn status(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    Path(license): Path<String>,
    body: std::result::Result<ApiJson<StatusBody>, Error>,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("license.status".into()));
    let (_, at) = now();
    let row = app.vault.row(&license).await?;
    scope.update(|c| {
        c.service = Some(format!("license:{}", row.type_code));
        c.subject_hmac = Some(row.holder_hmac.clone());
        c.fields = vec![row.id.clone()];
    });
    let ApiJson(body) = body?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "reason must be 1-500 bytes of text without control characters".into(),
        ));
    }
    let (from, to) = app
        .vault
        .change_status(&authz, &actor(&id, &headers), &row, body.action, reason, at)
        .await?;
    Ok(Json(serde_json::json!({
        "id": row.id,
        "previous": from.as_str(),
        "status": to.as_str(),
    })))
}

/// The status history (issue included), oldest first: for the issuing department and the
/// auditor departments.
async fn events(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(license): Path<String>,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("license.history".into()));
    let row = app.vault.row(&license).await?;
    scope.update(|c| {
        c.service = Some(format!("license:{}", row.type_code));
        c.subject_hmac = Some(row.holder_hmac.clone());
    });
    authz.require(
        Action::ReadLicenseHistory,
        Resource::LicenseType(app.vault.license_type(&row.type_code)?),
        vec![],
        || {
            format!(
                "reading the history of a {} license by {}",
                row.type_code,
                authz.caller().dept
            )
        },
        None,
    )?;
    let events: Vec<Value> = app
        .store
        .license_events(&row.id)
        .await?
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "at": chrono::DateTime::from_timestamp_micros(e.at_us).map(|t| t.to_rfc3339()),
                "from": e.from_status,
                "to": e.to_status,
                "reason": e.reason,
                "by_dept": e.by_dept,
                "by_system": e.by_system,
                "operator": e.operator,
                "request_id": e.request_id,
            })
        })
        .collect();
    scope.update(|c| c.fields = vec![row.id.clone()]);
    Ok(Json(serde_json::json!({ "id": row.id, "events": events })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    jws: String,
}

async fn verify(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    body: std::result::Result<ApiJson<VerifyBody>, Error>,
) -> Result<Response> {
    scope.update(|c| c.action = Some("license.verify".into()));
    authz.require(
        Action::VerifyLicense,
        Resource::Gateway,
        vec![],
        || "checking a license".into(),
        None,
    )?;
    let ApiJson(body) = body?;
    let (today, _) = now();
    let verdict = app.vault.verify(&body.jws, today).await?;
    if let Some(doc) = &verdict.document {
        let hmac = app.vault.holder_hmac(&doc.holder.id);
        let id = doc.id.to_string();
        let ty = doc.type_code.to_string();
        scope.update(|c| {
            c.service = Some(format!("license:{ty}"));
            c.subject_hmac = Some(hmac);
            c.fields = vec![id];
        });
    }
    if verdict.valid {
        return Ok(Json(verdict).into_response());
    }
    let detail = format!(
        "the license does not verify: {}",
        verdict.reasons.join("; ")
    );
    let members = match serde_json::to_value(&verdict) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    Err(Error::Unprocessable { detail, members })
}

/// Most bytes one import request may stream.
pub const IMPORT_MAX_BYTES: usize = 64 << 20;

async fn import(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>> {
    use futures_util::StreamExt;
    scope.update(|c| c.action = Some("license.import".into()));
    require_media_type(
        &headers,
        &["application/x-ndjson", "application/jsonl"],
        "an import body is JSON lines: application/x-ndjson",
    )?;
    authz.require(
        Action::ImportLicenses,
        Resource::Gateway,
        vec![],
        || format!("an import by {}", id.0.dept),
        None,
    )?;
    let actor = actor(&id, &headers);
    let mut summary = Summary::default();
    let mut outcomes = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut line = 0u64;
    let mut total = 0usize;
    let mut skipping = false;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return Err(Error::BadRequest("request body could not be read".into())),
            None => None,
        };
        let end = chunk.is_none();
        if let Some(c) = chunk {
            total += c.len();
            if total > IMPORT_MAX_BYTES {
                return Err(Error::PayloadTooLarge(format!(
                    "an import request may carry at most {IMPORT_MAX_BYTES} bytes; rows up to line {line} were processed"
                )));
            }
            pending.extend_from_slice(&c);
        }
        // Complete lines (and, at the end, the last one without a newline).
        let mut rows = Vec::new();
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(nl + 1);
            let mut text = std::mem::replace(&mut pending, rest);
            text.pop();
            line += 1;
            if std::mem::take(&mut skipping) {
                rows.push(Row {
                    line,
                    request: Err(format!("row is longer than {MAX_ROW_BYTES} bytes")),
                });
            } else {
                rows.extend(text_row(line, text));
            }
        }
        if end && !pending.is_empty() {
            line += 1;
            rows.extend(text_row(line, std::mem::take(&mut pending)));
        }
        if pending.len() > MAX_ROW_BYTES {
            // Drop the over-long row's bytes as they come; it is rejected at its newline.
            pending.clear();
            skipping = true;
        }
        for row in rows {
            let o = license_import::import_row(&app.vault, &app.audit, &authz, &actor, row).await?;
            summary.add(&o);
            outcomes.push(o);
        }
        if end {
            break;
        }
    }
    scope.update(|c| {
        c.fields = outcomes
            .iter()
            .filter_map(|o| match o {
                RowOutcome::Stored { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
    });
    Ok(Json(
        serde_json::json!({ "summary": summary, "rows": outcomes }),
    ))
}

/// A JSON line; blank lines are skipped (their numbers still count).
fn text_row(line: u64, text: Vec<u8>) -> Option<Row> {
    match String::from_utf8(text) {
        Err(_) => Some(Row {
            line,
            request: Err("the row is not valid UTF-8".into()),
        }),
        Ok(s) if s.trim().is_empty() => None,
        Ok(s) => Some(license_import::json_row(line, s.trim())),
    }
}
