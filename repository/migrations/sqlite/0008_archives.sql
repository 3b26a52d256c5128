-- Parquet archive runs: audit entries [from_idx, upto_idx) copied to Parquet under dir.
-- The entries stay in audit_entries (the Merkle log is verified from them); auditor SQL
-- reads the recorded runs and the live table only from the last upto_idx, so each entry
-- is counted once. Runs are contiguous: each starts where the previous one ended.
CREATE TABLE archives (
    id         INTEGER PRIMARY KEY,
    from_idx   INTEGER NOT NULL,
    upto_idx   INTEGER NOT NULL UNIQUE,
    rows       INTEGER NOT NULL,
    dir        TEXT    NOT NULL,
    at_us      INTEGER NOT NULL,
    CHECK (upto_idx > from_idx)
);
