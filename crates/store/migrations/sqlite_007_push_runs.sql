-- Batch pushes (`nudge push`, `pipeline.batch_push_schedule`). Applied on every open after the files
-- before it, idempotent. One row per destination: the run in progress or the last one, which customers
-- it pushes (`selector`: "all" or "segment:<name>"), how far it got (`cursor`: the last customer whose
-- page is settled) and its counts, so a restarted run continues after its cursor.
CREATE TABLE IF NOT EXISTS push_runs (
    destination TEXT PRIMARY KEY,
    selector    TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    cursor      TEXT,
    pushed      INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    deferred    INTEGER NOT NULL,
    done        INTEGER NOT NULL
);
