//! The audit trail's decision inputs hold no personal data: whatever a flow's condition reads, and however
//! its decision ends, the `FlowOutcome` the pipeline writes to the audit trail (stage `decided`) names the
//! customer by id only, never by email, name, phone or address.

use nudge_model::{
    Checkout, CheckoutAbandoned, Customer, Event, LineItem, MarketingConsent, Money, Order, Score, ScoreSet,
    Segment, Timestamp,
};
use nudge_policy::PolicyConfig;
use nudge_policy::condition::FactValue;
use nudge_policy::flows::{
    DecideContext, FlowHistory, FlowSet, FlowSpec, Status, Trigger, fact_json, facts_of, no_approvals,
};
use nudge_state::CustomerState;
use time::macros::datetime;

const NOW: Timestamp = datetime!(2026-05-02 10:00 UTC);
const EMAIL: &str = "ada.lovelace@example.org";
const FIRST: &str = "Augusta";
const LAST: &str = "Lovelace";

fn customer() -> nudge_model::CustomerId {
    "shopify:42".parse().unwrap()
}

fn scores() -> ScoreSet {
    let s = |name: &str, value: f64| Score {
        name: name.into(),
        value,
        model_id: "btyd".into(),
        model_version: "v1".into(),
        explanation: String::new(),
    };
    ScoreSet {
        scores: vec![s("churn_risk", 72.5), s("p_alive", 0.275), s("predicted_clv", 310.0)],
        segment: Segment::HighValueAtRisk,
        model_version: "v1".into(),
        labels: Default::default(),
        // Catalogue facts only: nothing about the customer.
        products: vec![nudge_model::RecommendedProduct {
            id: "p-9".into(),
            title: "Teapot".into(),
            url: Some("https://shop.example/products/teapot".into()),
            image_url: Some("https://cdn.example/teapot.jpg".into()),
            price: Some("29.00".into()),
            currency: Some("EUR".into()),
            reason: "bought_with".into(),
            score: 0.8,
        }],
        scored_at: NOW,
        adopted_segments: None,
    }
}

fn line_item() -> LineItem {
    LineItem {
        product_id: Some("p-7".into()),
        variant_id: Some("v-7".into()),
        sku: Some("MUG-BLUE".into()),
        title: "Mug".into(),
        quantity: 1,
        price: Money::parse("40.00", "EUR").unwrap(),
    }
}

fn profile() -> Event {
    Event::CustomerUpserted(Customer {
        id: customer(),
        email: Some(EMAIL.into()),
        first_name: Some(FIRST.into()),
        last_name: Some(LAST.into()),
        created_at: Some(datetime!(2026-01-01 9:00 UTC)),
        updated_at: datetime!(2026-01-01 9:00 UTC),
        email_consent: MarketingConsent::Subscribed,
        tags: vec!["vip".into()],
        sms_consent: MarketingConsent::Unknown,
    })
}

fn order(id: &str, day: i64) -> Event {
    let at = datetime!(2026-03-01 12:00 UTC) + time::Duration::days(day);
    Event::OrderUpserted(Order {
        id: id.into(),
        name: Some(format!("#{id}")),
        customer: Some(customer()),
        email: Some(EMAIL.into()),
        created_at: at,
        updated_at: at,
        cancelled_at: None,
        total: Money::parse("40.00", "EUR").unwrap(),
        financial_status: None,
        line_items: vec![line_item()],
        checkout_token: Some(format!("tok-{id}")),
        cart_token: None,
        accepts_marketing: Some(true),
    })
}

fn checkout() -> Checkout {
    Checkout {
        token: "tok-open".into(),
        cart_token: None,
        customer: Some(customer()),
        email: Some(EMAIL.into()),
        created_at: datetime!(2026-05-01 9:00 UTC),
        updated_at: datetime!(2026-05-01 9:05 UTC),
        completed_at: None,
        total: Money::parse("84.90", "EUR").unwrap(),
        line_items: vec![line_item()],
        recovery_url: Some("https://shop/r/tok-open".into()),
        accepts_marketing: Some(true),
    }
}

fn abandoned() -> Event {
    let c = checkout();
    Event::CheckoutAbandoned(CheckoutAbandoned {
        customer: customer(),
        email: Some(EMAIL.into()),
        idle_since: c.updated_at,
        checkout: c,
    })
}

/// Flows whose conditions, together, read every fact the schema has.
fn flows() -> FlowSet {
    let json = r#"[
      {"name":"customer_facts","trigger":"state_changed",
       "when":"customer.id != '' && customer.email_consent && !customer.sms_consent && customer.orders_count >= 0 && customer.total_spent >= 0.0 && customer.aov >= 0.0 && customer.open_checkout_value >= 0.0 && size(customer.tags) >= 0",
       "baseline":"has(customer.days_since_last_order) && customer.days_since_last_order > 90.0",
       "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Facts",
                   "properties":{"who":"customer.id"}}]},
      {"name":"order_times","trigger":"state_changed",
       "when":"has(customer.first_order_at) && has(customer.last_order_at) && has(customer.days_since_last_order)",
       "holdout_percent":100,
       "actions":[{"type":"sync_profile","destination":"klaviyo"}]},
      {"name":"event_facts","trigger":"state_changed",
       "when":"event.kind != '' && event.value >= 0.0 && has(event.currency) && has(event.order_id) && has(event.checkout_token) && size(event.product_ids) >= 0",
       "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Event"}]},
      {"name":"score_facts","trigger":"state_changed","mode":"shadow",
       "when":"scores.churn_risk >= 50.0 && scores.p_alive < 1.0 && scores.segment != '' && scores.model_version != ''",
       "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Scores"}]},
      {"name":"never","trigger":"state_changed","when":"customer.orders_count > 1000",
       "actions":[{"type":"sync_profile","destination":"klaviyo"}]}
    ]"#;
    let specs: Vec<FlowSpec> = serde_json::from_str(json).unwrap();
    FlowSet::compile(&specs, &["klaviyo"]).unwrap()
}

fn assert_no_pii(what: &str, text: &str) {
    for pii in [EMAIL, "ada.lovelace", "example.org", FIRST, LAST, "augusta", "lovelace"] {
        assert!(!text.contains(pii), "{what} holds `{pii}`: {text}");
    }
}

#[test]
fn decision_audits_hold_no_email_or_name() {
    let set = flows();
    let policy = PolicyConfig::default();
    let mut state = CustomerState::new(customer());
    let events =
        [profile(), order("1001", 0), order("1002", 30), Event::CheckoutUpserted(checkout()), abandoned()];
    let mut statuses = std::collections::BTreeSet::new();
    let mut history = FlowHistory::new();
    for event in &events {
        state.apply(event);
        assert_eq!(state.email.as_deref(), Some(EMAIL), "the state holds the email the flows must not leak");
        assert_eq!(state.first_name.as_deref(), Some(FIRST));
        let triggers = Trigger::of_event(event, false);
        let outcomes = set.decide(&DecideContext {
            event,
            triggers: &triggers,
            state: &state,
            scores: &scores(),
            history: &history,
            now: NOW,
            policy: &policy,
            approvals_so_far: &no_approvals,
            learners: &nudge_policy::offers::NO_LEARNERS,
        });
        assert_eq!(outcomes.len(), set.flows.len(), "every flow listens to state_changed");
        for o in &outcomes {
            statuses.insert(o.status.as_str());
            let audit = serde_json::to_string(o).unwrap();
            assert_no_pii(&format!("{} on {}", o.flow, event.kind()), &audit);
            // Trigger events and profiles carry the recommended products (catalogue facts only).
            for (_, a) in &o.actions {
                let carried = match a {
                    nudge_model::Action::TriggerEvent { properties, .. } => {
                        properties.get("ai_recommended_products").map(|v| v.to_string())
                    }
                    nudge_model::Action::UpsertProfile { attributes, .. } => {
                        attributes.get("ai_recommended_products").map(|v| serde_json::to_string(v).unwrap())
                    }
                    _ => continue,
                };
                let carried = carried.unwrap_or_else(|| panic!("{} sends no recommended products", o.flow));
                assert!(carried.contains("Teapot"), "{carried}");
                assert_no_pii(&format!("{}'s recommended products", o.flow), &carried);
            }
            if o.acted() {
                history.entry(o.flow.clone()).or_default().push(NOW.unix_timestamp());
            }
        }
        // The facts every condition reads: none is personal, by name or by value.
        let facts = facts_of(event, &state, &scores(), NOW);
        for (var, map) in [("event", &facts.event), ("customer", &facts.customer), ("scores", &facts.scores)]
        {
            for (k, v) in map {
                for word in ["email", "phone", "name", "address"] {
                    // Engagement rates with email messages, and a storefront event's name as sent (`Product
                    // Viewed`): no personal data, as their values below show.
                    let not_personal = ["email_consent", "email_open_rate_90d", "email_click_rate_90d"]
                        .contains(&k.as_str())
                        || (var == "event" && k == "name");
                    assert!(!k.contains(word) || not_personal, "the fact {var}.{k} looks personal");
                }
                assert_no_pii(&format!("{var}.{k}"), &fact_json(v).to_string());
            }
        }
        assert!(matches!(facts.customer["id"], FactValue::Text(ref id) if id == "shopify:42"));
    }
    // The checks really ran the audit through its different endings.
    for s in [Status::Live, Status::Shadow, Status::HeldOut, Status::NotMatched] {
        assert!(statuses.contains(s.as_str()), "no {} decision among {statuses:?}", s.as_str());
    }
}
