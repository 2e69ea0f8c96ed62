//! Two statistical scores: the Mahalanobis distance to the mean, and the robust z-score.
//!
//! - Mahalanobis: `s(x) = (x - mu)^T C^+ (x - mu)`, C the sample covariance (divisor n - 1) and
//!   C^+ its pseudo-inverse. The covariance is the GEMM of [`Pca`]; its Jacobi eigenpairs
//!   `(lambda_i, v_i)` give `s(x) = sum_i ((x - mu) . v_i)^2 / lambda_i` over the eigenvalues
//!   above `1e-9 * lambda_max` (a constant column, or one that is a combination of others, adds
//!   a zero eigenvalue and is left out instead of dividing by zero). The projection
//!   `(X - mu) (V / sqrt(lambda))` and the row sums of squares run on the GPU.
//! - Robust z (Iglewicz and Hoaglin): per feature `z = 0.6745 (x - median) / MAD`, MAD the
//!   median absolute deviation; where MAD is 0 the mean absolute deviation stands in
//!   (`z = (x - median) / (1.2533 MeanAD)`); a constant feature is left out. The score is the
//!   largest `|z|` over the features. On the host (sorting per column).
//!
//! ```no_run
//! use kiln::unsupervised::{Mahalanobis, RobustZ};
//! // Points on a noisy line y ~ x, and one off it.
//! let x = [0.0f32, 0.1, 1.0, 0.9, 2.0, 2.1, 3.0, 2.9, 4.0, 4.1, 2.0, -2.0];
//! let m = Mahalanobis.fit_score(&x, 2)?;
//! assert!(m[5] > m[0] && m[5] > m[4]);
//! let z = RobustZ.fit_score(&x, 2)?;
//! assert!(z[5] > z[2]);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::super::Pca;
use super::check_rows;
use crate::Tensor;
use crate::error::{Result, arg_err};

/// The Mahalanobis score (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mahalanobis;

/// The robust z-score (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RobustZ;

/// Eigenvalues at most this share of the largest count as zero.
const RANK_TOL: f64 = 1e-9;

impl Mahalanobis {
    /// Squared Mahalanobis distance of each row of x (n, d) to the mean.
    pub fn fit_score(&self, x: &[f32], d: usize) -> Result<Vec<f64>> {
        let n = check_rows("mahalanobis", x, d)?;
        let fit = Pca::new(d).fit(x, d)?;
        let top = fit.explained_variance[0];
        let keep: Vec<usize> = (0..d)
            .filter(|&i| {
                let l = fit.explained_variance[i];
                l > 0.0 && l > RANK_TOL * top
            })
            .collect();
        if keep.is_empty() {
            return arg_err("mahalanobis", "every feature is constant: nothing to score");
        }
        // W = V_kept / sqrt(lambda), (c, d): ||(x - mu) W^T||^2 is the score.
        let w: Vec<f32> = keep
            .iter()
            .flat_map(|&i| {
                let s = 1.0 / fit.explained_variance[i].sqrt();
                fit.components[i * d..(i + 1) * d]
                    .iter()
                    .map(move |&v| (v as f64 * s) as f32)
            })
            .collect();
        let wt = Tensor::from_slice(&w, &[keep.len(), d])?;
        let s: Vec<f32> = fit
            .centred(x, n)?
            .matmul(&wt.t()?)?
            .square()?
            .sum_dims(&[1], false)?
            .to_vec()?;
        Ok(s.iter().map(|&v| v as f64).collect())
    }
}

/// Median of a sorted slice.
fn median(sorted: &[f64]) -> f64 {
    let m = sorted.len();
    if m % 2 == 1 {
        sorted[m / 2]
    } else {
        (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0
    }
}

impl RobustZ {
    /// Largest robust |z| of each row of x (n, d) over its features.
    pub fn fit_score(&self, x: &[f32], d: usize) -> Result<Vec<f64>> {
        let n = check_rows("robust z", x, d)?;
        let mut score = vec![0.0f64; n];
        let mut used = 0;
        for j in 0..d {
            let mut col: Vec<f64> = (0..n).map(|i| x[i * d + j] as f64).collect();
            col.sort_by(f64::total_cmp);
            let med = median(&col);
            let mut dev: Vec<f64> = col.iter().map(|v| (v - med).abs()).collect();
            dev.sort_by(f64::total_cmp);
            let mad = median(&dev);
            let scale = if mad > 0.0 {
                mad / 0.6745
            } else {
                1.253_314 * dev.iter().sum::<f64>() / n as f64
            };
            if scale <= 0.0 {
                continue; // constant feature
            }
            used += 1;
            for (i, s) in score.iter_mut().enumerate() {
                *s = s.max(((x[i * d + j] as f64 - med) / scale).abs());
            }
        }
        if used == 0 {
            return arg_err("robust z", "every feature is constant: nothing to score");
        }
        Ok(score)
    }
}
