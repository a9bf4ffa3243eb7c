-- Fetch jobs: reads from a platform's API a thin notification needs before it can be processed
-- (BigCommerce's fetch-after-notify). Applied on every open after the files before it, idempotent.
-- A job is written in the same transaction as its notification's processing, so a processed notification
-- always has its job; `job` is the source's own description (JSON), opaque to the store. `status`:
-- `pending` (due at `next_attempt_at`), `done`, or `dead` (with `last_error`; `nudge replay --fetch-jobs`
-- makes it pending again).
CREATE TABLE IF NOT EXISTS fetch_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id        TEXT NOT NULL,
    source          TEXT NOT NULL,
    job             TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    settled_at      INTEGER
);
CREATE INDEX IF NOT EXISTS fetch_jobs_due ON fetch_jobs(next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS fetch_jobs_trace ON fetch_jobs(trace_id);
