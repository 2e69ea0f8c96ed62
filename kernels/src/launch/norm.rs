//! Launchers for `norm.wgsl`: fused LayerNorm and RMSNorm over the last dim of a contiguous
//! (R, D) f32 block, forward and backward.
//!
//! One invocation per row, no barriers. Each invocation loops over its row 3 times in the forward
//! and twice in the backward, so D is capped at [`MAX_D`] to stay inside llvmpipe's 65,535
//! loop-iteration limit; callers fall back to a composed implementation past it. The weight and
//! bias gradients are sums over rows of the `gxh = g * xhat` block (and of g) that the backward
//! writes; the caller reduces them with the reduce launcher, which already splits long columns.
//!
//! See also:
//! - shader: `shaders/norm.wgsl`
//! - CPU twin: [`crate::reference::norm`]
//! - op: `src/ops/norm.rs`
//! - tests: `kernels/tests/kernels/norm.rs`, the ops' in `tests/ops/norm.rs`; benchmark:
//!   `benches/norm.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 64;

/// Largest row length the fused kernels accept: 3 D loop trips per invocation stay below 65,535.
pub const MAX_D: usize = 16_384;

crate::kernel_params! {
    /// Params of every entry point in `norm.wgsl`.
    pub struct NormParams in "norm.wgsl" as "NormParams" {
        /// R: rows.
        pub rows: u32,
        /// D: row length (the normalised dim).
        pub d: u32,
        /// Element offset of x[0, 0].
        pub x_offset: u32,
        /// Element offset of g[0, 0] (backward).
        pub g_offset: u32,
        /// Added to the variance (LayerNorm) or the mean square (RMSNorm).
        pub eps: f32,
        /// Padding to 32 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `(x - mean) * rstd * w + b`.
    LayerNorm,
    /// `x * rstd * w` with `rstd = 1 / sqrt(mean(x^2) + eps)`.
    RmsNorm,
}

/// One LayerNorm / RMSNorm call: which, over `rows` rows of `d` (the normalised dim, R x D),
/// with `eps` (read by the forward; the backward takes `rstd` from the forward's stats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowNorm {
    /// Which normalisation.
    pub kind: NormKind,
    /// R: rows.
    pub rows: usize,
    /// D: row length.
    pub d: usize,
    /// Added to the variance (LayerNorm) or the mean square (RMSNorm).
    pub eps: f32,
}

fn params(
    kernel: &str,
    rows: usize,
    d: usize,
    xo: usize,
    go: usize,
    eps: f32,
) -> Result<NormParams> {
    if d == 0 || d > MAX_D {
        return Err(KernelError::launch(
            kernel,
            format!("row length D = {d} must be in 1..={MAX_D} (llvmpipe loop limit)"),
        ));
    }
    let big = rows * d + xo.max(go);
    if big > u32::MAX as usize {
        return Err(KernelError::launch(
            kernel,
            format!("{big} elements exceed the 2^32 index range"),
        ));
    }
    Ok(NormParams {
        rows: rows as u32,
        d: d as u32,
        x_offset: xo as u32,
        g_offset: go as u32,
        eps,
        ..NormParams::default()
    })
}

/// Check `(rows, D, x offset, g offset, eps)` and record `norm.wgsl:entry`, one invocation per row
/// (nothing when there are no rows).
fn record(
    gpu: &Gpu,
    entry: &'static str,
    (rows, d, xo, go, eps): (usize, usize, usize, usize, f32),
    bufs: &[&GpuBuffer],
) -> Result<()> {
    let key = KernelKey::new("norm.wgsl", entry);
    let p = params(&key.label(), rows, d, xo, go, eps)?;
    if rows > 0 {
        gpu.dispatch(&key, &p, bufs, grid_1d(rows, WG));
    }
    Ok(())
}

/// Forward of LayerNorm / RMSNorm `s`.
///
/// - `x`: (R, D), contiguous at `x.offset`
/// - `w`: (D) from element 0; `b`: (D) from element 0 (ignored for RMSNorm)
/// - `y`: (R, D) from element 0
/// - `stats`: (R, 2) from element 0, receives `[mean, rstd]` per row (mean = 0 for RMSNorm)
pub fn forward(
    gpu: &Gpu,
    s: RowNorm,
    x: Operand<'_>,
    w: &GpuBuffer,
    b: &GpuBuffer,
    y: &GpuBuffer,
    stats: &GpuBuffer,
) -> Result<()> {
    let (entry, bufs): (_, &[&GpuBuffer]) = match s.kind {
        NormKind::LayerNorm => ("ln_forward", &[x.buf, w, b, y, stats]),
        NormKind::RmsNorm => ("rms_forward", &[x.buf, w, y, stats]),
    };
    record(gpu, entry, (s.rows, s.d, x.offset, 0, s.eps), bufs)
}

/// Backward of LayerNorm / RMSNorm `s`: the input gradient `dx` and `gxh = g * xhat` (whose sum
/// over rows is the weight gradient).
///
/// - `x`: (R, D) at `x.offset`; `g`: (R, D) at `g.offset`, both contiguous
/// - `w`: (D); `stats`: (R, 2) from the forward
/// - `dx`, `gxh`: (R, D) from element 0
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    s: RowNorm,
    x: Operand<'_>,
    w: &GpuBuffer,
    g: Operand<'_>,
    stats: &GpuBuffer,
    dx: &GpuBuffer,
    gxh: &GpuBuffer,
) -> Result<()> {
    let entry = match s.kind {
        NormKind::LayerNorm => "ln_backward",
        NormKind::RmsNorm => "rms_backward",
    };
    let at = (s.rows, s.d, x.offset, g.offset, 0.0);
    record(gpu, entry, at, &[x.buf, w, g.buf, stats, dx, gxh])
}
