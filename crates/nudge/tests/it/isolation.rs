//! One destination down costs the others nothing: with Klaviyo answering 503, Braze receives every profile
//! while Klaviyo's items wait in its own queue (its circuit open); when Klaviyo recovers its backlog drains,
//! each event exactly once.

use crate::*;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::fake_klaviyo::FakeMode;
use nudge_testkit::shopify_sender::Delivery;
use nudge_testkit::{FakeBraze, FakeBrazeConfig};
use time::OffsetDateTime;

const BRAZE_KEY: &str = "braze-isolation-key";

fn order(id: u64, cust: u64) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_str(
        r#"[{"name":"sync","trigger":"state_changed",
             "actions":[{"type":"sync_profile","destination":"klaviyo"},{"type":"sync_profile","destination":"braze"}]},
            {"name":"thanks","trigger":"order_placed",
             "actions":[{"type":"track_event","destination":"klaviyo","metric":"AI Thanks"},
                        {"type":"track_event","destination":"braze","metric":"AI Thanks"}]}]"#,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_holds_only_its_own_backlog() {
    nudge_testkit::ensure_crypto_provider();
    let braze = FakeBraze::start(FakeBrazeConfig::new(BRAZE_KEY)).await.unwrap();
    let braze_url = braze.base_url();
    let t = spawn_app(|c| {
        c.destinations.braze = Some(nudge_deliver::BrazeConfig::new(BRAZE_KEY, braze_url).allowing_private());
        c.flows = Some(flows());
    })
    .await;
    t.fake.set_mode(FakeMode::Down);
    const N: u64 = 40;
    for i in 0..N {
        let r = t
            .sender
            .send(&Delivery::new("orders/create", order(8000 + i, 900 + i).to_bytes()))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Braze gets every customer's profile and event although Klaviyo answers nothing but 503.
    assert!(
        eventually(20, async || braze.users().len() == N as usize && braze.events().len() == N as usize)
            .await,
        "braze: {} users, {} events",
        braze.users().len(),
        braze.events().len()
    );
    let store = t.app.store();
    assert!(
        eventually(20, async || store.pending_for("braze").await.unwrap() == 0).await,
        "Braze's attempts are recorded"
    );
    assert!(store.pending_for("klaviyo").await.unwrap() > 0, "Klaviyo's items wait in its own queue");
    // Its circuit is open: a second passes with at most a probe, not a request per item.
    let before = t.fake.requests().len();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let during = t.fake.requests().len() - before;
    assert!(during <= 4, "{during} requests to the failing destination in a second");

    // Klaviyo recovers: its backlog drains, every event once.
    t.fake.set_mode(FakeMode::Normal);
    assert!(
        eventually(60, async || store.pending_for("klaviyo").await.unwrap() == 0).await,
        "Klaviyo's backlog drains after it recovers"
    );
    let events = t.fake.events();
    assert_eq!(events.len(), N as usize, "each event once");
    let mut ids: Vec<_> = events.iter().map(|e| e.unique_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N as usize);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_rejected, stats.outbox_dead), (0, 0), "nothing lost");
}
