//! Launchers for `dropout.wgsl`: counter-based random bits (Philox4x32-10) and dropout masks.
//!
//! Element `i` of a stream is word `i % 4` of `philox4x32_10(counter = (ctr0 + i / 4, ctr1, ctr2,
//! ctr3), key)`. The stream is a pure function of (key, counter, i): the same key gives the same
//! mask on every device and run, and [`crate::reference::dropout`] reproduces it bit for bit. No
//! mask is ever uploaded from the host.
//!
//! A dropout mask keeps element `i` when its word is at least `floor(p * 2^32)` (so it is dropped
//! with probability `p`, to within 2^-32) and then holds `1 / (1 - p)`; dropped elements hold 0.
//!
//! See also:
//! - shader: `shaders/dropout.wgsl`
//! - CPU twin: [`crate::reference::dropout`]
//! - op: `src/ops/dropout.rs` (the layer and its key stream: `src/nn/dropout.rs`)
//! - tests: `tests/ops/dropout.rs`; no benchmark

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

/// Most elements one launch writes (the kernel computes `4 * (i / 4)` in u32).
pub const MAX_NUMEL: usize = 1 << 31;

crate::kernel_params! {
    /// Params of every entry point in `dropout.wgsl`.
    pub struct RandomParams in "dropout.wgsl" as "RandomParams" {
        /// Elements to write.
        pub numel: u32,
        /// dropout_mask: an element is dropped where its word is below this.
        pub threshold: u32,
        /// dropout_mask: the value of a kept element, `1 / (1 - p)`.
        pub scale: f32,
        /// Padding.
        pub _pad0: u32,
        /// Low word of the Philox key.
        pub key_lo: u32,
        /// High word of the Philox key.
        pub key_hi: u32,
        /// Counter word 0 of element 0 (element i uses `ctr0 + i / 4`).
        pub ctr0: u32,
        /// Counter word 1.
        pub ctr1: u32,
        /// Counter word 2.
        pub ctr2: u32,
        /// Counter word 3.
        pub ctr3: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }
}

/// Where a stream starts: a 64-bit key and the 128-bit counter of element 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stream {
    /// The Philox key (low word is k0).
    pub key: u64,
    /// Counter of elements 0..4; element i uses `[counter[0] + i / 4, counter[1], ...]`.
    pub counter: [u32; 4],
}

impl Stream {
    /// The stream of `key` from counter zero (what dropout uses).
    pub fn new(key: u64) -> Self {
        Stream {
            key,
            counter: [0; 4],
        }
    }
}

/// The integer threshold of drop probability `p` in `[0, 1)`: `floor(p * 2^32)`.
pub fn dropout_threshold(p: f32) -> u32 {
    ((p as f64) * 4_294_967_296.0)
        .floor()
        .clamp(0.0, u32::MAX as f64) as u32
}

fn params(
    kernel: &str,
    numel: usize,
    stream: Stream,
    threshold: u32,
    scale: f32,
) -> Result<RandomParams> {
    if numel > MAX_NUMEL {
        return Err(KernelError::launch(
            kernel,
            format!("{numel} elements exceed the {MAX_NUMEL} one launch can write"),
        ));
    }
    Ok(RandomParams {
        numel: numel as u32,
        threshold,
        scale,
        key_lo: stream.key as u32,
        key_hi: (stream.key >> 32) as u32,
        ctr0: stream.counter[0],
        ctr1: stream.counter[1],
        ctr2: stream.counter[2],
        ctr3: stream.counter[3],
        ..Default::default()
    })
}

/// `out[i]` = word `i` of `stream`, for `i < numel` (dropout.wgsl:bits). `out` holds u32.
pub fn bits(gpu: &Gpu, stream: Stream, numel: usize, out: &GpuBuffer) -> Result<()> {
    let key = KernelKey::new("dropout.wgsl", "bits");
    let p = params(&key.label(), numel, stream, 0, 0.0)?;
    if numel > 0 {
        gpu.dispatch(&key, &p, &[out], grid_1d(numel.div_ceil(4), WG));
    }
    Ok(())
}

/// A dropout mask with drop probability `p` in `[0, 1)` (dropout.wgsl:dropout_mask): `out[i]`
/// (f32, contiguous, `numel`) is 0 where word `i` of `stream` is below [`dropout_threshold`]`(p)`
/// and `1 / (1 - p)` elsewhere.
pub fn dropout_mask(
    gpu: &Gpu,
    stream: Stream,
    p: f32,
    numel: usize,
    out: &GpuBuffer,
) -> Result<()> {
    let key = KernelKey::new("dropout.wgsl", "dropout_mask");
    if !(0.0..1.0).contains(&p) {
        return Err(KernelError::launch(
            key,
            format!("drop probability {p} is outside [0, 1)"),
        ));
    }
    let args = params(
        &key.label(),
        numel,
        stream,
        dropout_threshold(p),
        1.0 / (1.0 - p),
    )?;
    if numel > 0 {
        gpu.dispatch(&key, &args, &[out], grid_1d(numel.div_ceil(4), WG));
    }
    Ok(())
}
