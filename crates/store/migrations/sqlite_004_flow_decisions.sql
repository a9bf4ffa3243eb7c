-- Decisions of measured flows (a baseline rule or a holdout group), one row per flow evaluated for a
-- customer: what the shadow and lift reports are computed from. Applied on every open after the files
-- before it, idempotent like them. status: the flow's decision (live, shadow, held_out, no_consent, capped,
-- awaiting_approval, not_matched, error); matched: the condition held; baseline: the baseline rule's verdict
-- (NULL without a baseline).
CREATE TABLE IF NOT EXISTS flow_decisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    at           INTEGER NOT NULL,
    status       TEXT NOT NULL,
    matched      INTEGER NOT NULL,
    baseline     INTEGER,
    trace_id     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_decisions_flow_at ON flow_decisions(flow, at);
