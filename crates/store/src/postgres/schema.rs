//! Schema versions, for rolling upgrades: which schema a database has, and whether a node may run on it.
//!
//! Every build applies its migrations (idempotent, under an advisory lock) when it connects, and records in
//! `cluster_meta` the highest schema version applied (`schema_version`), the oldest version a node may be
//! built for and still run on it (`schema_readable_from`), and the nudge version that last raised it. A
//! migration that only adds (tables, columns with defaults, indexes) keeps `readable_from`: nodes of the
//! older build keep running beside the newer ones during a rolling upgrade. One that removes or changes what
//! older builds use raises it, and then:
//! - a node built for an older schema than `readable_from` refuses to start, and says to upgrade it;
//! - the newer build refuses to raise it while a live node runs an older schema, and names the nodes to
//!   stop first.

use super::{PgStore, Tx};
use crate::{Result, StoreError};

/// The schema version this build applies: the number of its last migration.
pub const SCHEMA_VERSION: i64 = 7;

/// The oldest schema version a node may be built for and still run on a database this build migrated.
/// Migrations 1–6 only added. Schema 7 routes processing by partition: every node processes its partitions,
/// and a state is written only if it is still what the batch read. A leader of an earlier build processes
/// every delivery and overwrites states unconditionally, so it must not run beside this build.
pub const READABLE_FROM: i64 = 7;

/// Nodes recorded before schema versions were (schema 5) are counted as running schema 5.
pub(crate) const UNVERSIONED_NODE_SCHEMA: i64 = 5;

/// A node is counted as live, for the upgrade check, while its heartbeat is younger than this.
pub const NODE_LIVE_FOR_MS: i64 = 10_000;

/// What a database records of its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaRecord {
    pub version: i64,
    pub readable_from: i64,
    /// The nudge version that applied `version`.
    pub upgraded_by: String,
}

/// Whether a build applying `version` and needing `readable_from` may run on a database that records
/// `recorded`, with these live nodes (id, the schema each runs). The error says what to do.
pub fn may_run(
    recorded: Option<&SchemaRecord>,
    live_nodes: &[(String, i64)],
    version: i64,
    readable_from: i64,
) -> std::result::Result<(), String> {
    // A database from before schema versions, with live nodes: they run schema 5, readable by every build.
    let unversioned =
        SchemaRecord { version: UNVERSIONED_NODE_SCHEMA, readable_from: 1, upgraded_by: String::new() };
    let r = match recorded {
        Some(r) => r,
        None if live_nodes.is_empty() => return Ok(()),
        None => &unversioned,
    };
    if r.readable_from > version {
        return Err(format!(
            "this database's schema is version {} (applied by nudge {}), which nodes built for a schema older \
             than {} cannot run on; this node is built for schema {version}: upgrade it to nudge {} or later",
            r.version, r.upgraded_by, r.readable_from, r.upgraded_by
        ));
    }
    if readable_from > r.readable_from {
        let older: Vec<String> = live_nodes
            .iter()
            .filter(|(_, v)| *v < readable_from)
            .map(|(id, v)| format!("{id} (schema {v})"))
            .collect();
        if !older.is_empty() {
            return Err(format!(
                "this upgrade (schema {version}) changes the tables in a way nodes built for a schema older than \
                 {readable_from} cannot run beside: stop {} first, then start the upgraded nodes",
                older.join(", ")
            ));
        }
    }
    Ok(())
}

impl PgStore {
    /// The schema this database records (`None` before any node recorded it).
    pub async fn schema_record(&self) -> Result<Option<SchemaRecord>> {
        let mut tx = self.begin().await?;
        let r = recorded(&mut tx).await?;
        tx.commit().await?;
        Ok(r)
    }
}

/// The recorded schema, read inside the schema lock's transaction (`None` on a new database).
pub(crate) async fn recorded(tx: &mut Tx) -> Result<Option<SchemaRecord>> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('cluster_meta')::text").fetch_one(&mut **tx).await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT key, value FROM cluster_meta
         WHERE key IN ('schema_version', 'schema_readable_from', 'schema_upgraded_by')",
    )
    .fetch_all(&mut **tx)
    .await?;
    let get = |k: &str| rows.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let number = |k: &str| -> Result<Option<i64>> {
        get(k)
            .map(|v| v.parse().map_err(|_| StoreError::Corrupt(format!("cluster_meta {k} = {v:?}"))))
            .transpose()
    };
    Ok(match (number("schema_version")?, number("schema_readable_from")?) {
        (Some(version), Some(readable_from)) => Some(SchemaRecord {
            version,
            readable_from,
            upgraded_by: get("schema_upgraded_by").unwrap_or_default(),
        }),
        _ => None,
    })
}

/// The live nodes and the schema each runs (before migration 006 there is no column: every node ran 5).
pub(crate) async fn live_nodes(tx: &mut Tx, now_ms: i64) -> Result<Vec<(String, i64)>> {
    let has_nodes: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('cluster_nodes')::text").fetch_one(&mut **tx).await?;
    if has_nodes.is_none() {
        return Ok(Vec::new());
    }
    let has_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                        WHERE table_schema = current_schema() AND table_name = 'cluster_nodes'
                          AND column_name = 'schema_version')",
    )
    .fetch_one(&mut **tx)
    .await?;
    let sql = if has_column {
        "SELECT node_id, schema_version FROM cluster_nodes WHERE seen_at > $1 ORDER BY node_id"
    } else {
        "SELECT node_id, $2::bigint FROM cluster_nodes WHERE seen_at > $1 ORDER BY node_id"
    };
    let q = sqlx::query_as(sql).bind(now_ms - NODE_LIVE_FOR_MS);
    let q = if has_column { q } else { q.bind(UNVERSIONED_NODE_SCHEMA) };
    Ok(q.fetch_all(&mut **tx).await?)
}

/// Records that this build's schema is applied; the recorded numbers never go down (an older compatible
/// node starting after an upgrade leaves them as they are).
pub(crate) async fn record(tx: &mut Tx, before: Option<&SchemaRecord>) -> Result<()> {
    for (key, value) in [("schema_version", SCHEMA_VERSION), ("schema_readable_from", READABLE_FROM)] {
        sqlx::query(
            "INSERT INTO cluster_meta (key, value) VALUES ($1, $2::text)
             ON CONFLICT (key) DO UPDATE
               SET value = GREATEST(cluster_meta.value::bigint, excluded.value::bigint)::text",
        )
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    if before.is_none_or(|b| SCHEMA_VERSION > b.version) {
        sqlx::query(
            "INSERT INTO cluster_meta (key, value) VALUES ('schema_upgraded_by', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(env!("CARGO_PKG_VERSION"))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: i64, readable_from: i64) -> SchemaRecord {
        SchemaRecord { version, readable_from, upgraded_by: "9.9.0".into() }
    }

    #[test]
    fn a_node_runs_on_any_schema_that_stays_readable_for_it() {
        assert_eq!(may_run(None, &[], 6, 1), Ok(()));
        // The same build, an older database, a newer one that only added.
        assert_eq!(may_run(Some(&rec(6, 1)), &[], 6, 1), Ok(()));
        assert_eq!(may_run(Some(&rec(5, 1)), &[("a".into(), 5)], 6, 1), Ok(()));
        assert_eq!(may_run(Some(&rec(9, 3)), &[], 6, 1), Ok(()));
    }

    #[test]
    fn a_node_too_old_for_the_schema_is_told_to_upgrade() {
        let e = may_run(Some(&rec(9, 8)), &[], 6, 1).unwrap_err();
        assert!(e.contains("schema is version 9") && e.contains("upgrade it to nudge 9.9.0"), "{e}");
    }

    #[test]
    fn a_breaking_upgrade_waits_for_the_older_nodes_to_stop() {
        let live = [("a".to_string(), 6), ("b".to_string(), 7), ("c".to_string(), 8)];
        let e = may_run(Some(&rec(7, 1)), &live, 8, 7).unwrap_err();
        assert!(e.contains("stop a (schema 6) first"), "{e}");
        assert!(!e.contains("b (schema 7)"), "{e}");
        assert_eq!(may_run(Some(&rec(7, 1)), &live[1..], 8, 7), Ok(()));
        // Already raised by another upgraded node: nothing more to wait for.
        assert_eq!(may_run(Some(&rec(8, 7)), &live[1..], 8, 7), Ok(()));
        // A database from before schema versions: its live nodes run schema 5.
        let e = may_run(None, &[("old".into(), 5)], 7, 7).unwrap_err();
        assert!(e.contains("stop old (schema 5) first"), "{e}");
        assert_eq!(may_run(None, &[("old".into(), 5)], 7, 1), Ok(()));
    }
}
