//! Durable acknowledgements: a PostgreSQL commit against a RabbitMQ quorum queue with publisher confirms.
//!
//! nudge acknowledges a webhook only once the delivery is durable. On a cluster that is a commit to
//! PostgreSQL (`commit_delivery`); the alternative is to publish the delivery to a RabbitMQ quorum queue and
//! acknowledge on the broker's publisher confirm. This benchmark measures both on the same machine, with the
//! same deliveries: N tasks each loop "make one delivery (a ~2 KB Shopify-like webhook with a unique dedupe
//! key) → make it durable → record the latency" for a fixed time, after a short warm-up. For each backend
//! and each concurrency it prints acks/s, the latency's p50, p99 and maximum, the benchmark process's CPU
//! time per ack and the server's CPU time per ack (from `/proc`: the `postgres` processes serving this
//! benchmark plus the server's own background processes; RabbitMQ's `beam.smp`).
//!
//! The two are not equivalent: the PostgreSQL commit also checks the delivery's dedupe keys cluster-wide
//! ("seen this webhook id?") in the same transaction and assigns the processing sequence; a RabbitMQ queue
//! gives neither, so that check would still have to be made somewhere else.
//!
//! ```text
//! cargo bench -p nudge-store --bench ack_durability -- --seconds 10 --concurrency 1,16,64 \
//!     --postgres postgres://postgres@127.0.0.1:5432/test --amqp amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! Either backend is skipped, with a note, when its flag is absent. Other flags: `--warmup S` (default 2
//! seconds, not counted) and `--amqp-channels per-task,4` (RabbitMQ channels: one per task, or that many
//! shared by all tasks; each listed mode is measured; default `per-task`).

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use nudge_model::TraceId;
use nudge_store::postgres::PgStore;
use nudge_store::{CommitResult, DeliveryLog, NewDelivery};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ack_durability [--seconds S] [--warmup S] [--concurrency 1,16,64] \
[--postgres URL] [--amqp URL] [--amqp-channels per-task,4]";

/// The command line.
struct Args {
    seconds: f64,
    warmup: f64,
    concurrency: Vec<usize>,
    postgres: Option<String>,
    amqp: Option<String>,
    /// RabbitMQ channel modes: `None` is one channel per task, `Some(k)` is `k` channels shared by all tasks.
    amqp_channels: Vec<Option<usize>>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10.0,
        warmup: 2.0,
        concurrency: vec![1, 16, 64],
        postgres: None,
        amqp: None,
        amqp_channels: vec![None],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to benchmarks without a harness.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value\n{USAGE}"));
        let number = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| panic!("{flag}: not a number: {v}")) };
        match flag.as_str() {
            "--seconds" => args.seconds = number(&value),
            "--warmup" => args.warmup = number(&value),
            "--concurrency" => {
                args.concurrency = value.split(',').map(|v| number(v) as usize).filter(|&c| c > 0).collect();
            }
            "--postgres" => args.postgres = Some(value),
            "--amqp" => args.amqp = Some(value),
            "--amqp-channels" => {
                args.amqp_channels = value
                    .split(',')
                    .map(|v| if v == "per-task" { None } else { Some((number(v) as usize).max(1)) })
                    .collect();
            }
            _ => panic!("unknown flag {flag}\n{USAGE}"),
        }
    }
    args
}

// ---------------------------------------------------------------------------------------------------------
// The deliveries: what a Shopify `orders/create` webhook looks like, ~2 KB, each with its own id.

/// An order webhook's body; `{ID}` and `{WEBHOOK}` are replaced per delivery.
const ORDER_TEMPLATE: &str = concat!(
    r##"{"id":{ID},"admin_graphql_api_id":"gid://shopify/Order/{ID}","app_id":580111,"##,
    r##""browser_ip":"203.0.113.17","buyer_accepts_marketing":true,"cart_token":"c1-{WEBHOOK}","##,
    r##""checkout_id":{ID},"confirmation_number":"K7Q2PZ4XA","confirmed":true,"##,
    r##""contact_email":"ada.lovelace@example.org","created_at":"2026-11-28T09:41:12-05:00","##,
    r##""currency":"USD","current_subtotal_price":"84.90","current_total_discounts":"5.00","##,
    r##""current_total_price":"93.84","current_total_tax":"6.94","customer_locale":"en-US","##,
    r##""email":"ada.lovelace@example.org","financial_status":"paid","fulfillment_status":null,"##,
    r##""landing_site":"/products/organic-tee?utm_source=newsletter&utm_medium=email&utm_campaign=bf","##,
    r##""name":"#10482","order_number":10482,"payment_gateway_names":["shopify_payments"],"##,
    r##""phone":null,"processed_at":"2026-11-28T09:41:11-05:00","source_name":"web","##,
    r##""subtotal_price":"84.90","tags":"","taxes_included":false,"test":false,"##,
    r##""token":"t-{WEBHOOK}","total_discounts":"5.00","total_line_items_price":"89.90","##,
    r##""total_price":"93.84","total_tax":"6.94","total_weight":420,"##,
    r##""updated_at":"2026-11-28T09:41:13-05:00","user_id":null,"##,
    r##""billing_address":{"first_name":"Ada","last_name":"Lovelace","##,
    r##""address1":"12 St James's Square","city":"London","zip":"SW1Y 4JH","##,
    r##""country":"United Kingdom","country_code":"GB","phone":null},"##,
    r##""shipping_address":{"first_name":"Ada","last_name":"Lovelace","##,
    r##""address1":"12 St James's Square","city":"London","zip":"SW1Y 4JH","##,
    r##""country":"United Kingdom","country_code":"GB","phone":null},"customer":{"id":7364019283746,"##,
    r##""email":"ada.lovelace@example.org","first_name":"Ada","last_name":"Lovelace","##,
    r##""orders_count":4,"total_spent":"312.40","verified_email":true,"accepts_marketing":true,"##,
    r##""tags":"vip"},"discount_codes":[{"code":"BF5","amount":"5.00","type":"fixed_amount"}],"##,
    r##""line_items":[{"id":1,"product_id":8123401,"variant_id":4412001,"title":"Organic Tee","##,
    r##""variant_title":"M / Forest","sku":"TEE-ORG-M-FOR","quantity":1,"price":"39.95","grams":180,"##,
    r##""vendor":"Nudge Goods","requires_shipping":true,"taxable":true},{"id":2,"##,
    r##""product_id":8123455,"variant_id":4412090,"title":"Merino Beanie","##,
    r##""variant_title":"Charcoal","sku":"BEA-MER-CHA","quantity":1,"price":"49.95","grams":240,"##,
    r##""vendor":"Nudge Goods","requires_shipping":true,"taxable":true}],"##,
    r##""shipping_lines":[{"code":"Standard","price":"0.00","source":"shopify","title":"Standard"}]}"##,
);

/// One delivery: the webhook id (its dedupe key), the headers kept (secrets removed) and the body.
struct Webhook {
    id: String,
    headers_json: String,
    body: Vec<u8>,
}

fn webhook(n: u64) -> Webhook {
    let id = uuid::Uuid::new_v4().to_string();
    let order = 5_100_000_000_000 + n;
    let body = ORDER_TEMPLATE.replace("{ID}", &order.to_string()).replace("{WEBHOOK}", &id).into_bytes();
    let headers_json = format!(
        "{{\"x-shopify-topic\":\"orders/create\",\"x-shopify-shop-domain\":\"bench.myshopify.com\",\
         \"x-shopify-webhook-id\":\"{id}\",\"x-shopify-api-version\":\"2025-10\",\
         \"x-shopify-triggered-at\":\"2026-11-28T14:41:13.000Z\"}}"
    );
    Webhook { id, headers_json, body }
}

// ---------------------------------------------------------------------------------------------------------
// The backends: each makes one delivery durable and returns once it is.

trait Durable: Send + Sync + 'static {
    /// Makes `w` durable as the task numbered `task` would; returns once the backend has confirmed it.
    fn make_durable(&self, task: usize, w: Webhook) -> impl Future<Output = Result<(), String>> + Send;
}

/// `PgStore::commit_delivery`: the delivery, its dedupe key and its processing sequence, in one commit.
struct Postgres(Arc<PgStore>);

impl Durable for Postgres {
    async fn make_durable(&self, _task: usize, w: Webhook) -> Result<(), String> {
        let d = NewDelivery {
            trace_id: TraceId::new(),
            source: "shopify".into(),
            topic: "orders/create".into(),
            shop: Some("bench.myshopify.com".into()),
            dedupe_keys: vec![format!("shopify:webhook:{}", w.id)],
            webhook_id: Some(w.id),
            event_id: None,
            received_at_ms: 1,
            headers_json: w.headers_json,
            body: w.body,
            part: None,
        };
        match self.0.commit_delivery(d).await {
            Ok(CommitResult::Committed { .. }) => Ok(()),
            Ok(other) => Err(format!("not committed: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A persistent message on a durable quorum queue, acknowledged on the broker's publisher confirm. The task
/// numbered `t` publishes on channel `t % channels.len()` (one per task, or a few shared).
struct Rabbit {
    channels: Vec<Channel>,
    queue: ShortString,
}

impl Durable for Rabbit {
    async fn make_durable(&self, task: usize, w: Webhook) -> Result<(), String> {
        let channel = &self.channels[task % self.channels.len()];
        let mut headers = FieldTable::default();
        headers.insert("topic".into(), AMQPValue::LongString("orders/create".into()));
        headers.insert("shop".into(), AMQPValue::LongString("bench.myshopify.com".into()));
        headers.insert("headers".into(), AMQPValue::LongString(w.headers_json.into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(w.id.into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish("".into(), self.queue.clone(), BasicPublishOptions::default(), &w.body, properties)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if confirm.is_ack() { Ok(()) } else { Err("the broker refused the message (nack)".into()) }
    }
}

// ---------------------------------------------------------------------------------------------------------
// CPU time from /proc, in clock ticks.

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// `(comm, utime + stime)` from a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    // After the command: state, ppid, ... utime and stime are the 12th and 13th fields.
    let mut fields = stat[close + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

fn own_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| parse_stat(&s).map(|(_, t)| t)).unwrap_or(0)
}

/// A server process seen in `/proc`: its CPU so far and its command line (PostgreSQL shows the client's
/// address there).
struct Proc {
    ticks: u64,
    cmdline: String,
}

/// Every process whose command name is `comm`, by pid.
fn processes(comm: &str) -> HashMap<u32, Proc> {
    let mut found = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((name, ticks)) = parse_stat(&stat) else { continue };
        if name != comm {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        found.insert(pid, Proc { ticks, cmdline });
    }
    found
}

/// The local ports of this process's TCP connections to `remote_port`: which PostgreSQL backends are ours.
fn own_ports_to(remote_port: u16) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let port_of = |addr: &str| addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let mut ports = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && port_of(f[2]) == Some(remote_port) && inodes.contains(f[9]) {
                ports.extend(port_of(f[1]));
            }
        }
    }
    ports
}

/// The server's CPU ticks between two snapshots, counting only the processes `ours` selects (a process
/// started in between counts from zero; one that ended in between is missed).
fn server_ticks(
    before: &HashMap<u32, Proc>,
    after: &HashMap<u32, Proc>,
    ours: impl Fn(&Proc) -> bool,
) -> u64 {
    after
        .iter()
        .filter(|(_, p)| ours(p))
        .map(|(pid, p)| p.ticks.saturating_sub(before.get(pid).map_or(0, |b| b.ticks)))
        .sum()
}

/// Which PostgreSQL processes are counted: the server's own (postmaster, WAL writer, checkpointer,
/// autovacuum: no client address) and the backends serving this benchmark's connections.
fn postgres_ours(p: &Proc, ports: &HashSet<u16>) -> bool {
    match p.cmdline.find("127.0.0.1(").or_else(|| p.cmdline.find("::1(")) {
        None => true,
        Some(at) => {
            let rest = &p.cmdline[at..];
            let port = rest.split('(').nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok());
            port.is_some_and(|port: u16| ports.contains(&port))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The measurement.

/// What one run of `concurrency` tasks for a fixed time gave.
struct Run {
    elapsed: Duration,
    /// Latency of each acknowledged delivery, in microseconds.
    latencies_us: Vec<u32>,
    failures: u64,
    first_failure: Option<String>,
}

/// `concurrency` tasks each loop "make a delivery → make it durable → record the latency" for `time`.
async fn drive<B: Durable>(backend: &Arc<B>, concurrency: usize, time: Duration) -> Run {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + time;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                let mut first_failure = None;
                while Instant::now() < deadline {
                    let w = webhook(NEXT.fetch_add(1, Ordering::Relaxed));
                    let t = Instant::now();
                    match backend.make_durable(task, w).await {
                        Ok(()) => latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                        Err(e) => {
                            failures += 1;
                            first_failure.get_or_insert(e);
                        }
                    }
                }
                (latencies, failures, first_failure)
            })
        })
        .collect();
    let mut run = Run { elapsed: Duration::ZERO, latencies_us: Vec::new(), failures: 0, first_failure: None };
    for task in tasks {
        let (latencies, failures, first_failure) = task.await.expect("task");
        run.latencies_us.extend(latencies);
        run.failures += failures;
        if run.first_failure.is_none() {
            run.first_failure = first_failure;
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// One table row: a backend at one concurrency.
struct Row {
    backend: String,
    concurrency: usize,
    run: Run,
    client_ticks: u64,
    server_ticks: u64,
    load: String,
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn print_header() {
    println!(
        "| backend | tasks | acks | acks/s | p50 ms | p99 ms | max ms | bench CPU µs/ack | server CPU µs/ack | load (1 min) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
}

fn print_row(row: &mut Row) {
    let tick_us = 1e6 / clock_ticks_per_second();
    row.run.latencies_us.sort_unstable();
    let l = &row.run.latencies_us;
    let acks = l.len() as f64;
    let per_ack = |ticks: u64| if acks > 0.0 { ticks as f64 * tick_us / acks } else { f64::NAN };
    println!(
        "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {} |",
        row.backend,
        row.concurrency,
        l.len(),
        acks / row.run.elapsed.as_secs_f64(),
        percentile_ms(l, 0.50),
        percentile_ms(l, 0.99),
        l.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
        per_ack(row.client_ticks),
        per_ack(row.server_ticks),
        row.load,
    );
    if row.run.failures > 0 {
        println!(
            "  ({} failed; the first: {})",
            row.run.failures,
            row.run.first_failure.as_deref().unwrap_or("?")
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The server whose processes' CPU is counted.
#[derive(Clone, Copy)]
enum Server {
    /// The server's port (its backends serving this process are found by their connections to it).
    Postgres(u16),
    RabbitMq,
}

/// Warms `backend` up, then measures it, with the CPU of this process and of the server's processes
/// around the measured part.
async fn measure<B: Durable>(
    backend: &Arc<B>,
    name: &str,
    concurrency: usize,
    args: &Args,
    server: Server,
) -> Row {
    drive(backend, concurrency, Duration::from_secs_f64(args.warmup)).await;
    let load = load_average();
    let comm = match server {
        Server::Postgres(_) => "postgres",
        Server::RabbitMq => "beam.smp",
    };
    let (client_before, server_before) = (own_cpu_ticks(), processes(comm));
    let run = drive(backend, concurrency, Duration::from_secs_f64(args.seconds)).await;
    let (client_after, server_after) = (own_cpu_ticks(), processes(comm));
    let server_ticks = match server {
        Server::Postgres(port) => {
            let ports = own_ports_to(port);
            server_ticks(&server_before, &server_after, |p| postgres_ours(p, &ports))
        }
        Server::RabbitMq => server_ticks(&server_before, &server_after, |_| true),
    };
    Row {
        backend: name.to_owned(),
        concurrency,
        run,
        client_ticks: client_after - client_before,
        server_ticks,
        load,
    }
}

async fn bench_postgres(url: &str, args: &Args) {
    let store = nudge_store::conformance::fresh_postgres(url, "nudge_b").await;
    let backend = Arc::new(Postgres(store.clone()));
    let port = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)
        .expect("--postgres takes a postgres:// URL")
        .get_port();
    for &c in &args.concurrency {
        let mut row = measure(&backend, "PostgreSQL commit_delivery", c, args, Server::Postgres(port)).await;
        print_row(&mut row);
    }
    store.drop_schema().await.expect("drop the benchmark schema");
}

async fn bench_rabbitmq(url: &str, args: &Args) {
    let connection =
        Connection::connect(url, ConnectionProperties::default()).await.expect("connect to RabbitMQ");
    let admin = connection.create_channel().await.expect("channel");
    let queue: ShortString = format!("nudge_ack_bench_{}", uuid::Uuid::new_v4().simple()).into();
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    admin
        .queue_declare(queue.clone(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
        .await
        .expect("declare the quorum queue");
    for &mode in &args.amqp_channels {
        for &c in &args.concurrency {
            let count = mode.unwrap_or(c).min(c);
            let mut channels = Vec::with_capacity(count);
            for _ in 0..count {
                let channel = connection.create_channel().await.expect("channel");
                channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm_select");
                channels.push(channel);
            }
            let name = match mode {
                None => "RabbitMQ quorum, channel per task".to_owned(),
                Some(_) => format!("RabbitMQ quorum, {count} shared channel(s)"),
            };
            let backend = Arc::new(Rabbit { channels, queue: queue.clone() });
            let mut row = measure(&backend, &name, c, args, Server::RabbitMq).await;
            print_row(&mut row);
            for channel in &backend.channels {
                channel.close(200, "done".into()).await.ok();
            }
        }
    }
    admin.queue_delete(queue, QueueDeleteOptions::default()).await.expect("delete the benchmark queue");
    connection.close(200, "done".into()).await.ok();
}

fn main() {
    let args = parse_args();
    let body = webhook(0).body.len();
    println!(
        "durable acknowledgements: {body}-byte webhook bodies, {} s measured after {} s of warm-up per row, \
         tasks {:?}; CPU in µs per ack (bench: this process; server: PostgreSQL's backends serving this \
         process plus its background processes, or RabbitMQ's beam.smp), {} cores",
        args.seconds,
        args.warmup,
        args.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        print_header();
        match &args.postgres {
            Some(url) => bench_postgres(url, &args).await,
            None => println!("(PostgreSQL skipped: no --postgres URL)"),
        }
        match &args.amqp {
            Some(url) => bench_rabbitmq(url, &args).await,
            None => println!("(RabbitMQ skipped: no --amqp URL)"),
        }
    });
    println!(
        "note: the PostgreSQL commit also checks the dedupe key cluster-wide and assigns the processing \
         sequence in the same transaction; RabbitMQ gives no dedupe (a redelivered webhook is queued again), \
         so that check is not part of its figures."
    );
}
