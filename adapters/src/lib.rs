//! paotui-adapters: department data sources and the demo-world generator.
//!
//! A [`DataSource`] runs one parameterised query on a connection that cannot write
//! (read-only transaction or read-only mode), with a statement timeout and a row cap, and
//! returns one Arrow record batch ([`Rows`]). Arrow comes only through
//! `datafusion::arrow`, so the whole tree uses one Arrow version.
//!
//! It never decides who may see what: the gateway applies policies to what comes back.
#![forbid(unsafe_code)]

pub mod batch;
pub mod demo;
mod engine;
mod error;
mod files;
mod http;
mod mysql;
mod postgres;
mod source;
mod sqldb;
mod sqlite;

pub use datafusion::arrow;
pub use engine::{ColumnType, normalize};
pub use error::{Error, Result};
pub use files::FileSource;
pub use http::{HttpOptions, HttpSource};
pub use mysql::MySqlSource;
pub use postgres::PostgresSource;
pub use source::{BoxFuture, DataSource, Rows, SourceLimits};
pub use sqlite::{INLINE_BUDGET, Inline, SqliteSource, inline_first, within_budget};
