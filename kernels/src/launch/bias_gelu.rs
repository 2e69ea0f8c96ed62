//! Launchers for `bias_gelu.wgsl`: `y = gelu(x + b)` over a contiguous (R, N) f32 block, and its
//! backward `dz = g * gelu'(x + b)`, erf or tanh form, one elementwise pass each.
//!
//! See also:
//! - shader: `shaders/bias_gelu.wgsl`
//! - CPU twin: [`crate::reference::bias_gelu`]
//! - op: `src/ops/bias_gelu.rs` (`bias_gelu`)
//! - tests: `tests/ops/bias_gelu.rs`; benchmark: `benches/transformer.rs` (group
//!   `bias_gelu`)

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

crate::kernel_params! {
    /// Params of both entry points in `bias_gelu.wgsl`.
    pub struct BiasGeluParams in "bias_gelu.wgsl" as "BiasGeluParams" {
        /// R * N elements.
        pub len: u32,
        /// N: bias length (the last dim).
        pub n: u32,
        /// Element offset of x[0, 0].
        pub x_offset: u32,
        /// Element offset of g[0, 0] (backward).
        pub g_offset: u32,
    }
}

/// One bias-GELU call: the tanh form or the erf one, over `len` = R * N elements with a bias of
/// `n` = N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiasGelu {
    /// The tanh approximation (else the exact erf form).
    pub tanh: bool,
    /// R * N elements.
    pub len: usize,
    /// N: bias length (the last dim).
    pub n: usize,
}

fn key(entry: &'static str, tanh: bool) -> KernelKey {
    KernelKey::new("bias_gelu.wgsl", entry).with("TANH", tanh as u32)
}

/// Check the sizes `(len, N, x offset, g offset)` and record one entry over `len` elements
/// (nothing when `len` is 0).
fn record(
    gpu: &Gpu,
    k: KernelKey,
    at: (usize, usize, usize, usize),
    bufs: &[&GpuBuffer],
) -> Result<()> {
    let (len, n, xo, go) = at;
    let p = params(&k.label(), len, n, xo, go)?;
    if len > 0 {
        gpu.dispatch(&k, &p, bufs, grid_1d(len, WG));
    }
    Ok(())
}

fn params(kernel: &str, len: usize, n: usize, xo: usize, go: usize) -> Result<BiasGeluParams> {
    if n == 0 || !len.is_multiple_of(n) || len + xo.max(go) > u32::MAX as usize {
        return Err(KernelError::launch(
            kernel,
            format!("need len = R * N with N > 0 within 2^32 elements, got len {len}, N {n}"),
        ));
    }
    Ok(BiasGeluParams {
        len: len as u32,
        n: n as u32,
        x_offset: xo as u32,
        g_offset: go as u32,
    })
}

/// `y = gelu(x + b)`, tanh form when `s.tanh`.
///
/// - `x`: (R, N) contiguous at `x.offset`, `s.len` = R * N elements
/// - `b`: (N) from element 0
/// - `y`: (R, N) from element 0
pub fn forward(gpu: &Gpu, s: BiasGelu, x: Operand<'_>, b: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    let at = (s.len, s.n, x.offset, 0);
    record(gpu, key("forward", s.tanh), at, &[x.buf, b, y])
}

/// `dz = g * gelu'(x + b)` (the gradient of x; the bias gradient is its sum over rows).
///
/// - `x`, `g`: (R, N) contiguous at their offsets; `b`: (N)
/// - `dz`: (R, N) from element 0
pub fn backward(
    gpu: &Gpu,
    s: BiasGelu,
    x: Operand<'_>,
    b: &GpuBuffer,
    g: Operand<'_>,
    dz: &GpuBuffer,
) -> Result<()> {
    let at = (s.len, s.n, x.offset, g.offset);
    record(gpu, key("backward", s.tanh), at, &[x.buf, b, g.buf, dz])
}
