//! Launchers for the matmul family: `C[z] = A[z] @ B[z]` for `z` in `0..batch`.
//!
//! One kernel per rung of the ladder, each in its own file under `shaders/matmul/` and selected by
//! [`MatmulVariant`]: naive (one invocation per output), tiled (workgroup-memory tiles), regblock
//! (a 4 x 4 block of outputs per invocation in registers, no barriers) and vec4 (a 16 x 16 block
//! from 16-byte loads along whichever dim of each operand is contiguous), then the rungs that
//! need optional features: subgroup (A shared across a subgroup by `subgroupShuffle`), f16 (f16
//! operands, f32 accumulation) and coop (16 x 16 cooperative matrices, f16 in, f32 accumulate).
//! Each rung also has tile configurations ([`MatmulConfig`]: workgroup shape, and rows per
//! invocation for vec4) set through WGSL override constants, the search space of the autotuner
//! in [`crate::tune`]. All rungs take
//! the same [`MatmulParams`] (`shaders/common/matmul.wgsl`) and the same strided operands
//! ([`MatRef`]): a transposed operand is swapped row/column strides and a broadcast batch is batch
//! stride 0, so neither needs a copy. Uneven sizes are handled by edge checks in the kernels.
//!
//! Grids larger than WebGPU's 65,535 workgroups per dimension are split into several dispatches
//! (each gets its own offsets), and so is K beyond [`K_CHUNK`] (later chunks add into C), so the
//! only size limit is the u32 element index.
//!
//! The module's files: this one holds the params, the rungs' fixed sizes and the launchers;
//! `rungs.rs` the ladder ([`MatmulVariant`]) and its tile configurations ([`MatmulConfig`]);
//! `layout.rs` the problem size and the strided operands ([`MatmulDims`], [`MatLayout`],
//! [`MatRef`], [`vec4_modes`]).
//!
//! See also:
//! - shaders: `shaders/matmul/` (helpers in `shaders/common/matmul.wgsl`)
//! - CPU twin: [`crate::reference::matmul`]
//! - ops: `src/ops/matmul.rs`, `src/ops/linear.rs`; tuner: [`crate::tune::matmul_choice`]
//! - tests: `kernels/tests/kernels/matmul/` (every rung vs twin), `tests/ops/matmul.rs` (op);
//!   benchmark: `kernels/benches/matmul.rs`

mod layout;
mod rungs;
#[cfg(test)]
mod tests;

pub use layout::{MatLayout, MatRef, MatmulDims, vec4_modes};
pub use rungs::{MatmulConfig, MatmulVariant};

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of every matmul rung (WGSL `MatmulParams` in `common/matmul.wgsl`).
    pub struct MatmulParams in "common/matmul.wgsl" as "MatmulParams" {
        /// Matrices in this dispatch (grid z).
        pub batch: u32,
        /// Rows of A and C.
        pub m: u32,
        /// Columns of B and C.
        pub n: u32,
        /// Columns of A = rows of B.
        pub k: u32,
        /// Element offset of A[0, 0, 0].
        pub a_off: u32,
        /// Elements between `A[z]` and `A[z + 1]` (0 = broadcast).
        pub a_batch: u32,
        /// Elements between rows of A.
        pub a_row: u32,
        /// Elements between columns of A.
        pub a_col: u32,
        /// Element offset of B[0, 0, 0].
        pub b_off: u32,
        /// Elements between `B[z]` and `B[z + 1]` (0 = broadcast).
        pub b_batch: u32,
        /// Elements between rows of B.
        pub b_row: u32,
        /// Elements between columns of B.
        pub b_col: u32,
        /// Element offset of C[0, 0, 0].
        pub c_off: u32,
        /// Elements between `C[z]` and `C[z + 1]`.
        pub c_batch: u32,
        /// Elements between rows of C (columns are adjacent).
        pub c_row: u32,
        /// 0: `C = A @ B`; 1: `C += A @ B` (chunks of K after the first).
        pub accumulate: u32,
    }
}

/// Workgroup size of the naive rung (x along N, y along M).
pub const NAIVE_WG: (u32, u32) = (16, 16);
/// Tile edge of the tiled rung: workgroups and tiles are `TILE x TILE`.
pub const TILE: u32 = 16;
/// Workgroup size of the regblock rung (x along N, y along M).
pub const REGBLOCK_WG: (u32, u32) = (16, 16);
/// Outputs per regblock invocation, (rows, columns): the WGSL consts `BM`, `BN` (register
/// arrays cannot be sized by an override; a unit test checks the two agree). The subgroup and
/// f16 rungs use the same 4 x 4 block.
pub const REGBLOCK_BLOCK: (u32, u32) = (4, 4);

/// Workgroup size of the vec4 rung (x along N, y along M).
pub const VEC4_WG: (u32, u32) = (8, 4);
/// Outputs per vec4 invocation, (rows, columns): the WGSL override `BM` (default) and const `BN`.
pub const VEC4_BLOCK: (u32, u32) = (16, 16);

/// Invocations per workgroup of the subgroup rung (all along N; a multiple of the subgroup size).
pub const SUBGROUP_WG: u32 = 64;
/// Tile edge of the cooperative-matrix rung (`coop_mat16x16`).
pub const COOP_TILE: u32 = 16;

/// Check that a `(batch, rows, cols)` view lies inside `buf` and within the u32 index range.
fn check_extent(
    key: &KernelKey,
    what: &str,
    layout: MatLayout,
    buf: &GpuBuffer,
    elem_bytes: u64,
    (batch, rows, cols): (usize, usize, usize),
) -> Result<()> {
    let elems = (buf.capacity() / elem_bytes) as usize;
    match layout.last_index(batch, rows, cols) {
        Some(last) if last < elems && last <= u32::MAX as usize => Ok(()),
        last => Err(KernelError::launch(
            key,
            format!(
                "{what} ({batch}, {rows}, {cols}) with {layout:?} reaches element {} but the \
                 buffer holds {elems} and kernels index with u32",
                last.map_or("(overflow)".to_string(), |l| l.to_string())
            ),
        )),
    }
}

/// Most workgroups per grid dimension (WebGPU's limit).
const MAX_GROUPS: usize = 65_535;

/// Longest run of K one dispatch covers; longer products are split into chunks that add into C.
///
/// Mesa's llvmpipe (lavapipe) ends an invocation's loops after 65,535 iterations in total, and
/// the naive and regblock rungs take one iteration per k. A multiple of 16 keeps every chunk
/// start on the vec4 rung's 16-byte alignment.
pub const K_CHUNK: usize = 16_384;

/// `out[out_offset + z*M*N + i*N + j] = sum_p A[z, i, p] * B[z, p, j]` with the chosen rung.
///
/// - `a`: (batch, M, K), any strides (batch stride 0 broadcasts one matrix);
/// - `b`: (batch, K, N), any strides;
/// - `out`: (batch, M, N) f32, written contiguous (row-major) from element `out_offset`.
///
/// A and B are f32 buffers, or f16 buffers for the rungs with [`MatmulVariant::f16_operands`].
/// Every dim must be at least 1 (callers handle empty products and K = 0 themselves), every
/// element index must fit in u32 and inside its buffer, and the rung must be available on `gpu`
/// ([`MatmulVariant::available`]); otherwise this returns [`KernelError::Launch`] and records
/// nothing.
///
/// `cfg` is a tile configuration (what the autotuner picks) or a rung alone, which runs with
/// its default configuration ([`MatmulConfig::default_for`]).
pub fn matmul(
    gpu: &Gpu,
    cfg: impl Into<MatmulConfig>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
) -> Result<()> {
    let cfg = cfg.into();
    matmul_with(gpu, cfg, a, b, None, out, out_offset, dims, MAX_GROUPS)
}

/// [`matmul`] with a bias row added to every row of the product:
/// `out[z, i, j] = bias[j] + sum_p A[z, i, p] * B[z, p, j]`, in the store of the vec4 rung
/// (its `BIAS` constant), so `nn::Linear` costs one dispatch.
///
/// - `bias`: (N) f32 from element 0;
/// - `cfg` must be a vec4 configuration and `out_offset` a multiple of N (the kernel finds a
///   chunk's first column as `c_off % N`); otherwise this returns [`KernelError::Launch`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_bias(
    gpu: &Gpu,
    cfg: MatmulConfig,
    a: MatRef<'_>,
    b: MatRef<'_>,
    bias: &GpuBuffer,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
) -> Result<()> {
    matmul_with(
        gpu,
        cfg,
        a,
        b,
        Some(bias),
        out,
        out_offset,
        dims,
        MAX_GROUPS,
    )
}

/// Every matmul launch ([`matmul`], [`matmul_bias`]): checks, then one
/// dispatch per chunk of the grid and of K. `max_groups` (clamped to `1..=65_535`) limits the
/// workgroups per grid dimension, so tests can exercise the grid split (and the bias chunks that
/// start past column 0) at small sizes.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    gpu: &Gpu,
    mut cfg: MatmulConfig,
    a: MatRef<'_>,
    b: MatRef<'_>,
    bias: Option<&GpuBuffer>,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
    max_groups: usize,
) -> Result<()> {
    let max_groups = max_groups.clamp(1, MAX_GROUPS);
    let variant = cfg.variant;
    if variant == MatmulVariant::Coop {
        // A cooperative matrix belongs to a whole subgroup: the workgroup is one subgroup.
        cfg.wg = (gpu.info().subgroup_max_size.clamp(1, 256), 1);
    }
    let mut key = cfg.key();
    if variant == MatmulVariant::Vec4 {
        let (am, bm) = vec4_modes(a.layout(), b.layout(), dims);
        key = key.with("A_MODE", am).with("B_MODE", bm);
        if bias.is_some() {
            key = key.with("BIAS", 1);
        }
    }
    if let Some(bias) = bias {
        let why = if variant != MatmulVariant::Vec4 {
            Some(format!(
                "a fused bias needs the vec4 rung, got {}",
                cfg.label()
            ))
        } else if !out_offset.is_multiple_of(dims.n.max(1)) {
            Some(format!(
                "a fused bias needs C's offset {out_offset} to be a multiple of N = {}",
                dims.n
            ))
        } else if bias.capacity() < 4 * dims.n as u64 {
            Some(format!(
                "bias buffer of {} bytes holds fewer than N = {} f32",
                bias.capacity(),
                dims.n
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(KernelError::launch(&key, why));
        }
    }
    if let Err(why) = cfg.check().and_then(|()| variant.available(gpu)) {
        return Err(KernelError::launch(&key, why));
    }
    if variant == MatmulVariant::Subgroup
        && !cfg.wg.0.is_multiple_of(gpu.info().subgroup_max_size.max(1))
    {
        return Err(KernelError::launch(
            &key,
            format!(
                "workgroups of {} are not a multiple of the subgroup size (up to {})",
                cfg.wg.0,
                gpu.info().subgroup_max_size
            ),
        ));
    }
    let MatmulDims { batch, m, n, k } = dims;
    if batch == 0 || m == 0 || n == 0 || k == 0 {
        return Err(KernelError::launch(
            &key,
            format!("every dim must be at least 1, got {dims:?}"),
        ));
    }
    let ab_bytes = if variant.f16_operands() { 2 } else { 4 };
    let c_layout = MatLayout::contiguous(m, n).at(out_offset);
    check_extent(&key, "A", a.layout(), a.buf, ab_bytes, (batch, m, k))?;
    check_extent(&key, "B", b.layout(), b.buf, ab_bytes, (batch, k, n))?;
    check_extent(&key, "C", c_layout, out, 4, (batch, m, n))?;

    // Split the grid so that no dimension exceeds max_groups workgroups.
    let (tile_rows, tile_cols) = cfg.workgroup_tile();
    let (rows_per, cols_per) = (max_groups * tile_rows, max_groups * tile_cols);
    for p0 in (0..k).step_by(K_CHUNK) {
        let kc = (k - p0).min(K_CHUNK);
        for z0 in (0..batch).step_by(max_groups) {
            let zc = (batch - z0).min(max_groups);
            for i0 in (0..m).step_by(rows_per) {
                let ic = (m - i0).min(rows_per);
                for j0 in (0..n).step_by(cols_per) {
                    let jc = (n - j0).min(cols_per);
                    // All offsets below are bounded by the extents checked above, so they fit
                    // u32. Chunks of K, rows and columns start at multiples of 4, so they keep
                    // the vec4 rung's 16-byte alignment; batch chunks move by whole batch
                    // strides, which vec4 modes require to be multiples of 4.
                    let p = MatmulParams {
                        batch: zc as u32,
                        m: ic as u32,
                        n: jc as u32,
                        k: kc as u32,
                        a_off: a.layout().index(z0, i0, p0) as u32,
                        a_batch: a.batch_stride as u32,
                        a_row: a.row_stride as u32,
                        a_col: a.col_stride as u32,
                        b_off: b.layout().index(z0, p0, j0) as u32,
                        b_batch: b.batch_stride as u32,
                        b_row: b.row_stride as u32,
                        b_col: b.col_stride as u32,
                        c_off: (out_offset + z0 * m * n + i0 * n + j0) as u32,
                        c_batch: (m * n) as u32,
                        c_row: n as u32,
                        accumulate: u32::from(p0 > 0),
                    };
                    let groups = [
                        jc.div_ceil(tile_cols) as u32,
                        ic.div_ceil(tile_rows) as u32,
                        zc as u32,
                    ];
                    if variant == MatmulVariant::Vec4 {
                        // Bindings 4 and 5 are A and B again, seen as f32 for element loads;
                        // binding 6 is the bias (A again when there is none: it is not read).
                        let bias = bias.unwrap_or(a.buf);
                        gpu.dispatch(&key, &p, &[a.buf, b.buf, out, a.buf, b.buf, bias], groups);
                    } else {
                        gpu.dispatch(&key, &p, &[a.buf, b.buf, out], groups);
                    }
                }
            }
        }
    }
    Ok(())
}
