//! CPU twin of `outlier.wgsl`: the forest layout the Isolation Forest kernel walks, its path
//! lengths, and k-nearest-neighbour selection (on a given distance matrix, or from points with
//! direct f64 distances, an independent route to the GPU's GEMM expansion).

use super::cluster::sq_dist;

/// `nodes[3 i]` of a leaf.
pub const LEAF: u32 = u32::MAX;

/// Euler-Mascheroni constant.
const EULER: f64 = 0.577_215_664_901_532_9;

/// Expected path length of an unsuccessful search in a binary search tree of m points
/// (Liu et al. 2008): `c(m) = 2 H(m - 1) - 2 (m - 1) / m`, `H(i) ~ ln i + 0.5772`; c(2) = 1,
/// c(m) = 0 for m <= 1.
pub fn c_factor(m: usize) -> f64 {
    match m {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let m = m as f64;
            2.0 * ((m - 1.0).ln() + EULER) - 2.0 * (m - 1.0) / m
        }
    }
}

/// Isolation trees in the layout of `outlier.wgsl` (see `launch::outlier`): 3 u32 per node,
/// `[feature, value bits, left]`, right child = left + 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forest {
    /// Nodes, (nodes, 3).
    pub nodes: Vec<u32>,
    /// Root node of each tree, (trees).
    pub roots: Vec<u32>,
    /// Deepest leaf of any tree (edges from its root).
    pub depth: usize,
}

impl Forest {
    /// Append a node slot and return its index (filled by [`Forest::set_leaf`] or
    /// [`Forest::set_split`]).
    pub fn push(&mut self) -> u32 {
        self.nodes.extend([LEAF, 0, 0]);
        (self.nodes.len() / 3 - 1) as u32
    }

    /// Make `node`, at `depth`, a leaf holding `size` points.
    pub fn set_leaf(&mut self, node: u32, size: usize, depth: usize) {
        let i = 3 * node as usize;
        self.nodes[i] = LEAF;
        self.nodes[i + 1] = (c_factor(size) as f32).to_bits();
        self.depth = self.depth.max(depth);
    }

    /// Make `node` a split on `feature` at `threshold`; returns its two children (fresh, adjacent
    /// slots: `x[feature] < threshold` goes to the first).
    pub fn set_split(&mut self, node: u32, feature: usize, threshold: f32) -> (u32, u32) {
        let left = self.push();
        let right = self.push();
        let i = 3 * node as usize;
        self.nodes[i] = feature as u32;
        self.nodes[i + 1] = threshold.to_bits();
        self.nodes[i + 2] = left;
        (left, right)
    }

    /// Trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Depth plus leaf adjustment of one row in tree `t`.
    pub fn path(&self, t: usize, row: &[f32]) -> f64 {
        let mut node = self.roots[t] as usize;
        let mut depth = 0.0f64;
        loop {
            let (f, v) = (
                self.nodes[3 * node],
                f32::from_bits(self.nodes[3 * node + 1]),
            );
            if f == LEAF {
                return depth + v as f64;
            }
            let left = self.nodes[3 * node + 2] as usize;
            node = if row[f as usize] < v { left } else { left + 1 };
            depth += 1.0;
        }
    }
}

/// Mean path length of each row of x (n, d) over the trees of `forest`, in f64.
pub fn path_lengths(forest: &Forest, x: &[f32], d: usize) -> Vec<f64> {
    let t = forest.trees() as f64;
    x.chunks(d)
        .map(|row| {
            (0..forest.trees())
                .map(|i| forest.path(i, row))
                .sum::<f64>()
                / t
        })
        .collect()
}

/// The k smallest entries of each row of d2 (rows, cols), ascending, ties to the smaller
/// column, leaving out column `row0 + r` when `skip_self`: distances (rows, k) and columns
/// (rows, k).
pub fn knn(
    d2: &[f32],
    cols: usize,
    k: usize,
    row0: usize,
    skip_self: bool,
) -> (Vec<f32>, Vec<u32>) {
    let (mut dist, mut idx) = (Vec::new(), Vec::new());
    for (r, row) in d2.chunks(cols).enumerate() {
        let mut cand: Vec<(f32, u32)> = (0..cols)
            .filter(|&c| !(skip_self && c == row0 + r))
            .map(|c| (row[c], c as u32))
            .collect();
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(v, c) in cand.iter().take(k) {
            dist.push(v);
            idx.push(c);
        }
    }
    (dist, idx)
}

/// The k nearest other points of each row of x (n, d), by direct f64 squared distances:
/// squared distances (n, k) and indices (n, k), ascending, ties to the smaller index.
pub fn knn_points(x: &[f32], d: usize, k: usize) -> (Vec<f64>, Vec<u32>) {
    let (mut dist, mut idx) = (Vec::new(), Vec::new());
    for (r, a) in x.chunks(d).enumerate() {
        let mut cand: Vec<(f64, u32)> = x
            .chunks(d)
            .enumerate()
            .filter(|&(c, _)| c != r)
            .map(|(c, b)| (sq_dist(a, b), c as u32))
            .collect();
        let kk = k.min(cand.len());
        if kk > 0 && kk < cand.len() {
            cand.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        cand.truncate(kk);
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (v, c) in cand {
            dist.push(v);
            idx.push(c);
        }
    }
    (dist, idx)
}
