-- The main database: everything derived from the deliveries. The deliveries themselves live in the
-- ingest log (sqlite_log_001.sql, `ingest.db`), written by the ack path alone.

-- Deliveries the processing worker is done with, committed with what it derived from them. Processing goes
-- in log order, so every log entry after the highest seq here is pending.
CREATE TABLE IF NOT EXISTS processed (
    seq      INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT
);
CREATE INDEX IF NOT EXISTS processed_quarantined ON processed(trace_id) WHERE status = 'quarantined';

-- Deliveries put back for processing (`nudge replay`), below the highest processed seq.
CREATE TABLE IF NOT EXISTS requeued (
    seq INTEGER PRIMARY KEY
);

-- Customer state as JSON, keyed by source + platform id; email is a secondary key.
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    email       TEXT,
    state       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS customers_email ON customers(email);

-- Durable outbox: one row per destination action, delivered in id order per customer.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id        TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    destination     TEXT NOT NULL,
    action          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    origin_us       INTEGER NOT NULL
);
-- Pending items only (partial indexes): the due query walks them in id order and stops at its limit,
-- whatever the backlog, and an item leaves both indexes when it is delivered instead of moving within them.
-- (They replaced indexes on (status, id), (customer_id, status, id) and (status, next_attempt_at) that every
-- insert and status change paid for in full.)
DROP INDEX IF EXISTS outbox_due;
DROP INDEX IF EXISTS outbox_pending;
DROP INDEX IF EXISTS outbox_customer;
CREATE INDEX IF NOT EXISTS outbox_pending_id ON outbox(id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_pending_customer ON outbox(customer_id, id) WHERE status = 'pending';
-- Dead letters, for `nudge replay --dead-letters`.
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox(trace_id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS outbox_trace ON outbox(trace_id);

-- The audit trail.
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id    TEXT NOT NULL,
    customer_id TEXT,
    stage       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    -- JSON text, or (details of 256 bytes and more) a BLOB: the JSON LZ4-compressed, length-prefixed.
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_trace ON audit(trace_id, id);
CREATE INDEX IF NOT EXISTS audit_customer ON audit(customer_id, id);

-- Exactly one terminal state per trace (the primary key enforces it).
CREATE TABLE IF NOT EXISTS terminal (
    trace_id TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    reason   TEXT,
    at       INTEGER NOT NULL
) WITHOUT ROWID;

-- Durable abandonment timers, one per open checkout.
CREATE TABLE IF NOT EXISTS timers (
    checkout_token TEXT PRIMARY KEY,
    cart_token     TEXT,
    customer_id    TEXT NOT NULL,
    due_at         INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    origin_trace   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_due ON timers(due_at);
CREATE INDEX IF NOT EXISTS timers_cart ON timers(cart_token);

-- Imported order history (for model fitting), idempotent on (customer, order).
CREATE TABLE IF NOT EXISTS transactions (
    customer_id TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    day         INTEGER NOT NULL,
    amount      TEXT NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (customer_id, order_id)
) WITHOUT ROWID;

-- The model registry: every fit is a version; at most one is active.
CREATE TABLE IF NOT EXISTS model_versions (
    id         TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0,
    body       TEXT NOT NULL
) WITHOUT ROWID;
