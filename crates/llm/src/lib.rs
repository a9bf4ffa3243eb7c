//! Generated copy for messages (subject line, preheader, body paragraph) from a versioned prompt template
//! and an OpenAI-compatible Chat Completions endpoint.
//!
//! - [`config`]: `[llm]` ([`LlmConfig`]) and `[[prompts]]` ([`PromptSpec`]), checked at load: an unknown
//!   template variable, a slot without `max_chars`, a fallback that misses a slot or a base URL that is not
//!   http(s) is an error naming the key.
//! - [`context`]: [`CopyContext`], the only thing a prompt can be rendered from. It holds the segment,
//!   scores, text predictions and recommended products' titles, and has no field for an email, a name, a
//!   phone number or an address, so a prompt cannot carry them.
//! - [`request`] (pure): renders a prompt, builds the request body (a JSON object of the slots, with a
//!   JSON schema) and validates the answer (every slot present, a string, within its `max_chars`).
//! - [`client`]: [`LlmClient::generate`] posts with bearer auth under one deadline (`timeout`), retries what
//!   the contract says may be retried while the wait fits the deadline, counts tokens against the monthly
//!   budget, and answers the template's fallback copy with the reason whenever anything goes wrong.

pub mod client;
pub mod config;
pub mod context;
pub mod request;

pub use client::{BudgetStatus, FallbackReason, Generated, LlmClient};
pub use config::{ConfigError, LlmConfig, PromptSpec, Provider, SlotSpec};
pub use context::{CopyContext, VARIABLES};
pub use request::{ValidationError, build_body, parse_answer, render};
