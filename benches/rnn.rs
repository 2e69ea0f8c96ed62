//! One recurrent layer, forward and backward through time: the fused layer (`ops::rnn_layer`, one
//! graph node and one gate kernel per step) against the same layer composed step by step from
//! primitive ops (`ops::rnn_cell_composed`, the baseline), measured in the same run, in GFLOP/s
//! of matmul work (criterion's "elem/s" with `Throughput::Elements(3 x 2 B T G H (I + H))`: the
//! backward pass does twice the forward's multiply-adds; the gate math is not counted).
//!
//! Run with `cargo bench --bench rnn`. Each timed iteration clears the gradients, runs the layer
//! and `backward` on the sum of its outputs, then `gpu.sync()`; inputs and weights are on the
//! device before timing, and one untimed iteration of each variant first compiles its pipelines
//! (seconds on lavapipe, which `--quick` would otherwise measure). Shape: LSTM,
//! (B, T, I, H) = (32, 32, 64, 128).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::Tensor;
use kiln::ops::{RnnCell, RnnLayerParams, rnn_cell_composed, rnn_layer};

mod common;

/// (B, T, I, H).
const SHAPE: (usize, usize, usize, usize) = (32, 32, 64, 128);

fn lstm_fused_vs_composed(c: &mut Criterion) {
    let gpu = common::device(|| "LSTM layer forward + backward".into());
    let (b, t_n, i, h) = SHAPE;
    let cell = RnnCell::Lstm;
    let gw = cell.gates() * h;
    let x = Tensor::randn_on(&gpu, &[b, t_n, i], 1)
        .unwrap()
        .requires_grad();
    let scaled = |shape: &[usize], seed| {
        Tensor::randn_on(&gpu, shape, seed)
            .and_then(|t| t.mul_scalar(0.1))
            .unwrap()
            .requires_grad()
    };
    // (G*H, I), (G*H, H), (G*H), (G*H)
    let w = [
        scaled(&[gw, i], 2),
        scaled(&[gw, h], 3),
        scaled(&[gw], 4),
        scaled(&[gw], 5),
    ];
    let p = RnnLayerParams {
        weight_ih: &w[0],
        weight_hh: &w[1],
        bias_ih: Some(&w[2]),
        bias_hh: Some(&w[3]),
    };
    let h0 = Tensor::zeros_on(&gpu, &[b, h]).unwrap();
    let fused = || {
        rnn_layer(cell, &x, None, None, p)
            .unwrap()
            .output
            .sum()
            .unwrap()
    };
    let composed = || {
        let (mut hc, mut cc) = (h0.clone(), h0.clone());
        let mut total: Option<Tensor> = None;
        for t in 0..t_n {
            let xt = x.narrow(1, t, 1).unwrap().reshape(&[b, i]).unwrap();
            let (hn, cn) = rnn_cell_composed(cell, &xt, &hc, Some(&cc), p).unwrap();
            let s = hn.sum().unwrap();
            total = Some(match total {
                Some(a) => a.add(&s).unwrap(),
                None => s,
            });
            (hc, cc) = (hn, cn.expect("the LSTM returns c"));
        }
        total.expect("T >= 1")
    };
    let flops = 3 * 2 * (b * t_n * gw * (i + h)) as u64;
    let mut group = common::group(c, "lstm_layer_fwd_bwd", 500, 3);
    group.throughput(Throughput::Elements(flops));
    let name = format!("b{b}_t{t_n}_i{i}_h{h}");
    let step = |f: &dyn Fn() -> Tensor| {
        for leaf in w.iter().chain([&x]) {
            leaf.clear_grad();
        }
        f().backward().unwrap();
        gpu.sync().unwrap();
    };
    for (variant, f) in [
        ("fused", &fused as &dyn Fn() -> Tensor),
        ("composed", &composed),
    ] {
        step(f); // compiles the pipelines (seconds on lavapipe), outside the timing
        group.bench_function(format!("{variant}/{name}"), |bench| bench.iter(|| step(f)));
    }
    group.finish();
}

criterion_group!(benches, lstm_fused_vs_composed);
criterion_main!(benches);
