//! Launchers for `outlier.wgsl`: Isolation Forest path lengths, and the k nearest neighbours
//! of each row of a block of squared distances (for the Local Outlier Factor).
//!
//! Math:
//! - `path[r] = (1 / T) sum_t (depth_t(x_r) + c(leaf size))`, the mean depth at which the T
//!   trees isolate row r, with `c(m) = 2 H(m - 1) - 2 (m - 1) / m` the expected depth still to
//!   go in a leaf holding m sample points (0 for m <= 1).
//! - `knn`: per row, the k smallest `D[r, c]` in ascending order (ties: the smaller column), the
//!   row itself left out on request.
//!
//! Forest layout (the one [`crate::reference::outlier::Forest`] builds): `nodes` holds 3 u32
//! per node, `[feature, value bits, left]`; a leaf has `feature = LEAF` and `value = c(size)`,
//! an internal node sends `x[feature] < value` to `left` and the rest to `left + 1`; `roots[t]`
//! is tree t's root.
//!
//! Every buffer here is contiguous, row-major, starting at element 0; shapes are given in the
//! argument comments.
//!
//! See also:
//! - shader: `shaders/outlier.wgsl`
//! - CPU twin: [`crate::reference::outlier`]
//! - library: `src/unsupervised/outlier/` (Isolation Forest, LOF)
//! - tests: `tests/unsupervised/outlier.rs`; benchmark: `benches/outlier.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of every entry point in `outlier.wgsl`.
    pub struct OutlierParams in "outlier.wgsl" as "OutlierParams" {
        /// Rows of x / D.
        pub rows: u32,
        /// Features per row (`iforest_path`).
        pub d: u32,
        /// Trees in the forest (`iforest_path`).
        pub trees: u32,
        /// Deepest leaf of any tree (`iforest_path`).
        pub depth: u32,
        /// Columns of D (`knn`).
        pub cols: u32,
        /// Neighbours kept (`knn`).
        pub k: u32,
        /// First column of this chunk (`knn`).
        pub c0: u32,
        /// One past the last column of this chunk (`knn`).
        pub c1: u32,
        /// Global index of row 0 of the block (`knn`).
        pub row0: u32,
        /// 1: leave out column `row0 + r` (the row itself) (`knn`).
        pub skip_self: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }
}

/// Invocations per workgroup of every entry point.
pub const WG: u32 = 256;

/// Loop iterations one invocation may run (llvmpipe ends an invocation's loops after 65,535 in
/// total, silently), with margin.
pub const LOOP_BUDGET: usize = 60_000;

/// Most trees one `iforest_path` launch takes, and the deepest tree: `trees * (depth + 2)`
/// must stay within [`LOOP_BUDGET`].
pub fn check_forest(trees: usize, depth: usize) -> Result<()> {
    if trees == 0 || trees * (depth + 2) > LOOP_BUDGET {
        return Err(KernelError::launch(
            "outlier.wgsl:iforest_path",
            format!(
                "{trees} trees of depth {depth}: need 1 to {} trees at this depth",
                LOOP_BUDGET / (depth + 2)
            ),
        ));
    }
    Ok(())
}

/// Mean path length of each row of x through the forest. x: (rows, d); nodes: (nodes, 3) u32
/// (see the module notes); roots: (trees) u32; path: (rows) f32. `depth` is the deepest leaf.
#[allow(clippy::too_many_arguments)]
pub fn iforest_path(
    gpu: &Gpu,
    x: &GpuBuffer,
    rows: usize,
    d: usize,
    nodes: &GpuBuffer,
    roots: &GpuBuffer,
    trees: usize,
    depth: usize,
    path: &GpuBuffer,
) -> Result<()> {
    check_forest(trees, depth)?;
    if rows == 0 {
        return Ok(());
    }
    let p = OutlierParams {
        rows: rows as u32,
        d: d as u32,
        trees: trees as u32,
        depth: depth as u32,
        ..Default::default()
    };
    let key = KernelKey::new("outlier.wgsl", "iforest_path");
    gpu.dispatch(&key, &p, &[x, nodes, roots, path], grid_1d(rows, WG));
    Ok(())
}

/// Columns one `knn` dispatch walks for `k` neighbours: `k + cols (k + 1)` loop iterations stay
/// within [`LOOP_BUDGET`]. Errors when k itself is too large.
pub fn knn_chunk(k: usize) -> Result<usize> {
    if k == 0 || 2 * k + 1 > LOOP_BUDGET {
        return Err(KernelError::launch(
            "outlier.wgsl:knn",
            format!("k = {k} neighbours: need 1 to {}", (LOOP_BUDGET - 1) / 2),
        ));
    }
    Ok((LOOP_BUDGET - k) / (k + 1))
}

/// The k nearest columns of each row of a block of squared distances, ascending (ties: the
/// smaller column), leaving out column `row0 + r` when `skip_self`. d2: (rows, cols);
/// nn_dist: (rows, k) f32; nn_idx: (rows, k) u32. Needs `k <= cols` (`k < cols` with
/// `skip_self`); one dispatch per chunk of [`knn_chunk`] columns.
#[allow(clippy::too_many_arguments)]
pub fn knn(
    gpu: &Gpu,
    d2: &GpuBuffer,
    rows: usize,
    cols: usize,
    k: usize,
    row0: usize,
    skip_self: bool,
    nn_dist: &GpuBuffer,
    nn_idx: &GpuBuffer,
) -> Result<()> {
    let chunk = knn_chunk(k)?;
    if k + skip_self as usize > cols {
        return Err(KernelError::launch(
            "outlier.wgsl:knn",
            format!(
                "k = {k} neighbours among {cols} columns{}",
                if skip_self {
                    " (the row itself left out)"
                } else {
                    ""
                }
            ),
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    let key = KernelKey::new("outlier.wgsl", "knn");
    for c0 in (0..cols).step_by(chunk) {
        let p = OutlierParams {
            rows: rows as u32,
            cols: cols as u32,
            k: k as u32,
            c0: c0 as u32,
            c1: (c0 + chunk).min(cols) as u32,
            row0: row0 as u32,
            skip_self: skip_self as u32,
            ..Default::default()
        };
        gpu.dispatch(&key, &p, &[d2, nn_dist, nn_idx], grid_1d(rows, WG));
    }
    Ok(())
}
