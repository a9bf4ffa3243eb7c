//! Segments in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Segments for PgStore {
    async fn save_segment_discovery(&self, created_at_ms: i64, body: serde_json::Value) -> Result<i64> {
        let _ = self;
        Err(StoreError::Database("save_segment_discovery: not implemented on PostgreSQL yet".into()))
    }

    async fn segment_discoveries(&self, limit: usize) -> Result<Vec<SegmentDiscoveryRecord>> {
        let _ = self;
        Err(StoreError::Database("segment_discoveries: not implemented on PostgreSQL yet".into()))
    }

    async fn segment_discovery(&self, id: i64) -> Result<Option<SegmentDiscoveryRecord>> {
        let _ = self;
        Err(StoreError::Database("segment_discovery: not implemented on PostgreSQL yet".into()))
    }

    async fn adopt_segment(&self, segment: AdoptedSegment) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("adopt_segment: not implemented on PostgreSQL yet".into()))
    }

    async fn adopted_segments(&self) -> Result<Vec<AdoptedSegment>> {
        let _ = self;
        Err(StoreError::Database("adopted_segments: not implemented on PostgreSQL yet".into()))
    }

    async fn drop_segment(&self, name: &str) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("drop_segment: not implemented on PostgreSQL yet".into()))
    }

    async fn segment_members(&self, name: &str) -> Result<Vec<CustomerId>> {
        let _ = self;
        Err(StoreError::Database("segment_members: not implemented on PostgreSQL yet".into()))
    }

    async fn segment_memberships(&self) -> Result<Vec<(CustomerId, String)>> {
        let _ = self;
        Err(StoreError::Database("segment_memberships: not implemented on PostgreSQL yet".into()))
    }

    async fn replace_segment_members(&self, refresh: SegmentRefresh) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("replace_segment_members: not implemented on PostgreSQL yet".into()))
    }
}
