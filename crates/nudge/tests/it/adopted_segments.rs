//! Adopted segments end to end over HTTP: a discovery stored from the app's customers, its proposals read
//! and one adopted through `/api/segments` (roles, bad names, unknown ids, a name taken), the members
//! computed in the background; then a flow targets `customer.segments`, profiles carry `ai_segments`, and
//! the list the segment follows holds its members who consented.

use crate::{api_get, api_token, eventually, spawn_app};
use nudge::access::Role;
use nudge_decide::segments::DiscoverOptions;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::shopify_sender::Delivery;
use serde_json::{Value, json};

const FLOW_LIST: &str = "Big01";
const SEGMENT_LIST: &str = "Seg01";

fn order(id: u64, customer: u64, amount: &str, days_ago: i64) -> OrderFixture {
    let now = time::OffsetDateTime::now_utc();
    let c = CustomerFixture::new(
        customer,
        Some(&format!("c{customer}@example.org")),
        now - time::Duration::days(400),
    )
    .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, now - time::Duration::days(days_ago))
        .customer(c)
        .line_item(LineItemFixture::new(9_100_000_001, "Organic Tee", 1, amount));
    o.buyer_accepts_marketing = true;
    o
}

async fn post(t: &crate::TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    t.http.post(format!("{}{path}", t.base)).bearer_auth(token).json(&body).send().await.unwrap()
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_value(json!([
        {"name": "big_list", "trigger": "order_placed", "when": "\"big_spenders\" in customer.segments",
         "actions": [{"type": "add_to_list", "destination": "klaviyo", "list_id": FLOW_LIST}]},
        {"name": "sync", "trigger": "state_changed",
         "actions": [{"type": "sync_profile", "destination": "klaviyo"}]}
    ]))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_adopted_through_the_api_reaches_flows_profiles_and_lists() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    let (discovery, _) = seed_and_discover(&t).await;
    let store = t.app.store().clone();
    let viewer = api_token(&t, "reader", Role::Viewer).await;
    let marketer = api_token(&t, "ana", Role::Marketer).await;
    let r = api_get(&t, "/api/segments/proposals", &viewer).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let ps = v["proposals"].as_array().unwrap();
    assert_eq!(ps.len(), 2, "{v:#}");
    assert!(ps.iter().all(|p| p["size"] == 10 && p["adopted_as"].is_null()), "{v:#}");
    let aov = |p: &Value| {
        p["features"].as_array().unwrap().iter().find(|f| f["feature"] == "avg_order_value").unwrap()["mean_in"]
            .as_f64()
            .unwrap()
    };
    let big = ps.iter().max_by(|a, b| aov(a).total_cmp(&aov(b))).unwrap()["id"].as_str().unwrap().to_string();
    assert!(big.starts_with(&format!("{discovery}-")));
    assert_eq!(api_get(&t, "/api/segments/proposals?discovery=99", &viewer).await.status(), 404);
    assert_eq!(api_get(&t, "/api/segments/proposals?discovery=x", &viewer).await.status(), 400);

    let adopt = format!("/api/segments/proposals/{big}/adopt");
    let body =
        json!({"name": "big_spenders", "lists": [{"destination": "klaviyo", "list_id": SEGMENT_LIST}]});
    assert_eq!(post(&t, &adopt, &viewer, body.clone()).await.status(), 403, "a viewer cannot adopt");
    assert_eq!(post(&t, &adopt, &marketer, json!({"name": "Big Spenders"})).await.status(), 400);
    assert_eq!(post(&t, &adopt, &marketer, json!({"nom": "x"})).await.status(), 400);
    let bad_list = json!({"name": "x", "lists": [{"destination": "braze", "list_id": "L1"}]});
    assert_eq!(post(&t, &adopt, &marketer, bad_list).await.status(), 400, "braze is not configured");
    let unknown = format!("/api/segments/proposals/{discovery}-7/adopt");
    assert_eq!(post(&t, &unknown, &marketer, json!({"name": "x"})).await.status(), 404);
    let r = post(&t, &adopt, &marketer, body.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(post(&t, &adopt, &marketer, json!({"name": "other"})).await.status(), 409, "adopted already");

    // The members are computed in the background.
    let members = async || {
        let v: Value = api_get(&t, "/api/segments", &viewer).await.json().await.unwrap();
        v["segments"][0]["members"].as_u64()
    };
    assert!(eventually(20, async || members().await == Some(10)).await, "{:?}", members().await);
    let v: Value = api_get(&t, "/api/segments", &viewer).await.json().await.unwrap();
    assert_eq!(v["segments"][0]["adopted_by"], "token:ana", "{v:#}");
    // The list the segment follows holds its ten members.
    let wanted: Vec<String> = (0..10).map(|i| format!("c{}@example.org", 700 + 2 * i)).collect();
    assert!(
        eventually(20, async || {
            let mut got = t.fake.list_member_emails(SEGMENT_LIST);
            got.sort();
            let mut w = wanted.clone();
            w.sort();
            got == w
        })
        .await,
        "{:?}",
        t.fake.list_member_emails(SEGMENT_LIST)
    );

    // A new order from a big spender: the flow reads the segment and the profile carries it.
    let o = order(60_001, 700, "210.00", 0);
    assert_eq!(t.sender.send(&Delivery::new("orders/create", o.to_bytes())).await.unwrap().status, 200);
    let small = order(60_002, 701, "15.00", 0);
    assert_eq!(t.sender.send(&Delivery::new("orders/create", small.to_bytes())).await.unwrap().status, 200);
    assert!(
        eventually(20, async || t.fake.list_member_emails(FLOW_LIST) == vec!["c700@example.org"]).await,
        "{:?}",
        t.fake.list_member_emails(FLOW_LIST)
    );
    let profile_of = |email: &str| t.fake.profiles().into_iter().find(|p| p.email.as_deref() == Some(email));
    assert!(
        eventually(20, async || {
            profile_of("c700@example.org")
                .is_some_and(|p| p.properties.get("ai_segments") == Some(&json!(["big_spenders"])))
                && profile_of("c701@example.org")
                    .is_some_and(|p| p.properties.get("ai_segments") == Some(&json!([])))
        })
        .await,
        "{:?}",
        profile_of("c700@example.org").map(|p| p.properties)
    );
    // The refresh is in the audit trail: the joiners, one by one.
    let trail = store.customer_audit(&"shopify:700".parse().unwrap(), 100).await.unwrap();
    assert!(
        trail.iter().any(|r| r.stage == nudge_model::AuditStage::SegmentMembership
            && r.detail["segment"] == "big_spenders"
            && r.detail["change"] == "joined"),
        "{trail:?}"
    );
}

/// Ten big spenders (customers 700, 702, …: four orders of 200) and ten small one-time buyers (701, 703,
/// …: one order of 15), all consenting; then a two-segment discovery on order count and value, stored as
/// `nudge segments discover` stores it. Returns the discovery's id and its proposals.
async fn seed_and_discover(t: &crate::TestApp) -> (i64, Vec<nudge::segment_adoption::ProposalView>) {
    t.fake.create_list(FLOW_LIST);
    t.fake.create_list(SEGMENT_LIST);

    // Ten big spenders (four orders of 200) and ten small one-time buyers (one order of 15).
    let mut id = 50_000;
    for c in 0..20u64 {
        // Their customer records carry their email consent (orders do not).
        let now = time::OffsetDateTime::now_utc();
        let record = CustomerFixture::new(
            700 + c,
            Some(&format!("c{}@example.org", 700 + c)),
            now - time::Duration::days(400),
        )
        .consent(Some("subscribed"));
        assert_eq!(
            t.sender.send(&Delivery::new("customers/update", record.to_bytes())).await.unwrap().status,
            200
        );
        let big = c % 2 == 0;
        for k in 0..(if big { 4 } else { 1 }) {
            id += 1;
            let o = order(id, 700 + c, if big { "200.00" } else { "15.00" }, 20 + 30 * k);
            assert_eq!(
                t.sender.send(&Delivery::new("orders/create", o.to_bytes())).await.unwrap().status,
                200
            );
        }
    }
    let store = t.app.store().clone();
    assert!(eventually(20, async || store.stats().await.unwrap().pending_deliveries == 0).await);
    // Before any adoption, profiles carry no segments attribute.
    assert!(eventually(10, async || t.fake.profiles().len() == 20).await, "{}", t.fake.profiles().len());
    assert!(t.fake.profiles().iter().all(|p| !p.properties.contains_key("ai_segments")));

    // A discovery on two signals, stored as `nudge segments discover` stores it.
    let cfg = nudge::config::Config::from_toml("", &Default::default()).unwrap();
    let scoring = nudge::models_cli::full_scoring(&*store, &cfg).await.unwrap();
    let signals = nudge::segments_cli::chosen_signals("orders,avg_order_value").unwrap();
    let opts = DiscoverOptions { k: Some(2), ..DiscoverOptions::default() };
    let (report, found) =
        nudge::segments_cli::discover_store(&*store, &scoring, &signals, &opts).await.unwrap();
    let features = nudge::segments_cli::features_of(&report);
    let stored = nudge::segment_adoption::StoredDiscovery::new(&report, &found, features, 7);
    let discovery = nudge::segment_adoption::save_discovery(&*store, &stored).await.unwrap();

    let proposals = nudge::segment_adoption::proposals(&*store, Some(discovery)).await.unwrap();
    (discovery, proposals)
}

/// The console's session: signs in with a token and keeps the session cookie (redirects not followed).
struct Console {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Console {
    async fn sign_in(t: &crate::TestApp, token: &str) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = http
            .post(format!("{}/ui/login", t.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let set = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = set.split(';').next().unwrap().to_string();
        Console { http, base: t.base.clone(), cookie }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: String) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn csrf_of(body: &str) -> String {
    let key = r#"name="csrf" value=""#;
    let at = body.find(key).expect("a form with a CSRF token") + key.len();
    body[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_proposals_and_a_marketer_adopts_one() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    let (discovery, proposals) = seed_and_discover(&t).await;
    let big = proposals
        .iter()
        .max_by_key(|p| p.features.iter().find(|f| f.feature == "avg_order_value").map(|f| f.mean_in as i64))
        .unwrap();
    let viewer = Console::sign_in(&t, &api_token(&t, "reader", Role::Viewer).await).await;
    let marketer = Console::sign_in(&t, &api_token(&t, "ana", Role::Marketer).await).await;

    // The viewer reads the proposals but has no adopt form, and posting one is refused.
    let (status, page) = viewer.get("/ui/segments").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("{discovery}-1")) && page.contains("No segment adopted yet"), "{page}");
    assert!(!page.contains("/adopt\""), "no adopt form for a viewer: {page}");
    let (_, home) = viewer.get("/ui/").await;
    let adopt = format!("/ui/segments/{}/adopt", big.id);
    let (status, _) = viewer.post(&adopt, format!("csrf={}&name=big_spenders", csrf_of(&home))).await;
    assert_eq!(status, 403);

    // The marketer's form: without its CSRF token refused; with it, adopted and the members computed.
    let (_, page) = marketer.get("/ui/segments").await;
    assert!(page.contains(&format!("action=\"{adopt}\"")), "{page}");
    let csrf = csrf_of(&page);
    assert_eq!(marketer.post(&adopt, "name=big_spenders".into()).await.0, 403);
    let (status, _) = marketer.post(&adopt, format!("csrf={csrf}&name=Big+Spenders")).await;
    assert_eq!(status, 303, "a bad name is reported on the page, not adopted");
    let (_, page) = marketer.get("/ui/segments").await;
    assert!(page.contains("not a segment name") && page.contains("No segment adopted yet"), "{page}");
    let (status, _) = marketer.post(&adopt, format!("csrf={csrf}&name=big_spenders")).await;
    assert_eq!(status, 303);
    let store = t.app.store().clone();
    assert!(
        eventually(20, async || store
            .adopted_segments()
            .await
            .unwrap()
            .first()
            .is_some_and(|a| a.members == 10))
        .await
    );
    let (_, page) = marketer.get("/ui/segments").await;
    assert!(page.contains("<th scope=\"row\">big_spenders</th>") && page.contains("token:ana"), "{page}");
    assert!(page.contains("adopted as <strong>big_spenders</strong>"), "{page}");
}
