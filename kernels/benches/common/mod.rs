//! Helpers shared by the bench files of both crates (the root benches include this file by path):
//! the device and filled input buffers.

use kiln_kernels::{Gpu, GpuBuffer};

/// The process-wide device, opened once; `what` (e.g. "default matmul rung: vec4") is printed
/// with the adapter the first time.
pub fn device(what: impl FnOnce() -> String) -> std::sync::Arc<Gpu> {
    static ANNOUNCE: std::sync::Once = std::sync::Once::new();
    let gpu = Gpu::global().unwrap_or_else(|e| panic!("benchmarks need a GPU adapter: {e}"));
    ANNOUNCE.call_once(|| {
        eprintln!(
            "adapter: {} ({:?}); {}",
            gpu.info().name,
            gpu.info().backend,
            what()
        )
    });
    gpu
}

/// A buffer of `n` f32 filled with a cheap non-zero pattern.
#[allow(dead_code)] // not every bench file fills raw buffers (train_step uses tensors)
pub fn filled(gpu: &Gpu, n: usize) -> GpuBuffer {
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let buf = gpu.alloc(4 * n as u64, "bench input").unwrap();
    gpu.upload(&buf, 0, bytemuck::cast_slice(&data));
    buf
}
