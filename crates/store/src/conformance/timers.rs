//! Conformance checks of timers and schedule runs.

use super::*;

/// A timer of customer 1 for checkout `tok` (cart `cart`), due at `due`; its payload names both.
fn timer(origin: TraceId, tok: &str, cart: &str, due: i64) -> TimerSpec {
    TimerSpec {
        checkout_token: tok.into(),
        cart_token: Some(cart.into()),
        customer: cust(1),
        due_at_ms: due,
        payload_json: format!("{{\"token\":\"{tok}\",\"due\":{due}}}"),
        origin_trace: origin,
    }
}

pub async fn timers_fire_and_cancel(s: Arc<dyn Store>) {
    let t = TraceId::new();
    let timer = |tok: &str, cart: &str, due: i64| timer(t, tok, cart, due);
    s.commit_processing(vec![ProcessOutcome {
        set_timers: vec![timer("a", "ca", 100), timer("b", "cb", 100), timer("c", "cc", 500)],
        ..Default::default()
    }])
    .await
    .unwrap();
    // Moving a timer replaces it; cancelling by cart token removes it.
    s.commit_processing(vec![ProcessOutcome {
        set_timers: vec![timer("a", "ca", 1_000)],
        cancel_timers: vec!["cb".into()],
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(s.fire_due_timers(200, 10).await.unwrap(), 0);
    assert_eq!(s.fire_due_timers(600, 10).await.unwrap(), 1, "only c is due");
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].source, "timer");
    assert_eq!(pending[0].body, b"{\"token\":\"c\",\"due\":500}");
    assert_eq!(s.fire_due_timers(600, 10).await.unwrap(), 0, "a timer fires once");
    assert_eq!(s.stats().await.unwrap().timers, 1);
}

pub async fn schedule_runs(s: Arc<dyn Store>) {
    assert!(s.schedule_runs().await.unwrap().is_empty());
    let run = |flow: &str, fire_at_ms, cursor: Option<u32>, pending: Option<u32>, done| ScheduleRun {
        flow: flow.into(),
        schedule: "0 9 * * 1".into(),
        fire_at_ms,
        cursor: cursor.map(cust),
        pending_through: pending.map(cust),
        done,
    };
    s.save_schedule_run(run("weekly", 1_000, None, Some(3), false)).await.unwrap();
    s.save_schedule_run(run("daily", 2_000, None, None, true)).await.unwrap();
    assert_eq!(
        s.schedule_runs().await.unwrap(),
        [run("daily", 2_000, None, None, true), run("weekly", 1_000, None, Some(3), false)],
        "by flow name"
    );
    // Saving replaces the flow's record: the chunk landed, the cursor moves on.
    s.save_schedule_run(run("weekly", 1_000, Some(3), None, false)).await.unwrap();
    s.save_schedule_run(run("weekly", 1_000, Some(3), Some(6), false)).await.unwrap();
    let weekly = s.schedule_runs().await.unwrap().into_iter().find(|r| r.flow == "weekly").unwrap();
    assert_eq!(weekly, run("weekly", 1_000, Some(3), Some(6), false));
    s.delete_schedule_run("weekly").await.unwrap();
    s.delete_schedule_run("never_there").await.unwrap();
    assert_eq!(s.schedule_runs().await.unwrap(), [run("daily", 2_000, None, None, true)]);

    // A chunk committed again under its key (a restart between the commit and the cursor's move) is a
    // duplicate of the first: one delivery per chunk.
    let chunk = |trace| NewDelivery {
        trace_id: trace,
        source: "schedule".into(),
        topic: "daily".into(),
        shop: None,
        webhook_id: None,
        event_id: None,
        received_at_ms: 2_000,
        headers_json: "{}".into(),
        body: br#"{"customers":["shopify:1"]}"#.to_vec(),
        dedupe_keys: vec!["schedule:daily:2000:None".into()],
        part: None,
    };
    let first = TraceId::new();
    assert!(matches!(s.commit_delivery(chunk(first)).await.unwrap(), CommitResult::Committed { .. }));
    match s.commit_delivery(chunk(TraceId::new())).await.unwrap() {
        CommitResult::Duplicate { original, .. } => assert_eq!(original, first),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1);
}

/// One commit of several outcomes applies their timers and aliases as one commit per outcome would: a
/// timer set, cancelled and set again ends as last set; the same checkout moved twice keeps the last move;
/// an alias re-pointed within the batch points where the last outcome put it.
pub async fn one_batch_keeps_the_order_of_timers_and_aliases(s: Arc<dyn Store>) {
    let t = TraceId::new();
    let timer = |tok: &str, cart: &str, due: i64| timer(t, tok, cart, due);
    let alias = |c: u32| NewAlias {
        alias: "anon:v-9".into(),
        customer: cust(c),
        at_ms: i64::from(c),
        trace_id: None,
    };
    s.commit_processing(vec![
        ProcessOutcome {
            set_timers: vec![timer("a", "ca", 100)],
            aliases: vec![alias(1)],
            ..Default::default()
        },
        ProcessOutcome { cancel_timers: vec!["a".into()], aliases: vec![alias(2)], ..Default::default() },
        ProcessOutcome {
            set_timers: vec![timer("a", "ca", 300), timer("b", "cb", 200)],
            aliases: vec![alias(3), alias(2)],
            ..Default::default()
        },
        ProcessOutcome {
            cancel_timers: vec!["cb".into()],
            set_timers: vec![timer("a", "ca", 700), timer("a", "ca", 800)],
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    assert_eq!(s.stats().await.unwrap().timers, 1, "b was cancelled after it was set");
    assert_eq!(s.fire_due_timers(750, 10).await.unwrap(), 0, "a moved to 800, its last setting");
    assert_eq!(s.fire_due_timers(800, 10).await.unwrap(), 1);
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].body, b"{\"token\":\"a\",\"due\":800}");
    let found = s.resolve_aliases(&["anon:v-9".into()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].customer, cust(2), "the alias points where the batch's last write put it");
}
