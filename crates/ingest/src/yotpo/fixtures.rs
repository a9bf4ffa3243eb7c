//! Yotpo bodies for tests, the demo and the fakes: webhook notifications in both documented shapes and
//! reviews as the pull API answers them.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// One review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewFixture {
    pub app_key: String,
    pub id: u64,
    pub email: Option<String>,
    pub score: u8,
    pub title: String,
    pub content: String,
    pub sku: Option<String>,
    pub deleted: bool,
    pub archived: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

fn iso(t: OffsetDateTime) -> String {
    let ms = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(ms).unwrap_or_else(|_| t.format(&Rfc3339).unwrap_or_default())
}

fn legacy(t: OffsetDateTime) -> String {
    let f = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(f).unwrap_or_default()
}

impl ReviewFixture {
    pub fn new(app_key: &str, id: u64, email: Option<&str>, at: OffsetDateTime) -> Self {
        ReviewFixture {
            app_key: app_key.into(),
            id,
            email: email.map(str::to_string),
            score: 5,
            title: "Great mug".into(),
            content: "Keeps the tea hot for ages.".into(),
            sku: Some("MUG-1".into()),
            deleted: false,
            archived: false,
            created_at: at,
            updated_at: at,
        }
    }

    pub fn score(mut self, score: u8) -> Self {
        self.score = score;
        self
    }

    pub fn content(mut self, title: &str, content: &str) -> Self {
        self.title = title.into();
        self.content = content.into();
        self
    }

    pub fn updated(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn deleted(mut self, deleted: bool) -> Self {
        self.deleted = deleted;
        self
    }

    /// The webhook body in the newer, typed shape.
    pub fn webhook_typed(&self, event: &str) -> Value {
        json!({"event": event, "data": {
            "id": self.id, "app_key": self.app_key, "source_app_key": self.app_key,
            "title": self.title, "content": self.content, "score": self.score,
            "user_id": 5501, "user_type": "verifiedBuyer", "verified_buyer": true,
            "deleted": self.deleted, "archived": self.archived, "new": true, "escalated": false,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            "votes_up": 0, "votes_down": 0, "sentiment": "", "source_review_id": null,
            "reviewer_display_name": "A. Reviewer", "customer_email": self.email,
            "order_id": 523556, "external_order_id": "1001", "external_product_id": self.sku,
        }})
    }

    /// The webhook body in the older shape: every value a string, dates as `2018-02-20 14:12:13 UTC`.
    pub fn webhook_strings(&self, event: &str) -> Value {
        json!({"event": event, "data": {
            "id": self.id.to_string(), "app_key": self.app_key, "source_app_key": self.app_key,
            "title": self.title, "content": self.content, "score": self.score.to_string(),
            "user_id": "5501", "user_type": "AnonymousUser", "verified_buyer": "false",
            "deleted": self.deleted.to_string(), "archived": self.archived.to_string(), "new": "true",
            "created_at": legacy(self.created_at), "updated_at": legacy(self.updated_at),
            "votes_up": "0", "votes_down": "0", "sentiment": "",
            "customer_email": self.email.clone().unwrap_or_default(),
            "order": {"id": 523556, "external_id": "1001"},
        }})
    }

    /// The review as the pull API lists it (one element of `reviews`).
    pub fn pulled(&self) -> Value {
        json!({
            "id": self.id, "title": self.title, "content": self.content, "score": self.score,
            "votes_up": 0, "votes_down": 0, "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at), "sentiment": 0.87, "sku": self.sku,
            "name": "A. Reviewer", "email": self.email, "reviewer_type": "verified_buyer",
            "deleted": self.deleted, "archived": self.archived, "escalated": false,
            "user_reference": null,
        })
    }

    pub fn pulled_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.pulled()).unwrap_or_default()
    }
}
