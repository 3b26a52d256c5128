-- Other persons or entities a case's matters name, by role (e.g. an enterprise's legal
-- representative, the other parent of a newborn). Data about them may be read for the
-- case like the applicant's. Stored only as HMAC-SHA256 hex under the subject key.
CREATE TABLE case_parties (
    case_id       TEXT NOT NULL REFERENCES cases (id),
    role          TEXT NOT NULL,
    subject_hmac  TEXT NOT NULL,
    subject_kind  TEXT NOT NULL CHECK (subject_kind IN ('person', 'business')),
    PRIMARY KEY (case_id, role, subject_hmac)
);
CREATE INDEX case_parties_subject ON case_parties (subject_hmac);
