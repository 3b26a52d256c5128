-- Alerts (电子监察): raised by a rule for one audit entry; (rule, idx) once only, so a
-- rule evaluated again raises nothing new for what it already flagged.
CREATE TABLE alerts (
    id            BIGINT  PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    rule          TEXT    NOT NULL,
    severity      TEXT    NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    idx           BIGINT  NOT NULL,          -- the audit entry behind it
    detail        TEXT,
    raised_at_us  BIGINT  NOT NULL,
    acked_at_us   BIGINT,
    acked_by      TEXT,
    note          TEXT,
    UNIQUE (rule, idx)
);
CREATE INDEX alerts_open ON alerts (acked_at_us, id);
