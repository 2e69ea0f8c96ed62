//! Launchers for `cluster.wgsl`: squared distances from a GEMM, the fused k-means assignment
//! (argmin label and distance per row), the centroid update as a segmented reduction, and
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
//! - tests: `tests/cluster.rs`

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::{ParamsLayout, grid_1d, layout_of};
use crate::pipeline::KernelKey;
use crate::pool::GpuBuffer;

crate::kernel_params! {
    /// Params of every entry point in `cluster.wgsl`.
    pub struct ClusterParams in "cluster.wgsl" as "ClusterParams" {
        /// Rows of x / G / D.
        pub rows: u32,
        /// Columns of G / D (k for `assign`; d for `sqnorm`).
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

/// Params layouts of this family.
pub fn params_layouts() -> Vec<ParamsLayout> {
    vec![layout_of::<ClusterParams>()]
}

/// Invocations per workgroup of every entry point.
pub const WG: u32 = 256;

/// Longest per-invocation loop (Mesa llvmpipe ends an invocation's loops after 65,535
/// iterations): the most columns a row kernel walks, and the most rows / [`WG`] in
/// [`centroid_sums`].
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

/// The k-means centroid update as a segmented reduction: `sums[c, j] = sum of x[r, j] over rows
/// with label[r] = c` for j < d, and `sums[c, d]` = the number of such rows. One workgroup per
/// (c, j), fixed summation order: deterministic.
///
/// x: (rows, d); label: (rows) u32 in `0..k`; sums: (k, d + 1).
pub fn centroid_sums(
    gpu: &Gpu,
    x: &GpuBuffer,
    label: &GpuBuffer,
    rows: usize,
    d: usize,
    k: usize,
    sums: &GpuBuffer,
) -> Result<()> {
    check("centroid_sums", "rows / 256", rows / WG as usize, MAX_LOOP)?;
    let groups = k
        .checked_mul(d + 1)
        .filter(|&g| g <= u32::MAX as usize)
        .ok_or_else(|| {
            KernelError::launch("cluster.wgsl:centroid_sums", "k * (d + 1) exceeds 2^32")
        })?;
    if groups == 0 || rows == 0 {
        return Ok(());
    }
    let p = ClusterParams {
        rows: rows as u32,
        d: d as u32,
        k: k as u32,
        ..Default::default()
    };
    let key = KernelKey::new("cluster.wgsl", "centroid_sums");
    gpu.dispatch(&key, &p, &[x, label, sums], grid_1d(groups, 1));
    Ok(())
}
