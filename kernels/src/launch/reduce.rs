//! Launchers for `reduce.wgsl`: one output per row of a strided (rows, len) matrix.
//!
//! See also:
//! - shader: `shaders/reduce.wgsl`
//! - CPU twin: [`crate::reference::reduce`]
//! - op: `src/ops/reduce.rs`
//! - tests: `kernels/tests/kernels/reduce.rs` (kernels vs twin), `tests/ops/reduce.rs` (ops);
//!   benchmark: `kernels/benches/elementwise.rs` (group `reduce`)

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of every entry point in `reduce.wgsl` and `softmax.wgsl` (the WGSL struct is in
    /// `common/rows.wgsl`): a strided (rows, len) matrix [`Rows`] and where the output starts.
    pub struct RowsParams in "reduce.wgsl" as "RowsParams" {
        /// Number of rows (outputs of a reduction).
        pub rows: u32,
        /// Elements per row.
        pub len: u32,
        /// Element offset of x[0, 0].
        pub offset: u32,
        /// Elements between rows.
        pub row_stride: u32,
        /// Elements between neighbours in a row.
        pub col_stride: u32,
        /// Element offset of the output's first element.
        pub out_offset: u32,
        /// Multiplies a sum (1/len for mean); unused by softmax.
        pub scale: f32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

impl RowsParams {
    /// The params of `x`, the output from element `out_offset`, sums times `scale`.
    pub fn new(x: &Rows<'_>, out_offset: usize, scale: f32) -> RowsParams {
        RowsParams {
            rows: x.rows as u32,
            len: x.len as u32,
            offset: x.offset as u32,
            row_stride: x.row_stride as u32,
            col_stride: x.col_stride as u32,
            out_offset: out_offset as u32,
            scale,
            _pad: 0,
        }
    }
}

/// What to reduce with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum times a scale (mean = sum with scale 1/len).
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// Which reduction strategy to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceStrategy {
    /// Pick by shape: one invocation per row when there are many rows or rows are short.
    Auto,
    /// One invocation per row.
    Serial,
    /// One workgroup of 256 per row.
    Workgroup,
}

/// A (rows, len) matrix inside a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element offset of [0, 0].
    pub offset: usize,
    /// Number of rows (outputs).
    pub rows: usize,
    /// Row length (reduced elements).
    pub len: usize,
    /// Elements between rows.
    pub row_stride: usize,
    /// Elements between neighbours in a row.
    pub col_stride: usize,
}

impl<'a> Rows<'a> {
    /// A contiguous row-major (rows, len) matrix from element 0 of `buf`.
    pub fn contiguous(buf: &'a GpuBuffer, rows: usize, len: usize) -> Self {
        Rows {
            buf,
            offset: 0,
            rows,
            len,
            row_stride: len,
            col_stride: 1,
        }
    }
}

fn pick(strategy: ReduceStrategy, rows: usize, len: usize) -> bool {
    match strategy {
        ReduceStrategy::Serial => true,
        ReduceStrategy::Workgroup => false,
        ReduceStrategy::Auto => len <= SERIAL_MAX_LEN && (rows >= 512 || len <= 256),
    }
}

/// Longest row the one-invocation-per-row strategy takes under `Auto`. Mesa's llvmpipe ends an
/// invocation's loops after 65,535 iterations in total; the kernels read 4 elements per
/// iteration, so one invocation can cover 262,140 elements and a workgroup of 256 about 67M.
pub const SERIAL_MAX_LEN: usize = 65_536;

/// Longest row any strategy takes (the workgroup strategy's reach on llvmpipe, with margin).
pub const MAX_LEN: usize = 64 << 20;

/// One invocation covers at most 4 * 65,535 elements on llvmpipe.
const SERIAL_LIMIT: usize = 4 * 65_535;

fn check_serial(serial: bool, x: &Rows<'_>) -> Result<()> {
    if serial && x.len > SERIAL_LIMIT {
        return Err(KernelError::launch(
            "reduce.wgsl:serial",
            format!(
                "rows of {} elements are too long for one invocation (at most {SERIAL_LIMIT}); \
                 use ReduceStrategy::Workgroup or Auto",
                x.len
            ),
        ));
    }
    Ok(())
}

fn params(x: &Rows<'_>, out_offset: usize, scale: f32) -> Result<RowsParams> {
    if x.len > MAX_LEN {
        return Err(KernelError::launch(
            "reduce.wgsl",
            format!(
                "rows of {} elements exceed the {MAX_LEN}-element limit of one pass; reduce in \
                 two steps (e.g. reshape to (k, len / k) and sum twice)",
                x.len
            ),
        ));
    }
    if x.len == 0 {
        return Err(KernelError::launch(
            "reduce.wgsl",
            "cannot reduce an empty row",
        ));
    }
    Ok(RowsParams::new(x, out_offset, scale))
}

fn grid(serial: bool, rows: usize) -> [u32; 3] {
    if serial {
        grid_1d(rows, 256)
    } else {
        // One workgroup per row.
        grid_1d(rows, 1)
    }
}

/// Record one `reduce.wgsl` entry over the rows of `x` with `OP` = `code`: `entries` are the
/// one-invocation-per-row and the workgroup-per-row entry, picked by `strategy`; the output is
/// written from element `out.1` of `out.0`. Nothing is recorded for no rows.
fn record(
    gpu: &Gpu,
    strategy: ReduceStrategy,
    x: Rows<'_>,
    (serial_entry, wg_entry): (&'static str, &'static str),
    code: u32,
    (out, out_offset): (&GpuBuffer, usize),
    scale: f32,
) -> Result<()> {
    if x.rows == 0 {
        return Ok(());
    }
    let serial = pick(strategy, x.rows, x.len);
    check_serial(serial, &x)?;
    let entry = if serial { serial_entry } else { wg_entry };
    let key = KernelKey::new("reduce.wgsl", entry).with("OP", code);
    let p = params(&x, out_offset, scale)?;
    gpu.dispatch(&key, &p, &[x.buf, out], grid(serial, x.rows));
    Ok(())
}

/// `out[out_offset + r] = scale * sum_j x[r, j]` (or max / min), as f32.
pub fn reduce_rows(
    gpu: &Gpu,
    op: ReduceOp,
    strategy: ReduceStrategy,
    x: Rows<'_>,
    out: &GpuBuffer,
    out_offset: usize,
    scale: f32,
) -> Result<()> {
    let code = match op {
        ReduceOp::Sum => 0u32,
        ReduceOp::Max => 1,
        ReduceOp::Min => 2,
    };
    let entries = ("rows_serial", "rows_wg");
    record(gpu, strategy, x, entries, code, (out, out_offset), scale)
}

/// `idx[out_offset + r] = argmax_j x[r, j]` (or argmin with `max = false`), as u32; ties give
/// the first index.
pub fn arg_rows(
    gpu: &Gpu,
    max: bool,
    strategy: ReduceStrategy,
    x: Rows<'_>,
    idx: &GpuBuffer,
    out_offset: usize,
) -> Result<()> {
    let code = if max { 1u32 } else { 2 };
    record(
        gpu,
        strategy,
        x,
        ("arg_serial", "arg_wg"),
        code,
        (idx, out_offset),
        1.0,
    )
}
