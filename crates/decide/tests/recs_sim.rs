//! The recs scenario's quality bar at a fixed seed.

use nudge_decide::sim::{SimArgs, baskets};

#[test]
fn blend_beats_own_frequency_overall() {
    let r = baskets::evaluate(&SimArgs { customers: 3_000, days: 365, seed: 17 });
    println!("{}\n{}", r.text, r.json["fit_metrics"]);
    let s = &r.json["scorers"];
    let ndcg = |name: &str, part: &str| s[name][part]["ndcg_at_10"].as_f64().unwrap();
    let recall = |name: &str, part: &str| s[name][part]["recall_at_10"].as_f64().unwrap();
    // The served model beats the customer's own purchase frequency overall by a clear margin, and does
    // not lose on the products bought before.
    assert!(ndcg("blend", "overall") >= ndcg("own", "overall") + 0.008, "{}", r.text);
    assert!(recall("blend", "overall") >= recall("own", "overall") + 0.008, "{}", r.text);
    assert!(ndcg("blend", "repeat") >= ndcg("own", "repeat"), "{}", r.text);
    assert!(recall("blend", "repeat") >= recall("own", "repeat"), "{}", r.text);
    assert!(ndcg("blend", "new") > ndcg("own", "new") + 0.005, "{}", r.text);
    assert_eq!(r.json["fit_metrics"]["served"], "ranker", "{}", r.text);
    // Each scorer is what it claims: own frequency finds repeats, kNN finds new products better than
    // popularity alone.
    assert!(ndcg("own", "repeat") > ndcg("popularity", "repeat"), "{}", r.text);
    assert!(ndcg("knn", "new") > ndcg("popularity", "new"), "{}", r.text);
    assert_eq!(r.scenario, "recs");
}

#[test]
fn same_seed_same_report() {
    let a = baskets::evaluate(&SimArgs { customers: 300, days: 180, seed: 3 });
    let b = baskets::evaluate(&SimArgs { customers: 300, days: 180, seed: 3 });
    assert_eq!(a.json, b.json);
}

#[test]
fn instacart_layout_round_trips_to_the_same_evaluation() {
    use nudge_decide::sim::instacart;
    let args = SimArgs { customers: 400, days: 200, seed: 9 };
    let world = baskets::world(&args);
    let files = instacart::write(&world);
    assert!(files.orders.starts_with(
        "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
    ));
    assert!(files.prior.starts_with("order_id,product_id,add_to_cart_order,reordered\n"));
    // One train order per customer: each customer's last.
    assert_eq!(files.orders.lines().filter(|l| l.contains(",train,")).count(), 400);
    let back = instacart::load(files.orders.as_bytes(), files.prior.as_bytes(), Some(files.train.as_bytes()))
        .unwrap();
    assert_eq!(back.orders.len(), world.orders.len());
    // Same customers, products and gaps between a customer's orders.
    for (a, b) in world.orders.iter().zip(&back.orders) {
        assert_eq!(a.customer, b.customer);
        assert_eq!(a.products, b.products);
    }
    for (a, b) in world.orders.windows(2).zip(back.orders.windows(2)) {
        if a[0].customer == a[1].customer {
            assert_eq!(a[1].at - a[0].at, b[1].at - b[0].at);
        }
    }
    let direct = baskets::evaluate_world(&world, "x");
    let loaded = baskets::evaluate_world(&back, "x");
    assert_eq!(direct.json["scorers"], loaded.json["scorers"]);
    assert_eq!(direct.json["weights"], loaded.json["weights"]);
    assert_eq!(direct.json["fit_metrics"], loaded.json["fit_metrics"]);
}

#[test]
fn bad_instacart_files_are_clear_errors() {
    use nudge_decide::sim::instacart;
    let prior = "order_id,product_id,add_to_cart_order,reordered\n1,7,1,0\n";
    let no_col = "order_id,user_id,eval_set,order_number,order_dow,days_since_prior_order\n1,1,prior,1,0,\n";
    let e = instacart::load(no_col.as_bytes(), prior.as_bytes(), None::<&[u8]>).unwrap_err().to_string();
    assert!(e.contains("orders.csv") && e.contains("order_hour_of_day"), "{e}");
    let bad = "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n\
               1,1,prior,1,0,25,\n";
    let e = instacart::load(bad.as_bytes(), prior.as_bytes(), None::<&[u8]>).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("order_hour_of_day"), "{e}");
    let bad_prior = "order_id,product_id\n1,x\n";
    let ok_orders = "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n\
                     1,1,prior,1,0,8,\n";
    let e =
        instacart::load(ok_orders.as_bytes(), bad_prior.as_bytes(), None::<&[u8]>).unwrap_err().to_string();
    assert!(e.contains("order_products__prior.csv") && e.contains("product_id"), "{e}");
    let w = instacart::load(ok_orders.as_bytes(), prior.as_bytes(), None::<&[u8]>).unwrap();
    assert_eq!(w.orders.len(), 1);
    assert_eq!(w.orders[0].products, vec!["p7".to_string()]);
    assert_eq!(w.products[0].id, "p7");
}
