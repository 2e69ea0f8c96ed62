//! Transformer pieces, each beside its baseline in the same run:
//!
//! - `bias_gelu`: the fused bias + GELU kernel (`ops::bias_gelu::bias_gelu`, both forms) against the
//!   composed add then GELU (`bias_gelu_composed`), and the bias add and the erf GELU alone,
//!   forward only at (R, N) = (512, 3072) (a GPT-2 MLP's hidden activations), in GB/s
//!   (`Throughput::Bytes(2 x 4 R N)`: one read of x and one write of y).
//! - `transformer_block_step`: one training step of a pre-norm GPT block (`nn::TransformerBlock`:
//!   LayerNorm, causal multi-head attention, LayerNorm, MLP with GELU) on x (B, T, C) =
//!   (4, 64, 128), 4 heads, hidden 4C: forward, backward from the sum, Adam `step`, `zero_grad`,
//!   in GFLOP/s (`Throughput::Elements(3 x forward FLOPs)`, the forward being the projections'
//!   `2 B T (4 C^2 + 2 C 4C)` plus attention's `4 B T^2 C` counted unmasked; the backward does
//!   twice the forward's multiply-adds). Beside it, the forward alone under `no_grad` with
//!   `Throughput::Elements(forward FLOPs)`: a step at the forward's rate would take 3x its time,
//!   so the ratio of the two rates tells what backward and Adam cost beyond their FLOPs.
//!
//! Run with `cargo bench --bench transformer` (add `-- bias_gelu` for one group). Every timed
//! iteration waits for the device (`gpu.sync()`); inputs are on the device before timing, and one
//! untimed call of each case first compiles its pipelines (seconds on lavapipe).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::Tensor;
use kiln::nn::{AttentionConfig, BlockConfig, Module, TransformerBlock};
use kiln::ops::bias_gelu::{GeluForm, bias_gelu, bias_gelu_composed, gelu};
use kiln::optim::{Adam, AdamConfig, Optimizer};

mod common;

fn bias_gelu_group(c: &mut Criterion) {
    let gpu = common::device(|| "transformer pieces".into());
    let (rows, n) = (512usize, 3072usize);
    let x = Tensor::randn_on(&gpu, &[rows, n], 1).unwrap();
    let b = Tensor::randn_on(&gpu, &[n], 2).unwrap();
    let _ng = kiln::no_grad();
    let mut group = common::group(c, "bias_gelu", 300, 2);
    group.throughput(Throughput::Bytes(2 * 4 * (rows * n) as u64));
    let shape = format!("{rows}x{n}");
    let mut run = |name: String, f: &dyn Fn() -> kiln::Result<Tensor>| {
        f().unwrap(); // compiles the pipeline, outside the timing
        group.bench_function(format!("{name}/{shape}"), |bench| {
            bench.iter(|| {
                f().unwrap();
                gpu.sync().unwrap();
            })
        });
    };
    run("add_bias".into(), &|| x.add(&b));
    run("gelu_erf".into(), &|| gelu(&x, GeluForm::Erf));
    for form in [GeluForm::Erf, GeluForm::Tanh] {
        let tag = format!("{form:?}").to_lowercase();
        run(format!("composed_{tag}"), &|| {
            bias_gelu_composed(&x, &b, form)
        });
        run(format!("fused_{tag}"), &|| bias_gelu(&x, &b, form));
    }
    group.finish();
}

fn block_step(c: &mut Criterion) {
    let gpu = common::device(|| "transformer pieces".into());
    let (b, t, ch, heads) = (4usize, 64usize, 128usize, 4usize);
    let hidden = 4 * ch;
    let cfg = BlockConfig {
        attn: AttentionConfig {
            d_model: ch,
            n_heads: heads,
            n_kv_heads: heads,
            causal: true,
            rope_base: None,
            bias: true,
        },
        mlp_hidden: hidden,
        dropout: 0.0,
        eps: 1e-5,
        gelu: GeluForm::Tanh,
        rms_norm: false,
        swiglu: false,
        mlp_bias: true,
    };
    kiln::nn::manual_seed(0);
    let block = TransformerBlock::new_on(&gpu, cfg).unwrap();
    let mut opt = Adam::new(block.named_parameters(), AdamConfig::adam(1e-3)).unwrap();
    let x = Tensor::randn_on(&gpu, &[b, t, ch], 1).unwrap();
    let forward_flops = 2 * (b * t * (4 * ch * ch + 2 * ch * hidden)) + 4 * b * t * t * ch;
    let mut group = common::group(c, "transformer_block_step", 500, 3);
    group.throughput(Throughput::Elements(3 * forward_flops as u64));
    let mut step = || {
        let loss = block.forward(&x).and_then(|y| y.sum()).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        opt.zero_grad().unwrap();
        gpu.sync().unwrap();
    };
    step(); // compiles the pipelines (seconds on lavapipe), outside the timing
    group.bench_function(format!("adam/b{b}_t{t}_c{ch}_h{heads}"), |bench| {
        bench.iter(&mut step)
    });
    group.throughput(Throughput::Elements(forward_flops as u64));
    let _ng = kiln::no_grad();
    block.forward(&x).unwrap();
    group.bench_function(format!("forward/b{b}_t{t}_c{ch}_h{heads}"), |bench| {
        bench.iter(|| {
            block.forward(&x).unwrap();
            gpu.sync().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bias_gelu_group, block_step);
criterion_main!(benches);
