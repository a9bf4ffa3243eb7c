//! Generated copy end to end: a flow with `generate_copy` against the LLM fake and the Klaviyo fake. The
//! event reaches Klaviyo with the copy under `ai_copy`; with approval the queue shows the copy and approving
//! sends exactly that; every failure of the LLM falls back (audited) within the timeout; a spent budget
//! makes no call, also after a restart; and no email, name, phone or address ever reaches the LLM.

use crate::*;
use nudge::access::Role;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_llm::{LlmConfig, PromptSpec};
use nudge_model::{AuditStage, TraceId};
use nudge_store::prelude::*;
use nudge_testkit::fake_llm::{DEFAULT_API_KEY, DEFAULT_MODEL};
use nudge_testkit::shopify_sender::Delivery;
use nudge_testkit::{FakeLlm, FakeLlmConfig, FakeLlmHandle, LlmAnswer};
use serde_json::{Value, json};
use time::OffsetDateTime;

const FALLBACK_SUBJECT: &str = "We saved your favourites";

fn prompt() -> PromptSpec {
    serde_json::from_value(json!({
        "name": "winback", "version": 2,
        "system": "You write short, friendly e-commerce copy.",
        "user": "Segment {{segment}}; scores {{scores}}; products {{products}}; category {{preferred_category}}.",
        "slots": {"subject": {"max_chars": 60}, "preheader": {"max_chars": 90}, "body": {"max_chars": 300}},
        "fallback": {"subject": FALLBACK_SUBJECT, "preheader": "A little something for you",
                     "body": "Come back and see what is new."}
    }))
    .unwrap()
}

fn flow(mode: &str) -> nudge_policy::flows::FlowSpec {
    serde_json::from_value(json!({
        "name": "winback", "trigger": "order_placed", "mode": mode,
        "actions": [
            {"type": "generate_copy", "prompt": "winback"},
            {"type": "track_event", "destination": "klaviyo", "metric": "AI Winback"}
        ]
    }))
    .unwrap()
}

fn llm(fake: &FakeLlmHandle, timeout_ms: u64) -> LlmConfig {
    let mut c = LlmConfig::new(&fake.base_url(), DEFAULT_MODEL, DEFAULT_API_KEY);
    c.timeout = Duration::from_millis(timeout_ms);
    c.max_retries = 1;
    c
}

/// A customer with every kind of contact data a store sends: email, names, phone, and (in the order
/// body) shipping and billing addresses.
struct Person {
    email: String,
    first: String,
    last: String,
    phone: String,
    street: String,
}

fn person(n: u64) -> Person {
    Person {
        email: format!("zelda.quint{n}@example.org"),
        first: format!("Zelda{n}"),
        last: format!("Quintero{n}"),
        phone: format!("+4420794609{n:02}"),
        street: format!("{n} Wallaby Crescent"),
    }
}

fn order_body(id: u64, cust: u64, p: &Person) -> Vec<u8> {
    let c = CustomerFixture::new(cust, Some(&p.email), OffsetDateTime::now_utc())
        .name(Some(&p.first), Some(&p.last))
        .phone(&p.phone)
        .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Trail Runner",
        1,
        "89.00",
    ));
    o.buyer_accepts_marketing = true;
    let mut v: Value = serde_json::from_slice(&o.to_bytes()).unwrap();
    let address = json!({"first_name": p.first, "last_name": p.last, "address1": p.street, "city": "Sydney",
                         "zip": "2000", "country": "Australia", "phone": p.phone});
    v["shipping_address"] = address.clone();
    v["billing_address"] = address;
    serde_json::to_vec(&v).unwrap()
}

async fn send_order(t: &TestApp, id: u64, cust: u64) -> TraceId {
    let r =
        t.sender.send(&Delivery::new("orders/create", order_body(id, cust, &person(cust)))).await.unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["trace_id"].as_str().unwrap().parse().unwrap()
}

/// The Klaviyo event of the winback flow for customer `cust`, once it has arrived.
async fn winback_event(
    t: &TestApp,
    cust: u64,
    secs: u64,
) -> Option<nudge_testkit::fake_klaviyo::StoredEvent> {
    let email = person(cust).email;
    let mut found = None;
    eventually(secs, async || {
        found = t.fake.events().into_iter().find(|e| {
            e.metric == "AI Winback" && e.profile.get("email").and_then(Value::as_str) == Some(email.as_str())
        });
        found.is_some()
    })
    .await;
    found
}

async fn copy_audit(t: &TestApp, trace: TraceId) -> Vec<Value> {
    let view = t.app.store().trace(trace).await.unwrap().unwrap_or_else(|| panic!("trace {trace}"));
    view.records.iter().filter(|r| r.stage == AuditStage::CopyGenerated).map(|r| r.detail.clone()).collect()
}

/// Nothing that identifies any of `customers` was ever sent to the LLM.
fn assert_no_pii_sent(fake: &FakeLlmHandle, customers: &[u64]) {
    let sent = fake.received_text();
    assert!(!sent.is_empty(), "the fake received requests");
    for c in customers {
        let p = person(*c);
        for needle in
            [&p.email, &p.first, &p.last, &p.phone, &p.street, &"Wallaby".to_string(), &"Sydney".to_string()]
        {
            assert!(!sent.contains(needle.as_str()), "`{needle}` reached the LLM: {sent}");
        }
        assert!(!sent.contains(&format!("shopify:{c}")), "the customer id reached the LLM");
    }
    assert!(!sent.contains('@'), "nothing email-like reached the LLM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_flow_sends_generated_copy_audited_counted_and_without_pii() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
    let t = spawn_app(|c| {
        c.llm = Some(llm(&fake, 5_000));
        c.prompts = vec![prompt()];
        c.flows = Some(vec![flow("live")]);
    })
    .await;
    let customers: Vec<u64> = (31..36).collect();
    let mut traces = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        traces.push(send_order(&t, 5_000 + i as u64, *c).await);
    }
    for (c, trace) in customers.iter().zip(&traces) {
        let e =
            winback_event(&t, *c, 20).await.unwrap_or_else(|| panic!("customer {c}: {:?}", t.fake.events()));
        let copy = &e.properties["ai_copy"];
        assert_eq!(copy["prompt"], "winback@2", "{copy}");
        assert_eq!(copy["fallback"], false, "{copy}");
        let subject = copy["subject"].as_str().unwrap();
        assert!(
            !subject.is_empty() && subject.chars().count() <= 60 && subject != FALLBACK_SUBJECT,
            "{subject}"
        );
        assert!(copy["preheader"].is_string() && copy["body"].is_string(), "{copy}");
        assert!(
            !e.properties.contains_key(nudge_model::COPY_REQUEST_PROPERTY),
            "the request never leaves nudge"
        );
        // Audited once, with the copy that was sent, the tokens and no key.
        let audit = copy_audit(&t, *trace).await;
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(audit[0]["copy"]["subject"], copy["subject"]);
        assert_eq!((audit[0]["prompt"].as_str(), audit[0]["version"].as_u64()), (Some("winback"), Some(2)));
        assert!(audit[0]["tokens"].as_u64().unwrap() > 0 && audit[0]["attempts"] == 1, "{}", audit[0]);
        assert!(!audit[0].to_string().contains(DEFAULT_API_KEY));
    }
    assert_eq!(fake.requests().len(), customers.len(), "one generation per event, never repeated");
    assert_no_pii_sent(&fake, &customers);
    // Usage is stored for the month and shown in /metrics.
    let month = nudge::copy::month_of(OffsetDateTime::now_utc());
    let usage = t.app.store().llm_usage(&month).await.unwrap();
    assert_eq!((usage.generations, usage.fallbacks), (customers.len() as u64, 0));
    assert!(usage.tokens > 0);
    let metrics = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("nudge_llm_tokens_used") && metrics.contains("nudge_llm_generations_total"),
        "{metrics}"
    );
    t.app.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_queue_shows_the_copy_and_approving_sends_exactly_it() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
    let t = spawn_app(|c| {
        c.llm = Some(llm(&fake, 5_000));
        c.prompts = vec![prompt()];
        c.flows = Some(vec![flow("approval")]);
    })
    .await;
    let token = api_token(&t, "mia", Role::Marketer).await;
    let trace = send_order(&t, 6_001, 41).await;
    let mut item = Value::Null;
    let shown = eventually(20, async || {
        let r = api_get(&t, "/api/approvals?flow=winback&status=pending", &token).await;
        let v: Value = r.json().await.unwrap();
        item = v["approvals"][0].clone();
        item["actions"][0]["action"]["properties"]["ai_copy"]["subject"].is_string()
    })
    .await;
    assert!(shown, "the approval item shows its copy: {item}");
    let shown_copy = item["actions"][0]["action"]["properties"]["ai_copy"].clone();
    assert_eq!(shown_copy["fallback"], false);
    assert!(t.fake.events().is_empty(), "nothing is sent before approval");
    let id = item["id"].as_i64().unwrap();
    let r = t
        .http
        .post(format!("{}/api/approvals/{id}/approve", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = winback_event(&t, 41, 20).await.expect("sent after approval");
    assert_eq!(e.properties["ai_copy"], shown_copy, "exactly the copy shown");
    assert_eq!(fake.requests().len(), 1, "generated once, before approval; the send did not generate again");
    assert_eq!(copy_audit(&t, trace).await.len(), 1);
    assert_no_pii_sent(&fake, &[41]);
    t.app.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_llm_failure_falls_back_within_the_timeout_and_is_audited() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
    // Long enough that an answer of the fake (500, 429, bad JSON) arrives within it on a machine busy with
    // other tests, so each mode ends with its own reason rather than "timed out"; the hang ends with it.
    let timeout_ms = 2_000;
    let t = spawn_app(|c| {
        c.llm = Some(llm(&fake, timeout_ms));
        c.prompts = vec![prompt()];
        c.flows = Some(vec![flow("live")]);
    })
    .await;
    let modes = [
        (LlmAnswer::ServerError(500), "HTTP 500"),
        (
            LlmAnswer::RateLimited {
                retry_after_ms: None,
                retry_after: Some("30".into()),
                should_retry: None,
                reset_requests: None,
            },
            "rate limited",
        ),
        (LlmAnswer::Malformed, "invalid output"),
        (LlmAnswer::OverLong, "invalid output"),
        (LlmAnswer::Hang, "timed out"),
    ];
    let customers: Vec<u64> = (51..51 + modes.len() as u64).collect();
    for (i, ((mode, why), cust)) in modes.iter().zip(&customers).enumerate() {
        fake.set_mode(mode.clone());
        let trace = send_order(&t, 7_000 + i as u64, *cust).await;
        let e = winback_event(&t, *cust, 20).await.unwrap_or_else(|| panic!("{mode:?}: nothing delivered"));
        let copy = &e.properties["ai_copy"];
        assert_eq!(copy["fallback"], true, "{mode:?}: {copy}");
        assert_eq!(copy["subject"], FALLBACK_SUBJECT, "{mode:?}");
        let audit = copy_audit(&t, trace).await;
        assert_eq!(audit.len(), 1, "{mode:?}");
        let reason = audit[0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{mode:?}: {reason}");
        assert_eq!(audit[0]["fallback"], true);
        // Bounded by the timeout, with slack for a loaded machine.
        let took = audit[0]["latency_ms"].as_f64().unwrap();
        assert!(took < (timeout_ms * 3) as f64, "{mode:?}: {took} ms");
    }
    let usage = t.app.store().llm_usage(&nudge::copy::month_of(OffsetDateTime::now_utc())).await.unwrap();
    assert_eq!(usage.fallbacks, modes.len() as u64);
    assert_no_pii_sent(&fake, &customers);
    t.app.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_falls_back_without_a_call_even_after_a_restart() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
    let month = nudge::copy::month_of(OffsetDateTime::now_utc());
    let t = spawn_app(|c| {
        // What earlier runs this month used, as the store recorded it: over the budget.
        let dir = c.storage.data_dir.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let s = nudge_store::sqlite::SqliteStore::open(&dir, nudge_store::sqlite::Durability::Normal)
                    .unwrap();

                s.store_generated_copy(nudge_store::CopyFill {
                    usage: Some(nudge_store::LlmUsage {
                        month: month.clone(),
                        tokens: 5_000,
                        generations: 9,
                        fallbacks: 0,
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
            })
        });
        let mut l = llm(&fake, 5_000);
        l.monthly_token_budget = Some(4_000);
        c.llm = Some(l);
        c.prompts = vec![prompt()];
        c.flows = Some(vec![flow("live")]);
    })
    .await;
    let trace = send_order(&t, 8_001, 61).await;
    let e = winback_event(&t, 61, 20).await.expect("delivered with the fallback");
    assert_eq!(e.properties["ai_copy"]["fallback"], true);
    let audit = copy_audit(&t, trace).await;
    assert!(audit[0]["reason"].as_str().unwrap().contains("budget spent (5000 of 4000"), "{}", audit[0]);
    assert_eq!(audit[0]["attempts"], 0);
    assert!(fake.requests().is_empty(), "no call once the budget is spent");
    // Restored at boot into the client's budget (the gauges in /metrics show it; the recorder is shared by
    // every test of this process, so the client is asked directly).
    let budget = t.app.shared.copy.client().unwrap().budget_status();
    assert_eq!((budget.used, budget.budget), (5_000, Some(4_000)));
    let metrics = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nudge_llm_token_budget"), "{metrics}");
    t.app.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_llm_the_fallback_copy_goes_out_audited_as_such() {
    let t = spawn_app(|c| {
        c.prompts = vec![prompt()];
        c.flows = Some(vec![flow("live")]);
    })
    .await;
    let trace = send_order(&t, 9_001, 71).await;
    let e = winback_event(&t, 71, 20).await.expect("delivered");
    assert_eq!(e.properties["ai_copy"]["subject"], FALLBACK_SUBJECT);
    assert_eq!(e.properties["ai_copy"]["fallback"], true);
    let audit = copy_audit(&t, trace).await;
    assert!(audit[0]["reason"].as_str().unwrap().contains("no [llm]"), "{}", audit[0]);
    t.app.shutdown().await;
}
