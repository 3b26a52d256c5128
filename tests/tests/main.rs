//! End-to-end tests: the real gateway, over mTLS.

mod api;
mod tls;
