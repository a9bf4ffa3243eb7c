//! The list actions of a flow (`add_to_list`, `remove_from_list`) through the public interface: how they
//! are read from the config, the checks at compile time with their key paths, the consent rule (adding is
//! marketing, removing is not) and the destination-neutral actions a decision carries.

use nudge_model::{Action, Event, MarketingConsent, Money, Order, Score, ScoreSet, Segment, Timestamp};
use nudge_policy::PolicyConfig;
use nudge_policy::flows::{
    ActionSpec, DecideContext, FlowHistory, FlowOutcome, FlowSet, FlowSpec, Status, Trigger, no_approvals,
};
use nudge_state::CustomerState;
use time::macros::datetime;

const NOW: Timestamp = datetime!(2026-05-02 10:00 UTC);

fn customer() -> nudge_model::CustomerId {
    "shopify:42".parse().unwrap()
}

fn scores() -> ScoreSet {
    ScoreSet {
        scores: vec![Score {
            name: "churn_risk".into(),
            value: 20.0,
            model_id: "rules".into(),
            model_version: "rules-v1".into(),
            explanation: String::new(),
        }],
        segment: Segment::Active,
        model_version: "rules-v1".into(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: NOW,
        adopted_segments: None,
    }
}

fn order(accepts_marketing: Option<bool>) -> Event {
    let at = datetime!(2026-05-02 9:00 UTC);
    Event::OrderUpserted(Order {
        id: "1001".into(),
        name: Some("#1001".into()),
        customer: Some(customer()),
        email: Some("ada@example.org".into()),
        created_at: at,
        updated_at: at,
        cancelled_at: None,
        total: Money::parse("40.00", "EUR").unwrap(),
        financial_status: None,
        line_items: vec![],
        checkout_token: None,
        cart_token: None,
        accepts_marketing,
    })
}

fn specs(json: &str) -> Vec<FlowSpec> {
    serde_json::from_str(json).expect("flow specs parse")
}

fn flow(name: &str, actions: &str) -> String {
    format!(r#"{{"name":"{name}","trigger":"order_placed","actions":[{actions}]}}"#)
}

fn decide(set: &FlowSet, consent: MarketingConsent, event: &Event) -> Vec<FlowOutcome> {
    let mut state = CustomerState::new(customer());
    state.consent = consent;
    state.apply(event);
    let triggers = Trigger::of_event(event, false);
    set.decide(&DecideContext {
        event,
        triggers: &triggers,
        state: &state,
        scores: &scores(),
        history: &FlowHistory::new(),
        now: NOW,
        policy: &PolicyConfig::default(),
        approvals_so_far: &no_approvals,
        learners: &nudge_policy::offers::NO_LEARNERS,
    })
}

#[test]
fn list_actions_are_read_with_the_documented_names() {
    let parsed = specs(&format!(
        "[{}]",
        flow(
            "vip",
            r#"{"type":"add_to_list","destination":"klaviyo","list_id":"Xy12Ab"},
               {"type":"remove_from_list","destination":"klaviyo","list_id":"Qr34Cd"}"#
        )
    ));
    assert_eq!(
        parsed[0].actions,
        vec![
            ActionSpec::AddToList { destination: "klaviyo".into(), list_id: "Xy12Ab".into() },
            ActionSpec::RemoveFromList { destination: "klaviyo".into(), list_id: "Qr34Cd".into() },
        ]
    );
    assert_eq!(parsed[0].actions[0].describe(), "add_to_list \"Xy12Ab\" → klaviyo");
    assert_eq!(parsed[0].actions[1].describe(), "remove_from_list \"Qr34Cd\" → klaviyo");
    FlowSet::compile(&parsed, &["klaviyo"]).expect("a valid list flow compiles");
    // A list action needs its list id, and takes no other key.
    let missing = serde_json::from_str::<Vec<FlowSpec>>(&format!(
        "[{}]",
        flow("vip", r#"{"type":"add_to_list","destination":"klaviyo"}"#)
    ));
    assert!(missing.unwrap_err().to_string().contains("list_id"));
    let extra = serde_json::from_str::<Vec<FlowSpec>>(&format!(
        "[{}]",
        flow("vip", r#"{"type":"add_to_list","destination":"klaviyo","list_id":"Xy12Ab","metric":"m"}"#)
    ));
    assert!(extra.unwrap_err().to_string().contains("metric"));
}

#[test]
fn bad_list_ids_are_refused_at_compile_time_with_their_key_path() {
    let long = "a".repeat(65);
    let cases: Vec<(&str, &str)> = vec![
        ("", "empty"),
        ("   ", "empty"),
        ("Xy 12", "not allowed"),
        ("../lists/OTHER", "not allowed"),
        ("Xy12Ab/relationships", "not allowed"),
        ("Xy12Ab?x=1", "not allowed"),
        ("Xy%2F", "not allowed"),
        ("Xy12Äb", "not allowed"),
        (&long, "at most 64"),
    ];
    for (list_id, wanted) in cases {
        let json = format!(
            "[{},{}]",
            flow("first", r#"{"type":"sync_profile","destination":"klaviyo"}"#),
            flow(
                "second",
                &format!(
                    r#"{{"type":"sync_profile","destination":"klaviyo"}},
                       {{"type":"remove_from_list","destination":"klaviyo","list_id":{}}}"#,
                    serde_json::Value::String(list_id.into())
                )
            )
        );
        let err = FlowSet::compile(&specs(&json), &["klaviyo"]).unwrap_err();
        assert_eq!(err.path, "flows[1].actions[1].list_id", "{list_id:?}: {err}");
        assert!(err.message.contains(wanted), "{list_id:?}: {err}");
        assert!(err.message.contains("flow `second`"), "{err}");
    }
    // The longest accepted id, and the characters list ids are made of.
    for ok in ["a".repeat(64), "Xy12Ab".into(), "list_2-b".into()] {
        let json = format!(
            "[{}]",
            flow("f", &format!(r#"{{"type":"add_to_list","destination":"klaviyo","list_id":"{ok}"}}"#))
        );
        FlowSet::compile(&specs(&json), &["klaviyo"]).unwrap();
    }
    // The destination is checked as for every action.
    let json =
        format!("[{}]", flow("f", r#"{"type":"add_to_list","destination":"braze","list_id":"Xy12Ab"}"#));
    let err = FlowSet::compile(&specs(&json), &["klaviyo"]).unwrap_err();
    assert_eq!(err.path, "flows[0].actions[0].destination");
}

#[test]
fn adding_needs_consent_and_removing_does_not() {
    let add = ActionSpec::AddToList { destination: "klaviyo".into(), list_id: "Xy12Ab".into() };
    let remove = ActionSpec::RemoveFromList { destination: "klaviyo".into(), list_id: "Xy12Ab".into() };
    assert!(add.is_marketing());
    assert!(!remove.is_marketing());

    let set = FlowSet::compile(
        &specs(&format!(
            "[{},{}]",
            flow("vip_add", r#"{"type":"add_to_list","destination":"klaviyo","list_id":"Xy12Ab"}"#),
            flow("vip_remove", r#"{"type":"remove_from_list","destination":"klaviyo","list_id":"Xy12Ab"}"#)
        )),
        &["klaviyo"],
    )
    .unwrap();

    // No consent stored and none given at checkout: not added, but removed.
    let out = decide(&set, MarketingConsent::Unknown, &order(None));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].flow, "vip_add");
    assert_eq!(out[0].status, Status::NoConsent, "{out:?}");
    assert!(out[0].actions.is_empty());
    assert_eq!(out[1].flow, "vip_remove");
    assert_eq!(out[1].status, Status::Live, "{out:?}");
    let removal = Action::RemoveFromList {
        customer: customer(),
        email: Some("ada@example.org".into()),
        list_id: "Xy12Ab".into(),
    };
    assert_eq!(out[1].actions, vec![("klaviyo".to_string(), removal.clone())]);

    // A customer who unsubscribed is taken off the list all the same.
    let out = decide(&set, MarketingConsent::Unsubscribed, &order(Some(true)));
    assert_eq!((out[0].status, out[1].status), (Status::NoConsent, Status::Live));
    assert_eq!(out[1].actions, vec![("klaviyo".to_string(), removal)]);

    // With consent both act; the actions are destination-neutral and name the list.
    let out = decide(&set, MarketingConsent::Subscribed, &order(None));
    assert_eq!((out[0].status, out[1].status), (Status::Live, Status::Live));
    assert_eq!(
        out[0].actions,
        vec![(
            "klaviyo".to_string(),
            Action::AddToList {
                customer: customer(),
                email: Some("ada@example.org".into()),
                list_id: "Xy12Ab".into()
            }
        )]
    );
    // Consent ticked at checkout counts for adding, as for every marketing action.
    let out = decide(&set, MarketingConsent::Unknown, &order(Some(true)));
    assert_eq!(out[0].status, Status::Live);

    // A flow that both syncs and adds is held back as a whole without consent.
    let mixed = FlowSet::compile(
        &specs(&format!(
            "[{}]",
            flow(
                "mixed",
                r#"{"type":"sync_profile","destination":"klaviyo"},
                   {"type":"add_to_list","destination":"klaviyo","list_id":"Xy12Ab"}"#
            )
        )),
        &["klaviyo"],
    )
    .unwrap();
    assert_eq!(decide(&mixed, MarketingConsent::Unknown, &order(None))[0].status, Status::NoConsent);
}

#[test]
fn the_list_id_is_part_of_the_flow_set_version() {
    let with = |list_id: &str| {
        FlowSet::compile(
            &specs(&format!(
                "[{}]",
                flow(
                    "vip",
                    &format!(r#"{{"type":"add_to_list","destination":"klaviyo","list_id":"{list_id}"}}"#)
                )
            )),
            &["klaviyo"],
        )
        .unwrap()
        .version
    };
    assert_ne!(with("Xy12Ab"), with("Xy12Ac"));
    assert_eq!(with("Xy12Ab"), with("Xy12Ab"));
}
