//! Shopify Admin enrichment: the customer an order or checkout names by id only, read with one GraphQL
//! Admin API query (`POST https://{shop}/admin/api/{version}/graphql.json`, `X-Shopify-Access-Token`).
//!
//! - `config.rs`: the shop, token (redacted in `Debug`), API version, cache TTL, checks naming the field.
//! - `request.rs`: the query, reading the answer (`data.customer`, `errors[].extensions.code`,
//!   `extensions.cost`) and the cost bucket that decides how long to wait before a query.
//! - `client.rs`: [`ShopifyAdminFetcher`], the [`Fetcher`](crate::Fetcher) for `shopify` jobs.
//!
//! The throttle: Shopify limits an app on a shop by calculated query cost in a leaky bucket
//! (`throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}` in every answer). The fetcher
//! keeps the bucket as last reported, takes each query's cost out before sending it and waits first
//! when the bucket would not hold it, so a lone fetcher is never answered THROTTLED; when another client
//! of the same app spends the bucket and a THROTTLED answer comes anyway, the job is retried after the
//! time the bucket needs to refill.

mod client;
mod config;
mod request;

pub use client::ShopifyAdminFetcher;
pub use config::{ConfigError, DEFAULT_API_VERSION, ShopifyAdminConfig};
pub use request::{
    Answer, Bucket, CUSTOMER_QUERY, Cost, customer_gid, customer_request, endpoint, read_answer,
};
