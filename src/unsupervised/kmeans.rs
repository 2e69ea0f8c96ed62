//! k-means on the GPU: Lloyd's algorithm with k-means++ initialisation and restarts.
//!
//! Minimises the inertia `sum_i min_c ||x_i - mu_c||^2`. One Lloyd step is, on the GPU: the
//! cross term `X C^T` as a GEMM, the fused assignment kernel (nearest centroid and its squared
//! distance per row) and the centroid sums by a segmented reduction; the host divides by the
//! counts. The loop itself ([`kiln_kernels::reference::cluster::lloyd`]) is shared with the CPU
//! twin, which differs only in its step, so a test runs both from the same centroids.
//!
//! Rules:
//! - Stops when the centroids move by at most `tol * mean feature variance` (sum of squared
//!   shifts, scikit-learn's convention) or after `max_iter` updates.
//! - An empty cluster takes the point farthest from its centroid (see
//!   [`update_centroids`](kiln_kernels::reference::cluster::update_centroids)).
//! - `n_init` restarts from k-means++ seeds drawn from one seeded stream; the lowest inertia
//!   wins (ties: the earlier restart). Same seed, same data: same result.
//! - k must not exceed the number of distinct points (an error, not a degenerate fit).
//!
//! ```no_run
//! use kiln::unsupervised::KMeans;
//! // Two groups of two points on a line.
//! let x = [0.0f32, 0.1, 10.0, 10.1];
//! let fit = KMeans::new(2).seed(7).fit(&x, 1)?;
//! assert_eq!(fit.labels[0], fit.labels[1]);
//! assert_ne!(fit.labels[0], fit.labels[2]);
//! assert!(fit.inertia < 0.011);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::collections::HashSet;

use kiln_kernels::reference::cluster::{self as twin, Lloyd, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::distance::{Points, check_matrix};
use crate::error::{Result, arg_err};

/// How the first centroids are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// k-means++ (greedy: `2 + ln k` candidates per centroid, the one that lowers the
    /// potential most is kept).
    PlusPlus,
    /// k distinct rows drawn uniformly.
    Random,
    /// k-means|| (Bahmani et al. 2012): 5 rounds that each keep every row with probability
    /// `min(1, 2k D^2 / sum D^2)` (D^2 to the nearest kept row, on the GPU), then k-means++ on
    /// the kept rows weighted by how many rows each is nearest to. Parallel-friendly: a round is
    /// one pass over the data instead of k.
    Parallel,
}

/// k-means settings (builder style). See the module notes.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Number of clusters.
    pub k: usize,
    /// Restarts; the lowest inertia is kept.
    pub n_init: usize,
    /// Most centroid updates per restart.
    pub max_iter: usize,
    /// Convergence tolerance, relative to the mean feature variance.
    pub tol: f64,
    /// Seed of the initialisation stream.
    pub seed: u64,
    /// Initialisation.
    pub init: Init,
}

/// A fitted k-means.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// Centroids, (k, d).
    pub centroids: Vec<f32>,
    /// Cluster of each row, in input order, (n).
    pub labels: Vec<u32>,
    /// Euclidean distance of each row to its centroid, (n).
    pub distances: Vec<f32>,
    /// Sum of squared distances to the nearest centroid.
    pub inertia: f64,
    /// Centroid updates of the kept restart.
    pub iterations: usize,
    /// Whether the kept restart met the tolerance.
    pub converged: bool,
    /// Which restart was kept (0-based).
    pub best_init: usize,
    /// Features per point.
    pub d: usize,
}

impl KMeans {
    /// k clusters, 10 k-means++ restarts, at most 300 iterations, tol 1e-4, seed 0.
    pub fn new(k: usize) -> KMeans {
        KMeans {
            k,
            n_init: 10,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
            init: Init::PlusPlus,
        }
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the number of restarts.
    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }

    /// Check the settings against n points of x (n, d).
    pub(crate) fn validate(&self, x: &[f32], d: usize) -> Result<usize> {
        let n = check_matrix("k-means", x, d)?;
        if self.k == 0 {
            return arg_err("k-means", "k = 0: need at least one cluster");
        }
        if self.k > n {
            return arg_err("k-means", format!("k = {} exceeds the {n} points", self.k));
        }
        if self.n_init == 0 || self.max_iter == 0 {
            return arg_err("k-means", "n_init and max_iter must be at least 1");
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return arg_err("k-means", format!("tol = {} must be >= 0", self.tol));
        }
        let distinct = distinct_rows(x, d, self.k);
        if distinct < self.k {
            return arg_err(
                "k-means",
                format!(
                    "k = {} but the data has only {distinct} distinct points; use k <= {distinct}",
                    self.k
                ),
            );
        }
        Ok(n)
    }

    /// Fit on row-major x (n, d) on the default GPU.
    pub fn fit(&self, x: &[f32], d: usize) -> Result<KMeansFit> {
        self.validate(x, d)?;
        let pts = Points::new(x, d)?;
        let tol = self.tol * mean_variance(x, d);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<(Lloyd, usize)> = None;
        for run in 0..self.n_init {
            let init = self.initial_centroids(x, d, &mut rng)?;
            let l = lloyd_gpu(&pts, x, &init, self.max_iter, tol)?;
            if best.as_ref().is_none_or(|(b, _)| l.inertia < b.inertia) {
                best = Some((l, run));
            }
        }
        let (l, best_init) = best.expect("n_init >= 1");
        Ok(KMeansFit {
            distances: l.step.d2.iter().map(|v| v.sqrt()).collect(),
            labels: l.step.labels,
            centroids: l.centroids,
            inertia: l.inertia,
            iterations: l.iterations,
            converged: l.converged,
            best_init,
            d,
        })
    }

    /// The first centroids of one restart, (k, d), drawn from `rng`.
    pub fn initial_centroids(&self, x: &[f32], d: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let n = x.len() / d;
        let rows = match self.init {
            Init::Random => rand::seq::index::sample(rng, n, self.k).into_vec(),
            Init::PlusPlus => plus_plus(x, d, self.k, None, rng)?,
            Init::Parallel => parallel(x, d, self.k, rng)?,
        };
        Ok(rows
            .iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect())
    }
}

/// One Lloyd run on the GPU from `init` (k, d); `x` is the host copy of the points (for
/// relocating empty clusters) and `tol` an absolute squared shift.
pub fn lloyd_gpu(
    pts: &Points,
    x: &[f32],
    init: &[f32],
    max_iter: usize,
    tol: f64,
) -> Result<Lloyd> {
    let d = pts.d();
    twin::lloyd(x, init, d, max_iter, tol, |c| gpu_step(pts, c))
}

/// One assignment step on the GPU: GEMM, fused assignment, segmented centroid sums.
pub fn gpu_step(pts: &Points, c: &[f32]) -> Result<Step> {
    let centroids = Points::new_on(pts.tensor().gpu(), c, pts.d())?;
    let (label, dist) = pts.nearest(&centroids)?;
    let sums = pts.cluster_sums(&label, centroids.n())?;
    Ok(Step {
        labels: label.to_vec()?,
        d2: dist.to_vec()?,
        sums: sums.to_vec()?,
    })
}

/// Mean over features of the population variance (scales the tolerance).
pub fn mean_variance(x: &[f32], d: usize) -> f64 {
    let n = (x.len() / d) as f64;
    let mut total = 0.0;
    for j in 0..d {
        let col = x.iter().skip(j).step_by(d).map(|&v| v as f64);
        let mean = col.clone().sum::<f64>() / n;
        total += col.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    }
    total / d as f64
}

/// Distinct rows of x (n, d), counting stops at `enough` (bit patterns; -0.0 equals 0.0).
pub fn distinct_rows(x: &[f32], d: usize, enough: usize) -> usize {
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    for r in x.chunks(d) {
        seen.insert(r.iter().map(|&v| (v + 0.0).to_bits()).collect());
        if seen.len() >= enough {
            break;
        }
    }
    seen.len()
}

/// Rounds of k-means||.
const PARALLEL_ROUNDS: usize = 5;

/// k-means|| (see [`Init::Parallel`]); returns row indices.
fn parallel(x: &[f32], d: usize, k: usize, rng: &mut ChaCha8Rng) -> Result<Vec<usize>> {
    let n = x.len() / d;
    let pts = Points::new(x, d)?;
    let mut kept = vec![rng.random_range(0..n)];
    let rows = |kept: &[usize]| -> Vec<f32> {
        kept.iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect()
    };
    let nearest = |kept: &[usize]| -> Result<(Vec<u32>, Vec<f32>)> {
        let c = Points::new_on(pts.tensor().gpu(), &rows(kept), d)?;
        let (label, dist) = pts.nearest(&c)?;
        Ok((label.to_vec()?, dist.to_vec()?))
    };
    for _ in 0..PARALLEL_ROUNDS {
        let (_, d2) = nearest(&kept)?;
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        if total <= 0.0 {
            break;
        }
        let l = 2.0 * k as f64;
        for (i, &v) in d2.iter().enumerate() {
            if v > 0.0 && rng.random::<f64>() < l * v as f64 / total {
                kept.push(i);
            }
        }
    }
    if distinct_rows(&rows(&kept), d, k) < k {
        return plus_plus(x, d, k, None, rng); // too few candidates: seed from all rows
    }
    let (label, _) = nearest(&kept)?;
    let mut weight = vec![0.0f64; kept.len()];
    for &l in &label {
        weight[l as usize] += 1.0;
    }
    let picked = plus_plus(&rows(&kept), d, k, Some(&weight), rng)?;
    Ok(picked.into_iter().map(|i| kept[i]).collect())
}

/// Greedy k-means++: the first centroid drawn by weight (uniformly without weights), then each
/// next one among `2 + ln k` candidates drawn with probability proportional to weight times the
/// squared distance to the nearest centroid so far, keeping the candidate that lowers the
/// weighted total the most. Returns row indices.
fn plus_plus(
    x: &[f32],
    d: usize,
    k: usize,
    weights: Option<&[f64]>,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<usize>> {
    let n = x.len() / d;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let trials = 2 + (k as f64).ln() as usize;
    let first = match weights {
        None => rng.random_range(0..n),
        Some(ws) => {
            let total: f64 = ws.iter().sum();
            let r = rng.random::<f64>() * total;
            let mut acc = 0.0;
            ws.iter()
                .position(|&v| {
                    acc += v;
                    acc > r
                })
                .unwrap_or(n - 1)
        }
    };
    let mut chosen = vec![first];
    let mut closest: Vec<f64> = (0..n).map(|i| twin::sq_dist(row(i), row(first))).collect();
    while chosen.len() < k {
        let mut cum = Vec::with_capacity(n);
        let mut total = 0.0;
        for (i, &v) in closest.iter().enumerate() {
            total += w(i) * v;
            cum.push(total);
        }
        if total <= 0.0 {
            return arg_err("k-means++", "every point coincides with a chosen centroid");
        }
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let r = rng.random::<f64>() * total;
            let cand = cum.partition_point(|&c| c <= r).min(n - 1);
            let next: Vec<f64> = (0..n)
                .map(|i| closest[i].min(twin::sq_dist(row(i), row(cand))))
                .collect();
            let pot: f64 = next.iter().enumerate().map(|(i, &v)| w(i) * v).sum();
            if best.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                best = Some((pot, cand, next));
            }
        }
        let (_, cand, next) = best.expect("trials >= 2");
        chosen.push(cand);
        closest = next;
    }
    Ok(chosen)
}
