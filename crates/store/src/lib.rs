//! Storage ports and the embedded backend.
//!
//! The storage port is split by concern ([`ports`]): the ingest log and its dedupe index
//! ([`DeliveryLog`]), customer states ([`CustomerStates`]), identity ([`Identity`]), the processing commit
//! ([`Processing`]), the outbox ([`Outbox`]), the audit trail ([`AuditTrail`]), timers and schedule runs
//! ([`Timers`]), fetch jobs ([`FetchJobs`]), the model registry with imported history and the catalogue
//! ([`ModelRegistry`]), segments ([`Segments`]), API tokens ([`Tokens`]), approvals and generated copy
//! ([`Approvals`]), the offer log ([`OfferLog`]) and privacy jobs ([`Privacy`]). [`Store`] is all of them
//! from one backend: the processing commit writes states, audit, outbox, timers and the rest in a single
//! transaction, so the concerns it spans live in the same database. [`sqlite::SqliteStore`] is the
//! embedded default; each backend has a file a concern and must pass [`conformance`], which is split the
//! same way.
//!
//! Nothing here knows a platform payload, a destination's request shape, or how scores are computed:
//! states, actions and model bodies are stored as JSON the callers own.

mod codec;
pub mod conformance;
pub mod migrate;
pub mod ports;
pub mod postgres;
pub mod rabbitmq;
pub mod sqlite;
mod types;

pub use ports::*;
pub use types::*;

/// The ports, for `use nudge_store::prelude::*` where a `Store` is used: a trait's methods need it in scope.
pub mod prelude {
    pub use crate::Store;
    pub use crate::ports::*;
}

use async_trait::async_trait;
use nudge_model::{TerminalState, TraceId};

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the store is shut down")]
    Closed,
    /// A conditional write found its condition false and wrote nothing.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The whole storage port: every concern from one backend. Implemented for any type that implements them
/// all, so code holding an `Arc<dyn Store>` reaches every table while a backend writes one impl a concern.
pub trait Store:
    DeliveryLog
    + CustomerStates
    + Identity
    + Processing
    + Outbox
    + AuditTrail
    + Timers
    + FetchJobs
    + ModelRegistry
    + Segments
    + Tokens
    + Approvals
    + OfferLog
    + Privacy
    + Retention
{
}

impl<T> Store for T where
    T: DeliveryLog
        + CustomerStates
        + Identity
        + Processing
        + Outbox
        + AuditTrail
        + Timers
        + FetchJobs
        + ModelRegistry
        + Segments
        + Tokens
        + Approvals
        + OfferLog
        + Privacy
        + Retention
{
}

/// Convenience: the terminal state recorded for a trace, if any.
pub async fn terminal_of(store: &dyn Store, trace: TraceId) -> Result<Option<TerminalState>> {
    Ok(store.trace(trace).await?.and_then(|t| t.terminal))
}
