-- The electronic-license vault. No plaintext personal identifier is stored: holders and
-- license numbers are HMAC-SHA256 hex under the gateway's subject key, and the signed
-- document (which names the holder) is sealed with AES-256-GCM under the data key, with
-- the license id as associated data so a sealed document cannot be moved to another row.

-- Serials are per (type, issuer); unique, not gapless (an insert that fails keeps its serial).
CREATE TABLE license_serials (
    type_code  TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    last       INTEGER NOT NULL,
    PRIMARY KEY (type_code, issuer)
);

CREATE TABLE licenses (
    id            TEXT    PRIMARY KEY,      -- TYPE-DEPT-serial
    type_code     TEXT    NOT NULL,
    issuer        TEXT    NOT NULL,         -- department code
    number_hmac   TEXT    NOT NULL,
    holder_hmac   TEXT    NOT NULL,
    holder_kind   TEXT    NOT NULL,         -- person | business
    status        TEXT    NOT NULL CHECK (status IN ('valid', 'suspended', 'revoked')),
    valid_from    TEXT    NOT NULL,         -- YYYY-MM-DD
    valid_until   TEXT,                     -- NULL: long-term
    issued_at_us  INTEGER NOT NULL,
    source        TEXT    NOT NULL CHECK (source IN ('api', 'import')),
    content_hmac  TEXT    NOT NULL,         -- of the request's content: re-imports are recognised
    document      BLOB    NOT NULL,         -- sealed compact JWS
    UNIQUE (type_code, number_hmac)
);
CREATE INDEX licenses_holder ON licenses (holder_hmac, type_code);

-- Every status change, the first ('issued') included. Append-only.
CREATE TABLE license_events (
    seq          INTEGER PRIMARY KEY,
    license_id   TEXT    NOT NULL REFERENCES licenses (id),
    at_us        INTEGER NOT NULL,
    from_status  TEXT,
    to_status    TEXT    NOT NULL,
    reason       TEXT,
    by_dept      TEXT    NOT NULL,
    by_system    TEXT    NOT NULL,
    operator     TEXT,
    request_id   TEXT    NOT NULL
);
CREATE INDEX license_events_license ON license_events (license_id, seq);

-- 用证记录: every fetch of a license for a case.
CREATE TABLE license_uses (
    seq            INTEGER PRIMARY KEY,
    license_id     TEXT    NOT NULL REFERENCES licenses (id),
    at_us          INTEGER NOT NULL,
    caller_dept    TEXT    NOT NULL,
    caller_system  TEXT    NOT NULL,
    operator       TEXT,
    case_id        TEXT    NOT NULL,
    matter         TEXT,
    request_id     TEXT    NOT NULL
);
CREATE INDEX license_uses_license ON license_uses (license_id, seq);
