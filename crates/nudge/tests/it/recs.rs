//! Recommendations end to end: product webhooks build the catalogue, `fit_and_activate` fits a `recs`
//! version on the stored orders, and the API, the profile pushes and the merchandiser rules show it.

use crate::{api_get, api_token, eventually, spawn_app};
use nudge::access::Role;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture, ProductFixture};
use nudge_testkit::shopify_sender::Delivery;
use serde_json::Value;

const P: u64 = 9_100_000_000;

fn pid(n: u64) -> String {
    (P + n).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fitted_version_serves_lists_through_the_api_and_the_profile_under_the_rules() {
    let t = spawn_app(|cfg| {
        cfg.recs.pins = vec![nudge_decide::recs::Pin { product: pid(10), segment: None }];
        cfg.recs.exclude = vec![pid(12)];
        cfg.recs.max_per_brand = 0;
    })
    .await;
    let now = time::OffsetDateTime::now_utc();
    // The catalogue: 13 products; 11 is a draft (unavailable), 12 is excluded, 10 is pinned.
    for n in 1..=13u64 {
        let mut p = ProductFixture::new(P + n, &format!("Item {n}"), now - time::Duration::days(60))
            .price(&format!("{n}.50"))
            .image(&format!("https://cdn.example.com/{n}.jpg"));
        if n == 11 {
            p = p.status("draft");
        }
        t.sender.send(&Delivery::new("products/create", p.to_bytes())).await.unwrap();
    }
    // Orders: 1 goes with 2 and 11 and 12; customer 500 bought 1 a day ago.
    let baskets: [(u64, &[u64]); 8] = [
        (501, &[1, 2]),
        (502, &[1, 2, 11]),
        (503, &[1, 2, 12]),
        (504, &[2, 3]),
        (505, &[1, 11, 12]),
        (506, &[3, 4]),
        (507, &[1, 2]),
        (500, &[1]),
    ];
    for (i, (c, items)) in baskets.iter().enumerate() {
        let customer =
            CustomerFixture::new(*c, Some(&format!("c{c}@example.org")), now - time::Duration::days(90));
        let at = now - time::Duration::days(if *c == 500 { 1 } else { 20 });
        let mut o = OrderFixture::new(7_000 + i as u64, at).customer(customer);
        for n in *items {
            o = o.line_item(LineItemFixture::new(P + n, format!("Item {n} (order line)"), 1, "9.00"));
        }
        t.sender.send(&Delivery::new("orders/create", o.to_bytes())).await.unwrap();
    }
    let store = t.app.store().clone();
    assert!(
        eventually(20, async || {
            store.products(None).await.unwrap().len() == 13
                && store.stats().await.unwrap().pending_deliveries == 0
        })
        .await,
        "the catalogue and the orders are processed"
    );
    let viewer = api_token(&t, "feed", Role::Viewer).await;
    // No active version: an empty list, not an error.
    let r = api_get(&t, "/api/recs/shopify:500", &viewer).await;
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["products"], serde_json::json!([]));
    assert_eq!(a["model_version"], Value::Null);

    let recs = nudge_decide::recs::RecsConfig {
        pins: vec![nudge_decide::recs::Pin { product: pid(10), segment: None }],
        exclude: vec![pid(12)],
        max_per_brand: 0,
        ..Default::default()
    };
    let version = nudge::fit_recs::fit_and_activate(&*store, &recs).await.expect("fitted and activated");
    let n = t.app.reload_recs().await.unwrap();
    assert_eq!(n, 8, "every stored customer's list is precomputed");

    let r = api_get(&t, "/api/recs/shopify:500?count=4", &viewer).await;
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["customer_id"], "shopify:500");
    assert_eq!(a["model_version"], version.as_str());
    assert!(a["generated_at"].is_string());
    let products = a["products"].as_array().unwrap();
    assert_eq!(products.len(), 4, "{a}");
    let ids: Vec<&str> = products.iter().map(|p| p["id"].as_str().unwrap()).collect();
    // The pin first; bought with 1: 2; never the draft, the excluded product or the recent purchase.
    assert_eq!(ids[0], pid(10), "{a}");
    assert_eq!(products[0]["reason"], "pinned");
    assert_eq!(ids[1], pid(2), "{a}");
    assert_eq!(products[1]["reason"], "bought_with");
    for never in [pid(11), pid(12), pid(1)] {
        assert!(!ids.contains(&never.as_str()), "{never} in {ids:?}");
    }
    // Catalogue facts: the catalogue's title, price, image and storefront URL, the orders' currency.
    assert_eq!(products[1]["title"], "Item 2");
    assert_eq!(products[1]["price"], "2.50");
    assert_eq!(products[1]["currency"], "USD", "the fixture orders are in USD");
    assert_eq!(products[1]["image_url"], "https://cdn.example.com/2.jpg");
    assert_eq!(products[1]["url"], "https://demo-store.myshopify.com/products/item-2");

    // Bad counts and unknown customers.
    for bad in ["0", "21", "abc", "-1"] {
        let r = api_get(&t, &format!("/api/recs/shopify:500?count={bad}"), &viewer).await;
        assert_eq!(r.status(), 400, "count={bad}");
    }
    assert_eq!(api_get(&t, "/api/recs/shopify:999999", &viewer).await.status(), 404);
    assert_eq!(api_get(&t, "/api/recs/not-a-key", &viewer).await.status(), 400);
    let r = t.http.get(format!("{}/api/recs/shopify:500", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 401, "token-protected");

    // A product going out of stock leaves the served lists at once.
    let gone = ProductFixture::new(P + 2, "Item 2", now - time::Duration::days(60))
        .updated_at(now)
        .inventory_quantity(0);
    t.sender.send(&Delivery::new("products/update", gone.to_bytes())).await.unwrap();
    assert!(
        eventually(20, async || {
            let a: Value = api_get(&t, "/api/recs/shopify:500", &viewer).await.json().await.unwrap();
            a["products"].as_array().is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["id"] != pid(2)))
        })
        .await,
        "the unavailable product is no longer recommended"
    );

    // The customer's next profile push carries the list.
    let customer = CustomerFixture::new(500, Some("c500@example.org"), now - time::Duration::days(90))
        .consent(Some("subscribed"))
        .updated_at(now);
    t.sender.send(&Delivery::new("customers/update", customer.to_bytes())).await.unwrap();
    let key = "ai_recommended_products";
    assert!(
        eventually(20, async || {
            t.fake.profile_by_email("c500@example.org").is_some_and(|p| {
                p.properties
                    .get(key)
                    .and_then(Value::as_array)
                    .is_some_and(|l| l.first().is_some_and(|x| x["id"] == pid(10) && x["title"] == "Item 10"))
            })
        })
        .await,
        "the profile push carries {key}: {:?}",
        t.fake.profile_by_email("c500@example.org").map(|p| p.properties)
    );
}
