//! Launchers for 2-D convolution (NCHW, f32): forward, gradient w.r.t. the input and gradient
//! w.r.t. the weight, each in two rungs selected by [`ConvVariant`]:
//!
//! - `conv/direct.wgsl`: one invocation per output element, straight from the definition;
//! - `conv/implicit_gemm.wgsl`: the GEMM view (`out[co, p] = sum_k W[co, k] Xcol[k, p]`, k over
//!   (ci, kh, kw), p over (oh, ow)) with the im2col matrix computed on the fly and a register
//!   block of outputs per invocation, no barriers: forward up to 16 output channels x 4 pixels,
//!   grad input 4 input channels x 4 pixels, grad weight 4 output channels x 4 taps. The forward
//!   and grad-weight workgroups ([`UNIFORM_WG`] lanes) share their block of weights or of dy, so
//!   those loads have uniform addresses (one load for all lanes on lavapipe). The grad-weight
//!   pass can also sum the bias gradient ([`conv2d_grad_weight_bias`]), and grad input is
//!   specialised for stride 1 (`UNIT_STRIDE`: no vector integer division in its gather).
//!
//! The math and the shapes are in `shaders/common/conv.wgsl`; every kernel takes the same
//! [`ConvParams`]. Every buffer is contiguous from element 0: x (N, C_in, H, W), w (C_out,
//! C_in / groups, KH, KW), bias (C_out), out and dy (N, C_out, OH, OW).
//!
//! Mesa's lavapipe ends an invocation's loops after 65,535 iterations in total and silently
//! returns partial sums, so every per-invocation loop here is kept short: the forward and
//! grad-input loop nests over (C_in / groups, KH, KW) and (C_out / groups, KH, KW) are limited
//! to a [`loop_cost`] of [`LOOP_BUDGET`] (a launch error beyond, on every device; measured: a
//! 1 x 1 kernel over 25,000 channels is truncated at 44%), and the weight gradient's reduction
//! over N * OH * OW, which grows
//! with the batch, is split (split-K): each split sums at most [`CHUNK_MAX`] terms into a
//! (splits, C_out, K) buffer, and the splits are summed by the reduce launcher in a fixed order.
//! No atomics anywhere: every result is the same bits on every run.
//!
//! Every launcher takes a [`ConvConfig`] (or just a [`ConvVariant`], which converts to one with
//! every heuristic): the rung, the implicit-GEMM rung's channel quads per pass and the weight
//! gradient's split count, which the autotuner picks per shape bucket (`tune::conv_choice`).
//!
//! See also:
//! - shaders: `shaders/conv/` (helpers in `shaders/common/conv.wgsl`)
//! - CPU twin: [`crate::reference::conv`]
//! - op: `src/ops/conv.rs`; tuner: `kernels/src/tune/conv.rs`
//! - tests: `kernels/tests/kernels/conv.rs` and `tune.rs` (rungs and tuner candidates vs twin),
//!   `tests/ops/conv.rs` (op gradients, layers); benchmark: `kernels/benches/conv.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use crate::pipeline::KernelKey;

mod config;
mod shape;

pub use config::{ConvConfig, MAX_QUADS};
pub use shape::Conv2dShape;

crate::kernel_params! {
    /// Params of every conv kernel (WGSL `ConvParams` in `common/conv.wgsl`).
    pub struct ConvParams in "common/conv.wgsl" as "ConvParams" {
        /// Images N.
        pub n: u32,
        /// Input channels (all groups).
        pub c_in: u32,
        /// Input height.
        pub h: u32,
        /// Input width.
        pub w: u32,
        /// Output channels (all groups).
        pub c_out: u32,
        /// Output height.
        pub oh: u32,
        /// Output width.
        pub ow: u32,
        /// Channel groups.
        pub groups: u32,
        /// Kernel height.
        pub kh: u32,
        /// Kernel width.
        pub kw: u32,
        /// Vertical stride.
        pub stride_h: u32,
        /// Horizontal stride.
        pub stride_w: u32,
        /// Zero padding above and below.
        pub pad_h: u32,
        /// Zero padding left and right.
        pub pad_w: u32,
        /// Vertical dilation.
        pub dil_h: u32,
        /// Horizontal dilation.
        pub dil_w: u32,
        /// Invocations that do work in this dispatch (1-D kernels; 0 for the 3-D grids).
        pub total: u32,
        /// Weight gradient: reduction terms (n, oh, ow) per split.
        pub chunk: u32,
        /// Weight gradient: number of splits.
        pub splits: u32,
        /// Forward: 1 when the bias binding holds a real bias.
        pub has_bias: u32,
    }
}

/// Workgroup size of every conv kernel (the WGSL `WG`).
pub const WG: u32 = 64;
/// Edge of the implicit-GEMM rung's register block (outputs per invocation: `BLOCK x BLOCK`).
pub const BLOCK: usize = 4;
/// Most output channels per invocation of the implicit-GEMM forward (the WGSL `BC`); it uses
/// [`forward_quads`] quads of 4.
pub const FORWARD_CHANNELS: usize = 16;

/// The heuristic quads of 4 output channels per invocation of the implicit-GEMM forward and
/// grad weight (their `QUADS` constant; [`ConvConfig`] can set others): as many as the group's
/// channels fill, up to 4 (16 channels). More channels per invocation means fewer input gathers
/// per multiply-add (about 1.4x from 8 to 16 on the 16 -> 32 benchmark), but a narrow layer
/// would compute channels it throws away. Grad input blocks its input channels the same way.
pub fn forward_quads(s: &Conv2dShape) -> usize {
    config::quads_for(s.c_out / s.groups)
}
/// Workgroup size of the implicit-GEMM forward and grad-weight kernels (the WGSL `WG_U`), whose
/// workgroups share one block of weights (forward) or of dy (grad weight): one SIMD batch of
/// lavapipe's 8 lanes measured fastest (`benches/conv.rs`).
pub const UNIFORM_WG: u32 = 8;
/// Most workgroups per grid dimension (WebGPU's limit).
const MAX_GROUPS: usize = 65_535;
/// Most [`loop_cost`] one forward or grad-input invocation may have: lavapipe's limit of 65,535
/// loop iterations per invocation, with margin.
pub const LOOP_BUDGET: usize = 60_000;

/// Iterations lavapipe counts for a `(outer, kh, kw)` loop nest, bounded from above: every loop
/// entry and exit test counts too (a 1 x 1 kernel measured at 6 per outer step; this says 7).
pub fn loop_cost(outer: usize, kh: usize, kw: usize) -> usize {
    outer.saturating_mul(3 + 2 * kh + 2 * kh * kw)
}
/// Most reduction terms (n, oh, ow) one weight-gradient invocation sums (one split).
pub const CHUNK_MAX: usize = 4096;
/// Invocations the weight-gradient split aims for, so that small layers still fill the device.
const TARGET_INVOCATIONS: usize = 2048;

/// Which rung of the conv ladder runs. Both give the same result up to f32 summation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConvVariant {
    /// `conv/direct.wgsl`: one invocation per output element (the reference rung).
    Direct,
    /// `conv/implicit_gemm.wgsl`: implicit GEMM, a register block of outputs per invocation,
    /// barrier-free. The default: 10-14x the direct rung on the 16 -> 32 channel layer of
    /// `benches/conv.rs` (1.5-6x on LeNet's 1 -> 6, whose single input channel leaves the
    /// grad-input block mostly empty).
    #[default]
    ImplicitGemm,
}

impl ConvVariant {
    /// Every rung, in ladder order.
    pub const ALL: [ConvVariant; 2] = [Self::Direct, Self::ImplicitGemm];

    /// Short name, as used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::ImplicitGemm => "implicit_gemm",
        }
    }

    fn key(self, entry: &'static str) -> KernelKey {
        match self {
            Self::Direct => KernelKey::new("conv/direct.wgsl", entry),
            Self::ImplicitGemm => KernelKey::new("conv/implicit_gemm.wgsl", entry),
        }
    }
}

/// Check the shape, the loop limits, the u32 index range and each buffer's size.
fn check(key: &KernelKey, s: &Conv2dShape, bufs: &[(&str, &GpuBuffer, usize)]) -> Result<()> {
    if let Some(p) = s.problem() {
        return Err(KernelError::launch(key, p));
    }
    let fwd = loop_cost(s.c_in / s.groups, s.kh, s.kw);
    let back = loop_cost(s.c_out / s.groups, s.kh, s.kw);
    if fwd > LOOP_BUDGET || back > LOOP_BUDGET {
        return Err(KernelError::launch(
            key,
            format!(
                "{} input and {} output channels per group with a {}x{} kernel need {fwd} \
                 (forward) and {back} (grad input) loop iterations per invocation, more than \
                 the {LOOP_BUDGET} lavapipe runs before it silently stops; use more groups or \
                 fewer channels per layer",
                s.c_in / s.groups,
                s.c_out / s.groups,
                s.kh,
                s.kw
            ),
        ));
    }
    for &(what, buf, len) in bufs {
        if len > u32::MAX as usize {
            return Err(KernelError::launch(
                key,
                format!("{what} has {len} elements; kernels index with u32"),
            ));
        }
        let have = (buf.capacity() / 4) as usize;
        if have < len {
            return Err(KernelError::launch(
                key,
                format!("{what} needs {len} f32 but its buffer holds {have}"),
            ));
        }
    }
    Ok(())
}

/// A 3-D grid of workgroups, or an error when a dimension exceeds WebGPU's limit.
fn grid_3d(key: &KernelKey, g: [usize; 3]) -> Result<[u32; 3]> {
    if g.iter().any(|&d| d > MAX_GROUPS) {
        return Err(KernelError::launch(
            key,
            format!(
                "grid {g:?} exceeds {MAX_GROUPS} workgroups per dimension; use \
                 ConvVariant::Direct or split the batch"
            ),
        ));
    }
    Ok([g[0] as u32, g[1] as u32, g[2] as u32])
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// `cfg` resolved for `s` ([`ConvConfig::resolved`]), or an error naming `entry` when the shape
/// or the configuration is invalid (checked before any heuristic divides by a size).
fn prepare(cfg: ConvConfig, s: &Conv2dShape, entry: &'static str) -> Result<ConvConfig> {
    if let Some(p) = s.problem().or_else(|| cfg.problem()) {
        return Err(KernelError::launch(cfg.variant.key(entry), p));
    }
    Ok(cfg.resolved(s))
}

/// One pass (`entry`) set up: `cfg` resolved for `s` ([`prepare`]), the pass's channel quads
/// (picked by `quads_of`, 1 where unset) and its kernel key (the implicit-GEMM rung specialised
/// on its workgroup and quads).
fn pass_key(
    cfg: impl Into<ConvConfig>,
    s: &Conv2dShape,
    entry: &'static str,
    quads_of: fn(&ConvConfig) -> Option<usize>,
) -> Result<(ConvConfig, usize, KernelKey)> {
    let cfg = prepare(cfg.into(), s, entry)?;
    let quads = quads_of(&cfg).unwrap_or(1);
    let mut key = cfg.variant.key(entry);
    if cfg.variant == ConvVariant::ImplicitGemm {
        key = key.with("WG_U", UNIFORM_WG).with("QUADS", quads as u32);
    }
    Ok((cfg, quads, key))
}

/// The grid of one pass and the `total` of its params: the direct rung runs one invocation per
/// element of its `direct` outputs (and counts them); the implicit-GEMM rung runs x: blocks of
/// `cols` pixels or taps (`UNIFORM_WG` blocks per workgroup), y: (group, block of `4 * quads`
/// of the `channels` per group), z: `z` (images or splits).
fn pass_grid(
    key: &KernelKey,
    s: &Conv2dShape,
    (variant, quads): (ConvVariant, usize),
    direct: usize,
    (cols, channels, z): (usize, usize, usize),
) -> Result<(usize, [u32; 3])> {
    match variant {
        ConvVariant::Direct => Ok((direct, grid_1d(direct, WG))),
        ConvVariant::ImplicitGemm => {
            let col_groups = cols.div_ceil(BLOCK * UNIFORM_WG as usize);
            let cblocks = s.groups * channels.div_ceil(4 * quads);
            Ok((0, grid_3d(key, [col_groups, cblocks, z])?))
        }
    }
}

/// `out = conv2d(x, w) + bias` with the chosen rung and forward quads (`cfg.fwd_quads`).
///
/// - `x`: (N, C_in, H, W); `w`: (C_out, C_in / groups, KH, KW); `bias`: (C_out) or none;
/// - `out`: (N, C_out, OH, OW), written in full.
pub fn conv2d_forward(
    gpu: &Gpu,
    cfg: impl Into<ConvConfig>,
    s: &Conv2dShape,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    out: &GpuBuffer,
) -> Result<()> {
    let (cfg, quads, key) = pass_key(cfg, s, "forward", |c| c.fwd_quads)?;
    check(
        &key,
        s,
        &[
            ("x", x, numel(s.input_shape())),
            ("w", w, numel(s.weight_shape())),
        ],
    )?;
    check(&key, s, &[("out", out, numel(s.output_shape()))])?;
    if let Some(b) = bias {
        check(&key, s, &[("bias", b, s.c_out)])?;
    }
    let [n, _, oh, ow] = s.output_shape();
    let gemm = (oh * ow, s.c_out / s.groups, n);
    let rung = (cfg.variant, quads);
    let (total, grid) = pass_grid(&key, s, rung, numel(s.output_shape()), gemm)?;
    let p = ConvParams {
        has_bias: u32::from(bias.is_some()),
        ..s.params(total)
    };
    // Without a bias the weight stands in for the binding (never read).
    let b = bias.unwrap_or(w);
    gpu.dispatch(&key, &p, &[w, x, out, b], grid);
    Ok(())
}

/// `dx = dL/dx` of the convolution, from `dy` = dL/d(out), with the chosen rung and
/// grad-input quads (`cfg.input_quads`).
///
/// - `w`: (C_out, C_in / groups, KH, KW); `dy`: (N, C_out, OH, OW);
/// - `dx`: (N, C_in, H, W), written in full (a gather per input element: deterministic).
pub fn conv2d_grad_input(
    gpu: &Gpu,
    cfg: impl Into<ConvConfig>,
    s: &Conv2dShape,
    w: &GpuBuffer,
    dy: &GpuBuffer,
    dx: &GpuBuffer,
) -> Result<()> {
    let (cfg, quads, mut key) = pass_key(cfg, s, "grad_input", |c| c.input_quads)?;
    if cfg.variant == ConvVariant::ImplicitGemm {
        key = key.with("UNIT_STRIDE", u32::from(s.stride == (1, 1)));
    }
    check(
        &key,
        s,
        &[
            ("w", w, numel(s.weight_shape())),
            ("dy", dy, numel(s.output_shape())),
            ("dx", dx, numel(s.input_shape())),
        ],
    )?;
    let gemm = (s.h * s.w, s.c_in / s.groups, s.n);
    let rung = (cfg.variant, quads);
    let (total, grid) = pass_grid(&key, s, rung, numel(s.input_shape()), gemm)?;
    gpu.dispatch(&key, &s.params(total), &[w, dy, dx], grid);
    Ok(())
}

/// How the weight gradient's reduction over `N * OH * OW` terms is split for `variant` by the
/// heuristic (with [`forward_quads`] channel quads): `(splits, chunk)`, with `chunk <=
/// CHUNK_MAX` terms per split and no empty split. [`ConvConfig::grad_weight_split`] gives the
/// split of a tuned configuration.
pub fn grad_weight_splits(variant: ConvVariant, s: &Conv2dShape) -> (usize, usize) {
    let [n, _, oh, ow] = s.output_shape();
    let splits = config::heuristic_splits(variant, forward_quads(s), s);
    config::legal_splits(splits, n * oh * ow)
}

/// `dw = dL/dw` of the convolution, from the input `x` and `dy` = dL/d(out), with the chosen
/// rung, grad-weight quads (`cfg.weight_quads`) and split count
/// ([`ConvConfig::grad_weight_split`]): split-K partial sums into a temporary (splits, C_out, K)
/// buffer, then summed over the splits (in a fixed order) into `dw`.
///
/// - `x`: (N, C_in, H, W); `dy`: (N, C_out, OH, OW);
/// - `dw`: (C_out, C_in / groups, KH, KW), written in full.
pub fn conv2d_grad_weight(
    gpu: &Gpu,
    cfg: impl Into<ConvConfig>,
    s: &Conv2dShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
) -> Result<()> {
    conv2d_grad_weight_bias(gpu, cfg, s, x, dy, dw, None)
}

/// [`conv2d_grad_weight`], and with `db` also the bias gradient `db[co] = sum over (n, oh, ow)
/// of dy[n, co, oh, ow]` in the same pass (the implicit-GEMM rung only: the bias is a weight
/// column whose input is the constant 1, so it costs one more tap instead of its own
/// reduction over dy; the direct rung gives a launch error).
///
/// - `x`: (N, C_in, H, W); `dy`: (N, C_out, OH, OW);
/// - `dw`: (C_out, C_in / groups, KH, KW), `db`: (C_out), written in full.
pub fn conv2d_grad_weight_bias(
    gpu: &Gpu,
    cfg: impl Into<ConvConfig>,
    s: &Conv2dShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    db: Option<&GpuBuffer>,
) -> Result<()> {
    let (cfg, quads, key) = pass_key(cfg, s, "grad_weight", |c| c.weight_quads)?;
    let wlen = numel(s.weight_shape());
    check(
        &key,
        s,
        &[
            ("x", x, numel(s.input_shape())),
            ("dy", dy, numel(s.output_shape())),
            ("dw", dw, wlen),
        ],
    )?;
    if let Some(db) = db {
        if cfg.variant == ConvVariant::Direct {
            return Err(KernelError::launch(
                &key,
                "the direct rung has no fused bias gradient; sum dy over (N, OH, OW)",
            ));
        }
        check(&key, s, &[("db", db, s.c_out)])?;
    }
    let hb = usize::from(db.is_some());
    let (splits, chunk) = cfg.grad_weight_split(s);
    // Taps (one more for the bias column) by output channels, one z layer per split.
    let gemm = (s.k_len() + hb, s.c_out / s.groups, splits);
    let rung = (cfg.variant, quads);
    let (total, grid) = pass_grid(&key, s, rung, splits * wlen, gemm)?;
    let p = ConvParams {
        chunk: chunk as u32,
        splits: splits as u32,
        has_bias: hb as u32,
        ..s.params(total)
    };
    if splits == 1 && db.is_none() {
        gpu.dispatch(&key, &p, &[dy, x, dw], grid);
        return Ok(());
    }
    // (splits, C_out, K) weight sums, then (splits, C_out) bias sums when asked for.
    let plen = splits * (wlen + hb * s.c_out);
    if plen > u32::MAX as usize {
        return Err(KernelError::launch(
            &key,
            format!("split-K partial sums ({splits}, {wlen}) exceed the u32 index range"),
        ));
    }
    let partial = gpu.alloc(4 * plen as u64, "conv2d grad weight partial sums")?;
    gpu.dispatch(&key, &p, &[dy, x, &partial], grid);
    // Sum the splits of `len` values stored from `offset` (one split after another) into `out`.
    let sum_splits = |offset: usize, len: usize, out: &GpuBuffer| {
        let rows = Rows {
            buf: &partial,
            offset,
            rows: len,
            len: splits,
            row_stride: 1,
            col_stride: len,
        };
        rk::reduce_rows(
            gpu,
            ReduceOp::Sum,
            ReduceStrategy::Serial,
            rows,
            out,
            0,
            1.0,
        )
    };
    sum_splits(0, wlen, dw)?;
    if let Some(db) = db {
        sum_splits(splits * wlen, s.c_out, db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaders::wgsl_const;

    #[test]
    fn blocks_match_shaders() {
        let f = "conv/implicit_gemm.wgsl";
        assert_eq!(wgsl_const(f, "B") as usize, BLOCK);
        assert_eq!(wgsl_const(f, "BC") as usize, FORWARD_CHANNELS);
        assert_eq!(wgsl_const(f, "WG"), WG);
        assert_eq!(wgsl_const("conv/direct.wgsl", "WG"), WG);
    }

    #[test]
    fn shapes_quads_and_splits() {
        let s = Conv2dShape {
            n: 2,
            c_in: 6,
            h: 9,
            w: 8,
            c_out: 10,
            kh: 3,
            kw: 2,
            stride: (2, 1),
            padding: (1, 0),
            dilation: (1, 2),
            groups: 2,
        };
        assert_eq!(s.problem(), None);
        assert_eq!(s.output_shape(), [2, 10, 5, 6]);
        assert_eq!(s.k_len(), 18);
        assert_eq!(s.flops(), 2 * 2 * 10 * 30 * 18);
        assert_eq!(forward_quads(&s), 2);
        assert!(Conv2dShape { groups: 4, ..s }.problem().is_some());
        assert!(Conv2dShape { w: 2, ..s }.problem().is_some());
        let big = Conv2dShape {
            n: 64,
            h: 100,
            w: 100,
            ..s
        };
        for v in ConvVariant::ALL {
            let (splits, chunk) = grad_weight_splits(v, &big);
            let len = 64 * 50 * 98;
            assert!(chunk <= CHUNK_MAX && splits * chunk >= len && (splits - 1) * chunk < len);
        }
    }
}
