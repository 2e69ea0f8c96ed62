//! Label spreading (Zhou et al. 2004) over a k-nearest-neighbour graph: the classical
//! semi-supervised baseline, a few labels flowing to their neighbours.
//!
//! For `n` points (n, d), labels for some of them and `C` classes:
//!
//! ```text
//! W_ij = 1 when j is among the k nearest of i or i among the k nearest of j   (n, n), W_ii = 0
//! S    = D^-1/2 W D^-1/2,   D = diag(sum_j W_ij)
//! Y    = one-hot rows for the labelled points, zero rows for the others        (n, C)
//! F    <- alpha S F + (1 - alpha) Y      from F = Y, until max |dF| < tol or max_iter
//! ```
//!
//! Each point's class is `argmax_c F_ic`; a new point takes `argmax_c sum_{j in kNN} F_jc`
//! over its k nearest training points. The neighbour search runs on the GPU
//! ([`Points::knn`]: squared distances as a GEMM by blocks, the k smallest kept by a kernel);
//! the graph (k n entries) and the iteration stay on the host.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::unsupervised::LabelSpreading;
//! // Two groups on a line, one label each.
//! let x = [0.0f32, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 5.3];
//! let labels = [Some(0), None, None, None, None, None, None, Some(1)];
//! let fit = LabelSpreading { k: 2, ..LabelSpreading::default() }.fit(&x, 1, &labels, 2)?;
//! assert_eq!(fit.labels(), vec![0, 0, 0, 0, 1, 1, 1, 1]);
//! assert_eq!(fit.predict(&[0.05, 5.25], 1)?, vec![0, 1]);
//! # Ok(())
//! # }
//! ```

use crate::error::{Result, arg_err};

use super::distance::{Points, check_matrix};

/// Label spreading settings (scikit-learn's `LabelSpreading(kernel="knn")` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSpreading {
    /// Neighbours per point.
    pub k: usize,
    /// Weight of the neighbours against the original labels, in (0, 1).
    pub alpha: f32,
    /// Most iterations.
    pub max_iter: usize,
    /// Stop when no entry of F moves more than this.
    pub tol: f32,
}

impl Default for LabelSpreading {
    fn default() -> Self {
        LabelSpreading {
            k: 7,
            alpha: 0.2,
            max_iter: 30,
            tol: 1e-3,
        }
    }
}

/// A fitted label spreading: the training points and their label distributions.
#[derive(Debug, Clone)]
pub struct SpreadFit {
    points: Points,
    k: usize,
    classes: usize,
    /// Label distributions F, (n, C), each row summing to 1 (a row no label reached: 0).
    pub dist: Vec<f32>,
    /// Iterations run.
    pub iterations: usize,
}

impl LabelSpreading {
    /// Spread `labels` (one per row of `x` (n, d); `None` = unlabelled; classes `0..classes`)
    /// on the default GPU.
    pub fn fit(
        &self,
        x: &[f32],
        d: usize,
        labels: &[Option<u32>],
        classes: usize,
    ) -> Result<SpreadFit> {
        self.fit_on(&crate::device()?, x, d, labels, classes)
    }

    /// [`LabelSpreading::fit`] with the neighbour search on `gpu`.
    pub fn fit_on(
        &self,
        gpu: &std::sync::Arc<crate::Gpu>,
        x: &[f32],
        d: usize,
        labels: &[Option<u32>],
        classes: usize,
    ) -> Result<SpreadFit> {
        const WHAT: &str = "label spreading";
        let n = check_matrix(WHAT, x, d)?;
        if labels.len() != n {
            return arg_err(WHAT, format!("{} labels for {n} points", labels.len()));
        }
        if self.k == 0 || self.k >= n {
            return arg_err(
                WHAT,
                format!("k = {} neighbours: need 1 <= k < n = {n} points", self.k),
            );
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return arg_err(WHAT, format!("alpha = {}: must be in (0, 1)", self.alpha));
        }
        if let Some(l) = labels.iter().flatten().find(|&&l| l as usize >= classes) {
            return arg_err(WHAT, format!("label {l} is not below {classes} classes"));
        }
        if labels.iter().all(Option::is_none) {
            return arg_err(WHAT, "no labelled point: nothing to spread");
        }
        let points = Points::new_on(gpu, x, d)?;
        let near = points.knn(&points, self.k, true)?;
        // Symmetric 0/1 graph as adjacency lists (i ~ j when either is among the other's k).
        let mut adj: Vec<Vec<u32>> = near.idx.chunks(self.k).map(<[u32]>::to_vec).collect();
        for (i, list) in near.idx.chunks(self.k).enumerate() {
            for &j in list {
                adj[j as usize].push(i as u32);
            }
        }
        for list in &mut adj {
            list.sort_unstable();
            list.dedup();
        }
        let inv_sqrt: Vec<f32> = adj.iter().map(|l| 1.0 / (l.len() as f32).sqrt()).collect();
        let mut y = vec![0.0f32; n * classes];
        for (i, l) in labels.iter().enumerate() {
            if let Some(c) = l {
                y[i * classes + *c as usize] = 1.0;
            }
        }
        let mut f = y.clone();
        let mut iterations = 0;
        while iterations < self.max_iter {
            iterations += 1;
            let mut next = vec![0.0f32; n * classes];
            let mut moved = 0.0f32;
            for i in 0..n {
                let row = &mut next[i * classes..(i + 1) * classes];
                for &j in &adj[i] {
                    let s = inv_sqrt[i] * inv_sqrt[j as usize];
                    for c in 0..classes {
                        row[c] += s * f[j as usize * classes + c];
                    }
                }
                for c in 0..classes {
                    let v = self.alpha * row[c] + (1.0 - self.alpha) * y[i * classes + c];
                    moved = moved.max((v - f[i * classes + c]).abs());
                    row[c] = v;
                }
            }
            f = next;
            if moved < self.tol {
                break;
            }
        }
        for row in f.chunks_exact_mut(classes) {
            let s: f32 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
        Ok(SpreadFit {
            points,
            k: self.k,
            classes,
            dist: f,
            iterations,
        })
    }
}

impl SpreadFit {
    /// The class of each training point (`argmax_c F_ic`; ties and unreached rows: the lowest
    /// class).
    pub fn labels(&self) -> Vec<u32> {
        self.dist.chunks_exact(self.classes).map(argmax).collect()
    }

    /// Classes of new points `x` (m, d): the summed distributions of their k nearest
    /// training points.
    pub fn predict(&self, x: &[f32], d: usize) -> Result<Vec<u32>> {
        if d != self.points.d() {
            return arg_err(
                "label spreading predict",
                format!("points of {d} features, fitted on {}", self.points.d()),
            );
        }
        check_matrix("label spreading predict", x, d)?;
        let q = Points::new_on(self.points.tensor().gpu(), x, d)?;
        let near = q.knn(&self.points, self.k, false)?;
        Ok(near
            .idx
            .chunks(self.k)
            .map(|list| {
                let mut sum = vec![0.0f32; self.classes];
                for &j in list {
                    let row = &self.dist[j as usize * self.classes..][..self.classes];
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
                argmax(&sum)
            })
            .collect())
    }
}

/// Index of the largest value (the first of ties).
fn argmax(v: &[f32]) -> u32 {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best }) as u32
}
