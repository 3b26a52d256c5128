//! Bulk import of existing licenses, shared by `paotui license import` and
//! `POST /v1/licenses/import`.
//!
//! Rows come as CSV (a header row; columns `type, holder_id, holder_name, number,
//! issued_on, valid_from, valid_until`, every other column a data field, empty cells
//! absent) or JSON lines (one [`LicenseRequest`] object per line). Each row is checked,
//! signed and stored in one transaction, or rejected with its line number and reason;
//! each leaves an audit entry (`license.import`). A row whose type and number are already
//! stored with the same content is counted as already stored, so re-running a file adds
//! nothing.

use std::io::BufRead;

use paotui_policies::catalog::ParamType;
use paotui_policies::licenses::LicenseRequest;
use paotui_repository::{AuditLog, NewAuditEntry, Outcome};
use serde::Serialize;
use serde_json::Value;

use crate::vault::{Actor, Issued, Source, Vault};
use crate::{Error, Result, redact};

/// Longest accepted row (bytes); a longer one is rejected, not buffered.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// One row, parsed or not, with its 1-based line number in the file.
pub struct Row {
    pub line: u64,
    pub request: std::result::Result<LicenseRequest, String>,
}

/// What happened to a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RowOutcome {
    Stored { line: u64, id: String },
    AlreadyStored { line: u64, id: String },
    Rejected { line: u64, reason: String },
}

/// Counts for a whole import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub stored: u64,
    pub already_stored: u64,
    pub rejected: u64,
}

impl Summary {
    pub fn add(&mut self, o: &RowOutcome) {
        match o {
            RowOutcome::Stored { .. } => self.stored += 1,
            RowOutcome::AlreadyStored { .. } => self.already_stored += 1,
            RowOutcome::Rejected { .. } => self.rejected += 1,
        }
    }
}

/// Parses one JSON line.
pub fn json_row(line: u64, text: &str) -> Row {
    let request = if text.len() > MAX_ROW_BYTES {
        Err(format!("row is longer than {MAX_ROW_BYTES} bytes"))
    } else {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {}", redact(&e.to_string())))
    };
    Row { line, request }
}

/// Reads CSV rows. `types` types the data cells: integer fields become numbers.
pub struct CsvRows<R: std::io::Read> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    record: csv::StringRecord,
    /// Set after an error the reader cannot step over.
    done: bool,
}

impl<R: std::io::Read> CsvRows<R> {
    pub fn new(input: R) -> std::result::Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| format!("line 1: header: {}", redact(&e.to_string())))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        for need in ["type", "holder_id", "holder_name"] {
            if !header.iter().any(|h| h == need) {
                return Err(format!("line 1: the header has no {need:?} column"));
            }
        }
        Ok(CsvRows {
            reader,
            header,
            record: csv::StringRecord::new(),
            done: false,
        })
    }

    /// Bytes read so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next row, `None` at the end.
    pub fn next_row(&mut self, vault: &Vault) -> Option<Row> {
        if self.done {
            return None;
        }
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, csv::Position::line);
                Some(Row {
                    line,
                    request: csv_request(&self.header, &self.record, vault),
                })
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                // A broken record ends the reader's certainty about where rows start.
                let fatal = !matches!(
                    e.kind(),
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                );
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("the row has {len} cells; the header has {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_owned(),
                    _ => format!("unreadable CSV: {}", redact(&e.to_string())),
                };
                // Reported once; after it the reader cannot tell where rows start.
                self.done = fatal;
                Some(Row {
                    line,
                    request: Err(reason),
                })
            }
        }
    }
}

fn csv_request(
    header: &[String],
    rec: &csv::StringRecord,
    vault: &Vault,
) -> std::result::Result<LicenseRequest, String> {
    if rec.as_slice().len() > MAX_ROW_BYTES {
        return Err(format!("row is longer than {MAX_ROW_BYTES} bytes"));
    }
    let mut req = LicenseRequest::default();
    let cell = |i: usize| rec.get(i).map(str::trim).filter(|s| !s.is_empty());
    let mut data = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let Some(v) = cell(i) else { continue };
        match name.as_str() {
            "type" => req.type_code = v.to_owned(),
            "holder_id" => req.holder_id = v.to_owned(),
            "holder_name" => req.holder_name = v.to_owned(),
            "number" => req.number = Some(v.to_owned()),
            "issued_on" => req.issued_on = Some(v.to_owned()),
            "valid_from" => req.valid_from = Some(v.to_owned()),
            "valid_until" => req.valid_until = Some(v.to_owned()),
            other => data.push((other.to_owned(), v.to_owned())),
        }
    }
    let t = vault.license_type(&req.type_code).ok();
    for (name, v) in data {
        let integer = t.is_some_and(|t| {
            t.fields
                .iter()
                .any(|f| f.name == name && f.ty == ParamType::Integer)
        });
        let value = match v.parse::<i64>() {
            Ok(n) if integer => Value::from(n),
            _ => Value::from(v),
        };
        req.data.insert(name, value);
    }
    Ok(req)
}

/// Reads JSON lines from a buffered reader, one [`Row`] per non-blank line.
pub fn json_lines<R: BufRead>(input: R) -> impl Iterator<Item = Row> {
    input.split(b'\n').enumerate().filter_map(|(i, line)| {
        let n = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        match line {
            Err(e) => Some(Row {
                line: n,
                request: Err(format!("unreadable: {e}")),
            }),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => Some(Row {
                    line: n,
                    request: Err("the row is not valid UTF-8".into()),
                }),
                Ok(s) if s.trim().is_empty() => None,
                Ok(s) => Some(json_row(n, s.trim())),
            },
        }
    })
}

/// Imports one row and writes its audit entry. `Err` only when the import cannot go on
/// (the store or the audit log failed); a bad row is an `Ok(Rejected)`.
pub async fn import_row(
    vault: &Vault,
    audit: &AuditLog,
    authz: &crate::authz::Authz,
    actor: &Actor,
    row: Row,
) -> Result<RowOutcome> {
    // Each row is its own decision, written in its own entry.
    let scope = crate::audit::AuditScope::default();
    let authz = authz.with_scope(scope.clone());
    let (today, at_us) = crate::vault::now();
    let mut entry = NewAuditEntry {
        at_us,
        request_id: format!("{}#{}", actor.request_id, row.line),
        caller_dept: Some(actor.dept.to_string()),
        caller_system: Some(actor.system.clone()),
        caller_serial: None,
        operator: actor.operator.clone(),
        action: "license.import".into(),
        service: None,
        case_id: None,
        matter: None,
        outcome: Outcome::Ok,
        status: 201,
        reason: None,
        subject_hmac: None,
        fields: vec![],
        body_sha256: None,
        decision: None,
    };
    let result = match row.request {
        Err(reason) => Err(Error::BadRequest(reason)),
        Ok(req) => {
            if let Ok(lt) = vault.license_type(&req.type_code) {
                entry.service = Some(format!("license:{}", lt.code));
                if let Ok(h) = lt.holder.parse(&req.holder_id) {
                    entry.subject_hmac = Some(vault.holder_hmac(&h));
                }
            }
            vault
                .issue(&authz, actor, &req, Source::Import, today, at_us)
                .await
        }
    };
    scope.update(|c| entry.decision = c.decision.take());
    let outcome = match result {
        Ok(Issued::New(view)) => {
            entry.fields = vec![view.id.clone()];
            RowOutcome::Stored {
                line: row.line,
                id: view.id,
            }
        }
        Ok(Issued::AlreadyStored(id)) => {
            entry.status = 200;
            entry.reason = Some("already stored".into());
            entry.fields = vec![id.clone()];
            RowOutcome::AlreadyStored { line: row.line, id }
        }
        Err(
            e
            @ (Error::BadRequest(_) | Error::Policy(_) | Error::Forbidden(_) | Error::Conflict(_)),
        ) => {
            let (status, outcome) = match e {
                Error::Forbidden(_) => (403, Outcome::Denied),
                Error::Conflict(_) => (409, Outcome::Error),
                _ => (400, Outcome::Error),
            };
            let reason = e.to_string();
            entry.status = status;
            entry.outcome = outcome;
            entry.reason = Some(reason.clone());
            RowOutcome::Rejected {
                line: row.line,
                reason,
            }
        }
        Err(Error::Store(paotui_repository::Error::Conflict(m))) => {
            entry.status = 409;
            entry.outcome = Outcome::Error;
            entry.reason = Some(m.clone());
            RowOutcome::Rejected {
                line: row.line,
                reason: m,
            }
        }
        Err(e) => {
            entry.status = 500;
            entry.outcome = Outcome::Error;
            entry.reason = Some("internal error".into());
            // The failure is audited too, then the import stops.
            audit
                .append(entry)
                .await
                .map_err(|_| Error::AuditUnavailable)?;
            return Err(e);
        }
    };
    audit
        .append(entry)
        .await
        .map_err(|_| Error::AuditUnavailable)?;
    Ok(outcome)
}
