//! The reads a BigCommerce fetch job needs, and the body stored for it: pure functions.
//!
//! | resource | reads | stored body |
//! |---|---|---|
//! | `order` | `GET /v2/orders/{id}`, `GET /v2/orders/{id}/products` | `{"order": …, "products": …}` |
//! | `cart` | `GET /v3/carts/{id}?include=redirect_urls` | the answer (`{"data": …}`) |
//! | `customer` | `GET /v3/customers?id:in={id}` | the answer (`{"data": [ … ]}`); an empty list is gone |
//! | `product` | `GET /v3/catalog/products/{id}` | the answer (`{"data": …}`) |

use crate::FetchJob;
use serde_json::Value;

/// One read: the path below the store's URL and the key its answer goes under (order reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub path: String,
    pub key: &'static str,
}

fn numeric(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn token(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The reads for `job` of store `store_hash`, or why it can never be made.
pub fn reads(store_hash: &str, job: &FetchJob) -> Result<Vec<Read>, String> {
    if job.shop.as_deref().is_some_and(|s| s != store_hash) {
        return Err(format!(
            "job is for store `{}`, this fetcher reads store `{store_hash}`",
            job.shop.as_deref().unwrap_or("")
        ));
    }
    let id = job.id.as_str();
    let bad = || format!("`{id}` is not a valid {} id", job.resource);
    Ok(match job.resource.as_str() {
        "order" if numeric(id) => vec![
            Read { path: format!("/v2/orders/{id}"), key: "order" },
            Read { path: format!("/v2/orders/{id}/products"), key: "products" },
        ],
        "cart" if token(id) => {
            vec![Read { path: format!("/v3/carts/{id}?include=redirect_urls"), key: "cart" }]
        }
        "customer" if numeric(id) => {
            vec![Read { path: format!("/v3/customers?id:in={id}"), key: "customer" }]
        }
        "product" if numeric(id) => vec![Read { path: format!("/v3/catalog/products/{id}"), key: "product" }],
        "order" | "cart" | "customer" | "product" => return Err(bad()),
        other => return Err(format!("unknown bigcommerce resource `{other}`")),
    })
}

/// What the reads' answers come to: the body to store, or why the resource is gone.
pub fn combine(job: &FetchJob, answers: Vec<(&'static str, Value)>) -> Result<Vec<u8>, String> {
    let body = if job.resource == "order" {
        Value::Object(answers.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    } else {
        let Some((_, v)) = answers.into_iter().next() else { return Err("no answer".into()) };
        if job.resource == "customer" && v.get("data").and_then(Value::as_array).is_some_and(|d| d.is_empty())
        {
            return Err("the customer list answer is empty".into());
        }
        v
    };
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(resource: &str, id: &str) -> FetchJob {
        FetchJob {
            carry: None,
            source: "bigcommerce".into(),
            shop: Some("abc123".into()),
            resource: resource.into(),
            id: id.into(),
            topic: format!("bigcommerce/fetched/{resource}"),
            notified_topic: "store/x".into(),
        }
    }

    #[test]
    fn reads_per_resource_and_ids_that_would_change_the_path_are_refused() {
        assert_eq!(reads("abc123", &job("order", "250")).unwrap().len(), 2);
        assert_eq!(reads("abc123", &job("customer", "7")).unwrap()[0].path, "/v3/customers?id:in=7");
        assert!(reads("abc123", &job("cart", "../v2/orders/1")).is_err());
        assert!(reads("abc123", &job("order", "1?x=1")).is_err());
        assert!(reads("zzz", &job("order", "1")).is_err());
        assert!(reads("abc123", &job("coupon", "1")).is_err());
    }
}
