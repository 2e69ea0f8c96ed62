//! One Adam training step of kiln's default models, in GFLOP/s of the forward and backward
//! matmuls / convolutions (criterion's "elem/s" with `Throughput::Elements(3 x forward FLOPs)`:
//! the backward pass does twice the forward's multiply-adds; Adam's own work is not counted).
//!
//! Run with `cargo bench --bench train_step`. Each timed iteration is forward (through the
//! cross-entropy loss), backward, `step` and `zero_grad`, then `gpu.sync()`; the batch is on the
//! device before timing. `kiln bench` reports the same steps split into phases.
//!
//! - `mlp`: 784-256-10 (ReLU), batch 128;
//! - `cnn`: conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU, max-pool 2,
//!   linear 32*7*7 -> 10, batch 64 on 28 x 28.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::Tensor;
use kiln::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use kiln::ops::Conv2dOptions;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::launch::conv::Conv2dShape;

mod common;

fn labels(gpu: &std::sync::Arc<kiln::Gpu>, b: usize) -> Tensor {
    let y: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    Tensor::from_slice_on(gpu, &y, &[b]).unwrap()
}

fn bench_step(c: &mut Criterion, name: &str, model: Sequential, x: Tensor, y: Tensor, flops: u64) {
    let gpu = x.gpu().clone();
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3)).unwrap();
    let mut group = common::group(c, "train_step", 500, 3);
    group.throughput(Throughput::Elements(3 * flops));
    group.bench_function(name, |bench| {
        bench.iter(|| {
            let loss = model.forward(&x).unwrap().cross_entropy(&y).unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            opt.zero_grad().unwrap();
            gpu.sync().unwrap();
        })
    });
    group.finish();
}

fn mlp(c: &mut Criterion) {
    let gpu = common::device(|| "Adam training steps".into());
    let b = 128;
    let model = Sequential::new()
        .with(Linear::new_on(&gpu, 784, 256, true).unwrap())
        .with(ReLU)
        .with(Linear::new_on(&gpu, 256, 10, true).unwrap());
    let x = Tensor::randn_on(&gpu, &[b, 784], 0).unwrap();
    let flops = 2 * (b * (784 * 256 + 256 * 10)) as u64;
    bench_step(c, "mlp_784_256_10_b128", model, x, labels(&gpu, b), flops);
}

fn cnn(c: &mut Criterion) {
    let gpu = common::device(|| "Adam training steps".into());
    let b = 64;
    let pad1 = Conv2dOptions {
        padding: (1, 1),
        ..Default::default()
    };
    let model = Sequential::new()
        .with(Conv2d::new_on(&gpu, 1, 16, (3, 3), pad1).unwrap())
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Conv2d::new_on(&gpu, 16, 32, (3, 3), pad1).unwrap())
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Flatten::default())
        .with(Linear::new_on(&gpu, 32 * 7 * 7, 10, true).unwrap());
    let conv = |c_in, c_out, hw| Conv2dShape::new(b, c_in, c_out, (hw, hw), (3, 3)).padded((1, 1));
    let flops = conv(1, 16, 28).flops() + conv(16, 32, 14).flops() + 2 * (b * 1568 * 10) as u64;
    let x = Tensor::randn_on(&gpu, &[b, 1, 28, 28], 0).unwrap();
    bench_step(c, "cnn_28x28_b64", model, x, labels(&gpu, b), flops);
}

criterion_group!(benches, mlp, cnn);
criterion_main!(benches);
