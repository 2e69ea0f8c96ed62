//! Matmul benchmarks: every rung of the ladder beside the naive baseline, in the same run, in
//! GFLOP/s (criterion's "elem/s" with `Throughput::Elements(2 B M N K)`).
//!
//! Run with `cargo bench -p kiln-kernels --bench matmul` (add `-- matmul/vec4` for one rung). Every timed
//! iteration records the product and waits for the device (`gpu.sync()`), so the time is launch +
//! GPU execution; buffers are allocated and filled once, outside the timing.
//!
//! Cases: contiguous square products 128, 256, 512, 1024 (tiled left out at 1024: ~9 s per
//! product on lavapipe), a batch of 8 (128 x 64) @ (64 x 128), and 512 `A @ B^T` (B a transposed
//! view, as in a backward pass) for naive and the default rung. The default rung
//! (`MatmulVariant::default()`) is the one these numbers select. Rungs come from
//! `MatmulVariant::LADDER` filtered by `available` (subgroup, f16 and coop only where the adapter
//! has the features; f16 rungs read f16 copies of the operands), so new rungs are measured
//! without editing this file.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulDims, MatmulVariant};

mod common;

use common::{filled, time};

/// The same pattern as [`filled`], as f16 (operands of the f16 rungs).
fn filled_f16(gpu: &kiln_kernels::Gpu, n: usize) -> kiln_kernels::GpuBuffer {
    let mut bytes: Vec<u8> = (0..n)
        .flat_map(|i| half::f16::from_f32(((i * 7919) % 1000) as f32 * 1e-3 - 0.5).to_le_bytes())
        .collect();
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    let buf = gpu.alloc(bytes.len() as u64, "bench input f16").unwrap();
    gpu.upload(&buf, 0, &bytes);
    buf
}

fn matmul(c: &mut Criterion) {
    let gpu =
        common::device(|| format!("default matmul rung: {}", MatmulVariant::default().name()));
    let mut group = common::group(c, "matmul");
    let sq = |s| MatmulDims {
        batch: 1,
        m: s,
        n: s,
        k: s,
    };
    let mut cases: Vec<(String, MatmulDims)> = [128, 256, 512, 1024]
        .map(|s| (format!("{s}"), sq(s)))
        .to_vec();
    let batched = MatmulDims {
        batch: 8,
        m: 128,
        n: 128,
        k: 64,
    };
    cases.push(("8x128x64x128".into(), batched));
    // A @ B^T with B stored (N, K): the layout of `g @ W^T` in a backward pass.
    cases.push(("512_bt".into(), sq(512)));
    for (name, d) in cases {
        let (na, nb) = (d.batch * d.m * d.k, d.batch * d.k * d.n);
        let (a, b) = (filled(&gpu, na), filled(&gpu, nb));
        let (a16, b16) = (filled_f16(&gpu, na), filled_f16(&gpu, nb));
        let out = gpu.alloc(4 * (d.batch * d.m * d.n) as u64, "c").unwrap();
        let transposed = name.ends_with("_bt");
        let la = MatLayout::contiguous(d.m, d.k);
        let lb = if transposed {
            MatLayout::transposed(d.k, d.n)
        } else {
            MatLayout::contiguous(d.k, d.n)
        };
        let rungs: Vec<MatmulVariant> = MatmulVariant::LADDER
            .into_iter()
            .filter(|v| v.available(&gpu).is_ok())
            .filter(|&v| {
                if transposed {
                    v == MatmulVariant::Naive || v == MatmulVariant::default()
                } else {
                    // tiled is 2x slower than naive at every smaller size on lavapipe (barriers)
                    // and takes ~9 s per 1024^3 product: too slow for a 10-sample run.
                    d.m < 1024 || v != MatmulVariant::Tiled
                }
            })
            .collect();
        group.throughput(Throughput::Elements(d.flops()));
        for v in rungs {
            let (a, b) = if v.f16_operands() {
                (&a16, &b16)
            } else {
                (&a, &b)
            };
            let (a, b) = (MatRef::new(a, la), MatRef::new(b, lb));
            time(&mut group, BenchmarkId::new(v.name(), &name), &gpu, || {
                mk::matmul(&gpu, v, a, b, &out, 0, d)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
