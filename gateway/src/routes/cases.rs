//! Cases (办件) over HTTP.
//!
//! - `GET /v1/matters`: the matter catalog (what a window can accept).
//! - `POST /v1/cases`: a window accepts a case for one or several matters (any window may
//!   accept any department's matter: 通办) → 201 with the materials resolution.
//! - `GET /v1/cases/{id}`: the case, its deadlines, the resolution of every material and
//!   the paper copies avoided; for the accepting site, the handling departments and the
//!   auditors.
//! - `POST /v1/cases/{id}/events`: supplemented / approved / completed / rejected.
//! - `POST /v1/cases/{id}/evaluation`: the applicant's rating (一事一评), once, when closed.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paotui_policies::cedar::{Action, CaseEntity, Policies, Resource};
use paotui_policies::matters::MatterCode;
use paotui_repository::{CaseEvent, CaseMatter, CaseParty, Evaluation, StoredCase};
use serde::Deserialize;
use serde_json::Value;

use crate::audit::{AuditScope, Identity, operator};
use crate::authz::Authz;
use crate::cases::{self, CaseView};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::vault::now;
use crate::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/matters", get(matters))
        .route("/v1/cases", post(open))
        .route("/v1/cases/{id}", get(fetch))
        .route("/v1/cases/{id}/events", post(event))
        .route("/v1/cases/{id}/evaluation", post(evaluate))
}

/// Most matters one case may bundle (一表式 / 并联审批).
pub const MAX_MATTERS_PER_CASE: usize = 10;

fn note(n: Option<&str>) -> Result<Option<String>> {
    match n.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.len() <= 1000 && !t.chars().any(char::is_control) => Ok(Some(t.to_owned())),
        Some(_) => Err(Error::BadRequest(
            "note must be at most 1000 bytes without control characters".into(),
        )),
    }
}

async fn matters(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("matter.list".into()));
    authz.require(
        Action::ListMatters,
        Resource::Gateway,
        vec![],
        || "listing the matters".into(),
        None,
    )?;
    Ok(Json(
        serde_json::json!({ "matters": app.catalog.matters.values().collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    /// ID number (a person) or unified social credit code (an enterprise).
    applicant: String,
    matters: Vec<String>,
    /// Others the matters name, by role: `[{"role": "legal_rep", "id": "…"}]`.
    #[serde(default)]
    parties: Vec<PartyBody>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyBody {
    role: String,
    id: String,
}

/// Most parties one case may give.
pub const MAX_PARTIES_PER_CASE: usize = 10;

async fn open(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    body: std::result::Result<ApiJson<OpenBody>, Error>,
) -> Result<Response> {
    scope.update(|c| c.action = Some("case.open".into()));
    let ApiJson(body) = body?;
    let (applicant, kind) = crate::vault::canonical_holder(&body.applicant)
        .map_err(|e| Error::BadRequest(format!("applicant: {e}")))?;
    let hmac = app.subject_key.hash(&applicant);
    scope.update(|c| c.subject_hmac = Some(hmac.clone()));
    if body.matters.is_empty() || body.matters.len() > MAX_MATTERS_PER_CASE {
        return Err(Error::BadRequest(format!(
            "a case bundles 1-{MAX_MATTERS_PER_CASE} matters"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut specs = Vec::new();
    for code in &body.matters {
        let spec = MatterCode::parse(code)
            .ok()
            .and_then(|c| app.catalog.matters.get(&c))
            .ok_or_else(|| Error::BadRequest(format!("unknown matter {code:?}")))?;
        if !seen.insert(spec.code.clone()) {
            return Err(Error::BadRequest(format!("matter {code} is listed twice")));
        }
        specs.push(spec);
    }
    // Accepting is decided per matter; the case opens only if every one is allowed.
    let mut policies = Vec::new();
    for spec in &specs {
        let v = authz.verdict(Action::OpenCase, Resource::Matter(spec), vec![])?;
        if !v.allowed {
            authz.record(false, v.policies.clone());
            return Err(Error::Forbidden(v.reason(&format!(
                "accepting matter {} at {}",
                spec.code,
                authz.caller().dept
            ))));
        }
        policies.extend(v.policies);
    }
    policies.sort();
    policies.dedup();
    authz.record(true, policies);
    let parties = parties(&app, &specs, &body.parties, &hmac)?;
    let note = note(body.note.as_deref())?;
    let (today, at) = now();
    let case_id = format!(
        "CASE-{}-{}",
        today.format("%Y%m%d"),
        &uuid::Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase()
    );
    let mut case_matters = Vec::new();
    for s in &specs {
        case_matters.push(CaseMatter {
            matter: s.code.to_string(),
            owner: s.owner.to_string(),
            deadline: cases::deadline(&app.calendar, s.kind, today)?.map(|d| d.to_string()),
        });
    }
    let codes: Vec<String> = specs.iter().map(|s| s.code.to_string()).collect();
    scope.update(|c| {
        c.case_id = Some(case_id.clone());
        c.matter = Some(codes.join(","));
    });
    let operator = operator(&headers);
    let case = StoredCase {
        id: case_id.clone(),
        applicant_hmac: hmac,
        applicant_kind: kind.into(),
        site_dept: id.0.dept.to_string(),
        site_system: id.0.system.to_string(),
        operator: operator.clone(),
        status: "accepted".into(),
        accepted_at_us: at,
        accepted_on: today.to_string(),
        closed_at_us: None,
        parties,
    };
    let first = CaseEvent {
        at_us: at,
        event: "accepted".into(),
        by_dept: case.site_dept.clone(),
        by_system: case.site_system.clone(),
        operator,
        note,
    };
    app.store.open_case(&case, &case_matters, &first).await?;
    let view = cases::view(
        &app.store,
        &app.catalog,
        &app.calendar,
        case,
        case_matters,
        today,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The parties of a new case: each in a role one of its matters names, its identifier of
/// the role's kind (check character included), stored only as HMAC; not the applicant,
/// and not given twice in one role.
fn parties(
    app: &AppState,
    specs: &[&paotui_policies::matters::Matter],
    given: &[PartyBody],
    applicant_hmac: &str,
) -> Result<Vec<CaseParty>> {
    if given.len() > MAX_PARTIES_PER_CASE {
        return Err(Error::BadRequest(format!(
            "a case gives at most {MAX_PARTIES_PER_CASE} parties"
        )));
    }
    let mut out: Vec<CaseParty> = Vec::new();
    for (i, p) in given.iter().enumerate() {
        let Some(role) = specs.iter().find_map(|m| m.party(&p.role)) else {
            let named: BTreeSet<&str> = specs
                .iter()
                .flat_map(|m| m.parties.iter().map(|r| r.role.as_str()))
                .collect();
            return Err(Error::BadRequest(format!(
                "parties[{i}]: no matter of this case names the role {:?} (named: {})",
                crate::redact(&p.role),
                if named.is_empty() {
                    "none".to_owned()
                } else {
                    named.into_iter().collect::<Vec<_>>().join(", ")
                }
            )));
        };
        let id = role
            .kind
            .parse(&p.id)
            .map_err(|e| Error::BadRequest(format!("parties[{i}] ({}): {e}", role.role)))?;
        let subject_hmac = app.subject_key.hash(&id);
        if subject_hmac == applicant_hmac {
            return Err(Error::BadRequest(format!(
                "parties[{i}] ({}) is the applicant",
                role.role
            )));
        }
        if out
            .iter()
            .any(|q| q.role == role.role && q.subject_hmac == subject_hmac)
        {
            return Err(Error::BadRequest(format!(
                "parties[{i}] ({}) is given twice",
                role.role
            )));
        }
        out.push(CaseParty {
            role: role.role.clone(),
            subject_hmac,
            subject_kind: crate::vault::kind_name(role.kind).to_owned(),
        });
    }
    Ok(out)
}

/// Loads a case and asks the policies whether the caller may `action` it (`context`
/// as the action needs). Sets the audit scope (case, matters, applicant) either way.
async fn load(
    app: &AppState,
    authz: &Authz,
    scope: &AuditScope,
    case_id: &str,
    action: Action,
) -> Result<(StoredCase, Vec<CaseMatter>)> {
    let (case, matters) = app
        .store
        .case(case_id)
        .await?
        .ok_or_else(|| Error::NotFound("no such case".into()))?;
    let codes: Vec<&str> = matters.iter().map(|m| m.matter.as_str()).collect();
    scope.update(|c| {
        c.case_id = Some(case.id.clone());
        c.matter = Some(codes.join(","));
        c.subject_hmac = Some(case.applicant_hmac.clone());
    });
    require_on_case(authz, &case, &matters, action, vec![])?;
    Ok((case, matters))
}

/// Decides `action` on a stored case (its site and handling departments as attributes).
fn require_on_case(
    authz: &Authz,
    case: &StoredCase,
    matters: &[CaseMatter],
    action: Action,
    context: crate::authz::CedarContext,
) -> Result<()> {
    let entity = CaseEntity {
        id: &case.id,
        status: &case.status,
        site: &case.site_dept,
        handlers: matters.iter().map(|m| m.owner.as_str()).collect(),
    };
    authz.require(
        action,
        Resource::Case(&entity),
        context,
        || {
            format!(
                "{} of case {} by {}",
                action.name(),
                case.id,
                authz.caller().dept
            )
        },
        None,
    )
}

async fn fetch(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(case_id): Path<String>,
) -> Result<Json<CaseView>> {
    scope.update(|c| c.action = Some("case.read".into()));
    let (case, matters) = load(&app, &authz, &scope, &case_id, Action::ReadCase).await?;
    let (today, _) = now();
    Ok(Json(
        cases::view(
            &app.store,
            &app.catalog,
            &app.calendar,
            case,
            matters,
            today,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    event: String,
    #[serde(default)]
    note: Option<String>,
}

async fn event(
    State(app): State<AppState>,
    id: Identity,
    authz: Authz,
    scope: AuditScope,
    headers: axum::http::HeaderMap,
    Path(case_id): Path<String>,
    body: std::result::Result<ApiJson<EventBody>, Error>,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("case.event".into()));
    // Parties only learn whether an event fits the case's state.
    let (case, matters) = load(&app, &authz, &scope, &case_id, Action::ReadCase).await?;
    let ApiJson(body) = body?;
    let note = note(body.note.as_deref())?;
    let to = cases::next_status(&case.status, &body.event).map_err(|why| {
        if why.starts_with("unknown event") {
            Error::BadRequest(why)
        } else {
            Error::Conflict(why)
        }
    })?;
    // Shipped: deciding is the handling department's; the window records supplements.
    require_on_case(
        &authz,
        &case,
        &matters,
        Action::AdvanceCase,
        Policies::event_context(to),
    )?;
    let dept = id.0.dept.as_str();
    if to == "rejected" && note.is_none() {
        return Err(Error::BadRequest(
            "a rejection needs a note saying why".into(),
        ));
    }
    let (_, at) = now();
    let ev = CaseEvent {
        at_us: at,
        event: body.event.clone(),
        by_dept: dept.to_owned(),
        by_system: id.0.system.to_string(),
        operator: operator(&headers),
        note,
    };
    app.store
        .change_case_status(&case.id, &case.status, to, &ev)
        .await?;
    Ok(Json(serde_json::json!({
        "id": case.id,
        "previous": case.status,
        "status": to,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationBody {
    score: i32,
    #[serde(default)]
    comment: Option<String>,
}

async fn evaluate(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(case_id): Path<String>,
    body: std::result::Result<ApiJson<EvaluationBody>, Error>,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("case.evaluate".into()));
    let (case, _) = load(&app, &authz, &scope, &case_id, Action::EvaluateCase).await?;
    let ApiJson(body) = body?;
    if !(1..=5).contains(&body.score) {
        return Err(Error::BadRequest("score must be 1-5".into()));
    }
    if !paotui_repository::FINAL_CASE_STATUSES.contains(&case.status.as_str()) {
        return Err(Error::Conflict(format!(
            "the case is {}; it is evaluated once closed",
            case.status
        )));
    }
    let comment = note(body.comment.as_deref())?;
    let (_, at) = now();
    app.store
        .evaluate_case(
            &case.id,
            &Evaluation {
                at_us: at,
                score: body.score,
                comment,
            },
        )
        .await?;
    Ok(Json(
        serde_json::json!({ "id": case.id, "score": body.score }),
    ))
}
