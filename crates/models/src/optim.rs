//! A small BFGS quasi-Newton minimiser with a strong-Wolfe line search inside a box,
//! plus a finite-difference Hessian helper used for standard errors.
//!
//! The optimiser is generic over a closure returning the objective and its gradient.
//! Nothing model-specific lives here.

/// The outcome of a minimisation.
#[derive(Debug, Clone)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
    pub grad_norm: f64,
    pub iterations: usize,
    /// False also when some coordinate ended on the box boundary.
    pub converged: bool,
}

/// Settings for [`bfgs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub max_iter: usize,
    pub grad_tol: f64,
    /// Every coordinate is kept within `[-bound, bound]`.
    pub bound: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Evaluates `f` at `x + step * dir` clipped to the box `[-bound, bound]`, returning the
/// value and the directional derivative.
fn probe<F>(f: &F, x: &[f64], dir: &[f64], step: f64, bound: f64, xt: &mut [f64], g: &mut [f64]) -> (f64, f64)
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    for i in 0..x.len() {
        xt[i] = (x[i] + step * dir[i]).clamp(-bound, bound);
    }
    let v = f(xt, g);
    if v.is_finite() && g.iter().all(|d| d.is_finite()) {
        (v, dot(g, dir))
    } else {
        (f64::INFINITY, f64::NAN)
    }
}

/// Zeroes the components of `v` that would move a coordinate sitting on the box
/// boundary further out (`v` is a step direction, or a negated gradient).
fn project(x: &[f64], v: &mut [f64], bound: f64) {
    for (xi, vi) in x.iter().zip(v.iter_mut()) {
        if (*xi >= bound && *vi > 0.0) || (*xi <= -bound && *vi < 0.0) {
            *vi = 0.0;
        }
    }
}

/// The largest component of the gradient that can still be followed inside the box.
fn projected_norm(x: &[f64], g: &[f64], bound: f64) -> f64 {
    let mut descent: Vec<f64> = g.iter().map(|v| -v).collect();
    project(x, &mut descent, bound);
    inf_norm(&descent)
}

/// Minimises `f` from `x0` with BFGS inside the box `[-bound, bound]ⁿ`. `f` writes the
/// gradient into its second argument and returns the objective; non-finite values are
/// treated as a wall the line search backs away from. Coordinates that reach the box
/// boundary stay there while the gradient pushes outwards.
pub(crate) fn bfgs<F>(f: F, x0: &[f64], settings: Settings) -> Minimum
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let bound = settings.bound;
    let mut x: Vec<f64> = x0.iter().map(|v| v.clamp(-bound, bound)).collect();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        h[i * n + i] = 1.0;
    }
    let mut dir = vec![0.0; n];
    let mut xt = vec![0.0; n];
    let mut gt = vec![0.0; n];
    let mut iterations = 0;
    let mut first = true;
    let mut stalled = 0;
    while iterations < settings.max_iter {
        if !fx.is_finite() {
            break;
        }
        if projected_norm(&x, &g, bound) <= settings.grad_tol {
            break;
        }
        iterations += 1;
        for i in 0..n {
            dir[i] = -(0..n).map(|j| h[i * n + j] * g[j]).sum::<f64>();
        }
        project(&x, &mut dir, bound);
        let mut d0 = dot(&g, &dir);
        if d0 >= 0.0 {
            // The inverse-Hessian estimate lost positive definiteness: restart on the gradient.
            h.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..n {
                h[i * n + i] = 1.0;
                dir[i] = -g[i];
            }
            project(&x, &mut dir, bound);
            d0 = dot(&g, &dir);
            if d0 >= 0.0 {
                break;
            }
        }
        let step0 = if first { (1.0 / inf_norm(&dir)).min(1.0) } else { 1.0 };
        let Some((_, f_new)) = line_search(&f, &x, fx, d0, &dir, step0, bound, &mut xt, &mut gt) else {
            stalled += 1;
            if stalled > 1 {
                break;
            }
            // Restart from steepest descent once before giving up.
            h.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..n {
                h[i * n + i] = 1.0;
            }
            first = true;
            continue;
        };
        stalled = 0;
        // The line search leaves the accepted point in `xt` and its gradient in `gt`; the
        // step actually taken can be shorter than `step * dir` where the box clipped it.
        let s: Vec<f64> = (0..n).map(|i| xt[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| gt[i] - g[i]).collect();
        let sy = dot(&s, &y);
        x.copy_from_slice(&xt);
        g.copy_from_slice(&gt);
        let f_old = fx;
        fx = f_new;
        if sy > 1e-300 {
            if first {
                let scale = sy / dot(&y, &y);
                h.iter_mut().for_each(|v| *v = 0.0);
                for i in 0..n {
                    h[i * n + i] = scale;
                }
                first = false;
            }
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n).map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum()).collect();
            let yhy = dot(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] +=
                        -rho * (hy[i] * s[j] + s[i] * hy[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
        if (f_old - fx).abs() <= 1e-16 * fx.abs().max(1.0) && inf_norm(&s) < 1e-12 {
            break;
        }
    }
    let grad_norm = projected_norm(&x, &g, bound);
    let at_bound = x.iter().any(|v| v.abs() >= bound);
    Minimum {
        converged: fx.is_finite() && grad_norm <= settings.grad_tol * 10.0 && !at_bound,
        x,
        f: fx,
        grad_norm,
        iterations,
    }
}

/// A strong-Wolfe line search (bracketing then zooming by safeguarded cubic interpolation).
/// Returns the accepted step and objective; the point and gradient are left in `xt`/`gt`.
#[allow(clippy::too_many_arguments)]
fn line_search<F>(
    f: &F,
    x: &[f64],
    f0: f64,
    d0: f64,
    dir: &[f64],
    step0: f64,
    bound: f64,
    xt: &mut [f64],
    gt: &mut [f64],
) -> Option<(f64, f64)>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let mut lo = (0.0, f0, d0);
    let mut step = step0;
    let mut hi: Option<(f64, f64, f64)> = None;
    for _ in 0..60 {
        let (fv, dv) = probe(f, x, dir, step, bound, xt, gt);
        if !fv.is_finite() {
            hi = Some((step, f64::INFINITY, f64::NAN));
        } else if dv.abs() <= -C2 * d0 && dv <= (2.0 * C1 - 1.0) * d0 && fv <= f0 + 1e-12 * f0.abs() {
            // Approximate Wolfe conditions (Hager & Zhang): near the optimum the change
            // in the objective drowns in rounding noise, so the derivative decides.
            return Some((step, fv));
        } else if fv > f0 + C1 * step * d0 || fv >= lo.1 && lo.0 > 0.0 {
            hi = Some((step, fv, dv));
        } else if dv.abs() <= -C2 * d0 {
            return Some((step, fv));
        } else if dv >= 0.0 {
            hi = Some(lo);
            lo = (step, fv, dv);
        } else {
            lo = (step, fv, dv);
        }
        step = match hi {
            None => step * 2.0,
            Some(h) => interpolate(lo, h),
        };
        if let Some(h) = hi
            && (h.0 - lo.0).abs() < 1e-16 * lo.0.abs().max(1e-300)
        {
            break;
        }
    }
    // Accept the best point seen if it decreased the objective at all.
    if lo.0 > 0.0 && lo.1 < f0 {
        let (fv, _) = probe(f, x, dir, lo.0, bound, xt, gt);
        return Some((lo.0, fv));
    }
    None
}

/// Chooses a trial step between the bracket ends, by cubic interpolation when both
/// ends have finite derivatives and by bisection otherwise.
fn interpolate(lo: (f64, f64, f64), hi: (f64, f64, f64)) -> f64 {
    let (a, fa, da) = lo;
    let (b, fb, db) = hi;
    let mid = 0.5 * (a + b);
    if !(fb.is_finite() && db.is_finite()) {
        return a + 0.2 * (b - a);
    }
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc < 0.0 {
        return mid;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    let (lo_b, hi_b) = if a < b { (a, b) } else { (b, a) };
    let margin = 0.1 * (hi_b - lo_b);
    if t.is_finite() && t > lo_b + margin && t < hi_b - margin { t } else { mid }
}

/// The Hessian of a function by central differences of its analytic gradient, with
/// relative steps, symmetrised.
pub(crate) fn hessian<G>(grad: G, x: &[f64]) -> Vec<f64>
where
    G: Fn(&[f64], &mut [f64]),
{
    let n = x.len();
    let mut hm = vec![0.0; n * n];
    let mut xp = x.to_vec();
    let mut gp = vec![0.0; n];
    let mut gm = vec![0.0; n];
    for j in 0..n {
        let h = 1e-5 * x[j].abs().max(1e-8);
        xp[j] = x[j] + h;
        grad(&xp, &mut gp);
        xp[j] = x[j] - h;
        grad(&xp, &mut gm);
        xp[j] = x[j];
        for i in 0..n {
            hm[i * n + j] = (gp[i] - gm[i]) / (2.0 * h);
        }
    }
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (hm[i * n + j] + hm[j * n + i]);
            hm[i * n + j] = v;
            hm[j * n + i] = v;
        }
    }
    hm
}

/// Inverts a symmetric positive-definite matrix by Cholesky factorisation; `None` when
/// the matrix is not positive definite.
pub(crate) fn invert_spd(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        // Solve L y = e_col, then Lᵀ z = y.
        let mut y = vec![0.0; n];
        for i in 0..n {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i * n + k] * y[k];
            }
            y[i] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = y[i];
            for k in i + 1..n {
                s -= l[k * n + i] * inv[k * n + col];
            }
            inv[i * n + col] = s / l[i * n + i];
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_rosenbrock() {
        let f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let m = bfgs(f, &[-1.2, 1.0], Settings { max_iter: 500, grad_tol: 1e-10, bound: 30.0 });
        assert!(m.converged, "{m:?}");
        assert!((m.x[0] - 1.0).abs() < 1e-8 && (m.x[1] - 1.0).abs() < 1e-8);
    }

    #[test]
    fn stops_on_the_box_without_claiming_convergence() {
        // The infimum of e^(−x) + y² lies at x = +∞; the box stops it at x = 5.
        let f = |x: &[f64], g: &mut [f64]| {
            g[0] = -(-x[0]).exp();
            g[1] = 2.0 * x[1];
            (-x[0]).exp() + x[1] * x[1]
        };
        let m = bfgs(f, &[0.0, 1.0], Settings { max_iter: 500, grad_tol: 1e-10, bound: 5.0 });
        assert_eq!(m.x[0], 5.0, "{m:?}");
        assert!(m.x[1].abs() < 1e-6, "{m:?}");
        assert!(!m.converged, "{m:?}");
    }

    #[test]
    fn inverts_spd() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let inv = invert_spd(&a, 2).unwrap();
        let want = [0.375, -0.25, -0.25, 0.5];
        for (g, w) in inv.iter().zip(want) {
            assert!((g - w).abs() < 1e-12);
        }
        assert!(invert_spd(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
