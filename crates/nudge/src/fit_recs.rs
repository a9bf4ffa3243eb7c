//! `nudge models fit --family recs`: the recommendation model (README, "Recommendations") from the stored
//! customers' orders and the stored catalogue, saved as a `recs` registry version.
//!
//! Baskets are the product ids of each order's lines (cancelled orders left out) within `recs.lookback`
//! of now. The products are the catalogue's, plus every product seen only in orders: those are taken as
//! available (nothing says otherwise) and are shown with their order line's title. The version's body is
//! the model's, plus `order_products` (each ordered product's title and currency from its newest order)
//! and `currency` (the currency most orders were in), which serving uses for what the catalogue lacks.

use crate::config::Config;
use crate::fit_send_time::{all_states, finish, save_and_activate};
use crate::models_cli::FitArgs;
use crate::recs::{OrderProduct, baskets_of};
use anyhow::anyhow;
use nudge_decide::recs::{self as model, FitOptions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A fitted `recs` body and its summary table.
pub struct Fitted {
    pub body: Value,
    pub table: String,
}

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    let f = fit_store(&*store, &cfg.recs).await?;
    let saved = save_and_activate(&*store, nudge_decide::families::RECS, &f.body, args).await?;
    finish(nudge_decide::families::RECS, &f.body, saved, args.json, f.table)
}

/// Fits on the store's orders and catalogue, saves the version and activates it (what `--activate`
/// does, for the demo and tests); returns the version id.
pub async fn fit_and_activate(
    store: &dyn nudge_store::Store,
    recs: &nudge_decide::recs::RecsConfig,
) -> anyhow::Result<String> {
    let fitted = fit_store(store, recs).await?;
    let digest = fitted.body.get("data_digest").and_then(Value::as_str).unwrap_or("00000000");
    let id = crate::models_cli::save_new_version(
        store,
        "recs-v",
        digest,
        nudge_decide::families::RECS,
        fitted.body.clone(),
    )
    .await?;
    store.activate_model_version(&id).await?;
    Ok(id)
}

/// Fits on the store's orders and catalogue (see the module documentation); saves nothing.
pub async fn fit_store(
    store: &dyn nudge_store::Store,
    recs: &nudge_decide::recs::RecsConfig,
) -> anyhow::Result<Fitted> {
    let states = all_states(store).await?;
    let catalogue = store.products(None).await?;
    let now = time::OffsetDateTime::now_utc();
    // What orders say about each product: the newest order's line title and currency.
    let mut ordered: HashMap<String, (i64, OrderProduct)> = HashMap::new();
    let mut currencies: BTreeMap<String, usize> = BTreeMap::new();
    let mut baskets = Vec::new();
    for s in &states {
        for o in s.orders.values().filter(|o| !o.cancelled) {
            let at = o.created_at.unix_timestamp();
            let currency = o.total.currency.to_string();
            *currencies.entry(currency.clone()).or_insert(0) += 1;
            for i in &o.items {
                let Some(id) = &i.product_id else { continue };
                let e = ordered.entry(id.clone()).or_insert((
                    i64::MIN,
                    OrderProduct { title: i.title.clone(), currency: Some(currency.clone()) },
                ));
                if at >= e.0 {
                    *e = (at, OrderProduct { title: i.title.clone(), currency: Some(currency.clone()) });
                }
            }
        }
        baskets.extend(baskets_of(s));
    }
    let mut products: Vec<model::Product> = Vec::new();
    let mut in_catalogue = std::collections::HashSet::new();
    for p in &catalogue {
        let Ok(r) = serde_json::from_str::<nudge_model::Product>(&p.record) else { continue };
        in_catalogue.insert(r.id.clone());
        products.push(model::Product {
            id: r.id.clone(),
            category: r.category.clone(),
            brand: r.vendor.clone(),
            tags: r.tags.clone(),
            available: r.available.unwrap_or(true),
        });
    }
    let mut only_ordered: Vec<&String> = ordered.keys().filter(|id| !in_catalogue.contains(*id)).collect();
    only_ordered.sort();
    for id in &only_ordered {
        products.push(model::Product { id: (*id).clone(), available: true, ..Default::default() });
    }
    let opts = FitOptions {
        now: Some(now.unix_timestamp()),
        lookback_days: recs.lookback_days(),
        ..Default::default()
    };
    let n_baskets = baskets.len();
    let started = std::time::Instant::now();
    let fitted = tokio::task::spawn_blocking(move || model::fit(&baskets, &products, &opts))
        .await?
        .map_err(|e| anyhow!("{e}; recommendations are learned from the stored customers' orders"))?;
    let took = started.elapsed();
    let mut value = fitted.to_body();
    let currency = currencies.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c.clone());
    let order_products: BTreeMap<&String, &OrderProduct> =
        ordered.iter().filter(|(id, _)| fitted.index_of(id).is_some()).map(|(id, (_, o))| (id, o)).collect();
    if let Value::Object(m) = &mut value {
        m.insert("order_products".into(), serde_json::to_value(&order_products)?);
        m.insert("currency".into(), currency.clone().map_or(Value::Null, Value::String));
    }
    let mut t = String::new();
    let b = &fitted.body;
    t.push_str(&format!(
        "recs: {} orders of {} customers with products ({} in the {}-day lookback), {} products ({} in the catalogue, {} seen only in orders); fitted in {:.2} s\n",
        b.training_window["orders"],
        b.training_window["customers"],
        n_baskets,
        recs.lookback_days(),
        b.products.len(),
        in_catalogue.len(),
        only_ordered.len(),
        took.as_secs_f64(),
    ));
    t.push_str(&format!(
        "blend weights: own {:.2}, item kNN {:.2}, popularity {:.2}\n",
        b.weights.own, b.weights.knn, b.weights.popularity
    ));
    match b.metrics.get("validation_customers").and_then(Value::as_u64) {
        Some(n) if b.metrics.get("blend").is_some() => {
            t.push_str(&format!("held-out last orders of {n} customers:\nscorer      NDCG@10  recall@10\n"));
            for k in ["popularity", "own", "knn", "blend"] {
                let m = &b.metrics[k];
                let f = |x: &Value| x.as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
                t.push_str(&format!("{k:<10}  {:>7}  {:>9}\n", f(&m["ndcg_at_10"]), f(&m["recall_at_10"])));
            }
        }
        _ => t.push_str(&format!(
            "no held-out metrics: {}\n",
            b.metrics.get("reason").and_then(Value::as_str).unwrap_or("too few repeat customers")
        )),
    }
    Ok(Fitted { body: value, table: t })
}
