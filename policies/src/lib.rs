//! paotui-policies: what may leave, for whom, and in what shape.
//!
//! It owns the identifier newtypes parsed at the edge ([`ids`]), the data-service catalog
//! ([`catalog`]), the access decision for a query ([`access`], the [`access::AccessPolicy`]
//! trait the Cedar policies implement: [`cedar`]) and field masking ([`mask`]), the
//! electronic-license types,
//! documents, lifecycle and offline verdicts ([`licenses`]), the matter catalog with its
//! materials ([`matters`]), purpose binding of reads to open cases ([`purpose`]) and
//! working-day arithmetic ([`calendar`]).
//!
//! Everything here is pure: no network, no database. Catalog files are read by the caller
//! and handed in as text so errors can name the file and line (a policy directory is
//! read here, for the same reason).
#![forbid(unsafe_code)]

pub mod access;
pub mod calendar;
pub mod catalog;
pub mod cedar;
mod error;
pub mod ids;
pub mod licenses;
pub mod mask;
pub mod matters;
mod memo;
pub mod purpose;

pub use error::{Error, Result};
