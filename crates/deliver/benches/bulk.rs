//! Bulk profile pushes against the fakes with their real limits: how close a batch run gets to the
//! fastest the platform's rate limit allows, and what nudge's client side costs per profile.
//!
//! `cargo bench -p nudge-deliver --bench bulk -- [--profiles 1000000] [--only braze|hubspot|marketo]
//!  [--in-flight 4] [--runs 1] [--unthrottled 1]`
//!
//! Each run starts a fresh fake (the platform's documented limits on, unless `--unthrottled`), builds
//! `--profiles` profile upserts (one per customer, with an email, a name and four `ai_*` attributes)
//! before the clock starts, and pushes them through the client's `push_profiles` in calls of its
//! `max_bulk()` profiles, `--in-flight` calls at once (the delivery engine's default, 4). The client's own
//! limiter paces the calls; a profile whose call came back as a retry is pushed again after the first pass.
//!
//! Reported per run: wall time from the first call to the last answer, the limit-bound minimum (every call
//! the fake received, at the documented steady rate: calls × window ÷ allowed; and, lower, the earliest the
//! last call may start when the first window's allowance goes at once), the ratio between the two,
//! and CPU time per profile. The fake runs in this process on threads of its own (`bulk-fake`); CPU is read
//! per thread from `/proc/self/task/*/stat`, so the client side (every other thread: building requests,
//! HTTP, settling answers, pacing) and the fake (parsing, checking and storing) are reported apart.

use nudge_deliver::{
    BrazeClient, BrazeConfig, Destination, HubSpotClient, HubSpotConfig, MarketoClient, MarketoConfig,
    Outcome,
};
use nudge_model::{Action, AttrValue};
use nudge_testkit::{
    FakeBraze, FakeBrazeConfig, FakeHubSpot, FakeHubSpotConfig, FakeMarketo, FakeMarketoConfig,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BRAZE_KEY: &str = "braze-bench-rest-key";
const HUBSPOT_TOKEN: &str = "pat-na1-bench-token";
const MARKETO_ID: &str = "bench-marketo-client";
const MARKETO_SECRET: &str = "benchMarketoSecret0001";
/// Thread-name prefix of the fakes' runtime; CPU on these threads is the fake's, not nudge's.
const FAKE_THREADS: &str = "bulk-fake";
const ATTRIBUTES: [&str; 4] = ["ai_churn_risk", "ai_segment", "ai_predicted_clv", "ai_scored_at"];

fn flags() -> BTreeMap<String, String> {
    let v: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut m = BTreeMap::new();
    for pair in v.chunks(2) {
        let key = pair[0].strip_prefix("--").unwrap_or_else(|| panic!("unexpected argument {}", pair[0]));
        let known = ["profiles", "only", "in-flight", "runs", "unthrottled"];
        assert!(known.contains(&key), "unknown argument --{key}");
        m.insert(key.to_string(), pair.get(1).cloned().unwrap_or_default());
    }
    m
}

fn num(m: &BTreeMap<String, String>, key: &str, default: usize) -> usize {
    m.get(key).map(|v| v.parse().unwrap_or_else(|_| panic!("--{key} takes a number"))).unwrap_or(default)
}

/// One customer's profile upsert, as nudge's profile sync builds it.
fn profile(n: usize) -> Action {
    let segments = ["loyal", "at_risk", "new", "champion"];
    let attributes = BTreeMap::from([
        (ATTRIBUTES[0].to_string(), AttrValue::Number((n % 100) as f64 / 100.0)),
        (ATTRIBUTES[1].to_string(), AttrValue::Text(segments[n % segments.len()].into())),
        (ATTRIBUTES[2].to_string(), AttrValue::Number(40.0 + (n % 1000) as f64 / 4.0)),
        (ATTRIBUTES[3].to_string(), AttrValue::Text("2026-12-01T10:00:00Z".into())),
    ]);
    Action::UpsertProfile {
        customer: format!("shopify:{}", 10_000_000 + n).parse().expect("a customer id"),
        email: Some(format!("bulk{n}@example.org")),
        first_name: Some(format!("Kim{n}")),
        last_name: Some("Lund".into()),
        attributes,
    }
}

/// CPU seconds (user + system) of this process's threads so far: (all threads, the fakes' threads). The
/// process total includes threads that have ended; the per-thread split only the live ones, which the
/// fakes' runtime threads are for the whole run.
fn cpu_seconds() -> (f64, f64) {
    let ticks = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields 14 and 15 of stat (utime, stime), counted from the state field (3) after the name.
        let utime: f64 = rest.get(11)?.parse().ok()?;
        let stime: f64 = rest.get(12)?.parse().ok()?;
        Some((comm, (utime + stime) / 100.0))
    };
    let total = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| ticks(&s)).map_or(0.0, |t| t.1);
    let mut fake = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some((comm, secs)) = ticks(&stat)
                && comm.starts_with(FAKE_THREADS)
            {
                fake += secs;
            }
        }
    }
    (total, fake)
}

/// A platform's limit on the calls that carry profiles: `allowed` calls in any `window`.
#[derive(Clone, Copy)]
struct Limit {
    allowed: u32,
    window: Duration,
}

impl Limit {
    /// The documented steady rate's time for `calls`: calls × window ÷ allowed.
    fn steady(&self, calls: usize) -> f64 {
        calls as f64 * self.window.as_secs_f64() / f64::from(self.allowed)
    }

    /// The earliest the last of `calls` may start when the window starts empty (a full window's burst
    /// at once, then one window's worth every window).
    fn burst(&self, calls: usize) -> f64 {
        (calls.saturating_sub(1) / self.allowed as usize) as f64 * self.window.as_secs_f64()
    }
}

/// A started fake with its client, and how to count what the fake holds afterwards.
struct Target {
    client: Arc<dyn Destination>,
    limit: Limit,
    held: Box<dyn Fn() -> usize + Send>,
    requests: Box<dyn Fn() -> usize + Send>,
    /// Stops the fake.
    stop: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>,
}

async fn start(kind: &str, unthrottled: bool) -> Target {
    match kind {
        "braze" => {
            let mut fc = FakeBrazeConfig::new(BRAZE_KEY);
            let mut cc = BrazeConfig::new(BRAZE_KEY, String::new()).allowing_private();
            if unthrottled {
                fc = fc.unthrottled();
                cc = cc.with_rate(1_000_000).forcing_rate();
            }
            let fake = Arc::new(FakeBraze::start(fc).await.expect("the Braze fake starts"));
            cc.rest_endpoint = fake.base_url();
            let client = Arc::new(BrazeClient::new(cc).expect("a Braze client"));
            let (f1, f2, f3) = (fake.clone(), fake.clone(), fake);
            Target {
                client,
                limit: Limit { allowed: 3000, window: Duration::from_secs(3) },
                held: Box::new(move || f1.users().len()),
                requests: Box::new(move || f2.requests().len()),
                stop: Box::new(move || Box::pin(async move { drop(f3) })),
            }
        }
        "hubspot" => {
            let mut fc = FakeHubSpotConfig::new(HUBSPOT_TOKEN);
            let mut cc = HubSpotConfig::new(HUBSPOT_TOKEN).allowing_private();
            if unthrottled {
                fc = fc.unlimited();
                cc = cc.with_rate(1_000_000);
                cc.force_rate = true;
            }
            let fake = Arc::new(FakeHubSpot::start(fc).await.expect("the HubSpot fake starts"));
            cc = cc.with_base_url(fake.base_url());
            let client = Arc::new(HubSpotClient::new(cc).expect("a HubSpot client"));
            let (f1, f2, f3) = (fake.clone(), fake.clone(), fake);
            Target {
                client,
                limit: Limit { allowed: 100, window: Duration::from_secs(10) },
                held: Box::new(move || f1.contacts().len()),
                requests: Box::new(move || f2.requests().len()),
                stop: Box::new(move || Box::pin(async move { drop(f3) })),
            }
        }
        "marketo" => {
            let mut fc = FakeMarketoConfig::new(MARKETO_ID, MARKETO_SECRET).with_fields(&ATTRIBUTES);
            fc.daily_quota = None;
            let mut cc = MarketoConfig::new(String::new(), MARKETO_ID, MARKETO_SECRET).allowing_private();
            if unthrottled {
                fc.rate_limit = None;
                fc.max_concurrent = None;
                cc = cc.with_rate(1_000_000);
                cc.force_rate = true;
            }
            let fake = Arc::new(FakeMarketo::start(fc).await.expect("the Marketo fake starts"));
            cc.base_url = fake.base_url();
            let client = Arc::new(MarketoClient::new(cc).expect("a Marketo client"));
            let (f1, f2, f3) = (fake.clone(), fake.clone(), fake);
            Target {
                client,
                // The client's default pacing: 50 calls per 20 s, half the instance's 100 (shared by every
                // integration), as Marketo's best practices advise.
                limit: Limit { allowed: 50, window: Duration::from_secs(20) },
                held: Box::new(move || f1.leads().len()),
                requests: Box::new(move || f2.requests().iter().filter(|r| !r.is_identity()).count()),
                stop: Box::new(move || Box::pin(async move { drop(f3) })),
            }
        }
        other => panic!("--only braze|hubspot|marketo, not {other}"),
    }
}

#[derive(Default)]
struct Tally {
    delivered: usize,
    retried: usize,
    rejected: usize,
}

/// Pushes `actions` in calls of `bulk`, `lanes` at once; returns the indexes to push again.
async fn push(
    client: &Arc<dyn Destination>,
    actions: &Arc<Vec<Action>>,
    indexes: Arc<Vec<usize>>,
    lanes: usize,
    tally: &mut Tally,
) -> Vec<usize> {
    let bulk = client.max_bulk().max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..lanes {
        let (client, actions, indexes, next) =
            (client.clone(), actions.clone(), indexes.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut t, mut again) = (Tally::default(), Vec::new());
            loop {
                let start = next.fetch_add(bulk, Ordering::Relaxed);
                if start >= indexes.len() {
                    break;
                }
                let end = (start + bulk).min(indexes.len());
                let batch: Vec<Action> = indexes[start..end].iter().map(|i| actions[*i].clone()).collect();
                for (i, outcome) in indexes[start..end].iter().zip(client.push_profiles(&batch).await) {
                    match outcome {
                        Outcome::Delivered { .. } => t.delivered += 1,
                        Outcome::Retry { status, error, .. } => {
                            if t.retried == 0 {
                                eprintln!("  first retry in this lane: {status:?} {error}");
                            }
                            t.retried += 1;
                            again.push(*i);
                        }
                        Outcome::Rejected { error, .. } => {
                            if t.rejected == 0 {
                                eprintln!("  rejected: {error}");
                            }
                            t.rejected += 1;
                        }
                    }
                }
            }
            (t, again)
        }));
    }
    let mut again = Vec::new();
    for task in tasks {
        let (t, a) = task.await.expect("a push lane");
        tally.delivered += t.delivered;
        tally.retried += t.retried;
        tally.rejected += t.rejected;
        again.extend(a);
    }
    again
}

struct RunResult {
    wall: f64,
    steady: f64,
    burst: f64,
    client_us: f64,
    fake_us: f64,
}

async fn run_one(
    kind: &str,
    profiles: usize,
    lanes: usize,
    unthrottled: bool,
    fake_rt: &tokio::runtime::Handle,
) -> RunResult {
    let unthrottled_flag = unthrottled;
    let kind_owned = kind.to_string();
    let target = fake_rt.spawn(async move { start(&kind_owned, unthrottled_flag).await }).await.unwrap();
    let actions: Arc<Vec<Action>> = Arc::new((0..profiles).map(profile).collect());
    let calls = profiles.div_ceil(target.client.max_bulk().max(1));
    let (cpu0, fake0) = cpu_seconds();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut pending: Vec<usize> = (0..profiles).collect();
    let mut passes = 0;
    while !pending.is_empty() && passes < 10 {
        passes += 1;
        pending = push(&target.client, &actions, Arc::new(pending), lanes, &mut tally).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, fake1) = cpu_seconds();
    let (fake_cpu, client_cpu) = (fake1 - fake0, (cpu1 - cpu0) - (fake1 - fake0));
    let held = (target.held)();
    let requests = (target.requests)();
    // Every call the fake counted against the limit (HubSpot's property set-up and Marketo's Describe
    // included), for the bound.
    let steady = target.limit.steady(requests.max(calls));
    let burst = target.limit.burst(requests.max(calls));
    println!(
        "{kind}: {profiles} profiles in {calls} calls of {} ({lanes} in flight){}: {wall:.2} s \
         ({:.0} profiles/s); limit-bound minimum {steady:.2} s at the steady rate ({:.2}×), {burst:.2} s \
         with a full first window ({}); delivered {} (retried {}, rejected {}, {passes} passes); the fake \
         holds {held} and received {requests} requests; CPU per profile: client {:.2} µs, fake {:.2} µs",
        target.client.max_bulk(),
        if unthrottled { ", limits off" } else { "" },
        profiles as f64 / wall,
        wall / steady,
        ratio(wall, burst),
        tally.delivered,
        tally.retried,
        tally.rejected,
        client_cpu / profiles as f64 * 1e6,
        fake_cpu / profiles as f64 * 1e6,
    );
    assert_eq!(tally.delivered, profiles, "every profile is delivered");
    drop(actions);
    fake_rt.spawn((target.stop)()).await.unwrap();
    RunResult {
        wall,
        steady,
        burst,
        client_us: client_cpu / profiles as f64 * 1e6,
        fake_us: fake_cpu / profiles as f64 * 1e6,
    }
}

/// `a / b` as `1.23×`, or `—` when the bound is zero (every call fits the first window).
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}×", a / b) } else { "—".into() }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let m = flags();
    nudge_testkit::ensure_crypto_provider();
    let profiles = num(&m, "profiles", 1_000_000);
    let lanes = num(&m, "in-flight", 4);
    let runs = num(&m, "runs", 1).max(1);
    let unthrottled = m.contains_key("unthrottled");
    let kinds: Vec<&str> = match m.get("only").map(String::as_str) {
        Some(k) => vec![k],
        None => vec!["braze", "hubspot", "marketo"],
    };
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(FAKE_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "machine: {} cores; {profiles} profiles per run, {runs} run(s) each",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let handle = fake_rt.handle().clone();
    rt.block_on(async move {
        for kind in kinds {
            let mut results = Vec::new();
            for _ in 0..runs {
                results.push(run_one(kind, profiles, lanes, unthrottled, &handle).await);
            }
            if runs > 1 {
                let pick = |f: fn(&RunResult) -> f64| {
                    let mut v: Vec<f64> = results.iter().map(f).collect();
                    let med = median(&mut v);
                    (med, v[0], v[v.len() - 1])
                };
                let (w, wmin, wmax) = pick(|r| r.wall);
                let (c, cmin, cmax) = pick(|r| r.client_us);
                let (f, fmin, fmax) = pick(|r| r.fake_us);
                println!(
                    "{kind} over {runs} runs: wall median {w:.2} s ({wmin:.2}–{wmax:.2}), {:.2}× the steady \
                     limit-bound minimum {:.2} s ({} the full-first-window bound {:.2} s); client CPU \
                     {c:.2} µs/profile ({cmin:.2}–{cmax:.2}), fake {f:.2} µs/profile ({fmin:.2}–{fmax:.2})",
                    w / results[0].steady,
                    results[0].steady,
                    ratio(w, results[0].burst),
                    results[0].burst,
                );
            }
        }
    });
    drop(fake_rt);
}
