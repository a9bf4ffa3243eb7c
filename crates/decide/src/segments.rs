//! Discovering behavioural segments a marketer can name: k-means on standardised features, the number of
//! segments chosen by the mean silhouette, each segment described by how it differs from the rest.
//!
//! Method (pure, seeded, so a run is reproducible):
//! 1. Each feature is standardised (minus its mean, divided by its standard deviation; a constant feature
//!    is dropped from the distance). Skewed features (counts, money) should be given on a log scale by
//!    the caller; [`Feature::log`] does it here.
//! 2. k is chosen on a seeded sample of at most [`DiscoverOptions::sample`] customers: for each k in
//!    `k_min..=k_max`, k-means++ with [`DiscoverOptions::restarts`] restarts (the lowest within-cluster sum
//!    of squares kept), then the mean silhouette of that clustering on the sample; the k with the highest
//!    mean silhouette wins (the smaller k on a tie within 0.005). A fixed `k` skips the search.
//! 3. The sample's centroids seed Lloyd's iterations on every customer (until fewer than 0.1 % change
//!    segment, at most [`DiscoverOptions::max_iter`]).
//! 4. Each segment is described: size, share, each feature's mean in the segment and in the rest, and the
//!    standardised difference `(mean_in − mean_out) / sd`; the defining features are the largest absolute
//!    differences (at least 0.5 sd), and the suggested name is built from the two largest ("high
//!    discount use, low order value").
//!
//! [`adjusted_rand_index`] compares two labelings (Hubert and Arabie's correction for chance);
//! [`stability`] is the share of a refreshed segment's members who were in the matching segment before.

use crate::DecideError;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One input feature: its name, the words that describe it ("order value" → "high order value"), and
/// whether it is taken on a log scale (`ln(1 + x)`, for counts and money).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub words: String,
    pub log: bool,
}

impl Feature {
    pub fn new(name: &str, words: &str, log: bool) -> Feature {
        Feature { name: name.into(), words: words.into(), log }
    }
}

/// What [`discover`] is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverOptions {
    /// A fixed number of segments; `None` chooses it (see the module text).
    pub k: Option<usize>,
    pub k_min: usize,
    pub k_max: usize,
    pub seed: u64,
    pub restarts: usize,
    pub max_iter: usize,
    /// Customers the number of segments is chosen on.
    pub sample: usize,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions { k: None, k_min: 2, k_max: 10, seed: 7, restarts: 4, max_iter: 50, sample: 4_000 }
    }
}

/// How one feature differs in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDiff {
    pub feature: String,
    /// Means on the feature's own scale (before the log).
    pub mean_in: f64,
    pub mean_out: f64,
    /// `(mean_in − mean_out) / sd` on the scale the distance uses.
    pub z: f64,
}

/// One proposed segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// 0-based, in decreasing size.
    pub index: usize,
    pub size: usize,
    pub share: f64,
    pub suggested_name: String,
    /// Every feature, largest absolute difference first.
    pub features: Vec<FeatureDiff>,
    /// The defining ones, in words ("high discount use (+1.8 sd)").
    pub defining: Vec<String>,
}

/// The result: the chosen k, the criterion per k tried, each customer's segment and the proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    pub k: usize,
    /// (k, mean silhouette on the sample) for each k tried (empty with a fixed k).
    pub silhouettes: Vec<(usize, f64)>,
    /// Per customer, the index of its proposal.
    pub assignments: Vec<u32>,
    pub proposals: Vec<Proposal>,
    /// Standardised centroids, per proposal (what a refresh is matched against).
    pub centroids: Vec<Vec<f64>>,
    /// Feature means and standard deviations of the transformed features (a refresh reuses them).
    pub means: Vec<f64>,
    pub sds: Vec<f64>,
}

fn transform(f: &Feature, x: f64) -> f64 {
    if f.log { x.max(0.0).ln_1p() } else { x }
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn nearest(x: &[f64], centroids: &[Vec<f64>]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, m) in centroids.iter().enumerate() {
        let d = dist2(x, m);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Rows of `d` standardised values.
struct Matrix<'a> {
    data: &'a [f64],
    d: usize,
}

impl Matrix<'_> {
    fn n(&self) -> usize {
        self.data.len() / self.d.max(1)
    }
    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// k-means++ seeding and Lloyd's iterations; returns (centroids, assignments, within sum of squares).
fn kmeans(m: &Matrix, k: usize, rng: &mut impl Rng, max_iter: usize) -> (Vec<Vec<f64>>, Vec<u32>, f64) {
    let n = m.n();
    let mut centroids = vec![m.row(rng.gen_range(0..n)).to_vec()];
    let mut d2: Vec<f64> = (0..n).map(|i| dist2(m.row(i), &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.gen_range(0.0..total);
            let mut pick = n - 1;
            for (i, w) in d2.iter().enumerate() {
                if u < *w {
                    pick = i;
                    break;
                }
                u -= w;
            }
            pick
        } else {
            rng.gen_range(0..n)
        };
        let c = m.row(pick).to_vec();
        for (i, v) in d2.iter_mut().enumerate() {
            *v = v.min(dist2(m.row(i), &c));
        }
        centroids.push(c);
    }
    lloyd(m, centroids, max_iter)
}

fn lloyd(m: &Matrix, mut centroids: Vec<Vec<f64>>, max_iter: usize) -> (Vec<Vec<f64>>, Vec<u32>, f64) {
    let (n, d, k) = (m.n(), m.d, centroids.len());
    let mut assign = vec![u32::MAX; n];
    let mut sse = 0.0;
    for _ in 0..max_iter.max(1) {
        let mut changed = 0usize;
        sse = 0.0;
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (i, a) in assign.iter_mut().enumerate() {
            let x = m.row(i);
            let (c, dd) = nearest(x, &centroids);
            sse += dd;
            if *a != c as u32 {
                changed += 1;
                *a = c as u32;
            }
            counts[c] += 1;
            for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(x) {
                *s += v;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centroids[c][j] = sums[c * d + j] / counts[c] as f64;
                }
            }
        }
        if changed * 1000 <= n {
            break;
        }
    }
    (centroids, assign, sse)
}

/// The mean silhouette of a clustering (exact, O(n²): for samples).
fn silhouette(m: &Matrix, assign: &[u32], k: usize) -> f64 {
    let n = m.n();
    let mut sizes = vec![0usize; k];
    for &a in assign {
        sizes[a as usize] += 1;
    }
    let mut total = 0.0;
    let mut sums = vec![0.0; k];
    for i in 0..n {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for j in 0..n {
            if i != j {
                sums[assign[j] as usize] += dist2(m.row(i), m.row(j)).sqrt();
            }
        }
        let own = assign[i] as usize;
        if sizes[own] <= 1 {
            continue; // a singleton's silhouette is 0
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() && a.max(b) > 0.0 {
            total += (b - a) / a.max(b);
        }
    }
    total / n as f64
}

/// Clusters `rows` (one per customer, one value per feature, on the features' own scale).
pub fn discover(
    features: &[Feature],
    rows: &[Vec<f64>],
    opts: &DiscoverOptions,
) -> Result<Discovery, DecideError> {
    let d = features.len();
    if d == 0 {
        return Err(DecideError::Input("segments: no features".into()));
    }
    if let Some(r) = rows.iter().find(|r| r.len() != d) {
        return Err(DecideError::Input(format!("segments: a row has {} values for {d} features", r.len())));
    }
    if rows.iter().flatten().any(|x| !x.is_finite()) {
        return Err(DecideError::Input("segments: a feature value is not a finite number".into()));
    }
    let (k_min, k_max) = match opts.k {
        Some(k) => (k, k),
        None => (opts.k_min.max(2), opts.k_max.max(opts.k_min.max(2))),
    };
    if k_min < 1 || rows.len() < k_max.max(2) * 5 {
        return Err(DecideError::Input(format!(
            "segments: {} customers are too few for {k_max} segments (at least 5 per segment)",
            rows.len()
        )));
    }
    // Standardise.
    let n = rows.len();
    let t: Vec<f64> =
        rows.iter().flat_map(|r| r.iter().zip(features).map(|(x, f)| transform(f, *x))).collect();
    let mut means = vec![0.0; d];
    for i in 0..n {
        for j in 0..d {
            means[j] += t[i * d + j];
        }
    }
    means.iter_mut().for_each(|m| *m /= n as f64);
    let mut sds = vec![0.0; d];
    for i in 0..n {
        for j in 0..d {
            sds[j] += (t[i * d + j] - means[j]).powi(2);
        }
    }
    sds.iter_mut().for_each(|s| *s = (*s / n as f64).sqrt());
    let z: Vec<f64> = (0..n * d)
        .map(|ix| {
            let j = ix % d;
            if sds[j] > 1e-12 { (t[ix] - means[j]) / sds[j] } else { 0.0 }
        })
        .collect();
    let all = Matrix { data: &z, d };
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    // The sample the number of segments is chosen on.
    let sample_ix: Vec<usize> = if n <= opts.sample {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, opts.sample).into_vec()
    };
    let sample_data: Vec<f64> = sample_ix.iter().flat_map(|&i| all.row(i).iter().copied()).collect();
    let sample = Matrix { data: &sample_data, d };
    let mut silhouettes = Vec::new();
    let mut best: Option<(usize, f64, Vec<Vec<f64>>)> = None;
    for k in k_min..=k_max {
        let mut fit: Option<(Vec<Vec<f64>>, Vec<u32>, f64)> = None;
        for _ in 0..opts.restarts.max(1) {
            let f = kmeans(&sample, k, &mut rng, opts.max_iter);
            if fit.as_ref().is_none_or(|b| f.2 < b.2) {
                fit = Some(f);
            }
        }
        let (centroids, assign, _) = fit.expect("at least one restart");
        if opts.k.is_some() {
            best = Some((k, 0.0, centroids));
            break;
        }
        let s = silhouette(&sample, &assign, k);
        silhouettes.push((k, s));
        if best.as_ref().is_none_or(|b| s > b.1 + 0.005) {
            best = Some((k, s, centroids));
        }
    }
    let (k, _, seeds) = best.expect("one k tried");
    let (centroids, assign, _) = lloyd(&all, seeds, opts.max_iter);
    // Order segments by size, largest first.
    let mut sizes = vec![0usize; k];
    for &a in &assign {
        sizes[a as usize] += 1;
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| sizes[*b].cmp(&sizes[*a]).then(a.cmp(b)));
    let mut rank = vec![0u32; k];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as u32;
    }
    let assignments: Vec<u32> = assign.iter().map(|&a| rank[a as usize]).collect();
    let centroids: Vec<Vec<f64>> = order.iter().map(|&c| centroids[c].clone()).collect();
    let proposals = describe(features, rows, &t, &sds, &assignments, k);
    Ok(Discovery { k, silhouettes, assignments, proposals, centroids, means, sds })
}

fn describe(
    features: &[Feature],
    rows: &[Vec<f64>],
    t: &[f64],
    sds: &[f64],
    assign: &[u32],
    k: usize,
) -> Vec<Proposal> {
    let (n, d) = (rows.len(), features.len());
    // Per segment and feature, the sums of the raw and the transformed values; the whole store's totals.
    let mut size = vec![0usize; k];
    let mut raw = vec![0.0; k * d];
    let mut tr = vec![0.0; k * d];
    for i in 0..n {
        let c = assign[i] as usize;
        size[c] += 1;
        for j in 0..d {
            raw[c * d + j] += rows[i][j];
            tr[c * d + j] += t[i * d + j];
        }
    }
    let total = |v: &[f64], j: usize| (0..k).map(|c| v[c * d + j]).sum::<f64>();
    let raw_all: Vec<f64> = (0..d).map(|j| total(&raw, j)).collect();
    let t_all: Vec<f64> = (0..d).map(|j| total(&tr, j)).collect();
    let words: std::collections::HashMap<&str, &str> =
        features.iter().map(|f| (f.name.as_str(), f.words.as_str())).collect();
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let size = size[c];
        let (inside, rest) = (size.max(1) as f64, (n - size).max(1) as f64);
        let mut diffs = Vec::with_capacity(d);
        for (j, f) in features.iter().enumerate() {
            let (raw_in, t_in) = (raw[c * d + j], tr[c * d + j]);
            let z = if sds[j] > 1e-12 { (t_in / inside - (t_all[j] - t_in) / rest) / sds[j] } else { 0.0 };
            diffs.push(FeatureDiff {
                feature: f.name.clone(),
                mean_in: raw_in / inside,
                mean_out: (raw_all[j] - raw_in) / rest,
                z,
            });
        }
        diffs.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()).then(a.feature.cmp(&b.feature)));
        let phrase = |x: &FeatureDiff| {
            format!(
                "{} {}",
                if x.z > 0.0 { "high" } else { "low" },
                words.get(x.feature.as_str()).unwrap_or(&"")
            )
        };
        let defining: Vec<String> = diffs
            .iter()
            .filter(|x| x.z.abs() >= 0.5)
            .map(|x| format!("{} ({:+.1} sd; {:.3} against {:.3})", phrase(x), x.z, x.mean_in, x.mean_out))
            .collect();
        let name_parts: Vec<String> = diffs.iter().filter(|x| x.z.abs() >= 0.5).take(2).map(phrase).collect();
        let suggested_name =
            if name_parts.is_empty() { "typical customers".to_string() } else { name_parts.join(", ") };
        out.push(Proposal {
            index: c,
            size,
            share: size as f64 / n.max(1) as f64,
            suggested_name,
            features: diffs,
            defining,
        });
    }
    out
}

/// Assigns `rows` to the nearest of an earlier discovery's segments (its standardisation and centroids):
/// what a scheduled refresh does, so segment `i` keeps meaning the same behaviour. A missing value (NaN,
/// or a row shorter than the features) counts as the feature's mean.
pub fn assign(features: &[Feature], rows: &[Vec<f64>], earlier: &Discovery) -> Vec<u32> {
    let d = features.len();
    let mut z = vec![0.0; d];
    rows.iter()
        .map(|r| {
            for j in 0..d {
                let x = r.get(j).copied().unwrap_or(f64::NAN);
                let t = transform(&features[j], x);
                z[j] = if earlier.sds[j] > 1e-12 && x.is_finite() && t.is_finite() {
                    (t - earlier.means[j]) / earlier.sds[j]
                } else {
                    0.0
                };
            }
            nearest(&z, &earlier.centroids).0 as u32
        })
        .collect()
}

/// The adjusted Rand index of two labelings of the same items (1 identical, about 0 for chance).
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len(), "two labelings of the same items");
    let n = a.len();
    let mut table: std::collections::HashMap<(u32, u32), u64> = std::collections::HashMap::new();
    let mut ra: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut rb: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *table.entry((*x, *y)).or_insert(0) += 1;
        *ra.entry(*x).or_insert(0) += 1;
        *rb.entry(*y).or_insert(0) += 1;
    }
    let c2 = |m: u64| (m * m.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.values().map(|&m| c2(m)).sum();
    let sa: f64 = ra.values().map(|&m| c2(m)).sum();
    let sb: f64 = rb.values().map(|&m| c2(m)).sum();
    let total = c2(n as u64);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sa * sb / total;
    let max = (sa + sb) / 2.0;
    if max == expected { 1.0 } else { (index - expected) / (max - expected) }
}

/// Of the customers in each segment after a refresh, the share who were in the same segment before
/// (over every segment, weighted by size): `before[i]` and `after[i]` are one customer's segments.
pub fn stability(before: &[u32], after: &[u32]) -> f64 {
    let n = before.len().min(after.len());
    if n == 0 {
        return 1.0;
    }
    before.iter().zip(after).filter(|(x, y)| x == y).count() as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_by_hand() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]), 1.0);
        // a = {0,1},{2,3}; b = {0},{1,2},{3}: pairs together in both: 0; sa = 2, sb = 1, total = 6;
        // expected = 1/3, max = 1.5 → (0 − 1/3) / (1.5 − 1/3) = −2/7.
        let r = adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 1, 2]);
        assert!((r + 2.0 / 7.0).abs() < 1e-12, "{r}");
        assert_eq!(stability(&[0, 1, 1, 2], &[0, 1, 2, 2]), 0.75);
    }

    #[test]
    fn bad_input_is_an_error() {
        let f = vec![Feature::new("a", "a", false)];
        assert!(discover(&[], &[], &DiscoverOptions::default()).is_err());
        assert!(discover(&f, &[vec![1.0, 2.0]], &DiscoverOptions::default()).is_err());
        assert!(discover(&f, &vec![vec![f64::NAN]; 100], &DiscoverOptions::default()).is_err());
        assert!(discover(&f, &vec![vec![1.0]; 10], &DiscoverOptions::default()).is_err());
    }
}
