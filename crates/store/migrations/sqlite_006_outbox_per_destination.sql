-- Per-destination delivery queues. Applied on every open after the files before it, idempotent.
-- Each destination's worker takes its own due items, the oldest pending item of each (customer,
-- destination) pair at a time, so one destination's backlog or outage never blocks another's.
CREATE INDEX IF NOT EXISTS outbox_pending_dest_id ON outbox(destination, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_pending_dest_customer
    ON outbox(destination, customer_id, id) WHERE status = 'pending';
