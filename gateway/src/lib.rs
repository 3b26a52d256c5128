//! paotui-gateway: the `paotui` binary — CLI, config, the axum application (a router per
//! area, tower layers for cross-cutting concerns), the mTLS server, and the demo.
//!
//! It wires the other crates together and owns the HTTP mapping of every error
//! ([`Error`]'s `IntoResponse`). Nothing depends on it.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod app;
pub mod archive;
pub mod audit;
pub mod audit_cli;
pub mod authz;
pub mod cases;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
mod error;
pub mod extract;
pub mod license_cli;
pub mod license_import;
pub mod routes;
pub mod server;
pub mod sql;
pub mod state;
pub mod stats;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod vault;

pub use error::{Error, Result, redact};
