//! The admin API's OpenAPI 3.1 document, served at `GET /api/openapi.json`.
//!
//! Each `/api` handler in [`crate::http`] carries a `#[utoipa::path]` annotation (its parameters, request
//! body, answers and error answers); [`ApiDoc`] gathers them with the bearer security scheme. The bodies
//! are described by the types below: the handlers answer with types owned by other crates (the store's
//! records, the policy's reports) or with JSON put together in place, and describing them here keeps the
//! OpenAPI dependency in this crate alone. Each description names the fields every answer has (required)
//! and their types; records owned elsewhere that the API passes through as they are stored (an audit
//! record's `detail`, a flow's actions) are left open. The tests hold the document to the route table
//! ([`crate::access::API_ROUTES`]) and to the live answers.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema};

/// The name of the security scheme every operation requires (spelled out again in [`ApiDoc`]'s `security`).
pub const SECURITY_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nudge admin API",
        description = "The admin API of nudge. Every route needs `Authorization: Bearer <token>` (tokens come \
            from `nudge tokens create`); the token's role decides which routes it may call. Errors are \
            answered as `{\"error\": \"…\"}`."
    ),
    paths(
        crate::http::audit_trace,
        crate::http::audit_customer,
        crate::http::list_flows,
        crate::http::reload_flows,
        crate::http::list_approvals,
        crate::http::approve_one,
        crate::http::reject_one,
        crate::http::bulk_approvals,
        crate::http::shadow_report,
        crate::http::lift_report,
        crate::http::privacy_erase,
        crate::http::privacy_export,
        crate::http::privacy_status,
        crate::http::customer_recs,
        crate::http::adopted_segments,
        crate::http::segment_proposals,
        crate::http::adopt_segment,
        crate::http::campaign_hypotheses,
        crate::http::digest_preview,
        crate::http::openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "audit", description = "The audit trail: one trace, one customer."),
        (name = "flows", description = "The running flows."),
        (name = "approvals", description = "The approval queue."),
        (name = "reports", description = "Shadow and lift reports of a flow."),
        (name = "privacy", description = "Privacy export and erasure."),
        (name = "recs", description = "A customer's recommended products."),
        (name = "segments", description = "Adopted and proposed segments."),
        (name = "campaigns", description = "Test hypotheses and digests of the flows' outcomes."),
        (name = "meta", description = "This document."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme the document's `security` names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // What the guard answers on every route before its handler runs.
        let guard_answers = [
            ("401", "No token, a malformed `Authorization` header, or an unknown or revoked token"),
            ("403", "The token's role lacks the route's permission, or the peer is not local"),
            ("503", "The token cannot be checked now (the store is unavailable); retry"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (status, description) in guard_answers {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`nudge tokens create`), `nudge_` and 64 hex digits."))
                    .build(),
            ),
        );
    }
}

/// An error answer with the [`schemas::ApiErrorBody`] body.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schemas::ApiErrorBody::schema())).build(),
        )
        .build()
        .into()
}

/// The document, with this build's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The bodies, as described in the document: never built, only described.
#[allow(dead_code)]
pub mod schemas {
    use utoipa::ToSchema;

    /// Every error answer: a status and this body.
    #[derive(ToSchema)]
    pub struct ApiErrorBody {
        /// What went wrong, for a person.
        pub error: String,
    }

    /// One audit record.
    #[derive(ToSchema)]
    pub struct AuditRecord {
        pub trace_id: String,
        /// The customer's key (`shopify:880012`), when the record is about one.
        pub customer: Option<String>,
        /// The stage (`received`, `decided`, `pushed`, …).
        pub stage: String,
        /// RFC 3339.
        pub at: String,
        /// Stage-specific detail.
        pub detail: serde_json::Value,
    }

    /// One trace's audit trail.
    #[derive(ToSchema)]
    pub struct TraceView {
        pub trace_id: String,
        pub records: Vec<AuditRecord>,
        /// How the delivery ended (`{"state": "delivered"}`, `{"state": "rejected", "reason": …}`), when
        /// it has.
        pub terminal: Option<serde_json::Value>,
    }

    /// A customer's audit trail, newest first.
    #[derive(ToSchema)]
    pub struct CustomerAudit {
        pub customer_id: String,
        pub records: Vec<AuditRecord>,
    }

    /// One running flow, as configured.
    #[derive(ToSchema)]
    pub struct Flow {
        pub name: String,
        pub trigger: serde_json::Value,
        pub schedule: serde_json::Value,
        pub mode: serde_json::Value,
        pub when: serde_json::Value,
        pub holdout_percent: serde_json::Value,
        pub frequency_cap: serde_json::Value,
        pub baseline: serde_json::Value,
        pub actions: Vec<serde_json::Value>,
    }

    /// The running flow set.
    #[derive(ToSchema)]
    pub struct FlowList {
        /// The set's version (content hash).
        pub version: String,
        /// Whether the set is exactly the built-in flows.
        pub builtin: bool,
        pub flows: Vec<Flow>,
    }

    /// What a reload did.
    #[derive(ToSchema)]
    pub struct Reloaded {
        /// The new set's version (content hash).
        pub version: String,
        /// How many flows run now.
        pub flows: u64,
        /// Changes in the configuration a reload does not apply (they need a restart).
        pub notes: Vec<String>,
    }

    /// Where an approval item is in its lifecycle.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ApprovalStatus {
        Pending,
        Approved,
        Rejected,
        Expired,
    }

    /// What a person decides.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ApprovalDecision {
        Approve,
        Reject,
    }

    /// One approval item. Roles below `compliance` see the actions' `email`, `first_name` and
    /// `last_name` as `(redacted)`.
    #[derive(ToSchema)]
    pub struct Approval {
        pub id: i64,
        pub trace_id: String,
        pub flow: String,
        pub flow_version: String,
        pub customer: String,
        /// The actions the item sends when approved (`[{"destination": …, "action": …}]`).
        pub actions: serde_json::Value,
        pub created_at_ms: i64,
        pub expires_at_ms: i64,
        pub status: ApprovalStatus,
        pub decided_at_ms: Option<i64>,
        /// Who decided (`token:<name>`, `cli:<user>`), or `system` for an expiry.
        pub decided_by: Option<String>,
        pub reason: Option<String>,
    }

    /// Approval items, oldest first.
    #[derive(ToSchema)]
    pub struct ApprovalList {
        pub approvals: Vec<Approval>,
        /// The most items the answer holds.
        pub limit: u64,
    }

    /// One item decided.
    #[derive(ToSchema)]
    pub struct Decided {
        pub id: i64,
        /// `approved` or `rejected`.
        pub status: String,
        /// `token:<name>`.
        pub decided_by: String,
    }

    /// The body of `POST /api/approvals/bulk`.
    #[derive(ToSchema)]
    pub struct BulkDecision {
        /// The flow whose pending items are decided.
        pub flow: String,
        pub decision: ApprovalDecision,
        /// Why (kept with each item).
        pub reason: Option<String>,
    }

    /// What a bulk decision did.
    #[derive(ToSchema)]
    pub struct BulkDecided {
        pub flow: String,
        pub decision: ApprovalDecision,
        pub decided: u64,
        pub expired: u64,
        /// Items rejected instead because the customer withdrew consent.
        pub consent_withdrawn: u64,
        /// Items left pending because their generated copy is not there yet.
        pub awaiting_copy: u64,
        pub decided_by: String,
    }

    /// A conversion rate with its 95 % Wilson interval (`null` rates with no customers).
    #[derive(ToSchema)]
    pub struct Proportion {
        pub customers: u64,
        pub conversions: u64,
        pub rate: Option<f64>,
        pub ci_low: Option<f64>,
        pub ci_high: Option<f64>,
    }

    /// A flow against its baseline rule. The window (`window_ms`, `since_ms`, `until_ms`, `partial`) is
    /// given too.
    #[derive(ToSchema)]
    pub struct ShadowReport {
        /// `shadow`.
        pub report: String,
        pub flow: String,
        pub window_ms: i64,
        pub since_ms: i64,
        pub until_ms: i64,
        pub partial: bool,
        /// AI yes & rule yes, AI yes & rule no, AI no & rule yes, AI no & rule no.
        pub cells: Vec<serde_json::Value>,
        pub customers: u64,
        /// Share of customers on whom the two agree; `null` with none.
        pub agreement: Option<f64>,
        pub ai_selected: Proportion,
        pub rule_selected: Proportion,
        pub ai_by_status: std::collections::BTreeMap<String, u64>,
        pub pending_window: u64,
        pub verdict: String,
    }

    /// Treated against held-out customers.
    #[derive(ToSchema)]
    pub struct LiftReport {
        /// `lift`.
        pub report: String,
        pub flow: String,
        pub window_ms: i64,
        pub since_ms: i64,
        pub until_ms: i64,
        pub partial: bool,
        pub treated: Proportion,
        pub held_out: Proportion,
        /// Treated rate minus held-out rate; `null` when a group is empty.
        pub difference: Option<f64>,
        /// 95 % interval of the difference, `[low, high]`; `null` when a group is empty.
        pub difference_ci: Option<Vec<f64>>,
        pub relative_lift: Option<f64>,
        pub treated_by_status: std::collections::BTreeMap<String, u64>,
        pub pending_window: u64,
        pub verdict: String,
    }

    /// The body of `POST /api/privacy/erase`.
    #[derive(ToSchema)]
    pub struct EraseRequest {
        /// The customer's key, such as `shopify:880012`.
        pub customer: String,
    }

    /// An accepted erasure request.
    #[derive(ToSchema)]
    pub struct EraseAccepted {
        /// The request's trace (follow it with `GET /api/privacy/status`).
        pub trace_id: String,
        /// The person's pseudonym, what the finished job is known by.
        pub pseudonym: String,
    }

    /// One destination's part of an erasure.
    #[derive(ToSchema)]
    pub struct ErasureDestination {
        pub destination: String,
        pub status: String,
        pub attempts: u64,
        pub next_attempt_at_ms: i64,
        pub detail: Option<String>,
        pub updated_at_ms: i64,
    }

    /// A privacy job.
    #[derive(ToSchema)]
    pub struct PrivacyJob {
        pub id: i64,
        /// `erase` or `export`.
        pub kind: String,
        pub pseudonym: String,
        pub trace_id: String,
        pub requested_by: String,
        pub reference: Option<String>,
        pub created_at_ms: i64,
        pub updated_at_ms: i64,
        pub done: bool,
        pub log_erased: bool,
        /// What the erasure removed, by kind.
        pub summary: serde_json::Value,
        pub destinations: Vec<ErasureDestination>,
    }

    /// Privacy jobs, newest first.
    #[derive(ToSchema)]
    pub struct PrivacyJobs {
        pub jobs: Vec<PrivacyJob>,
    }

    /// Everything nudge holds about a person.
    #[derive(ToSchema)]
    #[schema(value_type = Object)]
    pub struct PrivacyExport(serde_json::Value);

    /// A recommended product.
    #[derive(ToSchema)]
    pub struct RecommendedProduct {
        /// The product id as nudge knows it (`shopify:8123…`).
        pub id: String,
        pub title: String,
        pub url: Option<String>,
        pub image_url: Option<String>,
        /// A decimal string in `currency`.
        pub price: Option<String>,
        pub currency: Option<String>,
    }

    /// A customer's recommendations.
    #[derive(ToSchema)]
    pub struct Recommendations {
        pub customer_id: String,
        pub model_version: Option<String>,
        /// RFC 3339.
        pub generated_at: Option<String>,
        pub products: Vec<RecommendedProduct>,
    }

    /// A destination list that follows an adopted segment's members.
    #[derive(ToSchema)]
    pub struct SegmentList {
        pub destination: String,
        pub list_id: String,
    }

    /// A proposal adopted under a name.
    #[derive(ToSchema)]
    pub struct AdoptedSegment {
        pub name: String,
        pub discovery_id: i64,
        /// The proposal's index in its discovery (0-based).
        pub proposal: u32,
        pub adopted_at_ms: i64,
        pub adopted_by: String,
        pub lists: Vec<SegmentList>,
        pub members: u64,
        pub refreshed_at_ms: Option<i64>,
        pub refreshes: u64,
        pub last_stability: Option<f64>,
        pub last_joined: u64,
        pub last_left: u64,
    }

    /// The adopted segments.
    #[derive(ToSchema)]
    pub struct AdoptedSegments {
        pub segments: Vec<AdoptedSegment>,
    }

    /// A segment a discovery proposed.
    #[derive(ToSchema)]
    pub struct Proposal {
        /// `<discovery>-<n>`, what adopting names.
        pub id: String,
        pub discovery_id: i64,
        /// RFC 3339.
        pub discovered_at: String,
        pub size: u64,
        pub share: f64,
        pub suggested_name: String,
        pub defining: Vec<String>,
        pub features: Vec<serde_json::Value>,
        /// The name it was adopted under, if it was.
        pub adopted_as: Option<String>,
    }

    /// The proposals of one discovery.
    #[derive(ToSchema)]
    pub struct Proposals {
        pub proposals: Vec<Proposal>,
    }

    /// The body of `POST /api/segments/proposals/{id}/adopt`.
    #[derive(ToSchema)]
    pub struct AdoptRequest {
        /// The segment's name (what flows target).
        pub name: String,
        /// Lists the members are kept in.
        #[schema(default = json!([]))]
        pub lists: Option<Vec<SegmentList>>,
    }

    /// An adopted proposal; its members are computed in the background.
    #[derive(ToSchema)]
    pub struct Adopted {
        pub adopted: AdoptedSegment,
        /// `computing`.
        pub members: String,
    }

    /// Test hypotheses proposed from a flow's past results (`nudge campaigns hypotheses --json`).
    #[derive(ToSchema)]
    pub struct Hypotheses {
        pub flow: String,
        pub window_days: f64,
        pub since_ms: i64,
        pub until_ms: i64,
        /// Ranked proposals: id, kind, title, rationale, evidence (rates, difference, interval, p-values),
        /// sample size per arm, significant, and the split to test.
        pub hypotheses: Vec<serde_json::Value>,
        pub units: u64,
        pub treated: u64,
        pub held_out: u64,
        /// Comparisons made (the Holm family) and how many were significant after adjustment.
        pub comparisons: u64,
        pub significant: u64,
        pub alpha: f64,
        pub power: f64,
        pub method: String,
        pub notes: Vec<String>,
        /// Per hypothesis id, the variant flow (TOML) `nudge campaigns adopt` would write.
        pub variants: std::collections::BTreeMap<String, String>,
        pub pending_window: u64,
        pub excluded_shadow_decisions: u64,
    }

    /// A digest of the flows' outcomes over a period (`nudge digest preview --format json`).
    #[derive(ToSchema)]
    pub struct Digest {
        pub since_ms: i64,
        pub until_ms: i64,
        pub window: String,
        /// Each measured flow: its lift report, campaign report and claims.
        pub flows: Vec<serde_json::Value>,
        /// Flows that could not be measured, with why (`[name, reason]`).
        pub unmeasured: Vec<serde_json::Value>,
        pub segments: Vec<serde_json::Value>,
        pub models: Vec<serde_json::Value>,
        pub dead_letters: Vec<serde_json::Value>,
        pub suggestions: Vec<serde_json::Value>,
        pub summary: serde_json::Value,
    }

    /// An OpenAPI document.
    #[derive(ToSchema)]
    #[schema(value_type = Object)]
    pub struct OpenApiDocument(serde_json::Value);
}
