//! Principal component analysis: the covariance on the GPU, its eigen-decomposition on the CPU.
//!
//! `C = Xc^T Xc / (n - 1)` with `Xc` the centred data (one GEMM of (d, n) by (n, d)). The d x d
//! matrix is small, so it is diagonalised on the host by cyclic Jacobi rotations in f64: each
//! rotation zeroes one off-diagonal pair; sweeps repeat until the off-diagonal mass is below
//! 1e-12 of the total. Jacobi was chosen over power iteration because it returns every
//! eigenpair at once, accurately even when eigenvalues are close, and d is small (features, not
//! rows). Components are sorted by decreasing variance; each is signed so that its largest
//! entry (by magnitude) is positive, which makes the output deterministic.
//!
//! ```no_run
//! use kiln::unsupervised::Pca;
//! // Points on the line y = 2x: one component holds all the variance.
//! let x = [0.0f32, 0.0, 1.0, 2.0, 2.0, 4.0, 3.0, 6.0];
//! let fit = Pca::new(2).fit(&x, 2)?;
//! assert!((fit.explained_variance_ratio[0] - 1.0).abs() < 1e-4);
//! let z = fit.transform(&x)?; // (4, 2)
//! assert!(z.chunks(2).all(|r| r[1].abs() < 1e-3));
//! # Ok::<(), kiln::Error>(())
//! ```

use super::distance::check_matrix;
use crate::Tensor;
use crate::error::{Result, arg_err};

/// PCA settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pca {
    /// Components kept.
    pub components: usize,
}

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaFit {
    /// Feature means, (d).
    pub mean: Vec<f32>,
    /// Principal axes, (components, d), unit length.
    pub components: Vec<f32>,
    /// Variance along each component (eigenvalues of the covariance), (components).
    pub explained_variance: Vec<f64>,
    /// Its share of the total variance, (components).
    pub explained_variance_ratio: Vec<f64>,
    /// Features per point.
    pub d: usize,
}

impl Pca {
    /// Keep `components` components.
    pub fn new(components: usize) -> Pca {
        Pca { components }
    }

    /// Fit on row-major x (n, d).
    pub fn fit(&self, x: &[f32], d: usize) -> Result<PcaFit> {
        let n = check_matrix("pca", x, d)?;
        if self.components == 0 || self.components > d {
            return arg_err(
                "pca",
                format!("{} components: need 1 to d = {d}", self.components),
            );
        }
        let mean: Vec<f32> = (0..d)
            .map(|j| {
                (x.iter().skip(j).step_by(d).map(|&v| v as f64).sum::<f64>() / n as f64) as f32
            })
            .collect();
        let xc: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v - mean[i % d])
            .collect();
        let t = Tensor::from_slice(&xc, &[n, d])?;
        let cov: Vec<f32> = t.t()?.matmul(&t)?.to_vec()?; // (d, d)
        let scale = 1.0 / (n.max(2) - 1) as f64;
        let mut a: Vec<f64> = cov.iter().map(|&v| v as f64 * scale).collect();
        let vectors = jacobi(&mut a, d);
        let total: f64 = (0..d).map(|i| a[i * d + i].max(0.0)).sum();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&p, &q| a[q * d + q].total_cmp(&a[p * d + p]).then(p.cmp(&q)));
        let mut components = Vec::with_capacity(self.components * d);
        let mut explained_variance = Vec::new();
        for &c in order.iter().take(self.components) {
            let v: Vec<f64> = (0..d).map(|i| vectors[i * d + c]).collect();
            let big = v
                .iter()
                .copied()
                .fold(0.0f64, |m, e| if e.abs() > m.abs() { e } else { m });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            components.extend(v.iter().map(|&e| (e * sign) as f32));
            explained_variance.push(a[c * d + c].max(0.0));
        }
        let explained_variance_ratio = explained_variance
            .iter()
            .map(|&v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        Ok(PcaFit {
            mean,
            components,
            explained_variance,
            explained_variance_ratio,
            d,
        })
    }
}

impl PcaFit {
    /// Project row-major x (n, d) onto the components on the GPU: `(x - mean) V^T`, (n, c).
    pub fn transform(&self, x: &[f32]) -> Result<Vec<f32>> {
        let d = self.d;
        let n = check_matrix("pca transform", x, d)?;
        let c = self.components.len() / d;
        let v = Tensor::from_slice(&self.components, &[c, d])?;
        self.centred(x, n)?.matmul(&v.t()?)?.to_vec()
    }

    /// Row-major x (n, d) less the feature means, `x - mean`, as an (n, d) tensor.
    pub fn centred(&self, x: &[f32], n: usize) -> Result<Tensor> {
        let d = self.d;
        let xc: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v - self.mean[i % d])
            .collect();
        Tensor::from_slice(&xc, &[n, d])
    }
}

/// Diagonalise the symmetric `a` (d, d) in place by cyclic Jacobi rotations; returns the
/// eigenvectors as the columns of a (d, d) matrix. The eigenvalues are left on a's diagonal.
pub fn jacobi(a: &mut [f64], d: usize) -> Vec<f64> {
    let mut v = vec![0.0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|e| e * e).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        if off <= 1e-24 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes a[p, q]: tan(2 theta) = 2 apq / (aqq - app).
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    v
}
