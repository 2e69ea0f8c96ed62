//! Convolution benchmarks: every rung of the conv ladder (direct, the reference, beside the
//! implicit GEMM) for the forward and both backward passes, measured in the same run, in GFLOP/s
//! (criterion's "elem/s" with `Throughput::Elements(2 N C_out OH OW C_in/groups KH KW)`; each
//! backward pass does the same number of multiply-adds as the forward).
//!
//! Run with `cargo bench -p kiln-kernels --bench conv` (add `-- forward` to run one pass). Every timed iteration
//! records the kernels and waits for the device (`gpu.sync()`); buffers are allocated and filled
//! once, outside the timing. The weight gradient includes its split-K sum.
//!
//! Shapes: batch 32, 16 -> 32 channels, 14 x 14, 3 x 3, padding 1 (a small CNN's middle layer),
//! LeNet's first layer: batch 32, 1 -> 6 channels, 28 x 28, 5 x 5, and a ResNet block's
//! convolution: batch 32, 64 -> 64 channels, 8 x 8, 3 x 3, padding 1.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvVariant};

mod common;

use common::{filled, time};

/// The process-wide device, announced once with the default rung.
fn device() -> std::sync::Arc<kiln_kernels::Gpu> {
    common::device(|| format!("default conv rung: {}", ConvVariant::default().name()))
}

fn cases() -> Vec<(&'static str, Conv2dShape)> {
    let k3 = |c_in, c_out, hw| Conv2dShape::new(32, c_in, c_out, (hw, hw), (3, 3)).padded((1, 1));
    vec![
        ("32x16x14x14_to_32_k3", k3(16, 32, 14)),
        (
            "lenet_32x1x28x28_to_6_k5",
            Conv2dShape::new(32, 1, 6, (28, 28), (5, 5)),
        ),
        // A ResNet basic block's 3 x 3 convolution at CIFAR's last stage size.
        ("resnet_32x64x8x8_to_64_k3", k3(64, 64, 8)),
    ]
}

#[derive(Clone, Copy)]
enum Pass {
    Forward,
    GradInput,
    GradWeight,
}

fn bench_pass(c: &mut Criterion, name: &str, pass: Pass) {
    let gpu = device();
    let mut group = common::group(c, name);
    for (case, s) in cases() {
        let numel = |sh: [usize; 4]| sh.iter().product::<usize>();
        let x = filled(&gpu, numel(s.input_shape()));
        let w = filled(&gpu, numel(s.weight_shape()));
        let b = filled(&gpu, s.c_out);
        let y = filled(&gpu, numel(s.output_shape()));
        let out = filled(&gpu, numel(s.output_shape()));
        let dx = filled(&gpu, numel(s.input_shape()));
        let dw = filled(&gpu, numel(s.weight_shape()));
        group.throughput(Throughput::Elements(s.flops()));
        for v in ConvVariant::ALL {
            time(
                &mut group,
                BenchmarkId::new(v.name(), case),
                &gpu,
                || match pass {
                    Pass::Forward => ck::conv2d_forward(&gpu, v, &s, &x, &w, Some(&b), &out),
                    Pass::GradInput => ck::conv2d_grad_input(&gpu, v, &s, &w, &y, &dx),
                    Pass::GradWeight => ck::conv2d_grad_weight(&gpu, v, &s, &x, &y, &dw),
                },
            );
        }
    }
    group.finish();
}

fn forward(c: &mut Criterion) {
    bench_pass(c, "conv_forward", Pass::Forward);
}

fn grad_input(c: &mut Criterion) {
    bench_pass(c, "conv_grad_input", Pass::GradInput);
}

fn grad_weight(c: &mut Criterion) {
    bench_pass(c, "conv_grad_weight", Pass::GradWeight);
}

criterion_group!(benches, forward, grad_input, grad_weight);
criterion_main!(benches);
