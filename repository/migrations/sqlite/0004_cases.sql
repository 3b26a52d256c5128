-- Cases (办件): one application at a window, for one or several matters (一表式 / 并联).
-- The applicant is stored only as HMAC-SHA256 hex under the subject key.
CREATE TABLE cases (
    id              TEXT    PRIMARY KEY,
    applicant_hmac  TEXT    NOT NULL,
    applicant_kind  TEXT    NOT NULL CHECK (applicant_kind IN ('person', 'business')),
    site_dept       TEXT    NOT NULL,          -- the accepting window's department
    site_system     TEXT    NOT NULL,
    operator        TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('accepted', 'supplemented', 'approved', 'completed', 'rejected')),
    accepted_at_us  INTEGER NOT NULL,
    accepted_on     TEXT    NOT NULL,          -- YYYY-MM-DD, the day deadlines count from
    closed_at_us    INTEGER
);
CREATE INDEX cases_applicant ON cases (applicant_hmac);

CREATE TABLE case_matters (
    case_id   TEXT NOT NULL REFERENCES cases (id),
    matter    TEXT NOT NULL,
    owner     TEXT NOT NULL,                   -- the handling department
    deadline  TEXT,                            -- NULL: immediate (即办)
    PRIMARY KEY (case_id, matter)
);

-- Every status change, acceptance included. Append-only.
CREATE TABLE case_events (
    seq        INTEGER PRIMARY KEY,
    case_id    TEXT NOT NULL REFERENCES cases (id),
    at_us      INTEGER NOT NULL,
    event      TEXT NOT NULL,
    by_dept    TEXT NOT NULL,
    by_system  TEXT NOT NULL,
    operator   TEXT,
    note       TEXT
);
CREATE INDEX case_events_case ON case_events (case_id, seq);

-- 一事一评: the applicant's rating, once per case.
CREATE TABLE case_evaluations (
    case_id  TEXT PRIMARY KEY REFERENCES cases (id),
    at_us    INTEGER NOT NULL,
    score    INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment  TEXT
);
