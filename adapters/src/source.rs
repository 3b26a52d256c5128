use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use paotui_policies::catalog::ParamValue;

use crate::{Error, Result};

/// Limits every source enforces on every query.
#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    pub statement_timeout: Duration,
    /// At most this many rows are read; the answer says when it was cut.
    pub max_rows: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            statement_timeout: Duration::from_secs(5),
            max_rows: 1000,
        }
    }
}

/// A query result: one Arrow batch, and whether `max_rows` cut it.
#[derive(Debug, Clone)]
pub struct Rows {
    pub batch: RecordBatch,
    pub truncated: bool,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A department data source: runs one read-only, parameterised query.
pub trait DataSource: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;

    /// Runs `sql` (with `:name` placeholders) binding `params` in placeholder order.
    fn query<'a>(&'a self, sql: &'a str, params: &'a [ParamValue]) -> BoxFuture<'a, Result<Rows>>;

    /// Is the source reachable?
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
}

/// Runs a source's query under its statement timeout (the database enforces its own too;
/// this bounds the wait for a connection and the network as well).
pub(crate) async fn with_timeout<T>(
    name: &str,
    limits: SourceLimits,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    let ms = u64::try_from(limits.statement_timeout.as_millis()).unwrap_or(u64::MAX);
    match tokio::time::timeout(limits.statement_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            source_name: name.to_owned(),
            ms,
        }),
    }
}

/// Maps a driver error: connection trouble → unavailable (503), a statement cancelled by
/// the database's own timeout → timeout (504), anything else → query failure.
pub(crate) fn classify(name: &str, limits: SourceLimits, e: sqlx::Error) -> Error {
    let ms = u64::try_from(limits.statement_timeout.as_millis()).unwrap_or(u64::MAX);
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => Error::Unavailable {
            source_name: name.to_owned(),
            detail: e.to_string(),
        },
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // 57014: PostgreSQL query_canceled; 1969/3024: MariaDB/MySQL statement timeouts.
            if matches!(code.as_str(), "57014" | "70100" | "HY000")
                && db.message().to_ascii_lowercase().contains("time")
            {
                Error::Timeout {
                    source_name: name.to_owned(),
                    ms,
                }
            } else {
                Error::Query {
                    source_name: name.to_owned(),
                    detail: e.to_string(),
                }
            }
        }
        _ => Error::Query {
            source_name: name.to_owned(),
            detail: e.to_string(),
        },
    }
}
