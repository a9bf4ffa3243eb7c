-- Progress of `schedule` flows' firings. Applied on every open after the files before it, like them
-- idempotent, so a database written before schedule flows existed gains the table when next opened.
-- One row per schedule flow: the occurrence being fired (or the last one fired, when done), the cron
-- expression it belongs to, and how far through the customers (in key order) the firing got: `cursor` is
-- the last customer whose chunk is in the ingest log; `pending_through` the last customer of the chunk
-- being committed (written before its commit, cleared after), so a restart commits that chunk again under
-- the same dedupe key and a repeat is a duplicate.
CREATE TABLE IF NOT EXISTS schedule_runs (
    flow            TEXT PRIMARY KEY,
    schedule        TEXT NOT NULL,
    fire_at         INTEGER NOT NULL,
    cursor          TEXT,
    pending_through TEXT,
    done            INTEGER NOT NULL
);
