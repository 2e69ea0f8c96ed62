//! Launchers for `pool.wgsl`: 2-D max, average and adaptive average pooling over NCHW f32, with
//! deterministic gather-style backward kernels (one invocation per input element, no atomics).
//!
//! Inputs and gradients are contiguous (N, C, H, W) / (N, C, OH, OW) blocks at an element offset;
//! outputs are written from element 0 of fresh buffers. Every output is fully overwritten.
//!
//! See also:
//! - shader: `shaders/pool.wgsl`
//! - CPU twin: [`crate::reference::pool`]
//! - op: `src/ops/pool.rs` (not to be confused with the buffer pool, [`crate::buffer_pool`])
//! - tests: `kernels/tests/kernels/pool.rs`, the ops' in `tests/ops/pool.rs`; no benchmark

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

/// Most loop iterations one invocation may run. Mesa's llvmpipe ends an invocation's loops after
/// 65,535 iterations in total (silently); windows are refused above this, with margin.
pub const MAX_LOOP: usize = 32_768;

crate::kernel_params! {
    /// Params of every entry point in `pool.wgsl`.
    pub struct PoolParams in "pool.wgsl" as "PoolParams" {
        /// N * C: planes pooled independently.
        pub planes: u32,
        /// H: input height.
        pub h: u32,
        /// W: input width.
        pub w: u32,
        /// OH: output height.
        pub oh: u32,
        /// OW: output width.
        pub ow: u32,
        /// KH: window height (windowed pools).
        pub kh: u32,
        /// KW: window width.
        pub kw: u32,
        /// SH: vertical stride.
        pub sh: u32,
        /// SW: horizontal stride.
        pub sw: u32,
        /// PH: padding above and below.
        pub ph: u32,
        /// PW: padding left and right.
        pub pw: u32,
        /// Element offset of x (forward) or g (backward).
        pub src_offset: u32,
    }
}

/// Sizes of a pooling op: input (N, C, H, W), output (N, C, OH, OW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    /// N: batch.
    pub n: usize,
    /// C: channels.
    pub c: usize,
    /// H: input height.
    pub h: usize,
    /// W: input width.
    pub w: usize,
    /// OH: output height.
    pub oh: usize,
    /// OW: output width.
    pub ow: usize,
}

impl PoolShape {
    /// Number of input elements N*C*H*W.
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Number of output elements N*C*OH*OW.
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.oh * self.ow
    }
}

/// The window of a max or average pool: (height, width) of kernel, stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// (KH, KW).
    pub kernel: (usize, usize),
    /// (SH, SW).
    pub stride: (usize, usize),
    /// (PH, PW), zero (or -inf) padding on each side.
    pub padding: (usize, usize),
}

impl Window {
    /// A square `k` x `k` window with stride `k` and no padding (PyTorch's `MaxPool2d(k)`).
    pub fn square(k: usize) -> Self {
        Window {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }

    /// Output length along one axis of input length `len` (floor mode, as PyTorch's default):
    /// `(len + 2p - k) / s + 1`, or `None` when the window does not fit the padded input.
    pub fn out_len(len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
        let padded = len + 2 * p;
        if k == 0 || s == 0 || k > padded {
            return None;
        }
        Some((padded - k) / s + 1)
    }

    /// The output shape for input (n, c, h, w), or `None` when the window does not fit.
    pub fn shape(&self, n: usize, c: usize, h: usize, w: usize) -> Option<PoolShape> {
        let oh = Self::out_len(h, self.kernel.0, self.stride.0, self.padding.0)?;
        let ow = Self::out_len(w, self.kernel.1, self.stride.1, self.padding.1)?;
        Some(PoolShape { n, c, h, w, oh, ow })
    }
}

/// Start and end (exclusive) of adaptive window `o` of `o_len` over an input of length `len`:
/// `floor(o * len / o_len)` to `ceil((o + 1) * len / o_len)`, PyTorch's rule.
pub fn adaptive_window(o: usize, len: usize, o_len: usize) -> (usize, usize) {
    (o * len / o_len, ((o + 1) * len).div_ceil(o_len))
}

/// Params for `shape` (and `win`, zero for the adaptive pool), checking the 32-bit index range and
/// the per-invocation loop budget `loops`.
fn params(
    kernel: &str,
    shape: PoolShape,
    win: Option<Window>,
    src_offset: usize,
    loops: usize,
) -> Result<PoolParams> {
    let big = shape.input_len().max(shape.output_len()) + src_offset;
    if big > u32::MAX as usize {
        return Err(KernelError::launch(
            kernel,
            format!("{big} elements exceed the 2^32 index range"),
        ));
    }
    if loops > MAX_LOOP {
        return Err(KernelError::launch(
            kernel,
            format!(
                "windows need {loops} loop iterations per invocation, more than {MAX_LOOP} \
                 (some drivers stop long loops early); use a smaller window"
            ),
        ));
    }
    let w = win.unwrap_or(Window {
        kernel: (0, 0),
        stride: (0, 0),
        padding: (0, 0),
    });
    Ok(PoolParams {
        planes: (shape.n * shape.c) as u32,
        h: shape.h as u32,
        w: shape.w as u32,
        oh: shape.oh as u32,
        ow: shape.ow as u32,
        kh: w.kernel.0 as u32,
        kw: w.kernel.1 as u32,
        sh: w.stride.0 as u32,
        sw: w.stride.1 as u32,
        ph: w.padding.0 as u32,
        pw: w.padding.1 as u32,
        src_offset: src_offset as u32,
    })
}

/// Loop iterations of a windowed forward (rows plus elements of one window).
fn window_loops(win: Window) -> usize {
    win.kernel.0 * (win.kernel.1 + 1)
}

/// Loop iterations of a windowed backward (windows containing one input element).
fn window_back_loops(win: Window) -> usize {
    let per = |k: usize, s: usize| k.div_ceil(s.max(1));
    let rows = per(win.kernel.0, win.stride.0);
    rows * (per(win.kernel.1, win.stride.1) + 1)
}

/// Longest adaptive window along an axis (or most windows containing one input element).
fn adaptive_span(len: usize, o_len: usize) -> usize {
    len.div_ceil(o_len.max(1)) + 1
}

fn check_window(kernel: &str, shape: PoolShape, win: Window) -> Result<()> {
    match win.shape(shape.n, shape.c, shape.h, shape.w) {
        Some(s) if s == shape => Ok(()),
        _ => Err(KernelError::launch(
            kernel,
            format!("window {win:?} does not give output shape {shape:?}"),
        )),
    }
}

/// Whether `max_pool2d_tiled` applies: stride = kernel, no padding (the windows tile the input,
/// rows and columns past the last window are dropped), planes and positions in range.
pub fn tiles_forward(shape: PoolShape, win: Window) -> bool {
    win.stride == win.kernel
        && win.padding == (0, 0)
        && shape.oh * shape.ow < TILED_MAX_POSITIONS
        && shape.n * shape.c <= MAX_GROUPS * MAX_GROUPS
}

/// Whether the tiled max-pool backward applies: [`tiles_forward`] and the windows cover the
/// input exactly (`H = OH * KH`, `W = OW * KW`), so each input element is in one window.
pub fn tiles_backward(shape: PoolShape, win: Window) -> bool {
    tiles_forward(shape, win)
        && shape.h == shape.oh * win.kernel.0
        && shape.w == shape.ow * win.kernel.1
}

/// Positions per plane the tiled entries accept: their `div_small` is exact below 2^24.
const TILED_MAX_POSITIONS: usize = 1 << 24;
/// WebGPU's workgroups per grid dimension.
const MAX_GROUPS: usize = 65_535;
/// Workgroup size of the tiled entries (the WGSL `WG_T`).
pub const WG_T: u32 = 64;

/// The tiled entries' grid: (positions / WG_T, planes split into y and z).
fn tiled_grid(shape: PoolShape) -> [u32; 3] {
    let planes = shape.n * shape.c;
    let z = planes.div_ceil(MAX_GROUPS);
    let y = planes.div_ceil(z);
    [
        (shape.oh * shape.ow).div_ceil(WG_T as usize) as u32,
        y as u32,
        z as u32,
    ]
}

/// How one launch of a `pool.wgsl` entry covers its work: one invocation per element (the
/// outputs, or the inputs of a gather-style backward), or one per position of each window tile.
#[derive(Clone, Copy)]
enum Grid {
    /// One invocation per element, `n` of them.
    Elements(usize),
    /// The tiled entries' grid ([`tiled_grid`]).
    Tiles,
}

/// Check `win` against `shape` (windowed pools), size the params and record one entry of
/// `pool.wgsl`; nothing is recorded when there is no work. `src` is x (forward) or g (backward),
/// read from its offset; `rest` are the other bindings in order.
fn record(
    gpu: &Gpu,
    key: &KernelKey,
    (shape, win): (PoolShape, Option<Window>),
    loops: usize,
    grid: Grid,
    src: Operand<'_>,
    rest: &[&GpuBuffer],
) -> Result<()> {
    let label = key.label();
    if let Some(win) = win {
        check_window(&label, shape, win)?;
    }
    let (n, groups) = match grid {
        Grid::Elements(n) => (n, grid_1d(n, WG)),
        Grid::Tiles => (shape.output_len(), tiled_grid(shape)),
    };
    if n == 0 {
        return Ok(());
    }
    let p = params(&label, shape, win, src.offset, loops)?;
    let bufs: Vec<&GpuBuffer> = std::iter::once(src.buf)
        .chain(rest.iter().copied())
        .collect();
    gpu.dispatch(key, &p, &bufs, groups);
    Ok(())
}

/// The key of a tiled entry, specialised on the window, after checking that it applies
/// (`applies`; otherwise an error saying the window does not `fit` the input).
fn tiled_key(entry: &'static str, win: Window, applies: bool, fit: &str) -> Result<KernelKey> {
    let key = KernelKey::new("pool.wgsl", entry)
        .with("KH", win.kernel.0 as u32)
        .with("KW", win.kernel.1 as u32);
    if !applies {
        return Err(KernelError::launch(
            &key,
            format!("window {win:?} does not {fit}"),
        ));
    }
    Ok(key)
}

/// `y = max over each window of x`, `argmax = ih * W + iw` of the first maximum. Padding counts
/// as -inf. Runs [`max_pool2d_tiled`] where [`tiles_forward`] allows (same results), else
/// pool.wgsl:max_forward.
///
/// - `x`: (N, C, H, W), contiguous at `x.offset`
/// - `y`: (N, C, OH, OW) f32, from element 0
/// - `argmax`: (N, C, OH, OW) u32, from element 0
pub fn max_pool2d(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    x: Operand<'_>,
    y: &GpuBuffer,
    argmax: &GpuBuffer,
) -> Result<()> {
    if tiles_forward(shape, win) {
        return max_pool2d_tiled(gpu, shape, win, x, y, argmax);
    }
    max_pool2d_generic(gpu, shape, win, x, y, argmax)
}

/// [`max_pool2d`] by the generic entry (pool.wgsl:max_forward): any window, one invocation per
/// output.
pub fn max_pool2d_generic(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    x: Operand<'_>,
    y: &GpuBuffer,
    argmax: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "max_forward");
    let grid = Grid::Elements(shape.output_len());
    record(
        gpu,
        &key,
        (shape, Some(win)),
        window_loops(win),
        grid,
        x,
        &[y, argmax],
    )
}

/// [`max_pool2d`] by the tiled entry (pool.wgsl:max_forward_tiled), for windows that tile the
/// input ([`tiles_forward`]; an error otherwise): no index division but one small one per
/// output.
pub fn max_pool2d_tiled(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    x: Operand<'_>,
    y: &GpuBuffer,
    argmax: &GpuBuffer,
) -> Result<()> {
    let fits = tiles_forward(shape, win);
    let key = tiled_key(
        "max_forward_tiled",
        win,
        fits,
        &format!("tile input {shape:?}"),
    )?;
    record(
        gpu,
        &key,
        (shape, Some(win)),
        window_loops(win),
        Grid::Tiles,
        x,
        &[y, argmax],
    )
}

/// `gx[ih, iw] = sum of g over the windows whose argmax is (ih, iw)`. Runs
/// [`max_pool2d_backward_tiled`] where [`tiles_backward`] allows (same results), else
/// pool.wgsl:max_backward.
///
/// - `g`: (N, C, OH, OW), contiguous at `g.offset`
/// - `argmax`: (N, C, OH, OW) u32 from [`max_pool2d`], from element 0
/// - `gx`: (N, C, H, W), from element 0, overwritten
pub fn max_pool2d_backward(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    g: Operand<'_>,
    argmax: &GpuBuffer,
    gx: &GpuBuffer,
) -> Result<()> {
    if tiles_backward(shape, win) {
        return max_pool2d_backward_tiled(gpu, shape, win, g, argmax, gx);
    }
    max_pool2d_backward_generic(gpu, shape, win, g, argmax, gx)
}

/// [`max_pool2d_backward`] by the generic entry (pool.wgsl:max_backward): one invocation per
/// input element gathers the windows containing it, in increasing (oh, ow).
pub fn max_pool2d_backward_generic(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    g: Operand<'_>,
    argmax: &GpuBuffer,
    gx: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "max_backward");
    let (loops, grid) = (window_back_loops(win), Grid::Elements(shape.input_len()));
    record(gpu, &key, (shape, Some(win)), loops, grid, g, &[argmax, gx])
}

/// [`max_pool2d_backward`] by the tiled entry (pool.wgsl:max_backward_tiled), for windows that
/// cover the input exactly ([`tiles_backward`]; an error otherwise): one invocation per window
/// writes its KH x KW gradient elements (g at the argmax, 0 elsewhere).
pub fn max_pool2d_backward_tiled(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    g: Operand<'_>,
    argmax: &GpuBuffer,
    gx: &GpuBuffer,
) -> Result<()> {
    let fits = tiles_backward(shape, win);
    let fit = format!("cover input {shape:?} exactly");
    let key = tiled_key("max_backward_tiled", win, fits, &fit)?;
    record(
        gpu,
        &key,
        (shape, Some(win)),
        window_loops(win),
        Grid::Tiles,
        g,
        &[argmax, gx],
    )
}

/// `y = sum over each window of x / (KH * KW)`: padding counts as 0 and is included in the count
/// (PyTorch's `count_include_pad = true`) (pool.wgsl:avg_forward).
///
/// - `x`: (N, C, H, W), contiguous at `x.offset`
/// - `y`: (N, C, OH, OW), from element 0
pub fn avg_pool2d(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    x: Operand<'_>,
    y: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "avg_forward");
    let grid = Grid::Elements(shape.output_len());
    record(
        gpu,
        &key,
        (shape, Some(win)),
        window_loops(win),
        grid,
        x,
        &[y],
    )
}

/// `gx[ih, iw] = sum of g over the windows containing (ih, iw) / (KH * KW)`
/// (pool.wgsl:avg_backward).
///
/// - `g`: (N, C, OH, OW), contiguous at `g.offset`
/// - `gx`: (N, C, H, W), from element 0, overwritten
pub fn avg_pool2d_backward(
    gpu: &Gpu,
    shape: PoolShape,
    win: Window,
    g: Operand<'_>,
    gx: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "avg_backward");
    let (loops, grid) = (window_back_loops(win), Grid::Elements(shape.input_len()));
    record(gpu, &key, (shape, Some(win)), loops, grid, g, &[gx])
}

/// Loop iterations per invocation of the adaptive forward or backward for `shape`, the larger.
pub fn adaptive_loops(shape: PoolShape) -> usize {
    let fwd = adaptive_span(shape.h, shape.oh) * (adaptive_span(shape.w, shape.ow) + 1);
    let bwd = adaptive_span(shape.oh, shape.h) * (adaptive_span(shape.ow, shape.w) + 1);
    fwd.max(bwd)
}

/// Adaptive average pool to (OH, OW): `y[oh, ow] = mean of x over rows
/// floor(oh*H/OH)..ceil((oh+1)*H/OH) and the same rule for columns` (pool.wgsl:adaptive_forward).
/// Windows larger than [`MAX_LOOP`] iterations are refused (pool globally with a reduction).
///
/// - `x`: (N, C, H, W), contiguous at `x.offset`
/// - `y`: (N, C, OH, OW), from element 0
pub fn adaptive_avg_pool2d(
    gpu: &Gpu,
    shape: PoolShape,
    x: Operand<'_>,
    y: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "adaptive_forward");
    // An empty input plane has no windows to average: nothing to write.
    let grid = Grid::Elements(shape.output_len() * usize::from(shape.h * shape.w > 0));
    record(
        gpu,
        &key,
        (shape, None),
        adaptive_loops(shape),
        grid,
        x,
        &[y],
    )
}

/// `gx[ih, iw] = sum over adaptive windows containing (ih, iw) of g / window area`
/// (pool.wgsl:adaptive_backward).
///
/// - `g`: (N, C, OH, OW), contiguous at `g.offset`
/// - `gx`: (N, C, H, W), from element 0, overwritten
pub fn adaptive_avg_pool2d_backward(
    gpu: &Gpu,
    shape: PoolShape,
    g: Operand<'_>,
    gx: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("pool.wgsl", "adaptive_backward");
    let grid = Grid::Elements(shape.input_len() * usize::from(shape.oh * shape.ow > 0));
    record(
        gpu,
        &key,
        (shape, None),
        adaptive_loops(shape),
        grid,
        g,
        &[gx],
    )
}
