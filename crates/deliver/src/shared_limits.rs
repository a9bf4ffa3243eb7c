//! Rate limits shared by every node of a deployment, kept in Redis.
//!
//! A [`RateLimiter`](crate::RateLimiter) on its own keeps the log of its recent grants in memory, so
//! each node sending to the same platform account would allow the account's whole limit: three nodes
//! would send three times Klaviyo's quota. A limiter switched to a [`SharedLimits`] handle keeps that log
//! in one Redis list instead, shared by all nodes, and reserves each slot with one atomic Lua script that
//! applies the same sliding-log rule as the in-memory limiter. The script reads the time with Redis'
//! `TIME`, so the nodes' clocks do not matter; it answers how long the caller waits before sending.
//!
//! Keys are `<prefix>:limit:<name>`, where the prefix is the deployment's name and the name says which
//! destination and endpoint the log is for (`klaviyo:events`). Each key expires a little after its last
//! grant has left the longest window, so logs of removed destinations do not stay behind.
//!
//! When Redis cannot be reached a shared limiter does not fall back to sending unthrottled: it logs a
//! warning and asks again after a pause (0.5 s, doubling up to 5 s) until Redis answers.

use crate::DeliverError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

/// Reserves the earliest free slot in the log at `KEYS[1]` and returns, in microseconds, how long the
/// caller waits for it.
///
/// `ARGV[1]` is the margin added to every window (µs), `ARGV[2]` how long the key outlives its last grant
/// (ms), then one `allowed, window (µs)` pair per window. Grants are integer microseconds of the server's
/// clock, appended in non-decreasing order; only as many as the largest window allows are kept. Numbers
/// are written back with `%d`: Lua's default number format would round 16-digit microsecond times.
const RESERVE_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local margin = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local len = redis.call('LLEN', KEYS[1])
local at = now
if len > 0 then
  local last = tonumber(redis.call('LINDEX', KEYS[1], -1))
  if last > at then at = last end
end
local keep = 1
for i = 3, #ARGV - 1, 2 do
  local allowed = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  if allowed > keep then keep = allowed end
  if len >= allowed then
    local oldest = tonumber(redis.call('LINDEX', KEYS[1], len - allowed))
    if oldest + window + margin > at then at = oldest + window + margin end
  end
end
redis.call('RPUSH', KEYS[1], string.format('%d', at))
redis.call('LTRIM', KEYS[1], -keep, -1)
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((at - now) / 1000) + ttl))
return at - now
";

static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RESERVE_SCRIPT));

/// How long a log outlives its last grant beyond the longest window (and margin).
const KEY_GRACE: Duration = Duration::from_secs(10);
/// The first pause before asking an unreachable Redis again; each later pause doubles, up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// A connection to the Redis that holds a deployment's shared rate-limit logs, and the deployment's key
/// prefix. Cheap to clone: clones share one connection, which reconnects by itself after a failure.
///
/// Switch a limiter to it with [`RateLimiter::shared`](crate::RateLimiter::shared), or a whole client
/// with its `with_shared_limits`.
#[derive(Clone)]
pub struct SharedLimits {
    conn: ConnectionManager,
    prefix: String,
    /// `host:port` of the server, for errors and logs (the URL can carry a password).
    server: String,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits").field("server", &self.server).field("prefix", &self.prefix).finish()
    }
}

impl SharedLimits {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`) and loads the
    /// reservation script. `prefix` (the deployment's name) starts every key, so deployments sharing one
    /// Redis keep separate logs.
    ///
    /// Fails with [`DeliverError::Config`] for an empty prefix, a malformed URL, or a server that cannot
    /// be reached or refuses the script.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, DeliverError> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(DeliverError::Config(
                "shared rate limits need a key prefix (the deployment name)".into(),
            ));
        }
        let client = redis::Client::open(url).map_err(|e| {
            DeliverError::Config(format!("shared rate limits: malformed Redis URL `{}`: {e}", redact(url)))
        })?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let unreachable = |e: redis::RedisError| {
            DeliverError::Config(format!("shared rate limits: cannot reach Redis at {server}: {e}"))
        };
        let mut conn = ConnectionManager::new_with_config(client, config).await.map_err(unreachable)?;
        RESERVE.load_async(&mut conn).await.map_err(unreachable)?;
        Ok(SharedLimits { conn, prefix: prefix.to_string(), server })
    }

    /// The deployment's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of the shared log called `name`: `<prefix>:limit:<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:limit:{name}", self.prefix)
    }

    /// The shared log called `name`, for a limiter.
    pub(crate) fn log(&self, name: &str) -> SharedLog {
        SharedLog { conn: self.conn.clone(), key: self.key(name), server: self.server.clone() }
    }
}

/// One rate-limit log in Redis, as a limiter uses it.
#[derive(Clone)]
pub(crate) struct SharedLog {
    conn: ConnectionManager,
    key: String,
    server: String,
}

impl fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLog").field("server", &self.server).field("key", &self.key).finish()
    }
}

impl SharedLog {
    /// Reserves the earliest slot that keeps every window within its limit across all nodes and returns
    /// how long to wait for it, from the moment Redis answered. Asks again, after a growing pause, for as
    /// long as Redis cannot be reached: a request is never sent without its slot.
    pub(crate) async fn reserve(&self, windows: &[(usize, Duration)], margin: Duration) -> Duration {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut failures = 0u32;
        loop {
            match self.try_reserve(windows, margin).await {
                Ok(wait) => {
                    if failures > 0 {
                        tracing::info!(key = %self.key, server = %self.server, failures, "Redis answered again for a shared rate limit");
                    }
                    return wait;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(
                        key = %self.key,
                        server = %self.server,
                        error = %e,
                        failures,
                        retry_in_ms = pause.as_millis() as u64,
                        "cannot reserve a slot of a shared rate limit in Redis; holding the request until it answers"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }

    /// One run of the reservation script.
    async fn try_reserve(
        &self,
        windows: &[(usize, Duration)],
        margin: Duration,
    ) -> redis::RedisResult<Duration> {
        let longest = windows.iter().map(|(_, w)| *w).max().unwrap_or(Duration::ZERO);
        let ttl = longest + margin + KEY_GRACE;
        let mut invocation = RESERVE.key(&self.key);
        invocation.arg(micros(margin)).arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        for &(allowed, window) in windows {
            invocation.arg(allowed).arg(micros(window));
        }
        let mut conn = self.conn.clone();
        let wait: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(Duration::from_micros(u64::try_from(wait).unwrap_or(0)))
    }
}

/// Whole microseconds of `d`, saturated.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `url` with any password replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("redis://:secret@host:6379"), "redis://:***@host:6379");
        assert_eq!(redact("redis://user:secret@host/1"), "redis://user:***@host/1");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[tokio::test]
    async fn refuses_a_malformed_url_or_an_empty_prefix() {
        let e = SharedLimits::connect("http://:secret@host", "test").await.unwrap_err().to_string();
        assert!(e.contains("malformed Redis URL") && !e.contains("secret"), "{e}");
        let e = SharedLimits::connect("redis://127.0.0.1:6379", " ").await.unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
    }
}
