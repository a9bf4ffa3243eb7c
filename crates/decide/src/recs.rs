//! Product recommendations from order history: which products to show a customer next.
//!
//! Three scorers over plain order data (customer, time, products):
//! - **popularity**: the share of baskets that hold the product;
//! - **own**: the customer's own purchase frequency, each order weighted by `0.5^(age / half-life)`;
//! - **item kNN**: each product's nearest neighbours by cosine similarity of basket co-occurrence
//!   (`c_ij / sqrt(n_i · n_j)`, pairs seen in at least two baskets); a candidate's score is the sum over the
//!   customer's products of their own score times the similarity.
//!
//! The served score is a blend `w_own · own + w_knn · knn + w_pop · popularity` (each part divided by its
//! largest value for the customer, popularity by the largest overall), plus a vanishing popularity term that
//! breaks ties, so that every scorer back-fills with the best sellers. The weights are chosen on a validation
//! split: for up to [`FitOptions::validation_customers`] customers with two or more orders, the last order is
//! held out, the neighbours and popularity are fitted on everything else, and the weight pair (on a grid of
//! `w_own` in 0, 0.1, …, 1 with `w_knn = 1 − w_own`, and `w_pop` in 0, 0.05, 0.2) with the best NDCG@10 on the
//! held-out orders wins. The served neighbours and popularity are then fitted on all orders.
//!
//! Merchandiser rules ([`RecsConfig`]) are applied after scoring, in [`RecsModel::recommend`].

use crate::DecideError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// The body schema version of a `recs` model.
pub const BODY_SCHEMA: u32 = 1;
const DAY: f64 = 86_400.0;
const TIE_BREAK: f64 = 1e-6;

/// One order: who, when (Unix seconds) and which products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basket {
    pub customer: String,
    pub at: i64,
    pub products: Vec<String>,
}

/// What the rules need to know about a product.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub tags: Vec<String>,
    pub available: bool,
}

// ------------------------------------------------------------------------------------------------------
// Ranking metrics
// ------------------------------------------------------------------------------------------------------

/// NDCG@k with binary relevance: `DCG = Σ_{rank r ≤ k, item relevant} 1 / log2(r + 1)` divided by the DCG of
/// an ideal list (`min(k, |relevant|)` relevant items first). `None` when nothing is relevant.
pub fn ndcg_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> Option<f64> {
    if relevant.is_empty() || k == 0 {
        return None;
    }
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, x)| relevant.contains(x))
        .map(|(r, _)| 1.0 / ((r + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..k.min(relevant.len())).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    Some(dcg / ideal)
}

/// Recall@k: the share of the relevant items among the first k ranked. `None` when nothing is relevant.
pub fn recall_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> Option<f64> {
    if relevant.is_empty() {
        return None;
    }
    let hits = ranked.iter().take(k).filter(|x| relevant.contains(x)).count();
    Some(hits as f64 / relevant.len() as f64)
}

// ------------------------------------------------------------------------------------------------------
// Merchandiser rules
// ------------------------------------------------------------------------------------------------------

/// A pinned product: shown first to everyone, or only to customers in `segment` (a segment name such as
/// `vip`, or `category:NAME` for customers whose preferred category is NAME).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub product: String,
    #[serde(default)]
    pub segment: Option<String>,
}

/// The `[recs]` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecsConfig {
    /// How many products to recommend (1–20; 5 by default).
    pub count: usize,
    /// How much order history the model is fitted on: `Nd` or `Nw` (`"365d"` by default).
    pub lookback: String,
    /// Never recommend a product the customer bought in the last N days, unless it carries a consumable tag.
    pub exclude_recent_days: u32,
    /// Tags of products that are bought again and again (coffee, filters), exempt from the rule above.
    pub consumable_tags: Vec<String>,
    /// Products shown first (in this order), for everyone or for one segment.
    pub pins: Vec<Pin>,
    /// Never recommended: product ids, or `tag:NAME` for every product with that tag.
    pub exclude: Vec<String>,
    /// At most this many products of one brand (0: no cap; 2 by default).
    pub max_per_brand: usize,
}

impl Default for RecsConfig {
    fn default() -> Self {
        RecsConfig {
            count: 5,
            lookback: "365d".into(),
            exclude_recent_days: 30,
            consumable_tags: vec!["consumable".into()],
            pins: Vec::new(),
            exclude: Vec::new(),
            max_per_brand: 2,
        }
    }
}

/// Reads `Nd` or `Nw` as days.
fn parse_days(s: &str) -> Option<u32> {
    let s = s.trim();
    let (n, mult) = if let Some(n) = s.strip_suffix('d') {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('w') {
        (n, 7)
    } else {
        return None;
    };
    n.parse::<u32>().ok().filter(|&n| n > 0).and_then(|n| n.checked_mul(mult))
}

impl RecsConfig {
    /// Every value that is out of range, each naming its key (`recs.count: …`).
    pub fn check(&self) -> Result<(), DecideError> {
        let mut bad = Vec::new();
        if !(1..=20).contains(&self.count) {
            bad.push(format!("recs.count: {} is not between 1 and 20", self.count));
        }
        if parse_days(&self.lookback).is_none() {
            bad.push(format!(
                "recs.lookback: {:?} is not a positive number of days (\"365d\") or weeks (\"52w\")",
                self.lookback
            ));
        }
        if let Some(t) = self.consumable_tags.iter().find(|t| t.trim().is_empty()) {
            bad.push(format!("recs.consumable_tags: {t:?} is an empty tag"));
        }
        for (i, p) in self.pins.iter().enumerate() {
            if p.product.trim().is_empty() {
                bad.push(format!("recs.pins[{i}].product: is empty"));
            }
            if let Some(s) = &p.segment
                && (s.trim().is_empty() || s.strip_prefix("category:").is_some_and(|c| c.trim().is_empty()))
            {
                bad.push(format!("recs.pins[{i}].segment: {s:?} names no segment or category"));
            }
        }
        for (i, e) in self.exclude.iter().enumerate() {
            if e.trim().is_empty() || e.strip_prefix("tag:").is_some_and(|t| t.trim().is_empty()) {
                bad.push(format!("recs.exclude[{i}]: {e:?} names no product or tag"));
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(DecideError::Input(bad.join("; "))) }
    }

    /// The lookback in days (365 when it does not parse; [`RecsConfig::check`] reports that).
    pub fn lookback_days(&self) -> u32 {
        parse_days(&self.lookback).unwrap_or(365)
    }
}

/// The rules' view of the catalogue: product metadata by id. Products it does not know are never shown.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    by_id: HashMap<String, Product>,
}

impl Catalogue {
    pub fn new(products: &[Product]) -> Catalogue {
        Catalogue { by_id: products.iter().map(|p| (p.id.clone(), p.clone())).collect() }
    }
    pub fn get(&self, id: &str) -> Option<&Product> {
        self.by_id.get(id)
    }
    /// Adds or replaces one product (a catalogue update).
    pub fn insert(&mut self, product: Product) {
        self.by_id.insert(product.id.clone(), product);
    }
}

/// What [`RecsModel::recommend`] filters by: the config and the current catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub config: &'a RecsConfig,
    pub catalogue: &'a Catalogue,
}

/// The customer a list is made for: their orders and the segments pins may target (their segment name,
/// `category:NAME` for their preferred category).
#[derive(Debug, Clone, Copy)]
pub struct CustomerHistory<'a> {
    pub orders: &'a [Basket],
    pub segments: &'a [String],
}

/// Why a product is on the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "product")]
pub enum Reason {
    /// A merchandiser pin.
    Pinned,
    /// The customer bought it before.
    BoughtBefore,
    /// Often bought with this product, which the customer bought.
    BoughtWith(String),
    /// A best seller.
    Popular,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rec {
    pub product_id: String,
    pub score: f64,
    pub reason: Reason,
}

// ------------------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------------------

/// The blend weights (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlendWeights {
    pub own: f64,
    pub knn: f64,
    pub popularity: f64,
}

impl BlendWeights {
    pub const POPULARITY: BlendWeights = BlendWeights { own: 0.0, knn: 0.0, popularity: 1.0 };
    pub const OWN: BlendWeights = BlendWeights { own: 1.0, knn: 0.0, popularity: 0.0 };
    pub const KNN: BlendWeights = BlendWeights { own: 0.0, knn: 1.0, popularity: 0.0 };
}

/// What a fit needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// "Now" in Unix seconds (the newest order when `None`); orders older than `lookback_days` are dropped.
    pub now: Option<i64>,
    pub lookback_days: u32,
    /// Half-life of an order's weight in the own-frequency score.
    pub half_life_days: f64,
    /// Neighbours kept per product.
    pub neighbours: usize,
    /// Best sellers every list is back-filled from.
    pub popular_candidates: usize,
    /// Customers whose last order is held out to choose the weights (0: fixed weights 0.5/0.5/0).
    pub validation_customers: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            now: None,
            lookback_days: 365,
            half_life_days: 90.0,
            neighbours: 30,
            popular_candidates: 50,
            validation_customers: 2_000,
        }
    }
}

/// What a `recs` version stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecsBody {
    pub schema: u32,
    /// Product ids; every other table indexes into this list.
    pub products: Vec<String>,
    /// Share of baskets holding each product.
    pub popularity: Vec<f64>,
    /// The best sellers, most popular first.
    pub popular: Vec<u32>,
    /// Each product's neighbours: (product, cosine similarity), most similar first.
    pub neighbours: Vec<Vec<(u32, f32)>>,
    pub weights: BlendWeights,
    pub half_life_days: f64,
    pub training_window: Value,
    pub data_digest: String,
    pub metrics: Value,
}

/// The fitted recommendation model (registry family `recs`).
#[derive(Debug, Clone)]
pub struct RecsModel {
    pub body: RecsBody,
    index: HashMap<String, u32>,
    max_popularity: f64,
}

/// A customer's orders with products as model indices.
pub type IndexedHistory = [(i64, Vec<u32>)];

/// A candidate's unnormalised parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    pub item: u32,
    pub own: f64,
    pub knn: f64,
    pub popularity: f64,
    /// The history product that contributed most to `knn`.
    pub via: u32,
}

/// Candidates with parts already divided by their largest values.
#[derive(Debug, Clone, Default)]
pub struct Candidates(pub Vec<Parts>);

impl Candidates {
    /// The blended score of each candidate.
    pub fn score(&self, w: BlendWeights) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.0
            .iter()
            .map(move |p| (p.item, w.own * p.own + w.knn * p.knn + (w.popularity + TIE_BREAK) * p.popularity))
    }

    /// The k best items under these weights, best first (ties by item index).
    pub fn top(&self, w: BlendWeights, k: usize) -> Vec<u32> {
        let mut s: Vec<(u32, f64)> = self.score(w).collect();
        let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if s.len() > k && k > 0 {
            s.select_nth_unstable_by(k - 1, cmp);
            s.truncate(k);
        }
        s.sort_by(cmp);
        s.into_iter().take(k).map(|x| x.0).collect()
    }
}

/// Products in baskets as indices, each basket deduplicated.
struct Interned {
    products: Vec<String>,
    /// (customer, at, items), sorted by customer then time.
    baskets: Vec<(u32, i64, Vec<u32>)>,
}

fn intern(orders: &[Basket], products: &[Product], from: i64, to: i64) -> Interned {
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut names = Vec::new();
    let mut id = |s: &str, names: &mut Vec<String>| -> u32 {
        if let Some(&i) = index.get(s) {
            return i;
        }
        let i = names.len() as u32;
        names.push(s.to_string());
        index.insert(s.to_string(), i);
        i
    };
    for p in products {
        id(&p.id, &mut names);
    }
    let mut customers: HashMap<&str, u32> = HashMap::new();
    let mut baskets = Vec::with_capacity(orders.len());
    for o in orders.iter().filter(|o| o.at >= from && o.at <= to && !o.products.is_empty()) {
        let n = customers.len() as u32;
        let c = *customers.entry(o.customer.as_str()).or_insert(n);
        let mut items: Vec<u32> = o.products.iter().map(|p| id(p, &mut names)).collect();
        items.sort_unstable();
        items.dedup();
        baskets.push((c, o.at, items));
    }
    baskets.sort_by_key(|b| (b.0, b.1));
    Interned { products: names, baskets }
}

/// Popularity and neighbours from the baskets whose `keep` is true.
fn cooccurrence(
    n_items: usize,
    baskets: &[(u32, i64, Vec<u32>)],
    keep: &[bool],
    k: usize,
) -> (Vec<f64>, Vec<Vec<(u32, f32)>>) {
    let mut count = vec![0u32; n_items];
    let mut kept = 0usize;
    for (b, _) in baskets.iter().zip(keep).filter(|(_, k)| **k) {
        kept += 1;
        for &i in &b.2 {
            count[i as usize] += 1;
        }
    }
    // The kept baskets flattened (offsets into one item array), and the inverted index: for each item,
    // the kept baskets holding it.
    let mut off = Vec::with_capacity(kept + 1);
    let mut flat = Vec::new();
    off.push(0u32);
    for (b, _) in baskets.iter().zip(keep).filter(|(_, k)| **k) {
        flat.extend_from_slice(&b.2);
        off.push(flat.len() as u32);
    }
    let mut start = vec![0usize; n_items + 1];
    for i in 0..n_items {
        start[i + 1] = start[i] + count[i] as usize;
    }
    let mut fill = start.clone();
    let mut inv = vec![0u32; start[n_items]];
    for bi in 0..kept {
        for &i in &flat[off[bi] as usize..off[bi + 1] as usize] {
            inv[fill[i as usize]] = bi as u32;
            fill[i as usize] += 1;
        }
    }
    let mut acc = vec![0u32; n_items];
    let mut touched = Vec::new();
    let mut neighbours = Vec::with_capacity(n_items);
    for i in 0..n_items {
        for &bi in &inv[start[i]..start[i + 1]] {
            let bi = bi as usize;
            for &j in &flat[off[bi] as usize..off[bi + 1] as usize] {
                let a = &mut acc[j as usize];
                if *a == 0 {
                    touched.push(j);
                }
                *a += 1;
            }
        }
        acc[i] = 0;
        let ni = count[i] as f64;
        let mut row: Vec<(u32, f32)> = touched
            .iter()
            .filter(|&&j| acc[j as usize] >= 2)
            .map(|&j| (j, (acc[j as usize] as f64 / (ni * count[j as usize] as f64).sqrt()) as f32))
            .collect();
        for &j in &touched {
            acc[j as usize] = 0;
        }
        touched.clear();
        let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if row.len() > k && k > 0 {
            row.select_nth_unstable_by(k - 1, cmp);
        }
        row.truncate(k);
        row.sort_by(cmp);
        neighbours.push(row);
    }
    let pop = count.iter().map(|&c| c as f64 / kept.max(1) as f64).collect();
    (pop, neighbours)
}

fn popular_list(pop: &[f64], n: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..pop.len() as u32).filter(|&i| pop[i as usize] > 0.0).collect();
    idx.sort_by(|&a, &b| pop[b as usize].total_cmp(&pop[a as usize]).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// The scoring core, shared by the fitted model and the validation split.
struct Scorer<'a> {
    popularity: &'a [f64],
    max_popularity: f64,
    popular: &'a [u32],
    neighbours: &'a [Vec<(u32, f32)>],
    half_life_days: f64,
}

/// One product's running sums while a customer is scored.
#[derive(Debug, Clone, Copy)]
struct Slot {
    own: f64,
    knn: f64,
    best: f64,
    via: u32,
    seen: bool,
}

const EMPTY: Slot = Slot { own: 0.0, knn: 0.0, best: 0.0, via: u32::MAX, seen: false };

/// Per-product scratch space reused across customers (every slot is empty between calls).
#[derive(Debug, Default)]
struct Scratch {
    slots: Vec<Slot>,
    touched: Vec<u32>,
    history: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Scorer<'_> {
    fn candidates(&self, history: &IndexedHistory, now: i64) -> Candidates {
        SCRATCH.with(|s| self.candidates_in(&mut s.borrow_mut(), history, now))
    }

    fn candidates_in(&self, s: &mut Scratch, history: &IndexedHistory, now: i64) -> Candidates {
        let n = self.popularity.len();
        if s.slots.len() < n {
            s.slots.resize(n, EMPTY);
        }
        let Scratch { slots, touched, history: hist } = s;
        for (at, items) in history {
            let age = ((now - at) as f64 / DAY).max(0.0);
            let w = (-age / self.half_life_days).exp2();
            for &i in items {
                let Some(slot) = slots.get_mut(i as usize) else { continue };
                if !slot.seen {
                    slot.seen = true;
                    touched.push(i);
                    hist.push(i);
                }
                slot.own += w;
            }
        }
        for &j in hist.iter() {
            let wj = slots[j as usize].own;
            for &(c, sim) in &self.neighbours[j as usize] {
                let contrib = wj * sim as f64;
                let slot = &mut slots[c as usize];
                if !slot.seen {
                    slot.seen = true;
                    touched.push(c);
                }
                slot.knn += contrib;
                if contrib > slot.best || (contrib == slot.best && j < slot.via) {
                    slot.best = contrib;
                    slot.via = j;
                }
            }
        }
        for &c in self.popular {
            let slot = &mut slots[c as usize];
            if !slot.seen {
                slot.seen = true;
                touched.push(c);
            }
        }
        let mut v: Vec<Parts> = Vec::with_capacity(touched.len());
        let (mut max_own, mut max_knn) = (0.0f64, 0.0f64);
        for &c in touched.iter() {
            let slot = std::mem::replace(&mut slots[c as usize], EMPTY);
            max_own = max_own.max(slot.own);
            max_knn = max_knn.max(slot.knn);
            let pop = self.popularity[c as usize];
            v.push(Parts {
                item: c,
                own: slot.own,
                knn: slot.knn,
                popularity: if self.max_popularity > 0.0 { pop / self.max_popularity } else { 0.0 },
                via: slot.via,
            });
        }
        touched.clear();
        hist.clear();
        let (io, ik) = (
            if max_own > 0.0 { 1.0 / max_own } else { 0.0 },
            if max_knn > 0.0 { 1.0 / max_knn } else { 0.0 },
        );
        for p in &mut v {
            p.own *= io;
            p.knn *= ik;
        }
        Candidates(v)
    }
}

/// The weight grid searched on the validation split.
fn weight_grid() -> Vec<BlendWeights> {
    let mut g = Vec::new();
    for pop in [0.0, 0.05, 0.2] {
        for k in 0..=10 {
            let own = k as f64 / 10.0;
            g.push(BlendWeights { own, knn: 1.0 - own, popularity: pop });
        }
    }
    g
}

/// Mean NDCG@10 and recall@10 of a weight setting over (candidates, relevant) pairs.
fn mean_metrics(cases: &[(Candidates, Vec<u32>)], w: BlendWeights) -> (f64, f64) {
    let (mut n, mut r) = (0.0, 0.0);
    for (c, rel) in cases {
        let top = c.top(w, 10);
        n += ndcg_at_k(&top, rel, 10).unwrap_or(0.0);
        r += recall_at_k(&top, rel, 10).unwrap_or(0.0);
    }
    let m = cases.len().max(1) as f64;
    (n / m, r / m)
}

/// A deterministic pseudo-random order of customers (SplitMix64 of the index).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fits on orders (any order of rows) and the catalogue: see the module documentation.
pub fn fit(orders: &[Basket], products: &[Product], opts: &FitOptions) -> Result<RecsModel, DecideError> {
    if !(opts.half_life_days.is_finite() && opts.half_life_days > 0.0) {
        return Err(DecideError::Input(format!(
            "half-life {} is not a positive number of days",
            opts.half_life_days
        )));
    }
    if opts.lookback_days == 0 || opts.neighbours == 0 {
        return Err(DecideError::Input("lookback and neighbours must be positive".into()));
    }
    let now = match opts.now.or_else(|| orders.iter().map(|o| o.at).max()) {
        Some(t) => t,
        None => return Err(DecideError::Insufficient("no orders".into())),
    };
    let from = now - opts.lookback_days as i64 * 86_400;
    let data = intern(orders, products, from, now);
    if data.baskets.is_empty() {
        return Err(DecideError::Insufficient(format!(
            "no order with products in the {} days before now",
            opts.lookback_days
        )));
    }
    let n_items = data.products.len();
    // Customers' basket ranges.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut s = 0;
    for i in 1..=data.baskets.len() {
        if i == data.baskets.len() || data.baskets[i].0 != data.baskets[s].0 {
            ranges.push((s, i));
            s = i;
        }
    }
    // The validation split.
    let mut eligible: Vec<(usize, usize)> = ranges.iter().copied().filter(|(a, b)| b - a >= 2).collect();
    eligible.sort_by_key(|(a, _)| mix(*a as u64));
    eligible.truncate(opts.validation_customers);
    let (weights, metrics) = if eligible.len() >= 20 {
        let mut keep = vec![true; data.baskets.len()];
        for (_, b) in &eligible {
            keep[b - 1] = false;
        }
        let (pop, nb) = cooccurrence(n_items, &data.baskets, &keep, opts.neighbours);
        let popular = popular_list(&pop, opts.popular_candidates);
        let scorer = Scorer {
            max_popularity: pop.iter().copied().fold(0.0, f64::max),
            popularity: &pop,
            popular: &popular,
            neighbours: &nb,
            half_life_days: opts.half_life_days,
        };
        let cases: Vec<(Candidates, Vec<u32>)> = eligible
            .iter()
            .map(|&(a, b)| {
                let hist: Vec<(i64, Vec<u32>)> =
                    data.baskets[a..b - 1].iter().map(|x| (x.1, x.2.clone())).collect();
                let target = &data.baskets[b - 1];
                (scorer.candidates(&hist, target.1), target.2.clone())
            })
            .collect();
        let mut best = (f64::NEG_INFINITY, BlendWeights { own: 0.5, knn: 0.5, popularity: 0.0 });
        for w in weight_grid() {
            let (n, _) = mean_metrics(&cases, w);
            if n > best.0 + 1e-12 {
                best = (n, w);
            }
        }
        let m = |w| {
            let (n, r) = mean_metrics(&cases, w);
            json!({"ndcg_at_10": n, "recall_at_10": r})
        };
        let metrics = json!({
            "validation_customers": cases.len(),
            "popularity": m(BlendWeights::POPULARITY),
            "own": m(BlendWeights::OWN),
            "knn": m(BlendWeights::KNN),
            "blend": m(best.1),
        });
        (best.1, metrics)
    } else {
        (
            BlendWeights { own: 0.5, knn: 0.5, popularity: 0.0 },
            json!({"validation_customers": eligible.len(), "reason": "fewer than 20 customers with two or more orders: fixed weights"}),
        )
    };
    let (popularity, neighbours) =
        cooccurrence(n_items, &data.baskets, &vec![true; data.baskets.len()], opts.neighbours);
    let popular = popular_list(&popularity, opts.popular_candidates);
    use sha2::Digest;
    let mut d = sha2::Sha256::default();
    for (c, at, items) in &data.baskets {
        d.update(c.to_le_bytes());
        d.update(at.to_le_bytes());
        for &i in items {
            d.update(data.products[i as usize].as_bytes());
            d.update([0xff]);
        }
    }
    let first = data.baskets.iter().map(|b| b.1).min().unwrap_or(now);
    let body = RecsBody {
        schema: BODY_SCHEMA,
        products: data.products,
        popularity,
        popular,
        neighbours,
        weights,
        half_life_days: opts.half_life_days,
        training_window: json!({"from": first, "to": now, "lookback_days": opts.lookback_days,
            "orders": data.baskets.len(), "customers": ranges.len()}),
        data_digest: d.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        metrics,
    };
    RecsModel::new(body)
}

impl RecsModel {
    /// Checks a body and builds the lookup tables.
    pub fn new(body: RecsBody) -> Result<RecsModel, DecideError> {
        let n = body.products.len();
        if body.schema != BODY_SCHEMA {
            return Err(DecideError::Body(format!("recs: schema {} (expected {BODY_SCHEMA})", body.schema)));
        }
        if body.popularity.len() != n || body.neighbours.len() != n {
            return Err(DecideError::Body("recs: tables do not match the product list".into()));
        }
        let in_range = |i: u32| (i as usize) < n;
        if !body.popular.iter().all(|&i| in_range(i))
            || !body.neighbours.iter().flatten().all(|&(i, s)| in_range(i) && s.is_finite())
        {
            return Err(DecideError::Body(
                "recs: a product index is out of range or a similarity is not finite".into(),
            ));
        }
        let w = body.weights;
        if ![w.own, w.knn, w.popularity, body.half_life_days].iter().all(|x| x.is_finite() && *x >= 0.0)
            || body.half_life_days == 0.0
            || body.popularity.iter().any(|p| !p.is_finite())
        {
            return Err(DecideError::Body(
                "recs: a weight, half-life or popularity is not a finite positive number".into(),
            ));
        }
        let index = body.products.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
        let max_popularity = body.popularity.iter().copied().fold(0.0, f64::max);
        Ok(RecsModel { body, index, max_popularity })
    }

    pub fn from_body(body: &Value) -> Result<RecsModel, DecideError> {
        let b: RecsBody =
            serde_json::from_value(body.clone()).map_err(|e| DecideError::Body(format!("recs: {e}")))?;
        RecsModel::new(b)
    }

    pub fn to_body(&self) -> Value {
        serde_json::to_value(&self.body).unwrap_or(Value::Null)
    }

    /// A product's index in the model.
    pub fn index_of(&self, product: &str) -> Option<u32> {
        self.index.get(product).copied()
    }

    /// Orders as model indices (products the model does not know are dropped).
    pub fn index_history(&self, orders: &[Basket]) -> Vec<(i64, Vec<u32>)> {
        orders.iter().map(|o| (o.at, o.products.iter().filter_map(|p| self.index_of(p)).collect())).collect()
    }

    /// Every candidate with its normalised parts.
    pub fn candidates(&self, history: &IndexedHistory, now: i64) -> Candidates {
        Scorer {
            popularity: &self.body.popularity,
            max_popularity: self.max_popularity,
            popular: &self.body.popular,
            neighbours: &self.body.neighbours,
            half_life_days: self.body.half_life_days,
        }
        .candidates(history, now)
    }

    /// The customer's list: scored by the blend, then filtered by the rules (see [`RecsConfig`]). Pins come
    /// first when the customer is in their segment and they are available and not excluded; the
    /// recent-purchase rule and the brand cap apply to the scored products only.
    pub fn recommend(&self, customer: CustomerHistory<'_>, now: i64, rules: Rules<'_>) -> Vec<Rec> {
        let cfg = rules.config;
        let hist = self.index_history(customer.orders);
        let cands = self.candidates(&hist, now);
        let mut scored: Vec<(u32, f64, Parts)> =
            cands.score(self.body.weights).zip(cands.0.iter()).map(|((i, s), p)| (i, s, *p)).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let score_of: HashMap<u32, f64> = scored.iter().map(|x| (x.0, x.1)).collect();
        let recent_from = now - cfg.exclude_recent_days as i64 * 86_400;
        let recent: HashSet<&str> = customer
            .orders
            .iter()
            .filter(|o| cfg.exclude_recent_days > 0 && o.at >= recent_from)
            .flat_map(|o| o.products.iter().map(String::as_str))
            .collect();
        let excluded = |p: &Product| {
            cfg.exclude.iter().any(|e| match e.strip_prefix("tag:") {
                Some(t) => p.tags.iter().any(|x| x == t),
                None => *e == p.id,
            })
        };
        let mut out: Vec<Rec> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for pin in &cfg.pins {
            if out.len() >= cfg.count {
                break;
            }
            let applies = pin.segment.as_ref().is_none_or(|s| customer.segments.contains(s));
            if let Some(p) = rules.catalogue.get(&pin.product)
                && applies
                && p.available
                && !excluded(p)
                && seen.insert(p.id.clone())
            {
                let score = self.index_of(&p.id).and_then(|i| score_of.get(&i)).copied().unwrap_or(0.0);
                out.push(Rec { product_id: p.id.clone(), score, reason: Reason::Pinned });
            }
        }
        let mut per_brand: HashMap<&str, usize> = HashMap::new();
        for b in out.iter().filter_map(|r| rules.catalogue.get(&r.product_id)?.brand.as_deref()) {
            *per_brand.entry(b).or_insert(0) += 1;
        }
        for (i, score, parts) in scored {
            if out.len() >= cfg.count {
                break;
            }
            let id = &self.body.products[i as usize];
            let Some(p) = rules.catalogue.get(id) else { continue };
            if !p.available || excluded(p) || seen.contains(id) {
                continue;
            }
            if recent.contains(id.as_str()) && !p.tags.iter().any(|t| cfg.consumable_tags.contains(t)) {
                continue;
            }
            if let Some(b) = p.brand.as_deref() {
                let n = per_brand.entry(b).or_insert(0);
                if cfg.max_per_brand > 0 && *n >= cfg.max_per_brand {
                    continue;
                }
                *n += 1;
            }
            let w = self.body.weights;
            let (o, k) = (w.own * parts.own, w.knn * parts.knn);
            let reason = if o > 0.0 && o >= k {
                Reason::BoughtBefore
            } else if k > 0.0 && parts.via != u32::MAX {
                Reason::BoughtWith(self.body.products[parts.via as usize].clone())
            } else {
                Reason::Popular
            };
            seen.insert(id.clone());
            out.push(Rec { product_id: id.clone(), score, reason });
        }
        out
    }
}
