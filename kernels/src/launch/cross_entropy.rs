//! Launchers for `cross_entropy.wgsl`: fused cross-entropy from logits and class indices,
//! `loss[r] = logsumexp(x[r]) - x[r, t[r]]` forward and
//! `dx[r, j] = (softmax(x[r])[j] - [j == t[r]]) * g[r] * scale` backward.
//!
//! Rows are read as in [`crate::launch::softmax`] (a strided [`Rows`] matrix, one invocation or
//! one workgroup per row, the same length limits); targets and the upstream gradient are strided
//! [`Vector`]s.
//!
//! See also:
//! - shader: `shaders/cross_entropy.wgsl`
//! - CPU twin: [`crate::reference::cross_entropy`]
//! - op: `src/ops/cross_entropy.rs` (`cross_entropy`)
//! - tests: `kernels/tests/kernels/cross_entropy.rs` (kernels vs twin), `tests/ops/cross_entropy.rs`
//!   (op); no bench of its own (`benches/train_step.rs` runs it in every classifier step)

use crate::buffer_pool::GpuBuffer;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::launch::reduce::{ReduceStrategy, Rows};
use crate::launch::softmax::{Vector, WG, check_range, row_kernel};
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of every entry point in `cross_entropy.wgsl`.
    pub struct CrossEntropyParams in "cross_entropy.wgsl" as "CrossEntropyParams" {
        /// N, rows of logits.
        pub rows: u32,
        /// C, classes.
        pub classes: u32,
        /// Element offset of x[0, 0].
        pub offset: u32,
        /// Elements between rows of x.
        pub row_stride: u32,
        /// Elements between classes in a row of x.
        pub col_stride: u32,
        /// Element offset of `t[0]`.
        pub t_offset: u32,
        /// Elements between targets.
        pub t_stride: u32,
        /// Element offset of `g[0]` (backward).
        pub g_offset: u32,
        /// Elements between rows of g; 0 broadcasts one scalar (backward).
        pub g_stride: u32,
        /// Multiplies g: 1/N for a mean, else 1 (backward).
        pub scale: f32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }
}

/// Cross-entropy forward: for logits `x` (N, C) and class indices `targets` (N, u32), writes
/// `loss` (N) = `logsumexp(x[r]) - x[r, t[r]]` and `lse` (N) = `logsumexp(x[r])`, both contiguous
/// from element 0. A target >= C gives a NaN loss (it is never used as an index).
pub fn cross_entropy_forward(
    gpu: &Gpu,
    strategy: ReduceStrategy,
    x: Rows<'_>,
    targets: Vector<'_>,
    loss: &GpuBuffer,
    lse: &GpuBuffer,
) -> Result<()> {
    let entries = ("forward_serial", "forward_wg");
    let Some((key, grid)) = row_kernel("cross_entropy.wgsl", entries, strategy, &x, &[])? else {
        return Ok(());
    };
    let p = ce_params(&x, &targets, None, 1.0);
    gpu.dispatch(&key, &p, &[x.buf, targets.buf, loss, lse], grid);
    Ok(())
}

/// Cross-entropy backward: `dx` (N, C) contiguous = `(softmax(x[r]) - onehot(t[r])) * g[r] * scale`,
/// from the logits `x` (N, C), `targets` (N), the forward's `lse` (N) and the upstream gradient
/// `g` (N), which may be one broadcast scalar (stride 0). A target >= C gives a NaN row.
pub fn cross_entropy_backward(
    gpu: &Gpu,
    x: Rows<'_>,
    targets: Vector<'_>,
    lse: &GpuBuffer,
    g: Vector<'_>,
    scale: f32,
    dx: &GpuBuffer,
) -> Result<()> {
    if x.rows == 0 {
        return Ok(());
    }
    check_range("cross_entropy.wgsl", &x)?;
    let key = KernelKey::new("cross_entropy.wgsl", "backward").with("WG", WG);
    let p = ce_params(&x, &targets, Some(&g), scale);
    gpu.dispatch(
        &key,
        &p,
        &[x.buf, targets.buf, lse, g.buf, dx],
        grid_1d(x.rows * x.len, WG),
    );
    Ok(())
}

fn ce_params(
    x: &Rows<'_>,
    t: &Vector<'_>,
    g: Option<&Vector<'_>>,
    scale: f32,
) -> CrossEntropyParams {
    CrossEntropyParams {
        rows: x.rows as u32,
        classes: x.len as u32,
        offset: x.offset as u32,
        row_stride: x.row_stride as u32,
        col_stride: x.col_stride as u32,
        t_offset: t.offset as u32,
        t_stride: t.stride as u32,
        g_offset: g.map_or(0, |g| g.offset as u32),
        g_stride: g.map_or(0, |g| g.stride as u32),
        scale,
        _pad0: 0,
        _pad1: 0,
    }
}
