-- "Who read my data" finds entries by subject HMAC. As an index on audit_entries those
-- random keys dirtied about one index page per entry in every durable append. The lookup
-- now lives in audit_subjects, written one block of 16,384 entries at a time in key order
-- (a sequential write) by the append that completes the block; a lookup reads the indexed
-- blocks and scans the not yet indexed tail of the log (under one block) by index range.
DROP INDEX audit_entries_subject;
CREATE TABLE audit_subjects (
    block         INTEGER NOT NULL,          -- idx / 16384
    subject_hmac  TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    PRIMARY KEY (block, subject_hmac, idx)
) WITHOUT ROWID;
-- How many blocks are in audit_subjects (one row).
CREATE TABLE audit_subject_blocks (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    blocks  INTEGER NOT NULL
);
INSERT INTO audit_subjects (block, subject_hmac, idx)
    SELECT idx / 16384, subject_hmac, idx FROM audit_entries
    WHERE subject_hmac IS NOT NULL
      AND idx < (SELECT (COALESCE(MAX(idx) + 1, 0) / 16384) * 16384 FROM audit_entries);
INSERT INTO audit_subject_blocks (id, blocks)
    SELECT 0, COALESCE(MAX(idx) + 1, 0) / 16384 FROM audit_entries;
