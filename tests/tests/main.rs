//! End-to-end tests: the real gateway, over mTLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod audit;
mod cases;
mod departments;
mod licenses;
mod purpose;
mod tls;
