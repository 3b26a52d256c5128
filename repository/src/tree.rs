//! The audit log's stored Merkle tree: batch commits of entries with their tree nodes,
//! node reads, proofs and checkpoints, on both backends.
//!
//! Every perfect subtree hash is a row of `audit_tree`, so an inclusion or consistency
//! proof is one query for O(log n) rows (RFC 9162 proofs are made of at most one
//! non-perfect subtree per level, each a fold of perfect ones), never a rebuild.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use paotui_certs::tlog::{self, Frontier, Hash, NodeId};
use sqlx::QueryBuilder;

use crate::audit::NewAuditEntry;
use crate::store::{Backend, COLUMNS, on_pool};
use crate::{Error, Result, Store};

// A fixed advisory-lock key serialises appenders across gateway nodes on PostgreSQL.
const PG_AUDIT_LOCK: i64 = 0x7061_6f74_7569; // "paotui"

// Tree rows per INSERT when the tree of an older log is built. Chunks of this size and
// then powers of two, so a handful of statement shapes are prepared once and reused (a
// new shape per size costs a re-parse of a large statement); 3 binds per row stays far
// under SQLite's and PostgreSQL's bind limits.
const NODE_ROWS: usize = 256;

/// Splits `items` into runs of `max`, then the rest into descending powers of two.
fn chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = (usize, &[T])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let left = items.len() - at;
        if left == 0 {
            return None;
        }
        let n = if left >= max {
            max
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        let start = at;
        at += n;
        Some((start, &items[start..at]))
    })
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub at_us: i64,
    pub root: Hash,
    /// The C2SP signed note (checkpoint text, blank line, signature line).
    pub note: String,
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Invalid(format!("{v} is out of range")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Invalid(format!("stored value {v} is negative")))
}

fn to_hash(v: Vec<u8>) -> Result<Hash> {
    v.try_into()
        .map_err(|_| Error::Invalid("stored hash is not 32 bytes".into()))
}

/// Inserts tree nodes inside an open transaction, in chunks.
macro_rules! insert_nodes {
    ($tx:ident, $db:ident, $nodes:expr) => {
        for (_, chunk) in chunks($nodes, NODE_ROWS) {
            let rows: Vec<(i32, i64, Vec<u8>)> = chunk
                .iter()
                .map(|(id, h)| Ok((i32::from(id.level), to_i64(id.index)?, h.to_vec())))
                .collect::<Result<_>>()?;
            let mut q = QueryBuilder::<$db>::new("INSERT INTO audit_tree (level, idx, hash) ");
            q.push_values(rows, |mut b, (l, i, h)| {
                b.push_bind(l).push_bind(i).push_bind(h);
            });
            q.build().execute(&mut *$tx).await?;
        }
    };
}

/// Where the log ends: one past the highest stored entry.
const LOG_END: &str = "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries";

/// One stored checkpoint (both backends: SQLite binds `$n` in order of appearance).
const CHECKPOINT_INSERT: &str =
    "INSERT INTO audit_checkpoints (tree_size, at_us, root, note) VALUES ($1, $2, $3, $4)";

/// Entries per block of the subject lookup table `audit_subjects` (migration 0009).
pub(crate) const SUBJECT_BLOCK: i64 = 16_384;

/// Indexes one block: `$1` is its number, `$2..$3` its entries. (SQLite numbers `$n`
/// parameters in the order they first appear, so they must appear in order.)
const SUBJECT_BLOCK_INSERT: &str = "INSERT INTO audit_subjects (block, subject_hmac, idx) \
     SELECT $1, subject_hmac, idx FROM audit_entries \
     WHERE idx >= $2 AND idx < $3 AND subject_hmac IS NOT NULL \
     ORDER BY subject_hmac, idx";

/// Adds to `audit_subjects`, in the transaction `$tx`, the complete blocks of entries
/// below `$end` that it lacks, at most `$max` of them; evaluates to how many it added.
/// One `INSERT … SELECT` per block, in key order, so the block's rows land on consecutive
/// pages instead of one random index page per entry. The count of indexed blocks is read
/// inside the transaction, so two writers never index the same block.
macro_rules! index_subject_blocks {
    ($tx:ident, $end:expr, $max:expr) => {{
        let done: i64 = sqlx::query_scalar("SELECT blocks FROM audit_subject_blocks WHERE id = 0")
            .fetch_one(&mut *$tx)
            .await?;
        let full: i64 = ($end / SUBJECT_BLOCK).min(done.saturating_add($max));
        for block in done..full {
            sqlx::query(SUBJECT_BLOCK_INSERT)
                .bind(block)
                .bind(block * SUBJECT_BLOCK)
                .bind((block + 1) * SUBJECT_BLOCK)
                .execute(&mut *$tx)
                .await?;
        }
        if full > done {
            sqlx::query("UPDATE audit_subject_blocks SET blocks = $1 WHERE id = 0")
                .bind(full)
                .execute(&mut *$tx)
                .await?;
        }
        (full - done).max(0)
    }};
}

/// The perfect subtrees a proof's leaf ranges are made of, and how to fold their hashes
/// back into one hash per range.
pub(crate) struct ProofParts {
    lens: Vec<usize>,
    /// Every subtree, range by range.
    pub(crate) ids: Vec<NodeId>,
}

impl ProofParts {
    pub(crate) fn new(ranges: &[(u64, u64)]) -> ProofParts {
        let parts: Vec<Vec<NodeId>> = ranges
            .iter()
            .map(|&(a, b)| tlog::perfect_subtrees(a, b))
            .collect();
        ProofParts {
            lens: parts.iter().map(Vec::len).collect(),
            ids: parts.into_iter().flatten().collect(),
        }
    }

    /// Folds `hashes` (one per id, in order) into one hash per range.
    pub(crate) fn fold(&self, hashes: &[Hash]) -> Result<Vec<Hash>> {
        let mut at = 0;
        let mut out = Vec::with_capacity(self.lens.len());
        for &n in &self.lens {
            let h = hashes
                .get(at..at + n)
                .and_then(tlog::fold_range)
                .ok_or_else(|| Error::Invalid("empty proof range".into()))?;
            out.push(h);
            at += n;
        }
        Ok(out)
    }
}

/// An entry's `fields` and `policies` as their stored JSON, and its decision's word.
type EntryJson = (Vec<String>, Vec<(Option<&'static str>, Option<String>)>);

fn entry_json(entries: &[NewAuditEntry]) -> Result<EntryJson> {
    let fields = entries
        .iter()
        .map(|e| serde_json::to_string(&e.fields).map_err(|x| Error::Invalid(x.to_string())))
        .collect::<Result<_>>()?;
    let decisions = entries
        .iter()
        .map(|e| match &e.decision {
            None => Ok((None, None)),
            Some(d) => serde_json::to_string(&d.policies)
                .map(|p| (Some(if d.allowed { "allow" } else { "deny" }), Some(p)))
                .map_err(|x| Error::Invalid(x.to_string())),
        })
        .collect::<Result<_>>()?;
    Ok((fields, decisions))
}

/// One entry row, as SQLite takes it: a placeholder per column of [`COLUMNS`].
static ENTRY_INSERT: LazyLock<String> = LazyLock::new(|| {
    let marks: Vec<String> = (1..=COLUMNS.split(',').count())
        .map(|i| format!("?{i}"))
        .collect();
    format!(
        "INSERT INTO audit_entries ({COLUMNS}) VALUES ({})",
        marks.join(", ")
    )
});

/// A batch of entry rows, as PostgreSQL takes it: an array per column of [`COLUMNS`].
static PG_ENTRY_INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO audit_entries ({COLUMNS}) SELECT * FROM UNNEST(\
         $1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int4[], \
         $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])"
    )
});

/// [`Store::commit_batch`] on the SQLite writer connection: the same rows as on
/// PostgreSQL, each written by one run of a cached prepared statement.
fn commit_sqlite(
    c: &mut rusqlite::Connection,
    first: i64,
    entries: &[NewAuditEntry],
    nodes: &[(NodeId, Hash)],
    checkpoint: Option<&StoredCheckpoint>,
) -> Result<()> {
    use rusqlite::{TransactionBehavior, params};
    let (fields, decisions) = entry_json(entries)?;
    // IMMEDIATE: take the write lock (waiting behind the sqlx pool's writers) before
    // reading where the log ends, so no other write can slip in between.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let end: i64 = tx.prepare_cached(LOG_END)?.query_row([], |r| r.get(0))?;
    if end != first {
        return Err(Error::Conflict(format!(
            "the log ends at {end}, this node expected {first}"
        )));
    }
    {
        let mut ins = tx.prepare_cached(&ENTRY_INSERT)?;
        for (i, ((e, f), d)) in entries.iter().zip(&fields).zip(&decisions).enumerate() {
            ins.execute(params![
                first + to_i64(i as u64)?,
                e.at_us,
                e.request_id,
                e.caller_dept,
                e.caller_system,
                e.caller_serial,
                e.operator,
                e.action,
                e.service,
                e.case_id,
                e.matter,
                e.outcome.as_str(),
                e.status,
                e.reason,
                e.subject_hmac,
                f,
                e.body_sha256,
                d.0,
                d.1,
            ])?;
        }
    }
    let end = first + to_i64(entries.len() as u64)?;
    // Only the batch that completes a block writes it (catch-up is done at open).
    if end / SUBJECT_BLOCK > first / SUBJECT_BLOCK {
        let done: i64 = tx
            .prepare_cached("SELECT blocks FROM audit_subject_blocks WHERE id = 0")?
            .query_row([], |r| r.get(0))?;
        let full = end / SUBJECT_BLOCK;
        for block in done..full {
            tx.prepare_cached(SUBJECT_BLOCK_INSERT)?.execute(params![
                block,
                block * SUBJECT_BLOCK,
                (block + 1) * SUBJECT_BLOCK
            ])?;
        }
        if full > done {
            tx.prepare_cached("UPDATE audit_subject_blocks SET blocks = ?1 WHERE id = 0")?
                .execute([full])?;
        }
    }
    {
        let mut ins =
            tx.prepare_cached("INSERT INTO audit_tree (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (id, h) in nodes {
            ins.execute(params![id.level, to_i64(id.index)?, &h[..]])?;
        }
    }
    if let Some(cp) = checkpoint {
        tx.prepare_cached(CHECKPOINT_INSERT)?.execute(params![
            to_i64(cp.tree_size)?,
            cp.at_us,
            &cp.root[..],
            cp.note
        ])?;
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// The index the next entry gets: one past the highest stored entry.
    pub async fn next_index(&self) -> Result<u64> {
        let n: i64 = on_pool!(self, p, DB => sqlx::query_scalar(LOG_END).fetch_one(p).await?);
        to_u64(n)
    }

    /// The number of leaves in the stored tree.
    pub async fn tree_size(&self) -> Result<u64> {
        let sql = "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree WHERE level = 0";
        let n: i64 = on_pool!(self, p, DB => sqlx::query_scalar(sql).fetch_one(p).await?);
        to_u64(n)
    }

    /// The stored hashes of `ids`, in order. A missing node is an error (the tree is
    /// damaged or the size is beyond the log).
    pub async fn tree_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut wanted: Vec<NodeId> = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let rows: Vec<(i32, i64, Vec<u8>)> = on_pool!(self, p, DB => {
            let mut q = QueryBuilder::<DB>::new("SELECT level, idx, hash FROM audit_tree WHERE ");
            let mut sep = q.separated(" OR ");
            for id in &wanted {
                sep.push("(level = ");
                sep.push_bind_unseparated(i32::from(id.level));
                sep.push_unseparated(" AND idx = ");
                sep.push_bind_unseparated(to_i64(id.index)?);
                sep.push_unseparated(")");
            }
            q.build_query_as().fetch_all(p).await?
        });
        let mut found: HashMap<NodeId, Hash> = HashMap::with_capacity(rows.len());
        for (level, idx, hash) in rows {
            let level = u8::try_from(level)
                .map_err(|_| Error::Invalid(format!("stored tree level {level}")))?;
            found.insert(
                NodeId {
                    level,
                    index: to_u64(idx)?,
                },
                to_hash(hash)?,
            );
        }
        ids.iter()
            .map(|id| {
                found.get(id).copied().ok_or_else(|| {
                    Error::Invalid(format!(
                        "audit tree node (level {}, index {}) is missing; run `paotui audit verify`",
                        id.level, id.index
                    ))
                })
            })
            .collect()
    }

    /// Stored nodes of one level with `from <= index < to`, in index order.
    pub async fn tree_level(&self, level: u8, from: u64, to: u64) -> Result<Vec<(u64, Hash)>> {
        let (level, from, to) = (i32::from(level), to_i64(from)?, to_i64(to)?);
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(self, p, DB => {
            let mut q = QueryBuilder::<DB>::new("SELECT idx, hash FROM audit_tree WHERE level = ");
            q.push_bind(level).push(" AND idx >= ").push_bind(from);
            q.push(" AND idx < ").push_bind(to).push(" ORDER BY idx");
            q.build_query_as().fetch_all(p).await?
        });
        rows.into_iter()
            .map(|(i, h)| Ok((to_u64(i)?, to_hash(h)?)))
            .collect()
    }

    /// The right edge of the stored tree of `size` leaves.
    pub async fn frontier(&self, size: u64) -> Result<Frontier> {
        let hashes = self.tree_nodes(&Frontier::ids(size)).await?;
        Ok(Frontier::from_hashes(size, &hashes)?)
    }

    /// The root of the stored tree at `size` (any size up to the current one).
    pub async fn root_at(&self, size: u64) -> Result<Hash> {
        Ok(self.frontier(size).await?.root())
    }

    /// Resolves leaf ranges into their subtree hashes with one query.
    async fn ranges(&self, ranges: &[(u64, u64)]) -> Result<Vec<Hash>> {
        let parts = ProofParts::new(ranges);
        let hashes = self.tree_nodes(&parts.ids).await?;
        parts.fold(&hashes)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        if index >= size {
            return Err(Error::Invalid(format!(
                "index {index} is not below tree size {size}"
            )));
        }
        self.ranges(&tlog::inclusion_ranges(index, size)).await
    }

    /// The consistency proof from tree size `from` to tree size `to`.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        if from > to {
            return Err(Error::Invalid(format!(
                "from ({from}) must not exceed to ({to})"
            )));
        }
        self.ranges(&tlog::consistency_ranges(from, to)).await
    }

    /// Stored checkpoints, smallest tree first.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let sql = "SELECT tree_size, at_us, root, note FROM audit_checkpoints ORDER BY tree_size";
        let rows: Vec<(i64, i64, Vec<u8>, String)> =
            on_pool!(self, p, DB => sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter()
            .map(|(s, at_us, root, note)| {
                Ok(StoredCheckpoint {
                    tree_size: to_u64(s)?,
                    at_us,
                    root: to_hash(root)?,
                    note,
                })
            })
            .collect()
    }

    /// Commits a batch in one transaction: `entries` get indices `first..`, with their
    /// tree `nodes` and, when due, a checkpoint. Fails with [`Error::Conflict`] when the
    /// log no longer ends at `first` (another gateway node appended).
    pub(crate) async fn commit_batch(
        &self,
        first: u64,
        entries: Arc<[NewAuditEntry]>,
        nodes: Arc<[(NodeId, Hash)]>,
        checkpoint: Option<StoredCheckpoint>,
    ) -> Result<()> {
        let first_i = to_i64(first)?;
        let p = match &self.backend {
            Backend::Sqlite(_, local) => {
                return local
                    .writer
                    .run(move |c| commit_sqlite(c, first_i, &entries, &nodes, checkpoint.as_ref()))
                    .await;
            }
            Backend::Postgres(p) => p,
        };
        let (fields, decisions) = entry_json(&entries)?;
        let mut tx = p.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_AUDIT_LOCK)
            .execute(&mut *tx)
            .await?;
        let end: i64 = sqlx::query_scalar(LOG_END).fetch_one(&mut *tx).await?;
        if end != first_i {
            return Err(Error::Conflict(format!(
                "the log ends at {end}, this node expected {first}"
            )));
        }
        // The whole batch in one statement, a column per array: one parse and one round
        // trip, where one row per VALUES group re-bound every value.
        let col = |f: fn(&NewAuditEntry) -> Option<&str>| -> Vec<Option<&str>> {
            entries.iter().map(f).collect()
        };
        let idx: Vec<i64> = (0..entries.len())
            .map(|i| Ok(first_i + to_i64(i as u64)?))
            .collect::<Result<_>>()?;
        sqlx::query(&PG_ENTRY_INSERT)
            .bind(idx)
            .bind(entries.iter().map(|e| e.at_us).collect::<Vec<i64>>())
            .bind(col(|e| Some(&e.request_id)))
            .bind(col(|e| e.caller_dept.as_deref()))
            .bind(col(|e| e.caller_system.as_deref()))
            .bind(col(|e| e.caller_serial.as_deref()))
            .bind(col(|e| e.operator.as_deref()))
            .bind(col(|e| Some(&e.action)))
            .bind(col(|e| e.service.as_deref()))
            .bind(col(|e| e.case_id.as_deref()))
            .bind(col(|e| e.matter.as_deref()))
            .bind(col(|e| Some(e.outcome.as_str())))
            .bind(
                entries
                    .iter()
                    .map(|e| i32::from(e.status))
                    .collect::<Vec<i32>>(),
            )
            .bind(col(|e| e.reason.as_deref()))
            .bind(col(|e| e.subject_hmac.as_deref()))
            .bind(fields)
            .bind(col(|e| e.body_sha256.as_deref()))
            .bind(decisions.iter().map(|d| d.0).collect::<Vec<Option<&str>>>())
            .bind(
                decisions
                    .into_iter()
                    .map(|d| d.1)
                    .collect::<Vec<Option<String>>>(),
            )
            .execute(&mut *tx)
            .await?;
        // Only the batch that completes a block writes it (catch-up is done at open).
        let end_i = first_i + to_i64(entries.len() as u64)?;
        if end_i / SUBJECT_BLOCK > first_i / SUBJECT_BLOCK {
            let _ = index_subject_blocks!(tx, end_i, i64::MAX);
        }
        let (levels, indices): (Vec<i32>, Vec<i64>) = nodes
            .iter()
            .map(|(id, _)| Ok((i32::from(id.level), to_i64(id.index)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        sqlx::query(
            "INSERT INTO audit_tree (level, idx, hash) \
             SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::bytea[])",
        )
        .bind(levels)
        .bind(indices)
        .bind(nodes.iter().map(|(_, h)| &h[..]).collect::<Vec<&[u8]>>())
        .execute(&mut *tx)
        .await?;
        if let Some(cp) = &checkpoint {
            sqlx::query(CHECKPOINT_INSERT)
                .bind(to_i64(cp.tree_size)?)
                .bind(cp.at_us)
                .bind(&cp.root[..])
                .bind(&cp.note)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Indexes, one transaction per block, the complete blocks of entries below `size`
    /// that `audit_subjects` lacks (a log written before migration 0009 or by bulk
    /// insert). Returns how many blocks were added.
    pub(crate) async fn catch_up_subject_blocks(&self, size: u64) -> Result<i64> {
        let end = to_i64(size)?;
        let mut total = 0;
        loop {
            let added: i64 = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                let added = index_subject_blocks!(tx, end, 1);
                tx.commit().await?;
                added
            });
            if added == 0 {
                return Ok(total);
            }
            total += added;
        }
    }

    /// Writes tree nodes on their own (building the tree of a log that predates it).
    pub(crate) async fn write_nodes(&self, nodes: &[(NodeId, Hash)]) -> Result<()> {
        on_pool!(self, p, DB => {
            let mut tx = p.begin().await?;
            insert_nodes!(tx, DB, nodes);
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_cover_everything_in_few_shapes() {
        for n in 0..300usize {
            let items: Vec<usize> = (0..n).collect();
            let parts: Vec<(usize, &[usize])> = super::chunks(&items, 64).collect();
            let joined: Vec<usize> = parts.iter().flat_map(|(_, c)| c.iter().copied()).collect();
            assert_eq!(joined, items);
            for (start, c) in &parts {
                assert_eq!(c.first(), Some(start));
                assert!(c.len() == 64 || (c.len() < 64 && c.len().is_power_of_two()));
            }
        }
    }
}
