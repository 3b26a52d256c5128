//! Supervision SQL at scale (issue F), one run, two parts:
//!
//! 1. **Archive: DataFusion vs DuckDB.** A generated world of 10,000,000 audit entries
//!    (`PAOTUI_BENCH_AUDIT_ROWS` changes it) over 90 days, with its cases (one per ten
//!    entries), their matters, ratings and license reuses, is written by SQL into a SQLite
//!    store, and the audit log is archived to Parquet by the real `paotui archive` code
//!    (zstd, one partition per day). The other tables are exported to Parquet as well, so
//!    that both engines read the same files. Then every seed figure (`gateway::stats`,
//!    unfiltered) and three auditor queries run on DataFusion — the gateway's own session:
//!    `audit` is the recorded archive followed by the (empty) live table — and on DuckDB
//!    (Python, installed into a virtualenv by this bench, `benches/duckdb_peer.py`), the
//!    same query text. Each query: one warm-up (whose answers are compared, value for
//!    value), then 5 timed runs in which DataFusion's two sessions, served and files, and
//!    DuckDB (a child process answering one query at a time) take turns run by run; the
//!    table shows medians and the ratio.
//! 2. **Live store.** A 1,000,000-entry world (`PAOTUI_BENCH_LIVE_ROWS`) written into a
//!    fresh SQLite store and a fresh PostgreSQL database; the same queries through
//!    `gateway::sql::session` over the live tables (keyset paging), median of 3 runs; the
//!    two backends' answers are compared.
//!
//! The 10M world is built once (a few minutes) and kept under
//! `$CARGO_TARGET_DIR/paotui-bench/supervision-<n>/` (about 4 GB).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::arrow::compute::concat_batches;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use paotui_benches::{drop_pg, fresh_pg, work_dir};
use paotui_gateway::config::{Config, SqlConfig};
use paotui_gateway::{archive, sql, stats};
use paotui_policies::catalog::Catalog;
use paotui_policies::matters::MatterKind;
use paotui_repository::Store;
use serde_json::Value;
use sqlx::Connection;

// The gateway's allocator (gateway/src/main.rs), so that the timings are those of the
// binary that serves these queries: DataFusion's batches are many short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

const PG_DB: &str = "paotui_bench_supervision";
/// The pinned peer.
const DUCKDB: &str = "duckdb==2.0.1";
const DAYS: i64 = 90;
const DAY_US: i64 = 86_400_000_000;
const OPERATORS: i64 = 600;
const LICENSES: i64 = 1_000;
/// Timed runs per query on the archive (after one warm-up) and on the live store.
const ARCHIVE_RUNS: usize = 5;
const LIVE_RUNS: usize = 3;
/// The tables besides `audit` the figures and queries read, exported for both engines.
const EXPORTED: [&str; 4] = ["cases", "case_matters", "evaluations", "license_uses"];

/// The three auditor queries of the issue.
const AUDITOR_QUERIES: [(&str, &str); 3] = [
    (
        "department pairs",
        // Aggregated by service before the join with the few services, as the `calls`
        // figure is (see gateway/src/stats.rs).
        "SELECT t.caller_dept AS consumer, s.owner AS provider, sum(t.requests) AS requests, \
           sum(t.answered) AS answered, sum(t.denied) AS denied \
         FROM (SELECT caller_dept, service, count(*) AS requests, \
             count(*) FILTER (WHERE outcome = 'ok') AS answered, \
             count(*) FILTER (WHERE outcome = 'denied') AS denied \
           FROM audit GROUP BY caller_dept, service) t \
         JOIN services s ON t.service = s.id \
         GROUP BY t.caller_dept, s.owner ORDER BY 1, 2",
    ),
    (
        "top operators per day",
        "SELECT day, operator, requests FROM ( \
           SELECT CAST(\"at\" AS DATE) AS day, operator, count(*) AS requests, \
             row_number() OVER (PARTITION BY CAST(\"at\" AS DATE) ORDER BY count(*) DESC, operator) AS pos \
           FROM audit WHERE operator IS NOT NULL GROUP BY CAST(\"at\" AS DATE), operator) t \
         WHERE pos <= 3 ORDER BY day, pos",
    ),
    (
        "accesses after completion (join cases)",
        "SELECT a.caller_dept AS caller, c.site_dept AS site, count(*) AS accesses, \
           count(DISTINCT a.case_id) AS cases \
         FROM audit a JOIN cases c ON a.case_id = c.id \
         WHERE c.closed_at IS NOT NULL AND a.\"at\" > c.closed_at \
         GROUP BY a.caller_dept, c.site_dept ORDER BY 1, 2",
    ),
];

/// A world size from the environment, else `default` (10,000 in quick mode).
fn env_rows(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|n: &i64| *n >= 1_000)
        .unwrap_or(if paotui_benches::quick_mode() {
            10_000
        } else {
            default
        })
}

/// Timed runs per query: `full`, or one in quick mode.
fn runs(full: usize) -> usize {
    if paotui_benches::quick_mode() {
        1
    } else {
        full
    }
}

/// Set when two engines (or two backends) answered a query differently: the bench
/// then exits non-zero, so CI's quick run catches a wrong answer, not only a crash.
static DIFFERENT: AtomicBool = AtomicBool::new(false);

fn compared(r: Result<(), String>) -> String {
    match r {
        Ok(()) => "equal".to_owned(),
        Err(e) => {
            DIFFERENT.store(true, Ordering::Relaxed);
            format!("DIFFERENT: {e}")
        }
    }
}

fn start_us() -> i64 {
    NaiveDate::from_ymd_opt(2026, 8, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_micros())
}

/// Where the two SQL dialects differ in what the generator writes.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The UTC day of a microsecond expression, as `YYYY-MM-DD` text.
    fn date_of(self, us: &str) -> String {
        match self {
            Backend::Sqlite => format!("date(({us}) / 1000000, 'unixepoch')"),
            Backend::Postgres => {
                format!("to_char(to_timestamp(({us}) / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
            }
        }
    }

    fn blob(self) -> &'static str {
        match self {
            Backend::Sqlite => "X'00'",
            Backend::Postgres => "'\\x00'::bytea",
        }
    }
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Conn {
    async fn exec(&mut self, sql: &str) -> Result<(), Error> {
        match self {
            Conn::Sqlite(c) => sqlx::query(sql).execute(c).await.map(|_| ())?,
            Conn::Postgres(c) => sqlx::query(sql).execute(c).await.map(|_| ())?,
        }
        Ok(())
    }
}

/// `WITH RECURSIVE` over `[from, to)` as `k(i)`, in both dialects.
fn series(from: i64, to: i64) -> String {
    format!(
        "WITH RECURSIVE k(i) AS (SELECT CAST({from} AS BIGINT) UNION ALL \
         SELECT i + 1 FROM k WHERE i + 1 < {to})"
    )
}

/// Writes an `n`-entry world into the (migrated, empty) store at `url`: the audit log
/// and its cases, matters, ratings, licenses and reuses. Deterministic: the same `n`
/// gives the same rows on either backend.
async fn generate(url: &str, backend: Backend, n: i64, catalog: &Catalog) -> Result<(), Error> {
    let mut c = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await?;
            // Generation only; what is timed reads the store as the gateway opens it.
            sqlx::query("PRAGMA synchronous = OFF")
                .execute(&mut c)
                .await?;
            Conn::Sqlite(c)
        }
        Backend::Postgres => Conn::Postgres(sqlx::PgConnection::connect(url).await?),
    };
    let mut depts: Vec<String> = catalog
        .services
        .values()
        .map(|s| s.owner.to_string())
        .chain(catalog.matters.values().map(|m| m.owner.to_string()))
        .collect();
    depts.sort();
    depts.dedup();
    let dept_rows: Vec<String> = depts
        .iter()
        .flat_map(|d| [format!("'{d}', 'app'"), format!("'{d}', 'window'")])
        .enumerate()
        .map(|(k, v)| format!("({k}, {v})"))
        .collect();
    let service_rows: Vec<String> = catalog
        .services
        .values()
        .enumerate()
        .map(|(k, s)| format!("({k}, '{}')", s.id))
        .collect();
    let matter_rows: Vec<String> = catalog
        .matters
        .values()
        .enumerate()
        .map(|(k, m)| {
            let days = match m.kind {
                MatterKind::Immediate => "NULL".to_owned(),
                MatterKind::Promised { working_days } => working_days.to_string(),
            };
            format!("({k}, '{}', '{}', {days})", m.code, m.owner)
        })
        .collect();
    let (nd, ns, nm) = (dept_rows.len(), service_rows.len(), matter_rows.len());
    for sql in [
        "CREATE TABLE bench_depts (k BIGINT, dept TEXT, sys TEXT)".to_owned(),
        "CREATE TABLE bench_services (k BIGINT, id TEXT)".to_owned(),
        "CREATE TABLE bench_matters (k BIGINT, code TEXT, owner TEXT, days BIGINT)".to_owned(),
        format!("INSERT INTO bench_depts VALUES {}", dept_rows.join(", ")),
        format!(
            "INSERT INTO bench_services VALUES {}",
            service_rows.join(", ")
        ),
        format!(
            "INSERT INTO bench_matters VALUES {}",
            matter_rows.join(", ")
        ),
    ] {
        c.exec(&sql).await?;
    }

    let start = start_us();
    let step = DAYS * DAY_US / n;
    let cases = n / 10;
    let cstep = 10 * step;
    let accepted = format!("({start} + i * {cstep})");
    let date_of = |us: &str| backend.date_of(us);
    // Cases: case i is accepted when audit entry 10·i is logged (its entries follow within
    // seconds); 1 in 20 rejected, 2 in 20 open, the rest completed — immediate ones two
    // seconds after acceptance (so some reads come after completion), promised ones
    // 0-29 days later against a deadline of their promised days.
    let progress = |what: &str, t: Instant| eprintln!("  {what} in {:.1?}", t.elapsed());
    // The licenses reused (they must exist before their uses).
    c.exec(&format!(
        "{} INSERT INTO licenses (id, type_code, issuer, number_hmac, holder_hmac, holder_kind, \
           status, valid_from, valid_until, issued_at_us, source, content_hmac, document) \
         SELECT 'L' || i, 'YYZZ', 'SC', 'n' || i, 'h' || i, 'business', 'valid', '2020-01-01', \
           NULL, {start}, 'import', 'c' || i, {} FROM k",
        series(0, LICENSES),
        backend.blob(),
    ))
    .await?;
    let t = Instant::now();
    for from in (0..cases).step_by(1_000_000) {
        let to = (from + 1_000_000).min(cases);
        c.exec(&format!(
            "{} INSERT INTO cases (id, applicant_hmac, applicant_kind, site_dept, site_system, \
               operator, status, accepted_at_us, accepted_on, closed_at_us) \
             SELECT 'C' || i, 'h' || ((i * 2654435761) % 200000), \
               CASE WHEN i % 4 = 0 THEN 'business' ELSE 'person' END, d.dept, d.sys, \
               'op-' || ((i * 31) % {OPERATORS}), \
               CASE WHEN i % 20 = 0 THEN 'rejected' WHEN i % 20 IN (1, 2) THEN 'accepted' \
                 ELSE 'completed' END, \
               {accepted}, {}, \
               CASE WHEN i % 20 IN (1, 2) THEN NULL \
                 WHEN i % 20 = 0 THEN {accepted} + {DAY_US} \
                 WHEN m.days IS NULL THEN {accepted} + 2000000 \
                 ELSE {accepted} + ((i * 7) % 30) * {DAY_US} + 3600000000 END \
             FROM k JOIN bench_depts d ON d.k = (i * 17) % {nd} \
               JOIN bench_matters m ON m.k = i % {nm}",
            series(from, to),
            date_of(&accepted),
        ))
        .await?;
        // Every case has its matter; one in three a second (the next in the catalog).
        c.exec(&format!(
            "{} INSERT INTO case_matters (case_id, matter, owner, deadline) \
             SELECT 'C' || i, m.code, m.owner, \
               CASE WHEN m.days IS NULL THEN NULL ELSE {} END \
             FROM k JOIN bench_matters m ON m.k = i % {nm} \
             UNION ALL \
             SELECT 'C' || i, m.code, m.owner, \
               CASE WHEN m.days IS NULL THEN NULL ELSE {} END \
             FROM k JOIN bench_matters m ON m.k = (i + 1) % {nm} WHERE i % 3 = 0",
            series(from, to),
            date_of(&format!("{accepted} + m.days * {DAY_US}")),
            date_of(&format!("{accepted} + m.days * {DAY_US}")),
        ))
        .await?;
        c.exec(&format!(
            "{} INSERT INTO case_evaluations (case_id, at_us, score, comment) \
             SELECT 'C' || i, {accepted} + 40 * {DAY_US}, 1 + (i * 7) % 5, NULL \
             FROM k WHERE i % 20 >= 3 AND i % 3 = 1",
            series(from, to),
        ))
        .await?;
        c.exec(&format!(
            "{} INSERT INTO license_uses (license_id, at_us, caller_dept, caller_system, \
               operator, case_id, matter, request_id) \
             SELECT 'L' || (i % {LICENSES}), {accepted} + 60000000, d.dept, d.sys, \
               'op-' || ((i * 31) % {OPERATORS}), 'C' || i, m.code, 'u' || i \
             FROM k JOIN bench_depts d ON d.k = (i * 17) % {nd} \
               JOIN bench_matters m ON m.k = i % {nm} WHERE i % 2 = 0",
            series(from, to),
        ))
        .await?;
    }
    progress(
        &format!("{cases} cases with their matters, ratings and reuses"),
        t,
    );

    // The log: every entry a data-service query or (1 in 25) a license read, for the case
    // of its time; 4 in 100 refused (by one of three policies, or none), 1 in 100 an error;
    // operators skewed (a few do much of the work). `rnd` is a hash of the index modulo a
    // prime, so outcome and operator do not follow the department's or service's cycle.
    let rnd = "((i * 2654435761) % 1000003)";
    let out = format!("({rnd} % 100)");
    let op = format!("(({rnd} / 100) % {OPERATORS})");
    let t = Instant::now();
    for from in (0..n).step_by(1_000_000) {
        let to = (from + 1_000_000).min(n);
        c.exec(&format!(
            "{} INSERT INTO audit_entries (idx, at_us, request_id, caller_dept, caller_system, \
               caller_serial, operator, action, service, case_id, matter, outcome, status, \
               reason, subject_hmac, fields, body_sha256, decision, policies) \
             SELECT i, {start} + i * {step}, 'r' || i, d.dept, d.sys, 'serial-' || d.k, \
               'op-' || ({op} * {op} / {OPERATORS}), \
               CASE WHEN i % 25 = 0 THEN 'license.read' ELSE 'service.query' END, \
               CASE WHEN i % 25 = 0 THEN NULL ELSE s.id END, \
               'C' || (i / 10), m.code, \
               CASE WHEN {out} < 4 THEN 'denied' WHEN {out} < 5 THEN 'error' \
                 ELSE 'ok' END, \
               CASE WHEN {out} < 4 THEN 403 WHEN {out} < 5 THEN 503 \
                 ELSE 200 END, \
               CASE WHEN {out} < 4 THEN 'refused by policy' \
                 WHEN {out} < 5 THEN 'source unavailable' ELSE NULL END, \
               'h' || ((i * 2654435761) % 200000), \
               CASE WHEN {out} < 5 THEN NULL ELSE '[\"name\",\"gender\"]' END, \
               NULL, \
               CASE WHEN {out} < 4 THEN 'deny' WHEN {out} < 5 THEN NULL \
                 ELSE 'allow' END, \
               CASE WHEN {out} < 4 THEN \
                   CASE i % 3 WHEN 0 THEN '[]' WHEN 1 THEN '[\"purpose-binding\"]' \
                     ELSE '[\"case-decisions-name-an-operator\"]' END \
                 WHEN {out} < 5 THEN NULL ELSE '[\"shared-data-for-cases\"]' END \
             FROM k JOIN bench_depts d ON d.k = (i * 13) % {nd} \
               JOIN bench_services s ON s.k = (i * 11) % {ns} \
               JOIN bench_matters m ON m.k = (i / 10) % {nm}",
            series(from, to),
        ))
        .await?;
        eprint!("\r  audit entries: {to} / {n}");
    }
    eprintln!();
    progress(&format!("{n} audit entries"), t);
    for table in ["bench_depts", "bench_services", "bench_matters"] {
        c.exec(&format!("DROP TABLE {table}")).await?;
    }
    if let Backend::Postgres = backend {
        c.exec("ANALYZE").await?;
    }
    Ok(())
}

fn catalog() -> Result<Catalog, Error> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/paotui.toml");
    Ok(Config::load(&path)?.load_catalog()?)
}

fn limits() -> SqlConfig {
    SqlConfig {
        max_rows: 1_000_000,
        timeout_ms: 3_600_000,
        memory_mb: 8_192,
    }
}

/// The queries timed: every seed figure, unfiltered, then the auditor queries.
fn queries() -> Vec<(String, String)> {
    let all = stats::Filters::default();
    stats::FIGURES
        .iter()
        .map(|f| (format!("figure {}", f.name), all.sql(f)))
        .chain(
            AUDITOR_QUERIES
                .iter()
                .map(|(n, q)| ((*n).to_owned(), (*q).to_owned())),
        )
        .collect()
}

/// Runs `sql` through the gateway's auditor-SQL path; its rows as JSON values in column
/// order.
async fn answer(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Value>>, Error> {
    let a = sql::run(ctx, sql, &limits()).await?;
    let batch = concat_batches(&a.schema, &a.batches)?;
    let names: Vec<String> = a.schema.fields().iter().map(|f| f.name().clone()).collect();
    Ok(paotui_gateway::routes::services::json_rows(&batch)?
        .into_iter()
        .map(|row| {
            names
                .iter()
                .map(|n| row.get(n).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect())
}

/// Equal as an auditor would read them: numbers to nine significant digits.
fn same(a: &[Vec<Value>], b: &[Vec<Value>]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows vs {}", a.len(), b.len()));
    }
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        let eq = ra.len() == rb.len()
            && ra
                .iter()
                .zip(rb)
                .all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => x == y,
                });
        if !eq {
            return Err(format!(
                "row {i}: {} vs {}",
                Value::from(ra.clone()),
                Value::from(rb.clone())
            ));
        }
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The 10M world in a SQLite store, its log archived, the other tables exported: built
/// once and kept.
async fn archived_world(n: i64, catalog: &Catalog) -> Result<(PathBuf, Store), Error> {
    let dir = work_dir().join(format!("supervision-{n}"));
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let ready = dir.join("ready");
    if ready.exists() {
        return Ok((dir.clone(), Store::open(&url).await?));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "building the {n}-entry archived world in {} (once) …",
        dir.display()
    );
    Store::open(&url).await?.close().await;
    generate(&url, Backend::Sqlite, n, catalog).await?;
    let store = Store::open(&url).await?;
    let t = Instant::now();
    let end = NaiveDate::from_ymd_opt(2026, 8, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(DAYS.unsigned_abs())))
        .ok_or("date")?;
    let done = archive::archive(&store, &dir.join("archive"), end, end).await?;
    if done.rows != n {
        return Err(format!("archived {} rows of {n}", done.rows).into());
    }
    eprintln!("  archived to Parquet in {:.1?}", t.elapsed());
    let t = Instant::now();
    let ctx = sql::session(&store, Some(catalog), &limits()).await?;
    let mut zstd = TableParquetOptions::default();
    zstd.global.compression = Some("zstd(3)".into());
    for table in EXPORTED {
        let path = dir.join("tables").join(table);
        std::fs::create_dir_all(&path)?;
        ctx.sql(&format!("SELECT * FROM {table}"))
            .await?
            .write_parquet(
                &format!("{}/", path.display()),
                DataFrameWriteOptions::new(),
                Some(zstd.clone()),
            )
            .await?;
    }
    for (name, batch) in sql::catalog_tables(catalog)? {
        let path = dir.join("tables").join(name);
        std::fs::create_dir_all(&path)?;
        ctx.read_batch(batch)?
            .write_parquet(
                &format!("{}/", path.display()),
                DataFrameWriteOptions::new(),
                Some(zstd.clone()),
            )
            .await?;
    }
    eprintln!("  other tables exported in {:.1?}", t.elapsed());
    std::fs::write(&ready, n.to_string())?;
    Ok((dir, store))
}

/// A virtualenv with the pinned DuckDB, made on first use.
fn duckdb_python() -> Result<PathBuf, Error> {
    let venv = work_dir().join("duckdb-venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(python);
    }
    eprintln!("installing {DUCKDB} into {} …", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", DUCKDB])
            .status()?
            .success();
    if !ok || !has(&python) {
        return Err(format!("could not install {DUCKDB} into {}", venv.display()).into());
    }
    Ok(python)
}

/// DuckDB over the same files, in a child process that answers one query at a time
/// (`benches/duckdb_peer.py`), so that its runs are taken in turn with DataFusion's.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Peer {
    fn start(dir: &Path, archive_dir: &str) -> Result<Peer, Error> {
        let mut tables = serde_json::Map::new();
        tables.insert(
            "audit".into(),
            serde_json::json!({ "glob": format!("{archive_dir}/*/*.parquet"), "hive": true }),
        );
        for t in EXPORTED.iter().chain(["services", "matters"].iter()) {
            let glob = dir.join("tables").join(t).join("*.parquet");
            tables.insert(
                (*t).into(),
                serde_json::json!({ "glob": glob.display().to_string(), "hive": false }),
            );
        }
        let spec = serde_json::json!({ "tables": tables, "views": sql::VIEWS });
        let spec_path = dir.join("duckdb-spec.json");
        std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_peer.py");
        let mut child = Command::new(duckdb_python()?)
            .arg(script)
            .arg(&spec_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("duckdb: no pipes to the peer".into());
        };
        let mut peer = Peer {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            version: String::new(),
        };
        let hello = peer.read()?;
        peer.version = hello["duckdb"].as_str().unwrap_or("?").to_owned();
        Ok(peer)
    }

    fn read(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err("duckdb: the peer exited (its error is above)".into());
        }
        let v: Value = serde_json::from_str(&line)?;
        match v["error"].as_str() {
            Some(e) => Err(format!("duckdb: {e}").into()),
            None => Ok(v),
        }
    }

    /// DuckDB's own time for `sql` (execute and fetch, measured in the peer) and its rows.
    fn run(&mut self, sql: &str) -> Result<(Duration, Vec<Vec<Value>>), Error> {
        writeln!(self.stdin, "{}", serde_json::json!({ "sql": sql }))?;
        self.stdin.flush()?;
        let v = self.read()?;
        let ms = v["ms"].as_f64().ok_or("duckdb: no time in the answer")?;
        let rows = serde_json::from_value(v["rows"].clone())?;
        Ok((Duration::from_secs_f64(ms / 1000.0), rows))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer only waits for the next query: nothing of it is lost.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per-query timings of one engine: the median of the timed runs and the warm-up's rows.
type Timed = Vec<(Duration, Vec<Vec<Value>>)>;

/// Times each query on the served and the files session and on DuckDB: one warm-up each
/// (its answer is kept), then the timed runs taken in turn, served, files, DuckDB, so that
/// a drift of the machine (or the heap) during the run falls on all three alike rather
/// than on whichever went last.
async fn time_queries(
    served: &SessionContext,
    files: &SessionContext,
    peer: &mut Peer,
    queries: &[(String, String)],
) -> Result<[Timed; 3], Error> {
    let sessions = [served, files];
    let mut out: [Timed; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (name, q) in queries {
        let mut times: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut rows = Vec::new();
        for ctx in sessions {
            rows.push(answer(ctx, q).await?);
        }
        rows.push(peer.run(q)?.1);
        for _ in 0..runs(ARCHIVE_RUNS) {
            for (ctx, t) in sessions.iter().zip(&mut times) {
                let start = Instant::now();
                answer(ctx, q).await?;
                t.push(start.elapsed());
            }
            times[2].push(peer.run(q)?.0);
        }
        let labels = ["datafusion (served)", "datafusion (files)", "duckdb"];
        for ((label, t), (o, r)) in labels.iter().zip(times).zip(out.iter_mut().zip(rows)) {
            let m = median(t);
            eprintln!("  {label} {name}: {}", ms(m));
            o.push((m, r));
        }
    }
    Ok(out)
}

/// A session with the exported tables besides `audit` (registered by the caller).
async fn parquet_session(dir: &Path) -> Result<SessionContext, Error> {
    let ctx = sql::context(&limits())?;
    for t in EXPORTED {
        let path = dir.join("tables").join(t);
        ctx.register_parquet(
            t,
            &format!("{}/", path.display()),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(ctx)
}

async fn archive_vs_duckdb(n: i64, catalog: &Catalog) -> Result<(), Error> {
    let (dir, store) = archived_world(n, catalog).await?;
    let recorded = store.archives().await?;
    let archive_dir = recorded
        .last()
        .map(|r| r.dir.clone())
        .ok_or("no archive run")?;
    let queries = queries();
    // As served: the gateway's `audit` (the recorded archive, then the live table from
    // where the archive ends — empty here, but planned and scanned).
    let served = parquet_session(&dir).await?;
    archive::register_audit(&served, &store).await?;
    sql::register_derived(&served, Some(catalog)).await?;
    // The archive's files alone: what DuckDB reads.
    let files = parquet_session(&dir).await?;
    let archived = files
        .read_parquet(
            format!("{archive_dir}/"),
            ParquetReadOptions::default().table_partition_cols(vec![(
                "day".to_owned(),
                datafusion::arrow::datatypes::DataType::Utf8,
            )]),
        )
        .await?;
    files.register_table("audit", archived.into_view())?;
    sql::register_derived(&files, Some(catalog)).await?;
    let mut peer = Peer::start(&dir, &archive_dir)?;
    let [served, files, theirs] = time_queries(&served, &files, &mut peer, &queries).await?;
    let version = peer.version.clone();
    drop(peer);
    println!(
        "\n### {n} audit entries in the Parquet archive: DataFusion {} vs DuckDB {version}\n",
        datafusion::DATAFUSION_VERSION
    );
    println!(
        "median of {} runs after one warm-up; the two DataFusion sessions and DuckDB timed \
         in turn, run by run; answers compared value for value. served: `audit` as the gateway \
         registers it (archive UNION ALL live); files: the archive's Parquet files alone, as DuckDB reads them\n",
        runs(ARCHIVE_RUNS)
    );
    println!(
        "| query | rows | DataFusion served | DataFusion files | DuckDB | served / DuckDB | files / DuckDB | answers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    for (((name, _), ((sv, rows), (fl, frows))), (dk, drows)) in
        queries.iter().zip(served.iter().zip(&files)).zip(&theirs)
    {
        let check = compared(same(rows, drows).and_then(|()| same(frows, drows)));
        println!(
            "| {name} | {} | {} | {} | {} | {:.2}× | {:.2}× | {check} |",
            rows.len(),
            ms(*sv),
            ms(*fl),
            ms(*dk),
            ratio(*sv, *dk),
            ratio(*fl, *dk),
        );
    }
    store.close().await;
    Ok(())
}

async fn live(n: i64, catalog: &Catalog) -> Result<(), Error> {
    let tmp = tempfile::tempdir()?;
    let lite = format!("sqlite://{}", tmp.path().join("store.db").display());
    let mut backends = vec![("SQLite", lite, Backend::Sqlite)];
    match fresh_pg(PG_DB).await {
        Some(url) => backends.push(("PostgreSQL", url, Backend::Postgres)),
        // CI must not pass on a machine whose PostgreSQL is down.
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            return Err("PostgreSQL is not reachable on 127.0.0.1:5432 (CI=true)".into());
        }
        None => eprintln!("PostgreSQL is not reachable: its column is left out"),
    }
    let queries = queries();
    let mut columns = Vec::new();
    for (name, url, backend) in &backends {
        eprintln!("writing the {n}-entry world into {name} …");
        Store::open(url).await?.close().await;
        generate(url, *backend, n, catalog).await?;
        let store = Store::open(url).await?;
        let ctx = sql::session(&store, Some(catalog), &limits()).await?;
        let mut col = Vec::new();
        for (q, text) in &queries {
            let mut times = Vec::new();
            let mut rows = Vec::new();
            for _ in 0..runs(LIVE_RUNS) {
                let t = Instant::now();
                rows = answer(&ctx, text).await?;
                times.push(t.elapsed());
            }
            eprintln!("  {name} {q}: {}", ms(median(times.clone())));
            col.push((median(times), rows));
        }
        store.close().await;
        columns.push(col);
    }
    if backends.len() > 1 {
        drop_pg(PG_DB).await;
    }
    println!("\n### {n} audit entries in the live store (DataFusion over the store's tables)\n");
    println!(
        "median of {} runs; answers of the two backends compared\n",
        runs(LIVE_RUNS)
    );
    let names: Vec<&str> = backends.iter().map(|b| b.0).collect();
    println!("| query | {} | answers |", names.join(" | "));
    println!("|---|{}---|", "---|".repeat(names.len()));
    for (i, (q, _)) in queries.iter().enumerate() {
        let times: Vec<String> = columns
            .iter()
            .filter_map(|c| c.get(i))
            .map(|(t, _)| ms(*t))
            .collect();
        let check = match (
            columns.first().and_then(|c| c.get(i)),
            columns.get(1).and_then(|c| c.get(i)),
        ) {
            (Some(a), Some(b)) => compared(same(&a.1, &b.1)),
            _ => "-".to_owned(),
        };
        println!("| {q} | {} | {check} |", times.join(" | "));
    }
    Ok(())
}

async fn main_async() -> Result<(), Error> {
    let catalog = catalog()?;
    let archived = env_rows("PAOTUI_BENCH_AUDIT_ROWS", 10_000_000);
    let live_rows = env_rows("PAOTUI_BENCH_LIVE_ROWS", 1_000_000);
    // `PAOTUI_BENCH_PARTS=archive` or `=live` runs one part.
    let parts = std::env::var("PAOTUI_BENCH_PARTS").unwrap_or_else(|_| "archive,live".into());
    if parts.contains("archive") {
        archive_vs_duckdb(archived, &catalog).await?;
    }
    if parts.contains("live") {
        live(live_rows, &catalog).await?;
    }
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used by this bench.
    let Some(rt) = paotui_benches::runtime() else {
        return;
    };
    if let Err(e) = rt.block_on(main_async()) {
        eprintln!("supervision bench failed: {e}");
        std::process::exit(1);
    }
    if DIFFERENT.load(Ordering::Relaxed) {
        eprintln!("supervision bench failed: the engines' answers differ (see the table)");
        std::process::exit(1);
    }
}
