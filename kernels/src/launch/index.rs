//! Launchers for `index.wgsl`: index_select / gather along one dim, and their deterministic
//! scatter-add gradient.
//!
//! Tensors are viewed as (O, D, I) around the indexed dim (see [`IndexShape`]). The source may be
//! strided (one stride per axis); indices and destinations are contiguous. Indices >= D read as 0
//! in the forward and are skipped by the scatter; nothing is checked on the host.
//!
//! See also:
//! - shader: `shaders/index.wgsl`
//! - CPU twin: [`crate::reference::index`]
//! - op: `src/ops/index.rs`
//! - tests: `kernels/tests/kernels/index.rs` (kernels vs twin), `tests/ops/index.rs` (op gradients);
//!   no benchmark

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

crate::kernel_params! {
    /// Params of every entry point in `index.wgsl`.
    pub struct IndexParams in "index.wgsl" as "IndexParams" {
        /// O: product of the dims before the indexed one.
        pub outer: u32,
        /// D: size of the indexed dim of x and gx.
        pub d: u32,
        /// I: product of the dims after the indexed one.
        pub inner: u32,
        /// J: size of the indexed dim of out and g.
        pub j: u32,
        /// Element offset of src[0, 0, 0] (x forward, g backward).
        pub src_offset: u32,
        /// Stride of src over O.
        pub src_so: u32,
        /// Stride of src over D (forward) or J (scatter).
        pub src_sm: u32,
        /// Stride of src over I.
        pub src_si: u32,
        /// Element offset of `idx[0]`.
        pub idx_offset: u32,
        /// Element offset of dst[0, 0, 0] (out or gx).
        pub dst_offset: u32,
        /// Scatter: first term `j` this dispatch adds.
        pub j_begin: u32,
        /// Scatter: one past the last term `j` this dispatch adds.
        pub j_end: u32,
    }
}

/// Sizes of an indexing op, viewed around the indexed dim: x and gx are (O, D, I); out, g and a
/// gather index are (O, J, I); an index_select index is (J).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexShape {
    /// O: product of the dims before the indexed one.
    pub outer: usize,
    /// D: size of the indexed dim of the source.
    pub d: usize,
    /// I: product of the dims after the indexed one.
    pub inner: usize,
    /// J: number of indices along the indexed dim of the output.
    pub j: usize,
}

/// How the indices address the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// `out[o, j, i] = x[o, idx[j], i]`, idx (J).
    Select,
    /// `out[o, j, i] = x[o, idx[o, j, i], i]`, idx (O, J, I).
    Gather,
}

impl IndexMode {
    fn gather(self) -> bool {
        self == IndexMode::Gather
    }
}

/// Which scatter-add kernel to run. Both give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScatterStrategy {
    /// One invocation per (o, i) column, walking j (work O*J*I). The default.
    Column,
    /// One invocation per gx element, walking every j (work O*D*J*I). The naive cross-check.
    Pull,
}

/// A strided (outer, mid, inner) view of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct View3<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element offset of [0, 0, 0].
    pub offset: usize,
    /// Element strides over (outer, mid, inner).
    pub strides: [usize; 3],
}

impl<'a> View3<'a> {
    /// A contiguous (outer, mid, inner) view at `offset`.
    pub fn contiguous(buf: &'a GpuBuffer, offset: usize, mid: usize, inner: usize) -> Self {
        View3 {
            buf,
            offset,
            strides: [mid * inner, inner, 1],
        }
    }
}

fn u32_of(kernel: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        KernelError::launch(kernel, format!("{what} = {v} exceeds the 2^32 index range"))
    })
}

fn params(
    kernel: &str,
    shape: IndexShape,
    src: &View3<'_>,
    idx: &Operand<'_>,
    dst: &Operand<'_>,
) -> Result<IndexParams> {
    // Every index the kernel forms stays below the largest of these element counts.
    let IndexShape { outer, d, inner, j } = shape;
    let dj = d.max(j);
    let count = outer
        .checked_mul(dj)
        .and_then(|n| n.checked_mul(inner))
        .unwrap_or(usize::MAX);
    u32_of(kernel, "O * max(D, J) * I", count)?;
    let [so, sm, si] = src.strides;
    let last = src.offset
        + so * outer.saturating_sub(1)
        + sm * dj.saturating_sub(1)
        + si * inner.saturating_sub(1);
    u32_of(kernel, "last source element", last)?;
    u32_of(kernel, "index offset", idx.offset + count)?;
    u32_of(kernel, "destination offset", dst.offset + count)?;
    Ok(IndexParams {
        outer: outer as u32,
        d: d as u32,
        inner: inner as u32,
        j: j as u32,
        src_offset: src.offset as u32,
        src_so: so as u32,
        src_sm: sm as u32,
        src_si: si as u32,
        idx_offset: idx.offset as u32,
        dst_offset: dst.offset as u32,
        j_begin: 0,
        j_end: shape.j as u32,
    })
}

/// `out[o, j, i] = x[o, idx[j], i]` (Select) or `x[o, idx[o, j, i], i]` (Gather); 0 where the
/// index is >= D. Copies 32-bit words, so any 32-bit dtype works (index.wgsl:forward).
///
/// - `x`: (O, D, I), strided
/// - `idx`: (J) for Select, (O, J, I) for Gather; u32
/// - `out`: (O, J, I), contiguous
pub fn index_forward(
    gpu: &Gpu,
    mode: IndexMode,
    shape: IndexShape,
    x: View3<'_>,
    idx: Operand<'_>,
    out: Operand<'_>,
) -> Result<()> {
    let key = KernelKey::new("index.wgsl", "forward").with("GATHER", mode.gather() as u32);
    let n = shape.outer * shape.j * shape.inner;
    if n == 0 {
        return Ok(());
    }
    let p = params(&key.label(), shape, &x, &idx, &out)?;
    gpu.dispatch(&key, &p, &[x.buf, idx.buf, out.buf], grid_1d(n, WG));
    Ok(())
}

/// `gx[o, idx[..j..], i] += g[o, j, i]`, summing over j in increasing order (deterministic, no
/// atomics); indices >= D are skipped (index.wgsl:scatter_column / scatter_pull).
///
/// - `g`: (O, J, I), strided
/// - `idx`: (J) for Select, (O, J, I) for Gather; u32
/// - `gx`: (O, D, I), contiguous; accumulated into, so zero it first for a plain scatter
pub fn scatter_add(
    gpu: &Gpu,
    mode: IndexMode,
    strategy: ScatterStrategy,
    shape: IndexShape,
    g: View3<'_>,
    idx: Operand<'_>,
    gx: Operand<'_>,
) -> Result<()> {
    let (entry, n) = match strategy {
        ScatterStrategy::Column => ("scatter_column", shape.outer * shape.inner),
        ScatterStrategy::Pull => ("scatter_pull", shape.outer * shape.d * shape.inner),
    };
    let key = KernelKey::new("index.wgsl", entry).with("GATHER", mode.gather() as u32);
    if n == 0 || shape.j == 0 {
        return Ok(());
    }
    let p = params(&key.label(), shape, &g, &idx, &gx)?;
    // Sequential chunks of the j loop (llvmpipe's 65,535-iteration limit); same order of adds.
    for begin in (0..shape.j).step_by(SCATTER_CHUNK) {
        let chunk = IndexParams {
            j_begin: begin as u32,
            j_end: (begin + SCATTER_CHUNK).min(shape.j) as u32,
            ..p
        };
        gpu.dispatch(&key, &chunk, &[g.buf, idx.buf, gx.buf], grid_1d(n, WG));
    }
    Ok(())
}

/// Most terms one scatter dispatch adds per invocation (below llvmpipe's 65,535 loop iterations).
pub const SCATTER_CHUNK: usize = 16_384;
