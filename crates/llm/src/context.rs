//! The context a prompt is rendered from, and the template language over it.
//!
//! Templates use `{{variable}}` (spaces inside the braces allowed) over a fixed set of variables,
//! [`VARIABLES`], plus `{{score.NAME}}` for one named score. There is no variable for an email, a name, a
//! phone number or an address because [`CopyContext`] has no field that could hold one: it is built from
//! a segment, numbers, text predictions and product titles only. As a second line of defence, text that
//! looks like an email address or a phone number is dropped when it is added.

use nudge_model::{CopyRequest, ScoreSet, Segment};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The variables a template may use, with what each renders to. `{{score.NAME}}` comes on top.
pub const VARIABLES: &[(&str, &str)] = &[
    ("segment", "the customer's segment (`loyal`, `lapsed`, …)"),
    ("scores", "every score as `name=value`, comma-separated"),
    ("preferred_category", "the predicted preferred category, or `none`"),
    ("next_best_offer", "the predicted next best offer, or `none`"),
    ("products", "the recommended products' titles, `; `-separated"),
    ("product_1", "the first recommended product's title (also product_2 … product_5), or empty"),
    ("product_count", "how many products are recommended"),
    ("locale", "the customer's locale (`en-GB`), or `en`"),
];

/// Up to this many products are kept.
pub const MAX_PRODUCTS: usize = 5;

/// A parsed template: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `text`; an unknown variable or an unclosed `{{` is an error naming it.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("`{{{{` at byte {} is never closed", text.len() - rest.len() + open)
            })?;
            let name = after[..close].trim();
            if !is_variable(name) {
                return Err(format!(
                    "unknown variable `{{{{{name}}}}}` (known: {}, score.NAME)",
                    VARIABLES.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(", ")
                ));
            }
            pieces.push(Piece::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// The template with every variable replaced by its value in `vars` (a missing one renders empty).
    pub fn render(&self, vars: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(vars.get(v).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

fn is_variable(name: &str) -> bool {
    if VARIABLES.iter().any(|(v, _)| *v == name) {
        return true;
    }
    if let Some(n) = name.strip_prefix("product_") {
        return matches!(n.parse::<usize>(), Ok(i) if (1..=MAX_PRODUCTS).contains(&i));
    }
    name.strip_prefix("score.").is_some_and(|s| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// What a prompt may know about a customer. Pseudonymous by construction: no field holds contact data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyContext {
    segment: Option<Segment>,
    scores: Vec<(String, f64)>,
    labels: BTreeMap<String, String>,
    products: Vec<String>,
    locale: Option<String>,
}

impl CopyContext {
    pub fn new(segment: Segment) -> CopyContext {
        CopyContext { segment: Some(segment), ..CopyContext::default() }
    }

    /// The segment, scores, the text predictions `preferred_category` and `next_best_offer` and the
    /// recommended products' titles (up to [`MAX_PRODUCTS`]) of a set.
    pub fn from_scores(set: &ScoreSet) -> CopyContext {
        let mut c = CopyContext::new(set.segment);
        for s in &set.scores {
            c = c.score(&s.name, s.value);
        }
        for key in ["preferred_category", "next_best_offer"] {
            if let Some(v) = set.labels.get(key) {
                c = c.label(key, v);
            }
        }
        for p in &set.products {
            c = c.product(&p.title);
        }
        c
    }

    /// The context of a pending copy request (as a decision captured it), through the same checks as
    /// every other way in: a stored request cannot bring contact-like text into a prompt either.
    pub fn from_request(request: &CopyRequest) -> CopyContext {
        let mut c = CopyContext::new(request.segment);
        for (name, value) in &request.scores {
            c = c.score(name, *value);
        }
        for (key, value) in &request.labels {
            c = c.label(key, value);
        }
        for title in &request.products {
            c = c.product(title);
        }
        c
    }

    /// Adds a named score; a non-finite value or a name outside `[a-z0-9_]` is ignored.
    pub fn score(mut self, name: &str, value: f64) -> CopyContext {
        if value.is_finite()
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            self.scores.retain(|(n, _)| n != name);
            self.scores.push((name.to_string(), value));
        }
        self
    }

    /// Sets `preferred_category` or `next_best_offer`; other keys and contact-like text are ignored.
    pub fn label(mut self, key: &str, value: &str) -> CopyContext {
        if matches!(key, "preferred_category" | "next_best_offer") && is_safe_text(value) {
            self.labels.insert(key.to_string(), value.trim().to_string());
        }
        self
    }

    /// Adds a recommended product's title (at most [`MAX_PRODUCTS`]; contact-like text is ignored).
    pub fn product(mut self, title: &str) -> CopyContext {
        if self.products.len() < MAX_PRODUCTS && is_safe_text(title) {
            self.products.push(title.trim().to_string());
        }
        self
    }

    /// The customer's locale, such as `en-GB` (letters, digits and `-` only).
    pub fn locale(mut self, locale: &str) -> CopyContext {
        if !locale.is_empty()
            && locale.len() <= 16
            && locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            self.locale = Some(locale.to_string());
        }
        self
    }

    /// The context map templates are rendered from.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        vars.insert(
            "segment".into(),
            self.segment.map(|s| s.as_str().to_string()).unwrap_or_else(|| "unknown".into()),
        );
        let mut scores = String::new();
        for (i, (name, value)) in self.scores.iter().enumerate() {
            let _ = write!(scores, "{}{name}={}", if i > 0 { ", " } else { "" }, round(*value));
            vars.insert(format!("score.{name}"), round(*value));
        }
        vars.insert("scores".into(), scores);
        for key in ["preferred_category", "next_best_offer"] {
            vars.insert(key.into(), self.labels.get(key).cloned().unwrap_or_else(|| "none".into()));
        }
        vars.insert("products".into(), self.products.join("; "));
        for i in 1..=MAX_PRODUCTS {
            vars.insert(format!("product_{i}"), self.products.get(i - 1).cloned().unwrap_or_default());
        }
        vars.insert("product_count".into(), self.products.len().to_string());
        vars.insert("locale".into(), self.locale.clone().unwrap_or_else(|| "en".into()));
        vars
    }
}

/// Four significant decimals at most, no trailing zeros.
fn round(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// False for empty text, text over 200 characters, and text that looks like an email or a phone number.
fn is_safe_text(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.chars().count() <= 200 && !looks_like_email(t) && !looks_like_phone(t)
}

fn looks_like_email(t: &str) -> bool {
    t.split_whitespace()
        .any(|w| w.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')))
}

/// Seven or more digits in one run of digits, spaces, `-`, `.`, `(`, `)` and `+`.
fn looks_like_phone(t: &str) -> bool {
    let mut digits = 0;
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 7 {
                return true;
            }
        } else if !matches!(c, ' ' | '-' | '.' | '(' | ')' | '+') {
            digits = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_known_variables_and_refuse_unknown_ones() {
        let t = Template::parse("Hi {{ segment }} fan: {{products}} / {{score.churn_risk}}{{product_2}}.")
            .unwrap();
        let c = CopyContext::new(Segment::Lapsed)
            .product("Trail shoe")
            .product("Rain jacket")
            .score("churn_risk", 0.71234);
        assert_eq!(t.render(&c.vars()), "Hi lapsed fan: Trail shoe; Rain jacket / 0.7123Rain jacket.");
        assert!(Template::parse("{{email}}").unwrap_err().contains("unknown variable `{{email}}`"));
        assert!(Template::parse("{{product_6}}").is_err());
        assert!(Template::parse("{{score.}}").is_err());
        assert!(Template::parse("{{segment").unwrap_err().contains("never closed"));
    }

    #[test]
    fn products_come_from_the_score_set_and_requests_pass_the_same_checks() {
        let mut set = ScoreSet {
            scores: Vec::new(),
            segment: Segment::HighValueAtRisk,
            model_version: "rules-v1".into(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: time::OffsetDateTime::UNIX_EPOCH,
            adopted_segments: None,
        };
        for title in ["Trail shoe", "Rain jacket", "Gift for ana@example.org", "Socks", "Cap", "Tent", "Mug"]
        {
            set.products.push(nudge_model::RecommendedProduct {
                id: format!("shopify:{title}"),
                title: title.into(),
                url: None,
                image_url: None,
                price: None,
                currency: None,
                reason: "popular".into(),
                score: 1.0,
            });
        }
        let c = CopyContext::from_scores(&set);
        assert_eq!(c.vars()["products"], "Trail shoe; Rain jacket; Socks; Cap; Tent");
        assert_eq!(c.vars()["product_count"], "5");
        let mut request = CopyRequest::from_scores("winback", 1, "ai_copy", &set);
        request.labels.insert("preferred_category".into(), "call 0161 496 0000".into());
        let from_request = CopyContext::from_request(&request);
        assert_eq!(from_request.vars()["preferred_category"], "none");
        assert!(!from_request.vars()["products"].contains('@'));
    }

    #[test]
    fn contact_like_text_never_enters_the_context() {
        let c = CopyContext::new(Segment::Loyal)
            .product("Gift for ana@example.org")
            .product("Call +44 20 7946 0958")
            .product("Pack of 3 socks")
            .label("preferred_category", "bob@example.com")
            .label("email", "Outdoor");
        let vars = c.vars();
        assert_eq!(vars["products"], "Pack of 3 socks");
        assert_eq!(vars["preferred_category"], "none");
        assert!(!vars.contains_key("email"));
    }
}
