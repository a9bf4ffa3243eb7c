//! Pure parts of the Admin API read: the query, the answer, the cost bucket ("now" passed in).

use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// The one query: the customer's email, phone, names and marketing consent.
pub const CUSTOMER_QUERY: &str = "query NudgeCustomer($id: ID!) { customer(id: $id) { id firstName lastName \
defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt } \
defaultPhoneNumber { phoneNumber marketingState } } }";

/// `{base}/admin/api/{version}/graphql.json`.
pub fn endpoint(base: &str, api_version: &str) -> String {
    format!("{}/admin/api/{api_version}/graphql.json", base.trim_end_matches('/'))
}

/// `gid://shopify/Customer/<id>` for a numeric id (as in webhook payloads); an id that is a gid already
/// is kept.
pub fn customer_gid(id: &str) -> Result<String, String> {
    let id = id.trim();
    let number = id.strip_prefix("gid://shopify/Customer/").unwrap_or(id);
    if number.is_empty() || number.len() > 20 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{}` is not a Shopify customer id", id.chars().take(40).collect::<String>()));
    }
    Ok(format!("gid://shopify/Customer/{number}"))
}

/// The request body for one customer.
pub fn customer_request(gid: &str) -> Value {
    json!({ "query": CUSTOMER_QUERY, "variables": { "id": gid } })
}

/// `extensions.cost` of an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub requested: f64,
    pub actual: Option<f64>,
    pub maximum: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

/// Reads `extensions.cost`, when the answer has a usable one.
pub fn read_cost(answer: &Value) -> Option<Cost> {
    let cost = answer.get("extensions")?.get("cost")?;
    let status = cost.get("throttleStatus")?;
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite() && *x >= 0.0);
    Some(Cost {
        requested: num(cost, "requestedQueryCost")?,
        actual: num(cost, "actualQueryCost"),
        maximum: num(status, "maximumAvailable")?,
        currently_available: num(status, "currentlyAvailable")?,
        restore_rate: num(status, "restoreRate").filter(|r| *r > 0.0)?,
    })
}

/// What a 200 answer said.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `data.customer`, an object.
    Customer(Value),
    /// `data.customer` is null: no such customer (deleted, or never in this shop).
    NotFound,
    /// `errors[].extensions.code == "THROTTLED"`.
    Throttled,
    /// Other GraphQL errors (`ACCESS_DENIED`, a query error): the codes and messages.
    Errors(String),
}

/// Reads an answer body; `Err` when it is not a GraphQL answer at all.
pub fn read_answer(body: &[u8]) -> Result<(Answer, Option<Cost>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("the answer is not a JSON object".into());
    }
    let cost = read_cost(&v);
    if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
        let list = errors.as_array().cloned().unwrap_or_else(|| vec![errors.clone()]);
        let code = |e: &Value| {
            e.get("extensions").and_then(|x| x.get("code")).and_then(Value::as_str).map(str::to_string)
        };
        if list.iter().any(|e| code(e).as_deref() == Some("THROTTLED")) {
            return Ok((Answer::Throttled, cost));
        }
        let text: Vec<String> = list
            .iter()
            .map(|e| {
                let message =
                    e.get("message").and_then(Value::as_str).or_else(|| e.as_str()).unwrap_or("(no message)");
                match code(e) {
                    Some(c) => format!("{c}: {message}"),
                    None => message.to_string(),
                }
            })
            .collect();
        return Ok((Answer::Errors(text.join("; ").chars().take(500).collect()), cost));
    }
    match v.get("data").and_then(|d| d.get("customer")) {
        Some(Value::Object(_)) => Ok((Answer::Customer(v["data"]["customer"].clone()), cost)),
        Some(Value::Null) => Ok((Answer::NotFound, cost)),
        _ => Err("the answer has neither `data.customer` nor `errors`".into()),
    }
}

/// The app's cost bucket on the shop as last reported, less what queries in flight will take.
#[derive(Debug, Clone)]
pub struct Bucket {
    maximum: f64,
    available: f64,
    restore_rate: f64,
    at: Instant,
    in_flight: f64,
    /// Whether an answer has reported the real bucket; until then one query at a time probes it.
    known: bool,
}

impl Bucket {
    /// Before any answer: a small bucket that refills slowly, so the first queries cannot overdraw any
    /// plan's real one.
    pub fn new(now: Instant) -> Self {
        Bucket { maximum: 50.0, available: 50.0, restore_rate: 10.0, at: now, in_flight: 0.0, known: false }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + secs * self.restore_rate).min(self.maximum);
        self.at = now;
    }

    /// Takes `cost` out for a query about to be sent, or says how long to wait before it fits.
    pub fn reserve(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let cost = cost.min(self.maximum);
        if !self.known && self.in_flight > 0.0 {
            return Err(Duration::from_millis(20));
        }
        if self.available >= cost {
            self.available -= cost;
            self.in_flight += cost;
            Ok(())
        } else {
            Err(self.wait_for(cost))
        }
    }

    /// How long until `cost` fits, from the bucket's current level.
    pub fn wait_for(&self, cost: f64) -> Duration {
        let missing = (cost.min(self.maximum) - self.available).max(0.0);
        Duration::from_secs_f64((missing / self.restore_rate).min(3600.0)) + Duration::from_millis(10)
    }

    /// A query that reserved `reserved` has been answered, with the bucket as the answer reported it.
    pub fn settle(&mut self, reserved: f64, reported: Option<&Cost>, now: Instant) {
        self.in_flight = (self.in_flight - reserved).max(0.0);
        if let Some(c) = reported {
            self.maximum = c.maximum.max(1.0);
            self.restore_rate = c.restore_rate;
            self.available = (c.currently_available - self.in_flight).max(0.0);
            self.at = now;
            self.known = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_waits_for_what_is_missing() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        let cost = Cost {
            requested: 10.0,
            actual: Some(3.0),
            maximum: 100.0,
            currently_available: 5.0,
            restore_rate: 50.0,
        };
        assert!(b.reserve(10.0, t0).is_ok());
        b.settle(10.0, Some(&cost), t0);
        let wait = b.reserve(10.0, t0).unwrap_err();
        assert!(wait >= Duration::from_millis(100) && wait < Duration::from_millis(200), "{wait:?}");
        assert!(b.reserve(10.0, t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn answers_are_read() {
        let throttled = br#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],
            "extensions":{"cost":{"requestedQueryCost":752,"actualQueryCost":null,
            "throttleStatus":{"maximumAvailable":1000.0,"currentlyAvailable":666,"restoreRate":50.0}}}}"#;
        let (a, c) = read_answer(throttled).unwrap();
        assert_eq!(a, Answer::Throttled);
        assert_eq!(c.unwrap().currently_available, 666.0);
        assert_eq!(read_answer(br#"{"data":{"customer":null}}"#).unwrap().0, Answer::NotFound);
        assert!(read_answer(b"<html>").is_err());
        assert!(read_answer(br#"{"data":{}}"#).is_err());
        assert!(customer_gid("12a").is_err());
        assert_eq!(customer_gid("880012").unwrap(), "gid://shopify/Customer/880012");
    }
}
