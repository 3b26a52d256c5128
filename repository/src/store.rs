use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use paotui_adapters::{Inline, inline_first};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlitePool};
use tokio::sync::Semaphore;

use crate::audit::{AuditEntry, NewAuditEntry, Outcome, PolicyDecision};
use crate::tree::SubjectTail;
use crate::{Error, Result};

/// Runs `$body` with `$p` bound to whichever pool the store has (and `$db` to its sqlx
/// database type, when named). The body is expanded once per backend, so generic sqlx
/// calls resolve to the right database; sqlx accepts `$n` placeholders on SQLite too, so
/// one SQL text serves both.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            crate::store::Backend::Sqlite($p, _) => $body,
            crate::store::Backend::Postgres($p) => $body,
        }
    };
    ($store:expr, $p:ident, $db:ident => $body:expr) => {
        match &$store.backend {
            crate::store::Backend::Sqlite($p, _) => {
                #[allow(unused)]
                type $db = sqlx::Sqlite;
                $body
            }
            crate::store::Backend::Postgres($p) => {
                #[allow(unused)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// A [`StoredRow`] from a row of [`COLUMNS`], by name: `$get` is `try_get` on a sqlx row
/// and `get` on a rusqlite one, so both drivers read the columns the same way.
macro_rules! stored_row {
    ($r:expr, $get:ident) => {
        StoredRow {
            idx: $r.$get("idx")?,
            at_us: $r.$get("at_us")?,
            request_id: $r.$get("request_id")?,
            caller_dept: $r.$get("caller_dept")?,
            caller_system: $r.$get("caller_system")?,
            caller_serial: $r.$get("caller_serial")?,
            operator: $r.$get("operator")?,
            action: $r.$get("action")?,
            service: $r.$get("service")?,
            case_id: $r.$get("case_id")?,
            matter: $r.$get("matter")?,
            outcome: $r.$get("outcome")?,
            status: $r.$get("status")?,
            reason: $r.$get("reason")?,
            subject_hmac: $r.$get("subject_hmac")?,
            fields: $r.$get("fields")?,
            body_sha256: $r.$get("body_sha256")?,
            decision: $r.$get("decision")?,
            policies: $r.$get("policies")?,
        }
    };
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A SQLite file: the sqlx pool (migrations, small writes) and, always beside it,
    /// the file's own rusqlite connections.
    Sqlite(SqlitePool, Arc<Local>),
    Postgres(PgPool),
}

/// A SQLite file store's rusqlite connections. Part of [`Backend::Sqlite`], so a SQLite
/// store without them cannot be built.
#[derive(Debug)]
pub(crate) struct Local {
    /// Plain connections for the read every governed request makes.
    pub(crate) readers: Arc<Readers>,
    /// The audit log's own writer connection.
    pub(crate) writer: Writer,
}

/// The gateway's store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
}

/// The connection the audit sequencer commits its batches on (SQLite file stores). The
/// durable append is the cost every request waits behind: through sqlx, each batch was
/// one large multi-row statement per 64 entries, re-bound value by value and passed to
/// sqlx's worker thread; here the audit sequencer's own thread writes a batch, 32 rows per
/// run of a prepared statement. Only the sequencer uses it, one batch at a time, so
/// the lock is never contended; other writes stay on the sqlx pool (SQLite serialises
/// writers; `BEGIN IMMEDIATE` and the busy timeout make them queue, not fail).
#[derive(Debug)]
pub(crate) struct Writer {
    /// `None` once the store is closed.
    conn: Arc<Mutex<Option<rusqlite::Connection>>>,
    /// The database's write-ahead log (SQLite names it after the database file).
    wal: PathBuf,
    checkpointer: Arc<Checkpointer>,
    /// What the writer keeps of the subject block being filled.
    subjects: Mutex<SubjectTail>,
}

/// Copies the WAL back into the database file on a connection of its own, beside the
/// writer. Run inside a commit (SQLite's automatic checkpoint), that copy reads the WAL
/// back and writes the database file on the writer thread, which sets the pace of
/// appends, while the batch's requests wait and the other core sits mostly idle. Copied
/// here, 64 and 1,024 writers appended 1.02–1.07× as fast, one writer as fast as before
/// (benches/BENCHMARKS.md, "2026-12-06 (day), the audit tree in pages"). A `PASSIVE`
/// checkpoint takes no lock the writer needs. The writer's own automatic checkpoint
/// stays as the bound: SQLite restarts the WAL only after a checkpoint that caught up
/// with the writer, which one running beside a busy writer never does, and the one the
/// writer runs then has only the frames written since the last background copy left.
#[derive(Debug)]
struct Checkpointer {
    /// `None` once the store is closed.
    conn: Mutex<Option<rusqlite::Connection>>,
    /// Entries committed since the last background checkpoint started.
    since: AtomicU64,
    running: AtomicBool,
}

/// Entries committed between two background checkpoints: about 16 MB of WAL at the ~1 KB
/// of pages an entry writes, a fifth of the writer's own mark, so at a steady load the
/// background copies do most of the work and a checkpoint's fsync of the database file
/// comes seldom next to a single writer's commits.
pub(crate) const CHECKPOINT_ENTRIES: u64 = 16_384;

impl Writer {
    fn open(path: &std::path::Path) -> rusqlite::Result<Writer> {
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let c = rusqlite::Connection::open(path)?;
            c.busy_timeout(Duration::from_secs(5))?;
            for (name, value) in SQLITE_PRAGMAS {
                c.pragma_update(None, name, value)?;
            }
            Ok(c)
        };
        let conn = open()?;
        // The audit log syncs the WAL itself, off this connection's thread, before it
        // answers a batch's waiters (`log::WalSync`); see [`AUDIT_WRITER_SYNCHRONOUS`].
        conn.pragma_update(None, "synchronous", AUDIT_WRITER_SYNCHRONOUS)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Writer {
            conn: Arc::new(Mutex::new(Some(conn))),
            wal: PathBuf::from(wal),
            checkpointer: Arc::new(Checkpointer {
                conn: Mutex::new(Some(open()?)),
                since: AtomicU64::new(0),
                running: AtomicBool::new(false),
            }),
            subjects: Mutex::new(SubjectTail::default()),
        })
    }

    /// Counts `entries` just committed; every [`CHECKPOINT_ENTRIES`] starts a `PASSIVE`
    /// checkpoint in the blocking pool unless one is still running.
    pub(crate) fn committed(&self, entries: u64) {
        let c = &self.checkpointer;
        if c.since.fetch_add(entries, Ordering::AcqRel) + entries < CHECKPOINT_ENTRIES
            || c.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        c.since.store(0, Ordering::Release);
        let c = Arc::clone(c);
        tokio::task::spawn_blocking(move || {
            let done = c
                .conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|conn| {
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                });
            match done {
                Some(Ok((wal, copied))) => {
                    tracing::debug!(wal, copied, "WAL copied into the database")
                }
                Some(Err(e)) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
                None => {}
            }
            c.running.store(false, Ordering::Release);
        });
    }

    /// The write-ahead log file the audit writer's commits go to.
    pub(crate) fn wal_path(&self) -> &std::path::Path {
        &self.wal
    }

    /// The subjects of the block being filled (only the audit sequencer takes them, so
    /// the lock is never contended).
    pub(crate) fn subjects(&self) -> MutexGuard<'_, SubjectTail> {
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the writer connection on this thread (the audit sequencer's own).
    pub(crate) fn run_here<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T>,
    ) -> Result<T> {
        with_writer(&self.conn, f)
    }

    /// Runs `f` on the writer connection in the blocking pool.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || with_writer(&conn, f))
            .await
            .map_err(|e| Error::Unavailable(format!("audit write did not finish: {e}")))?
    }
}

/// Runs `f` on the writer connection unless the store is closed.
fn with_writer<T>(
    conn: &Mutex<Option<rusqlite::Connection>>,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T>,
) -> Result<T> {
    let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
    match c.as_mut() {
        Some(c) => f(c),
        None => Err(Error::Unavailable("the store is closed".into())),
    }
}

/// The settings of every connection that writes to a SQLite store (the sqlx pool and the
/// audit writer), so the two drivers cannot drift apart: WAL; FULL so a committed audit
/// entry survives power loss, not just a crash; foreign keys; and the checkpoint mark.
const SQLITE_PRAGMAS: [(&str, &str); 4] = [
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
];

/// `synchronous` on the audit writer connection: NORMAL, so a commit writes its WAL
/// frames without waiting for them to reach the disk. The audit log then syncs the WAL
/// file on a thread of its own (`log::WalSync`) and answers a batch's waiters only after
/// that sync, so an answer still leaves only once its entry is durable, while the writer
/// already inserts the next batch. In WAL mode NORMAL writes the same frames as FULL on a
/// file system with power-safe overwrite (SQLite's default on unix); it only skips the
/// sync at commit, and still syncs the WAL before a checkpoint and its header when the
/// WAL restarts (<https://sqlite.org/pragma.html#pragma_synchronous>). With FULL the
/// writer sat waiting for that sync in about a third of its time at 1,024 writers
/// (benches/BENCHMARKS.md, "2026-12-06 (afternoon)"). Every other connection keeps FULL.
pub(crate) const AUDIT_WRITER_SYNCHRONOUS: &str = "NORMAL";

/// WAL pages after which a commit copies the WAL back into the database (SQLite's
/// default is 1,000, about 4 MB). Each such checkpoint runs inside the commit that
/// crosses the mark, copying and fsyncing the database file while the audit batch's
/// waiters wait; at the default it ran every few batches under load. At 20,000 pages
/// (about 80 MB of WAL at 4 KiB pages) 1,024 concurrent durable appends went from
/// 23.9k to 34.1k entries/s over 30 s, with no change seen for 1 or 64 writers
/// (benches/BENCHMARKS.md, 2026-12-03, night). The cost is disk: the WAL file grows to
/// about that size and is reused, not shrunk, after a checkpoint (SQLite removes it when
/// the last connection closes).
const WAL_AUTOCHECKPOINT_PAGES: &str = "20000";

/// Reader connections open at once, and so blocking threads busy with them: without a
/// bound, 1,000 connections' requests each took a blocking thread (and its allocator
/// heap) at once; a point read takes microseconds, so waiting for one of a few is cheap.
const READERS: usize = 4;

/// How long a reader waits for a lock (rare in WAL mode: readers do not wait for the
/// writer) before its read fails.
const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Plain SQLite connections (rusqlite) for the reads on a governed request's path and
/// for reading the audit log's entries (table scans page by page, `audit verify`). Scans
/// run in tokio's blocking pool, one hand-off per read, where sqlx's SQLite driver passes
/// the command and then every row between its worker thread and the caller (the largest
/// share of a governed request's CPU in benches/BENCHMARKS.md, "Where the time goes");
/// the case read runs on the request's task first ([`Readers::run_short`]).
/// WAL lets them read committed data beside the sqlx writer; `query_only` keeps them
/// from writing.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// One per connection; the blocking task holds it until it is done.
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Runs the read `f` on a reader connection in the blocking pool.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self.permit().await?;
        self.in_pool(permit, None, f).await
    }

    /// Runs the short read `f` (a governed request's case read: a few index lookups) on
    /// a reader connection: first on the calling task within
    /// [`paotui_adapters::INLINE_BUDGET`] (see [`inline_first`]), then, if
    /// it needs longer (or fails, or the file is locked), again in the blocking pool,
    /// whose run gives the answer. `f` only reads (`query_only`), so a second run is safe.
    pub(crate) async fn run_short<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self.permit().await?;
        match inline_first(&self.idle, READER_BUSY_TIMEOUT, &f) {
            Inline::Done(out) => Ok(out),
            Inline::Retry(conn) => self.in_pool(permit, conn, f).await,
        }
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| Error::Invalid(format!("store readers closed: {e}")))
    }

    /// `f` in the blocking pool on `conn` (or an idle or new connection), holding `permit`.
    async fn in_pool<T: Send + 'static>(
        self: &Arc<Self>,
        permit: tokio::sync::OwnedSemaphorePermit,
        conn: Option<rusqlite::Connection>,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = || me.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match conn.or_else(idle) {
                Some(c) => c,
                None => me.open()?,
            };
            let out = f(&conn);
            me.give_back(conn);
            Ok(out?)
        })
        .await
        .map_err(|e| Error::Invalid(format!("store read did not finish: {e}")))?
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(READER_BUSY_TIMEOUT)?;
        c.pragma_update(None, "query_only", "ON")?;
        Ok(c)
    }
}

pub(crate) const COLUMNS: &str = "idx, at_us, request_id, caller_dept, caller_system, caller_serial, operator, \
     action, service, case_id, matter, outcome, status, reason, subject_hmac, fields, body_sha256, \
     decision, policies";

/// A digest column of the log (`subject_hmac`, `body_sha256`) as SQLite stores it
/// (migration 0011): lowercase hex, which is what the gateway writes, as its bytes, half
/// the size; anything else as the text it is, so every value reads back as given
/// ([`Hex`]). The two digests were 128 of an entry's ~330 bytes, and every byte of a row
/// is written twice, to the WAL and by the checkpoint into the database (BENCHMARKS.md,
/// "2026-12-06 (evening)"). PostgreSQL keeps text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Digest<'a> {
    Bytes(Vec<u8>),
    Text(&'a str),
}

impl<'a> Digest<'a> {
    pub(crate) fn of(text: &'a str) -> Digest<'a> {
        // `hex::decode` also takes upper case, which would not read back as written.
        let lower =
            !text.is_empty() && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match lower.then(|| hex::decode(text)) {
            Some(Ok(bytes)) => Digest::Bytes(bytes),
            _ => Digest::Text(text),
        }
    }
}

impl rusqlite::ToSql for Digest<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Digest::Bytes(b) => {
                rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(b))
            }
            Digest::Text(t) => rusqlite::types::ToSqlOutput::Borrowed(
                rusqlite::types::ValueRef::Text(t.as_bytes()),
            ),
        })
    }
}

/// A digest column as read: a stored blob as its lowercase hex, text as it is (on
/// PostgreSQL always text). Converted here rather than by `lower(hex(…))` in the query,
/// so a scan of the log costs SQLite no work per row beyond reading the column.
#[derive(Debug)]
pub(crate) struct Hex(String);

impl rusqlite::types::FromSql for Hex {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match v {
            rusqlite::types::ValueRef::Blob(b) => Ok(Hex(hex::encode(b))),
            other => String::column_result(other).map(Hex),
        }
    }
}

impl sqlx::Type<sqlx::Sqlite> for Hex {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            || <Vec<u8> as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for Hex {
    fn decode(
        v: sqlx::sqlite::SqliteValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        use sqlx::{TypeInfo, ValueRef};
        if v.type_info().name() == "BLOB" {
            <&[u8] as sqlx::Decode<sqlx::Sqlite>>::decode(v).map(|b| Hex(hex::encode(b)))
        } else {
            <String as sqlx::Decode<sqlx::Sqlite>>::decode(v).map(Hex)
        }
    }
}

impl sqlx::Type<sqlx::Postgres> for Hex {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Hex {
    fn decode(
        v: sqlx::postgres::PgValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        <String as sqlx::Decode<sqlx::Postgres>>::decode(v).map(Hex)
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`:
    /// `sqlite://path/to/store.db` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            let opts = SQLITE_PRAGMAS.iter().fold(
                SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(5)),
                |o, &(name, value)| o.pragma(name, value),
            );
            let file = opts.get_filename().to_owned();
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                // An in-process connection cannot drop like a socket; the default ping
                // before every acquire would double the cost of each small query.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            // A database in memory is one connection's own: the audit writer and the
            // readers could not see it.
            if !file.is_file() {
                return Err(Error::Invalid(format!(
                    "the SQLite store {url:?} is not a file; give a path (sqlite://path/to/paotui.db)"
                )));
            }
            let writer = Writer::open(&file)?;
            let readers = Arc::new(Readers {
                path: file,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(READERS)),
            });
            Backend::Sqlite(pool, Arc::new(Local { readers, writer }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(Error::BadUrl(url.to_owned()));
        };
        Ok(Store { backend })
    }

    /// A SQLite file's rusqlite readers (`None` on PostgreSQL).
    pub(crate) fn readers(&self) -> Option<&Arc<Readers>> {
        match &self.backend {
            Backend::Sqlite(_, local) => Some(&local.readers),
            Backend::Postgres(_) => None,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(..) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Is the store reachable and answering?
    pub async fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(p, _) => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
            Backend::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p, local) => {
                local
                    .readers
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                *local
                    .writer
                    .conn
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                *local
                    .writer
                    .checkpointer
                    .conn
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                p.close().await
            }
            Backend::Postgres(p) => p.close().await,
        }
    }

    /// Number of entries in the log.
    pub async fn audit_len(&self) -> Result<u64> {
        let n: i64 = match &self.backend {
            Backend::Sqlite(p, _) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
                    .fetch_one(p)
                    .await?
            }
            Backend::Postgres(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One entry by index.
    pub async fn audit_entry(&self, index: u64) -> Result<Option<AuditEntry>> {
        Ok(self
            .audit_range(index, index.saturating_add(1))
            .await?
            .pop())
    }

    /// Entries about subject `subject_hmac` (its HMAC: the log holds nothing else), newest
    /// first: at most `limit`, with index below `before` when given (the next page).
    pub async fn audit_of_subject(
        &self,
        subject_hmac: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        // The indexed blocks, one key seek per block (the recursive CTE counts them down,
        // newest first), plus the tail the next block-completing append will index.
        let sql = format!(
            "WITH RECURSIVE b(n) AS ( \
               SELECT blocks - 1 FROM audit_subject_blocks WHERE id = 0 AND blocks > 0 \
               UNION ALL SELECT n - 1 FROM b WHERE n > 0) \
             SELECT {COLUMNS} FROM audit_entries WHERE idx IN ( \
               SELECT s.idx FROM b JOIN audit_subjects s \
                 ON s.block = b.n AND s.subject_hmac = $1 \
               UNION ALL \
               SELECT idx FROM audit_entries \
                 WHERE idx >= (SELECT blocks * {block} FROM audit_subject_blocks WHERE id = 0) \
                   AND subject_hmac = $1) \
             AND idx < $2 ORDER BY idx DESC LIMIT $3",
            block = crate::tree::SUBJECT_BLOCK
        );
        // Bound as stored: in SQLite a blob never equals text.
        let key = match self.backend {
            Backend::Sqlite(..) => Digest::of(subject_hmac),
            Backend::Postgres(_) => Digest::Text(subject_hmac),
        };
        on_pool!(self, p => {
            let q = sqlx::query(&sql);
            let q = match &key {
                Digest::Bytes(b) => q.bind(b.as_slice()),
                Digest::Text(t) => q.bind(*t),
            };
            q.bind(before)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
                .iter()
                .map(decode)
                .collect()
        })
    }

    /// One page of entries for a table scan, in index order: `idx` in `[idx_from, idx_to)`,
    /// `at_us` in `[at_from, at_to)`, at most `limit`. The next page starts after the last
    /// index returned (keyset paging on the primary key).
    pub(crate) async fn audit_page(
        &self,
        idx: (i64, i64),
        at: (i64, i64),
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE idx >= $1 AND idx < $2 \
             AND at_us >= $3 AND at_us < $4 ORDER BY idx LIMIT $5"
        );
        self.audit_rows(sql, vec![idx.0, idx.1, at.0, at.1, limit])
            .await
    }

    /// The entries `sql` (`$n` placeholders, [`COLUMNS`]) selects with `binds`. On a
    /// SQLite file they are read by one of the store's rusqlite readers in the blocking
    /// pool: one hand-off per call, where sqlx's SQLite driver passes every row through
    /// its worker thread's channel (a full scan of the log is pages of these).
    async fn audit_rows(&self, sql: String, binds: Vec<i64>) -> Result<Vec<AuditEntry>> {
        if let Some(readers) = self.readers() {
            let rows = readers
                .run(move |c| {
                    let mut stmt = c.prepare_cached(&sql)?;
                    let rows = stmt.query_map(rusqlite::params_from_iter(binds), |r| {
                        Ok(stored_row!(r, get))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            return rows.into_iter().map(StoredRow::entry).collect();
        }
        // Not a persistent (named) statement: PostgreSQL switches a named statement to a
        // generic plan after five runs, and the generic plan of the page's range query
        // ANDs both indexes and sorts the whole rest of the log for every page (345 ms a
        // page at 1M entries instead of 7). An unnamed statement is planned with its
        // values.
        on_pool!(self, p => {
            let mut q = sqlx::query(&sql).persistent(false);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_all(p).await?.iter().map(decode).collect()
        })
    }

    /// One page of a table scan: `sql` (built by [`crate::tables`], `$n` placeholders) is
    /// bound with the key to start after, the time range and the page size; each row comes
    /// back as cells read as `reads` says (the key first).
    pub(crate) async fn scan_page(
        &self,
        sql: &str,
        after: &Cell,
        time: (i64, i64),
        limit: i64,
        reads: &[Read],
    ) -> Result<Vec<Vec<Cell>>> {
        on_pool!(self, p => {
            // Planned with its values, not generically (see `audit_page`).
            let q = sqlx::query(sql).persistent(false);
            let q = match after {
                Cell::Int(v) => q.bind(*v),
                Cell::Text(t) => q.bind(t.clone()),
                Cell::Null => q.bind(Option::<i64>::None),
            };
            q.bind(time.0)
                .bind(time.1)
                .bind(limit)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| cells(r, reads))
                .collect()
        })
    }

    /// Entries with `from <= idx < to`, in index order.
    pub async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<AuditEntry>> {
        // Indices beyond i64 cannot be stored; clamping keeps the query total.
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        );
        self.audit_rows(sql, vec![from, to]).await
    }
}

/// A value read by a table scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// How a scanned column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    Int,
    Text,
}

fn cells<R: Row>(r: &R, reads: &[Read]) -> Result<Vec<Cell>>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    reads
        .iter()
        .enumerate()
        .map(|(i, read)| {
            Ok(match read {
                Read::Int => r
                    .try_get::<Option<i64>, _>(i)?
                    .map_or(Cell::Null, Cell::Int),
                Read::Text => r
                    .try_get::<Option<String>, _>(i)?
                    .map_or(Cell::Null, Cell::Text),
            })
        })
        .collect()
}

/// An `audit_entries` row as stored, before its words and JSON are parsed.
struct StoredRow {
    idx: i64,
    at_us: i64,
    request_id: String,
    caller_dept: Option<String>,
    caller_system: Option<String>,
    caller_serial: Option<String>,
    operator: Option<String>,
    action: String,
    service: Option<String>,
    case_id: Option<String>,
    matter: Option<String>,
    outcome: String,
    status: i32,
    reason: Option<String>,
    subject_hmac: Option<Hex>,
    fields: Option<String>,
    body_sha256: Option<Hex>,
    decision: Option<String>,
    policies: Option<String>,
}

impl StoredRow {
    fn entry(self) -> Result<AuditEntry> {
        let json = |e: serde_json::Error| Error::Invalid(e.to_string());
        Ok(AuditEntry {
            index: u64::try_from(self.idx)
                .map_err(|_| Error::Invalid("negative audit index".into()))?,
            entry: NewAuditEntry {
                at_us: self.at_us,
                request_id: self.request_id,
                caller_dept: self.caller_dept,
                caller_system: self.caller_system,
                caller_serial: self.caller_serial,
                operator: self.operator,
                action: self.action,
                service: self.service,
                case_id: self.case_id,
                matter: self.matter,
                outcome: Outcome::parse(&self.outcome).ok_or_else(|| {
                    Error::Invalid(format!("stored outcome {:?} is unknown", self.outcome))
                })?,
                status: u16::try_from(self.status)
                    .map_err(|_| Error::Invalid("stored status out of range".into()))?,
                reason: self.reason,
                subject_hmac: self.subject_hmac.map(|h| h.0),
                fields: match self.fields {
                    Some(f) => serde_json::from_str(&f).map_err(json)?,
                    None => vec![],
                },
                body_sha256: self.body_sha256.map(|h| h.0),
                decision: match self.decision.as_deref() {
                    None => None,
                    Some(d @ ("allow" | "deny")) => Some(PolicyDecision {
                        allowed: d == "allow",
                        policies: match self.policies {
                            Some(p) => serde_json::from_str(&p).map_err(json)?,
                            None => vec![],
                        },
                    }),
                    Some(d) => {
                        return Err(Error::Invalid(format!("stored decision {d:?} is unknown")));
                    }
                },
            },
        })
    }
}

fn decode<R: Row>(r: &R) -> Result<AuditEntry>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Hex>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    stored_row!(r, try_get).entry()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a SQLite file in a temporary directory (kept while the guard lives).
    async fn sqlite_store() -> Result<(tempfile::TempDir, Store)> {
        let dir = tempfile::tempdir().map_err(|e| Error::Invalid(e.to_string()))?;
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        Ok((dir, Store::open(&url).await?))
    }

    /// Every connection that can commit to a SQLite store runs with the same settings:
    /// the audit writer, and the sqlx pool (whose commit would otherwise run the WAL
    /// copy at SQLite's default of 1,000 pages). Only `synchronous` differs: the audit
    /// log syncs its writer's WAL itself.
    #[tokio::test]
    async fn sqlite_connections_checkpoint_at_the_raised_mark() -> Result<()> {
        let (_dir, store) = sqlite_store().await?;
        let Backend::Sqlite(pool, local) = &store.backend else {
            return Err(Error::Invalid("not a SQLite store".into()));
        };
        let w = &local.writer;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await?;
        assert_eq!(mode, "wal", "pool");
        let mode = w
            .run(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?))
            .await?;
        assert_eq!(mode, "wal", "writer");
        // As SQLite reports them: FULL as 2, NORMAL as 1, ON as 1. The audit writer
        // alone commits with NORMAL: the audit log syncs its WAL itself.
        for (name, want, writer_want) in [
            ("synchronous", 2, 1),
            ("foreign_keys", 1, 1),
            ("wal_autocheckpoint", 20_000, 20_000),
        ] {
            let sql = format!("PRAGMA {name}");
            let pooled: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await?;
            assert_eq!(pooled, want, "pool: {name}");
            let written = w
                .run(move |c| Ok(c.query_row(&sql, [], |r| r.get::<_, i64>(0))?))
                .await?;
            assert_eq!(written, writer_want, "writer: {name}");
        }
        assert!(w.wal_path().is_file(), "{}", w.wal_path().display());
        store.close().await;
        Ok(())
    }

    /// After [`CHECKPOINT_ENTRIES`] committed entries the WAL is copied into the database
    /// file by the background checkpointer, well before the writer's own mark.
    #[tokio::test]
    async fn committed_entries_start_a_background_checkpoint() -> Result<()> {
        let (dir, store) = sqlite_store().await?;
        let Backend::Sqlite(_, local) = &store.backend else {
            return Err(Error::Invalid("not a SQLite store".into()));
        };
        let w = &local.writer;
        // About 2 MB of rows, far under the writer's own mark of 20,000 pages.
        w.run(|c| {
            c.execute_batch(
                "CREATE TABLE filler (x BLOB); \
                 WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 500) \
                 INSERT INTO filler SELECT randomblob(4000) FROM k",
            )?;
            Ok(())
        })
        .await?;
        let db = dir.path().join("s.db");
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let before = size();
        assert!(
            before < 1 << 20,
            "the rows are still only in the WAL: {before}"
        );
        w.committed(CHECKPOINT_ENTRIES - 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(size(), before, "one entry short of the mark: no checkpoint");
        w.committed(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size() < 2_000_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(size() >= 2_000_000, "the WAL was copied: {} bytes", size());
        store.close().await;
        Ok(())
    }

    /// A short read (a case read) is answered on the calling task; one longer than the
    /// budget is interrupted there, leaves the connection as it was (busy timeout, no
    /// progress handler), and is answered in full by its run in the blocking pool.
    #[tokio::test]
    async fn a_short_read_over_its_budget_is_answered_by_the_pool() -> Result<()> {
        use paotui_adapters::within_budget;
        const LONG: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
            WHERE x < 2000000) SELECT count(*) FROM c";
        let (_dir, store) = sqlite_store().await?;
        let Some(readers) = store.readers().cloned() else {
            return Err(Error::Invalid("no readers".into()));
        };
        let count = |c: &rusqlite::Connection, sql: &str| c.query_row(sql, [], |r| r.get(0));
        let conn = readers.open()?;
        assert_eq!(
            within_budget(&conn, READER_BUSY_TIMEOUT, |c| count(c, "SELECT 7")),
            Some(7_i64)
        );
        let long = within_budget(&conn, READER_BUSY_TIMEOUT, |c| count(c, LONG));
        assert_eq!(long, None::<i64>);
        let busy: i64 = count(&conn, "PRAGMA busy_timeout")?;
        assert_eq!(busy, 5_000);
        assert_eq!(count(&conn, LONG)?, 2_000_000_i64);
        for _ in 0..2 {
            let n: i64 = readers.run_short(move |c| count(c, LONG)).await?;
            assert_eq!(n, 2_000_000);
            let n: i64 = readers.run_short(move |c| count(c, "SELECT 7")).await?;
            assert_eq!(n, 7);
        }
        // Where each ran: the short read on this (current-thread) runtime's thread, the
        // long one's answer on a blocking-pool thread.
        let here = std::thread::current().id();
        let on = readers
            .run_short(|_| Ok(std::thread::current().id()))
            .await?;
        assert_eq!(on, here);
        let on = readers
            .run_short(move |c| count(c, LONG).map(|_: i64| std::thread::current().id()))
            .await?;
        assert_ne!(on, here);
        store.close().await;
        Ok(())
    }

    #[test]
    fn only_lowercase_hex_is_stored_as_bytes() {
        assert_eq!(Digest::of("ab09"), Digest::Bytes(vec![0xab, 0x09]));
        let h = "00ff".repeat(16);
        assert_eq!(Digest::of(&h), Digest::Bytes([0, 0xff].repeat(16)));
        for text in ["", "AB", "aB", "abc", "0g", "zz", "a b ", "é0"] {
            assert_eq!(Digest::of(text), Digest::Text(text), "{text:?}");
        }
    }

    /// On a SQLite file the log's entries are read by the rusqlite readers, not sqlx:
    /// with the sqlx pool closed, ranges and table pages still answer, every column
    /// decoded as written (a decision and its policies included).
    #[tokio::test]
    async fn sqlite_audit_reads_go_through_the_readers() -> Result<()> {
        let (_dir, store) = sqlite_store().await?;
        let Backend::Sqlite(pool, _) = &store.backend else {
            return Err(Error::Invalid("not a SQLite store".into()));
        };
        // Every column a different value, so a column read into the wrong field fails.
        sqlx::query(&format!(
            "INSERT INTO audit_entries ({COLUMNS}) VALUES \
             (0, 10, 'r0', 'GA', 'sys', 'serial', 'op', 'service.query', 'population', \
               'case-1', 'matter-1', 'ok', 200, NULL, 'ab', '[\"name\",\"id_no\"]', 'cd', \
               'allow', '[\"p1\"]'), \
             (1, 20, 'r1', NULL, NULL, NULL, NULL, 'keys.read', NULL, NULL, NULL, 'denied', \
               403, 'no', NULL, NULL, NULL, NULL, NULL)"
        ))
        .execute(pool)
        .await?;
        pool.close().await;
        let all = store.audit_range(0, 10).await?;
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(
            all,
            vec![
                AuditEntry {
                    index: 0,
                    entry: NewAuditEntry {
                        at_us: 10,
                        request_id: "r0".into(),
                        caller_dept: some("GA"),
                        caller_system: some("sys"),
                        caller_serial: some("serial"),
                        operator: some("op"),
                        action: "service.query".into(),
                        service: some("population"),
                        case_id: some("case-1"),
                        matter: some("matter-1"),
                        outcome: Outcome::Ok,
                        status: 200,
                        reason: None,
                        subject_hmac: some("ab"),
                        fields: vec!["name".into(), "id_no".into()],
                        body_sha256: some("cd"),
                        decision: Some(PolicyDecision {
                            allowed: true,
                            policies: vec!["p1".into()],
                        }),
                    },
                },
                AuditEntry {
                    index: 1,
                    entry: NewAuditEntry {
                        at_us: 20,
                        request_id: "r1".into(),
                        caller_dept: None,
                        caller_system: None,
                        caller_serial: None,
                        operator: None,
                        action: "keys.read".into(),
                        service: None,
                        case_id: None,
                        matter: None,
                        outcome: Outcome::Denied,
                        status: 403,
                        reason: some("no"),
                        subject_hmac: None,
                        fields: vec![],
                        body_sha256: None,
                        decision: None,
                    },
                },
            ]
        );
        // The page's time range keeps the second entry only.
        let page = store.audit_page((0, 10), (15, 100), 10).await?;
        assert_eq!(page.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1]);
        store.close().await;
        Ok(())
    }
}
