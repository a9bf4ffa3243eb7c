//! Product recommendations from order history: which products to show a customer next.
//!
//! Three scorers over plain order data (customer, time, products):
//! - **popularity**: the share of baskets that hold the product;
//! - **own**: the customer's own purchase frequency, each order weighted by `0.5^(age / half-life)`;
//! - **item kNN**: each product's nearest neighbours by cosine similarity of basket co-occurrence
//!   (`c_ij / sqrt(n_i · n_j)`, pairs seen in at least two baskets); a candidate's score is the sum over the
//!   customer's products of their own score times the similarity.
//!
//! The candidates are the customer's products, their neighbours and the best sellers. Two ways to rank
//! them are fitted, and the better one is served:
//! - the **linear blend** `w_own · own + w_knn · knn + w_pop · popularity` (each part divided by its
//!   largest value for the customer, popularity by the largest overall), plus a vanishing popularity term
//!   that breaks ties, so that every scorer back-fills with the best sellers;
//! - the **ranker** ([`Ranker`]): two logistic regressions of "in the next basket", one over the products
//!   the customer bought before (repeat) and one over the others (explore), on [`FEATURES`]: the decayed
//!   own score, the share of the customer's orders holding the product, the repurchase rate since its first
//!   purchase, how many orders ago it was last bought, how due it is against the customer's usual interval
//!   for it, the customer's repeat ratio and number of orders, the product's repeat rate over all
//!   customers, kNN and popularity (with logarithms). A candidate's score is its model's log-odds (the
//!   order of its probability), so repeat and explore products share one scale: a customer who rarely
//!   repeats gets more new products, one who repeats gets their staples first.
//!
//! Both are fitted on a validation split: for up to [`FitOptions::validation_customers`] customers with two
//! or more orders, the last order is held out, the neighbours and popularity are fitted on everything else,
//! and the held-out orders are the labels. The blend's weights are the best NDCG@10 on a grid (`w_own` in
//! 0, 0.1, …, 1 with `w_knn = 1 − w_own`, and `w_pop` in 0, 0.05, 0.2). To choose between the two, both are
//! fitted on half of the validation customers and compared by NDCG@10 on the other half; the ranker is
//! served (refitted on every validation customer) only when it is better there, and the metrics record
//! both figures. The served neighbours and popularity are then fitted on all orders.
//!
//! Merchandiser rules ([`RecsConfig`]) are applied after scoring, in [`RecsModel::recommend`].

use crate::DecideError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// The body schema version of a `recs` model.
pub const BODY_SCHEMA: u32 = 2;
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
    /// Each product's repeat rate: of its purchases, the share by a customer who had bought it before,
    /// `(repeats + 1) / (purchases + 2)`.
    #[serde(default)]
    pub repeat_rate: Vec<f64>,
    /// The best sellers, most popular first.
    pub popular: Vec<u32>,
    /// Each product's neighbours: (product, cosine similarity), most similar first.
    pub neighbours: Vec<Vec<(u32, f32)>>,
    /// The linear blend's weights (served when `ranker` is `None`).
    pub weights: BlendWeights,
    /// The learned ranker, served when the fit found it better than the linear blend.
    #[serde(default)]
    pub ranker: Option<Ranker>,
    pub half_life_days: f64,
    pub training_window: Value,
    pub data_digest: String,
    pub metrics: Value,
}

/// The fitted recommendation model (registry family `recs`).
#[derive(Debug, Clone)]
pub struct RecsModel {
    pub body: RecsBody,
    neighbours: NeighbourTable,
    ln_popularity: Vec<f64>,
    index: HashMap<String, u32>,
    max_popularity: f64,
}

/// A customer's orders with products as model indices.
pub type IndexedHistory = [(i64, Vec<u32>)];

/// A candidate's parts: the three scorers' values (own and kNN divided by their largest values for the
/// customer, popularity by the largest overall) and what the ranker reads about the customer's history of
/// the product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    pub item: u32,
    pub own: f64,
    pub knn: f64,
    pub popularity: f64,
    /// The history product that contributed most to `knn`.
    pub via: u32,
    /// How many of the customer's orders hold the product.
    pub orders: u32,
    /// `orders` divided by the customer's number of orders.
    pub frequency: f32,
    /// The repurchase rate since the first purchase: `(orders − 1 + ½) / (orders placed after it + 1)`
    /// (0 when never bought).
    pub rebuy: f32,
    /// `1 / (1 + orders placed since the last purchase)` (0 when never bought).
    pub recency: f32,
    /// How due the product is: `exp(−|ln((days since the last purchase + 1) / (mean days between its
    /// purchases + 1))|)`, 1 when exactly one usual interval has passed (0 when bought fewer than twice).
    pub due: f32,
    /// The customer's repeat ratio: of the products in their orders after the first, the share they had
    /// bought before, `(repeats + 1) / (products + 2)`.
    pub repeat_ratio: f32,
    /// The product's repeat rate over every customer (see [`RecsBody::repeat_rate`]).
    pub item_repeat_rate: f32,
    /// The customer's number of orders.
    pub customer_orders: u32,
    /// `ln(popularity)` (popularity as above, at least 1e-6).
    pub ln_popularity: f32,
}

/// The number of ranker features.
pub const NF: usize = 16;

/// The ranker's features, in the order of [`Parts::features`] (logarithms are 0 for products the customer
/// never bought).
pub const FEATURES: [&str; NF] = [
    "own",
    "frequency",
    "ln_frequency",
    "rebuy",
    "ln_rebuy",
    "recency",
    "due",
    "bought_once",
    "repeat_ratio",
    "ln_customer_orders",
    "knn",
    "sqrt_knn",
    "popularity",
    "ln_popularity",
    "item_repeat_rate",
    "item_repeat_rate_x_frequency",
];

impl Parts {
    /// The ranker's inputs (see [`FEATURES`]).
    pub fn features(&self) -> [f64; NF] {
        let bought = self.orders > 0;
        let ln0 = |x: f64| if bought { x.max(1e-6).ln() } else { 0.0 };
        [
            self.own,
            self.frequency as f64,
            ln0(self.frequency as f64),
            self.rebuy as f64,
            ln0(self.rebuy as f64),
            self.recency as f64,
            self.due as f64,
            if self.orders == 1 { 1.0 } else { 0.0 },
            self.repeat_ratio as f64,
            (self.customer_orders.max(1) as f64).ln(),
            self.knn,
            self.knn.sqrt(),
            self.popularity,
            self.ln_popularity as f64,
            self.item_repeat_rate as f64,
            (self.item_repeat_rate * self.frequency) as f64,
        ]
    }
}

/// The learned ranker: two logistic regressions of "in the next basket" on [`Parts::features`], one for
/// products the customer bought before (repeat) and one for the others (explore); a candidate's score is
/// its model's log-odds (the order of probabilities), so repeat and explore products are merged on one
/// scale. Each vector holds the [`NF`] coefficients, then the intercept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranker {
    /// The feature names, [`FEATURES`].
    pub features: Vec<String>,
    pub repeat: Vec<f64>,
    pub explore: Vec<f64>,
}

impl Ranker {
    /// A scoring function for one customer's candidates (`first` is any of them: the customer's values are
    /// the same in each). Explore candidates, most of them, are scored on the features that are not always
    /// 0 for a product the customer never bought (8–14 of [`FEATURES`]); a ranker whose vectors do not have
    /// `NF + 1` entries scores everything 0 (bodies are checked when loaded).
    fn scorer<'a>(&'a self, first: Option<&Parts>) -> impl Fn(&Parts) -> f64 + use<'a> {
        let e: [f64; NF + 1] = self.explore.as_slice().try_into().unwrap_or([0.0; NF + 1]);
        let r: [f64; NF + 1] = self.repeat.as_slice().try_into().unwrap_or([0.0; NF + 1]);
        let (ratio, orders) = first.map_or((0.0, 1), |p| (p.repeat_ratio as f64, p.customer_orders.max(1)));
        let explore_base = e[8] * ratio + e[9] * (orders as f64).ln() + e[NF];
        move |p: &Parts| {
            let t = if p.orders > 0 {
                let x = p.features();
                let mut t = r[NF];
                for k in 0..NF {
                    t += r[k] * x[k];
                }
                t
            } else {
                explore_base
                    + e[10] * p.knn
                    + e[11] * p.knn.sqrt()
                    + e[12] * p.popularity
                    + e[13] * p.ln_popularity as f64
                    + e[14] * p.item_repeat_rate as f64
            };
            t + TIE_BREAK * p.popularity
        }
    }
}

/// Candidates with parts already divided by their largest values.
#[derive(Debug, Clone, Default)]
pub struct Candidates(pub Vec<Parts>);

fn top_by(mut s: Vec<(u32, f64)>, k: usize) -> Vec<u32> {
    let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if s.len() > k && k > 0 {
        s.select_nth_unstable_by(k - 1, cmp);
        s.truncate(k);
    }
    s.sort_by(cmp);
    s.into_iter().take(k).map(|x| x.0).collect()
}

impl Candidates {
    /// The blended score of each candidate.
    pub fn score(&self, w: BlendWeights) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.0
            .iter()
            .map(move |p| (p.item, w.own * p.own + w.knn * p.knn + (w.popularity + TIE_BREAK) * p.popularity))
    }

    /// The k best items under these weights, best first (ties by item index).
    pub fn top(&self, w: BlendWeights, k: usize) -> Vec<u32> {
        top_by(self.score(w).collect(), k)
    }

    /// Each candidate's score under a ranker.
    pub fn score_ranked<'a>(&'a self, r: &'a Ranker) -> impl Iterator<Item = (u32, f64)> + 'a {
        let f = r.scorer(self.0.first());
        self.0.iter().map(move |p| (p.item, f(p)))
    }

    /// The k best items under a ranker, best first (ties by item index).
    pub fn top_ranked(&self, r: &Ranker, k: usize) -> Vec<u32> {
        top_by(self.score_ranked(r).collect(), k)
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

/// Each product's repeat rate over the kept baskets (sorted by customer, then time).
fn repeat_rate(n_items: usize, baskets: &[(u32, i64, Vec<u32>)], keep: &[bool]) -> Vec<f64> {
    let mut last_customer = vec![u32::MAX; n_items];
    let mut purchases = vec![0u32; n_items];
    let mut repeats = vec![0u32; n_items];
    for (b, _) in baskets.iter().zip(keep).filter(|(_, k)| **k) {
        for &i in &b.2 {
            let i = i as usize;
            purchases[i] += 1;
            if last_customer[i] == b.0 {
                repeats[i] += 1;
            }
            last_customer[i] = b.0;
        }
    }
    purchases.iter().zip(&repeats).map(|(&p, &r)| (r as f64 + 1.0) / (p as f64 + 2.0)).collect()
}

/// `ln(popularity / max_popularity)`, at least `ln(1e-6)`.
fn ln_popularity(pop: &[f64]) -> Vec<f64> {
    let max = pop.iter().copied().fold(0.0, f64::max);
    pop.iter().map(|&p| if max > 0.0 { (p / max).max(1e-6).ln() } else { 1e-6f64.ln() }).collect()
}

fn popular_list(pop: &[f64], n: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..pop.len() as u32).filter(|&i| pop[i as usize] > 0.0).collect();
    idx.sort_by(|&a, &b| pop[b as usize].total_cmp(&pop[a as usize]).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// Every product's neighbours in one contiguous table: product `i`'s are `entries[start[i]..start[i + 1]]`
/// (one allocation instead of one per product, so a customer's lists are read without chasing pointers).
#[derive(Debug, Clone, Default)]
struct NeighbourTable {
    start: Vec<u32>,
    entries: Vec<(u32, f32)>,
}

impl NeighbourTable {
    fn new(lists: &[Vec<(u32, f32)>]) -> NeighbourTable {
        let mut start = Vec::with_capacity(lists.len() + 1);
        let mut entries = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        start.push(0);
        for l in lists {
            entries.extend_from_slice(l);
            start.push(entries.len() as u32);
        }
        NeighbourTable { start, entries }
    }

    fn of(&self, i: u32) -> &[(u32, f32)] {
        &self.entries[self.start[i as usize] as usize..self.start[i as usize + 1] as usize]
    }
}

/// The scoring core, shared by the fitted model and the validation split.
struct Scorer<'a> {
    popularity: &'a [f64],
    /// `ln(popularity / max_popularity)`, at least `ln(1e-6)`.
    ln_popularity: &'a [f64],
    repeat_rate: &'a [f64],
    max_popularity: f64,
    popular: &'a [u32],
    neighbours: &'a NeighbourTable,
    half_life_days: f64,
}

/// One product's kNN sums while a customer is scored: what the neighbour loop touches for every candidate,
/// kept small so the table stays in the fastest cache.
#[derive(Debug, Clone, Copy)]
struct Hot {
    knn: f64,
    best: f64,
    via: u32,
    seen: bool,
    /// In the customer's history (its [`Slot`] is in use).
    bought: bool,
}

const EMPTY_HOT: Hot = Hot { knn: 0.0, best: 0.0, via: u32::MAX, seen: false, bought: false };

/// One history product's running sums while a customer is scored.
#[derive(Debug, Clone, Copy)]
struct Slot {
    own: f64,
    /// Orders holding the product, the first and last of them (positions in time order) and their times.
    count: u32,
    first: u32,
    last: u32,
    t_first: i64,
    t_last: i64,
}

const EMPTY: Slot = Slot { own: 0.0, count: 0, first: 0, last: 0, t_first: 0, t_last: 0 };

/// Per-product scratch space reused across customers (every entry is empty between calls).
#[derive(Debug, Default)]
struct Scratch {
    hot: Vec<Hot>,
    slots: Vec<Slot>,
    touched: Vec<u32>,
    history: Vec<u32>,
    order: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Scorer<'_> {
    fn candidates(&self, history: &IndexedHistory, now: i64) -> Candidates {
        let mut v = Vec::new();
        self.scan(history, now, |p| v.push(p));
        Candidates(v)
    }

    /// Calls `visit` with every candidate and its parts, `own` and `knn` already divided by their largest
    /// values (in no particular order).
    fn scan(&self, history: &IndexedHistory, now: i64, visit: impl FnMut(Parts)) {
        SCRATCH.with(|s| self.scan_in(&mut s.borrow_mut(), history, now, visit))
    }

    fn scan_in(&self, s: &mut Scratch, history: &IndexedHistory, now: i64, mut visit: impl FnMut(Parts)) {
        let n = self.popularity.len();
        if s.slots.len() < n {
            s.slots.resize(n, EMPTY);
            s.hot.resize(n, EMPTY_HOT);
        }
        let Scratch { hot, slots, touched, history: hist, order } = s;
        order.clear();
        order.extend(0..history.len());
        if !history.windows(2).all(|w| w[0].0 <= w[1].0) {
            order.sort_by_key(|&i| history[i].0);
        }
        let (mut repeats, mut lines) = (0u32, 0u32);
        for (pos, &oi) in order.iter().enumerate() {
            let (at, items) = &history[oi];
            let pos = pos as u32;
            let age = ((now - at) as f64 / DAY).max(0.0);
            let w = (-age / self.half_life_days).exp2();
            for &i in items {
                let Some(slot) = slots.get_mut(i as usize) else { continue };
                let h = &mut hot[i as usize];
                if !h.seen {
                    h.seen = true;
                    h.bought = true;
                    touched.push(i);
                    hist.push(i);
                }
                if slot.count > 0 && slot.last == pos {
                    continue; // the same product twice in one order
                }
                if pos > 0 {
                    lines += 1;
                    if slot.count > 0 {
                        repeats += 1;
                    }
                }
                if slot.count == 0 {
                    slot.first = pos;
                    slot.t_first = *at;
                }
                slot.count += 1;
                slot.last = pos;
                slot.t_last = *at;
                slot.own += w;
            }
        }
        let mut max_own = 0.0f64;
        // Branch-free: whether a neighbour is new, and whether it beats the best contribution so far, are
        // coin flips a branch predictor loses on. Every neighbour is written at the end of `touched`, which
        // only grows past it when it was new.
        let mut nt = touched.len();
        let room: usize = hist.iter().map(|&j| self.neighbours.of(j).len()).sum();
        touched.resize(nt + room, 0);
        for &j in hist.iter() {
            let wj = slots[j as usize].own;
            max_own = max_own.max(wj);
            for &(c, sim) in self.neighbours.of(j) {
                let contrib = wj * sim as f64;
                let h = &mut hot[c as usize];
                touched[nt] = c;
                nt += usize::from(!h.seen);
                h.seen = true;
                h.knn += contrib;
                let better = (contrib > h.best) | ((contrib == h.best) & (j < h.via));
                h.best = if better { contrib } else { h.best };
                h.via = if better { j } else { h.via };
            }
        }
        touched.truncate(nt);
        for &c in self.popular {
            let h = &mut hot[c as usize];
            if !h.seen {
                h.seen = true;
                touched.push(c);
            }
        }
        let n_orders = order.len().max(1) as f64;
        let repeat_ratio = (repeats as f64 + 1.0) / (lines as f64 + 2.0);
        let mut max_knn = 0.0f64;
        for &c in touched.iter() {
            max_knn = max_knn.max(hot[c as usize].knn);
        }
        let (io, ik) = (
            if max_own > 0.0 { 1.0 / max_own } else { 0.0 },
            if max_knn > 0.0 { 1.0 / max_knn } else { 0.0 },
        );
        for &c in touched.iter() {
            let h = std::mem::replace(&mut hot[c as usize], EMPTY_HOT);
            let slot = if h.bought { std::mem::replace(&mut slots[c as usize], EMPTY) } else { EMPTY };
            let (mut rebuy, mut recency, mut due) = (0.0, 0.0, 0.0);
            if slot.count > 0 {
                let after = order.len() as f64 - 1.0 - slot.first as f64;
                rebuy = (slot.count as f64 - 0.5) / (after + 1.0);
                recency = 1.0 / (order.len() as f64 - slot.last as f64);
            }
            if slot.count > 1 {
                let gap = (slot.t_last - slot.t_first) as f64 / DAY / (slot.count - 1) as f64;
                let since = ((now - slot.t_last) as f64 / DAY).max(0.0);
                due = (-((since + 1.0) / (gap.max(0.0) + 1.0)).ln().abs()).exp();
            }
            visit(Parts {
                item: c,
                own: slot.own * io,
                knn: h.knn * ik,
                popularity: if self.max_popularity > 0.0 {
                    self.popularity[c as usize] / self.max_popularity
                } else {
                    0.0
                },
                via: h.via,
                orders: slot.count,
                frequency: (slot.count as f64 / n_orders) as f32,
                rebuy: rebuy as f32,
                recency: recency as f32,
                due: due as f32,
                repeat_ratio: repeat_ratio as f32,
                item_repeat_rate: self.repeat_rate.get(c as usize).copied().unwrap_or(0.5) as f32,
                customer_orders: order.len() as u32,
                ln_popularity: self.ln_popularity[c as usize] as f32,
            });
        }
        touched.clear();
        hist.clear();
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

/// Mean NDCG@10 of a ranker over (candidates, relevant) pairs.
fn mean_ndcg_ranked(cases: &[&(Candidates, Vec<u32>)], r: &Ranker) -> f64 {
    let n: f64 = cases.iter().map(|(c, rel)| ndcg_at_k(&c.top_ranked(r, 10), rel, 10).unwrap_or(0.0)).sum();
    n / cases.len().max(1) as f64
}

/// Rows each of the ranker's regressions is fitted on at most (every positive is kept; negatives are
/// sampled uniformly and the intercept corrected by the log of the sampling rate).
const RANKER_ROWS: usize = 60_000;
/// The ridge penalty on the standardised coefficients.
const RANKER_RIDGE: f64 = 1.0;

/// Fits the ranker (see [`Ranker`]) on the validation cases. `None` when a part has no positive or no
/// negative, or a fit does not converge to finite numbers.
fn fit_ranker(cases: &[&(Candidates, Vec<u32>)]) -> Option<Ranker> {
    let part = |repeat: bool| fit_logistic(cases, |p: &Parts| (p.orders > 0) == repeat);
    Some(Ranker {
        features: FEATURES.iter().map(|f| f.to_string()).collect(),
        repeat: part(true)?,
        explore: part(false)?,
    })
}

/// An L2-regularised logistic regression of "in the held-out basket" on the features of the candidates
/// `take` selects, by Newton's method on standardised features: NF coefficients, then the intercept.
fn fit_logistic(cases: &[&(Candidates, Vec<u32>)], take: impl Fn(&Parts) -> bool) -> Option<Vec<f64>> {
    const D: usize = NF + 1;
    let (mut pos, mut neg) = (0usize, 0usize);
    for (c, rel) in cases {
        for p in c.0.iter().filter(|p| take(p)) {
            if rel.contains(&p.item) {
                pos += 1;
            } else {
                neg += 1;
            }
        }
    }
    if pos == 0 || neg == 0 {
        return None;
    }
    let budget = RANKER_ROWS.saturating_sub(pos).max(pos);
    let keep = (budget as f64 / neg as f64).min(1.0);
    let threshold = (keep * u64::MAX as f64) as u64;
    let mut rows: Vec<([f64; NF], f64)> = Vec::with_capacity(pos + budget.min(neg));
    for (ci, (c, rel)) in cases.iter().enumerate() {
        for (j, p) in c.0.iter().enumerate().filter(|(_, p)| take(p)) {
            let y = rel.contains(&p.item);
            if y || keep >= 1.0 || mix(((ci as u64) << 32) ^ j as u64) <= threshold {
                rows.push((p.features(), if y { 1.0 } else { 0.0 }));
            }
        }
    }
    let m = rows.len() as f64;
    let mut mean = [0.0; NF];
    let mut sd = [0.0; NF];
    for (x, _) in &rows {
        for k in 0..NF {
            mean[k] += x[k] / m;
        }
    }
    for (x, _) in &rows {
        for k in 0..NF {
            sd[k] += (x[k] - mean[k]).powi(2) / m;
        }
    }
    for v in &mut sd {
        *v = if *v > 1e-12 { v.sqrt() } else { 0.0 };
    }
    let xs: Vec<([f64; D], f64)> = rows
        .iter()
        .map(|(x, y)| {
            let mut o = [0.0; D];
            for k in 0..NF {
                o[k] = if sd[k] > 0.0 { (x[k] - mean[k]) / sd[k] } else { 0.0 };
            }
            o[NF] = 1.0;
            (o, *y)
        })
        .collect();
    let mut w = [0.0; D];
    for _ in 0..30 {
        let mut g = [0.0; D];
        let mut h = [[0.0; D]; D];
        for (x, y) in &xs {
            let t: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-t).exp());
            let r = (p * (1.0 - p)).max(1e-9);
            for i in 0..D {
                g[i] += (y - p) * x[i];
                for j in 0..=i {
                    h[i][j] += r * x[i] * x[j];
                }
            }
        }
        for i in 0..D {
            #[allow(clippy::needless_range_loop)] // mirrors the lower triangle
            for j in 0..i {
                h[j][i] = h[i][j];
            }
            if i < NF {
                g[i] -= RANKER_RIDGE * w[i];
                h[i][i] += RANKER_RIDGE;
            } else {
                h[i][i] += 1e-9;
            }
        }
        let step = solve(h, g)?;
        let mut biggest = 0.0f64;
        for i in 0..D {
            w[i] += step[i];
            biggest = biggest.max(step[i].abs());
        }
        if !w.iter().all(|x| x.is_finite()) {
            return None;
        }
        if biggest < 1e-7 {
            break;
        }
    }
    let mut out: Vec<f64> = (0..NF).map(|k| if sd[k] > 0.0 { w[k] / sd[k] } else { 0.0 }).collect();
    let intercept = w[NF] - (0..NF).map(|k| out[k] * mean[k]).sum::<f64>() + keep.ln();
    out.push(intercept);
    Some(out)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting (`None` when singular).
fn solve<const D: usize>(mut a: [[f64; D]; D], mut b: [f64; D]) -> Option<[f64; D]> {
    for col in 0..D {
        let piv = (col..D).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = a[col];
        for r in col + 1..D {
            let f = a[r][col] / pivot_row[col];
            if f != 0.0 {
                for (x, p) in a[r][col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
                b[r] -= f * b[col];
            }
        }
    }
    let mut x = [0.0; D];
    for r in (0..D).rev() {
        let s: f64 = (r + 1..D).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
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
    let (weights, ranker, metrics) = if eligible.len() >= 20 {
        let mut keep = vec![true; data.baskets.len()];
        for (_, b) in &eligible {
            keep[b - 1] = false;
        }
        let (pop, nb) = cooccurrence(n_items, &data.baskets, &keep, opts.neighbours);
        let popular = popular_list(&pop, opts.popular_candidates);
        let scorer = Scorer {
            max_popularity: pop.iter().copied().fold(0.0, f64::max),
            popularity: &pop,
            ln_popularity: &ln_popularity(&pop),
            repeat_rate: &repeat_rate(n_items, &data.baskets, &keep),
            popular: &popular,
            neighbours: &NeighbourTable::new(&nb),
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
        let best_weights = |cases: &[&(Candidates, Vec<u32>)]| {
            let mut best = (f64::NEG_INFINITY, BlendWeights { own: 0.5, knn: 0.5, popularity: 0.0 });
            for w in weight_grid() {
                let n: f64 = cases
                    .iter()
                    .map(|(c, rel)| ndcg_at_k(&c.top(w, 10), rel, 10).unwrap_or(0.0))
                    .sum::<f64>()
                    / cases.len().max(1) as f64;
                if n > best.0 + 1e-12 {
                    best = (n, w);
                }
            }
            best.1
        };
        let all: Vec<&(Candidates, Vec<u32>)> = cases.iter().collect();
        let weights = best_weights(&all);
        // The ranker against the linear blend: both fitted on half of the validation customers and
        // compared on the other half; the ranker is served (refitted on every validation customer) only
        // when it is better there.
        let (half_a, half_b): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let half_a: Vec<&(Candidates, Vec<u32>)> = half_a.into_iter().map(|x| *x.1).collect();
        let half_b: Vec<&(Candidates, Vec<u32>)> = half_b.into_iter().map(|x| *x.1).collect();
        let blend_b = {
            let w = best_weights(&half_a);
            half_b.iter().map(|(c, rel)| ndcg_at_k(&c.top(w, 10), rel, 10).unwrap_or(0.0)).sum::<f64>()
                / half_b.len().max(1) as f64
        };
        let own_b = half_b
            .iter()
            .map(|(c, rel)| ndcg_at_k(&c.top(BlendWeights::OWN, 10), rel, 10).unwrap_or(0.0))
            .sum::<f64>()
            / half_b.len().max(1) as f64;
        let ranker_b = fit_ranker(&half_a).map(|r| mean_ndcg_ranked(&half_b, &r));
        let ranker = match ranker_b {
            Some(n) if n > blend_b => fit_ranker(&all),
            _ => None,
        };
        let m = |w| {
            let (n, r) = mean_metrics(&cases, w);
            json!({"ndcg_at_10": n, "recall_at_10": r})
        };
        let metrics = json!({
            "validation_customers": cases.len(),
            "popularity": m(BlendWeights::POPULARITY),
            "own": m(BlendWeights::OWN),
            "knn": m(BlendWeights::KNN),
            "blend": m(weights),
            "served": if ranker.is_some() { "ranker" } else { "blend" },
            "second_half_ndcg_at_10": {"own": own_b, "blend": blend_b, "ranker": ranker_b},
        });
        (weights, ranker, metrics)
    } else {
        (
            BlendWeights { own: 0.5, knn: 0.5, popularity: 0.0 },
            None,
            json!({"validation_customers": eligible.len(), "reason": "fewer than 20 customers with two or more orders: fixed weights"}),
        )
    };
    let all_kept = vec![true; data.baskets.len()];
    let repeat_rate = repeat_rate(n_items, &data.baskets, &all_kept);
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
        repeat_rate,
        popular,
        neighbours,
        weights,
        ranker,
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
            return Err(DecideError::Body(format!(
                "recs: schema {} (expected {BODY_SCHEMA}); fit the model again (nudge models fit --family recs)",
                body.schema
            )));
        }
        if body.popularity.len() != n || body.neighbours.len() != n || body.repeat_rate.len() != n {
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
            || body.popularity.iter().chain(&body.repeat_rate).any(|p| !p.is_finite())
        {
            return Err(DecideError::Body(
                "recs: a weight, half-life or popularity is not a finite positive number".into(),
            ));
        }
        if let Some(r) = &body.ranker
            && (r.features.iter().map(String::as_str).ne(FEATURES.iter().copied())
                || r.repeat.len() != NF + 1
                || r.explore.len() != NF + 1
                || !r.repeat.iter().chain(&r.explore).all(|c| c.is_finite()))
        {
            return Err(DecideError::Body(format!(
                "recs: the ranker must have the features {FEATURES:?}, each with a finite coefficient, and an intercept, for repeat and explore"
            )));
        }
        let index = body.products.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
        let max_popularity = body.popularity.iter().copied().fold(0.0, f64::max);
        let ln_popularity = ln_popularity(&body.popularity);
        let neighbours = NeighbourTable::new(&body.neighbours);
        Ok(RecsModel { body, neighbours, ln_popularity, index, max_popularity })
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

    fn scorer(&self) -> Scorer<'_> {
        Scorer {
            popularity: &self.body.popularity,
            ln_popularity: &self.ln_popularity,
            repeat_rate: &self.body.repeat_rate,
            max_popularity: self.max_popularity,
            popular: &self.body.popular,
            neighbours: &self.neighbours,
            half_life_days: self.body.half_life_days,
        }
    }

    /// Every candidate with its normalised parts.
    pub fn candidates(&self, history: &IndexedHistory, now: i64) -> Candidates {
        self.scorer().candidates(history, now)
    }

    /// Calls `visit` with every candidate's served score (as [`RecsModel::served_scores`]) and its parts,
    /// without keeping the candidates.
    fn scan_served(&self, history: &IndexedHistory, now: i64, mut visit: impl FnMut(f64, &Parts)) {
        let scorer = self.scorer();
        match &self.body.ranker {
            Some(r) => {
                // The ranker's customer-level terms are the same in every candidate's parts.
                let mut f = None;
                scorer.scan(history, now, |p| {
                    let f = f.get_or_insert_with(|| r.scorer(Some(&p)));
                    visit(f(&p), &p)
                });
            }
            None => {
                let w = self.body.weights;
                scorer.scan(history, now, |p| {
                    visit(w.own * p.own + w.knn * p.knn + (w.popularity + TIE_BREAK) * p.popularity, &p)
                });
            }
        }
    }

    /// The k best candidates of a history by the served score, best first (ties by item index): the same
    /// as [`RecsModel::top`] of [`RecsModel::candidates`], without keeping every candidate's parts.
    pub fn top_of(&self, history: &IndexedHistory, now: i64, k: usize) -> Vec<u32> {
        let mut scored = Vec::new();
        self.scan_served(history, now, |s, p| scored.push((p.item, s)));
        top_by(scored, k)
    }

    /// Each candidate's served score: the ranker's when the model has one, else the linear blend's.
    pub fn served_scores(&self, candidates: &Candidates) -> Vec<(u32, f64)> {
        match &self.body.ranker {
            Some(r) => candidates.score_ranked(r).collect(),
            None => candidates.score(self.body.weights).collect(),
        }
    }

    /// The k best candidates by the served score, best first (ties by item index).
    pub fn top(&self, candidates: &Candidates, k: usize) -> Vec<u32> {
        match &self.body.ranker {
            Some(r) => candidates.top_ranked(r, k),
            None => candidates.top(self.body.weights, k),
        }
    }

    /// The customer's list: scored by the served scorer, then filtered by the rules (see [`RecsConfig`]). Pins come
    /// first when the customer is in their segment and they are available and not excluded; the
    /// recent-purchase rule and the brand cap apply to the scored products only.
    pub fn recommend(&self, customer: CustomerHistory<'_>, now: i64, rules: Rules<'_>) -> Vec<Rec> {
        let cfg = rules.config;
        let hist = self.index_history(customer.orders);
        // Each candidate with what its reason needs: (item, score, own part, kNN part, via).
        let w = self.body.weights;
        let ranked = self.body.ranker.is_some();
        let mut scored: Vec<(u32, f64, f64, f64, u32)> = Vec::new();
        self.scan_served(&hist, now, |score, p| {
            let (o, k) = if ranked {
                (if p.orders > 0 { 1.0 } else { 0.0 }, p.knn)
            } else {
                (w.own * p.own, w.knn * p.knn)
            };
            scored.push((p.item, score, o, k, p.via));
        });
        let best_first = |a: &(u32, f64, f64, f64, u32), b: &(u32, f64, f64, f64, u32)| {
            b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
        };
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
                let score =
                    self.index_of(&p.id).and_then(|i| scored.iter().find(|x| x.0 == i)).map_or(0.0, |x| x.1);
                out.push(Rec { product_id: p.id.clone(), score, reason: Reason::Pinned });
            }
        }
        let mut per_brand: HashMap<&str, usize> = HashMap::new();
        for b in out.iter().filter_map(|r| rules.catalogue.get(&r.product_id)?.brand.as_deref()) {
            *per_brand.entry(b).or_insert(0) += 1;
        }
        // Most lists fill from the first few candidates: order a head of them first, the rest only if the
        // rules skip that many (the head is then the best `head` of all, so the order is the same).
        let head = (cfg.count * 4 + 16).min(scored.len());
        if head > 0 && head < scored.len() {
            scored.select_nth_unstable_by(head - 1, best_first);
        }
        scored[..head].sort_unstable_by(best_first);
        let mut sorted_to = head;
        let mut at = 0;
        while at < scored.len() && out.len() < cfg.count {
            if at == sorted_to {
                scored[at..].sort_unstable_by(best_first);
                sorted_to = scored.len();
            }
            let (i, score, o, k, via) = scored[at];
            at += 1;
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
            let reason = if o > 0.0 && o >= k {
                Reason::BoughtBefore
            } else if k > 0.0 && via != u32::MAX {
                Reason::BoughtWith(self.body.products[via as usize].clone())
            } else {
                Reason::Popular
            };
            seen.insert(id.clone());
            out.push(Rec { product_id: id.clone(), score, reason });
        }
        out
    }
}
