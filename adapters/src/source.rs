use std::time::Duration;

use paotui_policies::catalog::ParamValue;
use serde::Serialize;

use crate::Result;

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

/// A query result: column names and rows of JSON values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when `max_rows` cut the result.
    pub truncated: bool,
}

/// A department data source.
pub trait DataSource: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;

    /// Runs `sql` (with `:name` placeholders) binding `params` in placeholder order.
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [ParamValue],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Rows>> + Send + 'a>>;

    /// Is the source reachable?
    fn ping(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + '_>>;
}
