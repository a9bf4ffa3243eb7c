//! `nudge campaigns hypotheses` and `nudge campaigns adopt` through the binary, on a store filled with an
//! offer flow's decisions where segment `lapsed` responds to free shipping and segment `loyal` to 18:00:
//! both are proposed first, the variant written by `adopt` loads with the configured flows, and bad requests
//! exit 2 with what to do.

use nudge_model::TraceId;
use nudge_model::{AuditRecord, AuditStage, CustomerId, Money};
use nudge_policy::flows::{ActionSpec, FlowSet, FlowSpec};
use nudge_state::{CustomerState, OrderRecord};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{FlowDecision, ProcessOutcome, Store, StoredState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};
use time::{Duration, OffsetDateTime};

const FLOWS: &str = r#"
[[flows]]
name = "cart_offer"
trigger = "checkout_abandoned"
when = "customer.email_consent"
holdout_percent = 10
actions = [
  { type = "choose_offer", arms = ["none", "free_shipping", "pct_10"] },
  { type = "track_event", destination = "klaviyo", metric = "AI Cart Offer" },
]

[[flows]]
name = "quiet"
trigger = "order_placed"
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Quiet" } ]
"#;

const SEGMENTS: [&str; 4] = ["new", "active", "loyal", "lapsed"];
const ARMS: [&str; 3] = ["none", "free_shipping", "pct_10"];

fn cid(c: u64) -> CustomerId {
    format!("shopify:{}", 8_000_000 + c).parse().unwrap()
}

fn order(at: OffsetDateTime) -> OrderRecord {
    OrderRecord {
        created_at: at,
        updated_at: at,
        total: Money::parse("60.00", "EUR").unwrap(),
        cancelled: false,
        items: Vec::new(),
        checkout_token: None,
        cart_token: None,
    }
}

/// 8,000 customers decided 20–40 days ago at 09:00 or 18:00 UTC, 10 % held out, the others offered one of
/// three arms at random. Base conversion 8 %; +15 pp for `lapsed` offered free shipping; +15 pp for `loyal`
/// decided at 18:00.
async fn fill(store: &dyn Store, now: OffsetDateTime) {
    let mut rng = StdRng::seed_from_u64(22);
    let mut outcomes = Vec::new();
    let mut states = Vec::new();
    let midnight = now.replace_time(time::Time::MIDNIGHT);
    for c in 0..8_000u64 {
        let customer = cid(c);
        let segment = SEGMENTS[rng.gen_range(0..SEGMENTS.len())];
        let held = rng.gen_bool(0.1);
        let arm = ARMS[rng.gen_range(0..ARMS.len())];
        let hour = if rng.gen_bool(0.5) { 9 } else { 18 };
        let at = midnight - Duration::days(rng.gen_range(20..40)) + Duration::hours(hour);
        let mut p = 0.08;
        if !held && segment == "lapsed" && arm == "free_shipping" {
            p += 0.15;
        }
        if !held && segment == "loyal" && hour == 18 {
            p += 0.15;
        }
        let mut state = CustomerState::new(customer.clone());
        if rng.gen_bool(p) {
            state.orders.insert(format!("o{c}"), order(at + Duration::days(2)));
        }
        let trace = TraceId::new();
        outcomes.push(ProcessOutcome {
            trace_id: Some(trace),
            audit: vec![AuditRecord {
                trace_id: trace,
                customer: Some(customer.clone()),
                stage: AuditStage::Scored,
                at,
                detail: serde_json::json!({ "segment": segment, "scores": [] }),
            }],
            decisions: vec![FlowDecision {
                flow: "cart_offer".into(),
                flow_version: "v1".into(),
                customer: customer.clone(),
                at_ms: at.unix_timestamp() * 1000,
                status: if held { "held_out" } else { "live" }.into(),
                matched: true,
                baseline: None,
                trace_id: trace,
                arm: (!held).then(|| arm.to_string()),
            }],
            ..Default::default()
        });
        states.push(StoredState { customer, email: None, state: state.encode() });
    }
    store.put_states(states).await.unwrap();
    store.commit_processing(outcomes).await.unwrap();
}

fn nudge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("nudge.toml"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .env("KLAVIYO_PRIVATE_KEY", "pk_test_hypotheses")
        .output()
        .expect("the nudge binary runs")
}

#[derive(serde::Deserialize)]
struct Flows {
    flows: Vec<FlowSpec>,
}

#[tokio::test(flavor = "multi_thread")]
async fn hypotheses_find_the_planted_effects_and_a_variant_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    {
        let store = SqliteStore::open(&dir.path().join("data"), Durability::Normal).unwrap();
        fill(&store, now).await;
    }
    std::fs::write(
        dir.path().join("nudge.toml"),
        format!("[destinations.klaviyo]\napi_key = \"${{KLAVIYO_PRIVATE_KEY}}\"\n{FLOWS}"),
    )
    .unwrap();

    let o = nudge(dir.path(), &["campaigns", "hypotheses", "--flow", "cart_offer", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["units"], 8_000);
    let hs = json["hypotheses"].as_array().unwrap();
    assert!((3..=5).contains(&hs.len()), "{json:#}");
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| hs.iter().position(|h| pred(&h["change"]));
    let fs = find(&|c| c["kind"] == "offer" && c["segment"] == "lapsed" && c["arm"] == "free_shipping")
        .expect("free shipping for lapsed proposed");
    let hour = find(&|c| c["kind"] == "send_hour" && c["segment"] == "loyal" && c["hour"] == 18)
        .expect("18:00 for loyal proposed");
    assert!(fs < 2 && hour < 2, "{json:#}");
    for i in [fs, hour] {
        let h = &hs[i];
        assert_eq!(h["significant"], true, "{h:#}");
        assert!(h["ci_low"].as_f64().unwrap() > 0.0 && h["n_per_arm_needed"].as_u64().unwrap() > 0, "{h:#}");
        assert!(json["variants"][h["id"].as_str().unwrap()].as_str().unwrap().contains("[[flows]]"));
    }
    let fs_id = hs[fs]["id"].as_str().unwrap().to_string();

    let o = nudge(dir.path(), &["campaigns", "hypotheses", "--flow", "cart_offer"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("adopt: nudge campaigns adopt --flow cart_offer"), "{out}");
    assert!(out.contains("sample size:") && out.contains("Holm"), "{out}");

    // Adopt: the variant is a 50/50 split of the two arms for the segment, and loads beside the flows.
    let file = dir.path().join("variant.toml");
    let args = ["campaigns", "adopt", "--flow", "cart_offer", "--hypothesis", &fs_id, "--write"];
    let o = nudge(dir.path(), &[&args[..], &[file.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    let variant = toml::from_str::<Flows>(&text).unwrap().flows.remove(0);
    assert_eq!(variant.name, format!("cart_offer__{fs_id}"));
    assert_eq!(variant.when.as_deref(), Some("(customer.email_consent) && scores.segment == \"lapsed\""));
    let ActionSpec::ChooseOffer(offer) = &variant.actions[0] else { panic!("{variant:?}") };
    assert_eq!(offer.arms, vec!["none", "free_shipping"]);
    assert_eq!(offer.explore_holdout_percent, 100);
    let mut specs = toml::from_str::<Flows>(FLOWS).unwrap().flows;
    specs.push(variant);
    FlowSet::compile(&specs, &["klaviyo"]).unwrap();
    // The whole config with the variant appended still loads.
    let config = std::fs::read_to_string(dir.path().join("nudge.toml")).unwrap();
    std::fs::write(dir.path().join("nudge.toml"), format!("{config}\n{text}")).unwrap();
    let o = nudge(dir.path(), &["campaigns", "hypotheses", "--flow", "cart_offer", "--count", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Bad requests exit 2 and say what to do.
    let bad = |args: &[&str], want: &str| {
        let o = nudge(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    bad(&[&args[..], &[file.to_str().unwrap()]].concat(), "pass --force");
    bad(&["campaigns", "hypotheses", "--flow", "nope"], "no flow named `nope`");
    bad(&["campaigns", "hypotheses", "--flow", "quiet"], "recorded no decisions");
    bad(&["campaigns", "hypotheses", "--flow", "cart_offer", "--window", "2w"], "not a duration");
    bad(&["campaigns", "hypotheses", "--flow", "cart_offer", "--count", "0"], "--count");
    bad(
        &["campaigns", "adopt", "--flow", "cart_offer", "--hypothesis", "h9", "--write", "/dev/null/x.toml"],
        "no hypothesis `h9`",
    );
}
