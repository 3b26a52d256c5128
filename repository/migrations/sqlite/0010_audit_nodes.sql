-- The audit tree's node hashes in pages instead of one row per node. Every perfect
-- subtree hash is kept, in the order appending makes them: leaf m adds its own hash
-- and then the subtrees it completes, level by level, so node (level L, index i) is
-- number 2m - popcount(m) + L with m = (i+1)*2^L - 1, the last leaf it covers. Page p
-- holds nodes [64p, 64p+64) as 32-byte hashes back to back; only the last page may be
-- short. An append of n entries writes about 2n/64 rows instead of 2n (benches/BENCHMARKS.md,
-- "2026-12-06 (day), the audit tree in pages").
--
-- The old per-node table is dropped, not converted: its hashes are a function of the
-- entries, and the log rebuilds the tree from them when it opens (`building the audit
-- tree` in the log). The signed checkpoints stay, so `paotui audit verify` still proves
-- the rebuilt tree is the one that was signed.
DROP TABLE audit_tree;
CREATE TABLE audit_nodes (
    page    INTEGER PRIMARY KEY,
    hashes  BLOB    NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) BETWEEN 32 AND 2048)
);
