-- Privacy jobs: erasures and exports (`nudge privacy`, `/api/privacy/*`, a platform's compliance
-- requests). Applied on every open after the files before it, idempotent.
-- One row per request. What names the person for good is `pseudonym` (a keyed pseudonym of their key);
-- `customers` (a JSON array of their keys), `email` and `phone` are kept only while the job is pending
-- (a destination's deletion request needs them) and set to NULL when it is finished.
CREATE TABLE IF NOT EXISTS privacy_jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    pseudonym    TEXT NOT NULL,
    trace_id     TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reference    TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    done         INTEGER NOT NULL DEFAULT 0,
    log_erased   INTEGER NOT NULL DEFAULT 0,
    customers    TEXT,
    email        TEXT,
    phone        TEXT,
    summary      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS privacy_jobs_pending ON privacy_jobs(id) WHERE done = 0;
CREATE INDEX IF NOT EXISTS privacy_jobs_pseudonym ON privacy_jobs(pseudonym, id);
-- The traces (deliveries) an erasure found the person in, until their deliveries are out of the ingest log.
CREATE TABLE IF NOT EXISTS privacy_job_traces (
    job_id   INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    PRIMARY KEY (job_id, trace_id)
) WITHOUT ROWID;
-- Each destination's deletion request of an erasure. status: pending | done | failed | skipped.
CREATE TABLE IF NOT EXISTS privacy_destinations (
    job_id          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    detail          TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (job_id, destination)
) WITHOUT ROWID;
-- Filled with zeros and emptied by an erasure, so free pages left by earlier writes keep no old copy of
-- the person's rows (see `erase_main` in sqlite/privacy.rs).
CREATE TABLE IF NOT EXISTS privacy_scrub (
    b BLOB
);
-- The lookups an erasure and an export make by customer (the other tables are keyed or indexed by it
-- already: customers, audit, transactions; pending outbox items).
CREATE INDEX IF NOT EXISTS outbox_customer_any ON outbox(customer_id);
CREATE INDEX IF NOT EXISTS timers_customer ON timers(customer_id);
CREATE INDEX IF NOT EXISTS approvals_customer ON approvals(customer_id);
CREATE INDEX IF NOT EXISTS flow_decisions_customer ON flow_decisions(customer_id);
