//! The send-time model's pieces: time zones, shrinkage, the best channel, the rules fallback, the fitted
//! model's serving and its body.

use nudge_decide::send_time::{self, RulesSendTime, SendTimeModel};
use nudge_decide::serve::StateModel;
use nudge_model::{Engagement, EngagementKind, Event, ScoreSet, Segment};
use nudge_state::CustomerState;
use time::macros::datetime;

fn set() -> ScoreSet {
    ScoreSet {
        scores: vec![],
        segment: Segment::Prospect,
        model_version: String::new(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: datetime!(2026-06-01 00:00 UTC),
        adopted_segments: None,
    }
}

fn open(s: &mut CustomerState, id: &str, channel: &str, at: time::OffsetDateTime) {
    s.apply(&Event::Engagement(Engagement {
        customer: s.customer.clone(),
        email: None,
        kind: EngagementKind::Opened,
        channel: channel.into(),
        platform: "klaviyo".into(),
        event_id: id.into(),
        campaign: None,
        url: None,
        machine: false,
        at,
    }));
}

#[test]
fn offsets_shift_hours_and_the_posterior_is_the_dirichlet_mean() {
    assert_eq!(
        (send_time::hour_shift(330), send_time::hour_shift(-300), send_time::hour_shift(-30)),
        (6, -5, -1)
    );
    let mut utc = [0u32; 24];
    utc[23] = 2;
    let local = send_time::to_local(&utc, 2);
    assert_eq!(local[1], 2.0);
    let mut counts = [0.0; 24];
    counts[9] = 3.0;
    let prior = [1.0 / 24.0; 24];
    let p = send_time::posterior(&counts, &prior, 2.0);
    assert!((p[9] - (3.0 + 2.0 / 24.0) / 5.0).abs() < 1e-12);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // Smoothing: two opens at 8 and 10 point at 9; the mode wraps around midnight.
    let mut c = [0.0; 24];
    c[8] = 1.0;
    c[10] = 1.0;
    assert_eq!(send_time::smoothed_mode(&c, 1.0), 9);
    let mut c = [0.0; 24];
    c[23] = 1.0;
    c[1] = 1.0;
    assert_eq!(send_time::smoothed_mode(&c, 1.0), 0);
}

#[test]
fn the_rules_use_the_customers_own_hour_or_a_labelled_default() {
    let now = datetime!(2026-06-01 00:00 UTC);
    let mut s = CustomerState::new("shopify:1".parse().unwrap());
    let mut out = set();
    RulesSendTime.score(&s, now, &mut out);
    let h = out.get("best_send_hour").unwrap();
    assert_eq!((h.value, h.model_version.as_str()), (10.0, "rules-send-time-v1"));
    assert!(h.explanation.contains("fixed default"), "{}", h.explanation);
    assert!(!out.labels.contains_key("best_channel"));
    s.utc_offset_minutes = Some(120);
    for (i, m) in [5, 20, 40].iter().enumerate() {
        open(
            &mut s,
            &format!("e{i}"),
            "email",
            datetime!(2026-05-01 17:00 UTC) + time::Duration::minutes(*m),
        );
    }
    open(&mut s, "p1", "push", datetime!(2026-05-01 06:00 UTC));
    let mut out = set();
    RulesSendTime.score(&s, now, &mut out);
    assert_eq!(out.value("best_send_hour"), Some(19.0));
    assert_eq!(out.value("best_send_hour_email"), Some(19.0));
    assert_eq!(out.value("best_send_hour_push"), Some(8.0));
    assert_eq!(out.labels["best_channel"], "email");
    assert!(out.get("best_send_hour").unwrap().explanation.contains("UTC+2"));
}

#[test]
fn the_fitted_model_shrinks_thin_data_toward_the_segment_and_round_trips() {
    // Every customer in the "mobile" segment opens at 20:00 UTC; the store is UTC.
    let mut states = Vec::new();
    for i in 0..40 {
        let mut s = CustomerState::new(format!("shopify:{i}").parse().unwrap());
        s.acquisition =
            Some(nudge_state::offers::Acquisition { device: Some("mobile".into()), ..Default::default() });
        for k in 0..6 {
            open(
                &mut s,
                &format!("o{k}"),
                "email",
                datetime!(2026-05-01 20:10 UTC) + time::Duration::days(k),
            );
        }
        states.push(s);
    }
    let refs: Vec<&CustomerState> = states.iter().collect();
    let body = send_time::fit(
        &refs,
        &send_time::SendTimeFitOptions { store_utc_offset_minutes: Some(0), ..Default::default() },
    )
    .unwrap();
    assert_eq!(body.sufficiency["ok"], true, "{}", body.sufficiency);
    let few = send_time::fit(&refs[..10], &Default::default()).unwrap();
    assert_eq!(few.sufficiency["ok"], false);
    assert!(few.sufficiency["reason"].as_str().unwrap().contains("10 customers"));
    let model = SendTimeModel::new("v1", body);
    let again = SendTimeModel::from_body("v1", &model.to_body()).unwrap();
    assert_eq!(again, model);
    // A new mobile customer without opens gets the segment's 20:00.
    let mut s = CustomerState::new("shopify:new".parse().unwrap());
    s.acquisition =
        Some(nudge_state::offers::Acquisition { device: Some("mobile".into()), ..Default::default() });
    let mut out = set();
    model.score(&s, datetime!(2026-06-01 00:00 UTC), &mut out);
    let h = out.get("best_send_hour").unwrap();
    assert_eq!((h.value, h.model_version.as_str()), (20.0, "v1"));
    assert!(h.explanation.contains("mobile segment"), "{}", h.explanation);
    assert!(h.explanation.contains("store offset"), "{}", h.explanation);
    // A channel the version has no prior for falls back to the rules, labelled.
    open(&mut s, "s1", "sms", datetime!(2026-05-01 12:00 UTC));
    let mut out = set();
    model.score(&s, datetime!(2026-06-01 00:00 UTC), &mut out);
    assert_eq!(out.get("best_send_hour_sms").unwrap().model_version, "rules-send-time-v1");
    // Bodies that cannot serve are refused.
    let mut b = model.to_body();
    b["channels"]["email"]["population"] = serde_json::json!([1.0, 2.0]);
    assert!(SendTimeModel::from_body("v", &b).is_err());
    assert!(SendTimeModel::from_body("v", &serde_json::json!({})).is_err());
    assert!(send_time::fit(&[], &Default::default()).is_err());
}
