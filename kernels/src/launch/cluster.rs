//! Launchers for `cluster.wgsl`: squared distances from a GEMM, the fused k-means assignment
//! (argmin label and distance per row), the centroid update as a segmented reduction (blocks
//! of rows, then `reduce.wgsl` over the blocks), and
//! neighbour counts within a radius (DBSCAN).
//!
//! Math: with `G = X Y^T` (from the matmul kernels) and squared row norms `xn`, `yn`,
//! `||x_r - y_c||^2 = xn[r] - 2 G[r, c] + yn[c]`, clamped at 0.
//!
//! Every buffer here is contiguous, row-major, starting at element 0; shapes are given in the
//! argument comments.
//!
//! See also:
//! - shader: `shaders/cluster.wgsl`
//! - CPU twin: [`crate::reference::cluster`]
//! - library: `src/unsupervised/` (k-means, DBSCAN, PCA)
//! - tests: `tests/unsupervised/cluster.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::launch::reduce::{ReduceOp, ReduceStrategy, Rows, reduce_rows};
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of every entry point in `cluster.wgsl`.
    pub struct ClusterParams in "cluster.wgsl" as "ClusterParams" {
        /// Rows of x / G / D.
        pub rows: u32,
        /// Columns of G / D (k for `assign`; d for `sqnorm`; rows per block for
        /// `centroid_sums`).
        pub cols: u32,
        /// Features per point (`centroid_sums`).
        pub d: u32,
        /// Clusters (`centroid_sums`).
        pub k: u32,
        /// Index into `xn` of row 0 (for a block of rows).
        pub row0: u32,
        /// Squared radius (`count_within`).
        pub eps2: f32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }
}

/// Invocations per workgroup of every entry point.
pub const WG: u32 = 256;

/// Longest per-invocation loop (Mesa llvmpipe ends an invocation's loops after 65,535
/// iterations): the most columns a row kernel walks, and the budget of [`centroid_sums`].
pub const MAX_LOOP: usize = 65_535;

fn check(kernel: &str, what: &str, v: usize, max: usize) -> Result<()> {
    if v > max {
        return Err(KernelError::launch(
            format!("cluster.wgsl:{kernel}"),
            format!("{what} = {v} exceeds the {max} one launch can take"),
        ));
    }
    Ok(())
}

fn params(rows: usize, cols: usize) -> ClusterParams {
    ClusterParams {
        rows: rows as u32,
        cols: cols as u32,
        ..Default::default()
    }
}

fn row_kernel(
    gpu: &Gpu,
    entry: &'static str,
    p: &ClusterParams,
    buffers: &[&GpuBuffer],
) -> Result<()> {
    check(entry, "columns", p.cols as usize, MAX_LOOP)?;
    if p.rows == 0 {
        return Ok(());
    }
    let key = KernelKey::new("cluster.wgsl", entry);
    gpu.dispatch(&key, p, buffers, grid_1d(p.rows as usize, WG));
    Ok(())
}

/// `norms[r] = sum_j x[r, j]^2`. x: (rows, d); norms: (rows).
pub fn sq_norms(gpu: &Gpu, x: &GpuBuffer, rows: usize, d: usize, norms: &GpuBuffer) -> Result<()> {
    row_kernel(gpu, "sqnorm", &params(rows, d), &[x, norms])
}

/// The fused k-means assignment: `label[r] = argmin_c D[r, c]` (ties: the smaller c) and
/// `dist[r] = D[r, label[r]]`, where `D[r, c] = max(xn[r] - 2 g[r, c] + cn[c], 0)`.
///
/// g: (rows, k) = X C^T; xn: (rows); cn: (k); label: (rows) u32; dist: (rows).
#[allow(clippy::too_many_arguments)]
pub fn assign(
    gpu: &Gpu,
    g: &GpuBuffer,
    xn: &GpuBuffer,
    cn: &GpuBuffer,
    rows: usize,
    k: usize,
    label: &GpuBuffer,
    dist: &GpuBuffer,
) -> Result<()> {
    if k == 0 {
        return Err(KernelError::launch(
            "cluster.wgsl:assign",
            "k = 0 centroids",
        ));
    }
    row_kernel(gpu, "assign", &params(rows, k), &[g, xn, cn, label, dist])
}

/// Turn `g = X_block Y^T` into squared distances in place:
/// `g[r, c] <- max(xn[row0 + r] - 2 g[r, c] + yn[c], 0)`.
///
/// g: (rows, cols); xn: (row0 + rows); yn: (cols).
pub fn sq_dists(
    gpu: &Gpu,
    g: &GpuBuffer,
    xn: &GpuBuffer,
    yn: &GpuBuffer,
    rows: usize,
    cols: usize,
    row0: usize,
) -> Result<()> {
    let p = ClusterParams {
        row0: row0 as u32,
        ..params(rows, cols)
    };
    row_kernel(gpu, "sqdist", &p, &[g, xn, yn])
}

/// `count[r] = #{c : d2[r, c] <= eps2}`. d2: (rows, cols) squared distances; count: (rows) u32.
pub fn count_within(
    gpu: &Gpu,
    d2: &GpuBuffer,
    rows: usize,
    cols: usize,
    eps2: f32,
    count: &GpuBuffer,
) -> Result<()> {
    let p = ClusterParams {
        eps2,
        ..params(rows, cols)
    };
    row_kernel(gpu, "count_within", &p, &[d2, count])
}

/// Invocations per workgroup of `centroid_sums` (one per feature column).
pub const SUMS_WG: usize = 64;

/// Largest block of rows one `centroid_sums` workgroup walks.
pub const SUMS_BLOCK: usize = 1024;

/// Rows per block and number of blocks of [`centroid_sums`] for (rows, d) points and k
/// clusters: an invocation loops `ceil((d + 1) / 64) * (k + block)` times, within [`MAX_LOOP`].
pub fn sums_blocks(rows: usize, d: usize, k: usize) -> Result<(usize, usize)> {
    let passes = (d + 1).div_ceil(SUMS_WG);
    let budget = MAX_LOOP / passes;
    if budget <= k {
        return Err(KernelError::launch(
            "cluster.wgsl:centroid_sums",
            format!("k = {k} clusters of {d} features exceed one launch (k < {budget})"),
        ));
    }
    let block = SUMS_BLOCK.min(budget - k);
    Ok((block, rows.div_ceil(block).max(1)))
}

/// Elements of the `partial` scratch buffer [`centroid_sums`] needs: (blocks, k, d + 1).
pub fn sums_partial_len(rows: usize, d: usize, k: usize) -> Result<usize> {
    let (_, blocks) = sums_blocks(rows, d, k)?;
    blocks
        .checked_mul(k)
        .and_then(|v| v.checked_mul(d + 1))
        .filter(|&v| v <= u32::MAX as usize)
        .ok_or_else(|| {
            KernelError::launch("cluster.wgsl:centroid_sums", "partial sums exceed 2^32")
        })
}

/// The k-means centroid update as a segmented reduction: `sums[c, j] = sum of x[r, j] over rows
/// with label[r] = c` for j < d, and `sums[c, d]` = the number of such rows. Two passes with a
/// fixed order (deterministic, no atomics): per block of rows, each invocation adds its feature
/// columns into `partial[block, label[r], j]`; then `reduce.wgsl` sums `partial` over blocks.
///
/// x: (rows, d); label: (rows) u32 in `0..k`; partial: scratch of [`sums_partial_len`]
/// elements; sums: (k, d + 1).
#[allow(clippy::too_many_arguments)]
pub fn centroid_sums(
    gpu: &Gpu,
    x: &GpuBuffer,
    label: &GpuBuffer,
    rows: usize,
    d: usize,
    k: usize,
    partial: &GpuBuffer,
    sums: &GpuBuffer,
) -> Result<()> {
    let (block, blocks) = sums_blocks(rows, d, k)?;
    let len = sums_partial_len(rows, d, k)?;
    if (partial.capacity() as usize) < 4 * len {
        return Err(KernelError::launch(
            "cluster.wgsl:centroid_sums",
            format!(
                "partial holds {} bytes, needs {}",
                partial.capacity(),
                4 * len
            ),
        ));
    }
    if k == 0 || rows == 0 {
        return Ok(());
    }
    let p = ClusterParams {
        rows: rows as u32,
        cols: block as u32,
        d: d as u32,
        k: k as u32,
        ..Default::default()
    };
    let key = KernelKey::new("cluster.wgsl", "centroid_sums");
    gpu.dispatch(&key, &p, &[x, label, partial], grid_1d(blocks, 1));
    let per_block = k * (d + 1);
    let view = Rows {
        buf: partial,
        offset: 0,
        rows: per_block,
        len: blocks,
        row_stride: 1,
        col_stride: per_block,
    };
    reduce_rows(gpu, ReduceOp::Sum, ReduceStrategy::Auto, view, sums, 0, 1.0)
}
