//! The supervision figures (电子监察): `GET /v1/stats` lists them with their definitions,
//! `GET /v1/stats/{figure}?from=&to=&dept=&site=` computes one ([`crate::stats`]). The
//! policies decide `read_stats` (shipped: the auditors).

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use paotui_policies::cedar::{Action, Resource};
use serde_json::{Value, json};

use crate::Result;
use crate::audit::AuditScope;
use crate::authz::Authz;
use crate::state::AppState;
use crate::stats::{FIGURES, Filters};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/stats", get(list))
        .route("/v1/stats/{figure}", get(one))
}

fn allowed(authz: &Authz) -> Result<()> {
    authz.require(
        Action::ReadStats,
        Resource::AuditLog,
        vec![],
        || format!("reading the supervision figures by {}", authz.caller().dept),
        None,
    )
}

async fn list(authz: Authz, scope: AuditScope) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("stats.list".to_owned()));
    allowed(&authz)?;
    let figures: Vec<Value> = FIGURES
        .iter()
        .map(|f| json!({"figure": f.name, "title": f.title, "definition": f.definition}))
        .collect();
    Ok(Json(json!({ "figures": figures })))
}

async fn one(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("stats.read".to_owned()));
    allowed(&authz)?;
    let figure = crate::stats::figure(&name)?;
    let q = crate::extract::query_params(raw, &["from", "to", "dept", "site"])?;
    let get = |k: &str| q.get(k).map(String::as_str);
    let filters = Filters::parse(get("from"), get("to"), get("dept"), get("site"))?;
    let answer =
        crate::stats::compute(&app.store, &app.catalog, &app.sql, figure, &filters).await?;
    Ok(Json(json!({
        "figure": figure.name,
        "title": figure.title,
        "definition": figure.definition,
        "filters": {
            "from": filters.from, "to": filters.to, "dept": filters.dept, "site": filters.site,
        },
        "rows": answer,
    })))
}
