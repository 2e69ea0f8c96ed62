//! Recurrent layers, kernel level: the fused gate kernels of `rnn.wgsl` against their CPU twins
//! at awkward sizes (and past 65,535 workgroups), and the CPU twin's backward through time against
//! finite differences. Layers and models are tested in the root crate (tests/ops/rnn.rs,
//! tests/models/rnn_models.rs).

use crate::common::*;
use kiln_kernels::Gpu;
use kiln_kernels::launch::rnn::{self as rk, BackwardBufs, Cell as RnnCell, ForwardBufs, SeqDims};
use kiln_kernels::reference::rnn::{self as cpu, LayerWeights};

const CELLS: [RnnCell; 3] = [RnnCell::RnnTanh, RnnCell::Lstm, RnnCell::Gru];

/// Gate math in f32 against f64: a handful of transcendental ops per element.
const GATES: Tolerance = Tolerance::new(1e-5, 2e-6, "f32 gate nonlinearities vs f64");

/// Random weights of one layer (input size `input`, hidden `h`), in f64.
fn rand_weights(cell: RnnCell, input: usize, h: usize, k: u64) -> LayerWeights<f64> {
    let gw = cell.gates() * h;
    let draw = |n: usize, tag: &str, r: f32| f64s(&rand_vec(n, seed(tag) + k, -r, r));
    LayerWeights {
        w_ih: draw(gw * input, "w_ih", 0.8),
        w_hh: draw(gw * h, "w_hh", 0.8),
        b_ih: draw(gw, "b_ih", 0.5),
        b_hh: draw(gw, "b_hh", 0.5),
    }
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

fn check_one_step(g: &Gpu, cell: RnnCell, b: usize, h: usize, t_n: usize, k: u64) {
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
        Shifted::new(g, &gi),
        Shifted::new(g, &gh),
        Shifted::new(g, &bhh),
    );
    let state_t = Shifted::new(g, &state0);
    let gates_t = Shifted::new(g, &gates0);
    rk::gates_forward(
        g,
        cell,
        d,
        t,
        ForwardBufs {
            gi: gi_t.operand(),
            gh: gh_t.operand(),
            b_hh: bhh_t.operand(),
            state: state_t.operand(),
            gates: (cell.saved() > 0).then(|| gates_t.operand()),
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
    GATES.assert_close(&format!("{name} state"), &state_t.read(g), &want_state);
    if cell.saved() > 0 {
        // Only step t is written; compare that step of every batch row.
        let (got, want) = (gates_t.read(g), want_gates);
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
        Shifted::new(g, &gs),
        Shifted::new(g, &state0),
        Shifted::new(g, &dhrec),
        Shifted::new(g, &carry0),
        Shifted::new(g, &saved),
    );
    let (dgi_t, dgh_t) = (Shifted::new(g, &nan), Shifted::new(g, &nan));
    let lstm_or_gru = cell.saved() > 0;
    rk::gates_backward(
        g,
        cell,
        d,
        t,
        BackwardBufs {
            g: g_t.operand(),
            state: st_t.operand(),
            dhrec: dhrec_t.operand(),
            dgi: dgi_t.operand(),
            carry: lstm_or_gru.then(|| carry_t.operand()),
            gates: lstm_or_gru.then(|| saved_t.operand()),
            dgh: (cell == RnnCell::Gru).then(|| dgh_t.operand()),
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
    let (got_dgi, got_dgh) = (dgi_t.read(g), dgh_t.read(g));
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
        GATES.assert_close(&format!("{name} carry"), &carry_t.read(g), &want_carry);
    }
}

/// B*H = 4,199,425 invocations need more than 65,535 workgroups of 64: the 2-D grid path.
#[test]
fn gate_kernel_covers_a_two_dimensional_grid() {
    let g = gpu();
    let (b, h) = (1025, 4097);
    check_one_step(&g, RnnCell::RnnTanh, b, h, 1, 999);
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
        let w = rand_weights(cell, i, h, 100 + k as u64);
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
