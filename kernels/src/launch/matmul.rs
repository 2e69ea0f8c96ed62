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

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::{ParamsLayout, layout_of};
use crate::pipeline::KernelKey;
use crate::pool::GpuBuffer;

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

/// Params layouts of this family, for the layout test.
pub fn params_layouts() -> Vec<ParamsLayout> {
    vec![layout_of::<MatmulParams>()]
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

/// Which rung of the matmul ladder runs. All give the same result up to summation order (and, for
/// the f16 rungs, the rounding of the operands to f16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatmulVariant {
    /// `matmul/naive.wgsl`: one invocation per output, dot product from global memory.
    Naive,
    /// `matmul/tiled.wgsl`: `TILE x TILE` tiles of A and B staged in workgroup memory.
    Tiled,
    /// `matmul/regblock.wgsl`: a 4 x 4 output block per invocation in registers, barrier-free.
    RegBlock,
    /// `matmul/vec4.wgsl`: a 16 x 16 output block per invocation as mat4x4 accumulators, operands
    /// read as vec4 along a contiguous, 16-byte aligned dim (element by element otherwise).
    ///
    /// The default: fastest measured on lavapipe (llvmpipe, 2 cores) at 128..1024 and batched;
    /// see `benches/kernels.rs` for the numbers behind the choice.
    #[default]
    Vec4,
    /// `matmul/subgroup.wgsl`: a 4 x 4 block per invocation with the A values shared across the
    /// subgroup by `subgroupShuffle` instead of loaded per invocation. Needs `SUBGROUP`.
    Subgroup,
    /// `matmul/f16.wgsl`: f16 operands (f16 buffers), f32 accumulation and f32 output, 4 x 4
    /// register blocks. Needs `SHADER_F16`.
    F16,
    /// `matmul/coop.wgsl`: f16 operands through 16 x 16 cooperative matrices with an f32
    /// accumulator, f32 output. Needs `SHADER_F16` and wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX`
    /// with the 16x16x16 f16 -> f32 shape ([`Gpu::has_coop_matrix_f16`]).
    Coop,
}

impl MatmulVariant {
    /// The rungs every adapter runs, f32 operands, in ladder order.
    pub const ALL: [MatmulVariant; 4] = [Self::Naive, Self::Tiled, Self::RegBlock, Self::Vec4];

    /// Every rung, in ladder order, including those that need optional features.
    pub const LADDER: [MatmulVariant; 7] = [
        Self::Naive,
        Self::Tiled,
        Self::RegBlock,
        Self::Vec4,
        Self::Subgroup,
        Self::F16,
        Self::Coop,
    ];

    /// Short name, as used in benchmark ids and the tuning cache.
    pub fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Tiled => "tiled",
            Self::RegBlock => "regblock",
            Self::Vec4 => "vec4",
            Self::Subgroup => "subgroup",
            Self::F16 => "f16",
            Self::Coop => "coop",
        }
    }

    /// The rung called `name` (see [`MatmulVariant::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::LADDER.into_iter().find(|v| v.name() == name)
    }

    /// True when A and B are f16 buffers (the f16 and coop rungs); the others read f32.
    pub fn f16_operands(self) -> bool {
        matches!(self, Self::F16 | Self::Coop)
    }

    /// `Ok` when `gpu` can run this rung, else the reason it cannot.
    pub fn available(self, gpu: &Gpu) -> std::result::Result<(), String> {
        let adapter = &gpu.info().name;
        match self {
            Self::Subgroup if !gpu.has_subgroups() => {
                Err(format!("{adapter} lacks the SUBGROUP feature"))
            }
            Self::Subgroup if gpu.info().subgroup_max_size > SUBGROUP_WG => Err(format!(
                "{adapter} has subgroups of up to {} invocations, more than the rung's \
                 workgroups of {SUBGROUP_WG}",
                gpu.info().subgroup_max_size
            )),
            Self::F16 if !gpu.has_f16() => Err(format!("{adapter} lacks the SHADER_F16 feature")),
            Self::Coop if !gpu.has_coop_matrix_f16() => Err(format!(
                "{adapter} does not report EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 \
                 operands and f32 accumulators"
            )),
            _ => Ok(()),
        }
    }

    /// The kernel key of the rung's default tile configuration, with every specialisation
    /// constant except the vec4 rung's operand modes (see [`vec4_modes`]).
    pub fn key(self) -> KernelKey {
        MatmulConfig::default_for(self).key()
    }

    /// Outputs covered by one workgroup of the default configuration, (rows, columns).
    pub fn workgroup_tile(self) -> (usize, usize) {
        MatmulConfig::default_for(self).workgroup_tile()
    }
}

/// One rung with one tile configuration: the unit the autotuner ([`crate::tune`]) chooses.
///
/// Written as `variant:WGXxWGY` plus `:bmR` for vec4's rows per invocation, e.g. `vec4:8x4:bm16`
/// (see [`MatmulConfig::label`] and [`MatmulConfig::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// The rung.
    pub variant: MatmulVariant,
    /// Workgroup size (x along N, y along M). Tiled: x = y = `TILE`; subgroup: y = 1 and x a
    /// multiple of the subgroup size; coop: x = the subgroup size (set by the launcher), y = 1.
    pub wg: (u32, u32),
    /// Rows of C per invocation: 16, 8 or 4 for vec4 (its `BM` override); fixed by the shader
    /// for the other rungs (1 for naive and tiled, 4 for regblock, subgroup, f16; 16 for coop).
    pub rows: u32,
}

impl MatmulConfig {
    /// The configuration the rung runs with when nothing was tuned.
    pub fn default_for(variant: MatmulVariant) -> Self {
        let (wg, rows) = match variant {
            MatmulVariant::Naive => (NAIVE_WG, 1),
            MatmulVariant::Tiled => ((TILE, TILE), 1),
            MatmulVariant::RegBlock => (REGBLOCK_WG, REGBLOCK_BLOCK.0),
            MatmulVariant::Vec4 => (VEC4_WG, VEC4_BLOCK.0),
            MatmulVariant::Subgroup => ((SUBGROUP_WG, 1), REGBLOCK_BLOCK.0),
            MatmulVariant::F16 => (REGBLOCK_WG, REGBLOCK_BLOCK.0),
            MatmulVariant::Coop => ((32, 1), COOP_TILE),
        };
        MatmulConfig { variant, wg, rows }
    }

    /// The tile configurations the autotuner tries for `variant` (the default first).
    pub fn candidates(variant: MatmulVariant) -> Vec<Self> {
        let d = Self::default_for(variant);
        let with = |wg: (u32, u32), rows: u32| MatmulConfig { variant, wg, rows };
        let mut v = vec![d];
        match variant {
            MatmulVariant::Naive => v.push(with((8, 8), 1)),
            MatmulVariant::Tiled => v.push(with((8, 8), 1)),
            MatmulVariant::RegBlock | MatmulVariant::F16 => {
                v.extend([with((8, 8), 4), with((32, 4), 4), with((8, 32), 4)])
            }
            MatmulVariant::Vec4 => v.extend([
                with((4, 4), 16),
                with((8, 8), 16),
                with((16, 2), 16),
                with((8, 4), 8),
                with((8, 8), 8),
                with((16, 4), 4),
            ]),
            MatmulVariant::Subgroup => v.extend([with((32, 1), 4), with((128, 1), 4)]),
            MatmulVariant::Coop => {}
        }
        v
    }

    /// Short text form, e.g. `vec4:8x4:bm16` or `regblock:16x16`.
    pub fn label(&self) -> String {
        let base = format!("{}:{}x{}", self.variant.name(), self.wg.0, self.wg.1);
        if self.variant == MatmulVariant::Vec4 {
            format!("{base}:bm{}", self.rows)
        } else {
            base
        }
    }

    /// Read a [`MatmulConfig::label`] back (`None` if it is not one this build knows).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let variant = MatmulVariant::from_name(parts.next()?)?;
        let (x, y) = parts.next()?.split_once('x')?;
        let wg = (x.parse().ok()?, y.parse().ok()?);
        let mut c = MatmulConfig {
            wg,
            ..Self::default_for(variant)
        };
        if let Some(r) = parts.next() {
            c.rows = r.strip_prefix("bm")?.parse().ok()?;
        }
        (parts.next().is_none() && c.check().is_ok()).then_some(c)
    }

    /// `Err` with the reason when the configuration is not one the shaders support.
    pub fn check(&self) -> std::result::Result<(), String> {
        let d = Self::default_for(self.variant);
        let (x, y) = self.wg;
        let ok = x >= 1
            && y >= 1
            && x * y <= 256
            && match self.variant {
                MatmulVariant::Tiled => x == y && x <= 16,
                MatmulVariant::Vec4 => matches!(self.rows, 4 | 8 | 16),
                MatmulVariant::Subgroup | MatmulVariant::Coop => y == 1 && self.rows == d.rows,
                _ => self.rows == d.rows,
            };
        if ok {
            Ok(())
        } else {
            Err(format!("unsupported matmul configuration {}", self.label()))
        }
    }

    /// The kernel key, with every specialisation constant except the vec4 operand modes.
    pub fn key(&self) -> KernelKey {
        let (x, y) = self.wg;
        match self.variant {
            MatmulVariant::Naive => KernelKey::new("matmul/naive.wgsl", "main")
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Tiled => KernelKey::new("matmul/tiled.wgsl", "main").with("TILE", x),
            MatmulVariant::RegBlock => KernelKey::new("matmul/regblock.wgsl", "main")
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Vec4 => {
                let k = KernelKey::new("matmul/vec4.wgsl", "main")
                    .with("WG_X", x)
                    .with("WG_Y", y);
                if self.rows == VEC4_BLOCK.0 {
                    k
                } else {
                    k.with("BM", self.rows)
                }
            }
            MatmulVariant::Subgroup => KernelKey::new("matmul/subgroup.wgsl", "main").with("WG", x),
            MatmulVariant::F16 => KernelKey::new("matmul/f16.wgsl", "main")
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Coop => KernelKey::new("matmul/coop.wgsl", "main").with("WG", x),
        }
    }

    /// Outputs covered by one workgroup, (rows, columns).
    pub fn workgroup_tile(&self) -> (usize, usize) {
        let (x, y) = self.wg;
        let (r, c) = match self.variant {
            MatmulVariant::Naive | MatmulVariant::Tiled => (y, x),
            MatmulVariant::RegBlock | MatmulVariant::F16 => {
                (y * REGBLOCK_BLOCK.0, x * REGBLOCK_BLOCK.1)
            }
            MatmulVariant::Vec4 => (y * self.rows, x * VEC4_BLOCK.1),
            MatmulVariant::Subgroup => (REGBLOCK_BLOCK.0, x * REGBLOCK_BLOCK.1),
            MatmulVariant::Coop => (COOP_TILE, COOP_TILE),
        };
        (r as usize, c as usize)
    }
}

/// Problem size: `batch` products of (M, K) @ (K, N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulDims {
    /// Number of products.
    pub batch: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A = rows of B.
    pub k: usize,
}

impl MatmulDims {
    /// Floating-point operations of the product (a multiply and an add per term).
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.m * self.n * self.k) as u64
    }
}

/// Where a batch of matrices sits in a buffer, in elements.
///
/// Element `[z, r, c]` is at `offset + z * batch_stride + r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatLayout {
    /// Element offset of `[0, 0, 0]`.
    pub offset: usize,
    /// Elements between consecutive matrices (0 = one matrix broadcast over the batch).
    pub batch_stride: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl MatLayout {
    /// Row-major `(batch, rows, cols)` at offset 0.
    pub fn contiguous(rows: usize, cols: usize) -> Self {
        MatLayout {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The `(rows, cols)` transpose of a row-major `(batch, cols, rows)` array: swapped strides.
    pub fn transposed(rows: usize, cols: usize) -> Self {
        MatLayout {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// The same layout with batch stride 0 (one matrix repeated over the batch).
    pub fn broadcast(self) -> Self {
        MatLayout {
            batch_stride: 0,
            ..self
        }
    }

    /// The same layout starting `offset` elements in.
    pub fn at(self, offset: usize) -> Self {
        MatLayout { offset, ..self }
    }

    /// Index of the last element of a `(batch, rows, cols)` view (`None` on overflow).
    pub fn last_index(&self, batch: usize, rows: usize, cols: usize) -> Option<usize> {
        let span = |n: usize, s: usize| (n.saturating_sub(1)).checked_mul(s);
        self.offset
            .checked_add(span(batch, self.batch_stride)?)?
            .checked_add(span(rows, self.row_stride)?)?
            .checked_add(span(cols, self.col_stride)?)
    }
}

/// A strided batch of matrices in a GPU buffer: A (batch, M, K) or B (batch, K, N).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The buffer (f32 elements).
    pub buf: &'a GpuBuffer,
    /// Element offset of `[0, 0, 0]`.
    pub offset: usize,
    /// Elements between consecutive matrices (0 = broadcast).
    pub batch_stride: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `buf` seen through `layout`.
    pub fn new(buf: &'a GpuBuffer, layout: MatLayout) -> Self {
        MatRef {
            buf,
            offset: layout.offset,
            batch_stride: layout.batch_stride,
            row_stride: layout.row_stride,
            col_stride: layout.col_stride,
        }
    }

    /// The layout without the buffer.
    pub fn layout(&self) -> MatLayout {
        MatLayout {
            offset: self.offset,
            batch_stride: self.batch_stride,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

fn launch_err(kernel: &KernelKey, message: String) -> KernelError {
    KernelError::Launch {
        kernel: kernel.label(),
        message,
    }
}

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
        last => Err(launch_err(
            key,
            format!(
                "{what} ({batch}, {rows}, {cols}) with {layout:?} reaches element {} but the \
                 buffer holds {elems} and kernels index with u32",
                last.map_or("(overflow)".to_string(), |l| l.to_string())
            ),
        )),
    }
}

/// How the vec4 rung reads each operand (its `A_MODE`, `B_MODE` constants).
///
/// A: 1 = vec4 along K (unit column stride), 2 = vec4 along M (unit row stride); B: 1 = vec4 along
/// N (unit column stride), 2 = vec4 along K (unit row stride); 0 = element by element. A vec4
/// mode also needs the offset and the operand's other strides to be multiples of 4 (16 bytes),
/// except strides of dims of size 1, which never move the address.
pub fn vec4_modes(a: MatLayout, b: MatLayout, dims: MatmulDims) -> (u32, u32) {
    let MatmulDims { batch, m, n, k } = dims;
    let ok = |stride: usize, size: usize| size == 1 || stride.is_multiple_of(4);
    let mode = |l: MatLayout, rows: usize, cols: usize| {
        if !l.offset.is_multiple_of(4) || !ok(l.batch_stride, batch) {
            0
        } else if l.col_stride == 1 && ok(l.row_stride, rows) {
            1
        } else if l.row_stride == 1 && ok(l.col_stride, cols) {
            2
        } else {
            0
        }
    };
    (mode(a, m, k), mode(b, k, n))
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
pub fn matmul(
    gpu: &Gpu,
    variant: MatmulVariant,
    a: MatRef<'_>,
    b: MatRef<'_>,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
) -> Result<()> {
    let cfg = MatmulConfig::default_for(variant);
    matmul_config_with_grid_limit(gpu, cfg, a, b, out, out_offset, dims, MAX_GROUPS)
}

/// [`matmul`] with an explicit tile configuration (what the autotuner picks).
pub fn matmul_config(
    gpu: &Gpu,
    cfg: MatmulConfig,
    a: MatRef<'_>,
    b: MatRef<'_>,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
) -> Result<()> {
    matmul_config_with_grid_limit(gpu, cfg, a, b, out, out_offset, dims, MAX_GROUPS)
}

/// [`matmul`] with a smaller limit on workgroups per grid dimension, so tests can exercise the
/// grid split at small sizes. `max_groups` must be in `1..=65_535`.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn matmul_with_grid_limit(
    gpu: &Gpu,
    variant: MatmulVariant,
    a: MatRef<'_>,
    b: MatRef<'_>,
    out: &GpuBuffer,
    out_offset: usize,
    dims: MatmulDims,
    max_groups: usize,
) -> Result<()> {
    let cfg = MatmulConfig::default_for(variant);
    matmul_config_with_grid_limit(gpu, cfg, a, b, out, out_offset, dims, max_groups)
}

/// [`matmul_config`] with a limit on workgroups per grid dimension (see
/// [`matmul_with_grid_limit`]).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn matmul_config_with_grid_limit(
    gpu: &Gpu,
    mut cfg: MatmulConfig,
    a: MatRef<'_>,
    b: MatRef<'_>,
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
    }
    if let Err(why) = cfg.check().and_then(|()| variant.available(gpu)) {
        return Err(launch_err(&key, why));
    }
    if variant == MatmulVariant::Subgroup
        && !cfg.wg.0.is_multiple_of(gpu.info().subgroup_max_size.max(1))
    {
        return Err(launch_err(
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
        return Err(launch_err(
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
                        a_off: (a.offset
                            + z0 * a.batch_stride
                            + i0 * a.row_stride
                            + p0 * a.col_stride) as u32,
                        a_batch: a.batch_stride as u32,
                        a_row: a.row_stride as u32,
                        a_col: a.col_stride as u32,
                        b_off: (b.offset
                            + z0 * b.batch_stride
                            + p0 * b.row_stride
                            + j0 * b.col_stride) as u32,
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
                        // Bindings 4 and 5 are A and B again, seen as f32 for element loads.
                        gpu.dispatch(&key, &p, &[a.buf, b.buf, out, a.buf, b.buf], groups);
                    } else {
                        gpu.dispatch(&key, &p, &[a.buf, b.buf, out], groups);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a `const NAME: u32 = v;` in a shader, as naga reads it.
    fn wgsl_const(shader: &str, name: &str) -> u32 {
        let src = crate::shaders::expand(shader);
        let module = naga::front::wgsl::parse_str(&src).expect("shader parses");
        let (_, c) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{shader} has no const {name}"));
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref e => panic!("{shader}: const {name} is not a u32 literal: {e:?}"),
        }
    }

    /// Parse and validate `shader` with naga under `caps`, panicking with naga's report.
    fn validate(shader: &str, caps: naga::valid::Capabilities) {
        let src = crate::shaders::expand(shader);
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{shader}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::all())
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{shader}: {}", e.emit_to_string(&src)));
    }

    #[test]
    fn feature_rungs_validate_with_their_capabilities() {
        use naga::valid::Capabilities as C;
        validate("matmul/subgroup.wgsl", C::SUBGROUP);
        validate("matmul/f16.wgsl", C::SHADER_FLOAT16);
        validate(
            "matmul/coop.wgsl",
            C::SHADER_FLOAT16 | C::COOPERATIVE_MATRIX | C::SUBGROUP,
        );
    }

    #[test]
    fn register_blocks_match_shaders() {
        let block = |f: &str| (wgsl_const(f, "BM"), wgsl_const(f, "BN"));
        assert_eq!(block("matmul/regblock.wgsl"), REGBLOCK_BLOCK);
        assert_eq!(block("matmul/f16.wgsl"), REGBLOCK_BLOCK);
        assert_eq!(block("matmul/subgroup.wgsl"), REGBLOCK_BLOCK);
        // vec4's BM is an override (a tile choice); BN stays a const.
        assert_eq!(wgsl_const("matmul/vec4.wgsl", "BN"), VEC4_BLOCK.1);
    }

    #[test]
    fn configs_round_trip_and_check() {
        for v in MatmulVariant::LADDER {
            assert_eq!(MatmulVariant::from_name(v.name()), Some(v));
            for c in MatmulConfig::candidates(v) {
                assert_eq!(c.check(), Ok(()), "{}", c.label());
                assert_eq!(MatmulConfig::parse(&c.label()), Some(c), "{}", c.label());
            }
        }
        assert_eq!(
            MatmulConfig::parse("vec4:8x4:bm16"),
            Some(MatmulConfig::default_for(MatmulVariant::Vec4))
        );
        assert_eq!(MatmulConfig::parse("vec4:8x4:bm3"), None);
        assert_eq!(MatmulConfig::parse("tiled:8x16"), None);
        assert_eq!(MatmulConfig::parse("warp:8x8"), None);
        assert_eq!(MatmulConfig::parse("naive:64x64"), None);
        let v8 = MatmulConfig {
            rows: 8,
            ..MatmulConfig::default_for(MatmulVariant::Vec4)
        };
        assert_eq!(v8.workgroup_tile(), (32, 128));
        assert_eq!(MatmulVariant::Subgroup.workgroup_tile(), (4, 256));
    }

    #[test]
    fn vec4_modes_follow_strides_and_alignment() {
        let d = MatmulDims {
            batch: 2,
            m: 8,
            n: 12,
            k: 16,
        };
        let (a, b) = (MatLayout::contiguous(8, 16), MatLayout::contiguous(16, 12));
        assert_eq!(vec4_modes(a, b, d), (1, 1));
        let (at, bt) = (MatLayout::transposed(8, 16), MatLayout::transposed(16, 12));
        assert_eq!(vec4_modes(at, bt, d), (2, 2));
        // Misaligned offset, odd row stride, non-unit strides everywhere.
        assert_eq!(vec4_modes(a.at(1), b, d), (0, 1));
        let odd = MatLayout {
            row_stride: 17,
            ..a
        };
        assert_eq!(vec4_modes(odd, b.broadcast(), d).0, 0);
        let strided = MatLayout {
            col_stride: 2,
            row_stride: 32,
            ..a
        };
        assert_eq!(vec4_modes(strided, b, d).0, 0);
        // A single row may have any row stride (it is never stepped).
        let row = MatLayout { row_stride: 3, ..a };
        let d1 = MatmulDims { m: 1, ..d };
        assert_eq!(vec4_modes(row, b, d1).0, 1);
        assert_eq!(vec4_modes(row, b, d).0, 0);
    }

    #[test]
    fn layouts_and_extents() {
        let t = MatLayout::transposed(3, 5);
        assert_eq!((t.row_stride, t.col_stride, t.batch_stride), (1, 3, 15));
        assert_eq!(t.last_index(2, 3, 5), Some(15 + 2 + 12));
        let c = MatLayout::contiguous(3, 5).broadcast().at(7);
        assert_eq!(c.last_index(4, 3, 5), Some(7 + 10 + 4));
        assert_eq!(MatLayout::contiguous(1, 1).last_index(1, 1, 1), Some(0));
        let huge = MatLayout::contiguous(4, 4).at(usize::MAX - 5);
        assert_eq!(huge.last_index(3, 2, 4), None);
    }

    #[test]
    fn workgroup_tiles() {
        assert_eq!(MatmulVariant::Naive.workgroup_tile(), (16, 16));
        assert_eq!(MatmulVariant::Tiled.workgroup_tile(), (16, 16));
        assert_eq!(MatmulVariant::RegBlock.workgroup_tile(), (64, 64));
        assert_eq!(MatmulVariant::Vec4.workgroup_tile(), (64, 128));
        assert_eq!(
            MatmulDims {
                batch: 2,
                m: 3,
                n: 4,
                k: 5
            }
            .flops(),
            240
        );
    }
}
