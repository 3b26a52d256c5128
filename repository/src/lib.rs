//! paotui-repository: the gateway's own store.
//!
//! One [`Store`] with two backends — SQLite (the default: files in the data dir, WAL,
//! `synchronous = FULL`) and PostgreSQL (for several gateway nodes) — and the audit log's
//! append boundary: [`Store::append_audit`] returns only after the entry is committed.
//!
//! It never sees a plaintext personal identifier: callers hand it HMACs and hashes.
#![forbid(unsafe_code)]

mod audit;
mod error;
mod store;

pub use audit::{AuditEntry, NewAuditEntry, Outcome};
pub use error::{Error, Result};
pub use store::Store;
