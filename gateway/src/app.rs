//! Builds the application: state from config, and the router with its tower layers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use paotui_adapters::{
    DataSource, FileSource, HttpOptions, HttpSource, MySqlSource, PostgresSource, SourceLimits,
    SqliteSource,
};
use paotui_certs::{DataKey, GatewayKey, IssuerKeys, Jwks, SubjectKey};
use paotui_policies::catalog::Catalog;
use paotui_policies::cedar::Policies;
use paotui_repository::{AuditLog, Store};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::audit::{self, REQUEST_ID};
use crate::config::{Config, SourceConfig};
use crate::routes;
use crate::state::{AppState, Inner};
use crate::vault::Vault;
use crate::{Error, Result};

/// Opens everything the config names: store, keys, catalog, department sources.
pub async fn build_state(cfg: &Config) -> Result<AppState> {
    let store = Store::open(&cfg.database_url()).await?;
    let (key, created) = GatewayKey::load_or_generate(&cfg.path(&cfg.keys.signing))?;
    if created {
        tracing::info!(kid = key.kid(), "generated gateway signing key");
    }
    let key = Arc::new(key);
    let audit = AuditLog::open(store.clone(), key.clone(), cfg.audit.options()?).await?;
    let auditors = auditors(cfg)?;
    let subject_key = SubjectKey::load_or_generate(&cfg.path(&cfg.keys.subject_hmac))?;
    let catalog_path = cfg.path(&cfg.catalog);
    let catalog = cfg.load_catalog()?;
    let limits = SourceLimits {
        statement_timeout: Duration::from_millis(cfg.limits.statement_timeout_ms),
        max_rows: cfg.limits.max_rows,
    };
    let mut sources: HashMap<String, Arc<dyn DataSource>> = HashMap::new();
    for (name, sc) in &cfg.sources {
        let src: Arc<dyn DataSource> = match sc {
            SourceConfig::Sqlite { path } => {
                Arc::new(SqliteSource::open(name, &cfg.path(path), limits).await?)
            }
            SourceConfig::Postgres { url_env, url } => Arc::new(PostgresSource::connect(
                name,
                &SourceConfig::db_url(name, url_env.as_deref(), url.as_deref())?,
                limits,
            )?),
            SourceConfig::Mysql { url_env, url } => Arc::new(MySqlSource::connect(
                name,
                &SourceConfig::db_url(name, url_env.as_deref(), url.as_deref())?,
                limits,
            )?),
            SourceConfig::Csv {
                path,
                table,
                columns,
            } => Arc::new(
                FileSource::csv(
                    name,
                    &cfg.path(path),
                    table.as_deref().unwrap_or(name),
                    columns,
                    limits,
                )
                .await?,
            ),
            SourceConfig::Parquet { path, table } => Arc::new(
                FileSource::parquet(
                    name,
                    &cfg.path(path),
                    table.as_deref().unwrap_or(name),
                    limits,
                )
                .await?,
            ),
            SourceConfig::Http {
                url,
                table,
                columns,
                rows_at,
                token_env,
            } => Arc::new(HttpSource::new(
                name,
                HttpOptions {
                    url: url.clone(),
                    table: table.clone().unwrap_or_else(|| name.clone()),
                    columns: columns.clone(),
                    rows_at: rows_at.clone(),
                    bearer: token_env
                        .as_deref()
                        .map(|v| SourceConfig::from_env(name, v))
                        .transpose()?,
                },
                limits,
            )?),
        };
        sources.insert(name.clone(), src);
    }
    for s in catalog.services.values() {
        if !sources.contains_key(&s.source) {
            return Err(Error::Config(format!(
                "{}: service {} uses source {:?}, which is not in [sources] of the config",
                catalog_path.display(),
                s.id,
                s.source
            )));
        }
    }
    if cfg.policy.purpose_binding == crate::config::PurposeBinding::Off {
        tracing::warn!(
            "[policy] purpose_binding = \"off\": data queries are not bound to cases; \
             leave it \"required\" in production"
        );
    }
    let vault = open_vault(cfg, store.clone(), &catalog, subject_key.clone())?;
    let mut jwks = Jwks {
        keys: vec![key.jwk().clone()],
    };
    jwks.keys.extend(vault.issuer_jwks().keys.iter().cloned());
    let policy = crate::state::PolicyHandle::new(Arc::new(load_policies(cfg, &auditors)?));
    Ok(AppState(Arc::new(Inner {
        store,
        audit,
        auditors,
        catalog,
        sources,
        policy,
        key,
        jwks,
        subject_key,
        limits: cfg.limits,
        vault,
        calendar: cfg.calendar()?,
        purpose_binding: cfg.policy.purpose_binding,
        sql: cfg.sql.checked()?,
        alert_rules: crate::alerts::load(
            cfg.alerts.rules.as_ref().map(|p| cfg.path(p)).as_deref(),
        )?,
    })))
}

/// `[audit] auditors`, parsed.
pub fn auditors(cfg: &Config) -> Result<Vec<paotui_certs::DeptCode>> {
    dept_list("auditors", &cfg.audit.auditors)
}

fn dept_list(key: &str, list: &[String]) -> Result<Vec<paotui_certs::DeptCode>> {
    list.iter()
        .map(|d| {
            paotui_certs::DeptCode::parse(d)
                .map_err(|e| Error::Config(format!("[audit] {key}: {d:?}: {e}")))
        })
        .collect()
}

/// The Cedar policies named by `[policy] dir`, or the shipped ones; validated against the
/// schema (a broken file is refused with its file and line). `[audit] auditors` and
/// `portals` are the members of the policies' roles.
pub fn load_policies(cfg: &Config, auditors: &[paotui_certs::DeptCode]) -> Result<Policies> {
    let auditors = auditors.iter().cloned().collect();
    let portals = dept_list("portals", &cfg.audit.portals)?
        .into_iter()
        .collect();
    match &cfg.policy.dir {
        Some(dir) => Policies::load_dir(&cfg.path(dir), auditors),
        None => Policies::shipped(auditors),
    }
    .map(|p| p.with_portals(portals))
    .map_err(|e| Error::Config(format!("[policy]: {e}")))
}

/// The license vault on `store`: issuer keys for the catalog's issuing departments and the
/// data key, each generated on first use.
pub fn open_vault(
    cfg: &Config,
    store: Store,
    catalog: &Catalog,
    subject_key: SubjectKey,
) -> Result<Vault> {
    let issuers = IssuerKeys::load_or_generate(&cfg.path(&cfg.keys.issuers), catalog.issuers())?;
    let data_key = DataKey::load_or_generate(&cfg.path(&cfg.keys.data_key))?;
    Ok(Vault::new(store, catalog, subject_key, data_key, issuers))
}

async fn not_found() -> Error {
    Error::NotFound("no such resource".into())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Whole-request time limit, inside the audit layer so a timeout is audited as such.
async fn request_timeout(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let ms = app.limits.request_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(ms), next.run(req)).await {
        Ok(r) => r,
        Err(_) => Error::Timeout(ms).into_response(),
    }
}

/// Paths in traces lose long digit runs: identifiers must never reach a log.
fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.bytes().filter(u8::is_ascii_digit).count() >= 6 {
                "…"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The whole HTTP application.
///
/// Layers, outermost first, and why each exists:
/// - `SetRequestId` / `PropagateRequestId`: one id ties a caller's request, our logs and the
///   audit entry together;
/// - `Trace`: one span per request (method, redacted path, request id) for every log line;
/// - `audit_and_sign` (API routes only): no answer without a durable audit entry, and every
///   answer signed;
/// - `request_timeout`: bounded work per request, audited when it fires;
/// - `DefaultBodyLimit`: bounded memory per request; oversize bodies become 413 problems.
pub fn router(state: AppState) -> Router {
    let limit = state.limits.body_bytes;
    let api = Router::new()
        .merge(routes::services::router())
        .merge(routes::keys::router())
        .merge(routes::audit::router())
        .merge(routes::licenses::router())
        .merge(routes::cases::router())
        .merge(routes::stats::router())
        .merge(routes::alerts::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::audit_and_sign,
        ));
    let x_request_id = REQUEST_ID;
    Router::new()
        .merge(routes::health::router())
        .merge(api)
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %redact_path(req.uri().path()), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_redaction() {
        assert_eq!(
            super::redact_path("/v1/holders/11010519491231002X/licenses"),
            "/v1/holders/…/licenses"
        );
        assert_eq!(
            super::redact_path("/v1/services/population.person/query"),
            "/v1/services/population.person/query"
        );
    }
}
