//! paotui-adapters: department data sources and the demo-world generator.
//!
//! A [`DataSource`] runs one parameterised, read-only query with a statement timeout and a
//! row cap and returns [`Rows`]. It never decides who may see what: that is policies'
//! job, applied by the gateway to what comes back.
#![forbid(unsafe_code)]

pub mod demo;
mod error;
mod source;
mod sqlite;

pub use error::{Error, Result};
pub use source::{DataSource, Rows, SourceLimits};
pub use sqlite::SqliteSource;
