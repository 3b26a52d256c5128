//! The audit log's stored Merkle tree: batch commits of entries with their tree nodes,
//! node reads, proofs and checkpoints, on both backends.
//!
//! Every perfect subtree hash is stored, so an inclusion or consistency proof is one
//! query for O(log n) nodes (RFC 9162 proofs are made of at most one non-perfect subtree
//! per level, each a fold of perfect ones), never a rebuild. The hashes are numbered in
//! the order appending makes them ([`node_seq`]) and stored 64 to a row of `audit_nodes`
//! (migration 0010), so an append of n entries writes about n/32 rows, not 2n.

use std::collections::HashMap;
use std::sync::LazyLock;

use paotui_certs::tlog::{self, Frontier, Hash, NodeId};
use sqlx::QueryBuilder;

use crate::audit::NewAuditEntry;
use crate::store::{Backend, COLUMNS, Digest, on_pool};
use crate::{Error, Result, Store};

// A fixed advisory-lock key serialises appenders across gateway nodes on PostgreSQL.
const PG_AUDIT_LOCK: i64 = 0x7061_6f74_7569; // "paotui"

/// Node hashes per row of `audit_nodes` (migration 0010): 2 KiB, so a row fits in one
/// SQLite page, and a proof's ~24 nodes read ~24 small rows.
pub(crate) const PAGE_NODES: u64 = 64;

/// How many nodes the tree of `size` leaves stores: every perfect subtree, 2n − popcount(n).
pub(crate) fn node_count(size: u64) -> u64 {
    size.saturating_mul(2) - u64::from(size.count_ones())
}

/// The number of `id` in the order appending makes nodes ([`Frontier::push`] reports
/// them in it): after every node of the leaves before `m`, the last leaf `id` covers,
/// then by level. `None` for an id beyond any tree.
pub(crate) fn node_seq(id: NodeId) -> Option<u64> {
    let span = 1u64.checked_shl(u32::from(id.level))?;
    let last = id.index.checked_add(1)?.checked_mul(span)? - 1;
    // node_count(last) + level, checked: an id from outside could number past u64.
    last.checked_mul(2)?
        .checked_sub(u64::from(last.count_ones()))?
        .checked_add(u64::from(id.level))
}

/// The most leaves whose nodes fit in `count` stored nodes.
pub(crate) fn leaves_of(count: u64) -> u64 {
    // node_count(n) lies in [n, 2n], so n lies in [count / 2, count].
    let (mut lo, mut hi) = (count / 2, count);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if node_count(mid) <= count {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The nodes leaves `from..to` make, in making order: each leaf, then the subtrees it
/// completes (leaf `m` completes as many levels as `m` has trailing one bits).
pub(crate) fn made_by(from: u64, to: u64) -> impl Iterator<Item = NodeId> {
    (from..to).flat_map(|m| {
        (0..=m.trailing_ones() as u8).map(move |level| NodeId {
            level,
            index: m >> level,
        })
    })
}

/// One row write of a run of nodes: `bytes` go to `page`, which already holds `have`
/// bytes (0: a new row).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PageWrite {
    pub(crate) page: i64,
    pub(crate) have: i64,
    pub(crate) bytes: Vec<u8>,
}

/// How the nodes numbered from `seq` land on pages: the rest of a partly filled page
/// first, then new pages.
pub(crate) fn page_writes(seq: u64, hashes: &[Hash]) -> Result<Vec<PageWrite>> {
    let mut out = Vec::new();
    let (mut at, mut rest) = (seq, hashes);
    while !rest.is_empty() {
        let room = PAGE_NODES - at % PAGE_NODES;
        let n = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let (now, later) = rest.split_at(n);
        out.push(PageWrite {
            page: to_i64(at / PAGE_NODES)?,
            have: to_i64(at % PAGE_NODES * 32)?,
            bytes: now.concat(),
        });
        at += n as u64;
        rest = later;
    }
    Ok(out)
}

/// A page write that found its row not ending where the tree does.
fn tree_out_of_step(page: i64) -> Error {
    Error::Invalid(format!(
        "audit tree page {page} does not end where the tree does; run `paotui audit verify`"
    ))
}

const PAGE_INSERT: &str = "INSERT INTO audit_nodes (page, hashes) VALUES ($1, $2)";
/// Appends to a partly filled page, only when it holds exactly what the tree expects.
/// (SQLite's `||` makes text of two blobs, whose `length` stops at a zero byte; the cast
/// keeps a blob.)
const PAGE_EXTEND: &str = "UPDATE audit_nodes SET hashes = CAST(hashes || $1 AS BLOB) \
     WHERE page = $2 AND length(hashes) = $3";

/// Writes node pages (from [`node_pages`]) in an open SQLite transaction.
fn write_pages_sqlite(tx: &rusqlite::Transaction<'_>, writes: &[PageWrite]) -> Result<()> {
    for w in writes {
        if w.have == 0 {
            tx.prepare_cached(PAGE_INSERT)?
                .execute(rusqlite::params![w.page, w.bytes])?;
        } else {
            let n = tx
                .prepare_cached(PAGE_EXTEND)?
                .execute(rusqlite::params![w.bytes, w.page, w.have])?;
            if n != 1 {
                return Err(tree_out_of_step(w.page));
            }
        }
    }
    Ok(())
}

/// Writes node pages (from [`node_pages`]) in an open PostgreSQL transaction: the partly
/// filled page, then every new page in one statement.
async fn write_pages_pg(tx: &mut sqlx::PgConnection, writes: Vec<PageWrite>) -> Result<()> {
    let (mut pages, mut bytes) = (Vec::new(), Vec::new());
    for w in writes {
        if w.have == 0 {
            pages.push(w.page);
            bytes.push(w.bytes);
        } else {
            let n = sqlx::query(
                "UPDATE audit_nodes SET hashes = hashes || $1 \
                 WHERE page = $2 AND length(hashes) = $3::int8",
            )
            .bind(w.bytes)
            .bind(w.page)
            .bind(w.have)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Err(tree_out_of_step(w.page));
            }
        }
    }
    if !pages.is_empty() {
        sqlx::query(
            "INSERT INTO audit_nodes (page, hashes) \
             SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
        )
        .bind(pages)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The page writes of the nodes `leaves` leaves from `first` make, after checking that
/// `nodes` are exactly those (they are written by number, so a gap or an extra node would
/// shift every later one). Done before a transaction opens, so the write lock is held
/// only for the writes.
fn node_pages(first: u64, leaves: usize, nodes: &[(NodeId, Hash)]) -> Result<Vec<PageWrite>> {
    let end = first + leaves as u64;
    let fits = nodes.len() as u64 == node_count(end) - node_count(first)
        && nodes.iter().map(|(id, _)| *id).eq(made_by(first, end));
    if !fits {
        return Err(Error::Invalid(
            "a batch's tree nodes are not the ones its entries make".into(),
        ));
    }
    let hashes: Vec<Hash> = nodes.iter().map(|(_, h)| *h).collect();
    page_writes(node_count(first), &hashes)
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

/// An entry made ready for its batch by the task that appends it: its leaf hash and the
/// JSON of its `fields` and `policies`. That per-entry work then runs on the request tasks,
/// beside the commit, instead of on the sequencer and the writer thread, which set the
/// pace of appends.
pub(crate) struct Prepared {
    pub(crate) entry: NewAuditEntry,
    pub(crate) leaf: Hash,
    fields: String,
    /// The decision's word and its determining policies as JSON.
    decision: Option<(&'static str, String)>,
}

impl Prepared {
    pub(crate) fn new(entry: NewAuditEntry) -> Result<Prepared> {
        let json = |x: serde_json::Error| Error::Invalid(x.to_string());
        let fields = serde_json::to_string(&entry.fields).map_err(json)?;
        let decision = match &entry.decision {
            None => None,
            Some(d) => Some((
                if d.allowed { "allow" } else { "deny" },
                serde_json::to_string(&d.policies).map_err(json)?,
            )),
        };
        Ok(Prepared {
            leaf: entry.leaf_hash(),
            entry,
            fields,
            decision,
        })
    }
}

/// Rows per SQLite `INSERT` on the audit writer, largest first: rows go in as many
/// statements of 32 as fit, then of 4, then of 1. One statement per entry row spent about
/// 4.3 µs of the writer's CPU on each entry, 32 rows per statement about 2.5 µs (ad-hoc
/// rusqlite probe of 400 batches of 512 bench-shaped rows, WAL, `synchronous=FULL`;
/// benches/BENCHMARKS.md, "2026-12-06 (afternoon)"): most of a row's cost was starting and
/// ending its statement.
const SQLITE_INSERT_ROWS: [usize; 3] = [32, 4, 1];

/// `INSERT INTO {into} VALUES …` with `columns` `?` placeholders a row, for each size of
/// [`SQLITE_INSERT_ROWS`].
fn sqlite_inserts(into: &str, columns: usize) -> [String; 3] {
    let row = format!("({})", vec!["?"; columns].join(", "));
    SQLITE_INSERT_ROWS.map(|n| {
        format!(
            "INSERT INTO {into} VALUES {}",
            vec![row.as_str(); n].join(", ")
        )
    })
}

/// Inserts `items` with `sqls` (from [`sqlite_inserts`]); `bind(stmt, row, n, item)` binds
/// the `n`th item to row `row` of the statement.
fn sqlite_insert_rows<T>(
    tx: &rusqlite::Transaction<'_>,
    sqls: &[String; 3],
    items: &[T],
    mut bind: impl FnMut(&mut rusqlite::Statement<'_>, usize, usize, &T) -> Result<()>,
) -> Result<()> {
    let mut rest = items;
    let mut n = 0;
    for (rows, sql) in SQLITE_INSERT_ROWS.iter().zip(sqls) {
        if rest.len() < *rows {
            continue;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        while let Some((chunk, tail)) = rest.split_at_checked(*rows) {
            for (row, item) in chunk.iter().enumerate() {
                bind(&mut stmt, row, n + row, item)?;
            }
            stmt.raw_execute()?;
            n += rows;
            rest = tail;
        }
    }
    Ok(())
}

/// The entry rows' inserts: [`COLUMNS`].
static ENTRY_INSERTS: LazyLock<[String; 3]> = LazyLock::new(|| {
    sqlite_inserts(
        &format!("audit_entries ({COLUMNS})"),
        COLUMNS.split(',').count(),
    )
});

/// The subject lookup's inserts: block, subject, index.
static SUBJECT_INSERTS: LazyLock<[String; 3]> =
    LazyLock::new(|| sqlite_inserts("audit_subjects (block, subject_hmac, idx)", 3));

/// Binds entry `p`, log index `idx`, to row `row` of a statement of [`ENTRY_INSERTS`].
fn bind_entry(
    stmt: &mut rusqlite::Statement<'_>,
    row: usize,
    idx: i64,
    p: &Prepared,
) -> rusqlite::Result<()> {
    let e = &p.entry;
    let (allowed, policies) = p.decision.as_ref().map(|(a, j)| (*a, j.as_str())).unzip();
    let outcome = e.outcome.as_str();
    let subject = e.subject_hmac.as_deref().map(Digest::of);
    let body = e.body_sha256.as_deref().map(Digest::of);
    let cells: [&dyn rusqlite::ToSql; 19] = [
        &idx,
        &e.at_us,
        &e.request_id,
        &e.caller_dept,
        &e.caller_system,
        &e.caller_serial,
        &e.operator,
        &e.action,
        &e.service,
        &e.case_id,
        &e.matter,
        &outcome,
        &e.status,
        &e.reason,
        &subject,
        &p.fields,
        &body,
        &allowed,
        &policies,
    ];
    bind_row(stmt, row, &cells)
}

/// Binds `cells` to row `row` of a statement whose rows are `cells.len()` placeholders
/// each.
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    row: usize,
    cells: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<()> {
    for (k, cell) in cells.iter().enumerate() {
        stmt.raw_bind_parameter(row * cells.len() + k + 1, cell)?;
    }
    Ok(())
}

/// The subjects of the entries the SQLite writer committed since the start of the subject
/// block being filled, so the batch that completes a block writes the block's rows from
/// memory, sorted here, instead of reading 16,384 entries back and sorting them in SQL
/// inside its commit: that took about 0.75 µs of the writer's CPU per entry (same probe as
/// [`SQLITE_INSERT_ROWS`]). A tail that does not reach back to the block's start (the
/// first block after the log was opened, or after another writer appended) leaves that
/// block to the SQL.
#[derive(Debug, Default)]
pub(crate) struct SubjectTail {
    /// The entries `from..end` are covered: `rows` holds those with a subject.
    from: i64,
    end: i64,
    rows: Vec<(String, i64)>,
}

impl SubjectTail {
    /// The subject rows of block `block`, in key order, if this tail and the batch
    /// `first..` (not yet committed) cover the whole block.
    fn block_rows<'a>(
        &'a self,
        block: i64,
        first: i64,
        entries: &'a [Prepared],
    ) -> Option<Vec<(&'a str, i64)>> {
        let range = block * SUBJECT_BLOCK..(block + 1) * SUBJECT_BLOCK;
        if self.end != first || self.from > range.start {
            return None;
        }
        let held = self.rows.iter().map(|(s, i)| (s.as_str(), *i));
        let batch = (first..)
            .zip(entries)
            .filter_map(|(i, p)| p.entry.subject_hmac.as_deref().map(|s| (s, i)));
        let mut rows: Vec<(&str, i64)> = held
            .chain(batch)
            .filter(|(_, i)| range.contains(i))
            .collect();
        rows.sort_unstable();
        Some(rows)
    }

    /// Takes in the committed batch `first..`, and forgets the complete blocks before it
    /// ends: their rows are stored (by this batch, an earlier one, or the catch-up at open).
    fn committed(&mut self, first: i64, entries: &[Prepared]) {
        if self.end != first {
            *self = SubjectTail {
                from: first,
                end: first,
                rows: Vec::new(),
            };
        }
        self.rows.extend(
            (first..)
                .zip(entries)
                .filter_map(|(i, p)| p.entry.subject_hmac.clone().map(|s| (s, i))),
        );
        self.end = first + entries.len() as i64;
        let start = self.end / SUBJECT_BLOCK * SUBJECT_BLOCK;
        if self.from < start {
            self.rows.retain(|(_, i)| *i >= start);
            self.from = start.min(self.end);
        }
    }
}

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
/// PostgreSQL, written by cached prepared statements of [`SQLITE_INSERT_ROWS`] rows each.
fn commit_sqlite(
    c: &mut rusqlite::Connection,
    first: i64,
    entries: &[Prepared],
    pages: &[PageWrite],
    checkpoint: Option<&StoredCheckpoint>,
    subjects: &mut SubjectTail,
) -> Result<()> {
    use rusqlite::{TransactionBehavior, params};
    // IMMEDIATE: take the write lock (waiting behind the sqlx pool's writers) before
    // reading where the log ends, so no other write can slip in between.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let end: i64 = tx.prepare_cached(LOG_END)?.query_row([], |r| r.get(0))?;
    if end != first {
        return Err(Error::Conflict(format!(
            "the log ends at {end}, this node expected {first}"
        )));
    }
    sqlite_insert_rows(&tx, &ENTRY_INSERTS, entries, |stmt, row, n, p| {
        Ok(bind_entry(stmt, row, first + to_i64(n as u64)?, p)?)
    })?;
    let end = first + to_i64(entries.len() as u64)?;
    // Only the batch that completes a block writes it (catch-up is done at open).
    if end / SUBJECT_BLOCK > first / SUBJECT_BLOCK {
        let done: i64 = tx
            .prepare_cached("SELECT blocks FROM audit_subject_blocks WHERE id = 0")?
            .query_row([], |r| r.get(0))?;
        let full = end / SUBJECT_BLOCK;
        for block in done..full {
            match subjects.block_rows(block, first, entries) {
                Some(rows) => {
                    sqlite_insert_rows(&tx, &SUBJECT_INSERTS, &rows, |stmt, row, _, r| {
                        Ok(bind_row(stmt, row, &[&block, &Digest::of(r.0), &r.1])?)
                    })?
                }
                None => {
                    tx.prepare_cached(SUBJECT_BLOCK_INSERT)?.execute(params![
                        block,
                        block * SUBJECT_BLOCK,
                        (block + 1) * SUBJECT_BLOCK
                    ])?;
                }
            }
        }
        if full > done {
            tx.prepare_cached("UPDATE audit_subject_blocks SET blocks = ?1 WHERE id = 0")?
                .execute([full])?;
        }
    }
    write_pages_sqlite(&tx, pages)?;
    if let Some(cp) = checkpoint {
        tx.prepare_cached(CHECKPOINT_INSERT)?.execute(params![
            to_i64(cp.tree_size)?,
            cp.at_us,
            &cp.root[..],
            cp.note
        ])?;
    }
    tx.commit()?;
    subjects.committed(first, entries);
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
        let sql = "SELECT page, CAST(length(hashes) AS BIGINT) FROM audit_nodes \
                   ORDER BY page DESC LIMIT 1";
        let last: Option<(i64, i64)> =
            on_pool!(self, p, DB => sqlx::query_as(sql).fetch_optional(p).await?);
        Ok(match last {
            None => 0,
            Some((page, bytes)) => leaves_of(to_u64(page)? * PAGE_NODES + to_u64(bytes)? / 32),
        })
    }

    /// The stored hashes of `ids`, in order. A missing node is an error (the tree is
    /// damaged or the size is beyond the log).
    pub async fn tree_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let missing = |id: &NodeId| {
            Error::Invalid(format!(
                "audit tree node (level {}, index {}) is missing; run `paotui audit verify`",
                id.level, id.index
            ))
        };
        let seqs: Vec<u64> = ids
            .iter()
            .map(|id| node_seq(*id).ok_or_else(|| missing(id)))
            .collect::<Result<_>>()?;
        let mut pages: Vec<i64> = seqs
            .iter()
            .map(|s| to_i64(s / PAGE_NODES))
            .collect::<Result<_>>()?;
        pages.sort_unstable();
        pages.dedup();
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(self, p, DB => {
            let mut q =
                QueryBuilder::<DB>::new("SELECT page, hashes FROM audit_nodes WHERE page IN (");
            let mut sep = q.separated(", ");
            for page in &pages {
                sep.push_bind(*page);
            }
            q.push(")");
            q.build_query_as().fetch_all(p).await?
        });
        let found: HashMap<i64, Vec<u8>> = rows.into_iter().collect();
        ids.iter()
            .zip(seqs)
            .map(|(id, s)| {
                let at = usize::try_from(s % PAGE_NODES).unwrap_or(usize::MAX) * 32;
                found
                    .get(&to_i64(s / PAGE_NODES)?)
                    .and_then(|b| b.get(at..at + 32))
                    .and_then(|h| Hash::try_from(h).ok())
                    .ok_or_else(|| missing(id))
            })
            .collect()
    }

    /// The stored nodes numbered `from..to` (in making order), as far as they are stored
    /// without a gap.
    async fn node_span(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        if from >= to {
            return Ok(vec![]);
        }
        let (first, last) = (to_i64(from / PAGE_NODES)?, to_i64((to - 1) / PAGE_NODES)?);
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(self, p, DB => {
            let sql = "SELECT page, hashes FROM audit_nodes WHERE page >= $1 AND page <= $2 \
                       ORDER BY page";
            sqlx::query_as(sql).bind(first).bind(last).fetch_all(p).await?
        });
        let mut out = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
        for (expected, (page, bytes)) in (first..).zip(rows) {
            if page != expected {
                break;
            }
            let base = to_u64(page)? * PAGE_NODES;
            for (k, h) in bytes.chunks_exact(32).enumerate() {
                let s = base + k as u64;
                if (from..to).contains(&s) {
                    out.push(to_hash(h.to_vec())?);
                }
            }
            if bytes.len() as u64 != PAGE_NODES * 32 {
                break;
            }
        }
        Ok(out)
    }

    /// The stored nodes leaves `from..to` made, in making order ([`made_by`]): each leaf
    /// hash, then the subtrees it completed. Stops where the stored tree does.
    pub async fn tree_made(&self, from: u64, to: u64) -> Result<Vec<(NodeId, Hash)>> {
        let hashes = self.node_span(node_count(from), node_count(to)).await?;
        Ok(made_by(from, to).zip(hashes).collect())
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
    ///
    /// On SQLite this blocks the calling thread for the whole commit: only the audit
    /// sequencer calls it, on a thread of its own (`log::start`).
    pub(crate) async fn commit_batch(
        &self,
        first: u64,
        entries: &[Prepared],
        nodes: &[(NodeId, Hash)],
        checkpoint: Option<&StoredCheckpoint>,
    ) -> Result<()> {
        let first_i = to_i64(first)?;
        let pages = node_pages(first, entries.len(), nodes)?;
        let p = match &self.backend {
            Backend::Sqlite(_, local) => {
                let mut subjects = local.writer.subjects();
                local.writer.run_here(|c| {
                    commit_sqlite(c, first_i, entries, &pages, checkpoint, &mut subjects)
                })?;
                local.writer.committed(entries.len() as u64);
                return Ok(());
            }
            Backend::Postgres(p) => p,
        };
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
            entries.iter().map(|p| f(&p.entry)).collect()
        };
        let idx: Vec<i64> = (0..entries.len())
            .map(|i| Ok(first_i + to_i64(i as u64)?))
            .collect::<Result<_>>()?;
        sqlx::query(&PG_ENTRY_INSERT)
            .bind(idx)
            .bind(entries.iter().map(|p| p.entry.at_us).collect::<Vec<i64>>())
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
                    .map(|p| i32::from(p.entry.status))
                    .collect::<Vec<i32>>(),
            )
            .bind(col(|e| e.reason.as_deref()))
            .bind(col(|e| e.subject_hmac.as_deref()))
            .bind(
                entries
                    .iter()
                    .map(|p| p.fields.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(col(|e| e.body_sha256.as_deref()))
            .bind(
                entries
                    .iter()
                    .map(|p| p.decision.as_ref().map(|d| d.0))
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(
                entries
                    .iter()
                    .map(|p| p.decision.as_ref().map(|d| d.1.as_str()))
                    .collect::<Vec<Option<&str>>>(),
            )
            .execute(&mut *tx)
            .await?;
        // Only the batch that completes a block writes it (catch-up is done at open).
        let end_i = first_i + to_i64(entries.len() as u64)?;
        if end_i / SUBJECT_BLOCK > first_i / SUBJECT_BLOCK {
            let _ = index_subject_blocks!(tx, end_i, i64::MAX);
        }
        write_pages_pg(&mut tx, pages).await?;
        if let Some(cp) = checkpoint {
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

    /// Writes the nodes the `leaves` leaves from `from` make (building the tree of a log
    /// that predates it, or whose tree migration 0010 dropped), in one transaction.
    pub(crate) async fn write_nodes(
        &self,
        from: u64,
        leaves: usize,
        nodes: &[(NodeId, Hash)],
    ) -> Result<()> {
        let pages = node_pages(from, leaves, nodes)?;
        match &self.backend {
            Backend::Sqlite(_, local) => {
                local
                    .writer
                    .run(move |c| {
                        let tx = c.transaction()?;
                        write_pages_sqlite(&tx, &pages)?;
                        tx.commit()?;
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(p) => {
                let mut tx = p.begin().await?;
                write_pages_pg(&mut tx, pages).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries whose subjects are `subjects` (`None`: no subject).
    fn with_subjects(subjects: &[Option<&str>]) -> Vec<Prepared> {
        subjects
            .iter()
            .map(|s| Prepared::new(crate::audit::test_entry("r", s.map(str::to_string))).unwrap())
            .collect()
    }

    #[test]
    fn the_subject_tail_gives_a_block_it_saw_whole_and_nothing_else() {
        let b = SUBJECT_BLOCK;
        let mut tail = SubjectTail::default();
        let one = with_subjects(&[Some("c"), None, Some("a")]);
        tail.committed(0, &one);
        let two = with_subjects(&[Some("b"), Some("a")]);
        // Block 0 from the kept subjects and the batch about to commit, in key order.
        assert_eq!(
            tail.block_rows(0, 3, &two),
            Some(vec![("a", 2), ("a", 4), ("b", 3), ("c", 0)])
        );
        // A batch that does not follow on from what was kept (it failed, or another
        // writer appended) cannot use it.
        assert_eq!(tail.block_rows(0, 4, &two), None);
        // A failed batch is never taken in: the batch that takes its place can.
        let three = with_subjects(&[Some("d")]);
        assert_eq!(
            tail.block_rows(0, 3, &three),
            Some(vec![("a", 2), ("c", 0), ("d", 3)])
        );
        // A tail that starts inside block 0 (the log was reopened there) leaves that
        // block to the SQL, but gives the next block whole.
        let mut tail = SubjectTail::default();
        tail.committed(b - 2, &one);
        assert_eq!(tail.block_rows(0, b + 1, &two), None);
        tail.committed(b + 1, &two);
        assert_eq!(tail.from, b);
        assert_eq!(
            tail.block_rows(1, b + 3, &three),
            Some(vec![("a", b), ("a", b + 2), ("b", b + 1), ("d", b + 3)])
        );
    }

    /// Every node the frontier makes, in order, for the first `n` leaves.
    fn made(n: u64) -> Vec<(NodeId, Hash)> {
        let mut f = Frontier::default();
        let mut out = Vec::new();
        for i in 0..n {
            f.push(tlog::leaf_hash(&i.to_be_bytes()), |id, h| {
                out.push((id, *h))
            });
        }
        out
    }

    #[test]
    fn node_numbers_follow_the_order_appending_makes_nodes() {
        let all = made(1000);
        for (k, (id, _)) in all.iter().enumerate() {
            assert_eq!(node_seq(*id), Some(k as u64), "{id:?}");
        }
        for n in 0..=1000u64 {
            let count = node_count(n);
            assert_eq!(
                count,
                all.iter()
                    .filter(|(id, _)| id.first_leaf() + (1 << id.level) <= n)
                    .count() as u64
            );
            assert_eq!(leaves_of(count), n);
            // A count between two trees' belongs to the smaller.
            if n > 0 {
                assert_eq!(leaves_of(count - 1), n - 1);
            }
        }
        let ids: Vec<NodeId> = all.iter().map(|(id, _)| *id).collect();
        for (from, to) in [(0, 1000), (0, 0), (5, 6), (7, 8), (100, 613)] {
            let span: Vec<NodeId> = made_by(from, to).collect();
            let (a, b) = (node_count(from) as usize, node_count(to) as usize);
            assert_eq!(span, ids[a..b], "{from}..{to}");
        }
        assert_eq!(
            node_seq(NodeId {
                level: 64,
                index: 0
            }),
            None
        );
        assert_eq!(
            node_seq(NodeId {
                level: 1,
                index: u64::MAX
            }),
            None
        );
        // Its last leaf fits in u64, its number does not.
        assert_eq!(
            node_seq(NodeId {
                level: 62,
                index: 2
            }),
            None
        );
    }

    #[test]
    fn page_writes_fill_the_open_page_then_new_ones() {
        let hashes: Vec<Hash> = made(200).into_iter().map(|(_, h)| h).collect();
        for (seq, n) in [
            (0, 0),
            (0, 64),
            (0, 65),
            (10, 54),
            (10, 55),
            (63, 1),
            (63, 200),
        ] {
            let ws = page_writes(seq, &hashes[..n]).unwrap();
            let mut at = seq;
            let mut joined = Vec::new();
            for (k, w) in ws.iter().enumerate() {
                assert_eq!(w.page as u64, at / PAGE_NODES);
                assert_eq!(w.have as u64, at % PAGE_NODES * 32);
                // Only the first write may land on a page that holds something.
                assert!(k == 0 || w.have == 0);
                assert!(w.have as usize + w.bytes.len() <= PAGE_NODES as usize * 32);
                at += w.bytes.len() as u64 / 32;
                joined.extend_from_slice(&w.bytes);
            }
            assert_eq!(joined, hashes[..n].concat(), "{seq} + {n}");
        }
    }

    #[test]
    fn a_batch_must_bring_exactly_the_nodes_its_entries_make() {
        let all = made(20);
        let (a, b) = (node_count(5) as usize, node_count(9) as usize);
        assert!(node_pages(5, 4, &all[a..b]).is_ok());
        assert!(node_pages(5, 4, &all[a..b - 1]).is_err());
        assert!(node_pages(4, 4, &all[a..b]).is_err());
        let mut swapped = all[a..b].to_vec();
        swapped.swap(0, 1);
        assert!(node_pages(5, 4, &swapped).is_err());
    }
}
