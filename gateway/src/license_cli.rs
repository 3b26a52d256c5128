//! `paotui license verify | import`.

use std::cell::Cell;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use chrono::NaiveDate;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use paotui_certs::{DeptCode, GatewayKey, Jwks, SubjectKey};
use paotui_policies::licenses;
use paotui_repository::{AuditLog, Store};

use crate::config::Config;
use crate::license_import::{self, CsvRows, RowOutcome, Summary};
use crate::vault::Actor;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Check a license offline: signature, issuing department's key, dates.
    ///
    /// FILE holds the compact JWS, or a JSON object with a "jws" member (as the API
    /// returns it). KEYS is a JWK set as served at /v1/keys. Prints the verdict as JSON;
    /// exits 1 when the license does not verify. Status (suspended, revoked) needs the
    /// vault: use POST /v1/licenses/verify for that.
    Verify {
        /// The license: a compact JWS, or JSON with a "jws" member.
        file: PathBuf,
        /// A JWK set file (save GET /v1/keys).
        #[arg(long, value_name = "KEYS")]
        keys: PathBuf,
        /// Check the dates as of this day (YYYY-MM-DD) instead of today.
        #[arg(long, value_name = "DATE")]
        on: Option<NaiveDate>,
    },
    /// Import existing licenses of a department (CSV or JSON lines) into the vault.
    ///
    /// CSV: a header row with type, holder_id, holder_name and optionally number,
    /// issued_on, valid_from, valid_until; every other column is a data field of the
    /// type; empty cells are absent. JSON lines (.jsonl / .ndjson): one object per line
    /// with the same members and "data". Each row is checked (holder check digits,
    /// dates, required fields), signed with the department's key and stored, or written
    /// to the rejects file with its line number and reason. Re-running a file stores
    /// nothing twice. Safe to run while the gateway serves.
    Import {
        /// The rows: .csv, or .jsonl / .ndjson for JSON lines.
        file: PathBuf,
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
        /// The issuing department doing the import; rows of other departments' types
        /// are rejected.
        #[arg(long)]
        dept: String,
        /// Staff id of the person running the import (recorded in the audit log).
        #[arg(long)]
        operator: Option<String>,
        /// Where rejected rows go (CSV: line,reason). Default: FILE.rejects.csv.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
    },
}

pub async fn run(cmd: LicenseCommand) -> Result<()> {
    match cmd {
        LicenseCommand::Verify { file, keys, on } => verify(&file, &keys, on),
        LicenseCommand::Import {
            file,
            config,
            dept,
            operator,
            rejects,
        } => {
            let dept = DeptCode::parse(&dept)?;
            let rejects = rejects.unwrap_or_else(|| {
                let mut p = file.clone().into_os_string();
                p.push(".rejects.csv");
                PathBuf::from(p)
            });
            let summary = import(&file, &config, dept, operator, &rejects).await?;
            println!(
                "{}: {} stored, {} already stored, {} rejected{}",
                file.display(),
                summary.stored,
                summary.already_stored,
                summary.rejected,
                if summary.rejected > 0 {
                    format!(" (see {})", rejects.display())
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}

/// The JWS in a file: the whole text, or the "jws" member of a JSON object.
fn read_token(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?;
    let text = text.trim();
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: not JSON: {}",
                file.display(),
                crate::redact(&e.to_string())
            ))
        })?;
        return v
            .get("jws")
            .and_then(|j| j.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Config(format!("{}: no \"jws\" member", file.display())));
    }
    Ok(text.to_owned())
}

fn verify(file: &Path, keys: &Path, on: Option<NaiveDate>) -> Result<()> {
    let token = read_token(file)?;
    let text = std::fs::read_to_string(keys).map_err(|e| Error::io(keys.display(), e))?;
    let jwks: Jwks = serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{}: not a JWK set: {}",
            keys.display(),
            crate::redact(&e.to_string())
        ))
    })?;
    let today = on.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let verdict = licenses::verify_offline(&token, &jwks, today);
    let out = serde_json::to_string_pretty(&verdict).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{out}");
    if verdict.valid {
        Ok(())
    } else {
        Err(Error::Verification(format!(
            "{}: the license does not verify: {}",
            file.display(),
            verdict.reasons.join("; ")
        )))
    }
}

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("importing [{bar:40}] {bytes}/{total_bytes} ({msg}, {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

/// Imports `file` as department `dept` into the vault of the gateway configured by
/// `config`; rejected rows go to `rejects_path`.
pub async fn import(
    file: &Path,
    config: &Path,
    dept: DeptCode,
    operator: Option<String>,
    rejects_path: &Path,
) -> Result<Summary> {
    let cfg = Config::load(config)?;
    let catalog_path = cfg.path(&cfg.catalog);
    let catalog = cfg.load_catalog()?;
    if !catalog.issuers().contains(&dept) {
        return Err(Error::Config(format!(
            "department {dept} issues no license type in {}",
            catalog_path.display()
        )));
    }
    let input = std::fs::File::open(file).map_err(|e| Error::io(file.display(), e))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let store = Store::open(&cfg.database_url()).await?;
    // The import appends to the same audit log as the gateway (safe alongside it: the
    // log reloads its edge when another writer moved it).
    let (key, _) = GatewayKey::load_or_generate(&cfg.path(&cfg.keys.signing))?;
    let audit = AuditLog::open(store.clone(), Arc::new(key), cfg.audit.options()?).await?;
    let subject_key = SubjectKey::load_or_generate(&cfg.path(&cfg.keys.subject_hmac))?;
    let vault = crate::app::open_vault(&cfg, store.clone(), &catalog, subject_key)?;
    // The import decides each row with the gateway's policies, as the local system
    // `cli-import` of the department.
    let policies = crate::app::load_policies(&cfg, &crate::app::auditors(&cfg)?)?;
    let authz = crate::authz::Authz::new(
        Arc::new(policies),
        paotui_certs::SystemIdentity {
            dept: dept.clone(),
            system: paotui_certs::SystemId::parse("cli-import")?,
            serial: String::new(),
        },
        operator.clone(),
        crate::audit::AuditScope::default(),
    );
    let actor = Actor {
        dept,
        system: "cli-import".into(),
        operator,
        request_id: format!("import-{}", uuid::Uuid::new_v4().simple()),
    };
    let mut rejects = std::fs::File::create(rejects_path)
        .map(std::io::BufWriter::new)
        .map_err(|e| Error::io(rejects_path.display(), e))?;
    writeln!(rejects, "line,reason").map_err(|e| Error::io(rejects_path.display(), e))?;
    let bar = progress_bar(total);
    let mut summary = Summary::default();
    let mut record = |o: &RowOutcome, summary: &mut Summary| -> Result<()> {
        summary.add(o);
        bar.set_message(format!(
            "{} stored, {} rejected",
            summary.stored, summary.rejected
        ));
        if let RowOutcome::Rejected { line, reason } = o {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([line.to_string(), reason.clone()])
                .map_err(|e| Error::Internal(e.to_string()))?;
            let bytes = w.into_inner().map_err(|e| Error::Internal(e.to_string()))?;
            rejects
                .write_all(&bytes)
                .map_err(|e| Error::io(rejects_path.display(), e))?;
        }
        Ok(())
    };
    let is_json = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson" | "json")
    );
    if is_json {
        let read = Rc::new(Cell::new(0u64));
        let counted = Counting {
            inner: input,
            read: read.clone(),
        };
        for row in license_import::json_lines(BufReader::new(counted)) {
            let o = license_import::import_row(&vault, &audit, &authz, &actor, row).await?;
            record(&o, &mut summary)?;
            bar.set_position(read.get());
        }
    } else {
        let mut rows = CsvRows::new(BufReader::new(input))
            .map_err(|e| Error::Config(format!("{}:{e}", file.display())))?;
        while let Some(row) = rows.next_row(&vault) {
            let o = license_import::import_row(&vault, &audit, &authz, &actor, row).await?;
            record(&o, &mut summary)?;
            bar.set_position(rows.bytes_read());
        }
    }
    bar.finish_and_clear();
    rejects
        .flush()
        .map_err(|e| Error::io(rejects_path.display(), e))?;
    store.close().await;
    Ok(summary)
}
