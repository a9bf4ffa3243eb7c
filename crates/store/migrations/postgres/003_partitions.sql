-- Delivery partitions. `cluster_meta` holds the partition count the cluster was first started with (a node
-- configured with another count refuses to start); each node records the partitions it delivers, for
-- `nudge cluster status`. Who delivers a partition is decided by a session advisory lock per partition, not
-- by this column.
CREATE TABLE IF NOT EXISTS cluster_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE cluster_nodes ADD COLUMN IF NOT EXISTS partitions TEXT NOT NULL DEFAULT '';
