//! Recommendations served: the active `recs` registry version, the catalogue, and a precomputed list per
//! customer.
//!
//! - [`Recs::fill`] is what scoring calls for each scored customer (after the other families, so the
//!   segment and the preferred category are known for segment pins): the model's list under the
//!   `[recs]` rules, written into `ScoreSet.products` (`recs.count` of them) and into the per-customer
//!   cache (up to [`MAX_COUNT`], so the API can answer any count from it).
//! - The catalogue is the stored `products` table (newest record per product) joined with what the
//!   version learned from order lines (a product seen only in orders has the line's title, is available
//!   unless the catalogue says otherwise, and takes the orders' currency). Product events update it as
//!   the pipeline processes them.
//! - The cache holds, per customer, product numbers (into an append-only table of ids), scores and
//!   reasons: about 12 bytes a product. Answers join the current catalogue facts, so a price change shows
//!   at once and a product that went unavailable since is left out.
//!
//! With no active version nothing is recommended: empty lists, no error.

use crate::fit_send_time::SCAN_PAGE;
use anyhow::Context;
use nudge_decide::recs::{
    self as model, Basket, Catalogue, CustomerHistory, Reason, RecsConfig, RecsModel, Rules,
};
use nudge_model::{CustomerId, RecommendedProduct, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use nudge_store::{ModelVersion, Store, StoredProduct};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The most products a list holds (the API's `count` is 1–20, as is `recs.count`).
pub const MAX_COUNT: usize = 20;

/// What a `recs` version learned from order lines about a product (its body's `order_products`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderProduct {
    pub title: String,
    /// The currency of the newest order holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A `recs` registry version read for serving: the model, what orders said about its products, and the
/// currency most orders were in (for catalogue prices, which Shopify sends without one).
pub struct ServedVersion {
    pub id: String,
    pub model: RecsModel,
    pub order_products: HashMap<String, OrderProduct>,
    pub currency: Option<String>,
}

impl ServedVersion {
    pub fn from_version(v: &ModelVersion) -> anyhow::Result<ServedVersion> {
        let model = RecsModel::from_body(&v.body).with_context(|| format!("model version {}", v.id))?;
        let order_products: HashMap<String, OrderProduct> = match v.body.get("order_products") {
            Some(x) => serde_json::from_value(x.clone())
                .with_context(|| format!("model version {}: order_products", v.id))?,
            None => HashMap::new(),
        };
        let currency = v.body.get("currency").and_then(|c| c.as_str()).map(str::to_string);
        Ok(ServedVersion { id: v.id.clone(), model, order_products, currency })
    }
}

/// One product's facts as answers show them.
#[derive(Debug, Clone, Default)]
struct Facts {
    title: String,
    url: Option<String>,
    image_url: Option<String>,
    price: Option<String>,
    currency: Option<String>,
    available: bool,
}

/// The catalogue as the rules and the answers read it.
#[derive(Default)]
struct CatalogueView {
    rules: Catalogue,
    facts: HashMap<String, Facts>,
    /// Each catalogue record's `updated_at` (products known only from orders have none).
    updated: HashMap<String, Timestamp>,
}

/// Product ids by number, append-only (cached lists hold numbers).
#[derive(Default)]
struct Interner {
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Interner {
    fn get_or_insert(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let a: Arc<str> = Arc::from(id);
        let i = self.ids.len() as u32;
        self.ids.push(a.clone());
        self.index.insert(a, i);
        i
    }
}

/// One cached recommendation: the product's number, its score and why.
#[derive(Debug, Clone, Copy)]
struct Cached {
    product: u32,
    score: f32,
    reason: u8,
}

const REASONS: [&str; 4] = ["pinned", "bought_before", "bought_with", "popular"];

fn reason_code(r: &Reason) -> u8 {
    match r {
        Reason::Pinned => 0,
        Reason::BoughtBefore => 1,
        Reason::BoughtWith(_) => 2,
        Reason::Popular => 3,
    }
}

/// A customer's list as the cache keeps it.
struct CachedList {
    version: Arc<str>,
    generated_at: Timestamp,
    recs: Box<[Cached]>,
}

/// A customer's recommendations as the API answers them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub customer_id: String,
    pub model_version: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub generated_at: Option<Timestamp>,
    pub products: Vec<RecommendedProduct>,
}

/// The recommendations being served (see the module documentation).
pub struct Recs {
    config: RecsConfig,
    /// The config with `count` = [`MAX_COUNT`]: what is computed and cached.
    wide: RecsConfig,
    active: RwLock<Option<Arc<ServedVersion>>>,
    catalogue: RwLock<CatalogueView>,
    interner: RwLock<Interner>,
    cache: RwLock<HashMap<CustomerId, CachedList>>,
}

/// A stored product record read back (`None` when it is unreadable; logged).
fn read_record(p: &StoredProduct) -> Option<nudge_model::Product> {
    match serde_json::from_str(&p.record) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(product = %p.id, error = %e, "an unreadable catalogue record is skipped");
            None
        }
    }
}

/// The customer's orders as baskets: the product ids of each order's lines (each once), cancelled orders
/// and lines without a product left out.
pub fn baskets_of(state: &CustomerState) -> Vec<Basket> {
    let customer = state.customer.to_string();
    let mut out: Vec<Basket> = state
        .orders
        .values()
        .filter(|o| !o.cancelled)
        .filter_map(|o| {
            let mut products: Vec<String> = Vec::new();
            for p in o.items.iter().filter_map(|i| i.product_id.as_ref()) {
                if !products.contains(p) {
                    products.push(p.clone());
                }
            }
            (!products.is_empty()).then(|| Basket {
                customer: customer.clone(),
                at: o.created_at.unix_timestamp(),
                products,
            })
        })
        .collect();
    out.sort_by_key(|b| b.at);
    out
}

/// The rules' view of a catalogue record.
fn rules_product(p: &nudge_model::Product) -> model::Product {
    model::Product {
        id: p.id.clone(),
        category: p.category.clone(),
        brand: p.vendor.clone(),
        tags: p.tags.clone(),
        available: p.available.unwrap_or(true),
    }
}

impl Recs {
    pub fn new(config: RecsConfig) -> Recs {
        let wide = RecsConfig { count: MAX_COUNT, ..config.clone() };
        Recs {
            config,
            wide,
            active: RwLock::new(None),
            catalogue: RwLock::new(CatalogueView::default()),
            interner: RwLock::new(Interner::default()),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// `recs.count`: how many products a list has unless asked for another number.
    pub fn default_count(&self) -> usize {
        self.config.count
    }

    /// The id of the version serving, if any.
    pub fn version(&self) -> Option<String> {
        self.active.read().expect("recs lock").as_ref().map(|v| v.id.clone())
    }

    /// Reads the active `recs` version (none: nothing is recommended) and the catalogue, and empties the
    /// cache. Returns the version id serving.
    pub async fn load(&self, store: &dyn Store) -> anyhow::Result<Option<String>> {
        let version = store.active_model_version_of(nudge_decide::families::RECS).await?;
        let served = match &version {
            Some(v) => Some(Arc::new(ServedVersion::from_version(v)?)),
            None => None,
        };
        let products = store.products(None).await?;
        self.install(served, &products);
        Ok(self.version())
    }

    /// Serves `version` (or nothing) with the catalogue `products`; the cache starts empty.
    pub fn install(&self, version: Option<Arc<ServedVersion>>, products: &[StoredProduct]) {
        let mut view = CatalogueView::default();
        if let Some(v) = &version {
            for (i, id) in v.model.body.products.iter().enumerate() {
                let o = v.order_products.get(id);
                view.rules.insert(model::Product { id: id.clone(), available: true, ..Default::default() });
                view.facts.insert(
                    id.clone(),
                    Facts {
                        title: o.map(|o| o.title.clone()).unwrap_or_else(|| id.clone()),
                        currency: o.and_then(|o| o.currency.clone()).or_else(|| v.currency.clone()),
                        available: true,
                        ..Default::default()
                    },
                );
                debug_assert_eq!(v.model.index_of(id), Some(i as u32));
            }
        }
        *self.catalogue.write().expect("recs lock") = view;
        *self.active.write().expect("recs lock") = version;
        for p in products {
            if let Some(r) = read_record(p) {
                self.upsert_product(&r);
            }
        }
        self.cache.write().expect("recs lock").clear();
    }

    /// A product record the pipeline processed; an older record than the one known is ignored.
    pub fn upsert_product(&self, p: &nudge_model::Product) {
        if self.catalogue.read().expect("recs lock").updated.get(&p.id).is_some_and(|t| *t > p.updated_at) {
            return;
        }
        let fallback_currency = {
            let active = self.active.read().expect("recs lock");
            active.as_ref().and_then(|v| {
                v.order_products.get(&p.id).and_then(|o| o.currency.clone()).or_else(|| v.currency.clone())
            })
        };
        let mut view = self.catalogue.write().expect("recs lock");
        view.updated.insert(p.id.clone(), p.updated_at);
        view.rules.insert(rules_product(p));
        view.facts.insert(
            p.id.clone(),
            Facts {
                title: p.title.clone(),
                url: p.url.clone(),
                image_url: p.image_url.clone(),
                price: p.price.clone(),
                currency: p.currency.clone().or(fallback_currency),
                available: p.available.unwrap_or(true),
            },
        );
    }

    /// The segments pins may target for a scored customer: the segment's name and `category:NAME` for
    /// the preferred category.
    fn segments_of(scores: &ScoreSet) -> Vec<String> {
        let mut s = vec![scores.segment.as_str().to_string()];
        if let Some(c) = scores.labels.get(nudge_decide::names::PREFERRED_CATEGORY) {
            s.push(format!("category:{c}"));
        }
        s
    }

    /// Computes the customer's list (what scoring calls, after every other family): caches it and puts
    /// the first `recs.count` into `out.products`. Nothing when no version serves.
    pub fn fill(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        let Some(active) = self.active.read().expect("recs lock").clone() else { return };
        let orders = baskets_of(state);
        let segments = Self::segments_of(out);
        let recs = {
            let view = self.catalogue.read().expect("recs lock");
            active.model.recommend(
                CustomerHistory { orders: &orders, segments: &segments },
                now.unix_timestamp(),
                Rules { config: &self.wide, catalogue: &view.rules },
            )
        };
        let numbers: Vec<u32> = {
            let known = self.interner.read().expect("recs lock");
            let missing = recs.iter().any(|r| !known.index.contains_key(r.product_id.as_str()));
            if missing {
                drop(known);
                let mut w = self.interner.write().expect("recs lock");
                recs.iter().map(|r| w.get_or_insert(&r.product_id)).collect()
            } else {
                recs.iter().map(|r| known.index[r.product_id.as_str()]).collect()
            }
        };
        let cached: Box<[Cached]> = recs
            .iter()
            .zip(&numbers)
            .map(|(r, &n)| Cached { product: n, score: r.score as f32, reason: reason_code(&r.reason) })
            .collect();
        out.products = {
            let view = self.catalogue.read().expect("recs lock");
            recs.iter()
                .take(self.config.count)
                .filter_map(|r| product_of(&view, &r.product_id, r.score, reason_code(&r.reason)))
                .collect()
        };
        let version: Arc<str> = Arc::from(active.id.as_str());
        self.cache
            .write()
            .expect("recs lock")
            .insert(state.customer.clone(), CachedList { version, generated_at: now, recs: cached });
    }

    /// The customer's cached list (the first `count`), joined with the current catalogue; `None` when the
    /// customer has no cached list.
    pub fn cached(&self, customer: &CustomerId, count: usize) -> Option<Answer> {
        let cache = self.cache.read().expect("recs lock");
        let list = cache.get(customer)?;
        let interner = self.interner.read().expect("recs lock");
        let view = self.catalogue.read().expect("recs lock");
        let products = list
            .recs
            .iter()
            .filter_map(|c| product_of(&view, &interner.ids[c.product as usize], c.score as f64, c.reason))
            .take(count)
            .collect();
        Some(Answer {
            customer_id: customer.to_string(),
            model_version: Some(list.version.to_string()),
            generated_at: Some(list.generated_at),
            products,
        })
    }

    /// How many customers have a cached list.
    pub fn cached_customers(&self) -> usize {
        self.cache.read().expect("recs lock").len()
    }

    /// Forgets a customer's list (an erasure).
    pub fn forget(&self, customer: &CustomerId) {
        self.cache.write().expect("recs lock").remove(customer);
    }
}

/// A recommended product as answers show it, from the current catalogue; `None` when it is no longer
/// available.
fn product_of(view: &CatalogueView, id: &str, score: f64, reason: u8) -> Option<RecommendedProduct> {
    let f = view.facts.get(id)?;
    if !f.available {
        return None;
    }
    Some(RecommendedProduct {
        id: id.to_string(),
        title: f.title.clone(),
        url: f.url.clone(),
        image_url: f.image_url.clone(),
        price: f.price.clone(),
        currency: f.price.as_ref().and(f.currency.clone()),
        reason: REASONS[reason as usize % REASONS.len()].to_string(),
        score: (score * 1e6).round() / 1e6,
    })
}

/// Scores every stored customer once (which fills their cached lists), page by page, each page split over
/// the machine's cores (blocking threads: decoding and scoring are CPU work); what boot and an activation
/// start in the background. Returns how many customers were scored.
pub async fn precompute(store: &dyn Store, scoring: &Arc<crate::pipeline::Scoring>) -> anyhow::Result<usize> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store.scan_states(after.clone(), SCAN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        let full = page.len() == SCAN_PAGE;
        let page = Arc::new(page);
        let chunk = page.len().div_ceil(workers);
        let now = time::OffsetDateTime::now_utc();
        let mut tasks = Vec::with_capacity(workers);
        for w in 0..workers {
            let (page, scoring) = (page.clone(), scoring.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut n = 0;
                for s in page.iter().skip(w * chunk).take(chunk) {
                    match CustomerState::decode(&s.state) {
                        Ok(state) => {
                            scoring.score(&state, now);
                            n += 1;
                        }
                        Err(e) => tracing::warn!(
                            customer = %s.customer,
                            error = %e,
                            "an unreadable state is not recommended for"
                        ),
                    }
                }
                n
            }));
        }
        for t in tasks {
            n += t.await.context("a precompute worker failed")?;
        }
        if !full {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(n)
}

/// [`precompute`] on a task of its own, logged when done.
pub fn precompute_in_background(store: Arc<dyn Store>, scoring: Arc<crate::pipeline::Scoring>) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match precompute(&*store, &scoring).await {
            Ok(n) => tracing::info!(
                customers = n,
                took_ms = started.elapsed().as_millis() as u64,
                "recommendations precomputed"
            ),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "precomputing recommendations failed"),
        }
    });
}

/// The customer's recommendations: the cached list, or else computed from the stored state (which caches
/// it). `Ok(None)` for a customer the store does not know.
pub async fn answer(
    store: &dyn Store,
    scoring: &crate::pipeline::Scoring,
    recs: &Recs,
    customer: &CustomerId,
    count: usize,
) -> anyhow::Result<Option<Answer>> {
    if let Some(a) = recs.cached(customer, count) {
        return Ok(Some(a));
    }
    let Some(stored) = store.load_states(std::slice::from_ref(customer)).await?.into_iter().next() else {
        return Ok(None);
    };
    let state: CustomerState = CustomerState::decode(&stored.state)
        .with_context(|| format!("the stored state of {customer} is unreadable"))?;
    scoring.score(&state, time::OffsetDateTime::now_utc());
    Ok(Some(recs.cached(customer, count).unwrap_or(Answer {
        customer_id: customer.to_string(),
        model_version: None,
        generated_at: None,
        products: Vec::new(),
    })))
}

/// `nudge recs …`.
#[derive(clap::Subcommand, Debug)]
pub enum RecsCmd {
    /// Print a customer's recommended products with the reason for each.
    Show {
        /// The customer key (`shopify:880012`).
        #[arg(long)]
        customer: String,
        /// How many (1–20; `recs.count` by default).
        #[arg(long)]
        count: Option<usize>,
        /// The answer as the API gives it.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run_cli(cfg: &crate::config::Config, cmd: RecsCmd) -> anyhow::Result<()> {
    let RecsCmd::Show { customer, count, json } = cmd;
    let id: CustomerId = customer.parse().map_err(|e| anyhow::anyhow!("--customer: {e}"))?;
    let count = count.unwrap_or(cfg.recs.count);
    if !(1..=MAX_COUNT).contains(&count) {
        anyhow::bail!("--count: {count} is not between 1 and {MAX_COUNT}");
    }
    let store = crate::app::open_store(cfg).await?;
    // Scored as the server scores (the segment and preferred category decide segment pins).
    let scoring =
        crate::pipeline::Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    crate::models_cli::load_active_scorer(&*store, &scoring, cfg).await?;
    crate::decision_models::load(&*store, &scoring).await?;
    let recs = Arc::new(Recs::new(cfg.recs.clone()));
    scoring.set_recs(recs.clone());
    recs.load(&*store).await?;
    let Some(a) = answer(&*store, &scoring, &recs, &id, count).await? else {
        anyhow::bail!("no customer {id} in the store");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    match &a.model_version {
        None => println!(
            "{id}: no recommendations (no active `recs` version: `nudge models fit --family recs --activate`)"
        ),
        Some(v) => {
            println!("{id}: {} recommended products (model {v})", a.products.len());
            for (i, p) in a.products.iter().enumerate() {
                let price = match (&p.price, &p.currency) {
                    (Some(pr), Some(c)) => format!("{pr} {c}"),
                    (Some(pr), None) => pr.clone(),
                    _ => "-".into(),
                };
                println!(
                    "{:>2}. {:<24} {:<32} {:>12}  {:<13} {}",
                    i + 1,
                    p.id,
                    p.title,
                    price,
                    p.reason,
                    p.url.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
