//! k nearest neighbours for LOF: the GPU route (squared distances by blocks of rows as a GEMM,
//! then `outlier.wgsl:knn` keeping the k smallest per row, (n, k) read back) against the CPU
//! twin (`kiln_kernels::reference::outlier::knn_points`, direct f64 distances, a partial sort
//! per row) in the same run. Throughput is criterion's "elements/s" with
//! `Throughput::Elements(2 N^2 D)`, the multiply-adds of the pairwise distances counted as 2
//! FLOP: read it as FLOP/s.
//!
//! Run with `cargo bench --bench outlier`. The points are on the device before timing. Shape
//! (N, D, K) = (10,000, 32, 20): LOF's default k on a table of ten thousand rows; the CPU twin
//! takes seconds per pass, so the sample is small. `KILN_BENCH_KNN_N` sets N (at most 65,535).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use kiln::unsupervised::Points;
use kiln::unsupervised::outlier::knn;
use kiln_kernels::reference::outlier as twin;
use rand::{Rng, SeedableRng};

#[path = "../kernels/benches/common/mod.rs"]
mod common;

/// (D, K): features, neighbours.
const SHAPE: (usize, usize) = (32, 20);

fn knn_for_lof(c: &mut Criterion) {
    let _gpu = common::device(|| "k-NN for LOF".into());
    let n: usize = std::env::var("KILN_BENCH_KNN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (d, k) = SHAPE;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let pts = Points::new(&x, d).unwrap();
    let mut group = c.benchmark_group("knn");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements((2 * n * n * d) as u64));
    knn(&pts, k).unwrap(); // compiles the pipelines, outside the timing
    group.bench_function(format!("gpu/{n}x{d}/k{k}"), |b| {
        b.iter(|| knn(&pts, k).unwrap())
    });
    group.bench_function(format!("cpu_twin/{n}x{d}/k{k}"), |b| {
        b.iter(|| twin::knn_points(&x, d, k))
    });
    group.finish();
}

criterion_group!(benches, knn_for_lof);
criterion_main!(benches);
