-- The access log. One row per API request, written before the response leaves.
-- Subjects are stored only as HMAC-SHA256 hex, response bodies only as SHA-256 hex.
CREATE TABLE audit_entries (
    idx            BIGINT PRIMARY KEY,       -- 0-based, dense, assigned on append
    at_us          BIGINT  NOT NULL,         -- unix microseconds, UTC
    request_id     TEXT    NOT NULL,
    caller_dept    TEXT,
    caller_system  TEXT,
    caller_serial  TEXT,
    operator       TEXT,
    action         TEXT    NOT NULL,         -- e.g. service.query, keys.read
    service        TEXT,
    case_id        TEXT,
    matter         TEXT,
    outcome        TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    status         INTEGER NOT NULL,
    reason         TEXT,
    subject_hmac   TEXT,
    fields         TEXT,                     -- JSON array of released field names
    body_sha256    TEXT
);
CREATE INDEX audit_entries_subject ON audit_entries (subject_hmac) WHERE subject_hmac IS NOT NULL;
CREATE INDEX audit_entries_at ON audit_entries (at_us);
