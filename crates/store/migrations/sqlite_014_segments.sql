-- Discovered segments a marketer can adopt (`nudge segments`). Applied on every open (idempotent).
-- A discovery keeps what a refresh needs to place customers again (the signals, their standardisation,
-- the centroids) and the proposals as they were shown; never per-customer data.
CREATE TABLE IF NOT EXISTS segment_discoveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
-- An adopted segment: a proposal of a discovery under the name the marketer gave it.
CREATE TABLE IF NOT EXISTS adopted_segments (
    name           TEXT PRIMARY KEY,
    discovery_id   INTEGER NOT NULL REFERENCES segment_discoveries(id),
    proposal       INTEGER NOT NULL,
    adopted_at     INTEGER NOT NULL,
    adopted_by     TEXT NOT NULL,
    lists          TEXT NOT NULL DEFAULT '[]',
    members        INTEGER NOT NULL DEFAULT 0,
    refreshed_at   INTEGER,
    refreshes      INTEGER NOT NULL DEFAULT 0,
    last_stability REAL,
    last_joined    INTEGER NOT NULL DEFAULT 0,
    last_left      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (discovery_id, proposal)
);
-- Who is in each adopted segment now (erased with the customer).
CREATE TABLE IF NOT EXISTS segment_members (
    segment     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    since       INTEGER NOT NULL,
    PRIMARY KEY (segment, customer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS segment_members_customer ON segment_members (customer_id);
