//! paotui-certs: the trust layer of paotui.
//!
//! It owns the paotui CA (issuing client and server certificates, the CRL), the rustls
//! configurations that make mTLS mandatory and turn a client certificate into a
//! [`SystemIdentity`], the gateway's Ed25519 signing key and its JWK set, RFC 9421 HTTP
//! message signatures with RFC 9530 `Content-Digest`, signed JSON documents (RFC 8785
//! canonical JSON in an EdDSA compact JWS, [`jws`]), the keyed subject hash (HMAC), and AES-256-GCM sealing of stored documents.
//!
//! It does no I/O beyond reading and writing its own key and certificate files, and it
//! never implements a cryptographic primitive itself: ring, rustls and rcgen do the maths.
#![forbid(unsafe_code)]

pub mod ca;
mod error;
pub mod httpsig;
pub mod identity;
pub mod jws;
pub mod pemfile;
pub mod sealing;
pub mod signing;
pub mod subject;
pub mod tlog;
pub mod tls;

pub use error::{Error, Result};
pub use identity::{DeptCode, SystemId, SystemIdentity};
pub use sealing::DataKey;
pub use signing::{GatewayKey, IssuerKeys, Jwk, Jwks};
pub use subject::SubjectKey;
