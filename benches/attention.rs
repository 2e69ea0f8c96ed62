//! Attention benchmarks: the fused kernels (`shaders/attention/`) against the composition from
//! primitives (`attention_composed`: matmul, where, softmax, matmul, materialising the
//! (B, H, T, T) scores), measured in the same run, in GFLOP/s (criterion's "elem/s"):
//!
//! - forward: `Throughput::Elements(4 B H Tq Tk D)` (two products of 2 B H Tq Tk D);
//! - forward + backward: `3.5 x` that (the backward does about 2.5 x the forward's work: the
//!   fused one recomputes `q . k` in both of its passes).
//!
//! Before the timings it prints the device memory (the pool's peak live bytes) of one forward +
//! backward at T = 128, 256, 512, fused against composed: the fused version grows linearly in T,
//! the composed one quadratically.
//!
//! The rungs of the ladder are also timed one against another through the launchers
//! (`attention_rungs_forward`, `attention_rungs_fwd_bwd`): `Row`, `Block` and `Tiled` (the
//! flash-attention tiles in workgroup memory, at a few tile sizes), same shapes, same units.
//!
//! Run with `cargo bench --bench attention` (add `-- forward` for one group). Every timed
//! iteration records the kernels and waits for the device (`gpu.sync()`); inputs are uploaded
//! once, outside the timing. Shapes: B = 4, H = 4, D = 32, T = 128 and 256 (self-attention,
//! causal off).

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::ops::{AttentionOptions, attention_composed, scaled_dot_product_attention};
use kiln::{Gpu, Tensor};
use kiln_kernels::launch::attention::{
    self as ak, AttnConfig, AttnInputs, AttnShape, AttnTiles, AttnVariant,
};

mod common;

const B: usize = 4;
const H: usize = 4;
const D: usize = 32;

type AttnFn = fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> kiln::Result<Tensor>;

const IMPLS: [(&str, AttnFn); 2] = [
    ("fused", scaled_dot_product_attention),
    ("composed", attention_composed),
];

fn inputs(gpu: &Arc<Gpu>, t: usize, grad: bool) -> [Tensor; 3] {
    [1, 2, 3].map(|s| {
        let x = Tensor::randn_on(gpu, &[B, H, t, D], s).unwrap();
        if grad { x.requires_grad() } else { x }
    })
}

fn flops(t: usize) -> u64 {
    (4 * B * H * t * t * D) as u64
}

/// The work of one iteration at sequence length `t`: the forward's FLOPs, or 3.5 x them with
/// the backward.
fn work(t: usize, backward: bool) -> Throughput {
    Throughput::Elements(if backward { flops(t) * 7 / 2 } else { flops(t) })
}

/// The case name of sequence length `t`.
fn case(t: usize) -> String {
    format!("b{B}_h{H}_t{t}_d{D}")
}

/// Peak bytes above the starting live bytes of one forward + backward at sequence length `t`,
/// on a private device (so nothing else shares the pool counters).
fn peak_bytes(f: AttnFn, t: usize) -> u64 {
    let gpu = Gpu::new().unwrap();
    let [q, k, v] = inputs(&gpu, t, true);
    gpu.sync().unwrap();
    let base = gpu.live_bytes();
    gpu.reset_peak();
    let o = f(&q, &k, &v, &AttentionOptions::default()).unwrap();
    o.sum().unwrap().backward().unwrap();
    gpu.sync().unwrap();
    gpu.peak_bytes() - base
}

fn memory_report() {
    eprintln!("attention fwd+bwd peak device memory above the inputs, B{B} H{H} D{D}:");
    eprintln!("| T | fused (MiB) | composed (MiB) | composed / fused |");
    for t in [128, 256, 512] {
        let fused = peak_bytes(IMPLS[0].1, t) as f64 / (1 << 20) as f64;
        let comp = peak_bytes(IMPLS[1].1, t) as f64 / (1 << 20) as f64;
        eprintln!("| {t} | {fused:.2} | {comp:.2} | {:.1}x |", comp / fused);
    }
}

fn group_for(c: &mut Criterion, name: &str, backward: bool) {
    let gpu = common::device(|| "fused attention vs composed".into());
    let mut group = common::group(c, name, 300, 2);
    for t in [128, 256] {
        let [q, k, v] = inputs(&gpu, t, backward);
        let opts = AttentionOptions::default();
        group.throughput(work(t, backward));
        for (label, f) in IMPLS {
            group.bench_function(BenchmarkId::new(label, case(t)), |bench| {
                bench.iter(|| {
                    if backward {
                        let o = f(&q, &k, &v, &opts).unwrap();
                        o.sum().unwrap().backward().unwrap();
                        for x in [&q, &k, &v] {
                            x.clear_grad();
                        }
                    } else {
                        let _g = kiln::no_grad();
                        f(&q, &k, &v, &opts).unwrap();
                    }
                    gpu.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}

/// The rungs timed against one another: row, block, and the tiled kernels at a few tile sizes.
fn rung_configs() -> Vec<AttnConfig> {
    let untiled = [AttnVariant::Row, AttnVariant::Block, AttnVariant::Panel].map(AttnConfig::of);
    let tiled = [(8, 64), (16, 64), (32, 64), (16, 32)].map(|(wg, bc)| AttnConfig {
        variant: AttnVariant::Tiled,
        tiles: AttnTiles { wg, bc },
    });
    untiled.into_iter().chain(tiled).collect()
}

/// Each rung through the launchers: forward, or forward + backward (`backward`).
fn rungs_for(c: &mut Criterion, name: &str, backward: bool) {
    let gpu = common::device(|| "attention rungs".into());
    let mut group = common::group(c, name, 300, 2);
    for t in [128, 256] {
        let [q, k, v] = inputs(&gpu, t, false);
        let dout = Tensor::randn_on(&gpu, &[B, H, t, D], 4).unwrap();
        let n = (B * H * t * D) as u64;
        let alloc = |bytes: u64| gpu.alloc(bytes, "attention bench").unwrap();
        let (o, lse) = (alloc(4 * n), alloc(4 * (B * H * t) as u64));
        let (dq, dk, dv) = (alloc(4 * n), alloc(4 * n), alloc(4 * n));
        let s = AttnShape {
            batch: B,
            heads: H,
            tq: t,
            tk: t,
            d: D,
            scale: 1.0 / (D as f32).sqrt(),
            causal: false,
        };
        group.throughput(work(t, backward));
        for cfg in rung_configs() {
            group.bench_function(BenchmarkId::new(cfg.name(), case(t)), |bench| {
                bench.iter(|| {
                    let (q, k, v) = (q.operand(), k.operand(), v.operand());
                    let x = AttnInputs {
                        q,
                        k,
                        v,
                        keep: None,
                    };
                    ak::forward(&gpu, &s, cfg, x, (&o, &lse), 0).unwrap();
                    if backward {
                        let (g, grads) = (dout.kernel_view().buf, (&dq, &dk, &dv));
                        ak::backward(&gpu, &s, cfg, x, g, (&o, &lse), grads, 0).unwrap();
                    }
                    gpu.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}

fn rungs(c: &mut Criterion) {
    rungs_for(c, "attention_rungs_forward", false);
    rungs_for(c, "attention_rungs_fwd_bwd", true);
}

fn forward(c: &mut Criterion) {
    memory_report();
    group_for(c, "attention_forward", false);
}

fn forward_backward(c: &mut Criterion) {
    group_for(c, "attention_fwd_bwd", true);
}

criterion_group!(benches, rungs, forward, forward_backward);
criterion_main!(benches);
