-- The console's lists of dead letters and quarantined deliveries. Applied on every open after the files
-- before it, idempotent. Both lists go newest first a page at a time; these partial indexes hold the dead
-- or quarantined rows alone, so a page reads only those, however many rows the tables hold in all.
CREATE INDEX IF NOT EXISTS outbox_dead_id ON outbox(id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS processed_quarantined_seq ON processed(seq) WHERE status = 'quarantined';
