//! The audit-and-sign layer: the one place that guarantees invariant 1 ("no answer without
//! a durable audit entry") and invariant 4 ("every response verifies with the published
//! keys").
//!
//! Handlers describe what they did in an [`AuditScope`] (service, hashed subject, fields
//! released); errors add an [`AuditReason`]. After the handler returns, this layer buffers
//! the body, appends the entry (returning only once it is committed), then adds
//! `Paotui-Audit-Index`, `Content-Digest` and the RFC 9421 signature. If the append
//! fails, the prepared answer is dropped and the caller gets 503.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paotui_certs::{SystemIdentity, httpsig};
use paotui_repository::{NewAuditEntry, Outcome, PolicyDecision};
use tracing::Instrument;

use crate::Error;
use crate::state::AppState;

pub const AUDIT_INDEX: HeaderName = HeaderName::from_static("paotui-audit-index");
pub const OPERATOR: HeaderName = HeaderName::from_static("paotui-operator");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The authenticated caller of a request, inserted by the TLS accept loop: the identity
/// in its certificate, or why the certificate cannot be served (it names no paotui
/// system, or it was revoked after the connection was opened).
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Option<SystemIdentity>,
    pub refusal: Option<String>,
}

/// The reason for a refusal or failure, set by [`Error`]'s response mapping.
#[derive(Debug, Clone)]
pub struct AuditReason(pub String);

/// What a handler did, filled in as it goes.
#[derive(Debug, Default, Clone)]
pub struct AuditContext {
    pub action: Option<String>,
    pub service: Option<String>,
    pub case_id: Option<String>,
    /// The matter (事项) the case is for, when the request names a case.
    pub matter: Option<String>,
    pub subject_hmac: Option<String>,
    pub fields: Vec<String>,
    /// The access policy's decision on the request (set by [`crate::authz::Authz`]).
    pub decision: Option<PolicyDecision>,
}

/// Shared handle to the request's [`AuditContext`].
#[derive(Debug, Clone, Default)]
pub struct AuditScope(Arc<Mutex<AuditContext>>);

impl AuditScope {
    pub fn update(&self, f: impl FnOnce(&mut AuditContext)) {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
    fn take(&self) -> AuditContext {
        match self.0.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditScope {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        parts
            .extensions
            .get::<AuditScope>()
            .cloned()
            .ok_or_else(|| {
                Error::Internal("audit scope missing: route outside the audit layer".into())
            })
    }
}

/// The caller's identity, for handlers (the layer has already refused calls without one).
pub struct Identity(pub SystemIdentity);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Identity {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        match parts.extensions.get::<Caller>() {
            Some(Caller {
                identity: Some(id),
                refusal: None,
            }) => Ok(Identity(id.clone())),
            _ => Err(Error::Forbidden(
                "client certificate does not name a paotui system".into(),
            )),
        }
    }
}

/// The staff id a request names in `Paotui-Operator` (the audit layer has already
/// refused a malformed one, so this reads it without judging it again).
pub fn operator(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(&OPERATOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A staff id from `Paotui-Operator`: 1–64 of `A-Za-z0-9._-@`, and not something that
/// looks like a citizen's identifier (which must never be logged in clear).
fn parse_operator(v: &HeaderValue) -> Result<String, Error> {
    let s = v
        .to_str()
        .map_err(|_| Error::BadRequest("Paotui-Operator must be ASCII".into()))?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !ok {
        return Err(Error::BadRequest(
            "Paotui-Operator must be 1-64 characters of A-Z a-z 0-9 . _ - @".into(),
        ));
    }
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if digits >= 11 {
        return Err(Error::BadRequest(
            "Paotui-Operator must be a staff id, not a personal identifier".into(),
        ));
    }
    Ok(s.to_owned())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The middleware. See the module documentation.
pub async fn audit_and_sign(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let scope = AuditScope::default();
    req.extensions_mut().insert(scope.clone());
    let (caller, refusal) = match req.extensions().get::<Caller>() {
        Some(c) => (c.identity.clone(), c.refusal.clone()),
        None => (None, None),
    };
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let default_action = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("(unmatched)", MatchedPath::as_str)
    );
    let operator = req.headers().get(&OPERATOR).map(parse_operator).transpose();
    let (response, operator) = match (&caller, refusal, operator) {
        (_, Some(refusal), _) => (Error::Forbidden(refusal).into_response(), None),
        (None, None, _) => (
            Error::Forbidden("client certificate does not name a paotui system".into())
                .into_response(),
            None,
        ),
        (_, None, Err(e)) => (e.into_response(), None),
        (Some(_), None, Ok(op)) => (next.run(req).await, op),
    };
    finish(
        &app,
        scope.take(),
        caller,
        operator,
        request_id,
        default_action,
        response,
    )
    .await
}

/// Deny by default: a success answer that no policy decision allowed never leaves. Every
/// route asks [`crate::authz::Authz`]; reaching the refusal is a bug in the route, said
/// loudly in the log.
fn deny_undecided(response: Response, ctx: &AuditContext, route: &str) -> Response {
    let allowed = matches!(ctx.decision, Some(PolicyDecision { allowed: true, .. }));
    if response.status().is_success() && !allowed {
        tracing::error!(%route, "answer without an allowing policy decision refused");
        return Error::Forbidden(
            "no access policy decision allowed this request (denied by default)".into(),
        )
        .into_response();
    }
    response
}

async fn finish(
    app: &AppState,
    ctx: AuditContext,
    caller: Option<SystemIdentity>,
    operator: Option<String>,
    request_id: String,
    default_action: String,
    response: Response,
) -> Response {
    let response = deny_undecided(response, &ctx, &default_action);
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return Error::Internal(format!("response body: {e}")).into_response(),
    };
    let status = parts.status;
    let reason = parts.extensions.remove::<AuditReason>().map(|r| r.0);
    let outcome = if status.is_success() {
        Outcome::Ok
    } else if ctx.decision.as_ref().is_some_and(|d| !d.allowed)
        || status == axum::http::StatusCode::FORBIDDEN
    {
        Outcome::Denied
    } else {
        Outcome::Error
    };
    let body_sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    let entry = NewAuditEntry {
        at_us: now_us(),
        request_id,
        caller_dept: caller.as_ref().map(|c| c.dept.to_string()),
        caller_system: caller.as_ref().map(|c| c.system.to_string()),
        caller_serial: caller.as_ref().map(|c| c.serial.clone()),
        operator,
        action: ctx.action.unwrap_or(default_action),
        service: ctx.service,
        case_id: ctx.case_id,
        matter: ctx.matter,
        outcome,
        status: status.as_u16(),
        reason,
        subject_hmac: ctx.subject_hmac,
        fields: if outcome == Outcome::Ok {
            ctx.fields
        } else {
            vec![]
        },
        body_sha256: Some(body_sha256),
        decision: ctx.decision,
    };
    let index = match app
        .audit
        .append(entry)
        .instrument(tracing::debug_span!("audit.append"))
        .await
    {
        Ok(i) => i,
        Err(e) => {
            // Invariant 1: the prepared answer is dropped, nothing leaves.
            tracing::error!(error = %e, "audit append failed; answering 503");
            return Error::AuditUnavailable.into_response();
        }
    };
    tracing::info!(
        audit_index = index,
        status = status.as_u16(),
        outcome = outcome.as_str(),
        "audited"
    );
    let headers = &mut parts.headers;
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    headers.insert(AUDIT_INDEX, HeaderValue::from(index));
    let digest = httpsig::content_digest(&bytes);
    if let Ok(v) = HeaderValue::from_str(&digest) {
        headers.insert(HeaderName::from_static("content-digest"), v);
    }
    let signed = {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let view = httpsig::MessageView {
            status: Some(status.as_u16()),
            headers: pairs,
            ..Default::default()
        };
        httpsig::sign_response(&app.key, &view, chrono::Utc::now().timestamp())
    };
    match signed.map(|h| {
        (
            HeaderValue::from_str(&h.signature_input),
            HeaderValue::from_str(&h.signature),
        )
    }) {
        Ok((Ok(input), Ok(sig))) => {
            headers.insert(HeaderName::from_static("signature-input"), input);
            headers.insert(HeaderName::from_static("signature"), sig);
        }
        other => {
            // Cannot happen with well-formed headers; the entry is already durable.
            tracing::error!(?other, "response signing failed");
            return Error::Internal("response signing failed".into()).into_response();
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn status_of(r: &Response) -> StatusCode {
        r.status()
    }

    #[test]
    fn a_success_answer_without_an_allowing_decision_is_refused() {
        let ok = || (StatusCode::OK, "secret rows").into_response();
        // No decision at all (a handler that forgot to ask).
        let r = deny_undecided(ok(), &AuditContext::default(), "GET /v1/x");
        assert_eq!(status_of(&r), StatusCode::FORBIDDEN);
        assert!(r.extensions().get::<AuditReason>().is_some());
        // A denying decision followed by a success answer (a handler that ignored it).
        let denied = AuditContext {
            decision: Some(PolicyDecision {
                allowed: false,
                policies: vec![],
            }),
            ..AuditContext::default()
        };
        assert_eq!(
            status_of(&deny_undecided(ok(), &denied, "GET /v1/x")),
            StatusCode::FORBIDDEN
        );
        // Allowed: the answer leaves as it is.
        let allowed = AuditContext {
            decision: Some(PolicyDecision {
                allowed: true,
                policies: vec!["p".into()],
            }),
            ..AuditContext::default()
        };
        assert_eq!(
            status_of(&deny_undecided(ok(), &allowed, "GET /v1/x")),
            StatusCode::OK
        );
        // Errors need no decision (bad input is answered before any is made).
        let bad = (StatusCode::BAD_REQUEST, "bad").into_response();
        assert_eq!(
            status_of(&deny_undecided(bad, &AuditContext::default(), "GET /v1/x")),
            StatusCode::BAD_REQUEST
        );
    }
}
