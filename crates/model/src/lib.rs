//! The canonical vocabulary of nudge.
//!
//! Everything that crosses a crate boundary is defined here: typed identifiers, exact money, the versioned
//! canonical [`Event`] enum that every platform payload is normalised into, scores, decisions with their
//! actions, and audit records. No platform payload shape (Shopify JSON, Klaviyo JSON:API, …) lives here:
//! `ingest` owns inbound shapes and `deliver` owns outbound ones.
//!
//! Layout:
//! - [`ids`]: `Source`, `CustomerId`, `TraceId`.
//! - [`money`]: `Money` (exact decimal + ISO 4217 currency), never `f64`.
//! - [`event`]: the canonical `Event` enum and its `EventEnvelope`.
//! - [`behaviour`]: the signals beyond orders: storefront behaviour, identity, reviews, loyalty,
//!   engagement.
//! - [`score`]: `Score`, `ScoreSet`, `Segment`.
//! - [`decision`]: `Decision`, `Action` (destination-neutral).
//! - [`copy`]: `CopyRequest`, the pseudonymous request for generated copy a decision leaves on a trigger
//!   event.
//! - [`audit`]: `AuditStage`, `TerminalState`, `AuditRecord`.
//! - [`privacy`]: keyed pseudonyms (`pseudonym`, `pseudonymize_json`) for whatever leaves for a model,
//!   an external scorer or an LLM.

pub mod audit;
pub mod behaviour;
pub mod copy;
pub mod decision;
pub mod event;
pub mod ids;
pub mod money;
pub mod privacy;
pub mod score;

pub use audit::{AuditRecord, AuditStage, TerminalState};
pub use behaviour::{
    Behaviour, BehaviourKind, BehaviourProduct, Engagement, EngagementKind, Identity, Loyalty, Review,
    ReviewSentiment, VisitorContext,
};
pub use copy::{COPY_REQUEST_PROPERTY, CopyRequest};
pub use decision::{Action, AttrValue, Decision};
pub use event::{
    Cart, Checkout, CheckoutAbandoned, Customer, EVENT_SCHEMA_VERSION, Event, EventEnvelope, LineItem,
    MarketingConsent, Order, Product, ScheduleTick,
};
pub use ids::{CustomerId, IdError, Source, TraceId};
pub use money::{Currency, Money, MoneyError};
pub use privacy::{PiiKind, PseudonymKey, pseudonym, pseudonymize_json};
pub use score::{RecommendedProduct, Score, ScoreSet, Segment};

/// Timestamps everywhere are UTC-normalised offsets; RFC 3339 on the wire.
pub type Timestamp = time::OffsetDateTime;
