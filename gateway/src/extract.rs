//! Request extractors that turn every kind of bad input into a problem+json 4xx.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::error::redact;

/// JSON body: content type checked, size limited (`DefaultBodyLimit`), and parse errors
/// reported with line/column and with any values redacted.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        require_media_type(
            req.headers(),
            &["application/json"],
            "request body must be application/json",
        )?;
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge("request body is larger than the configured limit".into())
            } else {
                Error::BadRequest("request body could not be read".into())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            Error::BadRequest(format!("invalid JSON body: {}", redact(&e.to_string())))
        })
    }
}

/// Refuses a body whose `Content-Type` (parameters aside) is none of `allowed` with 415.
pub fn require_media_type(
    headers: &axum::http::HeaderMap,
    allowed: &[&str],
    refusal: &str,
) -> Result<(), Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if allowed.iter().any(|a| mime.eq_ignore_ascii_case(a)) {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(refusal.to_owned()))
    }
}

/// Query parameters: only the `allowed` names, each at most once.
pub fn query_params(
    raw: Option<String>,
    allowed: &[&str],
) -> Result<std::collections::HashMap<String, String>, Error> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Error::BadRequest(format!(
                "unknown query parameter {k:?}; expected {}",
                allowed.join(", ")
            )));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::BadRequest(format!("{k} is given twice")));
        }
    }
    Ok(out)
}
