//! Special functions used by the models: log-gamma and digamma wrappers, log-sum-exp
//! helpers, the log-beta function and the Gauss hypergeometric function 2F1.
//!
//! Model-specific series (such as the Pareto/NBD integral with its parameter
//! derivatives) live next to their model, not here.

use statrs::function::gamma;

/// Natural log of the gamma function for positive arguments.
#[inline]
pub fn ln_gamma(x: f64) -> f64 {
    gamma::ln_gamma(x)
}

/// The digamma function (derivative of `ln_gamma`).
#[inline]
pub fn digamma(x: f64) -> f64 {
    gamma::digamma(x)
}

/// Natural log of the beta function `B(a, b)` for positive arguments.
#[inline]
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// `ln(exp(a) + exp(b))` without overflow; returns the other argument when one is `-inf`.
#[inline]
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Returns `(ln|Γ(x)|, sign of Γ(x))` for any real `x` that is not a non-positive integer.
///
/// Negative arguments use the reflection formula `Γ(x) Γ(1 − x) = π / sin(πx)`.
pub fn ln_gamma_signed(x: f64) -> (f64, f64) {
    if x > 0.0 {
        return (ln_gamma(x), 1.0);
    }
    let s = (std::f64::consts::PI * x).sin();
    let ln = std::f64::consts::PI.ln() - s.abs().ln() - ln_gamma(1.0 - x);
    (ln, s.signum())
}

/// True when `x` is zero or a negative integer, where `1/Γ(x)` vanishes.
#[inline]
fn is_nonpositive_integer(x: f64) -> bool {
    x <= 0.0 && x == x.round()
}

/// The maximum number of series terms before the power series gives up.
const MAX_TERMS: usize = 500_000;

/// Sums the Gauss power series `Σ (a)_n (b)_n / ((c)_n n!) zⁿ` for `|z| < 1`.
fn series(a: f64, b: f64, c: f64, z: f64) -> f64 {
    series_with_size(a, b, c, z).0
}

/// The power series and the sum of the magnitudes of its terms, which measures how
/// much accuracy cancellation between terms costs.
fn series_with_size(a: f64, b: f64, c: f64, z: f64) -> (f64, f64) {
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut size = 1.0;
    for n in 0..MAX_TERMS {
        let nf = n as f64;
        term *= (a + nf) * (b + nf) / ((c + nf) * (nf + 1.0)) * z;
        sum += term;
        size += f64::abs(term);
        if term == 0.0 {
            break;
        }
        // Once the ratio of consecutive terms is below one in magnitude, the
        // tail is bounded by a geometric series and a relative test is safe.
        if term.abs() <= 1e-17 * sum.abs() && nf > (a.abs() + b.abs()).min(1e4) {
            break;
        }
    }
    (sum, size)
}

/// The Gauss hypergeometric function `2F1(a, b; c; z)` for real arguments and `z ≤ 1`.
///
/// Strategy: for `z < 0` the Pfaff transformation maps the argument into `[0, 1)`;
/// arguments up to 0.75 use the power series directly; arguments closer to one use
/// the linear transformation to `1 − z` unless `c − a − b` is (nearly) an integer,
/// where that transformation is singular, or its parts cancel by more than three
/// orders of magnitude; the slowly converging direct series is used instead. `z = 1` uses Gauss's summation theorem. Returns `NaN` for `z > 1`,
/// for `c` a non-positive integer, and `+inf` at `z = 1` when the series diverges.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite()) || z > 1.0 {
        return f64::NAN;
    }
    if is_nonpositive_integer(c) {
        return f64::NAN;
    }
    if z == 0.0 || a == 0.0 || b == 0.0 {
        return 1.0;
    }
    if z < 0.0 {
        // Pfaff: 2F1(a, b; c; z) = (1 − z)^(−a) 2F1(a, c − b; c; z / (z − 1)).
        // Keep whichever upper parameter makes the transformed series shorter.
        let w = z / (z - 1.0);
        let (keep, other) =
            if is_nonpositive_integer(c - a) && !is_nonpositive_integer(c - b) { (b, a) } else { (a, b) };
        return (1.0 - z).powf(-keep) * hyp2f1_unit(keep, c - other, c, w);
    }
    hyp2f1_unit(a, b, c, z)
}

/// `2F1` for `0 ≤ z ≤ 1`.
fn hyp2f1_unit(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let d = c - a - b;
    if z == 1.0 {
        if d <= 0.0 {
            return f64::INFINITY;
        }
        return gamma_ratio(&[c, d], &[c - a, c - b]);
    }
    if is_nonpositive_integer(a) || is_nonpositive_integer(b) || z <= 0.75 {
        return series(a, b, c, z);
    }
    if (d - d.round()).abs() < 1e-3 {
        return series(a, b, c, z);
    }
    let w = 1.0 - z;
    let (s1, m1) = series_with_size(a, b, 1.0 - d, w);
    let (s2, m2) = series_with_size(c - a, c - b, 1.0 + d, w);
    let g1 = gamma_ratio(&[c, d], &[c - a, c - b]);
    let g2 = w.powf(d) * gamma_ratio(&[c, -d], &[a, b]);
    let value = g1 * s1 + g2 * s2;
    // With a large `c − a − b` of either sign one of the transformed series has a
    // negative lower parameter and its terms (and the two parts) can cancel by many
    // orders of magnitude; the direct series is then the accurate choice.
    let size = (g1 * m1).abs() + (g2 * m2).abs();
    if size.is_finite() && size <= 1e3 * value.abs() { value } else { series(a, b, c, z) }
}

/// `Π Γ(num) / Π Γ(den)` computed in log space with signs; zero when a denominator is a pole.
fn gamma_ratio(num: &[f64], den: &[f64]) -> f64 {
    if den.iter().any(|&x| is_nonpositive_integer(x)) {
        return 0.0;
    }
    let mut ln = 0.0;
    let mut sign = 1.0;
    for &x in num {
        let (l, s) = ln_gamma_signed(x);
        ln += l;
        sign *= s;
    }
    for &x in den {
        let (l, s) = ln_gamma_signed(x);
        ln -= l;
        sign *= s;
    }
    sign * ln.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs().max(1e-300), "got {got:e}, want {want:e}");
    }

    #[test]
    fn hyp2f1_golden_values() {
        // Reference values computed with arbitrary-precision arithmetic.
        let cases: &[(f64, f64, f64, f64, f64)] = &[
            (2.5, 1.5, 3.7, -12.0, 0.047151331516604604),
            (1.0, 1.0, 2.0, 0.5, 1.3862943611198906),
            (0.243, 2.426, 2.219, 0.5, 1.2070970070440423),
            (0.5, 0.5, 1.5, 0.25, 1.0471975511965977),
            (0.243, 2.426, 2.219, 0.9466, 2.392399054904806),
            (2.243, 4.426, 5.219, 0.95, 167.89884773237123),
            (0.553, 1.606, 2.159, 0.9, 2.2257447829476),
            (1.5, 2.0, 3.5, 0.999, 19.921754297725048),
            (3.0, 1.606, 4.0, 0.97, 29.83646715604808),
            (0.7, 1.3, 2.0, 0.9, 2.38044025005619),
            (2.0, -3.0, 1.5, 0.8, -0.06422857142857143),
            (0.3, 0.4, 0.5, -1000.0, 0.1664302541257893),
        ];
        for &(a, b, c, z, want) in cases {
            close(hyp2f1(a, b, c, z), want, 1e-12);
        }
    }

    #[test]
    fn log_add_exp_handles_infinities() {
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 1.5), 1.5);
        close(log_add_exp(1000.0, 1000.0), 1000.0 + 2f64.ln(), 1e-15);
    }

    #[test]
    fn signed_gamma_reflection() {
        let (l, s) = ln_gamma_signed(-0.5);
        close(s * l.exp(), -2.0 * std::f64::consts::PI.sqrt(), 1e-12);
    }
}
