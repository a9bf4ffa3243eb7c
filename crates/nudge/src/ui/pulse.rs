//! What the overview reads: the store's counts ([`nudge_store::Store::stats`]) and the deliveries per
//! minute by source and topic over the last day, kept fresh while someone watches.
//!
//! Counting a large store is not free (the outbox and the terminal states are grouped in full), so the
//! counts are a snapshot. When taking one is quick (under [`QUICK`]), every page takes its own and shows
//! the store as it is; otherwise pages show the newest snapshot, which a background task renews while the
//! console has been looked at in the last [`WATCHED`], so a page never waits for the count and an unwatched
//! console costs nothing. A renewal waits at least [`EVERY`] and at least [`COST_SHARE`] times as long as the
//! last count took, so counting takes at most a twentieth of one core however large the store (a count of 2 s
//! is renewed every 40 s). The per-minute series follow the ingest log's tail
//! ([`nudge_store::Store::delivery_ticks`]) every [`EVERY`], reading only the deliveries appended since.
//! Nothing here is on the acknowledgement path: the log's reads use the store's reader connections.

use super::Ui;
use nudge_store::{ApprovalFilter, ApprovalStatus, StoreStats};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A snapshot taken faster than this is taken again for every page.
pub const QUICK: Duration = Duration::from_millis(25);
/// How often the background task renews a slow snapshot.
pub const EVERY: Duration = Duration::from_secs(5);
/// A slow count is renewed after this many times as long as it took.
pub const COST_SHARE: u32 = 20;
/// How long after the last page view the background task keeps renewing.
pub const WATCHED: Duration = Duration::from_secs(60);
/// The per-minute series cover this many minutes.
pub const MINUTES_KEPT: i64 = 24 * 60;
/// Log entries read per step while following the tail.
const TAIL_BATCH: usize = 50_000;

/// The store's counts at one instant.
pub struct Snapshot {
    pub stats: StoreStats,
    pub pending_approvals: usize,
    /// When it was taken (ms since the epoch) and how long taking it took.
    pub taken_ms: i64,
    pub took: Duration,
}

/// Deliveries per minute, by `source topic`, over the last [`MINUTES_KEPT`] minutes.
#[derive(Default)]
struct Minutes {
    /// The newest log sequence counted.
    last_seq: Option<i64>,
    /// Minute (ms since the epoch / 60,000) → `source topic` → deliveries received in it.
    buckets: BTreeMap<i64, HashMap<String, u64>>,
}

/// The per-minute series of one window, ready to draw or tabulate.
pub struct Series {
    /// The number of minutes.
    pub minutes: usize,
    /// Per `source topic`: deliveries in each minute of the window, oldest first; the busiest first.
    pub lines: Vec<(String, Vec<u64>)>,
}

#[derive(Default)]
pub struct Pulse {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    minutes: Mutex<Minutes>,
    /// Renewals one at a time (a page and the background task never count twice at once).
    renewing: tokio::sync::Mutex<()>,
    watched_ms: AtomicI64,
    started: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pulse {
    /// The counts for a page: fresh when they are quick to take, else the newest snapshot (taken now if
    /// there is none yet). Starts the background renewal on the first call.
    pub async fn current(ui: &Arc<Ui>) -> Result<Arc<Snapshot>, String> {
        let pulse = &ui.pulse;
        pulse.watched_ms.store(crate::outbox::now_ms(), Ordering::Relaxed);
        if !pulse.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(renew_while_watched(Arc::downgrade(ui)));
        }
        let held = lock(&pulse.snapshot).clone();
        match held {
            Some(s) if s.took >= QUICK => Ok(s),
            _ => pulse.renew(ui).await,
        }
    }

    /// The series of the last `minutes` minutes (at most [`MINUTES_KEPT`]), ending with the current minute.
    pub fn series(&self, minutes: usize) -> Series {
        let minutes = minutes.clamp(1, MINUTES_KEPT as usize);
        let now_minute = crate::outbox::now_ms().div_euclid(60_000);
        let start_minute = now_minute - minutes as i64 + 1;
        let m = lock(&self.minutes);
        let mut lines: HashMap<&str, Vec<u64>> = HashMap::new();
        for (minute, counts) in m.buckets.range(start_minute..=now_minute) {
            let i = (minute - start_minute) as usize;
            for (key, n) in counts {
                lines.entry(key.as_str()).or_insert_with(|| vec![0; minutes])[i] += n;
            }
        }
        let mut lines: Vec<(String, Vec<u64>)> = lines.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        lines.sort_by(|a, b| {
            b.1.iter().sum::<u64>().cmp(&a.1.iter().sum::<u64>()).then_with(|| a.0.cmp(&b.0))
        });
        Series { minutes, lines }
    }

    /// Takes a new snapshot and follows the log's tail.
    async fn renew(&self, ui: &Ui) -> Result<Arc<Snapshot>, String> {
        let _one = self.renewing.lock().await;
        let store = &ui.shared.store;
        let started = Instant::now();
        let stats = store.stats().await.map_err(|e| e.to_string())?;
        let filter = ApprovalFilter { flow: None, status: Some(ApprovalStatus::Pending), limit: 10_000 };
        let pending_approvals = store.list_approvals(filter).await.map_err(|e| e.to_string())?.len();
        self.follow_log(ui).await?;
        let snapshot = Arc::new(Snapshot {
            stats,
            pending_approvals,
            taken_ms: crate::outbox::now_ms(),
            took: started.elapsed(),
        });
        *lock(&self.snapshot) = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Counts the deliveries appended to the log since the last call into the per-minute buckets, and
    /// drops the minutes that have left the window.
    async fn follow_log(&self, ui: &Ui) -> Result<(), String> {
        let now_minute = crate::outbox::now_ms().div_euclid(60_000);
        let oldest = now_minute - MINUTES_KEPT + 1;
        let mut after = lock(&self.minutes).last_seq;
        loop {
            let ticks = ui
                .shared
                .store
                .delivery_ticks(after, oldest * 60_000, TAIL_BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = ticks.last().map(|t| t.seq) else { break };
            let full = ticks.len() == TAIL_BATCH;
            {
                let mut m = lock(&self.minutes);
                for t in &ticks {
                    let minute = t.received_at_ms.div_euclid(60_000);
                    if minute >= oldest {
                        let key = format!("{} {}", t.source, t.topic);
                        *m.buckets.entry(minute).or_default().entry(key).or_default() += 1;
                    }
                }
                m.last_seq = Some(last);
            }
            after = Some(last);
            if !full {
                break;
            }
        }
        let mut m = lock(&self.minutes);
        m.buckets = m.buckets.split_off(&oldest);
        Ok(())
    }
}

/// Renews slow snapshots while the console is watched (see the module's docs for how often) and follows
/// the log's tail every [`EVERY`]; ends with the console.
async fn renew_while_watched(ui: Weak<Ui>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(ui) = ui.upgrade() else { return };
        let pulse = &ui.pulse;
        let watched = crate::outbox::now_ms() - pulse.watched_ms.load(Ordering::Relaxed);
        if watched >= WATCHED.as_millis() as i64 {
            continue;
        }
        let held = lock(&pulse.snapshot).clone();
        let Some(held) = held.filter(|s| s.took >= QUICK) else { continue };
        let age = Duration::from_millis((crate::outbox::now_ms() - held.taken_ms).max(0) as u64);
        let result = if age >= EVERY.max(held.took * COST_SHARE) {
            pulse.renew(&ui).await.map(|_| ())
        } else {
            let _one = pulse.renewing.lock().await;
            pulse.follow_log(&ui).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "the console's overview could not count the store");
        }
    }
}
