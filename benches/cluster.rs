//! One k-means (Lloyd) step: the GPU route (distance GEMM, fused assignment, segmented centroid
//! sums, read back) against the CPU twin (`kiln_kernels::reference::cluster::cpu_step`, direct
//! distances in f64) in the same run. Throughput is criterion's "elements/s" with
//! `Throughput::Elements(2 N K D)`, the multiply-adds of the distance GEMM counted as 2 FLOP: read
//! it as FLOP/s.
//!
//! Run with `cargo bench --bench cluster`. The points are on the device before timing; each
//! iteration uploads the (K, D) centroids and reads labels, distances and sums back, as a Lloyd
//! iteration does. Shape: the (N, D, K) = (100,000, 64, 100).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::unsupervised::{Points, kmeans};
use kiln_kernels::reference::cluster as twin;
use rand::{Rng, SeedableRng};

mod common;

/// (N, D, K): points, features, clusters.
const SHAPE: (usize, usize, usize) = (100_000, 64, 100);

fn lloyd_step(c: &mut Criterion) {
    let _gpu = common::device(|| "k-means step".into());
    let (n, d, k) = SHAPE;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let cents: Vec<f32> = x[..k * d].to_vec();
    let pts = Points::new(&x, d).unwrap();
    let mut group = common::group(c, "kmeans_step", 500, 5);
    group.throughput(Throughput::Elements((2 * n * k * d) as u64));
    kmeans::gpu_step(&pts, &cents).unwrap(); // compiles the pipelines, outside the timing
    group.bench_function(format!("gpu/{n}x{d}/k{k}"), |b| {
        b.iter(|| kmeans::gpu_step(&pts, &cents).unwrap())
    });
    group.bench_function(format!("cpu_twin/{n}x{d}/k{k}"), |b| {
        b.iter(|| twin::cpu_step(&x, &cents, d))
    });
    group.finish();
}

criterion_group!(benches, lloyd_step);
criterion_main!(benches);
