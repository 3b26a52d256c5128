//! The gateway's one error type, and its mapping to RFC 9457 problem+json — in one place.
//!
//! Callers see a status, a title and a reason they can act on; internal causes (SQL
//! errors, file paths) are logged and replaced by a generic detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::audit::AuditReason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- answers to callers (4xx / 5xx) ----
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Forbidden(String),
    /// The request contradicts stored state (a duplicate number, a refused transition).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but failing a check; `members` go into the problem as extension
    /// members (RFC 9457 §3.2), e.g. a license verdict's reasons.
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        members: serde_json::Map<String, serde_json::Value>,
    },
    #[error("{0}")]
    SourceUnavailable(String),
    #[error("{0}")]
    SourceTimeout(String),
    #[error("{0}")]
    SourceFailed(String),
    #[error("the audit log cannot be written; no data is released")]
    AuditUnavailable,
    #[error("request took longer than {0} ms")]
    Timeout(u64),

    // ---- start-up and CLI ----
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Certs(#[from] paotui_certs::Error),
    #[error(transparent)]
    Store(#[from] paotui_repository::Error),
    #[error(transparent)]
    Policy(#[from] paotui_policies::Error),
    #[error(transparent)]
    Source(#[from] paotui_adapters::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Client(String),
    /// `paotui audit verify` / `check-proof` found the log or a proof bad.
    #[error("{0}")]
    Verification(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    fn status_and_slug(&self) -> (StatusCode, &'static str) {
        use Error::*;
        match self {
            BadRequest(_) | Policy(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Conflict(_) | Store(paotui_repository::Error::Conflict(_)) => {
                (StatusCode::CONFLICT, "conflict")
            }
            Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            SourceUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "source-unavailable"),
            SourceTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "source-timeout"),
            SourceFailed(_) => (StatusCode::BAD_GATEWAY, "source-failed"),
            AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit-unavailable"),
            Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Source(paotui_adapters::Error::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "source-unavailable")
            }
            Source(paotui_adapters::Error::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "source-timeout")
            }
            Source(_) => (StatusCode::BAD_GATEWAY, "source-failed"),
            Store(paotui_repository::Error::NotFound(_)) => (StatusCode::NOT_FOUND, "not-found"),
            Store(paotui_repository::Error::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "audit-unavailable")
            }
            Config(_)
            | Certs(_)
            | Store(_)
            | Io { .. }
            | Client(_)
            | Verification(_)
            | Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The reason shown to the caller (and written in the audit entry).
    fn public_detail(&self) -> String {
        use Error::*;
        match self {
            // Adapter errors name the source but not the database's own message.
            Source(paotui_adapters::Error::Unavailable { source_name, .. }) => {
                format!("source {source_name} unavailable")
            }
            Source(paotui_adapters::Error::Timeout { source_name, ms }) => {
                format!("source {source_name} did not answer within {ms} ms")
            }
            Source(paotui_adapters::Error::Query { source_name, .. }) => {
                format!("source {source_name} failed to answer the query")
            }
            Store(
                paotui_repository::Error::NotFound(m) | paotui_repository::Error::Conflict(m),
            ) => m.clone(),
            Store(paotui_repository::Error::Unavailable(_)) => AuditUnavailable.to_string(),
            Config(_)
            | Certs(_)
            | Store(_)
            | Io { .. }
            | Client(_)
            | Verification(_)
            | Internal(_)
            | Source(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    ty: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(flatten)]
    members: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for Error {
    fn into_response(mut self) -> Response {
        let (status, slug) = self.status_and_slug();
        let detail = self.public_detail();
        let mut members = match &mut self {
            Error::Unprocessable { members, .. } => std::mem::take(members),
            _ => serde_json::Map::new(),
        };
        // Extension members never shadow the standard ones (RFC 9457 §3.1).
        for reserved in ["type", "title", "status", "detail", "instance"] {
            members.remove(reserved);
        }
        if status.is_server_error() {
            // The full cause goes to the operator's log, never to the caller.
            // Redacted: a database's message may quote the offending value.
            tracing::error!(error = %redact(&self.to_string()), "request failed");
        }
        let problem = Problem {
            ty: format!("urn:paotui:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.clone(),
            members,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp.extensions_mut().insert(AuditReason(detail));
        resp
    }
}

/// Removes values from an error message: serde and databases quote offending strings
/// ("…" or '…') and print offending numbers, and any may be a personal identifier.
pub fn redact(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote: Option<char> = None;
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push('…');
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in msg.chars() {
        match (in_quote, c) {
            (None, '"' | '\'') => {
                in_quote = Some(c);
                continue;
            }
            (Some(q), c) if c == q => {
                out.push(q);
                out.push('…');
                out.push(q);
                in_quote = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, _) => {}
        }
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        out.push(c);
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_values_but_keeps_structure() {
        assert_eq!(
            redact(
                r#"invalid type: string "11010519491231002X", expected u64 at line 1 column 30"#
            ),
            r#"invalid type: string "…", expected u64 at line 1 column 30"#
        );
        assert_eq!(
            redact("invalid type: integer `110105194912310020`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(redact("unknown field `fieldz`"), "unknown field `fieldz`");
        assert_eq!(
            redact("Cannot cast string '张三' to value of Int64 type"),
            "Cannot cast string '…' to value of Int64 type"
        );
    }
}
