//! Recurrent layers: whole multi-layer sequences against the CPU stack, finite-difference
//! gradient checks of every input of a layer for each cell and through a two-layer stack,
//! agreement of one fused step with the same step composed from primitive ops
//! (`rnn_cell_composed`, forward and backward), PyTorch parameter names and init, and layers
//! without bias.

use crate::common;
use crate::rnn_util;

use common::*;
use kiln::Tensor;
use kiln::nn::{Gru, Lstm, Module, Rnn, RnnOptions, RnnState};
use kiln::ops::{RnnCell, RnnLayerParams, rnn_cell_composed, rnn_layer};
use kiln_kernels::launch::rnn::SeqDims;
use kiln_kernels::reference::rnn::{self as cpu, LayerWeights};
use rnn_util::*;

#[test]
fn two_layer_sequences_match_cpu_twin() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        for (b, t_n, i, h) in [(3, 7, 5, 17), (1, 17, 1, 7), (7, 1, 17, 1)] {
            let m = module(cell, RnnOptions::new(i, h).num_layers(2));
            let xs = rand_vec(b * t_n * i, seed("seq x") + k as u64, -1.0, 1.0);
            let h0 = rand_vec(2 * b * h, seed("seq h0") + k as u64, -1.0, 1.0);
            let c0 = rand_vec(2 * b * h, seed("seq c0") + k as u64, -1.0, 1.0);
            let state = RnnState {
                h: tensor(&h0, &[2, b, h]),
                c: (cell == RnnCell::Lstm).then(|| tensor(&c0, &[2, b, h])),
            };
            let out = m
                .forward_with(&tensor(&xs, &[b, t_n, i]), Some(&state))
                .unwrap();
            let d = SeqDims {
                batch: b,
                steps: t_n,
                hidden: h,
            };
            let want = cpu::stack_forward(
                cell,
                d,
                i,
                &f64s(&xs),
                &weights_of(&m),
                &f64s(&h0),
                &f64s(&c0),
            );
            let name = format!("{} (B, T, I, H) = ({b}, {t_n}, {i}, {h})", cell.name());
            assert_eq!(out.output.shape(), [b, t_n, h]);
            SEQ.assert_close(&format!("{name} output"), &f32s(&out.output), &want.output);
            SEQ.assert_close(&format!("{name} h_n"), &f32s(&out.state.h), &want.h_n);
            if let Some(c) = &out.state.c {
                SEQ.assert_close(&format!("{name} c_n"), &f32s(c), &want.c_n);
            }
        }
    }
}

/// Gradient check of one layer: output, h_n and (LSTM) c_n together, against x, weights,
/// biases and the initial state(s).
#[test]
fn layer_gradients_match_finite_differences() {
    let (b, t_n, i, h) = (2, 4, 3, 5);
    for (k, cell) in CELLS.into_iter().enumerate() {
        let k = k as u64 * 10;
        let w = rand_weights(cell, i, h, k);
        let gw = cell.gates() * h;
        let mut inputs = vec![
            Input::rand(&[b, t_n, i], seed("gc x") + k, -1.0, 1.0),
            Input::new(w.w_ih.clone(), &[gw, i]),
            Input::new(w.w_hh.clone(), &[gw, h]),
            Input::new(w.b_ih.clone(), &[gw]),
            Input::new(w.b_hh.clone(), &[gw]),
            Input::rand(&[b, h], seed("gc h0") + k, -1.0, 1.0),
        ];
        let lstm = cell == RnnCell::Lstm;
        if lstm {
            inputs.push(Input::rand(&[b, h], seed("gc c0") + k, -1.0, 1.0));
        }
        let d = SeqDims {
            batch: b,
            steps: t_n,
            hidden: h,
        };
        gradcheck(
            &format!("{} layer", cell.name()),
            &inputs,
            |ts| {
                let out = rnn_layer(
                    cell,
                    &ts[0],
                    Some(&ts[5]),
                    ts.get(6),
                    RnnLayerParams {
                        weight_ih: &ts[1],
                        weight_hh: &ts[2],
                        bias_ih: Some(&ts[3]),
                        bias_hh: Some(&ts[4]),
                    },
                )?;
                let mut parts = vec![
                    out.output.reshape(&[b * t_n * h])?,
                    out.h_n.reshape(&[b * h])?,
                ];
                if let Some(c) = out.c_n {
                    parts.push(c.reshape(&[b * h])?);
                }
                Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
            },
            |xs| {
                let w = LayerWeights {
                    w_ih: xs[1].clone(),
                    w_hh: xs[2].clone(),
                    b_ih: xs[3].clone(),
                    b_hh: xs[4].clone(),
                };
                let zeros = vec![0.0; b * h];
                let c0 = xs.get(6).unwrap_or(&zeros);
                let s = cpu::stack_forward(cell, d, i, &xs[0], &[w], &xs[5], c0);
                let mut v = s.output;
                v.extend(s.h_n);
                if lstm {
                    v.extend(s.c_n);
                }
                v
            },
            GradTol {
                forward: SEQ,
                grad: Tolerance::new(
                    1e-3,
                    5e-5,
                    "f32 BPTT over 4 steps vs f64 central differences",
                ),
            },
        );
    }
}

/// A two-layer stack with dropout off: gradients of x and h0 through both layers.
#[test]
fn two_layer_gradients_match_finite_differences() {
    let (b, t_n, i, h) = (2, 3, 3, 4);
    for (k, cell) in CELLS.into_iter().enumerate() {
        let m = module(cell, RnnOptions::new(i, h).num_layers(2));
        let ws = weights_of(&m);
        let d = SeqDims {
            batch: b,
            steps: t_n,
            hidden: h,
        };
        let lstm = cell == RnnCell::Lstm;
        let mut inputs = vec![
            Input::rand(&[b, t_n, i], seed("gc2 x") + k as u64, -1.0, 1.0),
            Input::rand(&[2, b, h], seed("gc2 h0") + k as u64, -1.0, 1.0),
        ];
        if lstm {
            inputs.push(Input::rand(
                &[2, b, h],
                seed("gc2 c0") + k as u64,
                -1.0,
                1.0,
            ));
        }
        gradcheck(
            &format!("{} 2 layers", cell.name()),
            &inputs,
            |ts| {
                let state = RnnState {
                    h: ts[1].clone(),
                    c: ts.get(2).cloned(),
                };
                let out = m.forward_with(&ts[0], Some(&state))?;
                Tensor::concat(
                    &[
                        &out.output.reshape(&[b * t_n * h])?,
                        &out.state.h.reshape(&[2 * b * h])?,
                    ],
                    0,
                )
            },
            |xs| {
                let zeros = vec![0.0; 2 * b * h];
                let s = cpu::stack_forward(
                    cell,
                    d,
                    i,
                    &xs[0],
                    &ws,
                    &xs[1],
                    xs.get(2).unwrap_or(&zeros),
                );
                let mut v = s.output;
                v.extend(s.h_n);
                v
            },
            GradTol {
                forward: SEQ,
                grad: Tolerance::new(
                    1e-3,
                    5e-5,
                    "f32 BPTT through 2 layers vs f64 central differences",
                ),
            },
        );
    }
}

#[test]
fn fused_step_matches_composed_ops_forward_and_backward() {
    let (b, i, h) = (7, 5, 17);
    for (k, cell) in CELLS.into_iter().enumerate() {
        let k = k as u64;
        let gw = cell.gates() * h;
        let mk = |shape: &[usize], tag: &str| {
            let n = shape.iter().product();
            tensor(&rand_vec(n, seed(tag) + k, -1.0, 1.0), shape).requires_grad()
        };
        let x = mk(&[b, 1, i], "cmp x");
        let h0 = mk(&[b, h], "cmp h0");
        let c0 = mk(&[b, h], "cmp c0");
        let w = [
            mk(&[gw, i], "cmp wih"),
            mk(&[gw, h], "cmp whh"),
            mk(&[gw], "cmp bih"),
            mk(&[gw], "cmp bhh"),
        ];
        let lstm = cell == RnnCell::Lstm;
        let p = RnnLayerParams {
            weight_ih: &w[0],
            weight_hh: &w[1],
            bias_ih: Some(&w[2]),
            bias_hh: Some(&w[3]),
        };
        let out = rnn_layer(cell, &x, Some(&h0), lstm.then_some(&c0), p).unwrap();
        let mut fused = vec![out.output.reshape(&[b, h]).unwrap()];
        fused.extend(out.c_n);
        let x1 = x.reshape(&[b, i]).unwrap();
        let (h1, c1) = rnn_cell_composed(cell, &x1, &h0, lstm.then_some(&c0), p).unwrap();
        let mut composed = vec![h1];
        composed.extend(c1);
        let weights: Vec<Tensor> = (0..fused.len())
            .map(|j| {
                tensor(
                    &rand_vec(b * h, seed("cmp w") + j as u64, 0.5, 1.5),
                    &[b, h],
                )
            })
            .collect();
        let loss_of = |outs: &[Tensor]| {
            let mut l = outs[0].mul(&weights[0]).unwrap().sum().unwrap();
            for (o, wt) in outs.iter().zip(&weights).skip(1) {
                l = l.add(&o.mul(wt).unwrap().sum().unwrap()).unwrap();
            }
            l
        };
        let tol = Tolerance::new(1e-5, 1e-6, "fused vs composed f32, same math");
        for (f, c) in fused.iter().zip(&composed) {
            tol.assert_close(&format!("{} forward", cell.name()), &f32s(f), &f32s(c));
        }
        let mut leaves: Vec<&Tensor> = vec![&x, &h0, &w[0], &w[1], &w[2], &w[3]];
        if lstm {
            leaves.push(&c0);
        }
        let grads = |loss: Tensor| -> Vec<Vec<f32>> {
            for l in &leaves {
                l.clear_grad();
            }
            loss.backward().unwrap();
            leaves.iter().map(|l| f32s(&l.grad().unwrap())).collect()
        };
        let gf = grads(loss_of(&fused));
        let gc = grads(loss_of(&composed));
        let tol = Tolerance::new(
            1e-4,
            1e-5,
            "fused vs composed gradients, f32 sums in another order",
        );
        for (j, (a, c)) in gf.iter().zip(&gc).enumerate() {
            tol.assert_close(&format!("{} grad of input {j}", cell.name()), a, c);
        }
    }
}

#[test]
fn parameters_follow_pytorch_names_shapes_and_init() {
    let (i, h) = (3, 16);
    let lstm = Lstm::new_on(&gpu(), RnnOptions::new(i, h).num_layers(2)).unwrap();
    let names: Vec<(String, Vec<usize>)> = lstm
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let want = [
        ("weight_ih_l0", vec![64, 3]),
        ("weight_hh_l0", vec![64, 16]),
        ("bias_ih_l0", vec![64]),
        ("bias_hh_l0", vec![64]),
        ("weight_ih_l1", vec![64, 16]),
        ("weight_hh_l1", vec![64, 16]),
        ("bias_ih_l1", vec![64]),
        ("bias_hh_l1", vec![64]),
    ];
    assert_eq!(names.len(), want.len());
    for ((n, s), (wn, ws)) in names.iter().zip(&want) {
        assert_eq!((n.as_str(), s), (*wn, ws));
    }
    let bound = 1.0 / (h as f32).sqrt();
    for (n, t) in lstm.named_parameters() {
        let v = f32s(&t);
        assert!(
            v.iter().all(|x| x.abs() <= bound),
            "{n} outside U(-1/sqrt(H), 1/sqrt(H))"
        );
        assert!(
            v.iter().any(|x| x.abs() > bound / 2.0),
            "{n} looks not uniform"
        );
    }
    let gru = Gru::new_on(&gpu(), RnnOptions::new(i, h).bias(false)).unwrap();
    let shapes: Vec<Vec<usize>> = gru
        .parameters()
        .iter()
        .map(|t| t.shape().to_vec())
        .collect();
    assert_eq!(shapes, [vec![48, 3], vec![48, 16]]);
    let rnn = Rnn::new_on(&gpu(), RnnOptions::new(i, h)).unwrap();
    assert_eq!(rnn.parameters()[0].shape(), [16, 3]);
}

#[test]
fn layer_without_bias_matches_zero_bias() {
    let (b, t_n, i, h) = (2, 5, 3, 7);
    let w = rand_weights(RnnCell::Gru, i, h, 7);
    let x = rand_vec(b * t_n * i, seed("nb x"), -1.0, 1.0);
    let gw = 3 * h;
    let out = rnn_layer(
        RnnCell::Gru,
        &tensor(&x, &[b, t_n, i]),
        None,
        None,
        RnnLayerParams {
            weight_ih: &tensor(&w.w_ih, &[gw, i]),
            weight_hh: &tensor(&w.w_hh, &[gw, h]),
            bias_ih: None,
            bias_hh: None,
        },
    )
    .unwrap();
    let mut w0 = to64(&w);
    w0.b_ih = vec![0.0; gw];
    w0.b_hh = vec![0.0; gw];
    let d = SeqDims {
        batch: b,
        steps: t_n,
        hidden: h,
    };
    let zeros = vec![0.0; b * h];
    let want = cpu::stack_forward(RnnCell::Gru, d, i, &f64s(&x), &[w0], &zeros, &zeros);
    SEQ.assert_close("gru without bias", &f32s(&out.output), &want.output);
}
