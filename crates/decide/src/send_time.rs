//! The best hour to send, per customer and channel, in the customer's time zone; the channel they engage
//! with most; and their preferred product category.
//!
//! **Data.** The state counts human engagement (opens without machine opens, and clicks) per channel
//! (`email`, `sms`, `push`) and UTC hour of day (`EngagementState::channel_hours`).
//!
//! **Time zone.** Counts are turned into local hours by shifting them by the customer's offset rounded
//! to whole hours (half hours round away from zero: +5:30 shifts by 6). The offset is, in this order:
//! the customer's `utc_offset_minutes` (the newest storefront event that named a time zone), else the
//! store offset the fitted version recorded (`models.store_utc_offset_minutes` when it was fitted), else
//! (the rules fallback, which has no configuration) UTC. The explanation names which one was used.
//!
//! **Shrinkage.** A customer's local-hour distribution is the posterior mean of a Dirichlet-multinomial:
//! `θ_h = (n_h + α·π_h) / (N + α)`, where `n_h` are the customer's counts, `N` their sum, and `π` the
//! prior: the customer's segment distribution (the device class the customer was first seen on, itself
//! shrunk toward the population with [`SEGMENT_PRIOR_STRENGTH`] pseudo-counts) or, without a device or
//! segment table, the population's. The best hour is the mode of `θ` after a circular Gaussian smoothing
//! of `bandwidth` hours (an open at 9:55 and one at 11:05 are evidence for the same slot). The strength
//! `α` and the bandwidth are chosen from the data (empirical Bayes by leave-one-out): on the training
//! customers with two or more engagements, each engagement is held out in turn, and the pair of
//! [`STRENGTH_GRID`] × [`BANDWIDTH_GRID`] whose best hour from the others lands within two hours of the
//! held-out one most often wins. With thin data the prior's peak wins; with many opens the customer's own.

use crate::serve::StateModel;
use crate::{DecideError, families, names};
use nudge_model::{Score, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The channels a best hour is learned for.
pub const CHANNELS: [&str; 3] = ["email", "sms", "push"];
/// The rules fallback's hour (local) for a customer with no human engagement on the channel.
pub const DEFAULT_SEND_HOUR: usize = 10;
/// Pseudo-counts with which a segment's hour distribution is shrunk toward the population's.
pub const SEGMENT_PRIOR_STRENGTH: f64 = 24.0;
/// The Dirichlet strength and the smoothing bandwidth used when a fit has too few customers to choose them.
pub const DEFAULT_STRENGTH: f64 = 4.0;
pub const DEFAULT_BANDWIDTH: f64 = 2.0;
/// The rules fallback's smoothing bandwidth (hours).
pub const RULES_BANDWIDTH: f64 = 1.5;
/// The strengths and bandwidths a fit chooses among.
pub const STRENGTH_GRID: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
pub const BANDWIDTH_GRID: [f64; 9] = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0];
/// The rules fallback's version label.
pub const RULES_VERSION: &str = "rules-send-time-v1";
/// The model id on the scores.
pub const MODEL_ID: &str = "send_time";

/// A distribution over the 24 hours of the day.
pub type Hours = [f64; 24];

/// The score name of one channel's best hour: `best_send_hour_email`.
pub fn channel_score_name(channel: &str) -> String {
    format!("{}_{channel}", names::BEST_SEND_HOUR)
}

/// The hour shift (local = UTC + shift) of an offset in minutes, rounded half away from zero.
pub fn hour_shift(offset_minutes: i16) -> i32 {
    (f64::from(offset_minutes) / 60.0).round() as i32
}

/// UTC hour counts turned into local hours.
pub fn to_local(utc: &[u32; 24], shift: i32) -> [f64; 24] {
    let mut out = [0.0; 24];
    for (h, n) in utc.iter().enumerate() {
        out[(h as i32 + shift).rem_euclid(24) as usize] += f64::from(*n);
    }
    out
}

/// The mode of a distribution after circular smoothing (¼, ½, ¼); ties go to the earliest hour.
pub fn smoothed_mode(p: &Hours, bandwidth: f64) -> usize {
    mode(&smooth(p, bandwidth))
}

/// The circular Gaussian kernel with `bandwidth` hours (sd), by hour distance 0..23.
pub fn kernel(bandwidth: f64) -> Hours {
    let mut k = [0.0; 24];
    for (d, w) in k.iter_mut().enumerate() {
        let d = d.min(24 - d) as f64;
        *w = if bandwidth > 0.0 {
            (-d * d / (2.0 * bandwidth * bandwidth)).exp()
        } else {
            f64::from(u8::from(d == 0.0))
        };
    }
    k
}

/// `p` smoothed with the circular Gaussian kernel of `bandwidth` hours.
pub fn smooth(p: &Hours, bandwidth: f64) -> Hours {
    let k = kernel(bandwidth);
    let mut out = [0.0; 24];
    for (h, o) in out.iter_mut().enumerate() {
        *o = (0..24).map(|j| k[(j + 24 - h) % 24] * p[j]).sum();
    }
    out
}

/// The first hour of the largest value.
pub fn mode(p: &Hours) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (h, v) in p.iter().enumerate() {
        if *v > best.1 + 1e-12 {
            best = (h, *v);
        }
    }
    best.0
}

/// The Dirichlet-multinomial posterior mean `(n + α·π) / (N + α)`.
pub fn posterior(counts: &Hours, prior: &Hours, strength: f64) -> Hours {
    let n: f64 = counts.iter().sum();
    let mut out = [0.0; 24];
    for h in 0..24 {
        out[h] = (counts[h] + strength * prior[h]) / (n + strength);
    }
    out
}

/// Normalised counts shrunk toward `toward` with `pseudo` pseudo-counts (`toward` itself when empty).
fn shrink(counts: &Hours, toward: &Hours, pseudo: f64) -> Hours {
    posterior(counts, toward, pseudo)
}

/// Where a customer's offset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSource {
    Customer,
    Store,
    Utc,
}

/// The customer's local-hour shift and its source, given the store offset (`None`: UTC).
pub fn customer_shift(state: &CustomerState, store_offset: Option<i16>) -> (i32, OffsetSource) {
    match (state.utc_offset_minutes, store_offset) {
        (Some(o), _) => (hour_shift(o), OffsetSource::Customer),
        (None, Some(o)) => (hour_shift(o), OffsetSource::Store),
        (None, None) => (0, OffsetSource::Utc),
    }
}

fn describe_offset(shift: i32, source: OffsetSource) -> String {
    match source {
        OffsetSource::Customer => format!("customer's time zone (UTC{shift:+})"),
        OffsetSource::Store => format!("customer's time zone unknown, store offset UTC{shift:+}"),
        OffsetSource::Utc => "customer's time zone unknown and no store offset: UTC".into(),
    }
}

/// The customer's human engagement per channel in local hours, for channels with any.
pub fn local_channel_counts(state: &CustomerState, shift: i32) -> BTreeMap<String, Hours> {
    state
        .engagement
        .channel_hours
        .iter()
        .filter(|(_, h)| h.iter().any(|n| *n > 0))
        .map(|(c, h)| (c.clone(), to_local(h, shift)))
        .collect()
}

/// The channel with the most human engagement, when at least two channels have any (ties: the order of
/// [`CHANNELS`], then by name). A customer engaged on one channel only gets none: there is no choice.
pub fn best_channel(counts: &BTreeMap<String, Hours>) -> Option<(String, f64)> {
    if counts.len() < 2 {
        return None;
    }
    let rank = |c: &str| CHANNELS.iter().position(|k| *k == c).unwrap_or(CHANNELS.len());
    counts
        .iter()
        .map(|(c, h)| (c, h.iter().sum::<f64>()))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(rank(b.0).cmp(&rank(a.0))).then(b.0.cmp(a.0)))
        .map(|(c, n)| (c.clone(), n))
}

fn add_score(out: &mut ScoreSet, name: &str, value: f64, version: &str, explanation: String) {
    out.scores.retain(|s| s.name != name);
    out.scores.push(Score {
        name: name.to_string(),
        value,
        model_id: MODEL_ID.into(),
        model_version: version.into(),
        explanation,
    });
}

/// The `preferred_category` and `best_channel` labels, from the state alone (both served by the send-time
/// family, fitted or rules: neither has parameters to fit).
fn add_labels(state: &CustomerState, now: Timestamp, counts: &BTreeMap<String, Hours>, out: &mut ScoreSet) {
    if let Some((c, _)) = best_channel(counts) {
        out.labels.insert(names::BEST_CHANNEL.into(), c);
    }
    if let Some((c, _)) = state.preferred_category(now) {
        out.labels.insert(names::PREFERRED_CATEGORY.into(), c);
    }
}

/// The labelled rules fallback: per channel, the customer's own most frequent local hour (smoothed as
/// the fitted model does) when they have any human engagement on it, else [`DEFAULT_SEND_HOUR`] (10:00
/// local). `best_send_hour` is the best channel's hour (email's when there is no best channel).
pub struct RulesSendTime;

impl RulesSendTime {
    fn hour(counts: Option<&Hours>) -> (usize, String) {
        match counts {
            Some(c) => {
                let n: f64 = c.iter().sum();
                (
                    smoothed_mode(c, RULES_BANDWIDTH),
                    format!("the most frequent hour of the customer's {n:.0} human opens and clicks"),
                )
            }
            None => {
                (DEFAULT_SEND_HOUR, format!("no opens or clicks: the fixed default {DEFAULT_SEND_HOUR}:00"))
            }
        }
    }
}

impl StateModel for RulesSendTime {
    fn family(&self) -> &'static str {
        families::SEND_TIME
    }
    fn version(&self) -> &str {
        RULES_VERSION
    }
    fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        let (shift, source) = customer_shift(state, None);
        let counts = local_channel_counts(state, shift);
        let tz = describe_offset(shift, source);
        for (c, h) in &counts {
            let (hour, why) = Self::hour(Some(h));
            add_score(out, &channel_score_name(c), hour as f64, RULES_VERSION, format!("{c}: {why}; {tz}"));
        }
        let main = best_channel(&counts)
            .map(|(c, _)| c)
            .unwrap_or_else(|| counts.keys().next().cloned().unwrap_or_else(|| "email".to_string()));
        let (hour, why) = Self::hour(counts.get(&main));
        add_score(out, names::BEST_SEND_HOUR, hour as f64, RULES_VERSION, format!("{main}: {why}; {tz}"));
        add_labels(state, now, &counts, out);
    }
}

/// The priors of one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelPrior {
    /// The population's local-hour distribution.
    pub population: Vec<f64>,
    /// Per segment (device class), the segment's distribution shrunk toward the population.
    pub segments: BTreeMap<String, Vec<f64>>,
    /// The Dirichlet strength α (pseudo-counts) of a customer's distribution.
    pub strength: f64,
    /// The circular Gaussian smoothing (sd, hours) applied before taking the mode.
    pub bandwidth: f64,
    /// Customers and human engagements it was fitted on.
    pub customers: u64,
    pub engagements: u64,
}

impl ChannelPrior {
    fn population(&self) -> Hours {
        to_hours(&self.population)
    }
    fn prior_for(&self, segment: Option<&str>) -> (Hours, String) {
        match segment.and_then(|s| self.segments.get(s).map(|p| (s, p))) {
            Some((s, p)) => (to_hours(p), format!("the {s} segment's hours")),
            None => (self.population(), "the population's hours".into()),
        }
    }
}

fn to_hours(v: &[f64]) -> Hours {
    let mut out = [0.0; 24];
    for (o, x) in out.iter_mut().zip(v) {
        *o = *x;
    }
    out
}

/// The fitted send-time model (registry family `send_time`).
#[derive(Debug, Clone, PartialEq)]
pub struct SendTimeModel {
    pub version_id: String,
    pub body: SendTimeBody,
    /// Per channel, the kernel and the priors smoothed with it (computed once: serving then smooths only
    /// the customer's non-zero hours).
    smoothed: BTreeMap<String, Smoothed>,
}

#[derive(Debug, Clone, PartialEq)]
struct Smoothed {
    kernel: Hours,
    population: Hours,
    segments: BTreeMap<String, Hours>,
}

/// What a `send_time` version stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendTimeBody {
    /// Per channel, the priors.
    pub channels: BTreeMap<String, ChannelPrior>,
    /// The store's offset from UTC in minutes, for customers whose own is unknown (`None`: UTC).
    #[serde(default)]
    pub store_utc_offset_minutes: Option<i16>,
    /// The features the model reads.
    pub features: Vec<String>,
    /// The first and last engagement day counted (`YYYY-MM-DD`), when known.
    pub training_window: Value,
    /// sha-256 of the training counts.
    pub data_digest: String,
    /// Holdout metrics and the sufficiency verdict.
    pub metrics: Value,
    pub sufficiency: Value,
}

impl SendTimeModel {
    /// Reads a registry version's body.
    pub fn from_body(version_id: &str, body: &Value) -> Result<SendTimeModel, DecideError> {
        let body: SendTimeBody =
            serde_json::from_value(body.clone()).map_err(|e| DecideError::Body(format!("send_time: {e}")))?;
        for (c, p) in &body.channels {
            let ok = |v: &[f64]| v.len() == 24 && v.iter().all(|x| x.is_finite() && *x >= 0.0);
            if !ok(&p.population)
                || !p.segments.values().all(|s| ok(s))
                || p.strength.is_nan()
                || p.strength <= 0.0
                || p.bandwidth.is_nan()
                || p.bandwidth < 0.0
            {
                return Err(DecideError::Body(format!("send_time: channel {c} has a malformed prior")));
            }
        }
        if body.channels.is_empty() {
            return Err(DecideError::Body("send_time: no channel priors".into()));
        }
        Ok(SendTimeModel::new(version_id, body))
    }

    /// A model from a fitted body (what [`SendTimeModel::from_body`] returns after checking it).
    pub fn new(version_id: &str, body: SendTimeBody) -> SendTimeModel {
        let smoothed = body
            .channels
            .iter()
            .map(|(c, p)| {
                let sm = |v: &[f64]| smooth(&to_hours(v), p.bandwidth);
                let s = Smoothed {
                    kernel: kernel(p.bandwidth),
                    population: sm(&p.population),
                    segments: p.segments.iter().map(|(k, v)| (k.clone(), sm(v))).collect(),
                };
                (c.clone(), s)
            })
            .collect();
        SendTimeModel { version_id: version_id.to_string(), body, smoothed }
    }

    pub fn to_body(&self) -> Value {
        serde_json::to_value(&self.body).unwrap_or(Value::Null)
    }

    /// One channel's best local hour for the customer, with why.
    pub fn channel_hour(
        &self,
        channel: &str,
        counts: Option<&Hours>,
        segment: Option<&str>,
    ) -> Option<(usize, String)> {
        let prior = self.body.channels.get(channel)?;
        let seg = segment.filter(|s| prior.segments.contains_key(*s));
        let (hour, n) = self.best_hour(channel, counts, seg)?;
        let from =
            seg.map_or_else(|| "the population's hours".to_string(), |s| format!("the {s} segment's hours"));
        let why = if n > 0.0 {
            format!(
                "{n:.0} human opens and clicks shrunk toward {from} (strength {:.1}, smoothing {:.1} h)",
                prior.strength, prior.bandwidth
            )
        } else {
            format!("no opens or clicks yet: the peak of {from}")
        };
        Some((hour, why))
    }

    /// The lookup alone: one channel's best local hour for local-hour `counts` and the customer's segment,
    /// with the number of engagements it rests on; `None` when the version has no prior for the channel.
    pub fn best_hour(
        &self,
        channel: &str,
        counts: Option<&Hours>,
        segment: Option<&str>,
    ) -> Option<(usize, f64)> {
        let strength = self.body.channels.get(channel)?.strength;
        let sm = self.smoothed.get(channel)?;
        // The mode of smooth((n + α·π) / (N + α)) is that of smooth(n) + α·smooth(π): smoothing is linear.
        let sp = segment.and_then(|s| sm.segments.get(s)).unwrap_or(&sm.population);
        let mut theta = [0.0; 24];
        for (t, p) in theta.iter_mut().zip(sp) {
            *t = strength * p;
        }
        let mut n = 0.0;
        for (h, c) in counts.into_iter().flat_map(|c| c.iter().enumerate()).filter(|(_, c)| **c > 0.0) {
            n += c;
            for (j, t) in theta.iter_mut().enumerate() {
                *t += c * sm.kernel[(j + 24 - h) % 24];
            }
        }
        Some((mode(&theta), n))
    }
}

impl StateModel for SendTimeModel {
    fn family(&self) -> &'static str {
        families::SEND_TIME
    }
    fn version(&self) -> &str {
        &self.version_id
    }
    fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        let (shift, source) = customer_shift(state, self.body.store_utc_offset_minutes);
        let counts = local_channel_counts(state, shift);
        let tz = describe_offset(shift, source);
        let segment = state.acquisition.as_ref().and_then(|a| a.device.as_deref());
        let main = best_channel(&counts)
            .map(|(c, _)| c)
            .unwrap_or_else(|| counts.keys().next().cloned().unwrap_or_else(|| "email".to_string()));
        let answer = |c: &str| match self.channel_hour(c, counts.get(c), segment) {
            Some((h, why)) => (h, self.version_id.as_str(), format!("{c}: {why}; {tz}")),
            None => {
                let (h, why) = RulesSendTime::hour(counts.get(c));
                (h, RULES_VERSION, format!("{c}: the version has no {c} prior, rules: {why}; {tz}"))
            }
        };
        let mut best = None;
        for c in counts.keys() {
            let (h, version, why) = answer(c);
            if *c == main {
                best = Some((h, version, why.clone()));
            }
            add_score(out, &channel_score_name(c), h as f64, version, why);
        }
        let (h, version, why) = best.unwrap_or_else(|| answer(&main));
        add_score(out, names::BEST_SEND_HOUR, h as f64, version, why);
        add_labels(state, now, &counts, out);
    }
}

/// What a fit needs and does.
#[derive(Debug, Clone, PartialEq)]
pub struct SendTimeFitOptions {
    /// The store's offset for customers whose own is unknown.
    pub store_utc_offset_minutes: Option<i16>,
    /// Customers with human engagement needed (the sufficiency gate).
    pub min_customers: usize,
    /// Human engagements needed in all (the sufficiency gate).
    pub min_engagements: u64,
    /// Share of customers (by a hash of their id) held out for the metric.
    pub holdout_share: f64,
}

impl Default for SendTimeFitOptions {
    fn default() -> Self {
        SendTimeFitOptions {
            store_utc_offset_minutes: None,
            min_customers: 30,
            min_engagements: 200,
            holdout_share: 0.2,
        }
    }
}

/// Whether a customer is in the holdout: a stable hash of their id below the share.
pub fn in_holdout(customer: &str, share: f64) -> bool {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(customer.as_bytes());
    let x = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    f64::from(x) / f64::from(u32::MAX) < share
}

struct Row {
    segment: Option<String>,
    counts: Hours,
}

fn fit_channel(rows: &[&Row]) -> ChannelPrior {
    let mut pop = [1.0 / 24.0; 24]; // one pseudo-count spread over the day: no hour has zero mass
    let mut seg_counts: BTreeMap<&str, Hours> = BTreeMap::new();
    let mut engagements = 0.0;
    for r in rows {
        for (p, c) in pop.iter_mut().zip(&r.counts) {
            *p += c;
        }
        engagements += r.counts.iter().sum::<f64>();
        if let Some(s) = r.segment.as_deref() {
            let e = seg_counts.entry(s).or_insert([0.0; 24]);
            for (x, c) in e.iter_mut().zip(&r.counts) {
                *x += c;
            }
        }
    }
    let total: f64 = pop.iter().sum();
    pop.iter_mut().for_each(|x| *x /= total);
    let segments: BTreeMap<String, Hours> = seg_counts
        .into_iter()
        .map(|(s, c)| (s.to_string(), shrink(&c, &pop, SEGMENT_PRIOR_STRENGTH)))
        .collect();
    // α and the bandwidth: the pair whose leave-one-out best hour falls within two hours of the held-out
    // engagement most often (customers with at least two engagements).
    let (strength, bandwidth) = if rows.len() >= 10 {
        choose_strength_and_bandwidth(rows, &pop, &segments)
    } else {
        (DEFAULT_STRENGTH, DEFAULT_BANDWIDTH)
    };
    ChannelPrior {
        population: pop.to_vec(),
        segments: segments.into_iter().map(|(s, p)| (s, p.to_vec())).collect(),
        strength,
        bandwidth,
        customers: rows.len() as u64,
        engagements: engagements as u64,
    }
}

/// Whether hour `a` is within two hours of `b` on the clock (what the fit's choice of strength and
/// bandwidth counts as a hit: a five-hour slot).
fn within_two_hours(a: usize, b: usize) -> bool {
    let d = (a as i32 - b as i32).rem_euclid(24);
    d <= 2 || d >= 22
}

/// Whether hour `a` is within one hour of `b` on the clock.
fn near(a: usize, b: usize) -> bool {
    let d = (a as i32 - b as i32).rem_euclid(24);
    d <= 1 || d == 23
}

/// The (strength, bandwidth) of the grids with the most leave-one-out hits within two hours (ties: the smaller bandwidth,
/// then the smaller strength). Smoothing is linear, so each customer's smoothed counts and prior are
/// computed once per bandwidth and each held-out engagement removes its kernel.
fn choose_strength_and_bandwidth(
    rows: &[&Row],
    pop: &Hours,
    segments: &BTreeMap<String, Hours>,
) -> (f64, f64) {
    let mut hits = vec![[0.0f64; STRENGTH_GRID.len()]; BANDWIDTH_GRID.len()];
    for r in rows {
        let n: f64 = r.counts.iter().sum();
        if n < 2.0 {
            continue;
        }
        let prior = r.segment.as_deref().and_then(|s| segments.get(s)).unwrap_or(pop);
        for (bi, bw) in BANDWIDTH_GRID.iter().enumerate() {
            let k = kernel(*bw);
            let (sn, sp) = (smooth(&r.counts, *bw), smooth(prior, *bw));
            for h in 0..24 {
                let c = r.counts[h];
                if c <= 0.0 {
                    continue;
                }
                for (ai, a) in STRENGTH_GRID.iter().enumerate() {
                    let mut theta = [0.0; 24];
                    for (j, t) in theta.iter_mut().enumerate() {
                        *t = sn[j] - k[(j + 24 - h) % 24] + a * sp[j];
                    }
                    if within_two_hours(mode(&theta), h) {
                        hits[bi][ai] += c;
                    }
                }
            }
        }
    }
    let mut best = (DEFAULT_STRENGTH, DEFAULT_BANDWIDTH, f64::NEG_INFINITY);
    for (bi, bw) in BANDWIDTH_GRID.iter().enumerate() {
        for (ai, a) in STRENGTH_GRID.iter().enumerate() {
            if hits[bi][ai] > best.2 {
                best = (*a, *bw, hits[bi][ai]);
            }
        }
    }
    (best.0, best.1)
}

/// Leave-one-out over a customer's counts: for each engagement, the posterior from the others. Adds to
/// (log-likelihood, hits within ±1 hour, n) for the model and for the population prior alone.
fn loo(counts: &Hours, prior: &Hours, pop: &Hours, (strength, bandwidth): (f64, f64), acc: &mut [f64; 5]) {
    let mut c = *counts;
    for h in 0..24 {
        let n = counts[h];
        if n <= 0.0 {
            continue;
        }
        c[h] -= 1.0;
        let theta = posterior(&c, prior, strength);
        let m = smoothed_mode(&theta, bandwidth);
        let pm = smoothed_mode(pop, bandwidth);
        acc[0] += n * theta[h].ln();
        acc[1] += n * pop[h].ln();
        acc[2] += n * f64::from(u8::from(near(m, h)));
        acc[3] += n * f64::from(u8::from(near(pm, h)));
        acc[4] += n;
        c[h] += 1.0;
    }
}

/// Fits the priors on customer states. The metric: customers in the holdout (a hash of their id) are left
/// out of the priors; each of their engagements is predicted from their others (leave-one-out): the mean
/// log-likelihood of its hour and the share within ±1 hour of the predicted best hour, against the
/// population prior alone.
pub fn fit(states: &[&CustomerState], opts: &SendTimeFitOptions) -> Result<SendTimeBody, DecideError> {
    if !(0.0..1.0).contains(&opts.holdout_share) {
        return Err(DecideError::Input(format!("holdout share {} is not in [0, 1)", opts.holdout_share)));
    }
    let mut train: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut test: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut customers = 0usize;
    let mut engagements = 0u64;
    let mut digest = sha2::Sha256::default();
    let mut days = (i32::MAX, i32::MIN);
    for s in states {
        let (shift, _) = customer_shift(s, opts.store_utc_offset_minutes);
        let counts = local_channel_counts(s, shift);
        if counts.is_empty() {
            continue;
        }
        customers += 1;
        if let (Some(a), Some(b)) = (s.engagement.days.keys().next(), s.engagement.days.keys().next_back()) {
            days = (days.0.min(*a), days.1.max(*b));
        }
        let id = s.customer.to_string();
        let holdout = in_holdout(&id, opts.holdout_share);
        use sha2::Digest;
        digest.update(id.as_bytes());
        for (c, h) in counts {
            digest.update(c.as_bytes());
            for x in h {
                digest.update((x as u32).to_le_bytes());
            }
            engagements += h.iter().sum::<f64>() as u64;
            let row = Row { segment: s.acquisition.as_ref().and_then(|a| a.device.clone()), counts: h };
            if holdout { test.entry(c).or_default().push(row) } else { train.entry(c).or_default().push(row) }
        }
    }
    let ok = customers >= opts.min_customers && engagements >= opts.min_engagements;
    let reason = if ok {
        Value::Null
    } else {
        json!(format!(
            "{customers} customers with human engagement ({} needed) and {engagements} opens and clicks ({} needed)",
            opts.min_customers, opts.min_engagements
        ))
    };
    if train.is_empty() {
        return Err(DecideError::Insufficient(format!(
            "no customer outside the holdout has human opens or clicks ({customers} with any)"
        )));
    }
    let mut channels = BTreeMap::new();
    let mut metrics = serde_json::Map::new();
    for (c, rows) in &train {
        let refs: Vec<&Row> = rows.iter().collect();
        let prior = fit_channel(&refs);
        let pop = prior.population();
        let mut acc = [0.0; 5];
        for r in test.get(c).map(Vec::as_slice).unwrap_or_default() {
            let (pi, _) = prior.prior_for(r.segment.as_deref());
            loo(&r.counts, &pi, &pop, (prior.strength, prior.bandwidth), &mut acc);
        }
        let n = acc[4];
        metrics.insert(
            c.clone(),
            json!({
                "holdout_engagements": n,
                "log_likelihood_per_engagement": (n > 0.0).then(|| acc[0] / n),
                "population_log_likelihood_per_engagement": (n > 0.0).then(|| acc[1] / n),
                "hit_rate_within_1h": (n > 0.0).then(|| acc[2] / n),
                "population_hit_rate_within_1h": (n > 0.0).then(|| acc[3] / n),
            }),
        );
        channels.insert(c.clone(), prior);
    }
    use sha2::Digest;
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let day = |d: i32| {
        time::Date::from_julian_day(d + time::macros::date!(1970 - 01 - 01).to_julian_day())
            .map(|d| d.to_string())
            .ok()
    };
    Ok(SendTimeBody {
        channels,
        store_utc_offset_minutes: opts.store_utc_offset_minutes,
        features: vec![
            "engagement.channel_hours".into(),
            "utc_offset_minutes".into(),
            "acquisition.device".into(),
        ],
        training_window: if days.0 <= days.1 {
            json!({"first_day": day(days.0), "last_day": day(days.1)})
        } else {
            Value::Null
        },
        data_digest: hex,
        metrics: Value::Object(metrics),
        sufficiency: json!({"ok": ok, "reason": reason, "customers": customers, "engagements": engagements,
            "min_customers": opts.min_customers, "min_engagements": opts.min_engagements}),
    })
}
