//! Robustness on data the models cannot describe well: customers who never drop out
//! (the Pareto/NBD dropout integral then sits next to the singular point of its
//! hypergeometric series) and degenerate samples whose likelihood has no interior
//! maximum.

use std::time::Instant;

use nudge_models::{BgNbd, FitOptions, MbgNbd, ParetoNbd, Rfm, TransactionModel};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Exp, Gamma};

/// Customers with gamma-distributed Poisson purchase rates who never churn, observed
/// for between 10 and 60 time units each.
fn no_dropout_customers(n: usize, seed: u64) -> Vec<Rfm> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rates = Gamma::new(2.0, 1.0 / 8.0).expect("gamma");
    (0..n)
        .map(|_| {
            let t = rng.gen_range(10.0..60.0);
            let gap = Exp::new(rates.sample(&mut rng)).expect("exponential");
            let (mut x, mut t_x, mut now) = (0u32, 0.0, 0.0);
            loop {
                now += gap.sample(&mut rng);
                if now > t {
                    break;
                }
                x += 1;
                t_x = now;
            }
            Rfm::new(x, t_x, t)
        })
        .collect()
}

fn finite_params(p: [f64; 4]) -> bool {
    p.iter().all(|v| v.is_finite() && *v > 0.0 && *v < 1e14 && *v > 1e-14)
}

#[test]
fn pareto_fit_without_dropout_is_fast_and_finite() {
    let data = no_dropout_customers(500, 7);
    let start = Instant::now();
    let fit = ParetoNbd::fit(&data, &FitOptions::default()).expect("fit");
    let elapsed = start.elapsed().as_secs_f64();
    let p = fit.params;
    assert!(finite_params([p.r, p.alpha, p.s, p.beta]), "{fit:?}");
    assert!(fit.loglik.is_finite(), "{fit:?}");
    // The mean dropout rate s / beta must come out negligible against the purchase rate.
    assert!(p.s / p.beta < 1e-3 * p.r / p.alpha, "{fit:?}");
    // Predictions stay well defined at the fitted parameters.
    for c in &data {
        let alive = p.p_alive(c);
        assert!((0.0..=1.0).contains(&alive) && alive > 0.9, "{alive} for {c:?}");
    }
    assert!(elapsed < 1.0, "the fit took {elapsed:.2} s: {fit:?}");
}

#[test]
fn bgnbd_without_repeat_purchases_is_bounded_and_not_converged() {
    let data: Vec<Rfm> = (0..300).map(|i| Rfm::new(0, 0.0, 5.0 + f64::from(i % 40))).collect();
    match BgNbd::fit(&data, &FitOptions::default()) {
        Err(_) => {}
        Ok(fit) => {
            let p = fit.params;
            assert!(finite_params([p.r, p.alpha, p.a, p.b]), "{fit:?}");
            assert!(fit.loglik.is_finite() && fit.loglik < 0.0, "{fit:?}");
            assert!(!fit.converged, "{fit:?}");
        }
    }
}

#[test]
fn identical_customers_give_bounded_parameters() {
    // Every customer has the same history, so there is no heterogeneity to estimate and
    // the likelihood improves towards a degenerate limit.
    let data = vec![Rfm::new(3, 20.0, 30.0); 200];
    let opts = FitOptions::default();
    let reports = [
        BgNbd::fit(&data, &opts)
            .map(|f| ([f.params.r, f.params.alpha, f.params.a, f.params.b], f.loglik, f.converged)),
        MbgNbd::fit(&data, &opts)
            .map(|f| ([f.params.r, f.params.alpha, f.params.a, f.params.b], f.loglik, f.converged)),
        ParetoNbd::fit(&data, &opts)
            .map(|f| ([f.params.r, f.params.alpha, f.params.s, f.params.beta], f.loglik, f.converged)),
    ];
    for (p, ll, converged) in reports.into_iter().flatten() {
        assert!(finite_params(p), "{p:?} {ll} {converged}");
        assert!(ll.is_finite() && ll < 0.0, "{p:?} {ll} {converged}");
    }
}
