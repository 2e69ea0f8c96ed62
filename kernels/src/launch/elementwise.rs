//! Launchers for the elementwise family: `unary.wgsl`, `binary.wgsl`, `where.wgsl`, `fill.wgsl`,
//! `cast.wgsl`. All share [`ElementwiseParams`] (`shaders/common/strided.wgsl`).
//!
//! Every operand is a [`Strided`] view whose strides are already broadcast to the output `shape`
//! (stride 0 on broadcast dims). Before launch, dims are collapsed where every operand is
//! contiguous across them, so a plain contiguous op runs with rank 1 and no index arithmetic.
//!
//! See also:
//! - shaders: `shaders/elementwise/` (`unary.wgsl`, `binary.wgsl`, `where.wgsl`, `fill.wgsl`,
//!   `cast.wgsl`)
//!   (strided indexing in `shaders/common/strided.wgsl`)
//! - CPU twin: [`crate::reference::elementwise`]
//! - ops: `src/ops/elementwise/` (`unary.rs`, `binary.rs`, `compare.rs`)
//! - tests: `kernels/tests/kernels/elementwise.rs`, `kernels/tests/kernels/runtime.rs`, the
//!   ops' in `tests/ops/elementwise.rs`; benchmark:
//!   `kernels/benches/elementwise.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;
use crate::shaders::Elem;

/// Most dims an elementwise kernel handles after collapsing.
pub const MAX_RANK: usize = 8;
const WG: u32 = 256;

crate::kernel_params! {
    /// Params of every elementwise kernel (WGSL `ElementwiseParams`).
    pub struct ElementwiseParams in "common/strided.wgsl" as "ElementwiseParams" {
        /// Dims in use (<= 8).
        pub rank: u32,
        /// Elements in the output.
        pub numel: u32,
        /// Element offset of operand 0.
        pub off0: u32,
        /// Element offset of operand 1.
        pub off1: u32,
        /// Element offset of operand 2.
        pub off2: u32,
        /// Element offset of the output.
        pub off_out: u32,
        /// First scalar argument.
        pub alpha: f32,
        /// Second scalar argument.
        pub beta: f32,
        /// Output shape, innermost last.
        pub shape: [[u32; 4]; 2],
        /// Strides of operand 0 (elements).
        pub s0: [[u32; 4]; 2],
        /// Strides of operand 1.
        pub s1: [[u32; 4]; 2],
        /// Strides of operand 2.
        pub s2: [[u32; 4]; 2],
        /// Strides of the output.
        pub so: [[u32; 4]; 2],
    }
}

/// A strided view of a buffer: element offset and per-dim element strides.
#[derive(Debug, Clone)]
pub struct Strided<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Offset of element (0, ..., 0), in elements.
    pub offset: usize,
    /// Stride of each dim, in elements (0 = broadcast).
    pub strides: Vec<usize>,
}

impl<'a> Strided<'a> {
    /// A contiguous row-major view of `shape` at offset 0.
    pub fn contiguous(buf: &'a GpuBuffer, shape: &[usize]) -> Self {
        Self {
            buf,
            offset: 0,
            strides: contiguous_strides(shape),
        }
    }

    /// A view with explicit offset and strides.
    pub fn new(buf: &'a GpuBuffer, offset: usize, strides: &[usize]) -> Self {
        Self {
            buf,
            offset,
            strides: strides.to_vec(),
        }
    }
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Drop size-1 dims and merge neighbours that are contiguous in every operand.
/// Returns the collapsed shape and one stride list per operand.
pub fn collapse(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let keep: Vec<usize> = (0..shape.len()).filter(|&k| shape[k] != 1).collect();
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for &k in &keep {
        let mergeable = !out_shape.is_empty()
            && strides
                .iter()
                .enumerate()
                .all(|(j, s)| *out_strides[j].last().unwrap() == s[k] * shape[k]);
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[k];
            for (j, s) in strides.iter().enumerate() {
                *out_strides[j].last_mut().unwrap() = s[k];
            }
        } else {
            out_shape.push(shape[k]);
            for (j, s) in strides.iter().enumerate() {
                out_strides[j].push(s[k]);
            }
        }
    }
    (out_shape, out_strides)
}

fn pack(v: &[usize]) -> [[u32; 4]; 2] {
    let mut a = [[0u32; 4]; 2];
    for (k, &x) in v.iter().enumerate() {
        a[k / 4][k % 4] = x as u32;
    }
    a
}

/// Build the params for `shape` and up to three inputs plus the output.
fn params(
    kernel: &str,
    shape: &[usize],
    inputs: &[&Strided<'_>],
    out: &Strided<'_>,
    alpha: f32,
    beta: f32,
) -> Result<Option<ElementwiseParams>> {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Ok(None);
    }
    for (j, s) in inputs.iter().chain(std::iter::once(&out)).enumerate() {
        if s.strides.len() != shape.len() {
            return Err(KernelError::launch(
                kernel,
                format!(
                    "operand {j} has {} strides for a rank-{} shape {shape:?}",
                    s.strides.len(),
                    shape.len()
                ),
            ));
        }
    }
    if numel > u32::MAX as usize {
        return Err(KernelError::launch(
            kernel,
            format!("{numel} elements exceed the 2^32 index range"),
        ));
    }
    let mut all: Vec<&[usize]> = inputs.iter().map(|s| s.strides.as_slice()).collect();
    all.push(&out.strides);
    let (cshape, cstrides) = collapse(shape, &all);
    if cshape.len() > MAX_RANK {
        return Err(KernelError::launch(
            kernel,
            format!(
                "shape {shape:?} needs {} dims after collapsing; at most {MAX_RANK} are supported \
                 (make the tensor contiguous first)",
                cshape.len()
            ),
        ));
    }
    let n_in = inputs.len();
    let get = |j: usize| -> [[u32; 4]; 2] {
        if j < n_in {
            pack(&cstrides[j])
        } else {
            [[0; 4]; 2]
        }
    };
    let off = |j: usize| -> u32 { inputs.get(j).map_or(0, |s| s.offset as u32) };
    Ok(Some(ElementwiseParams {
        rank: cshape.len() as u32,
        numel: numel as u32,
        off0: off(0),
        off1: off(1),
        off2: off(2),
        off_out: out.offset as u32,
        alpha,
        beta,
        shape: pack(&cshape),
        s0: get(0),
        s1: get(1),
        s2: get(2),
        so: pack(&cstrides[n_in]),
    }))
}

/// 1 when the collapsed view is one dim of stride 1 in the output and every operand that `used`
/// marks (the `CONTIG` constant of `common/strided.wgsl`: offsets become `off + i`, with no
/// index arithmetic).
fn contig(p: &ElementwiseParams, used: [bool; 3]) -> u32 {
    let unit = |s: &[[u32; 4]; 2]| p.rank == 0 || (p.rank == 1 && s[0][0] == 1);
    let ops = [&p.s0, &p.s1, &p.s2];
    let all = (0..3).all(|j| !used[j] || unit(ops[j])) && unit(&p.so);
    u32::from(all)
}

/// Unary functions of `unary.wgsl` (the `OP` constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum UnaryOp {
    Copy = 0,
    Neg = 1,
    Exp = 2,
    Log = 3,
    Sqrt = 4,
    Abs = 5,
    Relu = 6,
    Gelu = 7,
    Silu = 8,
    Tanh = 9,
    Sigmoid = 10,
    /// clamp(x, alpha, beta)
    Clamp = 11,
    /// x ^ alpha
    Pow = 12,
    /// alpha * x + beta
    Affine = 13,
    Square = 14,
    Sign = 15,
    Recip = 16,
    Sin = 17,
    Cos = 18,
    Rsqrt = 19,
}

/// Binary functions of `binary.wgsl` (the `OP` constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Pow = 4,
    Maximum = 5,
    Minimum = 6,
    Eq = 7,
    Ne = 8,
    Lt = 9,
    Le = 10,
    Gt = 11,
    Ge = 12,
    /// a + alpha * b
    Axpy = 13,
}

impl UnaryOp {
    /// Every function, in `OP` order (the tests run each against its CPU twin).
    pub const ALL: [UnaryOp; 20] = [
        Self::Copy,
        Self::Neg,
        Self::Exp,
        Self::Log,
        Self::Sqrt,
        Self::Abs,
        Self::Relu,
        Self::Gelu,
        Self::Silu,
        Self::Tanh,
        Self::Sigmoid,
        Self::Clamp,
        Self::Pow,
        Self::Affine,
        Self::Square,
        Self::Sign,
        Self::Recip,
        Self::Sin,
        Self::Cos,
        Self::Rsqrt,
    ];
}

impl BinaryOp {
    /// Every function, in `OP` order: the seven arithmetic ones, the six comparisons, `Axpy`.
    pub const ALL: [BinaryOp; 14] = [
        Self::Add,
        Self::Sub,
        Self::Mul,
        Self::Div,
        Self::Pow,
        Self::Maximum,
        Self::Minimum,
        Self::Eq,
        Self::Ne,
        Self::Lt,
        Self::Le,
        Self::Gt,
        Self::Ge,
        Self::Axpy,
    ];
}

/// Size the params of one element-wise dispatch (`ins` then `out`, bound in that order), set
/// `CONTIG` from the operands in `contig_of` where given, and record it; nothing when empty.
fn record(
    gpu: &Gpu,
    key: KernelKey,
    shape: &[usize],
    ins: &[&Strided<'_>],
    out: &Strided<'_>,
    (alpha, beta): (f32, f32),
    contig_of: Option<[bool; 3]>,
) -> Result<()> {
    if let Some(p) = params(&key.label(), shape, ins, out, alpha, beta)? {
        let key = match contig_of {
            Some(used) => key.with("CONTIG", contig(&p, used)),
            None => key,
        };
        let bufs: Vec<&GpuBuffer> = ins.iter().map(|s| s.buf).chain([out.buf]).collect();
        gpu.dispatch(&key, &p, &bufs, grid_1d(p.numel as usize, WG));
    }
    Ok(())
}

/// `out = f(x)` over `shape` (unary.wgsl:forward).
pub fn unary(
    gpu: &Gpu,
    op: UnaryOp,
    shape: &[usize],
    x: Strided<'_>,
    out: Strided<'_>,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let key = KernelKey::new("elementwise/unary.wgsl", "forward").with("OP", op as u32);
    let used = Some([true, false, false]);
    record(gpu, key, shape, &[&x], &out, (alpha, beta), used)
}

/// `gx = g * f'(x)` over `shape` (unary.wgsl:backward).
#[allow(clippy::too_many_arguments)]
pub fn unary_backward(
    gpu: &Gpu,
    op: UnaryOp,
    shape: &[usize],
    x: Strided<'_>,
    g: Strided<'_>,
    gx: Strided<'_>,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let key = KernelKey::new("elementwise/unary.wgsl", "backward").with("OP", op as u32);
    let used = Some([true, true, false]);
    record(gpu, key, shape, &[&x, &g], &gx, (alpha, beta), used)
}

/// `out = a (op) b` over `shape` (binary.wgsl:forward).
pub fn binary(
    gpu: &Gpu,
    op: BinaryOp,
    shape: &[usize],
    a: Strided<'_>,
    b: Strided<'_>,
    out: Strided<'_>,
    alpha: f32,
) -> Result<()> {
    let key = KernelKey::new("elementwise/binary.wgsl", "forward").with("OP", op as u32);
    let used = Some([true, true, false]);
    record(gpu, key, shape, &[&a, &b], &out, (alpha, 0.0), used)
}

/// `acc = acc (op) b` in place over `shape` (binary.wgsl:inplace). `acc` must not overlap itself.
pub fn binary_inplace(
    gpu: &Gpu,
    op: BinaryOp,
    shape: &[usize],
    acc: Strided<'_>,
    b: Strided<'_>,
    alpha: f32,
) -> Result<()> {
    let key = KernelKey::new("elementwise/binary.wgsl", "inplace").with("OP", op as u32);
    // Operand 1 is b; the destination is both read and written through `so`.
    let dummy = Strided::new(acc.buf, 0, &vec![0; shape.len()]);
    if let Some(p) = params(&key.label(), shape, &[&dummy, &b], &acc, alpha, 0.0)? {
        let key = key.with("CONTIG", contig(&p, [false, true, false]));
        gpu.dispatch(&key, &p, &[acc.buf, b.buf], grid_1d(p.numel as usize, WG));
    }
    Ok(())
}

/// `out = cond != 0 ? a : b` over `shape` (where.wgsl:main).
pub fn where_select(
    gpu: &Gpu,
    shape: &[usize],
    cond: Strided<'_>,
    a: Strided<'_>,
    b: Strided<'_>,
    out: Strided<'_>,
) -> Result<()> {
    let key = KernelKey::new("elementwise/where.wgsl", "main");
    record(gpu, key, shape, &[&cond, &a, &b], &out, (0.0, 0.0), None)
}

/// `out = value` over a view (fill.wgsl:fill).
pub fn fill(gpu: &Gpu, shape: &[usize], out: Strided<'_>, value: f32) -> Result<()> {
    let key = KernelKey::new("elementwise/fill.wgsl", "fill");
    record(gpu, key, shape, &[], &out, (value, 0.0), None)
}

/// `out[i] = start + step * i` over a view (fill.wgsl:arange).
pub fn arange(gpu: &Gpu, shape: &[usize], out: Strided<'_>, start: f32, step: f32) -> Result<()> {
    let key = KernelKey::new("elementwise/fill.wgsl", "arange");
    record(gpu, key, shape, &[], &out, (start, step), None)
}

/// Conversions of `cast.wgsl` (entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cast {
    /// Bit copy of any 32-bit dtype.
    CopyBits,
    F32ToI32,
    F32ToU32,
    I32ToF32,
    U32ToF32,
}

impl Cast {
    /// The kernel key: `cast.wgsl` with its `src` and `dst` element types.
    pub fn key(self) -> KernelKey {
        let (src, dst) = match self {
            Cast::CopyBits => (Elem::U32, Elem::U32),
            Cast::F32ToI32 => (Elem::F32, Elem::I32),
            Cast::F32ToU32 => (Elem::F32, Elem::U32),
            Cast::I32ToF32 => (Elem::I32, Elem::F32),
            Cast::U32ToF32 => (Elem::U32, Elem::F32),
        };
        cast_key(src, dst)
    }
}

/// `cast.wgsl` converting `src` to `dst` (`convert_nonneg` for f32 -> u32).
pub fn cast_key(src: Elem, dst: Elem) -> KernelKey {
    let entry = if (src, dst) == (Elem::F32, Elem::U32) {
        "convert_nonneg"
    } else {
        "convert"
    };
    KernelKey::new("elementwise/cast.wgsl", entry)
        .typed("src", src)
        .typed("dst", dst)
}

/// `out = convert(x)` over `shape` (cast.wgsl).
pub fn cast(
    gpu: &Gpu,
    kind: Cast,
    shape: &[usize],
    x: Strided<'_>,
    out: Strided<'_>,
) -> Result<()> {
    let key = kind.key();
    record(gpu, key, shape, &[&x], &out, (0.0, 0.0), None)
}

/// f32 <-> f16 conversion (cast.wgsl with an f16 side); needs `SHADER_F16`. Offsets and strides
/// of the f16 side are in f16 elements.
pub fn cast_f16(
    gpu: &Gpu,
    to_f16: bool,
    shape: &[usize],
    x: Strided<'_>,
    out: Strided<'_>,
) -> Result<()> {
    if !gpu.has_f16() {
        return Err(KernelError::MissingFeature {
            what: "f16 storage".into(),
            feature: "SHADER_F16",
            adapter: gpu.info().name.clone(),
        });
    }
    let key = if to_f16 {
        cast_key(Elem::F32, Elem::F16)
    } else {
        cast_key(Elem::F16, Elem::F32)
    };
    record(gpu, key, shape, &[&x], &out, (0.0, 0.0), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_dims() {
        let shape = [2, 3, 4];
        let c = contiguous_strides(&shape);
        let (s, st) = collapse(&shape, &[&c, &c]);
        assert_eq!(s, vec![24]);
        assert_eq!(st, vec![vec![1], vec![1]]);
        // A broadcast row vector (stride 0 on dim 0) keeps two dims.
        let b = [0, 4, 1];
        let (s, st) = collapse(&shape, &[&c, &b]);
        assert_eq!(s, vec![2, 12]);
        assert_eq!(st, vec![vec![12, 1], vec![0, 1]]);
        // Size-1 dims vanish.
        let (s, _) = collapse(&[1, 5, 1], &[&[5, 1, 1]]);
        assert_eq!(s, vec![5]);
    }
}
