//! Launchers for the NF4 family (`shaders/nf4/simple.wgsl`, f32 and f16, and `shaders/nf4/block.wgsl`): QLoRA's 4-bit
//! frozen base weight, dequantised in registers inside the matmul.
//!
//! - [`matmul_nf4`]: `y (M, out) = x (M, in) @ W^T + bias`;
//! - [`matmul_nf4_grad_input`]: `dx (M, in) = dy (M, out) @ W` (W is frozen: no weight gradient);
//! - [`dequantize_nf4`]: W (out, in) as f32 (the unfused baseline, and merging adapters).
//!
//! W is [`Nf4Buffers`]: packed codes, packed int8 block scales and f32 group stats, laid out as
//! [`crate::reference::nf4`] describes. The matmuls never write the dequantised W anywhere.
//! Two rungs, each runnable on its own through [`Nf4Config`]:
//!
//! - `simple` (`nf4/simple.wgsl` with `elem` f32, or f16 compute): a 4 x 4 (forward) or 4 x 8
//!   (grad-input) block of outputs per invocation, the block absmax decoded per packed word; any
//!   `in`;
//! - `block` (`nf4/block.wgsl`, f32): `TM` rows per invocation share every decoded word, the
//!   absmax is decoded once per 64-value block, and the code-book lookup is a private-array read
//!   or a select tree; needs `in % 64 == 0` (and `x_offset % 4 == 0` forward);
//! - `tile` (`nf4/block.wgsl`, forward only): the workgroup decodes each block of its 32 rows of
//!   W once into workgroup memory and all its invocations share it (two barriers per block; on
//!   lavapipe the barriers make it slower than `block`, on GPUs the tuner decides).
//!
//! [`matmul_nf4`] / [`matmul_nf4_grad_input`] run one [`Nf4Config`] as asked. The op layer
//! picks it with [`crate::tune::nf4_choice`] (a lookup that never measures) from an
//! [`Nf4Compute`]: the fastest correct configuration measured on this adapter for the shape's
//! bucket, else [`Nf4Config`]'s default (the `block` rung in f32 where it applies). `F32` / `F16`
//! force the precision; `Auto` lets the measurement pick either.
//!
//! The reduction (in for the forward, out for the input gradient) is split into chunks of at
//! most [`Nf4Config::chunk`] (lavapipe ends an invocation's loops after 65,535 iterations, and
//! the block rung's row loops count too); later chunks add into the output.
//!
//! See also:
//! - shaders: `shaders/nf4/` (helpers in `shaders/common/nf4.wgsl`)
//! - CPU twin: [`crate::reference::nf4`]
//! - op: `src/ops/nf4.rs`; tuner: `kernels/src/tune/nf4.rs`
//! - tests: `kernels/tests/kernels/nf4.rs` (every rung vs twin), `tests/nf4.rs` (op);
//!   benchmark: `kernels/benches/nf4.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;
use crate::reference::nf4::{BLOCK, GROUP, Nf4Quantized, PER_WORD};

mod config;
pub use config::{Nf4Config, Nf4Pass};

crate::kernel_params! {
    /// Params of every entry point in `nf4/simple.wgsl` (either `elem`) (WGSL `Nf4Params` in
    /// `common/nf4.wgsl`).
    pub struct Nf4Params in "common/nf4.wgsl" as "Nf4Params" {
        /// M, rows of x / dy / y / dx.
        pub rows: u32,
        /// Output features, rows of W.
        pub out_f: u32,
        /// Input features, columns of W.
        pub in_f: u32,
        /// First index of this dispatch's chunk of the reduction.
        pub red0: u32,
        /// Length of the chunk (at most [`K_CHUNK`]).
        pub red_len: u32,
        /// Element offset of x (forward) or dy (grad-input).
        pub inp_off: u32,
        /// 0: write the output (plus bias); 1: add into it (chunks after the first).
        pub accumulate: u32,
        /// Forward: 1 adds `bias[o]`.
        pub has_bias: u32,
    }
}

/// Longest chunk of the reduction one dispatch covers: a multiple of 64, so every chunk starts
/// on a block and a word; at most 16,384 loop iterations per invocation.
pub const K_CHUNK: usize = 16_384;
/// Workgroup size (x along output columns, y along M).
pub const WG: (u32, u32) = (8, 8);
/// Outputs per invocation of the forward (rows, columns).
pub const FORWARD_BLOCK: (u32, u32) = (4, 4);
/// Outputs per invocation of the input gradient (rows, columns).
pub const GRAD_BLOCK: (u32, u32) = (4, 8);
/// Most rows per invocation of the block rung (`TM_MAX` in `nf4/block.wgsl`).
pub const BLOCK_TM_MAX: u32 = 16;

/// f32 or f16 compute for the NF4 matmuls (accumulation and outputs are f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nf4Compute {
    /// Dequantised values and products in f32 (the `simple` or `block` rung).
    F32,
    /// `nf4/simple.wgsl` with `elem = f16`: x / dy and dequantised values rounded to f16, products (and short dot
    /// products) in f16, f32 accumulation. Needs `SHADER_F16`; inputs beyond f16's range
    /// (|x| > 65504) overflow.
    F16,
    /// Whichever the tuner measured fastest (and correct) for the shape on this adapter, f32 or
    /// f16; untuned shapes use the f32 default (f16 is slower on CPU adapters such as lavapipe).
    #[default]
    Auto,
}

/// An NF4 weight W (out, in) on the GPU (formats in [`crate::reference::nf4`]).
#[derive(Debug, Clone, Copy)]
pub struct Nf4Buffers<'a> {
    /// Packed codes, `ceil(n / 8)` u32 words.
    pub codes: &'a GpuBuffer,
    /// Packed int8 block scales, `ceil(n / 256)` u32 words.
    pub scales: &'a GpuBuffer,
    /// f32 `[mu, s_0, s_1, ...]`, `1 + ceil(n / 16384)` values.
    pub stats: &'a GpuBuffer,
    /// Rows of W.
    pub out_features: usize,
    /// Columns of W.
    pub in_features: usize,
}

/// An NF4 weight uploaded from its CPU form ([`Nf4Quantized`]): owns the three buffers that
/// [`Nf4Buffers`] borrows.
#[derive(Debug)]
pub struct Nf4Weight {
    /// Packed codes.
    pub codes: GpuBuffer,
    /// Packed int8 block scales.
    pub scales: GpuBuffer,
    /// f32 `[mu, s_0, s_1, ...]`.
    pub stats: GpuBuffer,
    /// Rows of W.
    pub out_features: usize,
    /// Columns of W.
    pub in_features: usize,
}

impl Nf4Weight {
    /// Upload the codes, the block scales (as u32 words) and the stats of `q`.
    pub fn upload(gpu: &Gpu, q: &Nf4Quantized) -> Result<Self> {
        let put = |bytes: &[u8], what: &str| -> Result<GpuBuffer> {
            let b = gpu.alloc((bytes.len() as u64).max(4), what)?;
            gpu.upload(&b, 0, bytes);
            Ok(b)
        };
        Ok(Nf4Weight {
            codes: put(bytemuck::cast_slice(&q.codes), "nf4 codes")?,
            scales: put(bytemuck::cast_slice(&q.scale_words()), "nf4 scales")?,
            stats: put(bytemuck::cast_slice(&q.stats), "nf4 stats")?,
            out_features: q.out_features,
            in_features: q.in_features,
        })
    }

    /// The buffers as the launchers take them.
    pub fn buffers(&self) -> Nf4Buffers<'_> {
        Nf4Buffers {
            codes: &self.codes,
            scales: &self.scales,
            stats: &self.stats,
            out_features: self.out_features,
            in_features: self.in_features,
        }
    }
}

impl Nf4Buffers<'_> {
    fn check(&self, key: &KernelKey) -> Result<usize> {
        let n = self
            .out_features
            .checked_mul(self.in_features)
            .filter(|&n| n > 0 && n <= u32::MAX as usize - PER_WORD)
            .ok_or_else(|| {
                KernelError::launch(
                    key,
                    format!(
                        "W ({}, {}) must be non-empty with fewer than 2^32 values",
                        self.out_features, self.in_features
                    ),
                )
            })?;
        let blocks = n.div_ceil(BLOCK);
        let need = [
            ("codes", self.codes, 4 * n.div_ceil(PER_WORD)),
            ("scales", self.scales, 4 * blocks.div_ceil(4)),
            ("stats", self.stats, 4 * (1 + blocks.div_ceil(GROUP))),
        ];
        for (what, buf, bytes) in need {
            if buf.capacity() < bytes as u64 {
                return Err(KernelError::launch(
                    key,
                    format!(
                        "{what} buffer holds {} bytes, W ({}, {}) needs {bytes}",
                        buf.capacity(),
                        self.out_features,
                        self.in_features
                    ),
                ));
            }
        }
        Ok(n)
    }
}

fn check_len(key: &KernelKey, what: &str, buf: &GpuBuffer, elems: usize) -> Result<()> {
    if buf.capacity() < 4 * elems as u64 || elems > u32::MAX as usize {
        return Err(KernelError::launch(
            key,
            format!(
                "{what} needs {elems} f32 elements, its buffer holds {} bytes",
                buf.capacity()
            ),
        ));
    }
    Ok(())
}

fn groups(key: &KernelKey, cols: usize, rows: usize, block: (u32, u32)) -> Result<[u32; 3]> {
    let gx = cols.div_ceil((WG.0 * block.1) as usize);
    let gy = rows.div_ceil((WG.1 * block.0) as usize);
    if gx > 65_535 || gy > 65_535 {
        return Err(KernelError::launch(
            key,
            format!("grid ({gx}, {gy}) exceeds 65,535 workgroups per dimension"),
        ));
    }
    Ok([gx as u32, gy as u32, 1])
}

/// Check `cfg` (its kernel specialised on `aligned` loads) and the sizes of one NF4 pass, and
/// record it, one dispatch per chunk of the reduction (the first overwrites `out`, the rest add
/// into it). `inp` from element `inp_off` is x (forward) or dy (grad-input), `out` is y or dx;
/// the bindings are W's codes, scales and stats, `out`, `inp` and, for the forward, the bias.
#[allow(clippy::too_many_arguments)]
fn record(
    gpu: &Gpu,
    (cfg, pass, aligned): (Nf4Config, Nf4Pass, bool),
    w: Nf4Buffers<'_>,
    (inp, inp_off): (&GpuBuffer, usize),
    m: usize,
    out: &GpuBuffer,
    bias: Option<&GpuBuffer>,
) -> Result<()> {
    let key = &cfg.key(pass, aligned);
    cfg.check(gpu, pass, w.in_features, inp_off, key)?;
    w.check(key)?;
    if m == 0 {
        return Err(KernelError::launch(key, "M must be at least 1"));
    }
    // The pass as a dense product: reduce over d.k, write d.n columns.
    let (d, _) = pass.dense(m, w.out_features, w.in_features);
    let (inp_name, out_name) = match pass {
        Nf4Pass::Forward => ("x (M, in)", "y (M, out)"),
        Nf4Pass::GradInput => ("dy (M, out)", "dx (M, in)"),
    };
    check_len(key, inp_name, inp, inp_off + m * d.k)?;
    check_len(key, out_name, out, m * d.n)?;
    if let Some(b) = bias {
        check_len(key, "bias (out)", b, d.n)?;
    }
    let grid = groups(key, d.n, m, cfg.block(pass))?;
    let chunk = cfg.chunk(pass);
    for r0 in (0..d.k).step_by(chunk) {
        let p = Nf4Params {
            rows: m as u32,
            out_f: w.out_features as u32,
            in_f: w.in_features as u32,
            red0: r0 as u32,
            red_len: (d.k - r0).min(chunk) as u32,
            inp_off: inp_off as u32,
            accumulate: u32::from(r0 > 0),
            has_bias: u32::from(bias.is_some()),
        };
        let mut bufs = vec![w.codes, w.scales, w.stats, out, inp];
        if pass == Nf4Pass::Forward {
            // Without a bias binding 6 still needs a buffer; the stats are never read through it.
            bufs.push(bias.unwrap_or(w.stats));
        }
        gpu.dispatch(key, &p, &bufs, grid);
    }
    Ok(())
}

/// `y (M, out) = x (M, in) @ W^T (+ bias)`, W dequantised in registers, with configuration `cfg`
/// exactly (an error where it does not apply; the op layer picks it with
/// [`crate::tune::nf4_choice`]).
///
/// - `x`: (M, in) f32, contiguous from element `x_offset`;
/// - `bias`: (out) f32 or `None`;
/// - `y`: (M, out) f32, contiguous from element 0.
///
/// Returns [`KernelError::Launch`] (recording nothing) on empty or mismatched sizes, a grid past
/// 65,535 workgroups, or f16 compute on an adapter without `SHADER_F16`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_nf4(
    gpu: &Gpu,
    cfg: Nf4Config,
    w: Nf4Buffers<'_>,
    x: &GpuBuffer,
    x_offset: usize,
    m: usize,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
) -> Result<()> {
    let aligned = w.in_features.is_multiple_of(PER_WORD) && x_offset.is_multiple_of(4);
    let pass = (cfg, Nf4Pass::Forward, aligned);
    record(gpu, pass, w, (x, x_offset), m, y, bias)
}

/// `dx (M, in) = dy (M, out) @ W`, W dequantised in registers (W itself gets no gradient), with
/// configuration `cfg` exactly (an error where it does not apply).
///
/// - `dy`: (M, out) f32, contiguous from element `dy_offset`;
/// - `dx`: (M, in) f32, written contiguous from element 0 (overwritten, not accumulated).
pub fn matmul_nf4_grad_input(
    gpu: &Gpu,
    cfg: Nf4Config,
    w: Nf4Buffers<'_>,
    dy: &GpuBuffer,
    dy_offset: usize,
    m: usize,
    dx: &GpuBuffer,
) -> Result<()> {
    let aligned = match cfg {
        Nf4Config::Simple { .. } => w.in_features.is_multiple_of(PER_WORD),
        Nf4Config::Block { .. } | Nf4Config::Tile { .. } => {
            w.out_features.is_multiple_of(4) && dy_offset.is_multiple_of(4)
        }
    };
    let pass = (cfg, Nf4Pass::GradInput, aligned);
    record(gpu, pass, w, (dy, dy_offset), m, dx, None)
}

/// One pass of the NF4 linear layer by [`matmul_nf4`] (no bias) or [`matmul_nf4_grad_input`]:
/// `inp` is x (M, in) or dy (M, out), `out` is y (M, out) or dx (M, in), both from element 0.
/// What the tuner and the benches time.
pub fn matmul_nf4_pass(
    gpu: &Gpu,
    cfg: Nf4Config,
    pass: Nf4Pass,
    w: Nf4Buffers<'_>,
    inp: &GpuBuffer,
    m: usize,
    out: &GpuBuffer,
) -> Result<()> {
    match pass {
        Nf4Pass::Forward => matmul_nf4(gpu, cfg, w, inp, 0, m, None, out),
        Nf4Pass::GradInput => matmul_nf4_grad_input(gpu, cfg, w, inp, 0, m, out),
    }
}

/// W (out, in) as f32, row-major from element 0 of `out`: `NF4[code] * block absmax`.
pub fn dequantize_nf4(gpu: &Gpu, w: Nf4Buffers<'_>, out: &GpuBuffer) -> Result<()> {
    let key = KernelKey::new("nf4/simple.wgsl", "dequantize_nf4")
        .with("WG_X", WG.0)
        .with("WG_Y", WG.1)
        .with("ALIGNED", 0u32);
    let n = w.check(&key)?;
    check_len(&key, "W (out, in)", out, n)?;
    let p = Nf4Params {
        out_f: w.out_features as u32,
        in_f: w.in_features as u32,
        ..Default::default()
    };
    let grid = grid_1d(n.div_ceil(PER_WORD), WG.0 * WG.1);
    gpu.dispatch(&key, &p, &[w.codes, w.scales, w.stats, out], grid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::reference::nf4::NF4_CODE;

    #[test]
    fn shader_code_book_matches_reference() {
        let src = crate::shaders::expand("nf4/simple.wgsl");
        let start = src
            .find("array<f32, 16>(")
            .expect("code book in common/nf4.wgsl");
        let body = &src[start + "array<f32, 16>(".len()..];
        let body = &body[..body.find(')').unwrap()];
        let vals: Vec<f32> = body
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(vals, NF4_CODE);
    }
}
