-- Rolling upgrades: each node records the schema version its build applies, so an upgrade that older builds
-- cannot run beside can name the live nodes to stop first. Nodes recorded before this ran schema 5. The
-- database's own schema version is kept in `cluster_meta` (`schema_version`, `schema_readable_from`,
-- `schema_upgraded_by`).
ALTER TABLE cluster_nodes ADD COLUMN IF NOT EXISTS schema_version BIGINT NOT NULL DEFAULT 5;
