//! Kernel benchmarks, each beside a baseline measured in the same run, in hardware units.
//!
//! Run with `cargo bench --bench kernels` (add `-- matmul` to run one group). Every timed
//! iteration records the kernel and then waits for the device (`gpu.sync()`), so the time is
//! launch + GPU execution, not just recording. Kernels are called through the `kiln_kernels`
//! launchers on buffers allocated once, so allocation and upload are outside the timing.
//!
//! Groups:
//! - `matmul`: GFLOP/s (criterion's "elem/s" with `Throughput::Elements(2 M N K)`) of every rung
//!   of the matmul ladder (naive, tiled, regblock, vec4) on contiguous square products 128, 256,
//!   512, 1024 (tiled left out at 1024) and a batch of 8 (128 x 64) @ (64 x 128), plus naive and
//!   vec4 on 512 `A @ B^T`
//!   (B a transposed view, as in a backward pass). The default rung (`MatmulVariant::default()`)
//!   is the one these numbers select.
//! - `add`: GB/s (bytes read + written) of `c = a + b` over 4M f32 (2048 x 2048): contiguous
//!   (the kernel collapses it to one dim) against the same add with `b` read through a
//!   transposed view (the baseline: strided index arithmetic and uncoalesced reads).
//! - `sum`: GB/s (bytes read) of summing 4M f32 as 32 rows of 128K and as 4096 rows of 1024:
//!   the workgroup strategy (256 invocations per row and a shared-memory tree) against the serial
//!   one (one invocation loops over a row, the baseline).
//!
//! Sample counts and times are small so the whole run takes a few minutes on lavapipe
//! (naive 1024^3 alone takes over a second per iteration there).

use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kiln_kernels::launch::elementwise::{self as ew, BinaryOp, Strided};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulDims, MatmulVariant};
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};

mod common;

use common::filled;

/// The process-wide device, announced once with the default rung.
fn device() -> std::sync::Arc<kiln_kernels::Gpu> {
    common::device(|| format!("default matmul rung: {}", MatmulVariant::default().name()))
}

fn matmul(c: &mut Criterion) {
    let gpu = device();
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut cases: Vec<(String, MatmulDims)> = [128, 256, 512, 1024]
        .into_iter()
        .map(|s| {
            let d = MatmulDims {
                batch: 1,
                m: s,
                n: s,
                k: s,
            };
            (format!("{s}"), d)
        })
        .collect();
    cases.push((
        "8x128x64x128".into(),
        MatmulDims {
            batch: 8,
            m: 128,
            n: 128,
            k: 64,
        },
    ));
    // A @ B^T with B stored (N, K): the layout of `g @ W^T` in a backward pass.
    let bt = MatmulDims {
        batch: 1,
        m: 512,
        n: 512,
        k: 512,
    };
    cases.push(("512_bt".into(), bt));
    for (name, d) in cases {
        let a = filled(&gpu, d.batch * d.m * d.k);
        let b = filled(&gpu, d.batch * d.k * d.n);
        let out = gpu.alloc(4 * (d.batch * d.m * d.n) as u64, "c").unwrap();
        let transposed = name.ends_with("_bt");
        let la = MatLayout::contiguous(d.m, d.k);
        let lb = if transposed {
            MatLayout::transposed(d.k, d.n)
        } else {
            MatLayout::contiguous(d.k, d.n)
        };
        let rungs: &[MatmulVariant] = if transposed {
            &[MatmulVariant::Naive, MatmulVariant::Vec4]
        } else if d.m >= 1024 {
            // tiled takes ~9 s per 1024^3 product on lavapipe (barriers): too slow for a
            // 10-sample run here; it is 2x slower than naive at every smaller size.
            &[
                MatmulVariant::Naive,
                MatmulVariant::RegBlock,
                MatmulVariant::Vec4,
            ]
        } else {
            &MatmulVariant::ALL
        };
        group.throughput(Throughput::Elements(d.flops()));
        for &v in rungs {
            group.bench_function(BenchmarkId::new(v.name(), &name), |bench| {
                bench.iter(|| {
                    let (a, b) = (MatRef::new(&a, la), MatRef::new(&b, lb));
                    mk::matmul(&gpu, v, a, b, &out, 0, d).unwrap();
                    gpu.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}

fn add(c: &mut Criterion) {
    let gpu = device();
    let side = 2048;
    let n = side * side;
    let (a, b) = (filled(&gpu, n), filled(&gpu, n));
    let out = gpu.alloc(4 * n as u64, "c").unwrap();
    let shape = [side, side];
    let mut group = c.benchmark_group("add");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(3 * 4 * n as u64));
    let views: [(&str, [usize; 2]); 2] = [("contiguous", [side, 1]), ("b_transposed", [1, side])];
    for (name, b_strides) in views {
        group.bench_function(BenchmarkId::new(name, "4M"), |bench| {
            bench.iter(|| {
                ew::binary(
                    &gpu,
                    BinaryOp::Add,
                    &shape,
                    Strided::contiguous(&a, &shape),
                    Strided::new(&b, 0, &b_strides),
                    Strided::contiguous(&out, &shape),
                    0.0,
                )
                .unwrap();
                gpu.sync().unwrap();
            })
        });
    }
    group.finish();
}

fn sum(c: &mut Criterion) {
    let gpu = device();
    let n = 1 << 22;
    let x = filled(&gpu, n);
    let out = gpu.alloc(4 * 4096, "sums").unwrap();
    let mut group = c.benchmark_group("sum");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(4 * n as u64));
    // The serial strategy cannot take one row of 4M on lavapipe (an invocation's loops stop after
    // 65,535 iterations), so the 4M floats are 32 long rows, or 4096 short ones.
    for (rows, len) in [(32, n / 32), (4096, 1024)] {
        for (name, strategy) in [
            ("workgroup", ReduceStrategy::Workgroup),
            ("serial", ReduceStrategy::Serial),
        ] {
            let id = BenchmarkId::new(name, format!("{rows}x{len}"));
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    let view = Rows {
                        buf: &x,
                        offset: 0,
                        rows,
                        len,
                        row_stride: len,
                        col_stride: 1,
                    };
                    rk::reduce_rows(&gpu, ReduceOp::Sum, strategy, view, &out, 0, 1.0).unwrap();
                    gpu.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul, add, sum);
criterion_main!(benches);
