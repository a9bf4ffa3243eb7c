//! Segments in the PostgreSQL backend.
//!
//! Names and customer ids are ordered with `COLLATE "C"` (byte order), as the embedded backend orders them.

use super::*;

#[async_trait]
impl Segments for PgStore {
    async fn save_segment_discovery(&self, created_at_ms: i64, body: serde_json::Value) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO segment_discoveries (created_at, body) VALUES ($1, $2) RETURNING id",
        )
        .bind(created_at_ms)
        .bind(serde_json::to_string(&body)?)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn segment_discoveries(&self, limit: usize) -> Result<Vec<SegmentDiscoveryRecord>> {
        let rows =
            sqlx::query("SELECT id, created_at, body FROM segment_discoveries ORDER BY id DESC LIMIT $1")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(2)?;
                Ok(SegmentDiscoveryRecord {
                    id: r.try_get(0)?,
                    created_at_ms: r.try_get(1)?,
                    body: serde_json::from_str(&body)?,
                })
            })
            .collect()
    }

    async fn segment_discovery(&self, id: i64) -> Result<Option<SegmentDiscoveryRecord>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT created_at, body FROM segment_discoveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(created_at_ms, body)| {
            Ok(SegmentDiscoveryRecord { id, created_at_ms, body: serde_json::from_str(&body)? })
        })
        .transpose()
    }

    async fn adopt_segment(&self, seg: AdoptedSegment) -> Result<()> {
        let mut tx = self.begin().await?;
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM segment_discoveries WHERE id = $1")
            .bind(seg.discovery_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("segment discovery {}", seg.discovery_id)));
        }
        let taken: Option<(i64, i64)> =
            sqlx::query_as("SELECT discovery_id, proposal FROM adopted_segments WHERE name = $1")
                .bind(&seg.name)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((d, p)) = taken {
            return Err(name_taken(&seg.name, Some((d, p))));
        }
        let same: Option<String> =
            sqlx::query_scalar("SELECT name FROM adopted_segments WHERE discovery_id = $1 AND proposal = $2")
                .bind(seg.discovery_id)
                .bind(i64::from(seg.proposal))
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(name) = same {
            return Err(proposal_taken(seg.discovery_id, seg.proposal, Some(&name)));
        }
        // Another node may adopt the same name or proposal between the checks and the insert: the table's
        // unique constraints decide, and the loser gets the same conflict.
        sqlx::query(
            "INSERT INTO adopted_segments (name, discovery_id, proposal, adopted_at, adopted_by, lists)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&seg.name)
        .bind(seg.discovery_id)
        .bind(i64::from(seg.proposal))
        .bind(seg.adopted_at_ms)
        .bind(&seg.adopted_by)
        .bind(serde_json::to_string(&seg.lists)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                if db.constraint() == Some("adopted_segments_pkey") {
                    name_taken(&seg.name, None)
                } else {
                    proposal_taken(seg.discovery_id, seg.proposal, None)
                }
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound(format!("segment discovery {}", seg.discovery_id))
            }
            _ => e.into(),
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn adopted_segments(&self) -> Result<Vec<AdoptedSegment>> {
        let rows = sqlx::query(
            "SELECT name, discovery_id, proposal, adopted_at, adopted_by, lists, members, refreshed_at,
                    refreshes, last_stability, last_joined, last_left
             FROM adopted_segments ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let proposal: i64 = r.try_get(2)?;
                let lists: String = r.try_get(5)?;
                Ok(AdoptedSegment {
                    name: r.try_get(0)?,
                    discovery_id: r.try_get(1)?,
                    proposal: u32::try_from(proposal)
                        .map_err(|_| StoreError::Corrupt(format!("segment proposal {proposal}")))?,
                    adopted_at_ms: r.try_get(3)?,
                    adopted_by: r.try_get(4)?,
                    lists: serde_json::from_str(&lists)?,
                    members: r.try_get::<i64, _>(6)? as u64,
                    refreshed_at_ms: r.try_get(7)?,
                    refreshes: r.try_get::<i64, _>(8)? as u64,
                    last_stability: r.try_get(9)?,
                    last_joined: r.try_get::<i64, _>(10)? as u64,
                    last_left: r.try_get::<i64, _>(11)? as u64,
                })
            })
            .collect()
    }

    async fn drop_segment(&self, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM adopted_segments WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("adopted segment `{name}`")));
        }
        sqlx::query("DELETE FROM segment_members WHERE segment = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn segment_members(&self, name: &str) -> Result<Vec<CustomerId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT customer_id FROM segment_members WHERE segment = $1 ORDER BY customer_id COLLATE \"C\"",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|c| parse_customer(c)).collect()
    }

    async fn segment_memberships(&self) -> Result<Vec<(CustomerId, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT customer_id, segment FROM segment_members
             ORDER BY customer_id COLLATE \"C\", segment COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(c, s)| Ok((parse_customer(&c)?, s))).collect()
    }

    async fn replace_segment_members(&self, refresh: SegmentRefresh) -> Result<()> {
        let mut tx = self.begin().await?;
        // Locks the segment's row: refreshes of one segment (and its drop) take turns.
        let n = sqlx::query(
            "UPDATE adopted_segments SET members = $2, refreshed_at = $3, refreshes = refreshes + 1,
             last_stability = $4, last_joined = $5, last_left = $6 WHERE name = $1",
        )
        .bind(&refresh.segment)
        .bind(refresh.members.len() as i64)
        .bind(refresh.at_ms)
        .bind(refresh.stability)
        .bind(refresh.joined as i64)
        .bind(refresh.left as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("adopted segment `{}`", refresh.segment)));
        }
        let mut members: Vec<String> = refresh.members.iter().map(|c| c.to_string()).collect();
        members.sort();
        members.dedup();
        // Members who stay keep their `since`: only those who left go and those who joined come in.
        sqlx::query(
            "DELETE FROM segment_members WHERE segment = $1
             AND customer_id NOT IN (SELECT UNNEST($2::text[]))",
        )
        .bind(&refresh.segment)
        .bind(&members)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO segment_members (segment, customer_id, since)
             SELECT $1, c, $3 FROM UNNEST($2::text[]) AS m(c)
             ON CONFLICT (segment, customer_id) DO NOTHING",
        )
        .bind(&refresh.segment)
        .bind(&members)
        .bind(refresh.at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The conflict of adopting under a name already taken (by proposal `taken` = (discovery, index), if known).
fn name_taken(name: &str, taken: Option<(i64, i64)>) -> StoreError {
    match taken {
        Some((d, p)) => StoreError::Conflict(format!(
            "a segment named `{name}` is already adopted (proposal {d}-{}); choose another name or drop it first",
            p + 1
        )),
        None => StoreError::Conflict(format!(
            "a segment named `{name}` is already adopted; choose another name or drop it first"
        )),
    }
}

/// The conflict of adopting a proposal already adopted (under `name`, if known).
fn proposal_taken(discovery_id: i64, proposal: u32, name: Option<&str>) -> StoreError {
    let which = format!("{discovery_id}-{}", u64::from(proposal) + 1);
    match name {
        Some(name) => StoreError::Conflict(format!("proposal {which} is already adopted as `{name}`")),
        None => StoreError::Conflict(format!("proposal {which} is already adopted")),
    }
}
