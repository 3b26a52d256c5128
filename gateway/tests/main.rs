//! Tests of the `paotui` binary itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod cli;
