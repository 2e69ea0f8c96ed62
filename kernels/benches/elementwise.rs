//! Memory-bound kernel benchmarks in GB/s (criterion's "B/s" with `Throughput::Bytes` of the
//! minimal traffic: every input read once, every output written once), each beside a baseline
//! measured in the same run.
//!
//! Run with `cargo bench -p kiln-kernels --bench elementwise` (add `-- softmax` to run one group). Every timed
//! iteration records the kernel and waits for the device (`gpu.sync()`); buffers are allocated
//! and filled once, outside the timing.
//!
//! Groups (4M f32 = 2048 x 2048 unless said otherwise):
//! - `add`: `c = a + b` contiguous (collapsed to one dim) against `b` read through a transposed
//!   view (the baseline: strided index arithmetic and uncoalesced reads); 12 bytes per element.
//! - `unary`: relu, contiguous against a transposed input view; 8 bytes per element.
//! - `sum`: row sums as 32 rows of 128K and as 4096 rows of 1024: the workgroup strategy (256
//!   invocations per row, a shared-memory tree) against the serial one (one invocation loops
//!   over a row, the baseline); 4 bytes per element read.
//! - `softmax`: 4096 rows of 1024, workgroup against serial; 8 bytes per element.

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use kiln_kernels::launch::elementwise::{self as ew, BinaryOp, Strided, UnaryOp};
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode};

mod common;

use common::{filled, time};

const SIDE: usize = 2048;
const N: usize = SIDE * SIDE;

fn device() -> std::sync::Arc<kiln_kernels::Gpu> {
    common::device(|| "elementwise, reductions, softmax".into())
}

/// The kernel benches' group ([`common::group`]) counting `bytes` of traffic per iteration.
fn configure<'a>(c: &'a mut Criterion, name: &str, bytes: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut group = common::group(c, name);
    group.throughput(Throughput::Bytes(bytes));
    group
}

/// Views of a (SIDE, SIDE) operand: contiguous, and the baseline read through swapped strides.
const VIEWS: [(&str, [usize; 2]); 2] = [("contiguous", [SIDE, 1]), ("transposed", [1, SIDE])];

fn add(c: &mut Criterion) {
    let gpu = device();
    let (a, b) = (filled(&gpu, N), filled(&gpu, N));
    let out = gpu.alloc(4 * N as u64, "c").unwrap();
    let shape = [SIDE, SIDE];
    let mut group = configure(c, "add", 3 * 4 * N as u64);
    for (name, b_strides) in VIEWS {
        let (a, b) = (
            Strided::contiguous(&a, &shape),
            Strided::new(&b, 0, &b_strides),
        );
        let out = Strided::contiguous(&out, &shape);
        time(
            &mut group,
            BenchmarkId::new(format!("b_{name}"), "4M"),
            &gpu,
            || {
                let (a, b, out) = (a.clone(), b.clone(), out.clone());
                ew::binary(&gpu, BinaryOp::Add, &shape, a, b, out, 0.0)
            },
        );
    }
    group.finish();
}

fn unary(c: &mut Criterion) {
    let gpu = device();
    let x = filled(&gpu, N);
    let out = gpu.alloc(4 * N as u64, "y").unwrap();
    let shape = [SIDE, SIDE];
    let mut group = configure(c, "unary", 2 * 4 * N as u64);
    for (name, strides) in VIEWS {
        let (x, out) = (
            Strided::new(&x, 0, &strides),
            Strided::contiguous(&out, &shape),
        );
        time(
            &mut group,
            BenchmarkId::new(format!("relu_{name}"), "4M"),
            &gpu,
            || {
                let (x, out) = (x.clone(), out.clone());
                ew::unary(&gpu, UnaryOp::Relu, &shape, x, out, 0.0, 0.0)
            },
        );
    }
    group.finish();
}

const STRATEGIES: [(&str, ReduceStrategy); 2] = [
    ("workgroup", ReduceStrategy::Workgroup),
    ("serial", ReduceStrategy::Serial),
];

fn rows(buf: &kiln_kernels::GpuBuffer, rows: usize, len: usize) -> Rows<'_> {
    Rows::contiguous(buf, rows, len)
}

fn sum(c: &mut Criterion) {
    let gpu = device();
    let x = filled(&gpu, N);
    let out = gpu.alloc(4 * 4096, "sums").unwrap();
    let mut group = configure(c, "sum", 4 * N as u64);
    // The serial strategy cannot take one row of 4M on lavapipe (an invocation's loops stop after
    // 65,535 iterations), so the 4M floats are 32 long rows, or 4096 short ones.
    for (r, len) in [(32, N / 32), (4096, 1024)] {
        for (name, strategy) in STRATEGIES {
            let view = rows(&x, r, len);
            time(
                &mut group,
                BenchmarkId::new(name, format!("{r}x{len}")),
                &gpu,
                || rk::reduce_rows(&gpu, ReduceOp::Sum, strategy, view, &out, 0, 1.0),
            );
        }
    }
    group.finish();
}

fn softmax(c: &mut Criterion) {
    let gpu = device();
    let x = filled(&gpu, N);
    let out = gpu.alloc(4 * N as u64, "p").unwrap();
    let mut group = configure(c, "softmax", 2 * 4 * N as u64);
    for (name, strategy) in STRATEGIES {
        let view = rows(&x, 4096, 1024);
        time(
            &mut group,
            BenchmarkId::new(name, "4096x1024"),
            &gpu,
            || sk::softmax_rows(&gpu, SoftmaxMode::Softmax, strategy, view, &out, 0),
        );
    }
    group.finish();
}

criterion_group!(benches, add, unary, sum, softmax);
criterion_main!(benches);
