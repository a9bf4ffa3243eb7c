//! BigCommerce's fetch-after-notify: the REST reads behind a thin callback.
//!
//! - `config.rs`: the store, its API token (redacted in `Debug`), the API base and timeouts.
//! - `request.rs`: which reads a job needs and how their answers become the body stored for the job.
//! - `client.rs`: the HTTP reads, the `X-Rate-Limit-*` headers obeyed, answers → [`crate::FetchOutcome`].

mod client;
mod config;
mod request;

pub use client::BigCommerceFetcher;
pub use config::BigCommerceFetchConfig;
pub use request::{Read, combine, reads};
