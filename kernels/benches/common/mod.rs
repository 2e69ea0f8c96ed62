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

/// A criterion group with the settings of the kernel benches: 10 samples taken flat (each runs
/// the same number of iterations: a long GPU product is not run thousands of times), 0.3 s of
/// warm-up, 2 s of measurement.
#[allow(dead_code)] // the root benches that include this file set up their own groups
pub fn group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2));
    group
}

/// Time `launch` as `id` in `group`: every iteration records the launches and waits for the
/// device (`gpu.sync()`), so a sample is the kernels' run time, not their recording.
#[allow(dead_code)] // the root benches time ops, not launchers
pub fn time(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: criterion::BenchmarkId,
    gpu: &Gpu,
    mut launch: impl FnMut() -> kiln_kernels::Result<()>,
) {
    group.bench_function(id, |bench| {
        bench.iter(|| {
            launch().unwrap();
            gpu.sync().unwrap();
        })
    });
}
