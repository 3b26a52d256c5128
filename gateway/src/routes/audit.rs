//! The audit log for auditors (电子监察): the signed checkpoint, entries and proofs.
//!
//! - `GET /v1/audit/checkpoint`: the latest C2SP checkpoint as a signed note (text).
//! - `GET /v1/audit/entries/{index}`: one entry, its canonical bytes and leaf hash.
//! - `GET /v1/audit/proof/inclusion?index=&size=`: RFC 9162 inclusion proof.
//! - `GET /v1/audit/proof/consistency?from=&to=`: RFC 9162 consistency proof.
//!
//! Hashes are base64 (as in checkpoints). The policies decide `read_audit` (shipped: only
//! systems of an auditor department, config `[audit] auditors`); others get an audited 403.

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
