//! Property tests: analytic gradients against finite differences, probabilities in
//! range, and monotone expectations.

use nudge_models::{BgNbd, GammaGamma, MbgNbd, ParetoNbd, Rfm, Spend, TransactionModel};
use proptest::prelude::*;

/// A customer history with `0 <= t_x <= T` and `t_x = 0` when `x = 0`.
fn history() -> impl Strategy<Value = Rfm> {
    (0u32..40, 0.0f64..1.0, 0.5f64..100.0).prop_map(|(x, frac, t)| {
        let t_x = if x == 0 { 0.0 } else { frac * t };
        Rfm::new(x, t_x, t)
    })
}

fn params() -> impl Strategy<Value = [f64; 4]> {
    (0.05f64..5.0, 0.5f64..50.0, 0.1f64..5.0, 0.2f64..50.0).prop_map(|(a, b, c, d)| [a, b, c, d])
}

/// Checks an analytic gradient against central differences with relative steps.
fn check_gradient(p: [f64; 4], f: impl Fn([f64; 4]) -> (f64, [f64; 4])) {
    let (ll, g) = f(p);
    for i in 0..4 {
        let h = 1e-6 * p[i];
        let mut up = p;
        let mut dn = p;
        up[i] += h;
        dn[i] -= h;
        let fd = (f(up).0 - f(dn).0) / (2.0 * h);
        // Rounding in the two log-likelihood values (whose log-gamma terms can be near
        // 100 in size) limits the finite difference.
        let noise = 4e-15 * (100.0 + ll.abs()) / h;
        let scale = g[i].abs().max(fd.abs());
        assert!(
            (g[i] - fd).abs() <= 1e-5 * scale + noise,
            "component {i}: analytic {} vs numeric {fd} at {p:?}",
            g[i]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bgnbd_gradient(p in params(), c in history()) {
        check_gradient(p, |q| BgNbd { r: q[0], alpha: q[1], a: q[2], b: q[3] }.log_likelihood_grad(&c));
    }

    #[test]
    fn mbgnbd_gradient(p in params(), c in history()) {
        check_gradient(p, |q| MbgNbd { r: q[0], alpha: q[1], a: q[2], b: q[3] }.log_likelihood_grad(&c));
    }

    #[test]
    fn pareto_gradient(p in params(), c in history()) {
        check_gradient(p, |q| ParetoNbd { r: q[0], alpha: q[1], s: q[2], beta: q[3] }.log_likelihood_grad(&c));
    }

    #[test]
    fn gamma_gamma_gradient(p in params(), x in 1u32..30, mean in 0.5f64..500.0) {
        let s = Spend { x, mean };
        check_gradient(p, |q| {
            let (ll, g) = GammaGamma { p: q[0], q: q[1] + 1.0, v: q[2] }.log_likelihood_grad(&s);
            (ll, [g[0], g[1], g[2], 0.0])
        });
    }

    #[test]
    fn p_alive_is_a_probability(p in params(), c in history()) {
        let bg = BgNbd { r: p[0], alpha: p[1], a: p[2], b: p[3] }.p_alive(&c);
        let mbg = MbgNbd { r: p[0], alpha: p[1], a: p[2], b: p[3] }.p_alive(&c);
        let pn = ParetoNbd { r: p[0], alpha: p[1], s: p[2], beta: p[3] }.p_alive(&c);
        for v in [bg, mbg, pn] {
            prop_assert!((0.0..=1.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn expected_purchases_increase_with_time(p in params(), t in 0.1f64..200.0, dt in 0.1f64..50.0) {
        let models: [Box<dyn Fn(f64) -> f64>; 3] = [
            Box::new(move |t| BgNbd { r: p[0], alpha: p[1], a: p[2], b: p[3] }.expected_purchases(t)),
            Box::new(move |t| MbgNbd { r: p[0], alpha: p[1], a: p[2], b: p[3] }.expected_purchases(t)),
            Box::new(move |t| ParetoNbd { r: p[0], alpha: p[1], s: p[2], beta: p[3] }.expected_purchases(t)),
        ];
        for e in &models {
            let (a, b) = (e(t), e(t + dt));
            prop_assert!(a >= 0.0 && b >= a * (1.0 - 1e-12), "{a} then {b}");
        }
    }
}
