//! Isolation Forest (Liu, Ting and Zhou, 2008): outliers are isolated by fewer random splits.
//!
//! Each of `trees` trees is grown on the host from `psi = min(max_samples, n)` rows drawn
//! without replacement: a node picks a feature uniformly among those not constant on its rows
//! and a threshold uniformly in `[min, max)` of that feature, rows `< threshold` go left; a node
//! becomes a leaf when it holds one row, every feature is constant on its rows, or it is at the
//! height limit `ceil(log2 psi)`. A row's path length in a tree is its leaf's depth plus
//! `c(leaf size)`, the expected depth a full tree would add (`c(m) = 2 H(m - 1) - 2 (m - 1) / m`).
//! The path lengths of every row through every tree are computed on the GPU
//! (`outlier.wgsl:iforest_path`, CPU twin `kiln_kernels::reference::outlier::path_lengths`), and
//! the score is `s = 2^(-E[h] / c(psi))` in (0, 1]: about 0.5 or less for ordinary rows, near 1
//! for outliers (scikit-learn's `score_samples` is `-s`). Same seed, same forest.
//!
//! ```no_run
//! use kiln::unsupervised::IsolationForest;
//! // Twenty rows around 0 and one far away.
//! let mut x: Vec<f32> = (0..20).map(|i| (i % 5) as f32 * 0.1).collect();
//! x.push(40.0);
//! let scores = IsolationForest::new().seed(1).fit_score(&x, 1)?;
//! let top = (0..21).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
//! assert_eq!(top, 20);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::outlier as ok;
use kiln_kernels::reference::outlier::{Forest, c_factor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::check_rows;
use crate::Tensor;
use crate::error::{Result, arg_err};
use crate::tensor::DType;

/// Isolation Forest settings (builder style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationForest {
    /// Trees (default 100).
    pub trees: usize,
    /// Rows drawn for each tree (default 256; fewer when the data has fewer).
    pub max_samples: usize,
    /// Seed of the row draws and splits.
    pub seed: u64,
}

/// A grown forest, ready to score rows.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestFit {
    /// The trees, in the layout of `outlier.wgsl`.
    pub forest: Forest,
    /// Rows each tree was grown on.
    pub psi: usize,
    /// Features per row.
    pub d: usize,
}

impl Default for IsolationForest {
    fn default() -> Self {
        IsolationForest {
            trees: 100,
            max_samples: 256,
            seed: 0,
        }
    }
}

impl IsolationForest {
    /// The defaults: 100 trees of 256 rows, seed 0.
    pub fn new() -> IsolationForest {
        IsolationForest::default()
    }

    /// Set the number of trees.
    pub fn trees(self, trees: usize) -> Self {
        IsolationForest { trees, ..self }
    }

    /// Set the rows drawn per tree.
    pub fn max_samples(self, max_samples: usize) -> Self {
        IsolationForest {
            max_samples,
            ..self
        }
    }

    /// Set the seed.
    pub fn seed(self, seed: u64) -> Self {
        IsolationForest { seed, ..self }
    }

    /// Grow the forest on row-major x (n, d).
    pub fn fit(&self, x: &[f32], d: usize) -> Result<IsolationForestFit> {
        let n = check_rows("isolation forest", x, d)?;
        if self.max_samples < 2 {
            return arg_err(
                "isolation forest",
                format!("max_samples = {}: need at least 2", self.max_samples),
            );
        }
        let psi = self.max_samples.min(n);
        let limit = (psi as f64).log2().ceil() as usize;
        if let Err(e) = ok::check_forest(self.trees, limit) {
            return arg_err("isolation forest", e.to_string());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut forest = Forest::default();
        for _ in 0..self.trees {
            let rows = rand::seq::index::sample(&mut rng, n, psi).into_vec();
            grow(&mut forest, x, d, rows, limit, &mut rng);
        }
        Ok(IsolationForestFit { forest, psi, d })
    }

    /// Grow the forest on x (n, d) and score the same rows.
    pub fn fit_score(&self, x: &[f32], d: usize) -> Result<Vec<f64>> {
        self.fit(x, d)?.score(x)
    }
}

/// Grow one tree on `rows` of x, its root the next node slot.
fn grow(
    forest: &mut Forest,
    x: &[f32],
    d: usize,
    rows: Vec<usize>,
    limit: usize,
    rng: &mut ChaCha8Rng,
) {
    let root = forest.push();
    forest.roots.push(root);
    let mut stack = vec![(root, rows, 0usize)];
    while let Some((node, rows, depth)) = stack.pop() {
        let mut spans: Vec<(usize, f32, f32)> = Vec::new(); // (feature, min, max), not constant
        if rows.len() > 1 && depth < limit {
            for j in 0..d {
                let col = rows.iter().map(|&r| x[r * d + j]);
                let lo = col.clone().fold(f32::INFINITY, f32::min);
                let hi = col.fold(f32::NEG_INFINITY, f32::max);
                if lo < hi {
                    spans.push((j, lo, hi));
                }
            }
        }
        if spans.is_empty() {
            forest.set_leaf(node, rows.len(), depth);
            continue;
        }
        let (j, lo, hi) = spans[rng.random_range(0..spans.len())];
        let u: f64 = rng.random();
        let thr = (lo as f64 + u * (hi as f64 - lo as f64)) as f32;
        let (left, right): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&r| x[r * d + j] < thr);
        let (l, r) = forest.set_split(node, j, thr);
        stack.push((r, right, depth + 1));
        stack.push((l, left, depth + 1));
    }
}

impl IsolationForestFit {
    /// Mean path length of each row of x (n, d) over the trees, on the GPU: (n).
    pub fn path_lengths(&self, x: &[f32]) -> Result<Vec<f32>> {
        let n = super::super::distance::check_matrix("isolation forest", x, self.d)?;
        let xt = Tensor::from_slice(x, &[n, self.d])?;
        let gpu = xt.gpu().clone();
        let nodes = Tensor::from_slice_on(&gpu, &self.forest.nodes, &[self.forest.nodes.len()])?;
        let roots = Tensor::from_slice_on(&gpu, &self.forest.roots, &[self.forest.trees()])?;
        let path = Tensor::empty_on(&gpu, &[n], DType::F32)?;
        ok::iforest_path(
            &gpu,
            xt.buffer(),
            n,
            self.d,
            nodes.buffer(),
            roots.buffer(),
            self.forest.trees(),
            self.forest.depth,
            path.buffer(),
        )?;
        path.to_vec()
    }

    /// Anomaly score of each row of x (n, d): `2^(-E[h] / c(psi))`, higher = more anomalous.
    pub fn score(&self, x: &[f32]) -> Result<Vec<f64>> {
        let c = c_factor(self.psi);
        Ok(self
            .path_lengths(x)?
            .iter()
            .map(|&h| 2f64.powf(-(h as f64) / c))
            .collect())
    }
}
