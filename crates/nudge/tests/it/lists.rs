//! List actions end to end: a configured flow adds a customer who placed an order to a Klaviyo list (the
//! fake shows the membership), a second flow removes them when the order is cancelled; a customer without
//! marketing consent is never added but is removed all the same.

use crate::*;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{TerminalState, TraceId};
use nudge_testkit::shopify_sender::Delivery;
use time::OffsetDateTime;

const LIST: &str = "Xy12Ab";

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_value(serde_json::json!([
        {"name": "buyers_list", "trigger": "order_placed",
         "actions": [{"type": "add_to_list", "destination": "klaviyo", "list_id": LIST}]},
        {"name": "cancelled_off_list", "trigger": "order_cancelled",
         "actions": [{"type": "remove_from_list", "destination": "klaviyo", "list_id": LIST}]}
    ]))
    .unwrap()
}

fn order(id: u64, cust: u64, consent: bool) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(consent.then_some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = consent;
    o
}

async fn send(t: &TestApp, topic: &str, body: Vec<u8>) -> TraceId {
    let r = t.sender.send(&Delivery::new(topic, body)).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["trace_id"].as_str().unwrap().parse().unwrap()
}

async fn terminal(t: &TestApp, trace: TraceId) -> Option<TerminalState> {
    nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_adds_a_buyer_to_a_list_and_another_removes_them_on_cancellation() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    t.fake.create_list(LIST);

    // Without consent first, then with: processing keeps log order.
    let quiet = order(8002, 602, false);
    let quiet_placed = send(&t, "orders/create", quiet.to_bytes()).await;
    let buyer = order(8001, 601, true);
    let placed = send(&t, "orders/create", buyer.to_bytes()).await;
    let added = eventually(15, async || t.fake.list_member_emails(LIST) == vec!["c601@example.org"]).await;
    assert!(added, "{:?}\n{:?}", t.fake.list_member_emails(LIST), t.fake.requests());
    assert!(eventually(10, async || terminal(&t, placed).await == Some(TerminalState::Delivered)).await);
    // Its delivery has ended (nothing to push), and nothing reached Klaviyo.
    assert!(terminal(&t, quiet_placed).await.is_some());
    assert!(
        t.fake.profile_by_email("c602@example.org").is_none(),
        "nothing was sent for the customer without consent"
    );
    let view = t.app.store().trace(quiet_placed).await.unwrap().unwrap();
    let shown = serde_json::to_string(&view.records).unwrap();
    assert!(shown.contains("no_consent"), "{shown}");

    // The cancellation fires the second flow: off the list.
    let cancelled =
        send(&t, "orders/cancelled", buyer.clone().cancelled(OffsetDateTime::now_utc()).to_bytes()).await;
    assert!(
        eventually(15, async || t.fake.list_members(LIST) == Some(vec![])).await,
        "{:?}",
        t.fake.requests()
    );
    assert!(eventually(10, async || terminal(&t, cancelled).await == Some(TerminalState::Delivered)).await);
    let delete = t.fake.requests().into_iter().find(|r| r.method == "DELETE").expect("a removal was sent");
    assert_eq!(delete.path, "/api/lists/Xy12Ab/relationships/profiles");
    assert_eq!(delete.status, 204);
    let profile = t.fake.profile_by_email("c601@example.org").unwrap();
    assert_eq!(delete.json().unwrap(), serde_json::json!({"data": [{"type": "profile", "id": profile.id}]}));

    // Removing needs no consent: the customer without it is removed (a success though never a member).
    let quiet_cancelled =
        send(&t, "orders/cancelled", quiet.clone().cancelled(OffsetDateTime::now_utc()).to_bytes()).await;
    assert!(
        eventually(15, async || terminal(&t, quiet_cancelled).await == Some(TerminalState::Delivered)).await
    );
    let deletes = t.fake.requests().into_iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes, 2);
    assert_eq!(t.fake.list_members(LIST), Some(vec![]));
    // The audit names the action and its list, never an email.
    let view = t.app.store().trace(cancelled).await.unwrap().unwrap();
    let shown = serde_json::to_string(&view.records).unwrap();
    assert!(shown.contains("remove_from_list") && shown.contains(LIST), "{shown}");
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_list_is_rejected_with_klaviyos_reason() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    // No list is created in the fake: Klaviyo answers 404.
    let placed = send(&t, "orders/create", order(8101, 611, true).to_bytes()).await;
    let ended = eventually(15, async || terminal(&t, placed).await.is_some()).await;
    assert!(ended, "{:?}", t.fake.requests());
    let end = terminal(&t, placed).await.unwrap();
    assert!(
        matches!(&end, TerminalState::Rejected(reason) if reason.contains("does not exist") && reason.contains("Xy12Ab")),
        "{end:?}"
    );
    let view = t.app.store().trace(placed).await.unwrap().unwrap();
    let shown = serde_json::to_string(&view.records).unwrap();
    assert!(shown.contains("404") && shown.contains("does not exist"), "{shown}");
    // Refused for good: the list call was made once, not retried.
    let list_calls = t.fake.requests().into_iter().filter(|r| r.path.starts_with("/api/lists/")).count();
    assert_eq!(list_calls, 1);
    t.app.shutdown().await;
}
