//! `kiln bench` rows of the unsupervised kernels, each beside its CPU twin timed in the same run
//! (one core, wall clock; the twin row is the group's baseline, so `speed-up` is GPU over CPU):
//!
//! - **k-means step** (`kmeans::gpu_step`: distance GEMM, fused assignment, segmented centroid
//!   sums, read back) at (N, D, K) = (100,000, 64, 100), `--quick` (20,000, 64, 20); FLOPs
//!   `2 N K D` (the distance GEMM), compute-bound.
//! - **itemsets support** (`itemsets.wgsl`: AND + popcount over bitsets) of the 4,950 item pairs
//!   of 100 items over 1,000,000 transactions (`--quick` 100,000); bytes `candidates x words x 4
//!   x 2` (each pair reads two bitsets), memory-bound; transactions x candidates per second is
//!   `N x 4,950 / time`.
//! - **k-NN for LOF** (`Points::knn`, k = 20) of 10,000 points of 32 features (`--quick` 2,000);
//!   FLOPs `2 N^2 D` (the distance GEMM), compute-bound.

use std::time::Instant;

use kiln_kernels::launch::itemsets as ik;
use kiln_kernels::reference::{cluster as ctwin, itemsets as itwin, outlier as otwin};

use super::cases::wall_timing;
use super::{Bound, Case, Result, Suite, kerr};
use crate::unsupervised::{Points, kmeans};

/// Uniform values in [-1, 1) from a fixed LCG (the same points every run).
fn points(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// Time `f` on the host: `samples` runs (one when a run is slower than a second).
fn cpu_time(samples: usize, mut f: impl FnMut()) -> kiln_kernels::profile::Timing {
    let mut ms = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if ms[0] > 1_000.0 {
            break;
        }
    }
    wall_timing(ms)
}

/// The three groups (see the module notes).
pub(super) fn run(s: &mut Suite) -> Result<()> {
    let samples = if s.quick { 3 } else { 5 };
    // k-means step.
    let (n, d, k) = if s.quick {
        (20_000, 64, 20)
    } else {
        (100_000, 64, 100)
    };
    let shape = format!("{n}x{d} k{k}");
    if s.wants("kmeans step", &shape, "gpu") || s.wants("kmeans step", &shape, "cpu twin") {
        let x = points(n * d);
        let cents = x[..k * d].to_vec();
        let flops = (2 * n * k * d) as u64;
        let case = |v| Case::new("kmeans step", shape.clone(), v).work(flops, 0, Bound::Compute);
        let t = cpu_time(samples, || drop(ctwin::cpu_step(&x, &cents, d)));
        s.record(case("cpu twin").grouped(true), &t, Some("1 core".into()));
        let pts = Points::new_on(&s.gpu, &x, d).map_err(kerr)?;
        s.run(case("gpu").grouped(false), || {
            kmeans::gpu_step(&pts, &cents).map(drop).map_err(kerr)
        })?;
    }
    // Support counts of all item pairs.
    let (n, items) = (if s.quick { 100_000 } else { 1_000_000 }, 100u32);
    let shape = format!("{n} transactions x {items} items, 4950 pairs");
    if s.wants("itemsets support", &shape, "gpu") || s.wants("itemsets support", &shape, "cpu twin")
    {
        let words = ik::words_for(n);
        let bits: Vec<u32> = points(items as usize * words)
            .iter()
            .map(|v| v.to_bits() & 0x1111_1111) // about 1 bit in 8 set
            .collect();
        let pairs: Vec<u32> = (0..items)
            .flat_map(|a| (a + 1..items).flat_map(move |b| [a, b]))
            .collect();
        let m = pairs.len() / 2;
        let bytes = (m * words * 4 * 2) as u64;
        let case = |v| Case {
            dtype: "u32",
            ..Case::new("itemsets support", shape.clone(), v).work(0, bytes, Bound::Memory)
        };
        let t = cpu_time(samples, || {
            drop(itwin::support_counts_bits(&bits, words, &pairs, 2))
        });
        s.record(case("cpu twin").grouped(true), &t, Some("1 core".into()));
        let gpu = s.gpu.clone();
        let buf = gpu.alloc(4 * bits.len() as u64, "bench bits")?;
        gpu.upload(&buf, 0, bytemuck::cast_slice(&bits));
        let cand = gpu.alloc(4 * pairs.len() as u64, "bench pairs")?;
        gpu.upload(&cand, 0, bytemuck::cast_slice(&pairs));
        let out = gpu.alloc(4 * m as u64, "bench counts")?;
        s.run(case("gpu").grouped(false), || {
            ik::support(&gpu, &buf, words, &cand, m, 2, &out)
        })?;
    }
    // k-NN for LOF.
    let (n, d, k) = (if s.quick { 2_000 } else { 10_000 }, 32, 20);
    let shape = format!("{n}x{d} k{k}");
    if s.wants("knn (lof)", &shape, "gpu") || s.wants("knn (lof)", &shape, "cpu twin") {
        let x = points(n * d);
        let flops = (2 * n * n * d) as u64;
        let case = |v| Case::new("knn (lof)", shape.clone(), v).work(flops, 0, Bound::Compute);
        let t = cpu_time(samples, || drop(otwin::knn_points(&x, d, k)));
        s.record(case("cpu twin").grouped(true), &t, Some("1 core".into()));
        let pts = Points::new_on(&s.gpu, &x, d).map_err(kerr)?;
        s.run(case("gpu").grouped(false), || {
            pts.knn(&pts, k, true).map(drop).map_err(kerr)
        })?;
    }
    Ok(())
}
