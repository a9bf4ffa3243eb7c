-- Processing by partition. The leader routes each pending delivery to a partition (`part`: the partition
-- of the customer id its first event names, or spread by seq when it names none); each node then processes
-- the pending deliveries of the partitions it holds, in seq order. NULL: not routed yet.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS part INTEGER;
CREATE INDEX IF NOT EXISTS deliveries_unrouted ON deliveries(seq) WHERE status = 'pending' AND part IS NULL;
CREATE INDEX IF NOT EXISTS deliveries_routed ON deliveries(part, seq) WHERE status = 'pending';
