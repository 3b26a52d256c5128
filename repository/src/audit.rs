//! Audit entries: what is written for every API request.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    /// What the access policy decided, when the request reached a decision (refusals of
    /// the caller's certificate or of malformed input come before any).
    #[serde(default)]
    pub decision: Option<PolicyDecision>,
}

/// An access-policy decision as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    pub allowed: bool,
    /// Ids of the determining policies: the permits that allowed, or the forbids that
    /// denied (none: denied because nothing permits).
    pub policies: Vec<String>,
}

/// A stored entry and its index in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub index: u64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// The first byte of every canonical entry: the encoding's version.
pub const ENTRY_FORMAT_V1: u8 = 1;
/// Version 2: version 1's fields, then the policy decision. An entry is written as v2
/// exactly when it carries a decision, so entries logged before v2 keep their leaves.
pub const ENTRY_FORMAT_V2: u8 = 2;

/// Writes the canonical bytes of entries, versions 1 and 2.
///
/// The Merkle leaf of an entry is `SHA-256(0x00 ‖ canonical bytes)`, so this encoding is
/// part of the log's contract with auditors and never changes in place: a new layout gets
/// a new version byte. Layout (all integers big-endian):
///
/// ```text
/// u8  version = 1
/// i64 at_us
/// str request_id
/// opt caller_dept, opt caller_system, opt caller_serial, opt operator
/// str action
/// opt service, opt case_id, opt matter
/// u8  outcome (0 ok, 1 denied, 2 error)
/// u16 status
/// opt reason, opt subject_hmac
/// u32 count, then count × str   (fields)
/// opt body_sha256
/// -- version 2 only:
/// u8  allowed (0 denied, 1 allowed)
/// u32 count, then count × str   (determining policy ids)
/// str = u32 byte length ‖ UTF-8;  opt = 0x00 | 0x01 ‖ str
/// ```
struct Writer(Vec<u8>);

impl Writer {
    fn str(&mut self, s: &str) {
        // Entries are built by the gateway from bounded inputs; a 4 GiB string cannot occur,
        // and saturating keeps the encoding total rather than panicking.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn strs(&mut self, v: &[String]) {
        let n = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
        for s in v {
            self.str(s);
        }
    }
    fn opt(&mut self, s: &Option<String>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Invalid("canonical entry is truncated".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| Error::Invalid("canonical entry holds invalid UTF-8".into()))
    }
    fn strs(&mut self) -> Result<Vec<String>> {
        let n = self.u32()?;
        // Each string takes at least 4 bytes, which bounds `n` by the input size.
        if (n as usize).saturating_mul(4) > self.0.len() {
            return Err(Error::Invalid("canonical entry is truncated".into()));
        }
        (0..n).map(|_| self.str()).collect()
    }
    fn opt(&mut self) -> Result<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            t => Err(Error::Invalid(format!(
                "canonical entry: bad option tag {t}"
            ))),
        }
    }
}

/// A plain entry for unit tests: request `request_id` about `subject`.
#[cfg(test)]
pub(crate) fn test_entry(request_id: &str, subject: Option<String>) -> NewAuditEntry {
    NewAuditEntry {
        at_us: 1_700_000_000_000_000,
        request_id: request_id.into(),
        caller_dept: Some("RS".into()),
        caller_system: None,
        caller_serial: None,
        operator: None,
        action: "service.query".into(),
        service: None,
        case_id: None,
        matter: None,
        outcome: Outcome::Ok,
        status: 200,
        reason: None,
        subject_hmac: subject,
        fields: vec![],
        body_sha256: None,
        decision: None,
    }
}

impl NewAuditEntry {
    /// The entry's canonical bytes: format v2 with a decision, v1 without (see
    /// [`ENTRY_FORMAT_V2`]).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(256));
        w.0.push(if self.decision.is_some() {
            ENTRY_FORMAT_V2
        } else {
            ENTRY_FORMAT_V1
        });
        w.0.extend_from_slice(&self.at_us.to_be_bytes());
        w.str(&self.request_id);
        w.opt(&self.caller_dept);
        w.opt(&self.caller_system);
        w.opt(&self.caller_serial);
        w.opt(&self.operator);
        w.str(&self.action);
        w.opt(&self.service);
        w.opt(&self.case_id);
        w.opt(&self.matter);
        w.0.push(match self.outcome {
            Outcome::Ok => 0,
            Outcome::Denied => 1,
            Outcome::Error => 2,
        });
        w.0.extend_from_slice(&self.status.to_be_bytes());
        w.opt(&self.reason);
        w.opt(&self.subject_hmac);
        w.strs(&self.fields);
        w.opt(&self.body_sha256);
        if let Some(d) = &self.decision {
            w.0.push(u8::from(d.allowed));
            w.strs(&d.policies);
        }
        w.0
    }

    /// Decodes canonical bytes; every byte must be used.
    pub fn from_canonical(bytes: &[u8]) -> Result<NewAuditEntry> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != ENTRY_FORMAT_V1 && v != ENTRY_FORMAT_V2 {
            return Err(Error::Invalid(format!(
                "canonical entry format {v} is unknown"
            )));
        }
        let e = NewAuditEntry {
            at_us: r.i64()?,
            request_id: r.str()?,
            caller_dept: r.opt()?,
            caller_system: r.opt()?,
            caller_serial: r.opt()?,
            operator: r.opt()?,
            action: r.str()?,
            service: r.opt()?,
            case_id: r.opt()?,
            matter: r.opt()?,
            outcome: match r.u8()? {
                0 => Outcome::Ok,
                1 => Outcome::Denied,
                2 => Outcome::Error,
                o => return Err(Error::Invalid(format!("canonical entry: outcome {o}"))),
            },
            status: r.u16()?,
            reason: r.opt()?,
            subject_hmac: r.opt()?,
            fields: r.strs()?,
            body_sha256: r.opt()?,
            decision: None,
        };
        let e = if v == ENTRY_FORMAT_V2 {
            let allowed = match r.u8()? {
                0 => false,
                1 => true,
                a => return Err(Error::Invalid(format!("canonical entry: allowed {a}"))),
            };
            NewAuditEntry {
                decision: Some(PolicyDecision {
                    allowed,
                    policies: r.strs()?,
                }),
                ..e
            }
        } else {
            e
        };
        if !r.0.is_empty() {
            return Err(Error::Invalid("canonical entry has trailing bytes".into()));
        }
        Ok(e)
    }

    /// The entry's Merkle leaf hash.
    pub fn leaf_hash(&self) -> paotui_certs::tlog::Hash {
        paotui_certs::tlog::leaf_hash(&self.canonical_bytes())
    }
}
