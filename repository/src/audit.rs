//! Audit entries: what is written for every API request.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered as asked.
    Ok,
    /// Refused by policy (or by authentication).
    Denied,
    /// Bad input, an unavailable source, a timeout.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Outcome::Ok),
            "denied" => Some(Outcome::Denied),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// An entry to append. Identifiers are already keyed hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at_us: i64,
    pub request_id: String,
    pub caller_dept: Option<String>,
    pub caller_system: Option<String>,
    pub caller_serial: Option<String>,
    pub operator: Option<String>,
    pub action: String,
    pub service: Option<String>,
    pub case_id: Option<String>,
    pub matter: Option<String>,
    pub outcome: Outcome,
    pub status: u16,
    pub reason: Option<String>,
    /// HMAC-SHA256 (hex) of the subject identifier, never the identifier.
    pub subject_hmac: Option<String>,
    pub fields: Vec<String>,
    /// SHA-256 (hex) of the response body.
    pub body_sha256: Option<String>,
}

/// A stored entry and its index in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub index: u64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}
