-- Customer aliases: the other ids a customer is known by (an anonymous visitor, a storefront user id, the
-- email key `email:<digest>`, `phone:<digest>`), each pointing at the customer it was stitched to. Keys
-- are ids or digests, never an address or a number. Written in the processing commit, with the states.
-- Applied on every open after the files before it, idempotent.
CREATE TABLE IF NOT EXISTS aliases (
    alias       TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    trace_id    TEXT
);
CREATE INDEX IF NOT EXISTS aliases_customer ON aliases(customer_id);
