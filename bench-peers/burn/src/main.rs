//! Burn 0.22 (wgpu backend: CubeCL kernels, autotune and fusion on) timed on the cases of kiln's
//! issue 7, so that kiln can be compared with it in the same run on the same adapter.
//!
//! Prints one JSON object per case on stdout:
//! `{"peer":"burn","op":..,"shape":..,"variant":..,"ms_median":..,"gflops":..,"samples":..,
//! "adapter":..}` (the device is the default adapter on Vulkan).
//! (progress and notes go to stderr).
//!
//! Cases (`--only a,b` picks some; names: matmul, attention, mlp, cnn):
//! - `matmul`: f32 `A @ B` at 256^3, 512^3, 1024^3 and batched 8 x (128x64 @ 64x128);
//!   GFLOP/s = 2 M N K batch / time.
//! - `attention`: B4 H4 T128 D32 self-attention forward, not causal, through Burn's
//!   `burn::tensor::module::attention` (`variant` "fused": the backend autotunes between its
//!   flash kernels and its multi-kernel fallback) and through the composition
//!   `softmax(q k^T / sqrt(d)) v` (`variant` "composed"); FLOPs = 4 B H T T D.
//! - `mlp`: one Adam step (forward, cross-entropy, backward, optimizer) of a 784-256-10 MLP with
//!   ReLU at batch 128, as kiln's `examples/mlp_step.rs`.
//! - `cnn`: one Adam step of conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1,
//!   ReLU, max-pool 2, linear 32*7*7 -> 10 at batch 64 on 1x28x28, as kiln's
//!   `examples/cnn_step.rs`.
//!
//! Timing: warm-up calls first (CubeCL autotunes on first use and compiles kernels), then each
//! sample is one timed region ending in `Device::sync`; the median sample is reported. For the
//! kernels a region is one call (outputs stay alive until after the sync, so fusion cannot drop
//! them). For training steps a region is `--steps` consecutive steps and one sync, divided by the
//! step count, which is what kiln's examples time (they sync once after all their steps).

use std::sync::OnceLock;
use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::wgpu::WgpuBackend;

/// The adapter's name, as wgpu reports it (for the JSON lines).
static ADAPTER: OnceLock<String> = OnceLock::new();

/// Command-line settings.
struct Args {
    only: Option<Vec<String>>,
    samples: usize,
    steps: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        only: None,
        samples: 15,
        steps: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--only" => {
                args.only = Some(value("--only").split(',').map(str::to_string).collect());
            }
            "--samples" => args.samples = number(&value("--samples")),
            "--steps" => args.steps = number(&value("--steps")),
            "-h" | "--help" => {
                eprintln!(
                    "usage: burn-peer-bench [--only matmul,attention,mlp,cnn] [--samples N] \
                     [--steps N]\n  --samples: timed regions per case (default 15)\n  \
                     --steps: training steps per timed region (default 10)"
                );
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other:?} (see --help)")),
        }
    }
    if let Some(only) = &args.only {
        for name in only {
            if !["matmul", "attention", "mlp", "cnn"].contains(&name.as_str()) {
                die(&format!("--only: unknown case {name:?}"));
            }
        }
    }
    args
}

fn number(s: &str) -> usize {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => die(&format!("expected a positive integer, got {s:?}")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("burn-peer-bench: {msg}");
    std::process::exit(2);
}

impl Args {
    fn wants(&self, case: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|c| c == case))
    }
}

fn sync(device: &Device) {
    if let Err(e) = device.sync() {
        die(&format!("device sync failed: {e:?}"));
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Times `samples` regions of `per` calls of `f` (each region ends in a device sync) after
/// `warm` untimed calls; returns the median time of one call in ms.
fn time_ms<T>(
    device: &Device,
    warm: usize,
    samples: usize,
    per: usize,
    mut f: impl FnMut() -> T,
) -> f64 {
    for _ in 0..warm {
        let out = f();
        sync(device);
        drop(out);
    }
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let mut outs = Vec::with_capacity(per);
        for _ in 0..per {
            outs.push(f());
        }
        sync(device);
        ms.push(t.elapsed().as_secs_f64() * 1e3 / per as f64);
        drop(outs);
    }
    median(ms)
}

fn emit(op: &str, shape: &str, variant: &str, ms: f64, flops: Option<f64>, samples: usize) {
    let gflops = match flops {
        Some(f) => format!("{:.3}", f / (ms * 1e-3) / 1e9),
        None => "null".to_string(),
    };
    println!(
        "{{\"peer\":\"burn\",\"op\":\"{op}\",\"shape\":\"{shape}\",\"variant\":\"{variant}\",\
         \"ms_median\":{ms:.4},\"gflops\":{gflops},\"samples\":{samples},\"adapter\":{:?}}}",
        ADAPTER.get().map_or("?", String::as_str)
    );
}

fn randn<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Checks a few entries of `c = a @ b` (2-D) against f64 sums on the CPU, so a kernel that
/// silently did nothing cannot be timed as fast.
fn check_matmul(a: &Tensor<2>, b: &Tensor<2>, c: &Tensor<2>) {
    let [m, k] = a.dims();
    let n = b.dims()[1];
    let (av, bv, cv) = (vec_of(a), vec_of(b), vec_of(c));
    for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3), (m / 3, n - 1)] {
        let want: f64 = (0..k)
            .map(|p| av[i * k + p] as f64 * bv[p * n + j] as f64)
            .sum();
        let got = cv[i * n + j] as f64;
        if (got - want).abs() > 1e-3 * (k as f64).sqrt() * (1.0 + want.abs()) {
            die(&format!(
                "matmul {m}x{k}x{n}: c[{i},{j}] = {got}, expected {want}"
            ));
        }
    }
}

fn vec_of<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_else(|e| die(&format!("reading a tensor back failed: {e:?}")))
}

fn bench_matmul(device: &Device, args: &Args) {
    for n in [256usize, 512, 1024] {
        let a = randn([n, n], device);
        let b = randn([n, n], device);
        check_matmul(&a, &b, &a.clone().matmul(b.clone()));
        let ms = time_ms(device, 5, args.samples, 1, || a.clone().matmul(b.clone()));
        let flops = 2.0 * (n * n * n) as f64;
        emit(
            "matmul",
            &format!("{n}x{n}x{n}"),
            "autotuned",
            ms,
            Some(flops),
            args.samples,
        );
    }
    let (batch, m, k, n) = (8usize, 128usize, 64usize, 128usize);
    let a: Tensor<3> = randn([batch, m, k], device);
    let b: Tensor<3> = randn([batch, k, n], device);
    let ms = time_ms(device, 5, args.samples, 1, || a.clone().matmul(b.clone()));
    let flops = 2.0 * (batch * m * n * k) as f64;
    emit(
        "matmul",
        "8x(128x64@64x128)",
        "autotuned",
        ms,
        Some(flops),
        args.samples,
    );
}

fn bench_attention(device: &Device, args: &Args) {
    let (b, h, t, d) = (4usize, 4usize, 128usize, 32usize);
    let q: Tensor<4> = randn([b, h, t, d], device);
    let k: Tensor<4> = randn([b, h, t, d], device);
    let v: Tensor<4> = randn([b, h, t, d], device);
    let shape = format!("b{b} h{h} t{t} d{d}");
    let flops = 4.0 * (b * h * t * t * d) as f64;
    let fused = || {
        attention(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            None,
            AttentionModuleOptions::default(),
        )
    };
    let scale = 1.0 / (d as f64).sqrt();
    let composed = || {
        let scores = q
            .clone()
            .matmul(k.clone().swap_dims(2, 3))
            .mul_scalar(scale);
        softmax(scores, 3).matmul(v.clone())
    };
    // The two must agree before either is timed.
    let (x, y) = (vec_of(&fused()), vec_of(&composed()));
    let worst = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    if !worst.is_finite() || worst > 1e-3 {
        die(&format!(
            "attention: fused and composed differ by up to {worst}"
        ));
    }
    let ms = time_ms(device, 5, args.samples, 1, fused);
    emit("attention", &shape, "fused", ms, Some(flops), args.samples);
    let ms = time_ms(device, 5, args.samples, 1, composed);
    emit(
        "attention",
        &shape,
        "composed",
        ms,
        Some(flops),
        args.samples,
    );
}

/// 784-256-10 with ReLU, as kiln's `examples/mlp_step.rs`.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    act: Relu,
    fc2: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(784, 256).init(device),
            act: Relu::new(),
            fc2: LinearConfig::new(256, 10).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}

/// The small CNN of kiln's `examples/cnn_step.rs`.
#[derive(Module, Debug)]
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    act: Relu,
    fc: Linear,
}

impl Cnn {
    fn new(device: &Device) -> Self {
        let pad1 = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Self {
            conv1: Conv2dConfig::new([1, 16], [3, 3])
                .with_padding(pad1.clone())
                .init(device),
            conv2: Conv2dConfig::new([16, 32], [3, 3])
                .with_padding(pad1)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            act: Relu::new(),
            fc: LinearConfig::new(32 * 7 * 7, 10).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.act.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.act.forward(self.conv2.forward(x)));
        self.fc.forward(x.flatten(1, 3))
    }
}

/// Labels `i % 10` for a batch, as kiln's examples use.
fn labels(batch: usize, device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    Tensor::from_data(TensorData::new(y, [batch]), device)
}

fn adam() -> ModuleOptimizer {
    // kiln's AdamConfig::adam(1e-3): betas 0.9 / 0.999, eps 1e-8, no weight decay.
    AdamConfig::new().with_epsilon(1e-8).init()
}

/// Times one training step: forward, cross-entropy, backward, Adam.
fn time_steps<M: Module>(
    device: &Device,
    args: &Args,
    mut model: M,
    step: impl Fn(&M, &CrossEntropyLoss) -> Tensor<1>,
) -> f64 {
    let mut opt = adam();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut one = |model: M| -> M {
        let loss = step(&model, &loss_fn);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        opt.step(1e-3, model, grads)
    };
    for _ in 0..5 {
        model = one(model);
    }
    sync(device);
    let mut ms = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let t = Instant::now();
        for _ in 0..args.steps {
            model = one(model);
        }
        sync(device);
        ms.push(t.elapsed().as_secs_f64() * 1e3 / args.steps as f64);
    }
    median(ms)
}

fn bench_mlp(device: &Device, args: &Args) {
    let x: Tensor<2> = randn([128, 784], device);
    let y = labels(128, device);
    let ms = time_steps(device, args, Mlp::new(device), |m, ce| {
        ce.forward(m.forward(x.clone()), y.clone())
    });
    emit(
        "mlp_step",
        "784-256-10 b128",
        "adam",
        ms,
        None,
        args.samples,
    );
}

fn bench_cnn(device: &Device, args: &Args) {
    let x: Tensor<4> = randn([64, 1, 28, 28], device);
    let y = labels(64, device);
    let ms = time_steps(device, args, Cnn::new(device), |m, ce| {
        ce.forward(m.forward(x.clone()), y.clone())
    });
    emit("cnn_step", "b64 1x28x28", "adam", ms, None, args.samples);
}

fn main() {
    let args = parse_args();
    // The wgpu runtime's default adapter (CUBECL_WGPU_DEFAULT_DEVICE overrides it) on Vulkan; on
    // the reference machine that is Mesa lavapipe.
    let (device, setup) = Device::wgpu_options()
        .graphics_api(WgpuBackend::Vulkan)
        .init_with_setup()
        .unwrap_or_else(|e| die(&format!("no Vulkan adapter for Burn's wgpu runtime: {e}")));
    let info = setup.adapter.get_info();
    let adapter = format!(
        "{} ({:?}, {} {})",
        info.name, info.backend, info.driver, info.driver_info
    );
    eprintln!("burn-peer-bench: burn 0.22.1 wgpu backend on {adapter}");
    ADAPTER.set(info.name.clone()).ok();
    let train = device.clone().autodiff();
    if args.wants("matmul") {
        bench_matmul(&device, &args);
    }
    if args.wants("attention") {
        bench_attention(&device, &args);
    }
    if args.wants("mlp") {
        bench_mlp(&train, &args);
    }
    if args.wants("cnn") {
        bench_cnn(&train, &args);
    }
}
