//! Adapters against real database servers on this machine (fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod files;
mod http;
mod servers;
mod sqlite;
