//! `GET /v1/keys`: the JWK set a verifier needs for response signatures.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::audit::AuditScope;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/keys", get(keys))
}

async fn keys(State(app): State<AppState>, scope: AuditScope) -> Json<paotui_certs::Jwks> {
    scope.update(|c| c.action = Some("keys.read".into()));
    Json(app.jwks.clone())
}
