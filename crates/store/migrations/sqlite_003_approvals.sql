-- Approval queue (`[flows.approval]`, mode = "approval"). Applied on every open after the files before it,
-- like them idempotent, so a database written before approvals existed gains the table when next opened.
-- One row per decision that waits: its actions as a JSON array of {"destination", "action"}; approved rows
-- put those actions into the outbox (same transaction), rejected and expired ones never.
-- status: pending | approved | rejected | expired.
CREATE TABLE IF NOT EXISTS approvals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id     TEXT NOT NULL,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    actions      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    decided_at   INTEGER,
    decided_by   TEXT,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS approvals_flow ON approvals(flow, id);
CREATE INDEX IF NOT EXISTS approvals_pending_expiry ON approvals(expires_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_pending_trace ON approvals(trace_id) WHERE status = 'pending';
-- What a bulk decision and `nudge approvals list --flow F --status pending` read: a flow's pending items.
CREATE INDEX IF NOT EXISTS approvals_pending_flow ON approvals(flow, id) WHERE status = 'pending';
