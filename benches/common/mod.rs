//! Helpers of the root benches (kiln's ops and models): the device, shared with kiln-kernels'
//! benches, and the criterion group every bench here opens.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

#[path = "../../kernels/benches/common/mod.rs"]
mod shared;
pub use shared::device;

/// A benchmark group for GPU work that takes milliseconds an iteration: 10 samples, flat
/// sampling, `warm_up_ms` of warm-up and `measure_s` seconds of measurement.
pub fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    warm_up_ms: u64,
    measure_s: u64,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(warm_up_ms))
        .measurement_time(Duration::from_secs(measure_s));
    group
}
