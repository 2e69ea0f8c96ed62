//! LayerNorm and RMSNorm, forward + backward: the fused kernels (`norm.wgsl`, `ops::norm::
//! layer_norm` / `rms_norm`) against the same norms composed from primitive ops (`*_composed`, the
//! baseline), measured in the same run, in GB/s (criterion's "bytes/s" with
//! `Throughput::Bytes(5 x 4 R D)`: the least traffic of the pair is reading x and writing y
//! forward, and reading x and the upstream gradient and writing dx backward; the (D) parameters
//! and their gradients are not counted).
//!
//! Run with `cargo bench --bench norm`. Each timed iteration clears the gradients, runs the norm,
//! `backward` from its sum, then `gpu.sync()`; inputs are on the device before timing, and one
//! untimed iteration of each case first compiles its pipelines. Shape: a transformer's
//! activations, (R, D) = (2048, 768).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::Tensor;
use kiln::ops::norm;

mod common;

/// (R, D): rows and the normalised width.
const SHAPE: (usize, usize) = (2048, 768);
const EPS: f32 = 1e-5;

type NormFn = fn(&Tensor, &Tensor, &Tensor) -> kiln::Result<Tensor>;

fn norms(c: &mut Criterion) {
    let gpu = common::device(|| "norm forward + backward".into());
    let (rows, d) = SHAPE;
    let x = Tensor::randn_on(&gpu, &[rows, d], 1)
        .unwrap()
        .requires_grad();
    let w = Tensor::randn_on(&gpu, &[d], 2)
        .and_then(|t| t.mul_scalar(0.1))
        .and_then(|t| t.add_scalar(1.0))
        .unwrap()
        .requires_grad();
    let b = Tensor::randn_on(&gpu, &[d], 3).unwrap().requires_grad();
    let cases: [(&str, NormFn); 4] = [
        ("layer_norm/fused", |x, w, b| {
            norm::layer_norm(x, Some(w), Some(b), EPS)
        }),
        ("layer_norm/composed", |x, w, b| {
            norm::layer_norm_composed(x, Some(w), Some(b), EPS)
        }),
        ("rms_norm/fused", |x, w, _| norm::rms_norm(x, Some(w), EPS)),
        ("rms_norm/composed", |x, w, _| {
            norm::rms_norm_composed(x, Some(w), EPS)
        }),
    ];
    let mut group = common::group(c, "norm_fwd_bwd", 500, 3);
    group.throughput(Throughput::Bytes(5 * 4 * (rows * d) as u64));
    let step = |f: NormFn| {
        for leaf in [&x, &w, &b] {
            leaf.clear_grad();
        }
        f(&x, &w, &b).unwrap().sum().unwrap().backward().unwrap();
        gpu.sync().unwrap();
    };
    for (name, f) in cases {
        step(f); // compiles the pipelines, outside the timing
        group.bench_function(format!("{name}/{rows}x{d}"), |bench| bench.iter(|| step(f)));
    }
    group.finish();
}

criterion_group!(benches, norms);
criterion_main!(benches);
