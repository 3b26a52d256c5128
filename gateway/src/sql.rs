//! Auditor SQL (电子监察): one read-only query over the store's tables, with limits.
//!
//! The query is parsed and refused before planning unless it is a single read-only
//! `SELECT` (no DDL, DML, `COPY`, `SET`, `SELECT … INTO`, row locks); DataFusion's own SQL
//! options refuse the same again at planning, and the session has no file or URL tables,
//! so a query reaches nothing but the registered tables. It runs under a memory pool
//! (`[sql] memory_mb`, no spilling to disk), a wall-clock limit (`timeout_ms`: the query is dropped, which
//! cancels it) and a row cap (`max_rows`: the stream is not read further).
//!
//! Tables (each a DataFusion `TableProvider` over the live store, `paotui_repository::
//! tables`): `audit` (one row per audit entry: the Parquet archive's runs, then the live
//! table from where they end, [`crate::archive`]) and the view `denials` (its refused
//! requests); `cases`, `case_matters`, `case_events`, `evaluations`, `licenses` (metadata,
//! never a document), `license_events`, `license_uses`; and from the catalog `services` and
//! `matters`. Both the API (`POST /v1/audit/sql`) and `paotui sql` use [`session`] and
//! [`run`].

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use futures_util::StreamExt;
use paotui_policies::catalog::Catalog;
use paotui_policies::matters::MatterKind;
use paotui_repository::Store;
use paotui_repository::tables::{StoreTable, TABLES};

use crate::config::SqlConfig;
use crate::{Error, Result};

/// The largest query text accepted.
pub const MAX_SQL_BYTES: usize = 16 * 1024;

/// The views defined over the tables, by name (public so a peer engine in the benches
/// defines them from the same text).
pub const VIEWS: [(&str, &str); 1] = [("denials", "SELECT * FROM audit WHERE outcome = 'denied'")];

/// A session with the store's tables (and the catalog's, when given) registered, under
/// the memory limit.
pub async fn session(
    store: &Store,
    catalog: Option<&Catalog>,
    limits: &SqlConfig,
) -> Result<SessionContext> {
    let ctx = context(limits)?;
    crate::archive::register_audit(&ctx, store).await?;
    for spec in &TABLES {
        ctx.register_table(spec.name, Arc::new(StoreTable::new(store.clone(), spec)))
            .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
    }
    register_derived(&ctx, catalog).await?;
    Ok(ctx)
}

/// An empty session under the memory limit, with `information_schema`.
pub fn context(limits: &SqlConfig) -> Result<SessionContext> {
    // No spilling: a query over its memory limit fails instead of filling the disk of
    // the gateway's host with temporary files.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_mb.saturating_mul(1 << 20), 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| Error::Internal(format!("sql runtime: {e}")))?;
    let config = SessionConfig::new().with_information_schema(true);
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Registers what is derived from the base tables: the catalog's tables (when given) and
/// the [`VIEWS`]. The base tables (`audit`, [`TABLES`]) must be registered already.
pub async fn register_derived(ctx: &SessionContext, catalog: Option<&Catalog>) -> Result<()> {
    if let Some(catalog) = catalog {
        for (name, batch) in catalog_tables(catalog)? {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
                .map_err(|e| Error::Internal(format!("sql table {name}: {e}")))?;
            ctx.register_table(name, Arc::new(table))
                .map_err(|e| Error::Internal(format!("sql table {name}: {e}")))?;
        }
    }
    for (name, query) in VIEWS {
        let view = ctx
            .sql(query)
            .await
            .map_err(|e| Error::Internal(format!("sql view {name}: {e}")))?
            .into_view();
        ctx.register_table(name, view)
            .map_err(|e| Error::Internal(format!("sql view {name}: {e}")))?;
    }
    Ok(())
}

/// The catalog as tables: `services` (id, owner, name, source, subject_kind) and `matters`
/// (code, name, owner, kind, promised_days) — so figures can say whose service was called.
pub fn catalog_tables(catalog: &Catalog) -> Result<Vec<(&'static str, RecordBatch)>> {
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    let strings = |v: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let svc: Vec<_> = catalog.services.values().collect();
    let services = RecordBatch::try_from_iter([
        (
            "id",
            strings(svc.iter().map(|s| s.id.to_string()).collect()),
        ),
        (
            "owner",
            strings(svc.iter().map(|s| s.owner.to_string()).collect()),
        ),
        (
            "name",
            strings(svc.iter().map(|s| s.name.clone()).collect()),
        ),
        (
            "source",
            strings(svc.iter().map(|s| s.source.clone()).collect()),
        ),
        (
            "subject_kind",
            strings(svc.iter().map(|s| s.subject.name().to_owned()).collect()),
        ),
    ]);
    let ms: Vec<_> = catalog.matters.values().collect();
    let matters = RecordBatch::try_from_iter([
        (
            "code",
            strings(ms.iter().map(|m| m.code.to_string()).collect()),
        ),
        ("name", strings(ms.iter().map(|m| m.name.clone()).collect())),
        (
            "owner",
            strings(ms.iter().map(|m| m.owner.to_string()).collect()),
        ),
        (
            "kind",
            strings(
                ms.iter()
                    .map(|m| match m.kind {
                        MatterKind::Immediate => "immediate".to_owned(),
                        MatterKind::Promised { .. } => "promised".to_owned(),
                    })
                    .collect(),
            ),
        ),
        (
            "promised_days",
            Arc::new(
                ms.iter()
                    .map(|m| match m.kind {
                        MatterKind::Immediate => None,
                        MatterKind::Promised { working_days } => Some(i64::from(working_days)),
                    })
                    .collect::<Int64Array>(),
            ) as ArrayRef,
        ),
    ]);
    let services = services.map_err(|e| Error::Internal(format!("sql services: {e}")))?;
    let matters = matters.map_err(|e| Error::Internal(format!("sql matters: {e}")))?;
    Ok(vec![("services", services), ("matters", matters)])
}

/// Refuses anything but one read-only query, before planning. Syntax errors keep the
/// parser's position ("at Line: 1, Column: 8").
pub fn check(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::BadRequest(format!(
            "the query is longer than {MAX_SQL_BYTES} bytes"
        )));
    }
    // DataFusion's own parser: it also knows its extensions (CREATE EXTERNAL TABLE,
    // COPY … TO), which must be named in the refusal rather than fail to parse.
    let stmts = DFParser::parse_sql(sql)
        .map_err(|e| Error::BadRequest(format!("SQL does not parse: {}", e.strip_backtrace())))?;
    let refuse =
        |why: String| Error::BadRequest(format!("only a single read-only query runs: {why}"));
    let mut plain = Vec::with_capacity(stmts.len());
    for s in stmts {
        match s {
            DFStatement::Statement(s) => plain.push(*s),
            DFStatement::CreateExternalTable(_) => {
                return Err(refuse("found CREATE EXTERNAL TABLE".into()));
            }
            DFStatement::CopyTo(_) => return Err(refuse("found COPY".into())),
            DFStatement::Explain(_) => return Err(refuse("found EXPLAIN".into())),
            DFStatement::Reset(_) => return Err(refuse("found RESET".into())),
        }
    }
    paotui_policies::catalog::read_only_statement(&plain).map_err(refuse)
}

/// A query's answer: its schema, the rows up to the cap, and whether there were more.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
}

/// Checks, plans and runs `sql` under `limits`.
pub async fn run(ctx: &SessionContext, sql: &str, limits: &SqlConfig) -> Result<Answer> {
    check(sql)?;
    let limit = Duration::from_millis(limits.timeout_ms);
    match tokio::time::timeout(limit, execute(ctx, sql, limits.max_rows)).await {
        Ok(answer) => answer,
        // Dropping the future dropped the stream: the query is cancelled.
        Err(_) => Err(Error::Unprocessable {
            detail: format!(
                "the query ran longer than the limit of {} ms and was cancelled",
                limits.timeout_ms
            ),
            members: serde_json::Map::new(),
        }),
    }
}

async fn execute(ctx: &SessionContext, sql: &str, max_rows: usize) -> Result<Answer> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(query_error)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(query_error)?;
    let mut batches = Vec::new();
    let mut rows = 0;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(query_error)?;
        let room = max_rows - rows;
        if batch.num_rows() > room {
            batches.push(batch.slice(0, room));
            rows = max_rows;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
    }
    Ok(Answer {
        schema,
        batches,
        rows,
        truncated,
    })
}

/// The caller's mistakes (syntax, unknown tables or columns, types, limits) are 4xx with
/// DataFusion's message; the store failing underneath is ours (5xx, cause logged only).
fn query_error(e: DataFusionError) -> Error {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(why) => Error::Unprocessable {
            detail: format!("the query needs more memory than its limit: {why}"),
            members: serde_json::Map::new(),
        },
        DataFusionError::External(cause) => Error::Internal(format!("sql scan: {cause}")),
        DataFusionError::IoError(cause) => Error::Internal(format!("sql io: {cause}")),
        DataFusionError::Internal(why) => Error::Internal(format!("sql: {why}")),
        other => Error::BadRequest(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anything that writes, reads files or changes the session is refused before
    /// planning, with the reason.
    #[test]
    fn only_one_read_only_query_passes() {
        for ok in [
            "SELECT 1",
            "select caller_dept, count(*) from audit group by 1",
            "WITH d AS (SELECT * FROM denials) SELECT count(*) FROM d",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("DELETE FROM audit", "single SELECT, found DELETE"),
            ("UPDATE audit SET reason = 'x'", "found UPDATE"),
            ("INSERT INTO audit VALUES (1)", "found INSERT"),
            ("DROP TABLE audit", "found DROP"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "found CREATE EXTERNAL TABLE",
            ),
            ("EXPLAIN SELECT 1", "found EXPLAIN"),
            ("COPY audit TO '/tmp/x.csv'", "found COPY"),
            ("SET datafusion.execution.batch_size = 1", "found SET"),
            ("SELECT * INTO t FROM audit", "SELECT … INTO"),
            ("SELECT 1; SELECT 2", "a single statement"),
            ("", "empty"),
            ("SELEC 1", "does not parse"),
        ] {
            let e = check(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = check("SELECT * FROM audit WHERE idx = = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Line: 1, Column"), "{e}");
        assert!(check(&"x".repeat(MAX_SQL_BYTES + 1)).is_err());
    }

    async fn ctx(limits: &SqlConfig) -> (tempfile::TempDir, SessionContext) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::open(&url).await.unwrap();
        let ctx = session(&store, None, limits).await.unwrap();
        (dir, ctx)
    }

    /// A runaway query is cancelled at its time limit, one over its memory is stopped
    /// (nothing spills to disk), and a long answer is cut at the row cap: 422s naming
    /// the limit, and a truncated answer.
    #[tokio::test]
    async fn limits_stop_runaway_queries() {
        let limits = SqlConfig {
            max_rows: 10,
            timeout_ms: 300,
            memory_mb: 1,
        };
        let (_dir, ctx) = ctx(&limits).await;
        let e = run(
            &ctx,
            "SELECT sum(value) FROM generate_series(1, 100000000000)",
            &limits,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Unprocessable { .. }), "{e:?}");
        assert!(e.to_string().contains("limit of 300 ms"), "{e}");
        let e = run(
            &ctx,
            "SELECT value FROM generate_series(1, 5000000) ORDER BY value DESC",
            &limits,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("more memory than its limit"), "{e}");
        let a = run(&ctx, "SELECT value FROM generate_series(1, 1000)", &limits)
            .await
            .unwrap();
        assert_eq!((a.rows, a.truncated), (10, true));
        assert_eq!(a.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
        let a = run(&ctx, "SELECT count(*) FROM audit", &limits)
            .await
            .unwrap();
        assert_eq!((a.rows, a.truncated), (1, false));
    }

    /// Planning errors are the caller's: 400 with DataFusion's message; the views exist.
    #[tokio::test]
    async fn planning_errors_are_bad_requests() {
        let limits = SqlConfig::default();
        let (_dir, ctx) = ctx(&limits).await;
        for (sql, why) in [
            ("SELECT nope FROM audit", "No field named nope"),
            ("SELECT * FROM nowhere", "nowhere"),
            ("SELECT * FROM '/etc/passwd'", "not found"),
            ("SELECT 1 + 'x'", ""),
        ] {
            let e = run(&ctx, sql, &limits).await.unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{sql}: {e:?}");
            assert!(e.to_string().contains(why), "{sql}: {e}");
        }
        let a = run(&ctx, "SELECT count(*) FROM denials", &limits)
            .await
            .unwrap();
        assert_eq!(a.rows, 1);
    }
}
