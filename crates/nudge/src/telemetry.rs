//! Logs and metrics. Every metric is named and described once here; the rest of the code calls these
//! functions, so names cannot drift. `/metrics` renders the Prometheus text of the recorder installed by
//! [`metrics_handle`].

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Mutex, OnceLock};

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                .install_recorder()
                .unwrap_or_else(|_| {
                    // Another recorder is installed (a test harness); render an empty, private one.
                    PrometheusBuilder::new().build_recorder().handle()
                });
            describe();
            handle
        })
        .clone()
}

/// What kind of series a metric is. A histogram is exported as `<name>_bucket`, `<name>_sum` and
/// `<name>_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: MetricKind, help: &'static str) -> Metric {
    Metric { name, kind, help }
}

/// Every metric nudge exports, described to the recorder from here (the dashboards and alerts in
/// `deploy/` are checked against this list).
pub const METRICS: &[Metric] = {
    use MetricKind::*;
    &[
        metric("nudge_webhooks_total", Counter, "Inbound webhook deliveries by source, topic and outcome."),
        metric("nudge_ack_seconds", Histogram, "Time from request to durable acknowledgement."),
        metric("nudge_ingest_backlog", Gauge, "Deliveries in the ingest log not processed yet."),
        metric(
            "nudge_bus_drained_total",
            Counter,
            "Messages drained from the RabbitMQ bus by outcome (committed, duplicate, unreadable).",
        ),
        metric(
            "nudge_bus_backlog",
            Gauge,
            "Messages in the RabbitMQ bus's queue not yet drained into the log.",
        ),
        metric("nudge_deliveries_processed_total", Counter, "Processed deliveries by terminal outcome."),
        metric(
            "nudge_deliveries_routed_total",
            Counter,
            "Deliveries the leader routed to partitions (a cluster that processes by partition).",
        ),
        metric("nudge_decisions_total", Counter, "Decisions made, by shadow flag."),
        metric(
            "nudge_flow_decisions_total",
            Counter,
            "Each flow's decisions by status (live, shadow, held_out, no_consent, capped, not_matched, error).",
        ),
        metric(
            "nudge_fetch_jobs_total",
            Counter,
            "Fetch-job attempts (thin notifications' API reads) by outcome.",
        ),
        metric("nudge_pushes_total", Counter, "Destination calls by destination and outcome."),
        metric("nudge_event_to_push_seconds", Histogram, "Time from webhook receipt to a successful push."),
        metric(
            "nudge_event_to_processed_seconds",
            Histogram,
            "Time from webhook receipt to its processing committed (state, decisions and outbox stored).",
        ),
        metric("nudge_timers_fired_total", Counter, "Abandonment timers that fired."),
        metric(
            "nudge_destination_backlog",
            Gauge,
            "Pending outbox items per destination (due or waiting to retry).",
        ),
        metric("nudge_destination_in_flight", Gauge, "Items in requests on the wire, per destination."),
        metric(
            "nudge_destination_circuit_open",
            Gauge,
            "1 while a destination's circuit is open or half-open (resting after repeated failures), else 0.",
        ),
        metric("nudge_destination_batch_size", Histogram, "Items per request sent to a destination."),
        metric("nudge_destination_throttled_total", Counter, "Requests a destination answered with 429."),
        metric(
            "nudge_outbox_coalesced_total",
            Counter,
            "Profile syncs folded into a newer sync of the same customer and sent as part of it, per destination.",
        ),
        metric(
            "nudge_llm_tokens_used",
            Gauge,
            "Tokens generated copy used this calendar month (UTC), counted against llm.monthly_token_budget.",
        ),
        metric("nudge_llm_token_budget", Gauge, "llm.monthly_token_budget (0 when there is none)."),
        metric(
            "nudge_llm_generations_total",
            Counter,
            "Copy generations by outcome: generated (validated LLM output) or fallback (the prompt's fallback copy).",
        ),
        metric(
            "nudge_llm_generation_seconds",
            Histogram,
            "Time one generation of copy took (the LLM's answer, retries and validation; bounded by llm.timeout).",
        ),
        metric(
            "nudge_schedule_customers_total",
            Counter,
            "Customers sent into the ingest log by schedule flows' firings, by flow.",
        ),
        metric(
            "nudge_cluster_leader",
            Gauge,
            "1 while this node holds the cluster's leader lease and runs the workers (PostgreSQL store), else 0.",
        ),
        metric(
            "nudge_cluster_partitions",
            Gauge,
            "Delivery partitions this node delivers now (a cluster sharing its rate limits in Redis).",
        ),
        metric(
            "nudge_model_refits_total",
            Counter,
            "Scheduled model refits by outcome: activated, not_activated (the gate refused it), skipped, failed.",
        ),
        metric(
            "nudge_custom_model_outputs_total",
            Counter,
            "Outputs of the user's own models, served or recorded, by model and mode.",
        ),
        metric(
            "nudge_custom_model_fallbacks_total",
            Counter,
            "Fallbacks of the user's own models (no usable output), by model and mode.",
        ),
        metric("nudge_segment_messages_total", Counter, "Messages of the Segment-compatible API by outcome."),
        metric(
            "nudge_retention_pruned_total",
            Counter,
            "Rows removed by the retention policy, by kind: deliveries, outbox, audit, terminal.",
        ),
        metric(
            "nudge_retention_sweeps_total",
            Counter,
            "Retention sweeps by outcome: done (nothing old was left), behind (the sweep's minute ran out with \
             more to remove), failed.",
        ),
    ]
};

fn describe() {
    for m in METRICS {
        match m.kind {
            MetricKind::Counter => describe_counter!(m.name, m.help),
            MetricKind::Gauge => describe_gauge!(m.name, m.help),
            MetricKind::Histogram => describe_histogram!(m.name, m.help),
        }
    }
}

pub fn webhook(source: &'static str, topic: &str, outcome: &'static str) {
    counter!("nudge_webhooks_total", "source" => source, "topic" => topic.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn ack_latency(seconds: f64) {
    histogram!("nudge_ack_seconds").record(seconds);
}

/// Deliveries waiting in the ingest log.
/// One drained batch of the RabbitMQ bus: deliveries committed to the log, duplicates found, and
/// unreadable messages rejected.
pub fn bus_drained(d: nudge_store::rabbitmq::Drained) {
    for (outcome, n) in
        [("committed", d.committed), ("duplicate", d.duplicates), ("unreadable", d.unreadable)]
    {
        if n > 0 {
            counter!("nudge_bus_drained_total", "outcome" => outcome).increment(n as u64);
        }
    }
}

/// Messages waiting in the RabbitMQ bus's queue (sampled every 10 s by each node).
pub fn bus_backlog(ready: u32) {
    gauge!("nudge_bus_backlog").set(f64::from(ready));
}

pub fn ingest_backlog(pending: u64) {
    gauge!("nudge_ingest_backlog").set(pending as f64);
}

/// One scheduled refit's outcome (`activated`, `not_activated`, `skipped`, `failed`).
/// 1 while this node holds the cluster's leader lease (PostgreSQL backend), 0 otherwise.
pub fn cluster_leader(leads: bool) {
    gauge!("nudge_cluster_leader").set(if leads { 1.0 } else { 0.0 });
}

pub fn cluster_partitions(n: usize) {
    gauge!("nudge_cluster_partitions").set(n as f64);
}

/// Deliveries the leader routed to partitions, on a cluster whose nodes process by partition.
pub fn routed(n: usize) {
    counter!("nudge_deliveries_routed_total").increment(n as u64);
}

/// How a retention sweep ended: `done`, `behind` or `failed`.
pub fn retention_sweep(outcome: &'static str) {
    counter!("nudge_retention_sweeps_total", "outcome" => outcome).increment(1);
}

/// Rows one retention sweep removed.
pub fn retention_pruned(p: &nudge_store::Pruned) {
    for (kind, n) in
        [("deliveries", p.deliveries), ("outbox", p.outbox), ("audit", p.audit), ("terminal", p.terminal)]
    {
        counter!("nudge_retention_pruned_total", "kind" => kind).increment(n);
    }
}

pub fn model_refit(outcome: &'static str) {
    counter!("nudge_model_refits_total", "outcome" => outcome).increment(1);
}

pub fn processed(outcome: &'static str) {
    counter!("nudge_deliveries_processed_total", "outcome" => outcome).increment(1);
}

/// What the user's own models did for one scored customer: outputs served or recorded, and fallbacks, by
/// model and reason class.
pub fn custom_models(reports: &[nudge_custom::ModelReport]) {
    for r in reports {
        counter!("nudge_custom_model_outputs_total", "model" => r.model.clone(), "mode" => r.mode)
            .increment(r.outputs.len() as u64);
        if !r.fallbacks.is_empty() {
            counter!("nudge_custom_model_fallbacks_total", "model" => r.model.clone(), "mode" => r.mode)
                .increment(r.fallbacks.len() as u64);
        }
    }
}

/// One fetch-job attempt's outcome (`fetched`, `gone`, `retry`, `dead_lettered`).
pub fn fetch(outcome: &'static str) {
    counter!("nudge_fetch_jobs_total", "outcome" => outcome).increment(1);
}

/// Decisions made since the process started (all pipelines), for summaries.
pub static DECISIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn decision(shadow: bool) {
    DECISIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    counter!("nudge_decisions_total", "shadow" => if shadow { "true" } else { "false" }).increment(1);
}

/// One flow's decision for one event (`status`: live, shadow, held_out, no_consent, capped, not_matched,
/// error). Live and shadow decisions also count as decisions.
pub fn flow_decision(flow: &str, status: &'static str) {
    counter!("nudge_flow_decisions_total", "flow" => flow.to_string(), "status" => status).increment(1);
    if status == "live" || status == "shadow" {
        decision(status == "shadow");
    }
}

pub fn push(destination: &str, outcome: &'static str) {
    counter!("nudge_pushes_total", "destination" => destination.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn destination_backlog(destination: &str, pending: u64) {
    gauge!("nudge_destination_backlog", "destination" => destination.to_string()).set(pending as f64);
}

pub fn destination_in_flight(destination: &str, items: u64) {
    gauge!("nudge_destination_in_flight", "destination" => destination.to_string()).set(items as f64);
}

pub fn destination_circuit(destination: &str, state: &'static str) {
    let open = if state == "closed" { 0.0 } else { 1.0 };
    gauge!("nudge_destination_circuit_open", "destination" => destination.to_string()).set(open);
}

pub fn destination_batch(destination: &str, items: usize) {
    histogram!("nudge_destination_batch_size", "destination" => destination.to_string()).record(items as f64);
}

pub fn destination_throttled(destination: &str) {
    counter!("nudge_destination_throttled_total", "destination" => destination.to_string()).increment(1);
}

pub fn outbox_coalesced(destination: &str, n: usize) {
    counter!("nudge_outbox_coalesced_total", "destination" => destination.to_string()).increment(n as u64);
}

pub fn event_to_push(seconds: f64) {
    histogram!("nudge_event_to_push_seconds").record(seconds);
}

pub fn event_to_processed(seconds: f64) {
    histogram!("nudge_event_to_processed_seconds").record(seconds);
}

pub fn timers_fired(n: usize) {
    counter!("nudge_timers_fired_total").increment(n as u64);
}

/// This month's token use and the budget.
pub fn llm_budget(used: u64, budget: Option<u64>) {
    gauge!("nudge_llm_tokens_used").set(used as f64);
    gauge!("nudge_llm_token_budget").set(budget.unwrap_or(0) as f64);
}

/// One generation of copy: `generated` or `fallback`, and how long it took.
pub fn llm_generation(outcome: &'static str, seconds: f64) {
    counter!("nudge_llm_generations_total", "outcome" => outcome).increment(1);
    histogram!("nudge_llm_generation_seconds").record(seconds);
}

pub fn schedule_customers(flow: &str, n: usize) {
    counter!("nudge_schedule_customers_total", "flow" => flow.to_string()).increment(n as u64);
}

/// An in-process sample of latencies for exact quantiles in summaries (the demo, benchmarks).
/// Bounded: keeps at most `cap` samples (a uniform reservoir beyond that), each with when it was recorded.
pub struct LatencySample {
    /// Samples plus the count seen, behind one lock; recording is rare enough per event.
    inner: Mutex<Samples>,
    cap: usize,
}

struct Samples {
    /// (seconds since `since` when recorded, latency in seconds).
    kept: Vec<(f64, f64)>,
    seen: u64,
    since: std::time::Instant,
}

impl LatencySample {
    pub fn new(cap: usize) -> Self {
        let inner = Samples { kept: Vec::new(), seen: 0, since: std::time::Instant::now() };
        LatencySample { inner: Mutex::new(inner), cap }
    }

    pub fn record(&self, seconds: f64) {
        let mut g = self.inner.lock().expect("latency lock poisoned");
        g.seen += 1;
        let (seen, at) = (g.seen, g.since.elapsed().as_secs_f64());
        if g.kept.len() < self.cap {
            g.kept.push((at, seconds));
        } else {
            let j = rand::random::<u64>() % seen;
            if (j as usize) < self.cap {
                g.kept[j as usize] = (at, seconds);
            }
        }
    }

    /// Forgets every sample (between benchmark phases); times are counted from here on.
    pub fn reset(&self) {
        let mut g = self.inner.lock().expect("latency lock poisoned");
        g.kept.clear();
        g.seen = 0;
        g.since = std::time::Instant::now();
    }

    /// The samples kept, in seconds (for merging the samples of several nodes).
    pub fn samples(&self) -> Vec<f64> {
        self.inner.lock().expect("latency lock poisoned").kept.iter().map(|(_, l)| *l).collect()
    }

    /// The samples kept as (seconds since the sample was made or last reset, latency in seconds), in the
    /// order kept: a benchmark's timeline of where a tail came from.
    pub fn timed(&self) -> Vec<(f64, f64)> {
        self.inner.lock().expect("latency lock poisoned").kept.clone()
    }

    /// (count, p50, p99) in seconds; `None` when empty.
    pub fn quantiles(&self) -> Option<(u64, f64, f64)> {
        let g = self.inner.lock().expect("latency lock poisoned");
        if g.kept.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = g.kept.iter().map(|(_, l)| *l).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
        Some((g.seen, q(0.5), q(0.99)))
    }
}

/// Sets up JSON or human logs, filtered by `RUST_LOG` (default `default_level`).
pub fn init_logging(json: bool, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
