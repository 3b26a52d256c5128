//! Liveness and readiness probes (not audited, not signed: they carry no data).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
}

/// Ready when the store answers.
async fn readyz(State(app): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match app.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "store": app.store.backend_name()})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "store": app.store.backend_name()})),
            )
        }
    }
}
