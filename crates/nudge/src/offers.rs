//! What the offer bandits learn, and from what: the offer log. Each settled offer (an order within its
//! window, or the window passing without one) is folded into its flow's learner exactly once, in
//! settlement order; after a restart the whole log is folded again, so nothing learned is lost and no
//! outcome counts twice. The policy decides on a snapshot, swapped whole after each sync.

use nudge_decide::bandit::{Learner, LoggedOutcome};
use nudge_policy::flows::FlowSet;
use nudge_policy::offers::Learners;
use nudge_store::{LoggedOffer, Store, StoreError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Settled offers read per store round trip while syncing.
const SYNC_PAGE: usize = 10_000;

/// The learners of every offer flow and how far into the offer log they have read.
pub struct OfferLearning {
    learners: RwLock<Arc<Learners>>,
    progress: Mutex<Progress>,
    /// At most one sync per interval from [`OfferLearning::maybe_sync`].
    pub sync_every: Duration,
}

struct Progress {
    /// The last `settle_seq` folded in.
    cursor: i64,
    last_sync: Option<Instant>,
}

impl Default for OfferLearning {
    fn default() -> Self {
        OfferLearning {
            learners: RwLock::new(Arc::new(Learners::new())),
            progress: Mutex::new(Progress { cursor: 0, last_sync: None }),
            sync_every: Duration::from_secs(1),
        }
    }
}

impl OfferLearning {
    /// The learners as of the last sync.
    pub fn snapshot(&self) -> Arc<Learners> {
        self.learners.read().expect("learners lock").clone()
    }

    /// [`OfferLearning::sync`] unless one ran within `sync_every`.
    pub async fn maybe_sync(&self, store: &dyn Store, flows: &FlowSet) -> Result<Arc<Learners>, StoreError> {
        let due = self
            .progress
            .lock()
            .expect("offer progress lock")
            .last_sync
            .is_none_or(|t| t.elapsed() >= self.sync_every);
        if due { self.sync(store, flows).await } else { Ok(self.snapshot()) }
    }

    /// Settles the offers whose window has passed (at zero), then folds every settlement not yet read
    /// into the learner of its flow. A flow whose arms or policy changed (or a new offer flow) starts
    /// every learner again from its prior and the log's beginning. Returns the new snapshot.
    pub async fn sync(&self, store: &dyn Store, flows: &FlowSet) -> Result<Arc<Learners>, StoreError> {
        let now_ms = crate::pipeline::ts_to_ms(time::OffsetDateTime::now_utc());
        store.expire_offers(now_ms).await?;
        let mut learners: Learners = (*self.snapshot()).clone();
        let mut cursor = self.progress.lock().expect("offer progress lock").cursor;
        let offer_flows: Vec<_> =
            flows.flows.iter().filter_map(|f| f.offer.as_ref().map(|o| (f.spec.name.clone(), o))).collect();
        let current = offer_flows.len() == learners.len()
            && offer_flows.iter().all(|(name, o)| {
                learners.get(name).is_some_and(|l| l.arms() == o.arms.as_slice() && l.policy() == o.policy)
            });
        if !current {
            learners = offer_flows.iter().map(|(name, o)| (name.clone(), o.prior.clone())).collect();
            cursor = 0;
        }
        loop {
            let page = store.settled_offers_after(cursor, SYNC_PAGE).await?;
            for row in &page {
                cursor = row.settle_seq.unwrap_or(cursor);
                if let Some(learner) = learners.get_mut(&row.flow) {
                    fold(learner, row);
                }
            }
            if page.len() < SYNC_PAGE {
                break;
            }
        }
        let snapshot = Arc::new(learners);
        *self.learners.write().expect("learners lock") = snapshot.clone();
        let mut p = self.progress.lock().expect("offer progress lock");
        p.cursor = cursor;
        p.last_sync = Some(Instant::now());
        Ok(snapshot)
    }
}

/// Folds one settled offer into its flow's learner: the reward is the settling order's value less the
/// arm's cost on it (0 when the window passed without an order). An open offer, an arm the flow no longer
/// has or a context of another shape teaches nothing (`None`).
pub fn fold(learner: &mut Learner, row: &LoggedOffer) -> Option<LoggedOutcome> {
    row.settle_seq?;
    let arm = learner.arms().iter().position(|a| a.name == row.arm)?;
    if row.context.len() != learner.dim() {
        return None;
    }
    let value = row.outcome_value.unwrap_or(0.0);
    let reward = value - learner.arms()[arm].cost(value);
    learner.update(arm, &row.context, reward);
    Some(LoggedOutcome {
        arm,
        context: row.context.clone(),
        reward,
        propensity: row.propensity,
        explored: row.explored,
    })
}
