//! Launchers for `pack16.wgsl`: f32 values packed two to a u32 word as IEEE f16 or bfloat16
//! (round to nearest, ties to even; inf, NaN and f16 subnormals kept), and unpacked back to f32
//! (exact). Integer bit work only, so it runs on every adapter, with or without `SHADER_F16`;
//! the bytes are those of an array of 16-bit values.
//!
//! See also:
//! - shader: `shaders/pack16.wgsl`
//! - CPU twin: [`crate::reference::pack16`]
//! - tests: `kernels/tests/kernels/pack16.rs`; no op yet, no benchmark

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

crate::kernel_params! {
    /// Params of `pack16.wgsl:pack` and `pack16.wgsl:unpack`.
    pub struct Pack16Params in "pack16.wgsl" as "Pack16Params" {
        /// Elements.
        pub n: u32,
        /// Offset of `x[0]` (f32 elements for pack, words for unpack).
        pub x_off: u32,
        /// Offset of `out[0]` (words for pack, f32 elements for unpack).
        pub o_off: u32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

/// A 16-bit float format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    /// IEEE binary16: 5 exponent bits, 10 mantissa bits (largest finite 65504).
    F16,
    /// bfloat16: f32's 8 exponent bits, 7 mantissa bits.
    Bf16,
}

/// u32 words that hold `n` packed 16-bit values.
pub fn words(n: usize) -> usize {
    n.div_ceil(2)
}

fn launch(
    gpu: &Gpu,
    entry: &'static str,
    format: Half,
    n: usize,
    (x, x_len): (Operand<'_>, usize),
    (out, out_len): (Operand<'_>, usize),
) -> Result<()> {
    let key = KernelKey::new("pack16.wgsl", entry).with("BF16", (format == Half::Bf16) as u32);
    let label = key.label();
    for (name, s, len) in [("x", &x, x_len), ("out", &out, out_len)] {
        let end = s.offset as u64 + len as u64;
        if end > u32::MAX as u64 || end * 4 > s.buf.capacity() {
            return Err(KernelError::launch(
                label,
                format!(
                    "{name}: 4-byte elements {}..{end} overrun its buffer of {} bytes",
                    s.offset,
                    s.buf.capacity()
                ),
            ));
        }
    }
    if std::ptr::eq(x.buf, out.buf) {
        return Err(KernelError::launch(label, "x and out share a buffer"));
    }
    if n > 0 {
        let params = Pack16Params {
            n: n as u32,
            x_off: x.offset as u32,
            o_off: out.offset as u32,
            _pad: 0,
        };
        let inv = if entry == "pack" { words(n) } else { n };
        gpu.dispatch(&key, &params, &[x.buf, out.buf], grid_1d(inv, WG));
    }
    Ok(())
}

/// Pack `n` f32 of `x` into `ceil(n / 2)` words of `out` (offset in words) as `format`.
pub fn pack(
    gpu: &Gpu,
    format: Half,
    n: usize,
    x: Operand<'_>,   // (n) f32
    out: Operand<'_>, // (ceil(n / 2)) u32, read-write
) -> Result<()> {
    launch(gpu, "pack", format, n, (x, n), (out, words(n)))
}

/// Unpack `n` values of `format` from the words of `x` (offset in words) into f32 `out`.
pub fn unpack(
    gpu: &Gpu,
    format: Half,
    n: usize,
    x: Operand<'_>,   // (ceil(n / 2)) u32
    out: Operand<'_>, // (n) f32, read-write
) -> Result<()> {
    launch(gpu, "unpack", format, n, (x, words(n)), (out, n))
}
