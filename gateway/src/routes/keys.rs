//! `GET /v1/keys`: the JWK set a verifier needs for response signatures.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use paotui_policies::cedar::{Action, Resource};

use crate::Result;
use crate::audit::AuditScope;
use crate::authz::Authz;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/keys", get(keys))
}

async fn keys(
    State(app): State<AppState>,
    scope: AuditScope,
    authz: Authz,
) -> Result<Json<paotui_certs::Jwks>> {
    scope.update(|c| c.action = Some("keys.read".into()));
    authz.require(
        Action::ReadKeys,
        Resource::Gateway,
        vec![],
        || "reading the gateway's keys".into(),
        None,
    )?;
    Ok(Json(app.jwks.clone()))
}
