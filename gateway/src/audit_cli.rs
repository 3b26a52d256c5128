//! `paotui audit verify | proof | check-proof`.

use std::io::IsTerminal;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indicatif::{ProgressBar, ProgressStyle};
use paotui_certs::GatewayKey;
use paotui_certs::tlog::{self, Checkpoint, NoteSigner, NoteVerifier};
use paotui_repository::{NewAuditEntry, Store};
use serde::{Deserialize, Serialize};

use crate::cli::AuditCommand;
use crate::config::Config;
use crate::{Error, Result};

/// What `paotui audit proof` prints and `paotui audit check-proof` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProofFile {
    /// The signed checkpoint note the proof leads to.
    pub checkpoint: String,
    pub index: u64,
    /// The entry's canonical bytes (format v1), base64; its leaf is SHA-256(0x00 ‖ these).
    pub canonical: String,
    /// The same entry, readable. `check-proof` checks it decodes from `canonical`.
    pub entry: NewAuditEntry,
    /// RFC 9162 inclusion proof hashes, base64, leaf to root.
    pub inclusion: Vec<String>,
}

fn signing_key(cfg: &Config) -> Result<GatewayKey> {
    let path = cfg.path(&cfg.keys.signing);
    if !path.exists() {
        return Err(Error::Config(format!(
            "{}: no gateway signing key (has the gateway been started with this config?)",
            path.display()
        )));
    }
    Ok(GatewayKey::load_or_generate(&path)?.0)
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message("verifying");
    b
}

pub async fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify {
            config,
            from_checkpoint,
        } => {
            let cfg = Config::load(&config)?;
            let key = signing_key(&cfg)?;
            let verifier = NoteVerifier::for_key(&cfg.audit.origin, &key)?;
            let old = from_checkpoint
                .as_deref()
                .map(|p| std::fs::read_to_string(p).map_err(|e| Error::io(p.display(), e)))
                .transpose()?;
            let store = Store::open(&cfg.database_url()).await?;
            let bar = progress_bar();
            let report = paotui_repository::verify::verify(
                &store,
                &verifier,
                old.as_deref(),
                &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .await;
            bar.finish_and_clear();
            store.close().await;
            let report = report.map_err(|e| match (&from_checkpoint, e) {
                (Some(p), paotui_repository::Error::Crypto(e)) => {
                    Error::Verification(format!("{}: {e}", p.display()))
                }
                (_, e) => e.into(),
            })?;
            if let Some(p) = report.problem {
                return Err(Error::Verification(format!(
                    "audit log FAILED verification at index {}: {}",
                    p.index, p.reason
                )));
            }
            println!(
                "audit log ok: {} entries, root {}, {} stored checkpoints verified{}",
                report.size,
                tlog::hash_to_base64(&report.root),
                report.checkpoints,
                if old.is_some() {
                    ", the given checkpoint is consistent with it"
                } else {
                    ""
                }
            );
            println!("verifier key: {}", verifier_key(&cfg, &key)?);
            Ok(())
        }
        AuditCommand::Proof { index, config } => {
            let cfg = Config::load(&config)?;
            let key = signing_key(&cfg)?;
            let store = Store::open(&cfg.database_url()).await?;
            let proof = proof(&store, &cfg.audit.origin, &key, index).await;
            store.close().await;
            let json = serde_json::to_string_pretty(&proof?)
                .map_err(|e| Error::Internal(e.to_string()))?;
            println!("{json}");
            Ok(())
        }
        AuditCommand::CheckProof { file, verifier_key } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(file.display(), e))?;
            let p: ProofFile = serde_json::from_str(&text).map_err(|e| {
                Error::Verification(format!("{}: not a proof file: {e}", file.display()))
            })?;
            let cp = check_proof(&p, &verifier_key)
                .map_err(|e| Error::Verification(format!("{}: {e}", file.display())))?;
            println!(
                "ok: entry {} is in log {} of {} entries (root {})",
                p.index,
                cp.origin,
                cp.size,
                tlog::hash_to_base64(&cp.root)
            );
            Ok(())
        }
    }
}

fn verifier_key(cfg: &Config, key: &GatewayKey) -> Result<String> {
    Ok(NoteSigner::new(&cfg.audit.origin, key)?.verifier_key())
}

/// Builds the proof of `index` against a checkpoint of the log as it is now.
pub async fn proof(store: &Store, origin: &str, key: &GatewayKey, index: u64) -> Result<ProofFile> {
    let size = store.tree_size().await?;
    if index >= size {
        return Err(Error::NotFound(format!(
            "no audit entry {index}: the log holds {size} entries"
        )));
    }
    let e = store
        .audit_entry(index)
        .await?
        .ok_or_else(|| Error::NotFound(format!("audit entry {index} is missing from the store")))?;
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size,
        root: store.root_at(size).await?,
        extensions: vec![],
    };
    let note = NoteSigner::new(origin, key)?.sign(&checkpoint.to_text())?;
    let hashes = store.inclusion_proof(index, size).await?;
    Ok(ProofFile {
        checkpoint: note,
        index,
        canonical: STANDARD.encode(e.entry.canonical_bytes()),
        entry: e.entry,
        inclusion: hashes.iter().map(tlog::hash_to_base64).collect(),
    })
}

/// Checks a proof file with the verifier key alone; returns the checkpoint it leads to.
pub fn check_proof(p: &ProofFile, verifier_key: &str) -> Result<Checkpoint> {
    let v = NoteVerifier::parse(verifier_key)?;
    let cp = Checkpoint::parse(v.open(&p.checkpoint)?)?;
    let canonical = STANDARD
        .decode(&p.canonical)
        .map_err(|_| Error::Verification("canonical is not base64".into()))?;
    let decoded = NewAuditEntry::from_canonical(&canonical)?;
    if decoded != p.entry {
        return Err(Error::Verification(
            "the readable entry differs from its canonical bytes".into(),
        ));
    }
    let hashes = p
        .inclusion
        .iter()
        .map(|h| tlog::hash_from_base64(h))
        .collect::<paotui_certs::Result<Vec<_>>>()?;
    tlog::verify_inclusion(
        p.index,
        cp.size,
        &tlog::leaf_hash(&canonical),
        &hashes,
        &cp.root,
    )?;
    Ok(cp)
}
