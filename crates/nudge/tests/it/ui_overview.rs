//! The overview's live parts and the flows' counts: deliveries per minute by source and topic (table and
//! charts), each destination's 429s and circuit, and each flow's decisions by outcome.

use super::*;
use nudge_testkit::fake_klaviyo::FakeMode;

/// The table row whose header cell is `name`, from `<th scope="row">` to `</tr>`.
fn row<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!(r#"<th scope="row">{name}</th>"#))
        .unwrap_or_else(|| panic!("a row {name}: {page}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").expect("the row ends")]
}

fn live_flow(name: &str, trigger: &str) -> nudge_policy::flows::FlowSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "trigger": trigger,
        "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI Order" }],
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_traffic_per_minute_destination_health_and_flow_counts() {
    let t = spawn_app(|c| {
        c.flows = Some(vec![approval_flow("AI First Order"), live_flow("every_order", "order_placed")])
    })
    .await;
    // The first request to Klaviyo is answered 429 with a Retry-After of one second; the retry goes through.
    t.fake.set_mode(FakeMode::Throttle { retry_after_secs: 1, count: 1 });
    seed_orders(&t, &[(7301, 901, "Lena"), (7302, 902, "Ola")]).await;
    assert!(eventually(15, async || t.fake.events().len() >= 2).await, "both live pushes arrive");
    let token = api_token(&t, "ada", Role::Admin).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;

    let p = b.get("/ui/").await;
    assert_eq!(p.status, 200, "{}", p.body);
    // Two orders this minute: the last five minutes, hour and day each count them.
    let traffic = row(&p.body, "shopify orders/create");
    assert_eq!(traffic.matches(r#"<td class="num">2</td>"#).count(), 3, "{traffic}");
    let klaviyo = row(&p.body, "klaviyo");
    assert!(klaviyo.contains("<td>closed</td>"), "the circuit stayed closed: {klaviyo}");
    assert!(klaviyo.contains(r#"<td class="num">1 <span class="muted">(last "#), "one 429: {klaviyo}");
    assert!(p.body.contains(r#"src="/ui/charts/deliveries.svg?window=hour""#), "{}", p.body);
    for window in ["hour", "day"] {
        let chart = b.get(&format!("/ui/charts/deliveries.svg?window={window}")).await;
        assert_eq!(chart.status, 200);
        assert!(
            chart.body.starts_with("<svg") && chart.body.contains("shopify orders/create"),
            "{window}: {}",
            chart.body
        );
    }
    assert_eq!(b.get("/ui/charts/deliveries.svg?window=week").await.status, 400);

    // Each flow's decisions: the approval flow holds both, the live one sent both.
    let flows = b.get("/ui/flows").await;
    let held = row(&flows.body, r#"<a href="/ui/flows/first_orders">first_orders</a>"#);
    assert!(held.contains(r#"<a href="/ui/approvals?flow=first_orders">2</a>"#), "{held}");
    let sent = row(&flows.body, r#"<a href="/ui/flows/every_order">every_order</a>"#);
    let cells: Vec<&str> =
        sent.split(r#"<td class="num">"#).skip(1).map(|c| c.split('<').next().unwrap()).collect();
    // Holdout %, then decided, sent, shadow, held, suppressed, errors.
    assert_eq!(cells[1..], ["2", "2", "0", "0", "0", "0"], "{sent}");
    t.app.shutdown().await;
}

/// A review whose title and body carry markup, as Yotpo's API confirms it: processed, and no markup of it
/// reaches the trace, the customer's page or their audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_text_with_markup_never_reaches_a_page_as_markup() {
    use nudge_ingest::yotpo::fixtures::ReviewFixture;
    use nudge_testkit::{FakeYotpo, FakeYotpoConfig, YotpoSender, YotpoWebhook};
    const TOKEN: &str = "yt_5b7d9f1a3c5e7092b4d6f8a1";
    let yotpo = FakeYotpo::start(FakeYotpoConfig::default()).await.unwrap();
    let t = spawn_app(|c| {
        c.sources.yotpo = Some(nudge::config::YotpoSourceConfig {
            app_key: yotpo.config().app_key.clone(),
            secret: yotpo.config().secret.clone(),
            url_token: TOKEN.into(),
            api_base: yotpo.base_url(),
        })
    })
    .await;
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let review = ReviewFixture::new(&yotpo.config().app_key, 4401, Some("rev@example.org"), at)
        .content("<script>alert(4)</script>", "Lovely <img src=x onerror=alert(5)> mug");
    yotpo.seed_review(review.clone().pulled());
    let body = serde_json::to_vec(&review.webhook_strings("review_create")).unwrap();
    let sender = YotpoSender::new(format!("{}/webhooks/yotpo", t.base), Some(TOKEN)).unwrap();
    let r = sender.send(&YotpoWebhook { message_id: "wm-xss".into(), body }).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let trace: TraceId = v["trace_id"].as_str().unwrap().parse().unwrap();
    let done = async || nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap().is_some();
    assert!(eventually(15, done).await, "the review is processed");

    let token = api_token(&t, "ada", Role::Admin).await;
    let mut b = Browser::new(&t);
    b.sign_in(&token).await;
    let p = b.get(&format!("/ui/audit?trace={trace}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("review_posted"), "{}", p.body);
    // The console keeps no review text to show (the trail names the event, the state keeps the rating and
    // sentiment); wherever the review passed, no markup of it reaches a page.
    let view = t.app.store().trace(trace).await.unwrap().unwrap();
    let customer =
        view.records.iter().find_map(|r| r.customer.clone()).expect("the review names its customer");
    let c = b.get(&format!("/ui/customers?id={customer}")).await;
    assert_eq!(c.status, 200, "{}", c.body);
    let a = b.get(&format!("/ui/audit?customer={customer}")).await;
    for page in [&p.body, &c.body, &a.body] {
        let data = page.replace(CONSOLE_SCRIPT, "");
        assert!(!data.contains("<script") && !data.contains("<img src=x"), "{page}");
    }
    t.app.shutdown().await;
}
