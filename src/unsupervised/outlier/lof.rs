//! Local Outlier Factor (Breunig et al. 2000): a row whose neighbourhood is much sparser than
//! its neighbours' neighbourhoods is an outlier.
//!
//! With `N_k(a)` the k nearest other rows of a and `kdist(b)` the distance to b's k-th one:
//! `reach(a, b) = max(kdist(b), d(a, b))`, the local reachability density
//! `lrd(a) = 1 / (mean_{b in N_k(a)} reach(a, b) + 1e-10)`, and
//! `LOF(a) = mean_{b in N_k(a)} lrd(b) / lrd(a)`: about 1 inside a cluster, larger for outliers
//! (scikit-learn's `negative_outlier_factor_` is `-LOF`, with the same 1e-10).
//!
//! The neighbours come from the GPU: squared distances by blocks of rows (the GEMM of
//! [`Points`]), then `outlier.wgsl:knn` keeps the k smallest of each row (the row itself left
//! out; ties: the lower index) and only (rows, k) is read back. The rest is O(n k) on the host.
//!
//! ```no_run
//! use kiln::unsupervised::Lof;
//! let x = [0.0f32, 0.1, 0.2, 0.3, 0.4, 5.0];
//! let scores = Lof::new(2).fit_score(&x, 1)?;
//! assert!(scores[5] > 5.0 && scores[2] < 1.5);
//! # Ok::<(), kiln::Error>(())
//! ```

pub use super::super::distance::Knn;
use super::super::distance::Points;
use super::check_rows;
use crate::error::{Result, arg_err};

/// LOF settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lof {
    /// Neighbours (scikit-learn's default is 20).
    pub k: usize,
}

/// The k nearest other rows of each point of `pts` on the GPU ([`Points::knn`]).
pub fn knn(pts: &Points, k: usize) -> Result<Knn> {
    pts.knn(pts, k, true)
}

impl Lof {
    /// `k` neighbours.
    pub fn new(k: usize) -> Lof {
        Lof { k }
    }

    /// LOF of each row of x (n, d): higher = more anomalous.
    pub fn fit_score(&self, x: &[f32], d: usize) -> Result<Vec<f64>> {
        let n = check_rows("lof", x, d)?;
        if self.k == 0 || self.k >= n {
            return arg_err(
                "lof",
                format!("k = {}: need 1 to n - 1 = {} neighbours", self.k, n - 1),
            );
        }
        Ok(Lof::from_knn(&knn(&Points::new(x, d)?, self.k)?))
    }

    /// LOF of each row from its neighbours (see the module notes), in f64.
    pub fn from_knn(nn: &Knn) -> Vec<f64> {
        let k = nn.k;
        let n = nn.idx.len() / k;
        let kdist: Vec<f64> = (0..n).map(|a| nn.dist[a * k + k - 1] as f64).collect();
        let lrd: Vec<f64> = (0..n)
            .map(|a| {
                let reach: f64 = (0..k)
                    .map(|j| kdist[nn.idx[a * k + j] as usize].max(nn.dist[a * k + j] as f64))
                    .sum();
                1.0 / (reach / k as f64 + 1e-10)
            })
            .collect();
        (0..n)
            .map(|a| {
                let s: f64 = (0..k).map(|j| lrd[nn.idx[a * k + j] as usize]).sum();
                s / k as f64 / lrd[a]
            })
            .collect()
    }
}
