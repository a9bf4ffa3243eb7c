//! `LlmClient::generate` against the fake OpenAI-compatible server, through the public interface only.

use nudge_llm::{CopyContext, FallbackReason, LlmClient, LlmConfig, PromptSpec, Provider, ValidationError};
use nudge_model::Segment;
use nudge_testkit::{FakeLlm, FakeLlmConfig, FakeLlmHandle, LlmAnswer, LlmProfile};
use std::time::{Duration, Instant};

/// A customer as the store knows them: contact data that must never reach the model, and what may.
struct Customer {
    email: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    phone: &'static str,
    address: &'static str,
    segment: Segment,
    churn_risk: f64,
    products: &'static [&'static str],
}

const CUSTOMERS: &[Customer] = &[
    Customer {
        email: "maria.lopez@example.org",
        first_name: "Maria",
        last_name: "Lopez",
        phone: "+1 415 555 0142",
        address: "221 Harbour Street",
        segment: Segment::Lapsed,
        churn_risk: 0.82,
        products: &["Trail running shoe", "Merino wool socks", "Insulated bottle"],
    },
    Customer {
        email: "kenji.sato@example.net",
        first_name: "Kenji",
        last_name: "Sato",
        phone: "(020) 7946 0958",
        address: "14 Rue des Lilas",
        segment: Segment::HighValueAtRisk,
        churn_risk: 0.47,
        products: &["Rain shell jacket", "Packable daypack"],
    },
];

/// What a flow hands the generator: only the pseudonymous parts. (Even a careless caller that pastes an
/// email or phone into a product title gets it dropped.)
fn context_of(c: &Customer) -> CopyContext {
    let mut ctx =
        CopyContext::new(c.segment).score("churn_risk", c.churn_risk).label("preferred_category", "outdoor");
    for p in c.products {
        ctx = ctx.product(p);
    }
    ctx.product(&format!("Gift note for {}", c.email)).product(&format!("Call {}", c.phone))
}

const PROMPTS: &str = r#"
[[prompts]]
name = "winback"
version = 2
system = "You write short, friendly retail copy for a {{segment}} customer. Never invent discounts."
user = "Segment: {{segment}}. Scores: {{scores}}. Likes: {{preferred_category}}. Recommended: {{products}}."
slots = { subject = { max_chars = 60 }, preheader = { max_chars = 90 } }
fallback = { subject = "We saved a few picks for you", preheader = "New arrivals we think you'll like." }
"#;

#[derive(serde::Deserialize)]
struct Prompts {
    prompts: Vec<PromptSpec>,
}

fn prompt() -> PromptSpec {
    let mut p: Prompts = toml::from_str(PROMPTS).unwrap();
    let p = p.prompts.remove(0);
    p.check().unwrap();
    p
}

async fn fake() -> FakeLlmHandle {
    nudge_testkit::ensure_crypto_provider();
    FakeLlm::start(FakeLlmConfig::default()).await.unwrap()
}

/// Scheduling slack allowed beyond a deadline when tests run in parallel on a loaded machine.
const SLACK: Duration = Duration::from_millis(300);

fn client(fake: &FakeLlmHandle, timeout: Duration) -> LlmClient {
    let mut cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
    cfg.timeout = timeout;
    LlmClient::new(cfg).unwrap()
}

#[tokio::test]
async fn a_valid_generation_fills_every_slot_and_sends_no_contact_data() {
    let fake = fake().await;
    let llm = client(&fake, Duration::from_secs(5));
    let p = prompt();
    for c in CUSTOMERS {
        let g = llm.generate(&p, &context_of(c)).await;
        assert!(!g.fallback_used, "{:?}", g.reason);
        assert_eq!(g.reason, None);
        assert_eq!(g.slots.keys().collect::<Vec<_>>(), ["preheader", "subject"]);
        assert!(g.slots["subject"].chars().count() <= 60 && g.slots["preheader"].chars().count() <= 90);
        assert_ne!(g.slots["subject"], p.fallback["subject"]);
        assert!(g.tokens > 0 && g.attempts == 1);
        assert!(g.request_id.as_deref().is_some_and(|id| id.starts_with("req_fake_")));
        assert_eq!(g.prompt, "winback@v2");
    }
    // Deterministic: the same context gives the same copy.
    let a = llm.generate(&p, &context_of(&CUSTOMERS[0])).await;
    let b = llm.generate(&p, &context_of(&CUSTOMERS[0])).await;
    assert_eq!(a.slots, b.slots);

    let sent = fake.received_text().to_lowercase();
    assert!(sent.contains("trail running shoe") && sent.contains("lapsed"), "the context did go out");
    for c in CUSTOMERS {
        for pii in [c.email, c.first_name, c.last_name, c.phone, c.address] {
            assert!(!sent.contains(&pii.to_lowercase()), "`{pii}` reached the model");
        }
        let digits: String = c.phone.chars().filter(char::is_ascii_digit).collect();
        assert!(!sent.replace(|ch: char| !ch.is_ascii_digit(), "").contains(&digits[digits.len() - 7..]));
    }
    assert!(!sent.contains('@'), "nothing email-like went out");
    assert!(fake.requests().iter().all(|r| r.authorized && r.status == 200));
    fake.shutdown().await;
}

/// What a failure case expects of the reason.
type Expect = fn(&FallbackReason) -> bool;

/// Every failure answers the fallback copy, with the reason, by the deadline. The client stops at the
/// timeout itself; the bound below adds [`SLACK`] for a test machine busy with other tests (the 50 ms
/// contract is the client's own margin, not the scheduler's).
#[tokio::test]
async fn every_failure_falls_back_within_the_timeout() {
    let fake = fake().await;
    // Long enough that a loaded test machine answers each failure before it (a 500 seen after the
    // deadline would be reported as a timeout), short enough that the hang case stays quick.
    let timeout = Duration::from_millis(1000);
    let llm = client(&fake, timeout);
    let p = prompt();
    let ctx = context_of(&CUSTOMERS[0]);
    let rate_limited = |ms: Option<u64>, secs: Option<&str>, retry: Option<bool>| LlmAnswer::RateLimited {
        retry_after_ms: ms,
        retry_after: secs.map(str::to_string),
        should_retry: retry,
        reset_requests: None,
    };
    let cases: Vec<(&str, LlmAnswer, Expect)> = vec![
        ("hang", LlmAnswer::Hang, |r| *r == FallbackReason::Timeout),
        ("500", LlmAnswer::ServerError(500), |r| matches!(r, FallbackReason::Http { status: 500, .. })),
        ("503", LlmAnswer::ServerError(503), |r| matches!(r, FallbackReason::Http { status: 503, .. })),
        ("400", LlmAnswer::ServerError(400), |r| matches!(r, FallbackReason::Http { status: 400, .. })),
        ("429 retry-after 300 s", rate_limited(None, Some("300"), None), |r| {
            *r == FallbackReason::RateLimited { retry_after: Some(Duration::from_secs(300)) }
        }),
        ("429 past the deadline", rate_limited(Some(1500), None, None), |r| {
            *r == FallbackReason::RateLimited { retry_after: Some(Duration::from_millis(1500)) }
        }),
        ("429 should-retry false", rate_limited(Some(10), None, Some(false)), |r| {
            *r == FallbackReason::RateLimited { retry_after: None }
        }),
        ("malformed", LlmAnswer::Malformed, |r| *r == FallbackReason::Invalid(ValidationError::NotJson)),
        ("broken body", LlmAnswer::BrokenBody, |r| {
            matches!(r, FallbackReason::Invalid(ValidationError::NotACompletion(_)))
        }),
        ("over-long", LlmAnswer::OverLong, |r| {
            matches!(r, FallbackReason::Invalid(ValidationError::TooLong { .. }))
        }),
        ("truncated", LlmAnswer::Truncated, |r| *r == FallbackReason::Invalid(ValidationError::Truncated)),
        ("refusal", LlmAnswer::Refusal, |r| {
            matches!(r, FallbackReason::Invalid(ValidationError::Refused(_)))
        }),
    ];
    for (name, answer, expected) in cases {
        fake.set_mode(answer);
        let before = fake.requests().len();
        let started = Instant::now();
        let g = llm.generate(&p, &ctx).await;
        let took = started.elapsed();
        assert!(g.fallback_used, "{name}");
        assert_eq!(g.slots, p.fallback, "{name}");
        let reason = g.reason.as_ref().expect("a fallback has a reason");
        assert!(expected(reason), "{name}: {reason:?}");
        assert!(took <= timeout + SLACK, "{name} took {took:?}");
        assert!(!reason.to_string().is_empty());
        // 4xx, waits over 120 s or past the deadline and invalid output are never retried; a 5xx is, while
        // the backoff (0.375–0.5 s) fits the deadline.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let sent = fake.requests().len() - before;
        if name.starts_with('5') {
            assert!((1..=2).contains(&sent), "{name}: {sent}");
        } else {
            assert_eq!(sent, 1, "{name}");
        }
    }

    // Latency above the timeout.
    fake.set_mode(LlmAnswer::Normal);
    fake.set_latency(Duration::from_millis(1_500));
    let started = Instant::now();
    let g = llm.generate(&p, &ctx).await;
    assert_eq!(g.reason, Some(FallbackReason::Timeout));
    assert!(started.elapsed() <= timeout + SLACK, "{:?}", started.elapsed());
    fake.shutdown().await;

    // Nothing listening at all.
    let mut cfg = LlmConfig::new("http://127.0.0.1:9/v1", "m", "k");
    cfg.timeout = timeout;
    let started = Instant::now();
    let g = LlmClient::new(cfg).unwrap().generate(&p, &ctx).await;
    assert!(
        matches!(g.reason, Some(FallbackReason::Transport(_)) | Some(FallbackReason::Timeout)),
        "{:?}",
        g.reason
    );
    assert!(started.elapsed() <= timeout + SLACK);
}

#[tokio::test]
async fn retryable_answers_are_retried_when_the_wait_fits() {
    let fake = fake().await;
    let llm = client(&fake, Duration::from_secs(3));
    let p = prompt();
    let ctx = context_of(&CUSTOMERS[1]);

    fake.push([LlmAnswer::RateLimited {
        retry_after_ms: Some(300),
        retry_after: None,
        should_retry: None,
        reset_requests: None,
    }]);
    let started = Instant::now();
    let g = llm.generate(&p, &ctx).await;
    assert!(!g.fallback_used && g.attempts == 2, "{g:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    fake.push([LlmAnswer::RateLimited {
        retry_after_ms: None,
        retry_after: None,
        should_retry: None,
        reset_requests: Some("200ms".into()),
    }]);
    let started = Instant::now();
    let g = llm.generate(&p, &ctx).await;
    assert!(!g.fallback_used && g.attempts == 2 && started.elapsed() >= Duration::from_millis(200));

    // A 500 is retried after the capped backoff (0.375–0.5 s for the first retry).
    fake.push([LlmAnswer::ServerError(500)]);
    let started = Instant::now();
    let g = llm.generate(&p, &ctx).await;
    assert!(!g.fallback_used && g.attempts == 2);
    assert!(started.elapsed() >= Duration::from_millis(375));

    // At most two retries: three 502s in a row fall back after three requests.
    let before = fake.requests().len();
    fake.push([LlmAnswer::ServerError(502), LlmAnswer::ServerError(502), LlmAnswer::ServerError(502)]);
    let g = llm.generate(&p, &ctx).await;
    assert!(matches!(g.reason, Some(FallbackReason::Http { status: 502, .. })), "{:?}", g.reason);
    assert_eq!(fake.requests().len() - before, 3);

    // A billing 429 is never retried and pauses later calls without a request.
    fake.push([LlmAnswer::InsufficientQuota]);
    let before = fake.requests().len();
    assert_eq!(llm.generate(&p, &ctx).await.reason, Some(FallbackReason::QuotaExhausted));
    assert!(llm.quota_paused());
    assert_eq!(llm.generate(&p, &ctx).await.reason, Some(FallbackReason::QuotaExhausted));
    assert_eq!(fake.requests().len() - before, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_monthly_token_budget_is_enforced_before_calling() {
    let fake = fake().await;
    let mut cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
    cfg.monthly_token_budget = Some(150);
    let llm = LlmClient::new(cfg).unwrap();
    let p = prompt();
    let ctx = context_of(&CUSTOMERS[0]);
    let mut spent = 0;
    let mut calls = 0;
    loop {
        let g = llm.generate(&p, &ctx).await;
        if g.fallback_used {
            assert_eq!(g.reason, Some(FallbackReason::BudgetSpent { used: spent, budget: 150 }));
            assert_eq!(g.tokens, 0);
            break;
        }
        spent += g.tokens;
        calls += 1;
        assert!(calls < 10, "the budget never ran out");
    }
    assert!(spent >= 150);
    assert_eq!(fake.requests().len(), calls, "no request once the budget is spent");
    let status = llm.budget_status();
    assert_eq!((status.used, status.budget), (spent, Some(150)));
    // A count restored after a restart counts too.
    llm.set_tokens_used(0);
    assert!(!llm.generate(&p, &ctx).await.fallback_used);
    fake.shutdown().await;
}

#[tokio::test]
async fn answers_without_usage_are_counted_by_estimate() {
    let fake = fake().await;
    let llm = client(&fake, Duration::from_secs(5));
    fake.set_mode(LlmAnswer::NoUsage);
    let g = llm.generate(&prompt(), &context_of(&CUSTOMERS[0])).await;
    assert!(!g.fallback_used && g.tokens > 50, "{g:?}");
    assert_eq!(llm.budget_status().used, g.tokens);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_token_cap_field_follows_the_provider() {
    nudge_testkit::ensure_crypto_provider();
    let fake =
        FakeLlm::start(FakeLlmConfig { profile: LlmProfile::Ollama, ..Default::default() }).await.unwrap();
    let mut cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
    let wrong = LlmClient::new(cfg.clone()).unwrap().generate(&prompt(), &context_of(&CUSTOMERS[0])).await;
    assert!(matches!(wrong.reason, Some(FallbackReason::Http { status: 400, .. })), "{:?}", wrong.reason);
    cfg.provider = Provider::Ollama;
    let right = LlmClient::new(cfg).unwrap().generate(&prompt(), &context_of(&CUSTOMERS[0])).await;
    assert!(!right.fallback_used, "{:?}", right.reason);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_falls_back_without_retrying_and_never_echoes_the_key() {
    let fake = fake().await;
    let cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, "sk-wrong-and-secret");
    let llm = LlmClient::new(cfg).unwrap();
    let g = llm.generate(&prompt(), &context_of(&CUSTOMERS[0])).await;
    let reason = g.reason.unwrap();
    assert!(matches!(reason, FallbackReason::Http { status: 401, .. }));
    assert!(!reason.to_string().contains("sk-wrong") && !format!("{llm:?}").contains("sk-wrong"));
    assert_eq!(fake.requests().len(), 1);
    fake.shutdown().await;
}
