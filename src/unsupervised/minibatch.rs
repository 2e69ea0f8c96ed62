//! Mini-batch k-means: k-means for data that does not fit in one pass, one random batch of rows
//! on the GPU at a time.
//!
//! Each step draws `batch_size` rows without replacement (seeded), assigns them to the nearest
//! centroid and sums them per cluster (the same kernels as Lloyd), then moves each centroid
//! towards its batch mean with a per-centroid rate: with `v_c` the rows centroid c has seen so
//! far, including the `m_c` of this batch,
//! `mu_c <- mu_c + (m_c / v_c) (mean_c - mu_c)`, so a centroid is the running mean of every row
//! ever assigned to it (Sculley 2010, scikit-learn's `MiniBatchKMeans`). Only the batch lives on
//! the GPU. The final labels and inertia come from one assignment pass over the data, in chunks
//! of [`CHUNK_ROWS`] rows.
//!
//! ```no_run
//! use kiln::unsupervised::MiniBatchKMeans;
//! let x: Vec<f32> = (0..400).map(|i| if i < 200 { i as f32 * 1e-3 } else { 9.0 }).collect();
//! let fit = MiniBatchKMeans::new(2).batch_size(64).fit(&x, 1)?;
//! assert_ne!(fit.labels[0], fit.labels[399]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::reference::cluster::Step;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::distance::Points;
use super::kmeans::{KMeans, KMeansFit, gpu_step};
use crate::error::{Result, arg_err};

/// Rows per chunk of the final assignment pass.
pub const CHUNK_ROWS: usize = 1 << 16;

/// Mini-batch k-means settings: k-means++ seeds from the whole data, then `epochs * n / batch_size`
/// steps.
#[derive(Debug, Clone, PartialEq)]
pub struct MiniBatchKMeans {
    /// Clusters, initialisation and seed (its `n_init`, `max_iter` and `tol` are unused).
    pub kmeans: KMeans,
    /// Rows per step.
    pub batch_size: usize,
    /// Passes over the data (in expectation).
    pub epochs: usize,
}

impl MiniBatchKMeans {
    /// k clusters, batches of 1,024 rows, 10 epochs, seed 0.
    pub fn new(k: usize) -> Self {
        MiniBatchKMeans {
            kmeans: KMeans::new(k),
            batch_size: 1024,
            epochs: 10,
        }
    }

    /// Set the batch size.
    pub fn batch_size(mut self, b: usize) -> Self {
        self.batch_size = b;
        self
    }

    /// Fit on row-major x (n, d): only one batch at a time is on the GPU.
    pub fn fit(&self, x: &[f32], d: usize) -> Result<KMeansFit> {
        let k = &self.kmeans;
        let n = k.validate(x, d)?;
        if self.batch_size == 0 || self.epochs == 0 {
            return arg_err(
                "mini-batch k-means",
                "batch_size and epochs must be at least 1",
            );
        }
        let b = self.batch_size.min(n);
        let mut rng = ChaCha8Rng::seed_from_u64(k.seed);
        let init = k.initial_centroids(x, d, &mut rng)?;
        let steps = (self.epochs * n).div_ceil(b);
        let c = minibatch(x, &init, d, b, steps, &mut rng, |batch, c| {
            gpu_step(&Points::new(batch, d)?, c)
        })?;
        let fit = assign_chunked(x, &c, d)?;
        Ok(KMeansFit {
            iterations: steps,
            ..fit
        })
    }
}

/// The mini-batch loop from `init` (k, d), `steps` batches of `b` rows drawn from `rng`, with
/// `step` assigning a batch to centroids and summing it per cluster (GPU or CPU twin). Returns
/// the centroids.
pub fn minibatch<E>(
    x: &[f32],
    init: &[f32],
    d: usize,
    b: usize,
    steps: usize,
    rng: &mut ChaCha8Rng,
    mut step: impl FnMut(&[f32], &[f32]) -> std::result::Result<Step, E>,
) -> std::result::Result<Vec<f32>, E> {
    let n = x.len() / d;
    let k = init.len() / d;
    let mut c = init.to_vec();
    let mut seen = vec![0.0f64; k];
    let mut batch = Vec::with_capacity(b * d);
    for _ in 0..steps {
        let mut rows = rand::seq::index::sample(rng, n, b).into_vec();
        rows.sort_unstable();
        batch.clear();
        for r in rows {
            batch.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        let s = step(&batch, &c)?;
        for j in 0..k {
            let sums = &s.sums[j * (d + 1)..(j + 1) * (d + 1)];
            let m = sums[d] as f64;
            if m == 0.0 {
                continue;
            }
            seen[j] += m;
            let rate = m / seen[j];
            for (o, &sum) in c[j * d..(j + 1) * d].iter_mut().zip(sums) {
                *o += (rate * (sum as f64 / m - *o as f64)) as f32;
            }
        }
    }
    Ok(c)
}

/// Labels, distances and inertia of x (n, d) against centroids c (k, d), [`CHUNK_ROWS`] rows
/// at a time on the GPU.
pub fn assign_chunked(x: &[f32], c: &[f32], d: usize) -> Result<KMeansFit> {
    let (mut labels, mut d2) = (Vec::new(), Vec::<f32>::new());
    for chunk in x.chunks(CHUNK_ROWS * d) {
        let pts = Points::new(chunk, d)?;
        let cp = Points::new_on(pts.tensor().gpu(), c, d)?;
        let (l, dist) = pts.nearest(&cp)?;
        labels.extend(l.to_vec::<u32>()?);
        d2.extend(dist.to_vec::<f32>()?);
    }
    Ok(KMeansFit {
        centroids: c.to_vec(),
        labels,
        distances: d2.iter().map(|v| v.sqrt()).collect(),
        inertia: d2.iter().map(|&v| v as f64).sum(),
        iterations: 0,
        converged: false,
        best_init: 0,
        d,
    })
}
