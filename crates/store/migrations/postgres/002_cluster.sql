-- The cluster's own table: every node that runs on this database, with its last heartbeat. A node is live
-- while its heartbeat is recent; the leader is the node holding the leader lease (a session advisory lock,
-- released by PostgreSQL the moment the node's connection ends), recorded here for `nudge cluster status`.
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id    TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    version    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    leader     BOOLEAN NOT NULL DEFAULT FALSE
);
