//! Segments in the SQLite backend.

use super::*;

#[async_trait]
impl Segments for SqliteStore {
    async fn save_segment_discovery(&self, created_at_ms: i64, body: serde_json::Value) -> Result<i64> {
        let body = serde_json::to_string(&body)?;
        self.write(move |tx| {
            tx.prepare_cached("INSERT INTO segment_discoveries (created_at, body) VALUES (?1, ?2)")?
                .execute(params![created_at_ms, body])?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn segment_discoveries(&self, limit: usize) -> Result<Vec<SegmentDiscoveryRecord>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, created_at, body FROM segment_discoveries ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, created_at_ms, body) = row?;
                out.push(SegmentDiscoveryRecord { id, created_at_ms, body: serde_json::from_str(&body)? });
            }
            Ok(out)
        })
        .await
    }

    async fn segment_discovery(&self, id: i64) -> Result<Option<SegmentDiscoveryRecord>> {
        self.read(move |c| {
            let row: Option<(i64, String)> = c
                .prepare_cached("SELECT created_at, body FROM segment_discoveries WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(created_at_ms, body)| {
                Ok(SegmentDiscoveryRecord { id, created_at_ms, body: serde_json::from_str(&body)? })
            })
            .transpose()
        })
        .await
    }

    async fn adopt_segment(&self, seg: AdoptedSegment) -> Result<()> {
        self.write(move |tx| {
            let known: Option<i64> = tx
                .prepare_cached("SELECT id FROM segment_discoveries WHERE id = ?1")?
                .query_row([seg.discovery_id], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!("segment discovery {}", seg.discovery_id)));
            }
            let taken: Option<(i64, i64)> = tx
                .prepare_cached("SELECT discovery_id, proposal FROM adopted_segments WHERE name = ?1")?
                .query_row([&seg.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((d, p)) = taken {
                return Err(StoreError::Conflict(format!(
                    "a segment named `{}` is already adopted (proposal {d}-{}); choose another name or drop it first",
                    seg.name,
                    p + 1
                )));
            }
            let same: Option<String> = tx
                .prepare_cached("SELECT name FROM adopted_segments WHERE discovery_id = ?1 AND proposal = ?2")?
                .query_row(params![seg.discovery_id, seg.proposal], |r| r.get(0))
                .optional()?;
            if let Some(name) = same {
                return Err(StoreError::Conflict(format!(
                    "proposal {}-{} is already adopted as `{name}`",
                    seg.discovery_id,
                    seg.proposal + 1
                )));
            }
            tx.prepare_cached(
                "INSERT INTO adopted_segments (name, discovery_id, proposal, adopted_at, adopted_by, lists)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                seg.name,
                seg.discovery_id,
                seg.proposal,
                seg.adopted_at_ms,
                seg.adopted_by,
                serde_json::to_string(&seg.lists)?
            ])?;
            Ok(())
        })
        .await
    }

    async fn adopted_segments(&self) -> Result<Vec<AdoptedSegment>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, discovery_id, proposal, adopted_at, adopted_by, lists, members, refreshed_at,
                        refreshes, last_stability, last_joined, last_left
                 FROM adopted_segments ORDER BY name",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    AdoptedSegment {
                        name: r.get(0)?,
                        discovery_id: r.get(1)?,
                        proposal: r.get(2)?,
                        adopted_at_ms: r.get(3)?,
                        adopted_by: r.get(4)?,
                        lists: Vec::new(),
                        members: r.get::<_, i64>(6)? as u64,
                        refreshed_at_ms: r.get(7)?,
                        refreshes: r.get::<_, i64>(8)? as u64,
                        last_stability: r.get(9)?,
                        last_joined: r.get::<_, i64>(10)? as u64,
                        last_left: r.get::<_, i64>(11)? as u64,
                    },
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut seg, lists) = row?;
                seg.lists = serde_json::from_str(&lists)?;
                out.push(seg);
            }
            Ok(out)
        })
        .await
    }

    async fn drop_segment(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx| {
            let n = tx.prepare_cached("DELETE FROM adopted_segments WHERE name = ?1")?.execute([&name])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("adopted segment `{name}`")));
            }
            tx.prepare_cached("DELETE FROM segment_members WHERE segment = ?1")?.execute([&name])?;
            Ok(())
        })
        .await
    }

    async fn segment_members(&self, name: &str) -> Result<Vec<CustomerId>> {
        let name = name.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT customer_id FROM segment_members WHERE segment = ?1 ORDER BY customer_id",
            )?;
            let rows = st.query_map([&name], |r| parse_customer(&r.get::<_, String>(0)?))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn segment_memberships(&self) -> Result<Vec<(CustomerId, String)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT customer_id, segment FROM segment_members ORDER BY customer_id, segment",
            )?;
            let rows = st.query_map([], |r| Ok((parse_customer(&r.get::<_, String>(0)?)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn replace_segment_members(&self, refresh: SegmentRefresh) -> Result<()> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE adopted_segments SET members = ?2, refreshed_at = ?3, refreshes = refreshes + 1,
                     last_stability = ?4, last_joined = ?5, last_left = ?6 WHERE name = ?1",
                )?
                .execute(params![
                    refresh.segment,
                    refresh.members.len() as i64,
                    refresh.at_ms,
                    refresh.stability,
                    refresh.joined as i64,
                    refresh.left as i64
                ])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("adopted segment `{}`", refresh.segment)));
            }
            // Members who stay keep their `since`: only those who left go and those who joined come in.
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS segment_refresh (customer_id TEXT PRIMARY KEY)",
            )?;
            tx.execute_batch("DELETE FROM segment_refresh")?;
            {
                let mut ins =
                    tx.prepare_cached("INSERT OR IGNORE INTO segment_refresh (customer_id) VALUES (?1)")?;
                for c in &refresh.members {
                    ins.execute([c.to_string()])?;
                }
            }
            tx.prepare_cached(
                "DELETE FROM segment_members WHERE segment = ?1
                 AND customer_id NOT IN (SELECT customer_id FROM segment_refresh)",
            )?
            .execute([&refresh.segment])?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO segment_members (segment, customer_id, since)
                 SELECT ?1, customer_id, ?2 FROM segment_refresh",
            )?
            .execute(params![refresh.segment, refresh.at_ms])?;
            tx.execute_batch("DELETE FROM segment_refresh")?;
            Ok(())
        })
        .await
    }
}
