//! Rate limits shared through Redis: limiters on one key, as two nodes would hold them, together stay
//! within the windows; other keys are not slowed; bad URLs and unreachable servers are named.
//!
//! The tests that need a server run against `NUDGE_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) and
//! are skipped with a note when it is unset. Each uses its own random key prefix and deletes its keys.

use nudge_deliver::{RateLimiter, SharedLimits};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn redis_url() -> Option<String> {
    let url = std::env::var("NUDGE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("skipped: NUDGE_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
    }
    url
}

/// A key prefix no other test run uses.
fn random_prefix() -> String {
    format!("nudge-test-{:016x}", rand::random::<u64>())
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn delete(url: &str, keys: &[String]) {
    let mut conn = connection(url).await;
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
}

/// The most grants that fall in any interval of `window` starting at a grant.
fn most_in_any(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|t| **t < sorted[i] + window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn limiters_sharing_a_key_stay_within_the_window_together() {
    let Some(url) = redis_url() else { return };
    let prefix = random_prefix();
    let window = Duration::from_secs(1);
    // Two nodes, each with its own connection and limiter, on one destination endpoint.
    let node_a = SharedLimits::connect(&url, &prefix).await.unwrap();
    let node_b = SharedLimits::connect(&url, &prefix).await.unwrap();
    let a = Arc::new(RateLimiter::with_windows(&[(5, window)]).shared(&node_a, "klaviyo:events"));
    let b = Arc::new(RateLimiter::with_windows(&[(5, window)]).shared(&node_b, "klaviyo:events"));
    assert!(a.is_shared() && b.is_shared());

    let start = Instant::now();
    let run = |limiter: Arc<RateLimiter>, count: usize| {
        tokio::spawn(async move {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                limiter.acquire().await;
                times.push(Instant::now());
            }
            times
        })
    };
    let (from_a, from_b) = tokio::join!(run(a.clone(), 8), run(b.clone(), 7));
    let mut times = from_a.unwrap();
    times.extend(from_b.unwrap());
    let elapsed = start.elapsed();

    assert_eq!(times.len(), 15);
    // A few milliseconds of slack: a sleep can end slightly late, so two grants exactly one window apart
    // can return a little closer together.
    let most = most_in_any(&times, window - Duration::from_millis(15));
    assert!(most <= 5, "{most} grants within one window: {times:?}");
    assert!(elapsed >= Duration::from_secs(2), "15 grants at 5 a second took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");

    // The log keeps only as many grants as the window allows and expires after the window has passed.
    let key = node_a.key("klaviyo:events");
    assert_eq!(key, format!("{prefix}:limit:klaviyo:events"));
    let mut conn = connection(&url).await;
    let len: i64 = redis::cmd("LLEN").arg(&key).query_async(&mut conn).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 5);
    assert!(ttl > 0 && ttl <= 11_000 + 1_000, "ttl {ttl} ms");
    delete(&url, &[key]).await;
}

#[tokio::test]
async fn another_key_is_not_slowed() {
    let Some(url) = redis_url() else { return };
    let prefix = random_prefix();
    let limits = SharedLimits::connect(&url, &prefix).await.unwrap();
    let window = Duration::from_secs(1);
    let busy = RateLimiter::with_windows(&[(5, window)]).shared(&limits, "braze-eu:users-track");
    let other = RateLimiter::with_windows(&[(5, window)]).shared(&limits, "braze-us:users-track");

    for _ in 0..5 {
        busy.acquire().await;
    }
    let next = busy.next_free().expect("the first key is at its limit");
    assert!(next > Instant::now() + Duration::from_millis(500), "next free in {:?}", next - Instant::now());

    let start = Instant::now();
    for _ in 0..5 {
        other.acquire().await;
    }
    assert!(start.elapsed() < Duration::from_millis(300), "the other key waited {:?}", start.elapsed());

    // The busy key really is throttled: its sixth grant waits for the window.
    let waited = busy.acquire().await;
    assert!(waited > Duration::from_millis(500), "waited {waited:?}");
    delete(&url, &[limits.key("braze-eu:users-track"), limits.key("braze-us:users-track")]).await;
}

#[tokio::test]
async fn a_malformed_url_is_named() {
    let e = SharedLimits::connect("redis//127.0.0.1:6379", "test").await.unwrap_err().to_string();
    assert!(e.contains("malformed Redis URL `redis//127.0.0.1:6379`"), "{e}");
    let e = SharedLimits::connect("redis://:hunter2@127.0.0.1:6379/x", "test").await.unwrap_err().to_string();
    assert!(e.contains("malformed Redis URL") && !e.contains("hunter2"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    // Nothing listens on port 1 of the loopback address: the connection is refused at once.
    let e = SharedLimits::connect("redis://127.0.0.1:1", "test").await.unwrap_err().to_string();
    assert!(e.contains("cannot reach Redis at 127.0.0.1:1"), "{e}");
}
