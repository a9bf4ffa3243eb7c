-- The PostgreSQL backend's schema: the same tables as the embedded backend, in one database (or one schema of
-- it), shared by every node. Times are Unix milliseconds (BIGINT), ids BIGINT identities, JSON bodies TEXT
-- (large values are compressed by PostgreSQL's TOAST). Applied at open under an advisory lock, so nodes
-- starting together apply it once; every statement is idempotent.

-- The ingest log: every acknowledged delivery, verbatim. Unlike the embedded log (processed in seq order, a
-- high-water mark), each row carries its processing status, so deliveries committed by several nodes
-- out of seq order are never skipped.
CREATE TABLE IF NOT EXISTS deliveries (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id     TEXT NOT NULL,
    source       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    shop         TEXT,
    webhook_id   TEXT,
    event_id     TEXT,
    received_at  BIGINT NOT NULL,
    headers      TEXT NOT NULL,
    body         BYTEA NOT NULL,
    -- 0 as received, 1 LZ4-compressed (length-prefixed), as in the embedded log.
    body_codec   SMALLINT NOT NULL DEFAULT 0,
    -- 'pending', 'processed', 'quarantined' (with `reason`), or 'erased' (a privacy erasure's tombstone).
    status       TEXT NOT NULL DEFAULT 'pending',
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_quarantined ON deliveries(seq) WHERE status = 'quarantined';
CREATE INDEX IF NOT EXISTS deliveries_trace ON deliveries(trace_id);
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries(received_at);

-- Dedupe keys, one row a key: the primary key makes dedupe cluster-wide (two nodes committing the same key
-- at once: one insert wins, the other sees a conflict).
CREATE TABLE IF NOT EXISTS delivery_keys (
    key        TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_keys_created ON delivery_keys(created_at);
CREATE INDEX IF NOT EXISTS delivery_keys_seq ON delivery_keys(seq);

-- Customer state in the compact binary encoding (`is_text`: JSON text as bytes, written by an import of an
-- older embedded store and rewritten by `nudge migrate`).
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    email       TEXT,
    state       BYTEA NOT NULL,
    is_text     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_email ON customers(email);
CREATE INDEX IF NOT EXISTS customers_text_state ON customers(customer_id) WHERE is_text;

CREATE TABLE IF NOT EXISTS aliases (
    alias       TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    trace_id    TEXT
);
CREATE INDEX IF NOT EXISTS aliases_customer ON aliases(customer_id);

-- The outbox: one row per destination action, delivered in id order per customer and destination.
CREATE TABLE IF NOT EXISTS outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id        TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    destination     TEXT NOT NULL,
    action          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    origin_us       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_pending_id ON outbox(id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_pending_customer ON outbox(customer_id, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_pending_dest_id ON outbox(destination, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_pending_dest_customer
    ON outbox(destination, customer_id, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox(trace_id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS outbox_dead_id ON outbox(id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS outbox_trace ON outbox(trace_id);
CREATE INDEX IF NOT EXISTS outbox_customer_any ON outbox(customer_id);

CREATE TABLE IF NOT EXISTS push_runs (
    destination TEXT PRIMARY KEY,
    selector    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    cursor      TEXT,
    pushed      BIGINT NOT NULL,
    rejected    BIGINT NOT NULL,
    deferred    BIGINT NOT NULL,
    done        BOOLEAN NOT NULL
);

-- The audit trail: one row a record.
CREATE TABLE IF NOT EXISTS audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id    TEXT NOT NULL,
    customer_id TEXT,
    stage       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_trace ON audit(trace_id, id);
CREATE INDEX IF NOT EXISTS audit_customer ON audit(customer_id, id);

-- Exactly one terminal state per trace.
CREATE TABLE IF NOT EXISTS terminal (
    trace_id TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    reason   TEXT,
    at       BIGINT NOT NULL
);

-- Abandonment timers, one per open checkout.
CREATE TABLE IF NOT EXISTS timers (
    checkout_token TEXT PRIMARY KEY,
    cart_token     TEXT,
    customer_id    TEXT NOT NULL,
    due_at         BIGINT NOT NULL,
    payload        TEXT NOT NULL,
    origin_trace   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_due ON timers(due_at);
CREATE INDEX IF NOT EXISTS timers_cart ON timers(cart_token);
CREATE INDEX IF NOT EXISTS timers_customer ON timers(customer_id);

CREATE TABLE IF NOT EXISTS schedule_runs (
    flow            TEXT PRIMARY KEY,
    schedule        TEXT NOT NULL,
    fire_at         BIGINT NOT NULL,
    cursor          TEXT,
    pending_through TEXT,
    done            BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS fetch_jobs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id        TEXT NOT NULL,
    source          TEXT NOT NULL,
    job             TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    settled_at      BIGINT
);
CREATE INDEX IF NOT EXISTS fetch_jobs_due ON fetch_jobs(next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS fetch_jobs_trace ON fetch_jobs(trace_id);

CREATE TABLE IF NOT EXISTS transactions (
    customer_id TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    day         BIGINT NOT NULL,
    amount      TEXT NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (customer_id, order_id)
);

CREATE TABLE IF NOT EXISTS model_versions (
    id         TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS products (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    record     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS segment_discoveries (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adopted_segments (
    name           TEXT PRIMARY KEY,
    discovery_id   BIGINT NOT NULL REFERENCES segment_discoveries(id),
    proposal       BIGINT NOT NULL,
    adopted_at     BIGINT NOT NULL,
    adopted_by     TEXT NOT NULL,
    lists          TEXT NOT NULL DEFAULT '[]',
    members        BIGINT NOT NULL DEFAULT 0,
    refreshed_at   BIGINT,
    refreshes      BIGINT NOT NULL DEFAULT 0,
    last_stability DOUBLE PRECISION,
    last_joined    BIGINT NOT NULL DEFAULT 0,
    last_left      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (discovery_id, proposal)
);
CREATE TABLE IF NOT EXISTS segment_members (
    segment     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    since       BIGINT NOT NULL,
    PRIMARY KEY (segment, customer_id)
);
CREATE INDEX IF NOT EXISTS segment_members_customer ON segment_members(customer_id);

CREATE TABLE IF NOT EXISTS api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE IF NOT EXISTS approvals (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id     TEXT NOT NULL,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    actions      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    decided_at   BIGINT,
    decided_by   TEXT,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS approvals_flow ON approvals(flow, id);
CREATE INDEX IF NOT EXISTS approvals_pending_expiry ON approvals(expires_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_pending_trace ON approvals(trace_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_pending_flow ON approvals(flow, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_customer ON approvals(customer_id);

CREATE TABLE IF NOT EXISTS flow_decisions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    status       TEXT NOT NULL,
    matched      BOOLEAN NOT NULL,
    baseline     BOOLEAN,
    trace_id     TEXT NOT NULL,
    arm          TEXT
);
CREATE INDEX IF NOT EXISTS flow_decisions_flow_at ON flow_decisions(flow, at);
CREATE INDEX IF NOT EXISTS flow_decisions_customer ON flow_decisions(customer_id);

CREATE TABLE IF NOT EXISTS llm_usage (
    month       TEXT PRIMARY KEY,
    tokens      BIGINT NOT NULL DEFAULT 0,
    generations BIGINT NOT NULL DEFAULT 0,
    fallbacks   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS offer_log (
    id            TEXT PRIMARY KEY,
    flow          TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    arm           TEXT NOT NULL,
    propensity    DOUBLE PRECISION NOT NULL,
    explored      BOOLEAN NOT NULL,
    context       TEXT NOT NULL,
    decided_at    BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    outcome_value DOUBLE PRECISION,
    settled_at    BIGINT,
    settle_seq    BIGINT
);
CREATE INDEX IF NOT EXISTS offer_log_open ON offer_log(customer_id) WHERE settled_at IS NULL;
CREATE INDEX IF NOT EXISTS offer_log_window ON offer_log(window_end) WHERE settled_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS offer_log_settle_seq ON offer_log(settle_seq) WHERE settle_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS offer_log_flow ON offer_log(flow, decided_at);
-- Settlement order across nodes.
CREATE SEQUENCE IF NOT EXISTS offer_settle_seq;

CREATE TABLE IF NOT EXISTS privacy_jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL,
    pseudonym    TEXT NOT NULL,
    trace_id     TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reference    TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    done         BOOLEAN NOT NULL DEFAULT FALSE,
    log_erased   BOOLEAN NOT NULL DEFAULT FALSE,
    customers    TEXT,
    email        TEXT,
    phone        TEXT,
    summary      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS privacy_jobs_pending ON privacy_jobs(id) WHERE NOT done;
CREATE INDEX IF NOT EXISTS privacy_jobs_pseudonym ON privacy_jobs(pseudonym, id);
CREATE TABLE IF NOT EXISTS privacy_job_traces (
    job_id   BIGINT NOT NULL,
    trace_id TEXT NOT NULL,
    PRIMARY KEY (job_id, trace_id)
);
CREATE TABLE IF NOT EXISTS privacy_destinations (
    job_id          BIGINT NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    detail          TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (job_id, destination)
);
