-- Rejected items by id (they are few, like dead letters): a destination's latest error is found by walking
-- the partial indexes of the items that can hold one (pending, rejected, dead), not the whole outbox.
CREATE INDEX IF NOT EXISTS outbox_rejected_id ON outbox(id) WHERE status = 'rejected';
