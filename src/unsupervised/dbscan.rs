//! DBSCAN: clusters of any shape as connected regions of dense points; the rest is noise.
//!
//! A point is a core point when at least `min_samples` points (itself included) lie within
//! `eps` of it. Core points within `eps` of each other share a cluster; a non-core point within
//! `eps` of a core point joins that point's cluster (a border point); every other point is noise
//! (label -1). The neighbour counts come from the GPU (distance GEMM by blocks of rows, then a
//! count kernel); the expansion is a breadth-first search on the host, starting from the core
//! points in row order, so cluster ids are numbered in order of their first core point and a
//! border point reachable from two clusters joins the one found first. Deterministic.
//!
//! ```no_run
//! use kiln::unsupervised::Dbscan;
//! let x = [0.0f32, 0.1, 0.2, 5.0, 5.1, 5.2, 50.0];
//! let fit = Dbscan::new(0.5, 2).fit(&x, 1)?;
//! assert_eq!(fit.labels, [0, 0, 0, 1, 1, 1, -1]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::collections::VecDeque;

use kiln_kernels::launch::cluster::MAX_LOOP;

use super::distance::Points;
use crate::error::{Result, arg_err};

/// DBSCAN settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dbscan {
    /// Neighbourhood radius (Euclidean).
    pub eps: f32,
    /// Points within `eps` (itself included) that make a core point.
    pub min_samples: usize,
}

/// A fitted DBSCAN.
#[derive(Debug, Clone, PartialEq)]
pub struct DbscanFit {
    /// Cluster of each row (0, 1, ...), -1 for noise, in input order.
    pub labels: Vec<i32>,
    /// Whether each row is a core point.
    pub core: Vec<bool>,
    /// Neighbours within eps of each row (itself included), from the GPU.
    pub neighbours: Vec<u32>,
    /// Number of clusters.
    pub clusters: usize,
    /// Number of noise points.
    pub noise: usize,
}

impl Dbscan {
    /// Radius `eps`, `min_samples` neighbours for a core point.
    pub fn new(eps: f32, min_samples: usize) -> Dbscan {
        Dbscan { eps, min_samples }
    }

    /// Fit on row-major x (n, d).
    pub fn fit(&self, x: &[f32], d: usize) -> Result<DbscanFit> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return arg_err(
                "dbscan",
                format!("eps = {} must be a positive number", self.eps),
            );
        }
        if self.min_samples == 0 {
            return arg_err("dbscan", "min_samples = 0: need at least 1");
        }
        let pts = Points::new(x, d)?;
        let n = pts.n();
        if n > MAX_LOOP {
            return arg_err(
                "dbscan",
                format!("{n} points exceed the {MAX_LOOP} it can take"),
            );
        }
        let eps2 = self.eps * self.eps;
        let mut neighbours = Vec::with_capacity(n);
        let mut lists: Vec<Vec<u32>> = Vec::with_capacity(n);
        let step = Points::block_rows(n);
        for r0 in (0..n).step_by(step) {
            let rows = step.min(n - r0);
            let (count, d2) = pts.neighbours_block(r0, rows, eps2)?;
            for (i, row) in d2.chunks(n).enumerate() {
                let core = count[i] as usize >= self.min_samples;
                lists.push(if core {
                    (0..n as u32).filter(|&j| row[j as usize] <= eps2).collect()
                } else {
                    Vec::new()
                });
            }
            neighbours.extend(count);
        }
        let core: Vec<bool> = neighbours
            .iter()
            .map(|&c| c as usize >= self.min_samples)
            .collect();
        let mut labels = vec![-1i32; n];
        let mut clusters = 0;
        for start in 0..n {
            if !core[start] || labels[start] >= 0 {
                continue;
            }
            let id = clusters as i32;
            clusters += 1;
            labels[start] = id;
            let mut queue = VecDeque::from([start]);
            while let Some(p) = queue.pop_front() {
                for &q in &lists[p] {
                    let q = q as usize;
                    if labels[q] < 0 {
                        labels[q] = id;
                        if core[q] {
                            queue.push_back(q);
                        }
                    }
                }
            }
        }
        let noise = labels.iter().filter(|&&l| l < 0).count();
        Ok(DbscanFit {
            labels,
            core,
            neighbours,
            clusters,
            noise,
        })
    }
}
