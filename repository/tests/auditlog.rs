//! The tamper-evident log on both backends: proofs from the stored tree, checkpoints,
//! group-commit failure, backfill, and `verify` naming the index of every kind of
//! tampering.

use std::sync::Arc;
use std::time::Duration;

use paotui_certs::GatewayKey;
use paotui_certs::tlog::{self, Checkpoint, NoteVerifier};
use paotui_repository::verify::verify;
use paotui_repository::{AuditLog, AuditOptions, NewAuditEntry, Store};
use proptest::prelude::*;
use sqlx::Connection;

use crate::conformance::{PgDb, entry};

const ORIGIN: &str = "paotui.test/audit";

fn opts() -> AuditOptions {
    AuditOptions {
        origin: ORIGIN.into(),
        ..AuditOptions::default()
    }
}

/// A store of one backend, with a way to run raw SQL on it as an attacker would.
struct Backend {
    store: Store,
    url: String,
    pg: Option<PgDb>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        Backend {
            store: Store::open(&url).await.unwrap(),
            url,
            pg: None,
            _dir: Some(dir),
        }
    }
    /// A SQLite store where any batch holding the entry with request id "boom" fails to
    /// commit.
    async fn sqlite_with_boom() -> Backend {
        let b = Backend::sqlite().await;
        b.tamper(&["CREATE TRIGGER boom BEFORE INSERT ON audit_entries \
                    WHEN NEW.request_id = 'boom' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"])
            .await;
        b
    }
    async fn postgres() -> Option<Backend> {
        let (pg, url) = PgDb::create().await?;
        Some(Backend {
            store: Store::open(&url).await.unwrap(),
            url,
            pg: Some(pg),
            _dir: None,
        })
    }
    async fn all() -> Vec<Backend> {
        let mut v = vec![Backend::sqlite().await];
        v.extend(Backend::postgres().await);
        v
    }
    /// Runs `sqls` on the store behind the log's back. SQLite's `||` makes text of blobs,
    /// so `AS BYTEA` (PostgreSQL's blob type) reads `AS BLOB` there.
    async fn tamper(&self, sqls: &[&str]) {
        if self.url.starts_with("sqlite://") {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            for s in sqls {
                let s = s.replace("AS BYTEA", "AS BLOB");
                sqlx::query(&s).execute(&mut c).await.unwrap();
            }
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            for s in sqls {
                sqlx::query(s).execute(&mut c).await.unwrap();
            }
        }
    }
    async fn done(self) {
        match self.pg {
            Some(pg) => pg.drop_db(self.store).await,
            None => self.store.close().await,
        }
    }
}

async fn filled(b: &Backend, n: usize) -> (AuditLog, Arc<GatewayKey>) {
    let (key, _) = GatewayKey::generate().unwrap();
    let key = Arc::new(key);
    let log = AuditLog::open(
        b.store.clone(),
        key.clone(),
        AuditOptions {
            // Store a checkpoint with every batch, so truncation is also caught by them.
            checkpoint_interval: Duration::ZERO,
            ..opts()
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let l = log.clone();
        tasks.push(tokio::spawn(
            async move { l.append(entry(i)).await.unwrap() },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (log, key)
}

/// The leaf hashes of the log's first `n` entries, as stored.
async fn leaf_hashes(store: &Store, n: u64) -> Vec<tlog::Hash> {
    store
        .audit_range(0, n)
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.leaf_hash())
        .collect()
}

async fn check(b: &Backend, key: &GatewayKey) -> paotui_repository::verify::Report {
    let v = NoteVerifier::for_key(ORIGIN, key).unwrap();
    verify(&b.store, &v, None, &mut |_, _| {}).await.unwrap()
}

#[tokio::test]
async fn proofs_from_the_stored_tree_verify_on_both_backends() {
    for b in Backend::all().await {
        let (log, key) = filled(&b, 70).await;
        let leaves = leaf_hashes(&b.store, 70).await;
        // The signed checkpoint opens with the published verifier key and names the root.
        let cp = log.checkpoint();
        let v = NoteVerifier::parse(log.verifier_key()).unwrap();
        let body = Checkpoint::parse(v.open(&cp.note).unwrap()).unwrap();
        assert_eq!(body.size, 70);
        assert_eq!(body.root, tlog::root_of(&leaves));
        for size in [1u64, 2, 5, 8, 33, 64, 70] {
            let root = b.store.root_at(size).await.unwrap();
            assert_eq!(
                root,
                tlog::root_of(&leaves[..size as usize]),
                "root at {size}"
            );
            for index in [0, size / 2, size - 1] {
                let p = log.inclusion_proof(index, size).await.unwrap();
                tlog::verify_inclusion(index, size, &leaves[index as usize], &p, &root).unwrap();
            }
            for from in [0, 1, size / 3, size] {
                let p = log.consistency_proof(from, size).await.unwrap();
                let r1 = tlog::root_of(&leaves[..from as usize]);
                tlog::verify_consistency(from, size, &p, &r1, &root).unwrap();
            }
        }
        // Out of range asks are refused, not answered with something.
        assert!(log.inclusion_proof(70, 70).await.is_err());
        assert!(log.inclusion_proof(0, 71).await.is_err());
        assert!(log.consistency_proof(5, 4).await.is_err());
        let r = check(&b, &key).await;
        assert_eq!((r.size, r.problem), (70, None));
        assert!(r.checkpoints >= 1);
        b.done().await;
    }
}

/// The start-up preload reads each tree level a chunk of rows at a time (8,192 nodes per
/// query): over a log whose bottom level spans two chunks it reads every node once, and
/// with its store closed the log answers every proof from what it read (the log's own
/// start-up preload runs the same code; the count is this call's own).
#[tokio::test]
async fn a_preload_reads_every_node_once_across_its_chunks() {
    for b in Backend::all().await {
        let n = 9000u64;
        let (_, key) = filled(&b, n as usize).await;
        let leaves = leaf_hashes(&b.store, n).await;
        let own = Store::open(&b.url).await.unwrap();
        let warm = AuditLog::open(
            own.clone(),
            key,
            AuditOptions {
                cache_bytes: 4 << 20,
                ..opts()
            },
        )
        .await
        .unwrap();
        let read = warm.preload(n).await.unwrap() as u64;
        // Level l holds n >> l whole subtrees.
        let stored: u64 = (0..64).map(|l| n >> l).sum();
        assert_eq!(read, stored);
        own.close().await;
        let root = tlog::root_of(&leaves);
        for index in (0..n).step_by(331).chain([4095, 4096, 8191, 8192, n - 1]) {
            let p = warm.inclusion_proof(index, n).await.unwrap();
            tlog::verify_inclusion(index, n, &leaves[index as usize], &p, &root).unwrap();
        }
        b.done().await;
    }
}

#[tokio::test]
async fn proofs_come_from_the_node_cache_or_read_what_it_misses_and_match_the_store() {
    for b in Backend::all().await {
        // The writing log has its own pool, so it can be cut off from the store below.
        let own = Store::open(&b.url).await.unwrap();
        let (key, _) = GatewayKey::generate().unwrap();
        let key = Arc::new(key);
        let writer = AuditLog::open(own.clone(), key.clone(), opts())
            .await
            .unwrap();
        let n = 3000u64; // 12 bottom tiles and one of the next tile-level
        let mut tasks = Vec::new();
        for i in 0..n as usize {
            let l = writer.clone();
            tasks.push(tokio::spawn(
                async move { l.append(entry(i)).await.unwrap() },
            ));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // A second log on the same store with the smallest cache (8 tiles): its proofs
        // read missed nodes from the store, and its tiles are evicted again.
        let cold = AuditLog::open(
            b.store.clone(),
            key.clone(),
            AuditOptions {
                cache_bytes: 0,
                ..opts()
            },
        )
        .await
        .unwrap();
        let leaves = leaf_hashes(&b.store, n).await;
        let cases = [
            (0u64, n),
            (255, 256),
            (256, 257),
            (1500, n),
            (2999, n),
            (700, 2048),
        ];
        for round in 0..2 {
            for &(index, size) in cases.iter().chain(&[(100 * round, 2500)]) {
                let root = tlog::root_of(&leaves[..size as usize]);
                let stored = b.store.inclusion_proof(index, size).await.unwrap();
                assert_eq!(writer.inclusion_proof(index, size).await.unwrap(), stored);
                assert_eq!(cold.inclusion_proof(index, size).await.unwrap(), stored);
                tlog::verify_inclusion(index, size, &leaves[index as usize], &stored, &root)
                    .unwrap();
                let from = index.min(size);
                let stored = b.store.consistency_proof(from, size).await.unwrap();
                assert_eq!(writer.consistency_proof(from, size).await.unwrap(), stored);
                assert_eq!(cold.consistency_proof(from, size).await.unwrap(), stored);
            }
        }
        // Cut the writer off its store: every proof of what it committed still comes back
        // from memory, which is the point of the cache.
        own.close().await;
        assert!(own.tree_size().await.is_err());
        for index in (0..n).step_by(97) {
            let p = writer.inclusion_proof(index, n).await.unwrap();
            tlog::verify_inclusion(
                index,
                n,
                &leaves[index as usize],
                &p,
                &tlog::root_of(&leaves),
            )
            .unwrap();
        }
        b.done().await;
    }
}

#[tokio::test]
async fn a_failed_commit_fails_every_waiter_of_its_batch_and_stores_nothing() {
    let b = Backend::sqlite_with_boom().await;
    let (key, _) = GatewayKey::generate().unwrap();
    let log = AuditLog::open(
        b.store.clone(),
        Arc::new(key),
        AuditOptions {
            max_batch: 8,
            max_wait: Duration::from_millis(200),
            ..opts()
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let l = log.clone();
        let mut e = entry(i);
        if i == 5 {
            e.request_id = "boom".into();
        }
        tasks.push(tokio::spawn(async move { l.append(e).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            r.is_err(),
            "every waiter of the failed batch gets an error: {r:?}"
        );
    }
    assert_eq!(b.store.audit_len().await.unwrap(), 0);
    assert_eq!(b.store.tree_size().await.unwrap(), 0);
    // The log carries on with dense indices.
    assert_eq!(log.append(entry(1)).await.unwrap(), 0);
    assert_eq!(log.checkpoint().checkpoint.size, 1);
    b.done().await;
}

/// A log on [`Backend::sqlite_with_boom`], and its key.
async fn boom_log() -> (Backend, Arc<GatewayKey>, AuditLog) {
    let b = Backend::sqlite_with_boom().await;
    let (key, _) = GatewayKey::generate().unwrap();
    let key = Arc::new(key);
    let log = AuditLog::open(b.store.clone(), key.clone(), opts())
        .await
        .unwrap();
    (b, key, log)
}

/// Appends that arrive while a batch is stuck in its commit (here: waiting for SQLite's
/// write lock) queue for the next batch. When the stuck batch fails, they take its indices
/// and the tree stays whole.
#[tokio::test]
async fn appends_queued_behind_a_failed_batch_take_its_place() {
    let (b, key, log) = boom_log().await;
    // Hold SQLite's write lock, so the first batch waits inside its commit.
    let mut lock = sqlx::SqliteConnection::connect(&b.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut boom = entry(0);
    boom.request_id = "boom".into();
    let l = log.clone();
    let failed = tokio::spawn(async move { l.append(boom).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later: Vec<_> = (1..=5)
        .map(|i| {
            let l = log.clone();
            tokio::spawn(async move { l.append(entry(i)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert!(failed.await.unwrap().is_err());
    let mut got = Vec::new();
    for t in later {
        got.push(t.await.unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..5).collect::<Vec<_>>());
    assert_eq!(log.checkpoint().checkpoint.size, 5);
    let report = check(&b, &key).await;
    assert_eq!(report.problem, None);
    assert_eq!(report.size, 5);
    b.done().await;
}

/// Appends `from..to` (50 subjects over and over) with 64 concurrent writers.
async fn append_many(log: &AuditLog, from: usize, to: usize) {
    let tasks: Vec<_> = (0..64usize)
        .map(|w| {
            let l = log.clone();
            tokio::spawn(async move {
                for i in (from + w..to).step_by(64) {
                    l.append(entry(i % 50)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The SQLite writer writes a completed subject block from the subjects it kept in memory
/// when it saw the whole block, and from the log otherwise (here: block 0, half written
/// before the store was reopened). Either way the lookup table holds exactly the log's
/// subjects, and a batch that failed leaves nothing of its own behind.
#[tokio::test]
async fn subject_blocks_hold_the_logs_subjects_after_a_reopen_and_a_failed_batch() {
    let (b, key, log) = boom_log().await;
    append_many(&log, 0, 10_000).await;
    drop(log);
    b.store.close().await;
    let store = Store::open(&b.url).await.unwrap();
    let log = AuditLog::open(store.clone(), key.clone(), opts())
        .await
        .unwrap();
    append_many(&log, 10_000, 20_000).await;
    // Its own subject, so a row of it in the lookup table would show.
    let mut boom = entry(777);
    boom.request_id = "boom".into();
    assert!(log.append(boom).await.is_err());
    append_many(&log, 20_000, 2 * 16_384 + 100).await;
    let mut c = sqlx::SqliteConnection::connect(&b.url).await.unwrap();
    let blocks: i64 = sqlx::query_scalar("SELECT blocks FROM audit_subject_blocks")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(blocks, 2);
    let want = "SELECT idx / 16384, subject_hmac, idx FROM audit_entries \
                WHERE subject_hmac IS NOT NULL AND idx < 32768";
    let have = "SELECT block, subject_hmac, idx FROM audit_subjects";
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_subjects")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, 2 * 16_384);
    let missing = format!("SELECT COUNT(*) FROM ({want} EXCEPT {have})");
    let extra = format!("SELECT COUNT(*) FROM ({have} EXCEPT {want})");
    for sql in [missing, extra] {
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap();
        assert_eq!(n, 0, "{sql}");
    }
    c.close().await.unwrap();
    store.close().await;
    b.done().await;
}

/// On SQLite the log's digests are stored as their bytes (migration 0011) and read back
/// as the hex they were appended as, and text that is not lowercase hex stays text, so
/// every entry reads, hashes and is found by subject as appended. Rows written before the
/// migration (hex text) read the same, and the migration turns them into bytes.
#[tokio::test]
async fn sqlite_keeps_digests_as_bytes_and_reads_them_as_appended() {
    let b = Backend::sqlite().await;
    let (log, key) = filled(&b, 40).await;
    let mut odd = entry(40);
    odd.subject_hmac = Some("Not-Hex".into());
    odd.body_sha256 = Some("ABCD".into());
    assert_eq!(log.append(odd.clone()).await.unwrap(), 40);
    let mut c = sqlx::SqliteConnection::connect(&b.url).await.unwrap();
    async fn read_back(store: &Store, odd: &NewAuditEntry) {
        let all = store.audit_range(0, 41).await.unwrap();
        assert_eq!(all.len(), 41);
        for e in &all[..40] {
            let i: usize = e.entry.request_id["req-".len()..].parse().unwrap();
            assert_eq!(e.entry, entry(i));
        }
        assert_eq!(&all[40].entry, odd);
    }
    /// A subject is looked up as stored.
    async fn look_up(store: &Store) {
        let seven = store
            .audit_of_subject(&format!("{:064x}", 7), None, 10)
            .await
            .unwrap();
        assert_eq!(seven.len(), 1);
        assert_eq!(seven[0].entry, entry(7));
        let found = store.audit_of_subject("Not-Hex", None, 10).await.unwrap();
        assert_eq!(found.iter().map(|e| e.index).collect::<Vec<_>>(), [40]);
    }
    async fn types(c: &mut sqlx::SqliteConnection) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT typeof(subject_hmac) || length(subject_hmac) || ' ' \
             || typeof(body_sha256) || length(body_sha256) FROM audit_entries ORDER BY idx",
        )
        .fetch_all(c)
        .await
        .unwrap()
    }
    let mut want = vec!["blob32 blob32".to_string(); 40];
    want.push("text7 text4".into());
    assert_eq!(types(&mut c).await, want);
    read_back(&b.store, &odd).await;
    look_up(&b.store).await;
    assert_eq!(check(&b, &key).await.problem, None);

    // As a log from before migration 0011 holds them: hex text. Read as before (a
    // subject is looked up only as the migration leaves it).
    for col in ["subject_hmac", "body_sha256"] {
        sqlx::query(&format!(
            "UPDATE audit_entries SET {col} = lower(hex({col})) WHERE typeof({col}) = 'blob'"
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }
    let mut old = vec!["text64 text64".to_string(); 40];
    old.push("text7 text4".into());
    assert_eq!(types(&mut c).await, old);
    read_back(&b.store, &odd).await;
    sqlx::raw_sql(include_str!(
        "../migrations/sqlite/0011_audit_digest_bytes.sql"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    assert_eq!(types(&mut c).await, want);
    read_back(&b.store, &odd).await;
    look_up(&b.store).await;
    assert_eq!(check(&b, &key).await.problem, None);

    // A byte of a stored digest changed is caught at its entry.
    sqlx::query(
        "UPDATE audit_entries SET body_sha256 = CAST(X'ff' || substr(body_sha256, 2) AS BLOB) \
         WHERE idx = 12",
    )
    .execute(&mut c)
    .await
    .unwrap();
    assert_eq!(check(&b, &key).await.problem.map(|p| p.index), Some(12));
    c.close().await.unwrap();
    b.done().await;
}

#[tokio::test]
async fn two_nodes_on_one_postgres_log_keep_it_dense() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    let (key, _) = GatewayKey::generate().unwrap();
    let key = Arc::new(key);
    let a = AuditLog::open(b.store.clone(), key.clone(), opts())
        .await
        .unwrap();
    let c = AuditLog::open(b.store.clone(), key.clone(), opts())
        .await
        .unwrap();
    let mut got = Vec::new();
    for i in 0..10 {
        got.push(a.append(entry(i)).await.unwrap());
        got.push(c.append(entry(100 + i)).await.unwrap());
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(check(&b, &key).await.problem, None);
    b.done().await;
}

#[tokio::test]
async fn a_log_from_before_the_tree_is_backfilled() {
    let b = Backend::sqlite().await;
    // Rows as the first version wrote them: entries only, no tree.
    let (log, key) = filled(&b, 20).await;
    drop(log);
    b.tamper(&["DELETE FROM audit_nodes", "DELETE FROM audit_checkpoints"])
        .await;
    let log = AuditLog::open(b.store.clone(), key.clone(), opts())
        .await
        .unwrap();
    assert_eq!(b.store.tree_size().await.unwrap(), 20);
    assert_eq!(log.append(entry(20)).await.unwrap(), 20);
    assert_eq!(check(&b, &key).await.problem, None);
    b.done().await;
}

#[tokio::test]
async fn verify_names_the_index_of_every_kind_of_tampering() {
    // Tree nodes are numbered in the order appending makes them, 64 to a page: the tree of
    // 90 leaves is nodes 0..176 (2 × 90 − popcount 90); node 80 is (level 1, index 20),
    // over leaves 40 and 41, and node 81 is leaf 42.
    let cases: [(&str, &[&str], u64); 6] = [
        (
            "one byte of an entry changed",
            &["UPDATE audit_entries SET request_id = 'X' || substr(request_id, 2) WHERE idx = 42"],
            42,
        ),
        (
            "a row deleted",
            &["DELETE FROM audit_entries WHERE idx = 33"],
            33,
        ),
        (
            "two rows swapped",
            &[
                "UPDATE audit_entries SET idx = -1 WHERE idx = 10",
                "UPDATE audit_entries SET idx = 10 WHERE idx = 20",
                "UPDATE audit_entries SET idx = 20 WHERE idx = -1",
            ],
            10,
        ),
        (
            "the tail truncated",
            &["DELETE FROM audit_entries WHERE idx >= 90"],
            90,
        ),
        (
            "the tail truncated with its tree",
            &[
                "DELETE FROM audit_entries WHERE idx >= 90",
                "DELETE FROM audit_nodes WHERE page > 2",
                "UPDATE audit_nodes SET hashes = substr(hashes, 1, 48 * 32) WHERE page = 2",
            ],
            90,
        ),
        (
            "an interior tree node swapped with a leaf",
            &[
                "UPDATE audit_nodes SET hashes = CAST(substr(hashes, 1, 512) \
               || substr(hashes, 545, 32) || substr(hashes, 513, 32) || substr(hashes, 577) \
               AS BYTEA) WHERE page = 1",
            ],
            40,
        ),
    ];
    for (what, sqls, index) in cases {
        for b in Backend::all().await {
            let (_log, key) = filled(&b, 100).await;
            assert_eq!(check(&b, &key).await.problem, None, "{what}: clean log");
            b.tamper(sqls).await;
            let r = check(&b, &key).await;
            let p = r
                .problem
                .unwrap_or_else(|| panic!("{what}: not detected on {}", b.url));
            assert_eq!(p.index, index, "{what} on {}: {p}", b.url);
            b.done().await;
        }
    }
}

#[tokio::test]
async fn verify_checks_an_old_checkpoint_and_stored_signatures() {
    let b = Backend::sqlite().await;
    let (log, key) = filled(&b, 30).await;
    let old = log.checkpoint().note.clone();
    for i in 30..50 {
        log.append(entry(i)).await.unwrap();
    }
    let v = NoteVerifier::for_key(ORIGIN, &key).unwrap();
    let r = verify(&b.store, &v, Some(&old), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.size, r.problem), (50, None));
    // A checkpoint from another log of the same size is not consistent with this one.
    let other = Backend::sqlite().await;
    let (olog, _) = {
        let l = AuditLog::open(other.store.clone(), key.clone(), opts())
            .await
            .unwrap();
        for i in 0..30 {
            l.append(entry(1000 + i)).await.unwrap();
        }
        (l, ())
    };
    let foreign = olog.checkpoint().note.clone();
    let r = verify(&b.store, &v, Some(&foreign), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(r.problem.unwrap().index, 29);
    // A forged checkpoint note is refused outright.
    let forged = old.replace("\n30\n", "\n31\n");
    assert!(
        verify(&b.store, &v, Some(&forged), &mut |_, _| {})
            .await
            .is_err()
    );
    // So is a note signed with this log's key but naming another log.
    let elsewhere = Checkpoint {
        origin: "paotui.other/audit".into(),
        ..Checkpoint::parse(v.open(&old).unwrap()).unwrap()
    };
    let signed = paotui_certs::tlog::NoteSigner::new(ORIGIN, &key)
        .unwrap()
        .sign(&elsewhere.to_text())
        .unwrap();
    let e = verify(&b.store, &v, Some(&signed), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not this log's"), "{e}");
    // A stored checkpoint whose signature no longer verifies is named.
    b.tamper(&["UPDATE audit_checkpoints SET note = replace(note, 'paotui.test', 'paotui.tesT')"])
        .await;
    let p = check(&b, &key).await.problem.unwrap();
    assert!(p.reason.starts_with("stored checkpoint for size"), "{p}");
    other.done().await;
    b.done().await;
}

fn arb_entry() -> impl Strategy<Value = NewAuditEntry> {
    (
        any::<i64>(),
        ".{0,12}",
        proptest::option::of("[A-Z]{2}"),
        proptest::option::of(".{0,6}"),
        proptest::collection::vec("[a-z_]{1,8}", 0..4),
        0u16..600,
        0u8..3,
        proptest::option::of((
            any::<bool>(),
            proptest::collection::vec("[a-z-]{1,12}", 0..3),
        )),
    )
        .prop_map(|(at, rid, dept, reason, fields, status, o, decision)| {
            let mut e = entry(0);
            e.at_us = at;
            e.request_id = rid;
            e.caller_dept = dept;
            e.reason = reason;
            e.fields = fields;
            e.status = status;
            e.outcome = [
                paotui_repository::Outcome::Ok,
                paotui_repository::Outcome::Denied,
                paotui_repository::Outcome::Error,
            ][o as usize];
            e.decision = decision
                .map(|(allowed, policies)| paotui_repository::PolicyDecision { allowed, policies });
            e
        })
}

/// Format v2 is v1's layout with its own version byte and the decision appended, so an
/// entry without a decision keeps exactly the bytes (and leaf) it had before v2 existed.
#[test]
fn format_v2_extends_v1_with_the_decision() {
    let mut e = entry(1);
    e.decision = None;
    let v1 = e.canonical_bytes();
    assert_eq!(v1[0], paotui_repository::ENTRY_FORMAT_V1);
    e.decision = Some(paotui_repository::PolicyDecision {
        allowed: false,
        policies: vec!["query-needs-its-case".into()],
    });
    let v2 = e.canonical_bytes();
    let mut expected = vec![paotui_repository::ENTRY_FORMAT_V2];
    expected.extend_from_slice(&v1[1..]);
    expected.push(0); // denied
    expected.extend_from_slice(&1u32.to_be_bytes());
    expected.extend_from_slice(&20u32.to_be_bytes());
    expected.extend_from_slice(b"query-needs-its-case");
    assert_eq!(v2, expected);
    assert_eq!(NewAuditEntry::from_canonical(&v2).unwrap(), e);
    // A v1 entry with a decision tail appended is not a valid v1 entry.
    let mut forged = v1.clone();
    forged.extend_from_slice(&v2[v1.len()..]);
    assert!(NewAuditEntry::from_canonical(&forged).is_err());
}

proptest! {
    #[test]
    fn canonical_bytes_round_trip_and_any_bit_flip_changes_the_leaf(e in arb_entry(), bit in 0usize..4096) {
        let bytes = e.canonical_bytes();
        let version = if e.decision.is_some() {
            paotui_repository::ENTRY_FORMAT_V2
        } else {
            paotui_repository::ENTRY_FORMAT_V1
        };
        prop_assert_eq!(bytes[0], version);
        prop_assert_eq!(&NewAuditEntry::from_canonical(&bytes).unwrap(), &e);
        let mut flipped = bytes.clone();
        let bit = bit % (flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert_ne!(tlog::leaf_hash(&flipped), e.leaf_hash());
        // A flipped byte never decodes to the same entry.
        if let Ok(d) = NewAuditEntry::from_canonical(&flipped) {
            prop_assert_ne!(d, e);
        }
    }
}
