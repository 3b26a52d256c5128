//! Store conformance: the same tests against SQLite and a fresh PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auditlog;
mod conformance;
