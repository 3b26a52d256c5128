//! paotui-repository: the gateway's own store.
//!
//! One [`Store`] with two backends — SQLite (the default: files in the data dir, WAL,
//! `synchronous = FULL`) and PostgreSQL (for several gateway nodes) — and the
//! tamper-evident audit log on it: [`AuditLog`] group-commits entries with their RFC 6962
//! Merkle tree nodes and signs C2SP checkpoints; [`verify::verify`] recomputes it all.
//! The license vault's tables (licenses, their events and usage records) live here too.
//!
//! It never sees a plaintext personal identifier: callers hand it HMACs and hashes.
#![forbid(unsafe_code)]

mod alerts;
mod archives;
mod audit;
mod cache;
mod cases;
mod error;
mod licenses;
mod log;
mod store;
pub mod tables;
mod tree;
pub mod verify;

pub use alerts::{NewAlert, StoredAlert};
pub use archives::ArchiveRun;
pub use audit::{
    AuditEntry, ENTRY_FORMAT_V1, ENTRY_FORMAT_V2, NewAuditEntry, Outcome, PolicyDecision,
};
pub use cases::{CaseEvent, CaseMatter, CaseParty, Evaluation, FINAL_CASE_STATUSES, StoredCase};
pub use error::{Error, Result};
pub use licenses::{LicenseEvent, LicenseUse, StoredLicense};
pub use log::{AuditLog, AuditOptions, SignedCheckpoint};
pub use store::Store;
pub use tree::StoredCheckpoint;
