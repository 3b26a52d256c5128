-- Parquet archive runs: audit entries [from_idx, upto_idx) copied to Parquet under dir.
-- The entries stay in audit_entries (the Merkle log is verified from them); auditor SQL
-- reads the recorded runs and the live table only from the last upto_idx, so each entry
-- is counted once. Runs are contiguous: each starts where the previous one ended.
CREATE TABLE archives (
    id         BIGINT  PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    from_idx   BIGINT  NOT NULL,
    upto_idx   BIGINT  NOT NULL UNIQUE,
    rows       BIGINT  NOT NULL,
    dir        TEXT    NOT NULL,
    at_us      BIGINT  NOT NULL,
    CHECK (upto_idx > from_idx)
);
