//! Launchers for `batch_norm.wgsl`: fused BatchNorm2d over (N, C, HW) f32 blocks.
//!
//! Per-channel values live in one (7, C) buffer whose rows are named by [`row`]. Per-channel
//! sums over (N, HW) use the reduce launcher twice ([`channel_sum`]): rows of HW first, then
//! the N partial sums of each channel, so long rows keep within llvmpipe's loop limit.
//!
//! See also:
//! - shader: `shaders/batch_norm.wgsl`
//! - CPU twin: [`crate::reference::batch_norm`]
//! - layer: `src/nn/batch_norm2d.rs`
//! - op: `src/ops/batch_norm.rs`; tests: `tests/ops/batch_norm.rs`; no benchmark

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::launch::reduce::{self, ReduceOp, ReduceStrategy, Rows};
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

/// Rows of the per-channel buffer, each C long (mirrors the constants in `batch_norm.wgsl`).
pub mod row {
    /// Batch (or running) mean.
    pub const MEAN: usize = 0;
    /// Biased batch variance (or running variance).
    pub const VAR: usize = 1;
    /// `1 / sqrt(var + eps)`.
    pub const INVSTD: usize = 2;
    /// Scale w (ones when not affine).
    pub const WEIGHT: usize = 3;
    /// Shift b (zeros when not affine).
    pub const BIAS: usize = 4;
    /// `sum over (N, HW) of g`, the bias gradient.
    pub const SUM_G: usize = 5;
    /// `sum over (N, HW) of g * xhat`, the weight gradient.
    pub const SUM_GXHAT: usize = 6;
    /// Number of rows.
    pub const COUNT: usize = 7;
}

crate::kernel_params! {
    /// Params of every entry point in `batch_norm.wgsl`.
    pub struct BatchNormParams in "batch_norm.wgsl" as "BatchNormParams" {
        /// N: batch.
        pub n: u32,
        /// C: channels.
        pub c: u32,
        /// H * W.
        pub hw: u32,
        /// Element offset of x[0, 0, 0] (stats_update: of the running mean).
        pub x_offset: u32,
        /// Element offset of g[0, 0, 0] (stats_update: of the running variance).
        pub g_offset: u32,
        /// Added to the variance.
        pub eps: f32,
        /// 1 / (N * HW).
        pub inv_m: f32,
        /// Weight of the batch in the running statistics (stats_update).
        pub momentum: f32,
    }
}

/// Sizes of a batch-norm: x is (N, C, HW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    /// N: batch.
    pub n: usize,
    /// C: channels.
    pub c: usize,
    /// H * W (1 for (N, C) inputs).
    pub hw: usize,
}

impl NormShape {
    /// Elements of x.
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// True when x has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// M = N * HW, values per channel.
    pub fn per_channel(&self) -> usize {
        self.n * self.hw
    }
}

fn params(
    kernel: &str,
    s: NormShape,
    x_offset: usize,
    g_offset: usize,
    eps: f32,
) -> Result<BatchNormParams> {
    let big = s.len() + x_offset.max(g_offset);
    if big > u32::MAX as usize || s.c * row::COUNT > u32::MAX as usize {
        return Err(KernelError::launch(
            kernel,
            format!("{big} elements exceed the 2^32 index range"),
        ));
    }
    Ok(BatchNormParams {
        n: s.n as u32,
        c: s.c as u32,
        hw: s.hw as u32,
        x_offset: x_offset as u32,
        g_offset: g_offset as u32,
        eps,
        inv_m: 1.0 / s.per_channel().max(1) as f32,
        momentum: 0.0,
    })
}

/// `out[out_offset + c] = scale * sum over (n, hw) of src[n, c, hw]`, in two reduce passes.
///
/// - `src`: (N, C, HW), contiguous at `src.offset`
/// - `tmp`: scratch of at least N*C f32
/// - `out`: C f32 at `out_offset`
pub fn channel_sum(
    gpu: &Gpu,
    s: NormShape,
    src: Operand<'_>,
    tmp: &GpuBuffer,
    out: &GpuBuffer,
    out_offset: usize,
    scale: f32,
) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    let per_row = Rows {
        buf: src.buf,
        offset: src.offset,
        rows: s.n * s.c,
        len: s.hw,
        row_stride: s.hw,
        col_stride: 1,
    };
    reduce::reduce_rows(
        gpu,
        ReduceOp::Sum,
        ReduceStrategy::Auto,
        per_row,
        tmp,
        0,
        1.0,
    )?;
    let per_channel = Rows {
        buf: tmp,
        offset: 0,
        rows: s.c,
        len: s.n,
        row_stride: 1,
        col_stride: s.c,
    };
    reduce::reduce_rows(
        gpu,
        ReduceOp::Sum,
        ReduceStrategy::Auto,
        per_channel,
        out,
        out_offset,
        scale,
    )
}

fn elementwise(
    gpu: &Gpu,
    key: KernelKey,
    s: NormShape,
    x: Operand<'_>,
    g: Option<Operand<'_>>,
    ch: &GpuBuffer,
    out: &GpuBuffer,
) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    let p = params(&key.label(), s, x.offset, g.map_or(0, |g| g.offset), 0.0)?;
    match g {
        Some(g) => gpu.dispatch(&key, &p, &[x.buf, ch, out, g.buf], grid_1d(s.len(), WG)),
        None => gpu.dispatch(&key, &p, &[x.buf, ch, out], grid_1d(s.len(), WG)),
    }
    Ok(())
}

/// Running statistics updated in place by [`batch_stats`]: two contiguous (C) vectors in
/// different buffers, and the weight of the new batch.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    /// Running mean (C).
    pub mean: Operand<'a>,
    /// Running unbiased variance (C).
    pub var: Operand<'a>,
    /// Weight of the batch: `run = (1 - momentum) run + momentum batch`.
    pub momentum: f32,
}

/// An element-wise entry of batch_norm.wgsl with its inputs x and (where it takes one) g.
type Entry<'a> = (&'static str, Operand<'a>, Option<Operand<'a>>);

/// Two per-channel sums into rows of `ch`, each scaled by `scale`: of `a` into row `rows.0`,
/// then of what the element-wise `entry` writes to `tmp_big` into row `rows.1`.
fn two_sums(
    gpu: &Gpu,
    s: NormShape,
    (a, (entry, x, g)): (Operand<'_>, Entry<'_>),
    (rows, scale): ((usize, usize), f32),
    ch: &GpuBuffer,
    (tmp_big, tmp_small): (&GpuBuffer, &GpuBuffer),
) -> Result<()> {
    channel_sum(gpu, s, a, tmp_small, ch, rows.0 * s.c, scale)?;
    let key = KernelKey::new("batch_norm.wgsl", entry);
    elementwise(gpu, key, s, x, g, ch, tmp_big)?;
    let big = Operand::whole(tmp_big);
    channel_sum(gpu, s, big, tmp_small, ch, rows.1 * s.c, scale)
}

/// Fill the MEAN, VAR and INVSTD rows of `ch` with the batch statistics of x: mean, biased
/// variance (two-pass, from `(x - mean)^2`) and `1 / sqrt(var + eps)`; with `running`, also
/// fold them into the running statistics in the same kernel (unbiased variance,
/// batch_norm.wgsl:stats_update).
///
/// - `x`: (N, C, HW), contiguous at `x.offset`
/// - `ch`: (7, C)
/// - `tmp_big`: scratch of N*C*HW f32; `tmp_small`: scratch of N*C f32
#[allow(clippy::too_many_arguments)]
pub fn batch_stats(
    gpu: &Gpu,
    s: NormShape,
    x: Operand<'_>,
    eps: f32,
    running: Option<Running<'_>>,
    ch: &GpuBuffer,
    tmp_big: &GpuBuffer,
    tmp_small: &GpuBuffer,
) -> Result<()> {
    let inv_m = 1.0 / s.per_channel().max(1) as f32;
    let center_sq = ("center_sq", x, None);
    let rows = (row::MEAN, row::VAR);
    two_sums(
        gpu,
        s,
        (x, center_sq),
        (rows, inv_m),
        ch,
        (tmp_big, tmp_small),
    )?;
    let Some(r) = running else {
        return invstd(gpu, s.c, eps, ch);
    };
    let key = KernelKey::new("batch_norm.wgsl", "stats_update");
    let p = BatchNormParams {
        momentum: r.momentum,
        ..params(&key.label(), s, r.mean.offset, r.var.offset, eps)?
    };
    gpu.dispatch(&key, &p, &[ch, r.mean.buf, r.var.buf], grid_1d(s.c, WG));
    Ok(())
}

/// `ch[INVSTD] = 1 / sqrt(ch[VAR] + eps)`, per channel (batch_norm.wgsl:stats).
pub fn invstd(gpu: &Gpu, c: usize, eps: f32, ch: &GpuBuffer) -> Result<()> {
    let key = KernelKey::new("batch_norm.wgsl", "stats");
    let s = NormShape { n: 1, c, hw: 1 };
    let p = params(&key.label(), s, 0, 0, eps)?;
    gpu.dispatch(&key, &p, &[ch], grid_1d(c, WG));
    Ok(())
}

/// `y = (x - mean_c) * invstd_c * w_c + b_c` (batch_norm.wgsl:forward).
///
/// - `x`: (N, C, HW), contiguous at `x.offset`
/// - `ch`: (7, C) with MEAN, INVSTD, WEIGHT and BIAS filled
/// - `y`: (N, C, HW), from element 0
pub fn forward(
    gpu: &Gpu,
    s: NormShape,
    x: Operand<'_>,
    ch: &GpuBuffer,
    y: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("batch_norm.wgsl", "forward");
    elementwise(gpu, key, s, x, None, ch, y)
}

/// Fill the SUM_G and SUM_GXHAT rows of `ch`: `sum g` and `sum g * xhat` per channel (the bias
/// and weight gradients).
///
/// - `x`, `g`: (N, C, HW), contiguous at their offsets
/// - `ch`: (7, C) with MEAN and INVSTD filled
/// - `tmp_big`: scratch of N*C*HW f32; `tmp_small`: scratch of N*C f32
pub fn grad_sums(
    gpu: &Gpu,
    s: NormShape,
    x: Operand<'_>,
    g: Operand<'_>,
    ch: &GpuBuffer,
    tmp_big: &GpuBuffer,
    tmp_small: &GpuBuffer,
) -> Result<()> {
    let grad_xhat = ("grad_xhat", x, Some(g));
    let rows = (row::SUM_G, row::SUM_GXHAT);
    two_sums(
        gpu,
        s,
        (g, grad_xhat),
        (rows, 1.0),
        ch,
        (tmp_big, tmp_small),
    )
}

/// The input gradient (batch_norm.wgsl:backward_dx). Training (batch statistics):
/// `dx = w invstd / M (M g - sum_g - xhat sum_gxhat)`; eval (running statistics, constants):
/// `dx = w invstd g`.
///
/// - `x`, `g`: (N, C, HW), contiguous at their offsets
/// - `ch`: (7, C) with every row filled ([`grad_sums`] first when training)
/// - `dx`: (N, C, HW), from element 0
pub fn backward_dx(
    gpu: &Gpu,
    s: NormShape,
    training: bool,
    x: Operand<'_>,
    g: Operand<'_>,
    ch: &GpuBuffer,
    dx: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("batch_norm.wgsl", "backward_dx").with("TRAINING", training as u32);
    elementwise(gpu, key, s, x, Some(g), ch, dx)
}
