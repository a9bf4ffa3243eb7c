//! The dropout integral of the Pareto/NBD likelihood in hypergeometric form,
//! `S(b, k, z) = Σ (b)_n zⁿ / (n! (k + n)) = 2F1(b, k; k + 1; z) / k
//! = ∫₀¹ u^(k−1) (1 − z u)^(−b) du`, with its derivatives in `b`, `k` and `z`.
//!
//! The power series needs about `(b z + 40) / (1 − z)` terms, which explodes as `z`
//! approaches one (one scale parameter much larger than the other, as with data that
//! show little dropout). Three evaluations are combined so that the cost stays bounded:
//!
//! * the power series itself while it is short;
//! * the `1 − z` connection formula, which for `c = k + 1`, `a = b` collapses to
//!   `S = Γ(k) Γ(1−b) / Γ(k+1−b) · z^(−k) + (1−z)^(1−b) / (b−1) · 2F1(1, k+1−b; 2−b; 1−z)`,
//!   accepted only when its two parts do not cancel badly (they do for `b` near an
//!   integer, where the formula has a removable singularity, and when `z^(−k)` is large);
//! * otherwise a split of the integral: `u ∈ [0, ρ/z]` by the power series at argument
//!   `ρ = 1/2`, and the rest by adaptive Gauss-Kronrod quadrature in `p = −ln(1 − z u)`,
//!   where the integrand `exp((k−1) ln(1 − e^(−p)) + (b−1) p)` is smooth.
//!
//! Every path returns `ln S` and the derivatives of `ln S`, each accurate to about
//! 1e-12 relative, so the gradient stays consistent with the value across the switches.

use crate::special::{digamma, ln_gamma, ln_gamma_signed, log_add_exp};

/// The argument up to which the power series is always used, and the split point of
/// the quadrature path.
const RHO: f64 = 0.5;

/// Series lengths (estimated) below which the power series is preferred to the
/// connection formula, and up to which it is used before falling back to quadrature.
const SHORT_SERIES: f64 = 300.0;
const LONG_SERIES: f64 = 3000.0;

/// The largest ratio of the sum of magnitudes to the result accepted from the
/// connection formula; with log-gamma values good to a few units in 1e-15, the
/// relative error of an accepted result stays below about 1e-12.
const MAX_CANCELLATION: f64 = 200.0;

/// The hard limit on series terms; reached only for astronomically large `b`.
const MAX_TERMS: usize = 1_000_000;

/// `ln S` and the derivatives of `ln S` with respect to `(b, k, z)`.
type LnS = (f64, [f64; 3]);

/// `ln S(b, k, z)` and its gradient in `(b, k, z)` for `b > 0`, `k > 0`, `0 ≤ z < 1`
/// and `k + 1 − b > 0`. `w` must equal `1 − z`; callers pass it separately because
/// they can usually form it without cancellation.
pub(crate) fn ln_s(b: f64, k: f64, z: f64, w: f64) -> LnS {
    if z <= RHO {
        return direct(b, k, z);
    }
    let terms = (b.max(1.0) * z + 40.0) / w;
    if terms <= SHORT_SERIES {
        return direct(b, k, z);
    }
    if let Some(v) = connection(b, k, z, w) {
        return v;
    }
    if terms <= LONG_SERIES {
        return direct(b, k, z);
    }
    quadrature(b, k, z, w)
}

/// The power series `Σ c_n zⁿ`, `c_n = (b)_n / (n! (k+n))`, with its derivatives.
pub(crate) fn direct(b: f64, k: f64, z: f64) -> LnS {
    let mut c = 1.0 / k;
    let mut zp = 1.0;
    let mut sum = c;
    let mut sum_b = 0.0;
    let mut sum_k = -c / k;
    let mut sum_z = 0.0;
    let mut harmonic = 0.0;
    for n in 1..MAX_TERMS {
        let nf = n as f64;
        c *= (b + nf - 1.0) / nf * (k + nf - 1.0) / (k + nf);
        harmonic += 1.0 / (b + nf - 1.0);
        sum_z += nf * c * zp;
        zp *= z;
        let term = c * zp;
        sum += term;
        sum_b += term * harmonic;
        sum_k -= term / (k + nf);
        let ratio = (b + nf) / (nf + 1.0) * z;
        if ratio < 1.0 && term <= 1e-17 * sum && nf * c * zp <= 1e-17 * sum_z.max(1e-300) {
            break;
        }
    }
    (sum.ln(), [sum_b / sum, sum_k / sum, sum_z / sum])
}

/// The `1 − z` connection formula; `None` when its parts cancel too much to trust.
pub(crate) fn connection(b: f64, k: f64, z: f64, w: f64) -> Option<LnS> {
    let c1 = k + 1.0 - b;
    let c2 = 2.0 - b;
    if c1 <= 0.0 || (b - b.round()).abs() < 1e-9 {
        return None;
    }
    let ln_z = z.ln();
    let ln_w = w.ln();
    // A = Γ(k) Γ(1−b) / Γ(k+1−b) · z^(−k), with its relative derivatives.
    let (lg, sign_a) = ln_gamma_signed(1.0 - b);
    let pieces = [ln_gamma(k), lg, -ln_gamma(c1), -k * ln_z];
    let ln_a = pieces.iter().sum::<f64>();
    // Rounding in the log-gamma values is absolute in ln A, so it is amplified by the
    // size of those values as well as by the cancellation between A and B.
    // Near an integer `b` the reflection formula inside Γ(1−b) and ψ(1−b) magnifies the
    // rounding of `π b` by `1/ε` and `1/ε²`, with `ε` the distance to that integer.
    let eps = (b - b.round()).abs();
    let ln_a_size = 1.0 + pieces.iter().map(|v| v.abs()).sum::<f64>() + b / eps;
    let da0_size = da_abs(b, k, c1, eps);
    let da = [digamma(c1) - digamma(1.0 - b), digamma(k) - digamma(c1) - ln_z, -k / z];
    // F = Σ t_n with t_n = (c1)_n / (c2)_n wⁿ, and Σ t_n ∂ln t_n / ∂(b, k), Σ n t_n.
    let (mut t, mut f, mut f_abs, mut f_b, mut f_k, mut f_n) = (1.0f64, 1.0, 1.0, 0.0, 0.0, 0.0);
    let (mut h_b, mut h_k) = (0.0, 0.0);
    let mut done = false;
    for n in 1..MAX_TERMS {
        let j = (n - 1) as f64;
        h_b += 1.0 / (c2 + j) - 1.0 / (c1 + j);
        h_k += 1.0 / (c1 + j);
        t *= (c1 + j) / (c2 + j) * w;
        let nf = n as f64;
        f += t;
        f_abs += t.abs();
        f_b += t * h_b;
        f_k += t * h_k;
        f_n += nf * t;
        let ratio = ((c1 + nf) / (c2 + nf)).abs() * w;
        if c2 + nf > 0.0 && ratio < 1.0 && t.abs() <= 1e-17 * f_abs && (nf * t).abs() <= 1e-17 * f_n.abs() {
            done = true;
            break;
        }
    }
    if !done || !f_abs.is_finite() {
        return None;
    }
    // B = w^(1−b) / (b−1) · F. Everything is scaled by e^(−m) to stay in range.
    let ln_pre = (1.0 - b) * ln_w - (b - 1.0).abs().ln();
    let sign_pre = (b - 1.0).signum();
    let m = ln_a.max(ln_pre + f_abs.ln());
    let a = sign_a * (ln_a - m).exp();
    let pre = sign_pre * (ln_pre - m).exp();
    let s = a + pre * f;
    let mag = a.abs() * ln_a_size + pre.abs() * f_abs;
    if !(s > 0.0 && s.is_finite()) || mag > MAX_CANCELLATION * s {
        return None;
    }
    let bf = pre * f;
    let parts = [
        [a * da[0], bf * (-ln_w - 1.0 / (b - 1.0)), pre * f_b],
        [a * da[1], pre * f_k, 0.0],
        [a * da[2], bf * (b - 1.0) / w, -pre * f_n / w],
    ];
    let mut d = [0.0; 3];
    for (di, p) in d.iter_mut().zip(parts) {
        let sum = p[0] + p[1] + p[2];
        let abs = p[0].abs() + p[1].abs() + p[2].abs() + a.abs() * (ln_a_size + da0_size);
        if !sum.is_finite() || abs > MAX_CANCELLATION * sum.abs().max(s) {
            return None;
        }
        *di = sum / s;
    }
    Some((m + s.ln(), d))
}

/// A bound on the size of the relative derivatives of `A` including the rounding
/// amplification of `ψ(1−b)` near its poles.
fn da_abs(b: f64, k: f64, c1: f64, eps: f64) -> f64 {
    digamma(c1).abs() + digamma(1.0 - b).abs() + digamma(k).abs() + b / (eps * eps)
}

/// The split integral: the series on `u ∈ [0, ρ/z]`, adaptive quadrature on the rest.
pub(crate) fn quadrature(b: f64, k: f64, z: f64, w: f64) -> LnS {
    let ln_z = z.ln();
    // The lower part: ∫₀^u0 u^(k−1) (1 − z u)^(−b) du = u0^k S(b, k, ρ), u0 = ρ / z,
    // differentiated with u0 held fixed (the moving limit cancels between the parts).
    let u0 = RHO / z;
    let ln_u0 = u0.ln();
    let (lt, dt) = direct(b, k, RHO);
    let l1 = k * ln_u0 + lt;
    let d1 = [dt[0], ln_u0 + dt[1], u0 * dt[2]];
    let p0 = -(1.0 - RHO).ln();
    let pl = -w.ln();
    if pl <= p0 {
        return (l1, d1);
    }
    // The upper part: z^(−k) ∫_{p0}^{pl} e^ψ(p) dp with ψ = (k−1) ln(1 − e^(−p)) + (b−1) p,
    // and the moments giving the derivatives: ∂/∂b weighs the integrand by p, ∂/∂k by
    // ln(1 − e^(−p)) − ln z, ∂/∂z by (b/z)(e^p − 1).
    let psi = |p: f64| (k - 1.0) * (-(-p).exp_m1()).ln() + (b - 1.0) * p;
    let dpsi = |p: f64| (k - 1.0) / p.exp_m1() + (b - 1.0);
    let len = pl - p0;
    let mut features = vec![(p0, 1.0 / dpsi(p0).abs()), (pl, 1.0 / dpsi(pl).abs())];
    let mut psi_max = psi(p0).max(psi(pl));
    let ratio = (k - 1.0) / (1.0 - b);
    if ratio > 0.0 {
        let ps = ratio.ln_1p();
        if ps > p0 && ps < pl {
            let e = ps.exp();
            let curv = ((k - 1.0) * e / (e - 1.0).powi(2)).abs();
            features.push((ps, 1.0 / curv.sqrt()));
            if k > 1.0 {
                psi_max = psi_max.max(psi(ps));
            }
        }
    }
    let mut cuts = vec![p0, pl];
    for &(at, scale) in &features {
        let mut h = scale.clamp(1e-12 * len, len);
        while h < len {
            for c in [at - h, at + h] {
                if c > p0 && c < pl {
                    cuts.push(c);
                }
            }
            h *= 4.0;
        }
    }
    cuts.sort_by(f64::total_cmp);
    cuts.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * len);
    let integrand = |p: f64| {
        let e = (-p).exp();
        let l1m = (-e).ln_1p();
        let f = ((k - 1.0) * l1m + (b - 1.0) * p - psi_max).exp();
        [f, f * p, -f * l1m, f * (1.0 - e) / e]
    };
    let tot = adaptive_gk(&integrand, &cuts);
    let l2 = -k * ln_z + psi_max + tot[0].ln();
    let d2 = [tot[1] / tot[0], -tot[2] / tot[0] - ln_z, b / z * tot[3] / tot[0]];
    let l = log_add_exp(l1, l2);
    let (w1, w2) = ((l1 - l).exp(), (l2 - l).exp());
    (l, [w1 * d1[0] + w2 * d2[0], w1 * d1[1] + w2 * d2[1], w1 * d1[2] + w2 * d2[2]])
}

/// Kronrod nodes (non-negative half, descending) and weights of the 15-point rule, and
/// the weights of the embedded 7-point Gauss rule at the odd-indexed Kronrod nodes.
const XGK: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];
const WGK: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_18,
    0.140_653_259_715_525_92,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_83,
];
const WG: [f64; 4] =
    [0.129_484_966_168_869_7, 0.279_705_391_489_276_7, 0.381_830_050_505_118_9, 0.417_959_183_673_469_4];

/// One Gauss-Kronrod panel: the Kronrod estimates and their differences from Gauss.
fn gk_panel(f: &impl Fn(f64) -> [f64; 4], lo: f64, hi: f64) -> ([f64; 4], [f64; 4]) {
    let mid = 0.5 * (lo + hi);
    let half = 0.5 * (hi - lo);
    let mut kr = [0.0; 4];
    let mut ga = [0.0; 4];
    for (i, (&x, &wk)) in XGK.iter().zip(&WGK).enumerate() {
        let pts: &[f64] = if x == 0.0 { &[mid] } else { &[mid - half * x, mid + half * x] };
        for &p in pts {
            let v = f(p);
            for c in 0..4 {
                kr[c] += wk * v[c];
                if i % 2 == 1 {
                    ga[c] += WG[i / 2] * v[c];
                }
            }
        }
    }
    let mut err = [0.0; 4];
    for c in 0..4 {
        kr[c] *= half;
        err[c] = (kr[c] - ga[c] * half).abs();
    }
    (kr, err)
}

/// Integrates a non-negative vector integrand over the span of `cuts`, starting from
/// the panels they delimit and bisecting the worst panel until every component's
/// estimated error is below 1e-13 of its total.
fn adaptive_gk(f: &impl Fn(f64) -> [f64; 4], cuts: &[f64]) -> [f64; 4] {
    const TOL: f64 = 1e-13;
    const MAX_PANELS: usize = 400;
    let mut panels: Vec<(f64, f64, [f64; 4], [f64; 4])> = cuts
        .windows(2)
        .map(|c| {
            let (v, e) = gk_panel(f, c[0], c[1]);
            (c[0], c[1], v, e)
        })
        .collect();
    loop {
        let mut tot = [0.0; 4];
        let mut err = [0.0; 4];
        for p in &panels {
            for c in 0..4 {
                tot[c] += p.2[c];
                err[c] += p.3[c];
            }
        }
        if panels.len() >= MAX_PANELS || (0..4).all(|c| err[c] <= TOL * tot[c]) {
            return tot;
        }
        let worst = |p: &(f64, f64, [f64; 4], [f64; 4])| (0..4).map(|c| p.3[c] / tot[c]).fold(0.0, f64::max);
        let (i, _) = panels
            .iter()
            .enumerate()
            .max_by(|a, b| worst(a.1).total_cmp(&worst(b.1)))
            .expect("at least one panel");
        let (lo, hi, _, _) = panels.swap_remove(i);
        let mid = 0.5 * (lo + hi);
        for (a, b) in [(lo, mid), (mid, hi)] {
            let (v, e) = gk_panel(f, a, b);
            panels.push((a, b, v, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kronrod_rule_is_exact_for_polynomials() {
        for deg in 0..=22 {
            let (v, _) = gk_panel(&|x: f64| [x.powi(deg), 0.0, 0.0, 0.0], -1.0, 1.0);
            let want = if deg % 2 == 0 { 2.0 / f64::from(deg + 1) } else { 0.0 };
            assert!((v[0] - want).abs() < 1e-14, "degree {deg}: {} vs {want}", v[0]);
        }
    }

    fn agree(a: LnS, b: LnS, tol: f64, what: &str) {
        assert!((a.0 - b.0).abs() <= tol * a.0.abs().max(1.0), "{what}: ln S {} vs {}", a.0, b.0);
        for i in 0..3 {
            let scale = a.1[i].abs().max(b.1[i].abs()).max(1.0);
            assert!((a.1[i] - b.1[i]).abs() <= 1e2 * tol * scale, "{what}: d{i} {:?} vs {:?}", a.1, b.1);
        }
    }

    #[test]
    fn evaluation_paths_agree() {
        let mut checked = 0;
        for &b in &[0.3f64, 0.97, 1.0, 1.0 + 1e-6, 1.6, 2.0, 2.5, 3.999_99, 7.3, 25.0, 60.5] {
            for &extra in &[0.15, 0.8, 1.0, 3.2, 12.0] {
                // In the likelihood `k` exceeds `b − 1` (k + 1 − b is r + x or s + 1).
                let k = (b - 1.0).max(0.0) + extra;
                for &z in &[0.55, 0.8, 0.95, 0.995, 0.9999] {
                    let w = 1.0 - z;
                    let what = format!("b={b} k={k} z={z}");
                    let q = quadrature(b, k, z, w);
                    if (b.max(1.0) * z + 40.0) / w <= LONG_SERIES {
                        agree(direct(b, k, z), q, 1e-12, &what);
                        checked += 1;
                    }
                    if let Some(c) = connection(b, k, z, w) {
                        agree(c, q, 1e-12, &what);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 200, "{checked}");
    }
}
