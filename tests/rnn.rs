//! Recurrent layers: the fused gate kernels of `rnn.wgsl` against their CPU twins at awkward
//! sizes (and past 65,535 workgroups), whole multi-layer sequences against the CPU stack,
//! finite-difference gradient checks of every input of a layer for each cell, the CPU twin's
//! backward through time against finite differences, agreement of one fused step with the same
//! step composed from primitive ops (forward and backward), a tiny language model that overfits
//! a repeated sequence, and errors on bad shapes.

mod common;

use common::*;
use kiln::Tensor;
use kiln::models::{
    RnnClassifier, RnnClassifierConfig, RnnLanguageModel, RnnLmConfig, SequenceInput,
    SequencePooling,
};
use kiln::nn::{Gru, Lstm, Module, Recurrent, Rnn, RnnOptions, RnnState};
use kiln::ops::{RnnCell, RnnLayerParams, rnn_layer};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::launch::index::Dense;
use kiln_kernels::launch::rnn::{self as rk, BackwardBufs, ForwardBufs, SeqDims};
use kiln_kernels::reference::rnn::{self as cpu, LayerWeights};

const CELLS: [RnnCell; 3] = [RnnCell::RnnTanh, RnnCell::Lstm, RnnCell::Gru];

/// Gate math in f32 against f64: a handful of transcendental ops per element.
const GATES: Tolerance = Tolerance::new(1e-5, 2e-6, "f32 gate nonlinearities vs f64");
/// Whole sequences: matmuls of length I and H plus T steps of error growth.
const SEQ: Tolerance = Tolerance::new(2e-4, 2e-5, "f32 sequence of matmuls + gates vs f64");

fn dense(t: &Tensor) -> Dense<'_> {
    Dense {
        buf: t.kernel_view().buf,
        offset: t.offset(),
    }
}

/// `data` as a tensor at element offset 3 of its storage (the kernels must honour offsets).
fn at_offset(data: &[f32], shape: &[usize]) -> Tensor {
    let mut v = vec![9.0f32; 3];
    v.extend_from_slice(data);
    tensor(&v, &[v.len()])
        .narrow(0, 3, data.len())
        .unwrap()
        .reshape(shape)
        .unwrap()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn gate_kernels_match_cpu_twin_at_awkward_sizes() {
    let g = gpu();
    let mut k = 0u64;
    for cell in CELLS {
        for b in [1, 7] {
            for h in [1, 7, 17, 129] {
                for t_n in [1, 7, 17] {
                    k += 1;
                    check_one_step(&g, cell, b, h, t_n, k);
                }
            }
        }
    }
}

fn check_one_step(
    g: &std::sync::Arc<kiln::Gpu>,
    cell: RnnCell,
    b: usize,
    h: usize,
    t_n: usize,
    k: u64,
) {
    let d = SeqDims {
        batch: b,
        steps: t_n,
        hidden: h,
    };
    let t = t_n / 2;
    let (gw, sp) = (cell.gates() * h, cell.state_parts());
    let name = format!("{} B={b} H={h} T={t_n} t={t}", cell.name());
    let gi = rand_vec(b * t_n * gw, seed("gi") + k, -2.0, 2.0);
    let gh = rand_vec(b * gw, seed("gh") + k, -2.0, 2.0);
    let bhh = rand_vec(gw, seed("bhh") + k, -1.0, 1.0);
    let state0 = rand_vec(b * (t_n + 1) * sp * h, seed("state") + k, -1.0, 1.0);
    let gates0 = vec![f32::NAN; b * t_n * 4 * h];

    let (gi_t, gh_t, bhh_t) = (
        at_offset(&gi, &[b, t_n, gw]),
        at_offset(&gh, &[b, gw]),
        at_offset(&bhh, &[gw]),
    );
    let state_t = at_offset(&state0, &[b, t_n + 1, sp * h]);
    let gates_t = at_offset(&gates0, &[b, t_n, 4 * h]);
    rk::gates_forward(
        g,
        cell,
        d,
        t,
        ForwardBufs {
            gi: dense(&gi_t),
            gh: dense(&gh_t),
            b_hh: dense(&bhh_t),
            state: dense(&state_t),
            gates: (cell.saved() > 0).then(|| dense(&gates_t)),
        },
    )
    .unwrap();
    let mut want_state = f64s(&state0);
    let mut want_gates = vec![f64::NAN; gates0.len()];
    cpu::gates_forward(
        cell,
        d,
        t,
        &f64s(&gi),
        &f64s(&gh),
        &f64s(&bhh),
        &mut want_state,
        &mut want_gates,
    );
    GATES.assert_close(&format!("{name} state"), &f32s(&state_t), &want_state);
    if cell.saved() > 0 {
        // Only step t is written; compare that step of every batch row.
        let (got, want) = (f32s(&gates_t), want_gates);
        for bb in 0..b {
            let r = (bb * t_n + t) * 4 * h..(bb * t_n + t + 1) * 4 * h;
            GATES.assert_close(&format!("{name} gates"), &got[r.clone()], &want[r]);
        }
    }

    // Backward of the same step from random upstream values and plausible activations.
    let gs = rand_vec(b * (t_n + 1) * sp * h, seed("g") + k, -1.0, 1.0);
    let dhrec = rand_vec(b * h, seed("dhrec") + k, -1.0, 1.0);
    let carry0 = rand_vec(b * h, seed("carry") + k, -1.0, 1.0);
    let saved = rand_vec(b * t_n * 4 * h, seed("saved") + k, 0.05, 0.95);
    let nan = vec![f32::NAN; b * t_n * gw];
    let (g_t, st_t, dhrec_t, carry_t, saved_t) = (
        at_offset(&gs, &[b, t_n + 1, sp * h]),
        at_offset(&state0, &[b, t_n + 1, sp * h]),
        at_offset(&dhrec, &[b, h]),
        at_offset(&carry0, &[b, h]),
        at_offset(&saved, &[b, t_n, 4 * h]),
    );
    let (dgi_t, dgh_t) = (
        at_offset(&nan, &[b, t_n, gw]),
        at_offset(&nan, &[b, t_n, gw]),
    );
    let lstm_or_gru = cell.saved() > 0;
    rk::gates_backward(
        g,
        cell,
        d,
        t,
        BackwardBufs {
            g: dense(&g_t),
            state: dense(&st_t),
            dhrec: dense(&dhrec_t),
            dgi: dense(&dgi_t),
            carry: lstm_or_gru.then(|| dense(&carry_t)),
            gates: lstm_or_gru.then(|| dense(&saved_t)),
            dgh: (cell == RnnCell::Gru).then(|| dense(&dgh_t)),
        },
    )
    .unwrap();
    let mut want_dgi = vec![f64::NAN; nan.len()];
    let mut want_dgh = vec![f64::NAN; nan.len()];
    let mut want_carry = f64s(&carry0);
    cpu::gates_backward(
        cell,
        d,
        t,
        &f64s(&gs),
        &f64s(&state0),
        &f64s(&dhrec),
        &mut want_dgi,
        &mut want_carry,
        &f64s(&saved),
        &mut want_dgh,
    );
    let (got_dgi, got_dgh) = (f32s(&dgi_t), f32s(&dgh_t));
    for bb in 0..b {
        let r = (bb * t_n + t) * gw..(bb * t_n + t + 1) * gw;
        GATES.assert_close(
            &format!("{name} dgi"),
            &got_dgi[r.clone()],
            &want_dgi[r.clone()],
        );
        if cell == RnnCell::Gru {
            GATES.assert_close(&format!("{name} dgh"), &got_dgh[r.clone()], &want_dgh[r]);
        }
    }
    if lstm_or_gru {
        GATES.assert_close(&format!("{name} carry"), &f32s(&carry_t), &want_carry);
    }
}

/// B*H = 4,199,425 invocations need more than 65,535 workgroups of 64: the 2-D grid path.
#[test]
fn gate_kernel_covers_a_two_dimensional_grid() {
    let g = gpu();
    let (b, h) = (1025, 4097);
    check_one_step(&g, RnnCell::RnnTanh, b, h, 1, 999);
}

fn rand_weights(cell: RnnCell, input: usize, h: usize, k: u64) -> LayerWeights<f32> {
    let gw = cell.gates() * h;
    LayerWeights {
        w_ih: rand_vec(gw * input, seed("w_ih") + k, -0.8, 0.8),
        w_hh: rand_vec(gw * h, seed("w_hh") + k, -0.8, 0.8),
        b_ih: rand_vec(gw, seed("b_ih") + k, -0.5, 0.5),
        b_hh: rand_vec(gw, seed("b_hh") + k, -0.5, 0.5),
    }
}

fn to64(w: &LayerWeights<f32>) -> LayerWeights<f64> {
    LayerWeights {
        w_ih: f64s(&w.w_ih),
        w_hh: f64s(&w.w_hh),
        b_ih: f64s(&w.b_ih),
        b_hh: f64s(&w.b_hh),
    }
}

fn module(cell: RnnCell, opts: RnnOptions) -> Recurrent {
    Recurrent::new_on(&gpu(), cell, opts).unwrap()
}

/// The module's parameters read back as CPU weights.
fn weights_of(m: &Recurrent) -> Vec<LayerWeights<f64>> {
    m.layers
        .iter()
        .map(|l| LayerWeights {
            w_ih: f64s(&f32s(&l.weight_ih)),
            w_hh: f64s(&f32s(&l.weight_hh)),
            b_ih: f64s(&f32s(l.bias_ih.as_ref().unwrap())),
            b_hh: f64s(&f32s(l.bias_hh.as_ref().unwrap())),
        })
        .collect()
}

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

/// The CPU twin's backward through time against central differences of its own forward.
#[test]
fn cpu_twin_backward_matches_finite_differences() {
    let (b, t_n, i, h) = (2, 3, 2, 3);
    let d = SeqDims {
        batch: b,
        steps: t_n,
        hidden: h,
    };
    for (k, cell) in CELLS.into_iter().enumerate() {
        let sp = cell.state_parts();
        let w = to64(&rand_weights(cell, i, h, 100 + k as u64));
        let x = f64s(&rand_vec(b * t_n * i, seed("cpu x") + k as u64, -1.0, 1.0));
        let h0 = f64s(&rand_vec(b * h, seed("cpu h0") + k as u64, -1.0, 1.0));
        let c0 = f64s(&rand_vec(b * h, seed("cpu c0") + k as u64, -1.0, 1.0));
        let g = f64s(&rand_vec(
            b * (t_n + 1) * sp * h,
            seed("cpu g") + k as u64,
            -1.0,
            1.0,
        ));
        let loss = |x: &[f64], w: &LayerWeights<f64>, h0: &[f64], c0: &[f64]| -> f64 {
            let f = cpu::layer_forward(cell, d, i, x, w, h0, c0);
            f.state.iter().zip(&g).map(|(a, b)| a * b).sum()
        };
        let fwd = cpu::layer_forward(cell, d, i, &x, &w, &h0, &c0);
        let gr = cpu::layer_backward(cell, d, i, &x, &w, &fwd, &g);
        let eps = 1e-6;
        let tol = Tolerance::new(1e-6, 1e-8, "f64 analytic vs central differences");
        let num = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
        let check = |name: &str, got: &[f64], n: usize, f: &dyn Fn(usize, f64) -> f64| {
            let want: Vec<f64> = (0..n).map(|j| num(&|e| f(j, e))).collect();
            tol.assert_close(&format!("{} cpu {name}", cell.name()), got, &want);
        };
        check("dx", &gr.dx, x.len(), &|j, e| {
            let mut x2 = x.clone();
            x2[j] += e;
            loss(&x2, &w, &h0, &c0)
        });
        check("dh0", &gr.dh0, h0.len(), &|j, e| {
            let mut h2 = h0.clone();
            h2[j] += e;
            loss(&x, &w, &h2, &c0)
        });
        if cell == RnnCell::Lstm {
            check("dc0", &gr.dc0, c0.len(), &|j, e| {
                let mut c2 = c0.clone();
                c2[j] += e;
                loss(&x, &w, &h0, &c2)
            });
        }
        type Field = fn(&mut LayerWeights<f64>) -> &mut Vec<f64>;
        let fields: [(&str, &[f64], Field); 4] = [
            ("dw_ih", &gr.dw_ih, |w| &mut w.w_ih),
            ("dw_hh", &gr.dw_hh, |w| &mut w.w_hh),
            ("db_ih", &gr.db_ih, |w| &mut w.b_ih),
            ("db_hh", &gr.db_hh, |w| &mut w.b_hh),
        ];
        for (name, got, field) in fields {
            let n = got.len();
            check(name, got, n, &|j, e| {
                let mut w2 = w.clone();
                field(&mut w2)[j] += e;
                loss(&x, &w2, &h0, &c0)
            });
        }
    }
}

/// One step built from primitive ops (matmul, sigmoid, tanh, mul, add), as in PyTorch's cell
/// docs. Returns h, and c for the LSTM.
fn composed_step(
    cell: RnnCell,
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    w: &[Tensor],
) -> kiln::Result<Vec<Tensor>> {
    let gi = x.matmul(&w[0].t()?)?.add(&w[2])?;
    let gh = h0.matmul(&w[1].t()?)?.add(&w[3])?;
    let hid = h0.shape()[1];
    let blk = |t: &Tensor, k: usize| t.narrow(1, k * hid, hid);
    Ok(match cell {
        RnnCell::RnnTanh => vec![gi.add(&gh)?.tanh()?],
        RnnCell::Lstm => {
            let a = gi.add(&gh)?;
            let i = blk(&a, 0)?.sigmoid()?;
            let f = blk(&a, 1)?.sigmoid()?;
            let g = blk(&a, 2)?.tanh()?;
            let o = blk(&a, 3)?.sigmoid()?;
            let c = f.mul(c0)?.add(&i.mul(&g)?)?;
            vec![o.mul(&c.tanh()?)?, c]
        }
        RnnCell::Gru => {
            let r = blk(&gi, 0)?.add(&blk(&gh, 0)?)?.sigmoid()?;
            let z = blk(&gi, 1)?.add(&blk(&gh, 1)?)?.sigmoid()?;
            let n = blk(&gi, 2)?.add(&r.mul(&blk(&gh, 2)?)?)?.tanh()?;
            // h = (1 - z) n + z h0 = n + z (h0 - n)
            vec![n.add(&z.mul(&h0.sub(&n)?)?)?]
        }
    })
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
        let out = rnn_layer(
            cell,
            &x,
            Some(&h0),
            lstm.then_some(&c0),
            RnnLayerParams {
                weight_ih: &w[0],
                weight_hh: &w[1],
                bias_ih: Some(&w[2]),
                bias_hh: Some(&w[3]),
            },
        )
        .unwrap();
        let mut fused = vec![out.output.reshape(&[b, h]).unwrap()];
        fused.extend(out.c_n);
        let composed = composed_step(cell, &x.reshape(&[b, i]).unwrap(), &h0, &c0, &w).unwrap();
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

#[test]
fn tiny_language_model_overfits_a_repeated_sequence() {
    kiln::nn::manual_seed(7);
    for cell in [RnnCell::Lstm, RnnCell::Gru] {
        let (v, t_n) = (6usize, 12usize);
        let mut cfg = RnnLmConfig::new(cell, v, 8, 24);
        cfg.num_layers = 2;
        let lm = RnnLanguageModel::new_on(&gpu(), cfg).unwrap();
        // Two rows of the repeated pattern 0 1 2 3 4 5, shifted; predict the next token.
        let seq: Vec<u32> = (0..2 * (t_n + 1)).map(|k| (k % v) as u32).collect();
        let mut ids = Vec::new();
        let mut next = Vec::new();
        for r in 0..2 {
            let row = &seq[r * 3..r * 3 + t_n + 1];
            ids.extend_from_slice(&row[..t_n]);
            next.extend_from_slice(&row[1..]);
        }
        let ids = Tensor::from_slice_on(&gpu(), &ids, &[2, t_n]).unwrap();
        let next = Tensor::from_slice_on(&gpu(), &next, &[2 * t_n]).unwrap();
        let mut opt = Adam::new(lm.named_parameters(), AdamConfig::adam(0.03)).unwrap();
        let mut losses = Vec::new();
        for _ in 0..60 {
            opt.zero_grad().unwrap();
            let logits = lm.forward(&ids).unwrap();
            let loss = logits
                .reshape(&[2 * t_n, v])
                .unwrap()
                .cross_entropy(&next)
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            losses.push(loss.item().unwrap());
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last < 0.1 * first && last < 0.2,
            "{}: loss went from {first} to {last}: {losses:?}",
            cell.name()
        );
        // Greedy generation with the stateful step continues the pattern.
        let mut state = None;
        let mut tok = Tensor::from_slice_on(&gpu(), &[0u32], &[1]).unwrap();
        let mut got = Vec::new();
        for _ in 0..8 {
            let (logits, s) = lm.step(&tok, state.as_ref()).unwrap();
            let id = logits.argmax(-1, false).unwrap().to_vec::<u32>().unwrap()[0];
            got.push(id);
            tok = Tensor::from_slice_on(&gpu(), &[id], &[1]).unwrap();
            state = Some(s.detach());
        }
        assert_eq!(got, [1, 2, 3, 4, 5, 0, 1, 2], "{} generation", cell.name());
    }
}

#[test]
fn classifier_shapes_and_pooling() {
    for pooling in [SequencePooling::Last, SequencePooling::Mean] {
        let c = RnnClassifier::new_on(
            &gpu(),
            RnnClassifierConfig {
                cell: RnnCell::Gru,
                input: SequenceInput::Features { size: 4 },
                hidden_size: 9,
                num_layers: 2,
                classes: 3,
                pooling,
                dropout: 0.0,
            },
        )
        .unwrap();
        let x = Tensor::randn(&[5, 7, 4], 3).unwrap();
        assert_eq!(c.forward(&x).unwrap().shape(), [5, 3]);
    }
    let c = RnnClassifier::new_on(
        &gpu(),
        RnnClassifierConfig {
            cell: RnnCell::Lstm,
            input: SequenceInput::Tokens {
                vocab_size: 10,
                embed_dim: 6,
            },
            hidden_size: 8,
            num_layers: 1,
            classes: 2,
            pooling: SequencePooling::Last,
            dropout: 0.3,
        },
    )
    .unwrap();
    let ids = Tensor::from_slice_on(&gpu(), &[1u32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    assert_eq!(c.forward(&ids).unwrap().shape(), [2, 2]);
    let names: Vec<String> = c.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "embedding.weight");
    assert_eq!(names[1], "rnn.weight_ih_l0");
    assert_eq!(names.last().unwrap(), "head.bias");
}

#[test]
fn dropout_between_layers_only_in_training() {
    let mut m = module(
        RnnCell::RnnTanh,
        RnnOptions::new(3, 8).num_layers(2).dropout(0.5),
    );
    let x = Tensor::randn(&[2, 5, 3], 11).unwrap();
    let a = f32s(&m.forward(&x).unwrap());
    let b = f32s(&m.forward(&x).unwrap());
    assert_ne!(a, b, "training dropout should draw a new mask per call");
    m.set_training(false);
    let c = f32s(&m.forward(&x).unwrap());
    let d = f32s(&m.forward(&x).unwrap());
    assert_eq!(c, d);
}

fn err_text<T: std::fmt::Debug>(r: kiln::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_shapes_are_errors() {
    let w_ih = tensor(&[0.1; 12 * 3], &[12, 3]);
    let w_hh = tensor(&[0.1; 12 * 4], &[12, 4]);
    let p = RnnLayerParams {
        weight_ih: &w_ih,
        weight_hh: &w_hh,
        bias_ih: None,
        bias_hh: None,
    };
    let x = tensor(&[0.5; 2 * 3 * 3], &[2, 3, 3]);
    // 12 = 3 * 4 fits the GRU; the LSTM needs 16 rows.
    assert!(rnn_layer(RnnCell::Gru, &x, None, None, p).is_ok());
    let e = err_text(rnn_layer(RnnCell::Lstm, &x, None, None, p));
    assert!(e.contains("weight_hh") && e.contains("[12, 4]"), "{e}");
    let e = err_text(rnn_layer(
        RnnCell::Gru,
        &x.reshape(&[6, 3]).unwrap(),
        None,
        None,
        p,
    ));
    assert!(e.contains("(B, T, I)") && e.contains("[6, 3]"), "{e}");
    let x4 = tensor(&[0.5; 2 * 3 * 4], &[2, 3, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x4, None, None, p));
    assert!(e.contains("weight_ih"), "{e}");
    let h_bad = tensor(&[0.0; 3 * 4], &[3, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x, Some(&h_bad), None, p));
    assert!(e.contains("h0") && e.contains("[3, 4]"), "{e}");
    let c0 = tensor(&[0.0; 2 * 4], &[2, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x, None, Some(&c0), p));
    assert!(e.contains("c0"), "{e}");
    let empty = Tensor::zeros_on(&gpu(), &[2, 0, 3]).unwrap();
    let e = err_text(rnn_layer(RnnCell::Gru, &empty, None, None, p));
    assert!(e.contains("T >= 1"), "{e}");

    let m = module(RnnCell::Lstm, RnnOptions::new(3, 4).num_layers(2));
    let e = err_text(m.forward_with(&x4, None));
    assert!(e.contains("(B, T, 3)"), "{e}");
    let bad_state = RnnState {
        h: Tensor::zeros_on(&gpu(), &[1, 2, 4]).unwrap(),
        c: None,
    };
    let e = err_text(m.forward_with(&x, Some(&bad_state)));
    assert!(e.contains("state") && e.contains("[2, 2, 4]"), "{e}");
    assert!(Recurrent::new_on(&gpu(), RnnCell::Gru, RnnOptions::new(0, 4)).is_err());
    assert!(Recurrent::new_on(&gpu(), RnnCell::Gru, RnnOptions::new(3, 4).dropout(1.5)).is_err());
}

/// Timing, not a check: one LSTM layer forward + backward, fused (one node, one gate kernel per
/// step) against the same layer composed step by step from primitive ops (the baseline), in the
/// same run. Each iteration reads the loss and one gradient back, so the GPU work is inside the
/// timed region. Run with `cargo test --release --test rnn bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_lstm_fused_vs_composed() {
    let (b, t_n, i, h) = (32, 32, 64, 128);
    let g = gpu();
    let x = Tensor::randn_on(&g, &[b, t_n, i], 1)
        .unwrap()
        .requires_grad();
    let w = [
        Tensor::randn_on(&g, &[4 * h, i], 2)
            .unwrap()
            .mul_scalar(0.1)
            .unwrap()
            .requires_grad(),
        Tensor::randn_on(&g, &[4 * h, h], 3)
            .unwrap()
            .mul_scalar(0.1)
            .unwrap()
            .requires_grad(),
        Tensor::zeros_on(&g, &[4 * h]).unwrap().requires_grad(),
        Tensor::zeros_on(&g, &[4 * h]).unwrap().requires_grad(),
    ];
    let h0 = Tensor::zeros_on(&g, &[b, h]).unwrap();
    let fused = || {
        let out = rnn_layer(
            RnnCell::Lstm,
            &x,
            None,
            None,
            RnnLayerParams {
                weight_ih: &w[0],
                weight_hh: &w[1],
                bias_ih: Some(&w[2]),
                bias_hh: Some(&w[3]),
            },
        )
        .unwrap();
        out.output.sum().unwrap()
    };
    let composed = || {
        let (mut hc, mut c) = (h0.clone(), h0.clone());
        let mut total = None::<Tensor>;
        for t in 0..t_n {
            let xt = x.narrow(1, t, 1).unwrap().reshape(&[b, i]).unwrap();
            let s = composed_step(RnnCell::Lstm, &xt, &hc, &c, &w).unwrap();
            hc = s[0].clone();
            c = s[1].clone();
            let st = hc.sum().unwrap();
            total = Some(match total {
                Some(a) => a.add(&st).unwrap(),
                None => st,
            });
        }
        total.unwrap()
    };
    let flops = 2.0 * 3.0 * (b * t_n * 4 * h * (i + h)) as f64; // fwd + 2x bwd matmuls
    for (name, f) in [
        ("fused", &fused as &dyn Fn() -> Tensor),
        ("composed", &composed),
    ] {
        for k in 0..6 {
            let s = std::time::Instant::now();
            for p in w.iter().chain([&x]) {
                p.clear_grad();
            }
            let loss = f();
            loss.backward().unwrap();
            let _ = loss.item().unwrap();
            let _ = w[1].grad().unwrap().to_vec::<f32>().unwrap();
            let ms = s.elapsed().as_secs_f64() * 1e3;
            if k >= 2 {
                println!(
                    "lstm {name}: (B, T, I, H) = ({b}, {t_n}, {i}, {h}) fwd+bwd {ms:.1} ms \
                     ({:.2} GFLOP/s of matmul work)",
                    flops / ms / 1e6
                );
            }
        }
    }
}
