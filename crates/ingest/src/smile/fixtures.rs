//! Smile.io bodies for tests, the demo and the fakes: webhooks and `GET /v1/customers/{id}` answers.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

/// One Smile.io customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerFixture {
    pub id: u64,
    pub email: Option<String>,
    pub points: i64,
    pub tier: Option<u64>,
    /// Put the tier in the deprecated top-level `vip_tier_id` instead of `vip_status`.
    pub deprecated_tier: bool,
    pub state: String,
    pub updated_at: OffsetDateTime,
}

fn iso(t: OffsetDateTime) -> String {
    let f = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(f).unwrap_or_default()
}

impl CustomerFixture {
    pub fn new(id: u64, email: Option<&str>, points: i64, at: OffsetDateTime) -> Self {
        CustomerFixture {
            id,
            email: email.map(str::to_string),
            points,
            tier: None,
            deprecated_tier: false,
            state: "member".into(),
            updated_at: at,
        }
    }

    pub fn tier(mut self, tier: u64) -> Self {
        self.tier = Some(tier);
        self
    }

    pub fn deprecated_tier(mut self) -> Self {
        self.deprecated_tier = true;
        self
    }

    pub fn updated(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn points(mut self, points: i64) -> Self {
        self.points = points;
        self
    }

    /// The customer object.
    pub fn object(&self) -> Value {
        let mut v = json!({
            "id": self.id, "first_name": "Lena", "last_name": "Park", "email": self.email,
            "state": self.state, "date_of_birth": "1004-06-15", "points_balance": self.points,
            "referral_url": format!("https://i.refs.cc/{}", self.id),
            "vip_status": null, "vip_tier_id": null,
            "created_at": "2025-01-01T10:00:00.000Z", "updated_at": iso(self.updated_at),
        });
        match (self.tier, self.deprecated_tier) {
            (Some(t), true) => v["vip_tier_id"] = json!(t),
            (Some(t), false) => v["vip_status"] = json!({"vip_tier_id": t, "status": "active"}),
            (None, _) => {}
        }
        v
    }

    /// The `customer/updated` webhook body.
    pub fn webhook(&self, account_id: u64) -> Value {
        json!({"account_id": account_id, "topic": "customer/updated", "data": self.object()})
    }

    /// `GET /v1/customers/{id}`'s answer.
    pub fn fetched(&self) -> Value {
        json!({"customer": self.object()})
    }

    pub fn fetched_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fetched()).unwrap_or_default()
    }
}

/// The `ping` body sent when a webhook is created.
pub fn ping(account_id: u64) -> Value {
    json!({"account_id": account_id, "topic": "ping", "data": {}})
}
