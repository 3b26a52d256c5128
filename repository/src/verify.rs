//! `paotui audit verify`: recompute the whole log from storage and check it.
//!
//! Streams the entries in index order, recomputes every leaf from the entry's canonical
//! bytes and every interior node, and compares them with the stored tree; checks every
//! stored checkpoint's signature and that the recomputed root at its size matches; and,
//! given an auditor's older checkpoint, checks it against the recomputed tree and with a
//! consistency proof served from the stored nodes. Stops at the first bad index.

use std::collections::BTreeMap;

use paotui_certs::tlog::{self, Checkpoint, Frontier, Hash, NodeId, NoteVerifier};

use crate::{Result, Store};

/// Leaves read per query.
const CHUNK: u64 = 8_192;

/// What went wrong, at the first index it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub index: u64,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index {}: {}", self.index, self.reason)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked.
    pub size: u64,
    /// The recomputed root over those entries.
    pub root: Hash,
    /// Stored checkpoints whose signature and root were checked.
    pub checkpoints: usize,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

/// Verifies the log. `old` is an auditor's signed checkpoint note kept from earlier;
/// `progress` is told how many entries are done (of the total it is first given).
pub async fn verify(
    store: &Store,
    verifier: &NoteVerifier,
    old: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report> {
    let total = store.next_index().await?.max(store.tree_size().await?);
    progress(0, total);
    let mut checkpoints: BTreeMap<u64, Vec<(Checkpoint, usize)>> = BTreeMap::new();
    let stored = store.checkpoints().await?;
    let mut report = Report {
        size: 0,
        root: tlog::empty_root(),
        checkpoints: 0,
        problem: None,
    };
    let bad = |index: u64, reason: String| Some(Problem { index, reason });
    for (n, cp) in stored.iter().enumerate() {
        let opened = open_checkpoint(verifier, &cp.note)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                if c.size != cp.tree_size || c.root != cp.root {
                    Err("its note does not match its row".to_owned())
                } else {
                    Ok(c)
                }
            });
        match opened {
            Ok(c) => checkpoints.entry(c.size).or_default().push((c, n)),
            Err(why) => {
                report.problem = bad(
                    cp.tree_size.saturating_sub(1),
                    format!("stored checkpoint for size {} is bad: {why}", cp.tree_size),
                );
                return Ok(report);
            }
        }
    }
    let old = match old {
        None => None,
        Some(note) => {
            let c = open_checkpoint(verifier, note)?;
            checkpoints
                .entry(c.size)
                .or_default()
                .push((c.clone(), usize::MAX));
            Some(c)
        }
    };

    let mut f = Frontier::default();
    let check_roots = |f: &Frontier, cps: &BTreeMap<u64, Vec<(Checkpoint, usize)>>| {
        cps.get(&f.size()).and_then(|list| {
            list.iter().find(|(c, _)| c.root != f.root()).map(|(c, n)| {
                let whose = if *n == usize::MAX {
                    "the given"
                } else {
                    "a stored"
                };
                Problem {
                    index: c.size.saturating_sub(1),
                    reason: format!(
                        "the log's root at size {} differs from {whose} signed checkpoint",
                        c.size
                    ),
                }
            })
        })
    };
    if let Some(p) = check_roots(&f, &checkpoints) {
        report.problem = Some(p);
        return Ok(report);
    }
    let mut at = 0u64;
    while at < total {
        let to = (at + CHUNK).min(total);
        let rows = store.audit_range(at, to).await?;
        // The stored nodes these leaves made, in the order pushing them makes them.
        let mut stored = store.tree_made(at, to).await?.into_iter();
        for r in rows {
            let i = f.size();
            if r.index != i {
                report.problem = bad(i, "entry is missing (deleted or never written)".into());
                return Ok(finish(report, &f));
            }
            let leaf = r.entry.leaf_hash();
            // `tree_made` pairs the i-th leaf's nodes with the ids pushing it makes, so the
            // next stored node is leaf i's hash.
            match stored.next() {
                Some((_, h)) if h == leaf => {}
                Some(_) => {
                    report.problem = bad(
                        i,
                        "entry does not match its leaf hash (changed or moved)".into(),
                    );
                    return Ok(finish(report, &f));
                }
                None => {
                    report.problem = bad(i, "entry has no leaf in the tree".into());
                    return Ok(finish(report, &f));
                }
            }
            let mut wrong: Option<NodeId> = None;
            f.push(leaf, |id, h| {
                if id.level > 0 && wrong.is_none() && stored.next().map(|(_, s)| s) != Some(*h) {
                    wrong = Some(id);
                }
            });
            if let Some(id) = wrong {
                report.problem = bad(
                    id.first_leaf(),
                    format!(
                        "stored tree node (level {}, index {}) is wrong or missing",
                        id.level, id.index
                    ),
                );
                return Ok(finish(report, &f));
            }
            if let Some(p) = check_roots(&f, &checkpoints) {
                report.problem = Some(p);
                return Ok(finish(report, &f));
            }
        }
        if f.size() < to {
            report.problem = bad(
                f.size(),
                "entry is missing (deleted or never written)".into(),
            );
            return Ok(finish(report, &f));
        }
        at = to;
        progress(at, total);
    }
    report = finish(report, &f);
    report.checkpoints = stored.len();
    if let Some((&size, _)) = checkpoints.range(f.size() + 1..).next() {
        report.problem = bad(
            f.size(),
            format!(
                "the log ends at {} but a signed checkpoint covers {size} entries (truncated)",
                f.size()
            ),
        );
        return Ok(report);
    }
    if let Some(c) = old {
        // The root check above already compared it; a consistency proof from the stored
        // nodes must verify too, as a third party would check it.
        let proof = store.consistency_proof(c.size, f.size()).await;
        let ok = proof.and_then(|p| {
            Ok(tlog::verify_consistency(
                c.size,
                f.size(),
                &p,
                &c.root,
                &f.root(),
            )?)
        });
        if let Err(e) = ok {
            report.problem = bad(
                c.size.saturating_sub(1),
                format!("the given checkpoint is not consistent with the log: {e}"),
            );
        }
    }
    Ok(report)
}

/// Opens a signed checkpoint of this log: the signature verifies with the log's key and
/// the origin line names the log.
fn open_checkpoint(verifier: &NoteVerifier, note: &str) -> paotui_certs::Result<Checkpoint> {
    let c = Checkpoint::parse(verifier.open(note)?)?;
    if c.origin != verifier.name {
        return Err(paotui_certs::Error::Signature(format!(
            "checkpoint origin {:?} is not this log's {:?}",
            c.origin, verifier.name
        )));
    }
    Ok(c)
}

fn finish(mut report: Report, f: &Frontier) -> Report {
    report.size = f.size();
    report.root = f.root();
    report
}
