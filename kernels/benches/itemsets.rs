//! Support counting for Apriori (`itemsets.wgsl:support`, AND + popcount over item bitsets)
//! against the CPU twin on the same layout (`reference::itemsets::support_counts_bits`, one
//! core) in the same run. Throughput is criterion's "elements/s" with
//! `Throughput::Elements(transactions x candidates)`: read it as transaction-candidate checks per
//! second.
//!
//! Run with `cargo bench -p kiln-kernels --bench itemsets`. The bitsets are on the device before
//! timing; each GPU iteration uploads the candidates, counts, and reads the counts back, as one
//! Apriori level does. Shape: 1,000,000 transactions over 100 items (each item in about 1/8 of
//! them), the 4,950 pairs of level 2, and 10,000 triples of level 3.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use kiln_kernels::Gpu;
use kiln_kernels::launch::itemsets as ik;
use kiln_kernels::reference::itemsets as twin;

mod common;

/// Transactions and items.
const N: usize = 1_000_000;
const ITEMS: usize = 100;

/// Random bitsets, (ITEMS, words), each bit set with probability 1/8 (an AND of three draws).
fn bitsets(words: usize) -> Vec<u32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut u = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 32) as u32
    };
    (0..ITEMS * words).map(|_| u() & u() & u()).collect()
}

/// GPU: upload candidates, count, read back.
fn gpu_count(
    gpu: &Gpu,
    bits: &kiln_kernels::GpuBuffer,
    words: usize,
    cand: &[u32],
    len: usize,
) -> Vec<u32> {
    let m = cand.len() / len;
    let c = gpu.alloc(4 * cand.len() as u64, "cand").unwrap();
    gpu.upload(&c, 0, bytemuck::cast_slice(cand));
    let out = gpu.alloc(4 * m as u64, "count").unwrap();
    ik::support(gpu, bits, words, &c, m, len, &out).unwrap();
    bytemuck::pod_collect_to_vec(&gpu.read(&out, 0, 4 * m as u64).unwrap())
}

fn support(c: &mut Criterion) {
    let gpu = common::device(|| "itemsets support counts".into());
    let words = ik::words_for(N);
    let bits = bitsets(words);
    let buf = gpu.alloc(4 * bits.len() as u64, "bits").unwrap();
    gpu.upload(&buf, 0, bytemuck::cast_slice(&bits));
    let pairs: Vec<u32> = (0..ITEMS as u32)
        .flat_map(|a| (a + 1..ITEMS as u32).flat_map(move |b| [a, b]))
        .collect();
    // Every 16th of the 161,700 triples in lexicographic order: 10,000 of them.
    let n = ITEMS as u32;
    let triples: Vec<u32> = (0..n)
        .flat_map(|a| (a + 1..n).flat_map(move |b| (b + 1..n).map(move |c| [a, b, c])))
        .step_by(16)
        .take(10_000)
        .flatten()
        .collect();
    let mut group = c.benchmark_group("itemsets_support");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for (name, cand, len) in [("pairs", &pairs, 2usize), ("triples", &triples, 3)] {
        let m = cand.len() / len;
        // Compiles the pipeline and checks the GPU against the twin, outside the timing.
        assert_eq!(
            gpu_count(&gpu, &buf, words, cand, len),
            twin::support_counts_bits(&bits, words, cand, len)
        );
        group.throughput(Throughput::Elements((N * m) as u64));
        group.bench_function(format!("gpu/{N}x{ITEMS}/{name}{m}"), |b| {
            b.iter(|| gpu_count(&gpu, &buf, words, cand, len))
        });
        group.bench_function(format!("cpu_twin/{N}x{ITEMS}/{name}{m}"), |b| {
            b.iter(|| twin::support_counts_bits(&bits, words, cand, len))
        });
    }
    group.finish();
}

criterion_group!(benches, support);
criterion_main!(benches);
