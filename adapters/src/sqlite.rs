use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paotui_policies::catalog::{ParamValue, positional};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Semaphore;

use crate::batch::{Cell, ColKind, to_batch};
use crate::source::{BoxFuture, DataSource, Rows, SourceLimits, with_timeout};
use crate::{Error, Result};

/// Connections open at once per source (and so blocking threads busy with it).
const MAX_CONNECTIONS: usize = 4;

/// How many SQLite VM steps run between deadline checks: a few microseconds of work.
const PROGRESS_STEPS: i32 = 1_000;

/// How long a short SQLite read may run on the calling task before it is interrupted
/// and run again in the blocking pool. Handing a lookup by key to a blocking thread and
/// back cost two thread wake-ups; running the governed query's two lookups here took
/// about 30% off its CPU (benches/BENCHMARKS.md, 2026-12-05, night, later). A bounded
/// run keeps the async worker free for others (tokio's guidance is 10–100 µs between
/// awaits), and a longer read pays only this much twice. Used by this crate's SQLite
/// source and by the gateway store's case read.
pub const INLINE_BUDGET: Duration = Duration::from_micros(200);

/// Runs `f` on `conn` here, interrupted once [`INLINE_BUDGET`] has passed and without
/// waiting for locks: `Some` with its answer if it finished in time, `None` if it must
/// run again where it may block (it overran, hit a lock, or failed). Restores the
/// connection's busy timeout (`busy`) either way. One read of a page not in the OS cache
/// can still wait for the disk: the budget bounds the work, not the device. `f` must only
/// read, since the caller runs it again after `None`.
pub fn within_budget<T, E>(
    conn: &Connection,
    busy: Duration,
    f: impl Fn(&Connection) -> std::result::Result<T, E>,
) -> Option<T> {
    let overran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&overran);
    let deadline = Instant::now() + INLINE_BUDGET;
    // Every 100 virtual-machine steps: a lookup by key is a few hundred.
    conn.progress_handler(
        100,
        Some(move || {
            let over = Instant::now() >= deadline;
            if over {
                flag.store(true, Ordering::Relaxed);
            }
            over
        }),
    );
    let out = match conn.busy_timeout(Duration::ZERO) {
        Ok(()) => f(conn).ok(),
        Err(_) => None,
    };
    conn.progress_handler(0, None::<fn() -> bool>);
    if conn.busy_timeout(busy).is_err() {
        return None;
    }
    out.filter(|_| !overran.load(Ordering::Relaxed))
}

/// What [`inline_first`] left for the caller.
pub enum Inline<T> {
    /// `f` finished on the calling task; its connection is back in the pool.
    Done(T),
    /// `f` must run in the blocking pool, on this connection if one was idle.
    Retry(Option<Connection>),
}

/// Takes an idle connection from `idle` (none idle: [`Inline::Retry`]`(None)`) and runs
/// the read `f` on it here with [`within_budget`], giving the connection back if it
/// finished. The one inline-first step of every pooled SQLite read.
pub fn inline_first<T, E>(
    idle: &Mutex<Vec<Connection>>,
    busy: Duration,
    f: impl Fn(&Connection) -> std::result::Result<T, E>,
) -> Inline<T> {
    let Some(conn) = idle.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
        return Inline::Retry(None);
    };
    match within_budget(&conn, busy, f) {
        Some(out) => {
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            Inline::Done(out)
        }
        None => Inline::Retry(Some(conn)),
    }
}

/// A department database in a SQLite file, opened read-only (`SQLITE_OPEN_READONLY` and
/// `PRAGMA query_only`), so no catalog query can write to it whatever its SQL says.
///
/// It runs on `rusqlite` connections in tokio's blocking pool, one hand-off per query:
/// sqlx's SQLite driver passes every command and every row between a worker thread and
/// the caller, and those wake-ups were the largest share of a governed request's CPU
/// (benches/BENCHMARKS.md, "Where the time goes").
#[derive(Debug, Clone)]
pub struct SqliteSource {
    name: String,
    inner: Arc<Inner>,
    limits: SourceLimits,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection; a query holds one until its blocking task ends, even
    /// when the caller stopped waiting, so at most `MAX_CONNECTIONS` run at once.
    permits: Arc<Semaphore>,
}

impl SqliteSource {
    pub async fn open(name: &str, path: &Path, limits: SourceLimits) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Unavailable {
                source_name: name.to_owned(),
                detail: format!("{} does not exist", path.display()),
            });
        }
        let src = SqliteSource {
            name: name.to_owned(),
            inner: Arc::new(Inner {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            }),
            limits,
        };
        // A file that is not a database (or not readable) fails here, at start.
        src.ping().await?;
        Ok(src)
    }

    /// Runs `f` on a pooled connection: first on the calling task within
    /// [`INLINE_BUDGET`] (a lookup by key finishes well inside it), then, if it needs
    /// longer, hits a lock or fails, again in the blocking pool, where SQLite interrupts
    /// the statement at its deadline and whose run gives the answer or the error. The
    /// connection is read-only, so a second run is safe.
    async fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (name, limits) = (self.name.clone(), self.limits);
        with_timeout(&self.name, self.limits, async move {
            let permit = Arc::clone(&self.inner.permits)
                .acquire_owned()
                .await
                .map_err(|e| unavailable(&name, e.to_string()))?;
            let conn = match inline_first(&self.inner.idle, limits.statement_timeout, &f) {
                Inline::Done(out) => return Ok(out),
                Inline::Retry(conn) => conn,
            };
            let inner = Arc::clone(&self.inner);
            let deadline = Instant::now() + limits.statement_timeout;
            let task_name = name.clone();
            let task = tokio::task::spawn_blocking(move || {
                let name = task_name;
                let _permit = permit;
                let conn = match conn {
                    Some(c) => c,
                    None => inner.take(limits).map_err(|e| classify(&name, limits, e))?,
                };
                conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline));
                let out = f(&conn);
                conn.progress_handler(0, None::<fn() -> bool>);
                inner.give_back(conn);
                out
            });
            task.await.map_err(|e| Error::Query {
                source_name: name.clone(),
                detail: format!("query task failed: {e}"),
            })?
        })
        .await
    }
}

impl Inner {
    /// An idle connection, or a new one while fewer than the permits are open.
    fn take(&self, limits: SourceLimits) -> Result<Connection, rusqlite::Error> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.pragma_update(None, "query_only", "ON")?;
                conn.busy_timeout(limits.statement_timeout)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

fn unavailable(name: &str, detail: String) -> Error {
    Error::Unavailable {
        source_name: name.to_owned(),
        detail,
    }
}

/// A file that cannot be opened or read → unavailable (503); the statement interrupted at
/// its deadline → timeout (504); anything else → query failure.
fn classify(name: &str, limits: SourceLimits, e: rusqlite::Error) -> Error {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::OperationInterrupted) => Error::Timeout {
            source_name: name.to_owned(),
            ms: u64::try_from(limits.statement_timeout.as_millis()).unwrap_or(u64::MAX),
        },
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::PermissionDenied
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked,
        ) => unavailable(name, e.to_string()),
        _ => Error::Query {
            source_name: name.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// Declared column type → Arrow kind (SQLite's type affinity rules, plus dates).
fn kind_of(declared: &str) -> ColKind {
    let t = declared.to_ascii_uppercase();
    if t.contains("BOOL") {
        ColKind::Bool
    } else if t.contains("INT") {
        ColKind::Int
    } else if t.contains("REAL")
        || t.contains("FLOA")
        || t.contains("DOUB")
        // SQLite has no decimal type: NUMERIC affinity stores a REAL (or a whole number
        // as an INTEGER), so the exact decimal is already gone; it reads as a float.
        || t.contains("DEC")
        || t.contains("NUMERIC")
    {
        ColKind::Float
    } else if t == "DATE" {
        ColKind::Date
    } else if t.contains("DATETIME") || t.contains("TIMESTAMP") {
        ColKind::Timestamp
    } else if t.contains("BLOB") {
        ColKind::Bytes
    } else {
        ColKind::Text
    }
}

fn storage_class(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// Decodes one value of a column of `kind`. `untyped`: the column is an expression
/// (COUNT(*), CASE …) with no declared type, so its first non-NULL value's storage class
/// decides the kind.
fn decode_cell(v: ValueRef<'_>, kind: &mut ColKind, untyped: bool) -> Result<Cell, String> {
    if untyped && *kind == ColKind::Text {
        match v {
            ValueRef::Integer(_) => *kind = ColKind::Int,
            ValueRef::Real(_) => *kind = ColKind::Float,
            ValueRef::Blob(_) => *kind = ColKind::Bytes,
            _ => {}
        }
    }
    let text = |t: &[u8]| {
        std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|e| format!("text is not UTF-8: {e}"))
    };
    Ok(match (*kind, v) {
        (_, ValueRef::Null) => Cell::Null,
        // A whole number in a REAL or NUMERIC column may be stored as an integer; the
        // batch makes it the column's type.
        (ColKind::Bool | ColKind::Int | ColKind::Float | ColKind::Text, ValueRef::Integer(i)) => {
            Cell::Int(i)
        }
        (ColKind::Float | ColKind::Text, ValueRef::Real(f)) => Cell::Float(f),
        (ColKind::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Cell::Bytes(b.to_vec()),
        (ColKind::Text | ColKind::Date | ColKind::Timestamp, ValueRef::Text(t)) => {
            Cell::Text(text(t)?)
        }
        (k, other) => return Err(format!("a {k:?} column returned {}", storage_class(other))),
    })
}

/// Runs `sql` (`?` placeholders) with `params`, reading at most `limits.max_rows` rows.
fn fetch(
    conn: &Connection,
    name: &str,
    limits: SourceLimits,
    sql: &str,
    params: &[ParamValue],
) -> Result<Fetched> {
    let err = |e| classify(name, limits, e);
    let mut stmt = conn.prepare_cached(sql).map_err(err)?;
    if stmt.parameter_count() != params.len() {
        return Err(err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            stmt.parameter_count(),
        )));
    }
    for (i, p) in params.iter().enumerate() {
        match p {
            ParamValue::Text(s) => stmt.raw_bind_parameter(i + 1, s),
            ParamValue::Integer(n) => stmt.raw_bind_parameter(i + 1, n),
        }
        .map_err(err)?;
    }
    let columns = stmt.columns();
    let names: Vec<String> = columns.iter().map(|c| c.name().to_owned()).collect();
    let untyped: Vec<bool> = columns.iter().map(|c| c.decl_type().is_none()).collect();
    let mut kinds: Vec<ColKind> = columns
        .iter()
        .map(|c| c.decl_type().map_or(ColKind::Text, kind_of))
        .collect();
    drop(columns);
    let mut rows = Vec::new();
    let mut truncated = false;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(err)? {
        if rows.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut cells = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter_mut().enumerate() {
            let value = row.get_ref(i).map_err(err)?;
            let cell = decode_cell(value, kind, untyped[i]).map_err(|detail| Error::Query {
                source_name: name.to_owned(),
                detail: format!("column {}: {detail}", names[i]),
            })?;
            cells.push(cell);
        }
        rows.push(cells);
    }
    Ok(Fetched {
        names,
        kinds,
        rows,
        truncated,
    })
}

/// What [`fetch`] read, before it becomes an Arrow batch.
struct Fetched {
    names: Vec<String>,
    kinds: Vec<ColKind>,
    rows: Vec<Vec<Cell>>,
    truncated: bool,
}

impl DataSource for SqliteSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn query<'a>(&'a self, sql: &'a str, params: &'a [ParamValue]) -> BoxFuture<'a, Result<Rows>> {
        Box::pin(async move {
            let sql = positional(sql, |_| "?".to_owned());
            let params = params.to_vec();
            let (name, limits) = (self.name.clone(), self.limits);
            let f = self
                .run(move |conn| fetch(conn, &name, limits, &sql, &params))
                .await?;
            Ok(Rows {
                batch: to_batch(&self.name, &f.names, &f.kinds, &f.rows)?,
                truncated: f.truncated,
            })
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        let (name, limits) = (self.name.clone(), self.limits);
        // Reads the schema page, so a file that is not a database fails here.
        Box::pin(self.run(move |conn| {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                .map_err(|e| classify(&name, limits, e))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataSource;
    use datafusion::arrow::array::{Array, AsArray};
    use paotui_policies::catalog::ParamValue;

    #[tokio::test]
    async fn reads_rows_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        crate::demo::generate(&crate::demo::Options {
            dir: dir.path().to_owned(),
            people: 20,
            seed: 7,
            postgres: None,
            mysql: None,
            progress: false,
        })
        .await
        .unwrap();
        let path = dir.path().join(crate::demo::POPULATION_DB);
        let src = SqliteSource::open(
            "population",
            &path,
            SourceLimits {
                max_rows: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let rows = src
            .query(
                "SELECT id_number, name FROM person WHERE gender = :g",
                &[ParamValue::Text("男".into())],
            )
            .await
            .unwrap();
        let schema = rows.batch.schema();
        assert_eq!(schema.field(0).name(), "id_number");
        assert!(rows.batch.num_rows() <= 5);
        // The connection is read-only: even SQL that slipped past validation cannot write.
        let e = src
            .query("DELETE FROM person WHERE :x = 1", &[ParamValue::Integer(1)])
            .await;
        assert!(matches!(e, Err(Error::Query { .. })), "{e:?}");
        let n = src
            .query(
                "SELECT COUNT(*) AS n FROM person WHERE :x = 1",
                &[ParamValue::Integer(1)],
            )
            .await
            .unwrap();
        let col = n.batch.column(0);
        assert_eq!(
            col.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            20
        );
        assert!(!col.is_null(0));
        assert!(
            SqliteSource::open("x", &dir.path().join("missing.db"), SourceLimits::default())
                .await
                .is_err()
        );
    }

    const LONG: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
        WHERE x < 2000000) SELECT count(*) AS n FROM c";

    fn count(conn: &Connection, sql: &str) -> rusqlite::Result<i64> {
        conn.query_row(sql, [], |r| r.get(0))
    }

    /// A lookup finishes on the calling task; a query longer than the budget is
    /// interrupted there and leaves the connection as it found it (busy timeout, no
    /// progress handler), and through `query` it is answered in full by the pool's run.
    #[tokio::test]
    async fn a_query_over_the_inline_budget_is_answered_by_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
            )
            .unwrap();
        drop(setup);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let busy = Duration::from_millis(1234);
        conn.busy_timeout(busy).unwrap();
        let short = within_budget(&conn, busy, |c| count(c, "SELECT k FROM t WHERE k = 1"));
        assert_eq!(short, Some(1));
        assert_eq!(within_budget(&conn, busy, |c| count(c, LONG)), None);
        assert_eq!(count(&conn, "PRAGMA busy_timeout").unwrap(), 1234);
        // No handler left behind: the same query now runs to its end here.
        assert_eq!(count(&conn, LONG).unwrap(), 2_000_000);

        let src = SqliteSource::open("t", &path, SourceLimits::default())
            .await
            .unwrap();
        for _ in 0..2 {
            let rows = src.query(LONG, &[]).await.unwrap();
            let n = rows
                .batch
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            assert_eq!(n.value(0), 2_000_000);
            let rows = src
                .query("SELECT v FROM t WHERE k = :k", &[ParamValue::Integer(1)])
                .await
                .unwrap();
            assert_eq!(rows.batch.column(0).as_string::<i32>().value(0), "a");
        }
        // Where each ran: the lookup on this (current-thread) runtime's thread, the long
        // query's answer on a blocking-pool thread (its interrupted inline run returned
        // `Ok` here, so this also checks that an overrun is not taken as an answer).
        let here = std::thread::current().id();
        let on = src.run(|_| Ok(std::thread::current().id())).await.unwrap();
        assert_eq!(on, here);
        let on = src
            .run(|c| {
                let _ = count(c, LONG);
                Ok(std::thread::current().id())
            })
            .await
            .unwrap();
        assert_ne!(on, here);
    }
}
