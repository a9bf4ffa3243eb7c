-- The offer log: one row per offer a `choose_offer` flow action made. An order within the window settles
-- it with the order's value; past its window it settles at zero. `settle_seq` orders settlements, so the
-- offer bandit's learner reads each settled outcome once, in order, and replays them all after a restart.
-- explored: chosen by the uniform-random holdout (its propensity is the uniform one), used for
-- off-policy evaluation. context: the decision's feature vector as JSON. Applied on every open (idempotent).
CREATE TABLE IF NOT EXISTS offer_log (
    id            TEXT PRIMARY KEY,
    flow          TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    arm           TEXT NOT NULL,
    propensity    REAL NOT NULL,
    explored      INTEGER NOT NULL,
    context       TEXT NOT NULL,
    decided_at    INTEGER NOT NULL,
    window_end    INTEGER NOT NULL,
    outcome_value REAL,
    settled_at    INTEGER,
    settle_seq    INTEGER
);
CREATE INDEX IF NOT EXISTS offer_log_open ON offer_log(customer_id) WHERE settled_at IS NULL;
CREATE INDEX IF NOT EXISTS offer_log_window ON offer_log(window_end) WHERE settled_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS offer_log_settle_seq ON offer_log(settle_seq) WHERE settle_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS offer_log_flow ON offer_log(flow, decided_at);
