-- The audit log's Merkle tree (RFC 6962) and its signed checkpoints.
-- audit_tree holds every perfect subtree hash: level 0 are the leaf hashes
-- SHA-256(0x00 || canonical entry), level L index i covers leaves [i*2^L, (i+1)*2^L).
-- Proofs read O(log n) rows; appends write about two rows per entry.
CREATE TABLE audit_tree (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Signed checkpoints (C2SP tlog-checkpoint text in a C2SP signed note), stored at a
-- bounded interval in the same transaction as the batch they cover.
CREATE TABLE audit_checkpoints (
    tree_size  INTEGER PRIMARY KEY,
    at_us      INTEGER NOT NULL,
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL
);
