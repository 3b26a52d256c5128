//! The audit log for auditors (电子监察): the signed checkpoint, entries and proofs.
//!
//! - `GET /v1/audit/checkpoint`: the latest C2SP checkpoint as a signed note (text).
//! - `GET /v1/audit/entries/{index}`: one entry, its canonical bytes and leaf hash.
//! - `GET /v1/audit/proof/inclusion?index=&size=`: RFC 9162 inclusion proof.
//! - `GET /v1/audit/proof/consistency?from=&to=`: RFC 9162 consistency proof.
//!
//! - `GET /v1/audit/subject?id=&before=&limit=`: who read one subject's data.
//! - `POST /v1/audit/sql` `{"sql"}`: one read-only query over the log's tables
//!   ([`crate::sql`]); JSON, or CSV / Arrow IPC by `Accept`.
//!
//! Hashes are base64 (as in checkpoints). The policies decide `read_audit` (shipped: only
//! systems of an auditor department, config `[audit] auditors`) and
//! `read_subject_accesses` (shipped: portals, `[audit] portals`, and auditors); others get
//! an audited 403.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use paotui_certs::tlog::{self, Hash};
use serde::Serialize;

use paotui_policies::cedar::{Action, Resource};

use crate::audit::AuditScope;
use crate::authz::Authz;
use crate::state::AppState;
use crate::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/audit/entries/{index}", get(entry))
        .route("/v1/audit/proof/inclusion", get(inclusion))
        .route("/v1/audit/proof/consistency", get(consistency))
        .route("/v1/audit/subject", get(subject))
        .route("/v1/audit/sql", axum::routing::post(sql))
}

/// Names the action and asks the policies whether the caller may read the log.
fn auditor(authz: &Authz, scope: &AuditScope, action: &str) -> Result<()> {
    scope.update(|c| c.action = Some(action.to_owned()));
    authz.require(
        Action::ReadAudit,
        Resource::AuditLog,
        vec![],
        || format!("reading the audit log by {}", authz.caller().dept),
        None,
    )
}

fn number(name: &str, v: &str) -> Result<u64> {
    // Plain decimal only: no sign, no spaces, no exponent.
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest(format!(
            "{name} must be a non-negative integer"
        )));
    }
    v.parse()
        .map_err(|_| Error::BadRequest(format!("{name} is out of range")))
}

/// Query parameters: only the named ones, each at most once, each a number.
fn params(raw: Option<String>, allowed: &[&str]) -> Result<HashMap<String, u64>> {
    crate::extract::query_params(raw, allowed)?
        .into_iter()
        .map(|(k, v)| number(&k, &v).map(|n| (k, n)))
        .collect()
}

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(tlog::hash_to_base64).collect()
}

async fn checkpoint(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
) -> Result<Response> {
    auditor(&authz, &scope, "audit.checkpoint")?;
    let cp = app.audit.checkpoint();
    let mut r = cp.note.clone().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

#[derive(Serialize)]
struct EntryView {
    index: u64,
    /// SHA-256(0x00 ‖ canonical), base64.
    leaf_hash: String,
    /// The canonical bytes (format v1), base64.
    canonical: String,
    entry: paotui_repository::NewAuditEntry,
}

async fn entry(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(index): Path<String>,
) -> Result<Json<EntryView>> {
    auditor(&authz, &scope, "audit.entry")?;
    let index = number("index", &index)?;
    let e = app
        .audit
        .entry(index)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no audit entry {index}")))?;
    let canonical = e.entry.canonical_bytes();
    Ok(Json(EntryView {
        index,
        leaf_hash: tlog::hash_to_base64(&tlog::leaf_hash(&canonical)),
        canonical: STANDARD.encode(&canonical),
        entry: e.entry,
    }))
}

#[derive(Serialize)]
struct InclusionView {
    index: u64,
    tree_size: u64,
    leaf_hash: String,
    hashes: Vec<String>,
}

async fn inclusion(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionView>> {
    auditor(&authz, &scope, "audit.proof.inclusion")?;
    let p = params(q, &["index", "size"])?;
    let index = *p
        .get("index")
        .ok_or_else(|| Error::BadRequest("index is required".into()))?;
    let size = match p.get("size") {
        Some(s) => *s,
        None => app.audit.checkpoint().checkpoint.size,
    };
    if index >= size {
        return Err(Error::BadRequest(format!(
            "index {index} is not below tree size {size}"
        )));
    }
    let hashes = app.audit.inclusion_proof(index, size).await?;
    let leaf = app
        .store
        .tree_nodes(&[tlog::NodeId { level: 0, index }])
        .await?;
    Ok(Json(InclusionView {
        index,
        tree_size: size,
        leaf_hash: b64(&leaf).concat(),
        hashes: b64(&hashes),
    }))
}

#[derive(Serialize)]
struct ConsistencyView {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

async fn consistency(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyView>> {
    auditor(&authz, &scope, "audit.proof.consistency")?;
    let p = params(q, &["from", "to"])?;
    let from = *p
        .get("from")
        .ok_or_else(|| Error::BadRequest("from is required".into()))?;
    let to = match p.get("to") {
        Some(t) => *t,
        None => app.audit.checkpoint().checkpoint.size,
    };
    if from > to {
        return Err(Error::BadRequest(format!(
            "from ({from}) must not exceed to ({to})"
        )));
    }
    let hashes = app.audit.consistency_proof(from, to).await?;
    Ok(Json(ConsistencyView {
        from,
        to,
        hashes: b64(&hashes),
    }))
}

/// Most accesses one page of `/v1/audit/subject` lists.
pub const MAX_SUBJECT_PAGE: u32 = 500;

/// One access to a subject's data, as a citizen sees it: who, when, for which case and
/// matter, what was read and whether it was answered. (Reasons are left out: they speak
/// about policies, not about the citizen.)
#[derive(Serialize)]
struct AccessView {
    /// The audit index: the entry can be proven in the log (`/v1/audit/proof/inclusion`).
    index: u64,
    at: Option<String>,
    dept: Option<String>,
    system: Option<String>,
    operator: Option<String>,
    action: String,
    /// The data service, or `license:<type>`.
    service: Option<String>,
    case_id: Option<String>,
    matter: Option<String>,
    outcome: paotui_repository::Outcome,
    fields: Vec<String>,
}

#[derive(Serialize)]
struct SubjectAccesses {
    /// `person` or `business`.
    subject_kind: &'static str,
    /// Newest first.
    accesses: Vec<AccessView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<u64>,
}

/// Who read a subject's data ("who read my data", for a citizen-facing portal): found by
/// the identifier's HMAC, the only form the log holds. The lookup is itself audited under
/// that HMAC, so the citizen later sees the portal's lookups too.
async fn subject(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    RawQuery(raw): RawQuery,
) -> Result<Json<SubjectAccesses>> {
    scope.update(|c| c.action = Some("audit.subject".to_owned()));
    let q = crate::extract::query_params(raw, &["id", "before", "limit"])?;
    let id = q
        .get("id")
        .ok_or_else(|| Error::BadRequest("id is required: the subject's identifier".into()))?;
    // As cases and the vault read an applicant or holder: an ID number or a credit code.
    let (canonical, kind) =
        crate::vault::canonical_holder(id).map_err(|e| Error::BadRequest(format!("id: {e}")))?;
    let hmac = app.subject_key.hash(&canonical);
    scope.update(|c| c.subject_hmac = Some(hmac.clone()));
    let before = q.get("before").map(|v| number("before", v)).transpose()?;
    let limit = match q.get("limit").map(|v| number("limit", v)).transpose()? {
        None => 100,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_SUBJECT_PAGE).contains(n))
            .ok_or_else(|| Error::BadRequest(format!("limit must be 1-{MAX_SUBJECT_PAGE}")))?,
    };
    authz.require(
        Action::ReadSubjectAccesses,
        Resource::AuditLog,
        vec![],
        || {
            format!(
                "asking who read a subject's data by {}",
                authz.caller().dept
            )
        },
        None,
    )?;
    let found = app.store.audit_of_subject(&hmac, before, limit).await?;
    let next_before = (found.len() == limit as usize)
        .then(|| found.last().map(|e| e.index))
        .flatten();
    let accesses = found
        .into_iter()
        .map(|e| {
            let n = e.entry;
            AccessView {
                index: e.index,
                at: chrono::DateTime::from_timestamp_micros(n.at_us).map(|t| t.to_rfc3339()),
                dept: n.caller_dept,
                system: n.caller_system,
                operator: n.operator,
                action: n.action,
                service: n.service,
                case_id: n.case_id,
                matter: n.matter,
                outcome: n.outcome,
                fields: n.fields,
            }
        })
        .collect();
    Ok(Json(SubjectAccesses {
        subject_kind: kind,
        accesses,
        next_before,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
}

const CSV: &str = "text/csv";

/// Auditor SQL: policy `run_sql` (shipped: the auditors), then [`crate::sql::run`] under
/// `[sql]` limits. The answer is JSON (`columns`, `rows`, `row_count`, `truncated`), CSV
/// with `Accept: text/csv`, or an Arrow IPC stream with `Accept:
/// application/vnd.apache.arrow.stream` (both with `Paotui-Truncated` when capped).
async fn sql(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    body: std::result::Result<crate::extract::ApiJson<SqlBody>, Error>,
) -> Result<Response> {
    scope.update(|c| c.action = Some("audit.sql".to_owned()));
    authz.require(
        Action::RunSql,
        Resource::AuditLog,
        vec![],
        || format!("running SQL over the audit log by {}", authz.caller().dept),
        None,
    )?;
    let crate::extract::ApiJson(body) = body?;
    let ctx = crate::sql::session(&app.store, Some(&app.catalog), &app.sql).await?;
    let answer = crate::sql::run(&ctx, &body.sql, &app.sql).await?;
    let batch = datafusion::arrow::compute::concat_batches(&answer.schema, &answer.batches)
        .map_err(|e| Error::Internal(format!("sql answer: {e}")))?;
    let truncated = HeaderValue::from_static(if answer.truncated { "true" } else { "false" });
    if crate::routes::services::wants_arrow(&headers) {
        let mut r = crate::routes::services::arrow_stream(&batch)?.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::routes::services::ARROW_STREAM),
        );
        r.headers_mut().insert("paotui-truncated", truncated);
        return Ok(r);
    }
    if crate::routes::services::accepts(&headers, CSV) {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(Vec::new());
        w.write(&batch)
            .map_err(|e| Error::Internal(format!("sql csv: {e}")))?;
        let mut r = w.into_inner().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        r.headers_mut().insert("paotui-truncated", truncated);
        return Ok(r);
    }
    let columns: Vec<serde_json::Value> = answer
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(Json(serde_json::json!({
        "columns": columns,
        "rows": crate::routes::services::json_rows(&batch)?,
        "row_count": answer.rows,
        "truncated": answer.truncated,
    }))
    .into_response())
}
