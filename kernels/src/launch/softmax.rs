//! Launchers for `softmax.wgsl`: softmax, log-softmax and log-sum-exp of rows,
//! `softmax(x)[r, j] = exp(x[r, j] - m_r) / sum_k exp(x[r, k] - m_r)` with `m_r` the row maximum.
//!
//! The kernels read a strided (rows, C) matrix described by [`Rows`] (shared with `reduce.rs` and
//! [`crate::launch::cross_entropy`]) and summarise each row with an online (max, sum of exp)
//! pair, in one of two strategies: one invocation per row, or one workgroup per row
//! ([`ReduceStrategy`]).
//!
//! See also:
//! - shader: `shaders/softmax.wgsl` (online max / sum in `shaders/common/online_softmax.wgsl`)
//! - CPU twin: [`crate::reference::softmax`]
//! - op: `src/ops/softmax.rs`
//! - tests: `kernels/tests/kernels/softmax.rs` (kernels vs twin), `tests/ops/softmax.rs` (ops);
//!   benchmark: `kernels/benches/elementwise.rs` (group `softmax`)

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::launch::reduce::{ReduceStrategy, Rows, RowsParams};
use crate::pipeline::KernelKey;

/// Invocations per workgroup of every entry point in this family (WGSL `override WG`).
///
/// For the workgroup-per-row kernels, which [`ReduceStrategy::Auto`] only picks for rows longer
/// than [`SERIAL_MAX_LEN`]: on lavapipe 256 beat 64 there (1 x 32768: 0.32 vs 0.40 ms; 32 x 4096:
/// 0.9 vs 1.9 ms), and a real GPU wants the wider group for long rows too.
pub const WG: u32 = 256;

/// [`ReduceStrategy::Auto`] uses one invocation per row up to this row length, and a workgroup
/// per row above it.
///
/// Measured on lavapipe (2 cores, softmax): a workgroup pays about 15 us in barriers, so one
/// invocation per row wins for short rows at every row count (64 x 256: 0.14 vs 1.3 ms; 1024 x 64:
/// 0.5 vs 15 ms; 4096 x 10: 0.2 vs 48 ms) and a workgroup per row for long ones (1 x 4096: 0.11
/// vs 0.20 ms; 1 x 32768: 0.32 vs 1.1 ms; 64 x 4096: 1.9 vs 2.3 ms); between 1k and 4k they are
/// within noise. A real GPU also prefers the workgroup (coalesced reads) for long rows.
pub const SERIAL_MAX_LEN: usize = 1024;

/// What `softmax.wgsl` writes for each row (the `MODE` constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoftmaxMode {
    /// `y[r, j] = exp(x[r, j] - m) / s`, shape (rows, C).
    Softmax = 0,
    /// `y[r, j] = x[r, j] - m - ln s`, shape (rows, C).
    LogSoftmax = 1,
    /// `y[r] = m + ln s`, shape (rows).
    LogSumExp = 2,
}

/// A strided vector of `len` elements inside a buffer: element `i` is at `offset + i * stride`
/// (stride 0 repeats one element).
#[derive(Debug, Clone, Copy)]
pub struct Vector<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element offset of element 0.
    pub offset: usize,
    /// Elements between neighbours.
    pub stride: usize,
}

/// Most row elements one invocation may walk. Mesa's llvmpipe/lavapipe ends an invocation's loops
/// after 65,535 iterations in total (silently); the kernels read 4 elements per iteration and walk
/// their share of a row at most twice (summary, then output), so 128,000 leaves some slack.
pub const MAX_PER_INVOCATION: usize = 128_000;

/// Choose the strategy for a row length: true for one invocation per row (see
/// [`SERIAL_MAX_LEN`]). Rows longer than [`MAX_PER_INVOCATION`] times the invocations sharing a
/// row are refused.
pub(crate) fn pick(kernel: &str, strategy: ReduceStrategy, len: usize) -> Result<bool> {
    let serial = match strategy {
        ReduceStrategy::Serial => true,
        ReduceStrategy::Workgroup => false,
        ReduceStrategy::Auto => len <= SERIAL_MAX_LEN,
    };
    let per_invocation = if serial {
        len
    } else {
        len.div_ceil(WG as usize)
    };
    if per_invocation > MAX_PER_INVOCATION {
        return Err(KernelError::launch(
            kernel,
            format!(
                "rows of {len} elements are too long for {} (at most {} elements; \
                 some drivers stop long loops early)",
                if serial {
                    "one invocation per row"
                } else {
                    "one workgroup per row"
                },
                if serial {
                    MAX_PER_INVOCATION
                } else {
                    MAX_PER_INVOCATION * WG as usize
                }
            ),
        ));
    }
    Ok(serial)
}

pub(crate) fn grid(serial: bool, rows: usize) -> [u32; 3] {
    if serial {
        grid_1d(rows, WG)
    } else {
        // One workgroup per row.
        grid_1d(rows, 1)
    }
}

/// The row kernel of `shader` for `x` and its grid: entry `entries.0` with one invocation per
/// row or `entries.1` with one workgroup per row (as [`pick`] chooses for `strategy`),
/// specialised on `constants` and `WG`, after checking x's index range; `None` when x has no
/// rows (nothing to record).
pub(crate) fn row_kernel(
    shader: &'static str,
    entries: (&'static str, &'static str),
    strategy: ReduceStrategy,
    x: &Rows<'_>,
    constants: &[(&'static str, u32)],
) -> Result<Option<(KernelKey, [u32; 3])>> {
    if x.rows == 0 {
        return Ok(None);
    }
    check_range(shader, x)?;
    let serial = pick(shader, strategy, x.len)?;
    let entry = if serial { entries.0 } else { entries.1 };
    let key = constants
        .iter()
        .fold(KernelKey::new(shader, entry), |k, &(name, v)| {
            k.with(name, v)
        })
        .with("WG", WG);
    Ok(Some((key, grid(serial, x.rows))))
}

/// Error unless every index of a (rows, len) matrix at `x` stays within u32.
pub(crate) fn check_range(kernel: &str, x: &Rows<'_>) -> Result<()> {
    let last = x.offset as u128
        + (x.rows.max(1) as u128 - 1) * x.row_stride as u128
        + (x.len.max(1) as u128 - 1) * x.col_stride as u128;
    let elems = x.rows as u128 * x.len as u128;
    if last > u32::MAX as u128 || elems > u32::MAX as u128 {
        return Err(KernelError::launch(
            kernel,
            format!(
                "a ({}, {}) matrix with strides ({}, {}) exceeds the 2^32 index range",
                x.rows, x.len, x.row_stride, x.col_stride
            ),
        ));
    }
    if x.len == 0 {
        return Err(KernelError::launch(kernel, "rows must not be empty"));
    }
    Ok(())
}

/// Softmax, log-softmax or log-sum-exp of each row of `x` (rows, C), into `out` from
/// `out_offset`: (rows, C) contiguous, or (rows) for [`SoftmaxMode::LogSumExp`].
pub fn softmax_rows(
    gpu: &Gpu,
    mode: SoftmaxMode,
    strategy: ReduceStrategy,
    x: Rows<'_>,
    out: &GpuBuffer,
    out_offset: usize,
) -> Result<()> {
    let entries = ("rows_serial", "rows_wg");
    let mode = [("MODE", mode as u32)];
    let Some((key, grid)) = row_kernel("softmax.wgsl", entries, strategy, &x, &mode)? else {
        return Ok(());
    };
    let p = RowsParams::new(&x, out_offset, 0.0);
    gpu.dispatch(&key, &p, &[x.buf, out], grid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_follows_row_length_and_refuses_over_long_rows() {
        let auto = |len| pick("t", ReduceStrategy::Auto, len).unwrap();
        assert!(auto(1) && auto(SERIAL_MAX_LEN));
        assert!(!auto(SERIAL_MAX_LEN + 1) && !auto(MAX_PER_INVOCATION + 1));
        assert!(pick("t", ReduceStrategy::Serial, MAX_PER_INVOCATION).unwrap());
        assert!(pick("t", ReduceStrategy::Serial, MAX_PER_INVOCATION + 1).is_err());
        let wg_max = MAX_PER_INVOCATION * WG as usize;
        assert!(!pick("t", ReduceStrategy::Workgroup, wg_max).unwrap());
        assert!(pick("t", ReduceStrategy::Auto, wg_max + 1).is_err());
    }
}
