//! The audit log, in one bench run:
//!
//! - `audit_append/<backend>/<writers>`: durable appends through the group-commit
//!   sequencer (entries, tree nodes and checkpoints committed together, SQLite with
//!   `synchronous = FULL`), with 1, 64 and 1,024 concurrent writers. Throughput is entries.
//!   After each, a probe prints p50/p99 latency of one append as a writer sees it.
//! - `inclusion_proof/<kind>/<n>`: inclusion proofs in an n-entry SQLite log (default
//!   10,000,000; `PAOTUI_BENCH_PROOF_ENTRIES` changes it), built once (SQL insert of
//!   synthetic entries, then the tree backfill) and kept under the target directory.
//!   `recent_cached`: a random entry among the newest 131,072, whose tiles are in the
//!   node cache (as in a running gateway, which caches what it commits);
//!   `random_whole_tree_cached`: a random entry of the whole log, with a node cache big
//!   enough for the whole tree (~65 bytes per entry) and filled before timing;
//!   `random_cache_miss`: a random entry of the whole log through a log whose cache holds
//!   8 tiles, so each proof reads the nodes it misses from the store (and caches them); `random_nodes_from_store`: `Store::inclusion_proof`, one query for exactly the
//!   proof's nodes (what `paotui audit proof` does).
//! - `subject_lookup/page_of_50/<n>`: "who read my data" on the same n-entry log: the
//!   newest page of a random subject (see `subject_lookups`).
//! - `verify/<n>`: `paotui audit verify`'s work over an n-entry log. Throughput is entries.
//!
//! PostgreSQL must be up (127.0.0.1, see the README) or its rows are left out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use paotui_benches::{drop_pg, fresh_pg};
use paotui_certs::GatewayKey;
use paotui_certs::tlog::{self, NoteVerifier};
use paotui_repository::{AuditLog, AuditOptions, NewAuditEntry, Outcome, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;

const ORIGIN: &str = "paotui.bench/audit";
const PG_DB: &str = "paotui_bench_audit";
const VERIFY_ENTRIES: u64 = 200_000;
/// The newest entries timed as "recent": their 512 tiles fill half the default 16 MiB
/// node cache, as the gateway's start-up preload does.
const RECENT: u64 = 1 << 17;

type ProofFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = paotui_repository::Result<Vec<tlog::Hash>>> + 'a>,
>;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Entry `i` of a writer, stamped with the clock as the gateway stamps its entries: so
/// the log's `at_us` index grows at its right edge, as it does in service. (A stamp made
/// of the writer's number put 1,024 writers' entries into 1,024 places of that index.)
fn entry(i: u64) -> NewAuditEntry {
    NewAuditEntry {
        at_us: chrono::Utc::now().timestamp_micros(),
        request_id: format!("bench-{i}"),
        caller_dept: Some("RS".into()),
        caller_system: Some("shebao".into()),
        caller_serial: Some("5f2a9c".into()),
        operator: Some("clerk-001".into()),
        action: "service.query".into(),
        service: Some("population.person".into()),
        case_id: None,
        matter: None,
        outcome: Outcome::Ok,
        status: 200,
        reason: None,
        subject_hmac: Some(format!("{:064x}", i.wrapping_mul(0x9e37_79b9))),
        fields: vec!["name".into(), "gender".into(), "address".into()],
        body_sha256: Some(format!("{:064x}", i)),
        decision: Some(paotui_repository::PolicyDecision {
            allowed: true,
            policies: vec!["query-owner-or-consumer".into()],
        }),
    }
}

/// `total` appends spread over `writers` tasks; returns the wall time and each append's
/// latency.
async fn appends(log: &AuditLog, writers: u64, total: u64) -> (Duration, Vec<Duration>) {
    let writers = writers.min(total).max(1);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers as usize);
    for w in 0..writers {
        let log = log.clone();
        let n = total / writers + u64::from(w < total % writers);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                if let Err(e) = log.append(entry(w * 1_000_000 + i)).await {
                    eprintln!("append failed: {e}");
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    (start.elapsed(), all)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// An n-entry SQLite log: synthetic entries by SQL, then the tree built by the same
/// backfill a log from before the tree gets. Reused when already there.
async fn big_log(n: u64, key: Arc<GatewayKey>) -> Result<(Store, AuditLog), Error> {
    let dir = paotui_benches::work_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("audit-{n}.db"));
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await?;
    if store.tree_size().await? != n {
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = Store::open(&url).await?;
        store.close().await;
        eprintln!(
            "building a {n}-entry audit log in {} (once) …",
            path.display()
        );
        let t = Instant::now();
        let mut c = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&mut c)
            .await?;
        sqlx::query(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?) \
             INSERT INTO audit_entries (idx, at_us, request_id, caller_dept, caller_system, \
               operator, action, service, outcome, status, subject_hmac, fields, body_sha256) \
             SELECT i, 1700000000000000 + i, 'bench-' || i, 'RS', 'shebao', 'clerk-001', \
               'service.query', 'population.person', 'ok', 200, unhex(printf('%064x', i * 7)), \
               '[\"name\",\"gender\"]', unhex(printf('%064x', i)) FROM k",
        )
        .bind(i64::try_from(n)?)
        .execute(&mut c)
        .await?;
        c.close().await?;
        eprintln!(
            "  entries written in {:.1?}; building the tree …",
            t.elapsed()
        );
        let store = Store::open(&url).await?;
        let t = Instant::now();
        let log = AuditLog::open(store.clone(), key, options()).await?;
        eprintln!("  tree built in {:.1?}", t.elapsed());
        return Ok((store, log));
    }
    let log = AuditLog::open(store.clone(), key, options()).await?;
    Ok((store, log))
}

fn options() -> AuditOptions {
    AuditOptions {
        origin: ORIGIN.into(),
        ..AuditOptions::default()
    }
}

fn bench(c: &mut Criterion) {
    let Some(rt) = paotui_benches::runtime() else {
        return;
    };
    let Ok((key, _)) = GatewayKey::generate() else {
        return;
    };
    let key = Arc::new(key);
    let Ok(dir) = tempfile::tempdir() else { return };

    // --- appends ---
    let mut stores = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("append.db").display()),
    )];
    if let Some(url) = rt.block_on(fresh_pg(PG_DB)) {
        stores.push(("postgres", url));
    }
    let mut g = c.benchmark_group("audit_append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(1));
    for (backend, url) in &stores {
        let opened = rt.block_on(async {
            let store = Store::open(url).await?;
            let log = AuditLog::open(store.clone(), key.clone(), options()).await?;
            Ok::<_, Error>((store, log))
        });
        let (store, log) = match opened {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{backend} left out: {e}");
                continue;
            }
        };
        for writers in [1u64, 64, 1024] {
            g.bench_with_input(BenchmarkId::new(*backend, writers), &writers, |b, &w| {
                b.iter_custom(|iters| rt.block_on(appends(&log, w, iters)).0);
            });
            // Latency as a writer sees it, at the same concurrency.
            let total = (writers * 40).max(4_000);
            let (wall, mut lat) = rt.block_on(appends(&log, writers, total));
            lat.sort_unstable();
            println!(
                "audit_append latency {backend} writers={writers}: p50 {:.2?} p99 {:.2?} ({:.0} entries/s over {total})",
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
                total as f64 / wall.as_secs_f64()
            );
        }
        rt.block_on(store.close());
    }
    g.finish();
    if stores.len() > 1 {
        rt.block_on(drop_pg(PG_DB));
    }

    // --- inclusion proofs in a big log ---
    let n: u64 = std::env::var("PAOTUI_BENCH_PROOF_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if paotui_benches::quick_mode() {
            10_000
        } else {
            10_000_000
        });
    match rt.block_on(big_log(n, key.clone())) {
        Ok((store, log)) => {
            let root = rt.block_on(store.root_at(n));
            let mut rng = SmallRng::seed_from_u64(6962);
            // Check one proof before timing them.
            if let Ok(root) = root {
                let i = rng.gen_range(0..n);
                let ok = rt.block_on(async {
                    let p = log.inclusion_proof(i, n).await?;
                    let e = store.audit_entry(i).await?.ok_or("missing entry")?;
                    tlog::verify_inclusion(i, n, &e.entry.leaf_hash(), &p, &root)?;
                    Ok::<_, Error>(())
                });
                if let Err(e) = ok {
                    eprintln!("inclusion proof does not verify: {e}");
                }
            }
            // A log on the same store whose cache holds only 8 tiles: a random proof
            // misses most of its nodes and reads them from the store.
            let cold = rt.block_on(AuditLog::open(
                store.clone(),
                key.clone(),
                AuditOptions {
                    cache_bytes: 0,
                    ..options()
                },
            ));
            // The newest entries, whose nodes a running gateway holds from committing them
            // or reads in at start-up (done here before timing, not in the background).
            let recent = n.min(RECENT);
            let t = Instant::now();
            match rt.block_on(log.preload(recent)) {
                Ok(nodes) => println!(
                    "preload of {recent} entries: {nodes} nodes in {:.2?}",
                    t.elapsed()
                ),
                Err(e) => eprintln!("preload failed: {e}"),
            }
            let mut g = c.benchmark_group("inclusion_proof");
            let recent_range = n - recent..n;
            time_proofs(&mut g, &rt, &mut rng, "recent_cached", recent_range, &|i| {
                Box::pin(log.inclusion_proof(i, n))
            });
            time_proofs(
                &mut g,
                &rt,
                &mut rng,
                "random_nodes_from_store",
                0..n,
                &|i| Box::pin(store.inclusion_proof(i, n)),
            );
            if let Ok(cold) = &cold {
                time_proofs(&mut g, &rt, &mut rng, "random_cache_miss", 0..n, &|i| {
                    Box::pin(cold.inclusion_proof(i, n))
                });
            }
            // With a budget that holds the whole tree (about 65 bytes per entry), every
            // proof is served from memory.
            let whole = rt.block_on(async {
                let log = AuditLog::open(
                    store.clone(),
                    key.clone(),
                    AuditOptions {
                        cache_bytes: usize::try_from(n * 70).unwrap_or(usize::MAX),
                        ..options()
                    },
                )
                .await?;
                let t = Instant::now();
                let nodes = log.preload(n).await?;
                println!(
                    "preload of all {n} entries: {nodes} nodes in {:.2?}",
                    t.elapsed()
                );
                Ok::<_, Error>(log)
            });
            match &whole {
                Ok(whole) => time_proofs(
                    &mut g,
                    &rt,
                    &mut rng,
                    "random_whole_tree_cached",
                    0..n,
                    &|i| Box::pin(whole.inclusion_proof(i, n)),
                ),
                Err(e) => eprintln!("whole-tree cache left out: {e}"),
            }
            g.finish();
            subject_lookups(c, &rt, &mut rng, &store, n);
            rt.block_on(store.close());
        }
        Err(e) => eprintln!("big log left out: {e}"),
    }

    // --- verify ---
    let url = format!("sqlite://{}", dir.path().join("verify.db").display());
    let built = rt.block_on(async {
        let store = Store::open(&url).await?;
        let log = AuditLog::open(store.clone(), key.clone(), options()).await?;
        appends(&log, 1024, VERIFY_ENTRIES).await;
        Ok::<_, Error>(store)
    });
    let Ok(verifier) = NoteVerifier::for_key(ORIGIN, &key) else {
        return;
    };
    match built {
        Ok(store) => {
            let mut g = c.benchmark_group("verify");
            g.sample_size(10);
            g.throughput(Throughput::Elements(VERIFY_ENTRIES));
            g.bench_function(BenchmarkId::from_parameter(VERIFY_ENTRIES), |b| {
                b.iter(|| {
                    let r = rt.block_on(paotui_repository::verify::verify(
                        &store,
                        &verifier,
                        None,
                        &mut |_, _| {},
                    ));
                    match r {
                        Ok(r) if r.problem.is_none() => {}
                        other => eprintln!("verify did not pass: {other:?}"),
                    }
                });
            });
            g.finish();
        }
        Err(e) => eprintln!("verify left out: {e}"),
    }
}

/// "Who read my data" on the big log: the newest page (up to 50) of a random entry's
/// subject, read through the subject blocks (one key seek per indexed block of 16,384
/// entries) and a scan of the not yet indexed tail. Each synthetic entry has a subject of
/// its own, so the answer is that one entry: checked once before timing.
fn subject_lookups(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    rng: &mut SmallRng,
    store: &Store,
    n: u64,
) {
    // As `big_log` writes them: printf('%064x', i * 7).
    let subject = |i: u64| format!("{:064x}", i * 7);
    let i = rng.gen_range(0..n);
    match rt.block_on(store.audit_of_subject(&subject(i), None, 50)) {
        Ok(found) if found.iter().map(|e| e.index).eq([i]) => {}
        Ok(found) => eprintln!(
            "subject lookup of entry {i} answered entries {:?}",
            found.iter().map(|e| e.index).collect::<Vec<_>>()
        ),
        Err(e) => eprintln!("subject lookup failed: {e}"),
    }
    let mut g = c.benchmark_group("subject_lookup");
    g.bench_function(BenchmarkId::new("page_of_50", n), |b| {
        b.iter_custom(|iters| {
            let subjects: Vec<String> = (0..iters).map(|_| subject(rng.gen_range(0..n))).collect();
            rt.block_on(async {
                let t = Instant::now();
                for s in &subjects {
                    let _ = std::hint::black_box(store.audit_of_subject(s, None, 50).await);
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

/// Times `f` on random entries of `range` (the tree size is `range.end`).
fn time_proofs<'a>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    rng: &mut SmallRng,
    name: &str,
    range: std::ops::Range<u64>,
    f: &dyn Fn(u64) -> ProofFuture<'a>,
) {
    g.bench_function(BenchmarkId::new(name, range.end), |b| {
        b.iter_custom(|iters| {
            let idx: Vec<u64> = (0..iters).map(|_| rng.gen_range(range.clone())).collect();
            rt.block_on(async {
                let t = Instant::now();
                for i in idx {
                    let _ = std::hint::black_box(f(i).await);
                }
                t.elapsed()
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
