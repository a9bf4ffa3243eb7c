-- The ingest log (`ingest.db`): every acknowledged inbound delivery, verbatim, appended by the ack path's
-- own writer. Nothing else writes here, so an acknowledgement never waits for processing work.

-- The sequence number is the processing order. A trace id is shared by a thin notification and the
-- answer of its fetch job (BigCommerce), so it is indexed, not unique.
CREATE TABLE IF NOT EXISTS deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id     TEXT NOT NULL,
    source       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    shop         TEXT,
    webhook_id   TEXT,
    event_id     TEXT,
    received_at  INTEGER NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    -- How `body` is stored: 0 as received, 1 LZ4-compressed (length-prefixed); reads give back the exact bytes.
    body_codec   INTEGER NOT NULL DEFAULT 0
);

-- Dedupe keys (webhook id and event id) of each delivery, newline-separated, kept for the configured
-- retention (at least 7 days). Rows are appended in delivery order, so inserting and pruning are cheap; the
-- lookup by key is an in-memory hash index rebuilt from this table when the store opens.
CREATE TABLE IF NOT EXISTS delivery_keys (
    seq        INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    keys       TEXT NOT NULL
);
