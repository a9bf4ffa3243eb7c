//! Schema versions on PostgreSQL, for rolling upgrades (runs when `NUDGE_TEST_POSTGRES_URL` is set, in a fresh
//! schema): a new database records this build's schema; a database from before schema versions is not
//! upgraded while a node of that time (counted as schema 5) is live, since schema 7 cannot run beside it, and
//! is once that node stopped; a node starts on a newer schema that stays readable for it and leaves the
//! record as it is; a node built for a schema the database no longer keeps readable refuses
//! to start and says which version to upgrade to.

use nudge_store::StoreError;
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::postgres::schema::{READABLE_FROM, SCHEMA_VERSION, SchemaRecord};
use nudge_store::postgres::{PgConfig, PgStore};

async fn set(pg: &PgStore, key: &str, value: &str) {
    sqlx::query(
        "INSERT INTO cluster_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
    )
    .bind(key)
    .bind(value)
    .execute(pg.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn schema_versions_let_compatible_nodes_run_and_refuse_the_others() {
    let Some(url) = postgres_test_url() else { return };
    let pg = fresh_postgres(&url, "nudge_sv").await;
    let mut config = PgConfig::new(&url);
    config.schema = Some(pg.schema().to_string());
    config.max_connections = 2;
    let this = env!("CARGO_PKG_VERSION").to_string();
    assert_eq!(
        pg.schema_record().await.unwrap(),
        Some(SchemaRecord {
            version: SCHEMA_VERSION,
            readable_from: READABLE_FROM,
            upgraded_by: this.clone()
        })
    );

    // A database from before schema versions, with a live node of that time.
    sqlx::raw_sql(
        "DELETE FROM cluster_meta WHERE key LIKE 'schema_%';
         ALTER TABLE cluster_nodes DROP COLUMN schema_version;
         INSERT INTO cluster_nodes (node_id, address, version, started_at, seen_at, leader)
         VALUES ('old', '127.0.0.1:1', '0.0.9', 0, (extract(epoch from now()) * 1000)::bigint, true)",
    )
    .execute(pg.pool())
    .await
    .unwrap();
    assert_eq!(pg.schema_record().await.unwrap(), None);
    assert_eq!(READABLE_FROM, 7, "schema 7 (processing by partition) cannot run beside older nodes");
    match PgStore::connect(&config).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("stop old (schema 5) first"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the upgrade ran beside a live node of an older schema"),
    }
    // The old node stops: the upgrade runs.
    sqlx::query("UPDATE cluster_nodes SET seen_at = 0").execute(pg.pool()).await.unwrap();
    let upgraded = PgStore::connect(&config).await.expect("the upgrade runs once the old node stopped");
    assert_eq!(upgraded.schema_record().await.unwrap().map(|r| r.version), Some(SCHEMA_VERSION));
    let nodes = upgraded.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| (n.node_id.as_str(), n.schema_version)).collect::<Vec<_>>(),
        [("old", 5)]
    );
    upgraded.close().await;

    // A newer build upgraded the schema, keeping it readable from 7: this build runs, and leaves the record.
    set(&pg, "schema_version", "9").await;
    set(&pg, "schema_readable_from", "7").await;
    set(&pg, "schema_upgraded_by", "9.0.0").await;
    let beside = PgStore::connect(&config).await.expect("a compatible older build runs on the newer schema");
    let newer = SchemaRecord { version: 9, readable_from: 7, upgraded_by: "9.0.0".into() };
    assert_eq!(beside.schema_record().await.unwrap(), Some(newer));
    beside.close().await;

    // Then one that older builds cannot run on: this build refuses before changing anything.
    set(&pg, "schema_readable_from", "8").await;
    match PgStore::connect(&config).await {
        Err(StoreError::Conflict(why)) => {
            assert!(why.contains("schema is version 9") && why.contains("upgrade it to nudge 9.0.0"), "{why}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a node too old for the schema started"),
    }
    pg.drop_schema().await.unwrap();
}
