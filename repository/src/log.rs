//! The audit log's append path: one sequencer task group-commits concurrent appends.
//!
//! Every request hands its entry to the sequencer and waits. The sequencer takes what is
//! queued (up to `max_batch`, waiting at most `max_wait` for more), assigns dense indices,
//! extends the Merkle tree, signs a checkpoint for the new size and commits entries, tree
//! nodes and (at most every `checkpoint_interval`) the checkpoint in one transaction —
//! one fsync for the whole batch. Only then does it wake the waiters with their indices.
//! On SQLite the sequencer runs on a thread of its own and commits there (see [`start`]),
//! and the fsync is not part of the commit: a second thread syncs the WAL file for every
//! batch committed since its last sync and only then wakes their waiters, while the
//! sequencer commits the next batch (see [`sync_thread`]).
//! If the commit fails, every waiter of the batch gets an error and the tree in memory is
//! left as it was, so no answer leaves for an entry that is not durable.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paotui_certs::GatewayKey;
use paotui_certs::tlog::{self, Checkpoint, Frontier, Hash, NodeId, NoteSigner};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::audit::{AuditEntry, NewAuditEntry};
use crate::cache::TreeCache;
use crate::store::Backend;
use crate::tree::{Prepared, ProofParts, StoredCheckpoint};
use crate::{Error, Result, Store};

/// Most leaves whose tree nodes (about twice as many) one preload query reads. One query
/// for all ~260k nodes of the default cache's start-up preload held them as rows at once,
/// and the allocator kept most of that resident after it was freed: a gateway with 1,000
/// connections peaked 9–16 MB higher (BENCHMARKS.md, "2026-12-06 (morning), memory
/// against the request rate").
const PRELOAD_LEAVES: u64 = 4096;

/// How the sequencer batches and checkpoints.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The log's origin line, also the checkpoint signing key's name.
    pub origin: String,
    /// Most entries committed in one transaction.
    pub max_batch: usize,
    /// How long the sequencer waits for more entries once it has one. Zero: commit what is
    /// queued at once (batches still form while the previous commit runs).
    pub max_wait: Duration,
    /// A signed checkpoint is stored with the first batch after this much time.
    pub checkpoint_interval: Duration,
    /// Bytes of tree nodes kept in memory for proofs (see [`crate::cache`]).
    pub cache_bytes: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            origin: "paotui.local/audit".into(),
            max_batch: 4096,
            max_wait: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(1),
            // Holds the whole tree of the newest ~250k entries: the proofs clients ask
            // for soon after their answer. A busy gateway fills it within minutes, and
            // 64 MiB put one holding 1,000 connections over its 150 MB memory budget
            // (benches/BENCHMARKS.md).
            cache_bytes: 16 << 20,
        }
    }
}

/// A checkpoint and its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

struct Job {
    entry: Prepared,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
    jobs: mpsc::Sender<Job>,
    latest: watch::Receiver<Arc<SignedCheckpoint>>,
    verifier_key: String,
    cache: Arc<TreeCache>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("size", &self.latest.borrow().checkpoint.size)
            .finish()
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn sign(key: &GatewayKey, origin: &str, size: u64, root: Hash) -> Result<SignedCheckpoint> {
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        extensions: vec![],
    };
    let note = NoteSigner::new(origin, key)?.sign(&checkpoint.to_text())?;
    Ok(SignedCheckpoint { checkpoint, note })
}

/// Builds the tree of entries that were stored before the tree existed (logs written
/// by an earlier version), so that every entry is covered.
async fn backfill(store: &Store) -> Result<u64> {
    let entries = store.next_index().await?;
    let leaves = store.tree_size().await?;
    if leaves > entries {
        return Err(Error::Invalid(format!(
            "audit log damaged: the tree holds {leaves} leaves but the log ends at {entries}; \
             run `paotui audit verify`"
        )));
    }
    if leaves < entries {
        tracing::info!(from = leaves, to = entries, "building the audit tree");
        let mut f = store.frontier(leaves).await?;
        let mut at = leaves;
        while at < entries {
            let to = (at + 10_000).min(entries);
            let rows = store.audit_range(at, to).await?;
            let mut nodes = Vec::new();
            for r in &rows {
                if r.index != f.size() {
                    return Err(Error::Invalid(format!(
                        "audit log damaged: entry {} is missing; run `paotui audit verify`",
                        f.size()
                    )));
                }
                f.push(r.entry.leaf_hash(), |id, h| nodes.push((id, *h)));
            }
            store.write_nodes(at, rows.len(), &nodes).await?;
            at = to;
        }
    }
    Ok(entries)
}

/// Starts the sequencer. On SQLite it gets a thread (and a small runtime) of its own and
/// commits on it, on the audit writer connection, with no hand-off to the blocking pool.
/// A batch's commit cannot start before the sequencer has run: at 1,024 writers the
/// writer sat idle 0.7–1.1 ms between commits with the sequencer on the shared runtime,
/// and 0.4–0.9 ms on its own thread while it still handed off (benches/BENCHMARKS.md).
/// On PostgreSQL its commits are round trips on the shared runtime's connections, so it
/// stays there.
fn start(store: &Store, run: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    if !matches!(store.backend, Backend::Sqlite(..)) {
        tokio::spawn(run);
        return Ok(());
    }
    let unavailable =
        |e: std::io::Error| Error::Unavailable(format!("cannot start the audit sequencer: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .thread_name("paotui-audit-blocking")
        .build()
        .map_err(unavailable)?;
    std::thread::Builder::new()
        .name("paotui-audit".into())
        .spawn(move || rt.block_on(run))
        .map_err(unavailable)?;
    Ok(())
}

impl AuditLog {
    /// Opens the log on `store` and starts its sequencer.
    pub async fn open(store: Store, key: Arc<GatewayKey>, opts: AuditOptions) -> Result<AuditLog> {
        let sync = match &store.backend {
            Backend::Sqlite(_, local) => Some(wal_file_sync(local.writer.wal_path().to_owned())),
            Backend::Postgres(_) => None,
        };
        AuditLog::open_with(store, key, opts, sync).await
    }

    /// [`AuditLog::open`], with the WAL sync that makes SQLite batches durable. `None`
    /// only on PostgreSQL, whose commit does: the SQLite audit writer commits without a
    /// sync ([`crate::store::AUDIT_WRITER_SYNCHRONOUS`]).
    pub(crate) async fn open_with(
        store: Store,
        key: Arc<GatewayKey>,
        opts: AuditOptions,
        sync: Option<WalSync>,
    ) -> Result<AuditLog> {
        // Also refuses a bad origin before anything else is done.
        let verifier_key = NoteSigner::new(&opts.origin, &key)?.verifier_key();
        let size = backfill(&store).await?;
        let added = store.catch_up_subject_blocks(size).await?;
        if added > 0 {
            tracing::info!(blocks = added, "subject lookup caught up with the log");
        }
        let frontier = store.frontier(size).await?;
        let first = sign(&key, &opts.origin, size, frontier.root())?;
        let (tx, rx) = mpsc::channel(opts.max_batch.max(1) * 4);
        let (latest_tx, latest) = watch::channel(Arc::new(first));
        let answers = match sync {
            None => Answers::AtCommit(latest_tx),
            Some(sync) => {
                let (to, from) = std::sync::mpsc::channel();
                let failed = Arc::new(std::sync::OnceLock::new());
                std::thread::Builder::new()
                    .name("paotui-audit-sync".into())
                    .spawn(sync_thread(sync, from, latest_tx, failed.clone()))
                    .map_err(|e| {
                        Error::Unavailable(format!("cannot start the audit WAL sync: {e}"))
                    })?;
                Answers::AfterSync { to, failed }
            }
        };
        let cache = Arc::new(TreeCache::new(opts.cache_bytes));
        let seq = Sequencer {
            cache: cache.clone(),
            store: store.clone(),
            key,
            opts,
            frontier,
            stale: false,
            last_stored: None,
            answers,
        };
        start(
            &store,
            seq.run(rx)
                .instrument(tracing::info_span!("audit.sequencer")),
        )?;
        let log = AuditLog {
            store,
            jobs: tx,
            latest,
            verifier_key,
            cache,
        };
        // After a restart, proofs of the newest entries are the ones auditors ask for.
        let warm = log.clone();
        tokio::spawn(
            async move {
                let t = Instant::now();
                match warm.preload(warm.cache.preload_leaves()).await {
                    Ok(n) => {
                        tracing::info!(nodes = n, took = ?t.elapsed(), "audit tree cache warmed")
                    }
                    Err(e) => tracing::warn!(error = %e, "audit tree cache not warmed"),
                }
            }
            .instrument(tracing::info_span!("audit.preload")),
        );
        Ok(log)
    }

    /// Reads the tree nodes over the newest `leaves` entries into the node cache (the
    /// nodes of at most [`PRELOAD_LEAVES`] leaves per query), so that their proofs need no
    /// store read. Returns how many nodes were read.
    pub async fn preload(&self, leaves: u64) -> Result<usize> {
        let size = self.checkpoint().checkpoint.size;
        let mut at = size.saturating_sub(leaves);
        let mut total = 0;
        while at < size {
            let end = size.min(at.saturating_add(PRELOAD_LEAVES));
            let nodes = self.store.tree_made(at, end).await?;
            total += nodes.len();
            self.cache.insert(&nodes);
            at = end;
        }
        Ok(total)
    }

    /// Appends an entry; returns its index once its batch is committed.
    pub async fn append(&self, entry: NewAuditEntry) -> Result<u64> {
        let entry = Prepared::new(entry)?;
        let (done, rx) = oneshot::channel();
        self.jobs
            .send(Job { entry, done })
            .await
            .map_err(|_| Error::Unavailable("the audit sequencer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the audit sequencer has stopped".into()))?
            .map_err(Error::Unavailable)
    }

    /// The latest signed checkpoint (covers every entry whose append has returned).
    pub fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        self.latest.borrow().clone()
    }

    /// The signed-note verifier key of the checkpoints.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Checks a requested tree size against the log (other nodes may have appended, so
    /// the store is asked when the size is beyond this node's checkpoint).
    async fn check_size(&self, size: u64) -> Result<()> {
        if size <= self.checkpoint().checkpoint.size {
            return Ok(());
        }
        let stored = self.store.tree_size().await?;
        if size > stored {
            return Err(Error::NotFound(format!(
                "tree size {size} is beyond the log ({stored} entries)"
            )));
        }
        Ok(())
    }

    /// The inclusion proof of `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size).await?;
        if index >= size {
            return Err(Error::NotFound(format!(
                "entry {index} is not in a tree of {size} entries"
            )));
        }
        self.proof(&tlog::inclusion_ranges(index, size)).await
    }

    /// The consistency proof from `from` to `to` entries.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        if from > to {
            return Err(Error::Invalid(format!(
                "from ({from}) must not exceed to ({to})"
            )));
        }
        self.check_size(to).await?;
        self.proof(&tlog::consistency_ranges(from, to)).await
    }

    /// Resolves proof ranges from the node cache, reading what it lacks in one query.
    async fn proof(&self, ranges: &[(u64, u64)]) -> Result<Vec<Hash>> {
        let parts = ProofParts::new(ranges);
        let mut got = self.cache.lookup(&parts.ids);
        let missing: Vec<NodeId> = parts
            .ids
            .iter()
            .zip(&got)
            .filter_map(|(id, h)| h.is_none().then_some(*id))
            .collect();
        if !missing.is_empty() {
            // Errors if the store lacks one: the tree is damaged.
            let read = self.store.tree_nodes(&missing).await?;
            let nodes: Vec<(NodeId, Hash)> = missing.into_iter().zip(read).collect();
            self.cache.insert(&nodes);
            let mut read = nodes.into_iter().map(|(_, h)| h);
            for slot in got.iter_mut().filter(|h| h.is_none()) {
                *slot = read.next();
            }
        }
        let hashes: Vec<Hash> = got
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Invalid("audit tree node missing from a proof".into()))?;
        parts.fold(&hashes)
    }

    /// One stored entry.
    pub async fn entry(&self, index: u64) -> Result<Option<AuditEntry>> {
        self.store.audit_entry(index).await
    }
}

struct Sequencer {
    store: Store,
    cache: Arc<TreeCache>,
    key: Arc<GatewayKey>,
    opts: AuditOptions,
    frontier: Frontier,
    /// A commit failed in a way that may or may not have reached the disk: reload the
    /// tree's edge from the store before the next batch.
    stale: bool,
    last_stored: Option<Instant>,
    answers: Answers,
}

/// A committed batch, waiting for its answers.
struct Committed {
    first: u64,
    signed: SignedCheckpoint,
    waiters: Vec<oneshot::Sender<Result<u64, String>>>,
}

impl Committed {
    /// Publishes the batch's checkpoint, then gives each waiter its index, so that the
    /// latest checkpoint covers every entry whose append has returned.
    fn answer(self, latest: &watch::Sender<Arc<SignedCheckpoint>>) {
        latest.send_replace(Arc::new(self.signed));
        for (i, done) in self.waiters.into_iter().enumerate() {
            // A waiter that went away (client hung up) needs no answer.
            let _ = done.send(Ok(self.first + i as u64));
        }
    }
}

fn answer_all(waiters: Vec<oneshot::Sender<Result<u64, String>>>, why: &str) {
    for done in waiters {
        let _ = done.send(Err(why.to_owned()));
    }
}

/// How a committed batch is answered.
enum Answers {
    /// At once: the commit itself made the batch durable (PostgreSQL).
    AtCommit(watch::Sender<Arc<SignedCheckpoint>>),
    /// After the WAL sync thread has made it durable (SQLite's audit writer).
    AfterSync {
        to: std::sync::mpsc::Sender<Committed>,
        failed: Arc<std::sync::OnceLock<String>>,
    },
}

impl Answers {
    fn committed(&self, batch: Committed) {
        match self {
            Answers::AtCommit(latest) => batch.answer(latest),
            Answers::AfterSync { to, .. } => {
                if let Err(std::sync::mpsc::SendError(batch)) = to.send(batch) {
                    answer_all(batch.waiters, "the audit log's WAL sync has stopped");
                }
            }
        }
    }

    /// Why no batch can be answered any more, if so.
    fn failed(&self) -> Option<String> {
        match self {
            Answers::AtCommit(_) => None,
            Answers::AfterSync { failed, .. } => failed.get().cloned(),
        }
    }
}

/// Makes committed audit batches durable: syncs the SQLite WAL file (a function, so a
/// test can make it fail).
pub(crate) type WalSync = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// The WAL sync of the file at `path`, opened at the first sync (SQLite creates it).
/// `fdatasync` on any descriptor of the file flushes every write SQLite made to it.
fn wal_file_sync(path: std::path::PathBuf) -> WalSync {
    let mut file: Option<std::fs::File> = None;
    Box::new(move || {
        let f = match &file {
            Some(f) => f,
            None => file.insert(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)?,
            ),
        };
        f.sync_data()
    })
}

/// The WAL sync thread: takes every batch committed since its last sync, syncs once,
/// then answers them in order. The writer meanwhile inserts the next batch, so the sync
/// no longer sits between two commits. A failed sync may have lost the batches' frames
/// (Linux can drop the pages of a failed write-back, and a later sync then succeeds
/// without them), so like PostgreSQL after a failed fsync the log stops: those batches
/// and every later append fail with 503 until the gateway is restarted, and the WAL is
/// recovered from the disk.
fn sync_thread(
    mut sync: WalSync,
    from: std::sync::mpsc::Receiver<Committed>,
    latest: watch::Sender<Arc<SignedCheckpoint>>,
    failed: Arc<std::sync::OnceLock<String>>,
) -> impl FnOnce() + Send + 'static {
    move || {
        while let Ok(first) = from.recv() {
            let mut group = vec![first];
            group.extend(from.try_iter());
            let why = match failed.get() {
                Some(why) => Some(why.clone()),
                None => sync().err().map(|e| {
                    tracing::error!(error = %e, "audit WAL sync failed; appends stop");
                    failed
                        .get_or_init(|| {
                            format!(
                                "the audit log's WAL could not be synced ({e}); \
                                 appends stop until the gateway is restarted"
                            )
                        })
                        .clone()
                }),
            };
            for batch in group {
                match &why {
                    None => batch.answer(&latest),
                    Some(why) => answer_all(batch.waiters, why),
                }
            }
        }
    }
}

impl Sequencer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let max = self.opts.max_batch.max(1);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if !self.opts.max_wait.is_zero() && batch.len() < max {
                let deadline = tokio::time::Instant::now() + self.opts.max_wait;
                while batch.len() < max {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => batch.push(j),
                        _ => break,
                    }
                }
            }
            let n = batch.len();
            let (entries, waiters): (Vec<Prepared>, Vec<_>) =
                batch.into_iter().map(|j| (j.entry, j.done)).unzip();
            let result = match self.answers.failed() {
                Some(why) => Err(Error::Unavailable(why)),
                None => {
                    self.commit(&entries)
                        .instrument(tracing::debug_span!("audit.commit", entries = n))
                        .await
                }
            };
            match result {
                Ok((first, signed)) => self.answers.committed(Committed {
                    first,
                    signed,
                    waiters,
                }),
                Err(e) => {
                    tracing::error!(error = %e, entries = n, "audit batch not committed");
                    answer_all(waiters, &e.to_string());
                }
            }
        }
    }

    /// Commits `entries`; returns the first one's index and the checkpoint of the tree
    /// that ends with them.
    async fn commit(&mut self, entries: &[Prepared]) -> Result<(u64, SignedCheckpoint)> {
        // Two tries: the second after reloading the edge when another node appended.
        for _ in 0..2 {
            if self.stale {
                let size = self.store.next_index().await?;
                self.frontier = self.store.frontier(size).await?;
                self.stale = false;
            }
            let first = self.frontier.size();
            let mut f = self.frontier.clone();
            let mut nodes: Vec<(NodeId, Hash)> = Vec::with_capacity(entries.len() * 2 + 64);
            for e in entries.iter() {
                f.push(e.leaf, |id, h| nodes.push((id, *h)));
            }
            let signed = sign(&self.key, &self.opts.origin, f.size(), f.root())?;
            let due = self
                .last_stored
                .is_none_or(|t| t.elapsed() >= self.opts.checkpoint_interval);
            let stored = due.then(|| StoredCheckpoint {
                tree_size: f.size(),
                at_us: now_us(),
                root: signed.checkpoint.root,
                note: signed.note.clone(),
            });
            match self
                .store
                .commit_batch(first, entries, &nodes, stored.as_ref())
                .await
            {
                Ok(()) => {
                    self.cache.insert(&nodes);
                    self.frontier = f;
                    if due {
                        self.last_stored = Some(Instant::now());
                    }
                    return Ok((first, signed));
                }
                Err(Error::Conflict(why)) => {
                    tracing::info!(%why, "audit log moved on elsewhere; reloading its edge");
                    self.stale = true;
                }
                Err(e) => {
                    self.stale = true;
                    return Err(e);
                }
            }
        }
        Err(Error::Conflict(
            "the audit log kept moving under this node".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> NewAuditEntry {
        crate::audit::test_entry(&format!("req-{i}"), Some(format!("{i:064x}")))
    }

    /// A log on a SQLite file whose WAL sync is `sync`.
    async fn log_with(sync: WalSync) -> (tempfile::TempDir, Store, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let (key, _) = GatewayKey::generate().unwrap();
        let log = AuditLog::open_with(
            store.clone(),
            Arc::new(key),
            AuditOptions::default(),
            Some(sync),
        )
        .await
        .unwrap();
        (dir, store, log)
    }

    /// On SQLite a batch is committed before its WAL is synced, but nobody hears of it
    /// (no answer, no checkpoint) until the sync is done.
    #[tokio::test]
    async fn an_append_returns_only_after_the_wal_sync() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let sync: WalSync = Box::new(move || gate.recv().map_err(std::io::Error::other));
        let (_dir, store, log) = log_with(sync).await;
        let l = log.clone();
        let append = tokio::spawn(async move { l.append(entry(1)).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.audit_len().await.unwrap() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.audit_len().await.unwrap(), 1, "committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!append.is_finished(), "answered before the WAL sync");
        assert_eq!(log.checkpoint().checkpoint.size, 0);
        release.send(()).unwrap();
        assert_eq!(append.await.unwrap().unwrap(), 0);
        assert_eq!(log.checkpoint().checkpoint.size, 1);
        store.close().await;
    }

    /// A failed WAL sync fails its batch, and every later append fails without being
    /// committed: the frames of the failed sync may be gone.
    #[tokio::test]
    async fn a_failed_wal_sync_stops_the_log() {
        let mut syncs = 0;
        let sync: WalSync = Box::new(move || {
            syncs += 1;
            match syncs {
                1 => Ok(()),
                _ => Err(std::io::Error::other("disk on fire")),
            }
        });
        let (_dir, store, log) = log_with(sync).await;
        assert_eq!(log.append(entry(1)).await.unwrap(), 0);
        let e = log.append(entry(2)).await.unwrap_err().to_string();
        assert!(
            e.contains("could not be synced (disk on fire); appends stop until"),
            "{e}"
        );
        assert_eq!(store.audit_len().await.unwrap(), 2);
        let e = log.append(entry(3)).await.unwrap_err().to_string();
        assert!(e.contains("could not be synced"), "{e}");
        assert_eq!(store.audit_len().await.unwrap(), 2, "not committed");
        assert_eq!(log.checkpoint().checkpoint.size, 1);
        store.close().await;
    }
}
