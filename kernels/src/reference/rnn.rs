//! CPU twins of `rnn.wgsl` (one step's gates, both ways) and of a whole recurrent layer /
//! multi-layer stack, forward and backward through time, on contiguous row-major data.
//!
//! Layouts follow PyTorch and the kernels: x (B, T, I); `w_ih` (G*H, I); `w_hh` (G*H, H);
//! `b_ih`, `b_hh` (G*H); gate blocks LSTM i, f, g, o and GRU r, z, n. The state buffer is
//! (B, T + 1, S*H) (slot 0 = the initial state; for the LSTM each slot is [h | c]) and the saved
//! activations (B, T, 4*H) (see `shaders/rnn.wgsl`).

use num_traits::Float;

use crate::launch::rnn::{Cell, SeqDims};

fn sigmoid<T: Float>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

fn slot(d: SeqDims, s_parts: usize, b: usize, s: usize, p: usize, j: usize) -> usize {
    (b * (d.steps + 1) + s) * s_parts * d.hidden + p * d.hidden + j
}

fn at_bt(d: SeqDims, width: usize, b: usize, t: usize, k: usize, j: usize) -> usize {
    (b * d.steps + t) * width * d.hidden + k * d.hidden + j
}

/// Twin of the forward gate kernels: step `t` from `gi` (B, T, G*H), `gh` (B, G*H) and `b_hh`
/// (G*H); reads state slot t and writes slot t + 1 of `state` (B, T + 1, S*H), and the saved
/// activations of step t into `gates` (B, T, 4*H; untouched for the RNN).
#[allow(clippy::too_many_arguments)]
pub fn gates_forward<T: Float>(
    cell: Cell,
    d: SeqDims,
    t: usize,
    gi: &[T],
    gh: &[T],
    b_hh: &[T],
    state: &mut [T],
    gates: &mut [T],
) {
    let (h, g_n, s) = (d.hidden, cell.gates(), cell.state_parts());
    for b in 0..d.batch {
        for j in 0..h {
            let pre = |k: usize| {
                gi[at_bt(d, g_n, b, t, k, j)] + gh[b * g_n * h + k * h + j] + b_hh[k * h + j]
            };
            match cell {
                Cell::RnnTanh => state[slot(d, s, b, t + 1, 0, j)] = pre(0).tanh(),
                Cell::Lstm => {
                    let (i, f) = (sigmoid(pre(0)), sigmoid(pre(1)));
                    let (gg, o) = (pre(2).tanh(), sigmoid(pre(3)));
                    let c = f * state[slot(d, s, b, t, 1, j)] + i * gg;
                    state[slot(d, s, b, t + 1, 0, j)] = o * c.tanh();
                    state[slot(d, s, b, t + 1, 1, j)] = c;
                    for (k, v) in [i, f, gg, o].into_iter().enumerate() {
                        gates[at_bt(d, 4, b, t, k, j)] = v;
                    }
                }
                Cell::Gru => {
                    let (r, z) = (sigmoid(pre(0)), sigmoid(pre(1)));
                    let hn = gh[b * 3 * h + 2 * h + j] + b_hh[2 * h + j];
                    let n = (gi[at_bt(d, 3, b, t, 2, j)] + r * hn).tanh();
                    let h_prev = state[slot(d, s, b, t, 0, j)];
                    state[slot(d, s, b, t + 1, 0, j)] = (T::one() - z) * n + z * h_prev;
                    for (k, v) in [r, z, n, hn].into_iter().enumerate() {
                        gates[at_bt(d, 4, b, t, k, j)] = v;
                    }
                }
            }
        }
    }
}

/// Twin of the backward gate kernels for step `t`: from the upstream gradient `g` of the state
/// (B, T + 1, S*H), the forward's `state` and `gates`, and `dhrec` (B, H) = `dgh_{t+1} W_hh`,
/// writes `dgi[:, t]` (B, T, G*H) and, for the GRU, `dgh[:, t]`; reads and overwrites `carry`
/// (B, H): dc for the LSTM, `z * dh` for the GRU.
#[allow(clippy::too_many_arguments)]
pub fn gates_backward<T: Float>(
    cell: Cell,
    d: SeqDims,
    t: usize,
    g: &[T],
    state: &[T],
    dhrec: &[T],
    dgi: &mut [T],
    carry: &mut [T],
    gates: &[T],
    dgh: &mut [T],
) {
    let (h, g_n, s) = (d.hidden, cell.gates(), cell.state_parts());
    let one = T::one();
    for b in 0..d.batch {
        for j in 0..h {
            let dh = g[slot(d, s, b, t + 1, 0, j)] + dhrec[b * h + j];
            let saved = |k: usize| gates[at_bt(d, 4, b, t, k, j)];
            match cell {
                Cell::RnnTanh => {
                    let hv = state[slot(d, s, b, t + 1, 0, j)];
                    dgi[at_bt(d, g_n, b, t, 0, j)] = dh * (one - hv * hv);
                }
                Cell::Lstm => {
                    let c = state[slot(d, s, b, t + 1, 1, j)];
                    let c_prev = state[slot(d, s, b, t, 1, j)];
                    let (i, f, gg, o) = (saved(0), saved(1), saved(2), saved(3));
                    let tc = c.tanh();
                    let dc =
                        g[slot(d, s, b, t + 1, 1, j)] + carry[b * h + j] + dh * o * (one - tc * tc);
                    dgi[at_bt(d, 4, b, t, 0, j)] = dc * gg * i * (one - i);
                    dgi[at_bt(d, 4, b, t, 1, j)] = dc * c_prev * f * (one - f);
                    dgi[at_bt(d, 4, b, t, 2, j)] = dc * i * (one - gg * gg);
                    dgi[at_bt(d, 4, b, t, 3, j)] = dh * tc * o * (one - o);
                    carry[b * h + j] = dc * f;
                }
                Cell::Gru => {
                    let dh = dh + carry[b * h + j];
                    let (r, z, n, hn) = (saved(0), saved(1), saved(2), saved(3));
                    let h_prev = state[slot(d, s, b, t, 0, j)];
                    let n_pre = dh * (one - z) * (one - n * n);
                    let z_pre = dh * (h_prev - n) * z * (one - z);
                    let r_pre = n_pre * hn * r * (one - r);
                    for (k, (vi, vh)) in [(r_pre, r_pre), (z_pre, z_pre), (n_pre, n_pre * r)]
                        .into_iter()
                        .enumerate()
                    {
                        dgi[at_bt(d, 3, b, t, k, j)] = vi;
                        dgh[at_bt(d, 3, b, t, k, j)] = vh;
                    }
                    carry[b * h + j] = dh * z;
                }
            }
        }
    }
}

/// One layer's parameters, PyTorch layouts: `w_ih` (G*H, I), `w_hh` (G*H, H), `b_ih` and `b_hh`
/// (G*H).
#[derive(Debug, Clone)]
pub struct LayerWeights<T> {
    /// (G*H, I).
    pub w_ih: Vec<T>,
    /// (G*H, H).
    pub w_hh: Vec<T>,
    /// (G*H).
    pub b_ih: Vec<T>,
    /// (G*H).
    pub b_hh: Vec<T>,
}

/// What one layer's forward keeps.
#[derive(Debug, Clone)]
pub struct LayerForward<T> {
    /// (B, T + 1, S*H): slot 0 the initial state, slot t + 1 the state after step t.
    pub state: Vec<T>,
    /// (B, T, 4*H) saved activations (empty for the RNN).
    pub gates: Vec<T>,
}

/// Gradients of one layer.
#[derive(Debug, Clone)]
pub struct LayerGrads<T> {
    /// (B, T, I).
    pub dx: Vec<T>,
    /// (B, H).
    pub dh0: Vec<T>,
    /// (B, H); zeros except for the LSTM.
    pub dc0: Vec<T>,
    /// (G*H, I).
    pub dw_ih: Vec<T>,
    /// (G*H, H).
    pub dw_hh: Vec<T>,
    /// (G*H).
    pub db_ih: Vec<T>,
    /// (G*H).
    pub db_hh: Vec<T>,
}

/// `y (rows, n) = x (rows, k) @ w^T` for `w` (n, k).
fn matmul_t<T: Float>(x: &[T], w: &[T], rows: usize, k: usize, n: usize) -> Vec<T> {
    let mut y = vec![T::zero(); rows * n];
    for r in 0..rows {
        for o in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                acc = acc + x[r * k + p] * w[o * k + p];
            }
            y[r * n + o] = acc;
        }
    }
    y
}

/// The `h` part of state slot `s` for every batch row, (B, H).
fn h_slot<T: Float>(cell: Cell, d: SeqDims, state: &[T], s: usize) -> Vec<T> {
    let sp = cell.state_parts();
    let mut out = Vec::with_capacity(d.batch * d.hidden);
    for b in 0..d.batch {
        for j in 0..d.hidden {
            out.push(state[slot(d, sp, b, s, 0, j)]);
        }
    }
    out
}

/// Forward of one layer over x (B, T, I) from `h0` (B, H) and, for the LSTM, `c0` (B, H).
pub fn layer_forward<T: Float>(
    cell: Cell,
    d: SeqDims,
    input: usize,
    x: &[T],
    w: &LayerWeights<T>,
    h0: &[T],
    c0: &[T],
) -> LayerForward<T> {
    let (h, gh_w, sp) = (d.hidden, cell.gates() * d.hidden, cell.state_parts());
    let mut gi = matmul_t(x, &w.w_ih, d.batch * d.steps, input, gh_w);
    for (k, v) in gi.iter_mut().enumerate() {
        *v = *v + w.b_ih[k % gh_w];
    }
    let mut state = vec![T::zero(); d.batch * (d.steps + 1) * sp * h];
    for b in 0..d.batch {
        for j in 0..h {
            state[slot(d, sp, b, 0, 0, j)] = h0[b * h + j];
            if sp == 2 {
                state[slot(d, sp, b, 0, 1, j)] = c0[b * h + j];
            }
        }
    }
    let mut gates = vec![T::zero(); d.batch * d.steps * cell.saved() * h];
    for t in 0..d.steps {
        let gh = matmul_t(&h_slot(cell, d, &state, t), &w.w_hh, d.batch, h, gh_w);
        gates_forward(cell, d, t, &gi, &gh, &w.b_hh, &mut state, &mut gates);
    }
    LayerForward { state, gates }
}

/// Backward through time of one layer, from the upstream gradient `g` of the state
/// (B, T + 1, S*H) (the output is its `h` parts of slots 1..=T, h_n and c_n its last slot).
pub fn layer_backward<T: Float>(
    cell: Cell,
    d: SeqDims,
    input: usize,
    x: &[T],
    w: &LayerWeights<T>,
    fwd: &LayerForward<T>,
    g: &[T],
) -> LayerGrads<T> {
    let (b_n, h, gw, sp) = (
        d.batch,
        d.hidden,
        cell.gates() * d.hidden,
        cell.state_parts(),
    );
    let zero = T::zero();
    let mut dgi = vec![zero; b_n * d.steps * gw];
    let mut dgh = vec![zero; b_n * d.steps * gw];
    let mut carry = vec![zero; b_n * h];
    let mut dhrec = vec![zero; b_n * h];
    for t in (0..d.steps).rev() {
        gates_backward(
            cell, d, t, g, &fwd.state, &dhrec, &mut dgi, &mut carry, &fwd.gates, &mut dgh,
        );
        let src = if cell == Cell::Gru { &dgh } else { &dgi };
        // dhrec = dgh[:, t] @ W_hh: (B, G*H) @ (G*H, H).
        dhrec = vec![zero; b_n * h];
        for b in 0..b_n {
            for k in 0..gw {
                let v = src[(b * d.steps + t) * gw + k];
                for j in 0..h {
                    dhrec[b * h + j] = dhrec[b * h + j] + v * w.w_hh[k * h + j];
                }
            }
        }
    }
    let dgh = if cell == Cell::Gru { dgh } else { dgi.clone() };
    let mut grads = LayerGrads {
        dx: vec![zero; b_n * d.steps * input],
        dh0: vec![zero; b_n * h],
        dc0: vec![zero; b_n * h],
        dw_ih: vec![zero; gw * input],
        dw_hh: vec![zero; gw * h],
        db_ih: vec![zero; gw],
        db_hh: vec![zero; gw],
    };
    for b in 0..b_n {
        for t in 0..d.steps {
            let row = b * d.steps + t;
            for k in 0..gw {
                let (vi, vh) = (dgi[row * gw + k], dgh[row * gw + k]);
                grads.db_ih[k] = grads.db_ih[k] + vi;
                grads.db_hh[k] = grads.db_hh[k] + vh;
                for p in 0..input {
                    grads.dx[row * input + p] =
                        grads.dx[row * input + p] + vi * w.w_ih[k * input + p];
                    grads.dw_ih[k * input + p] =
                        grads.dw_ih[k * input + p] + vi * x[row * input + p];
                }
                for j in 0..h {
                    let hp = fwd.state[slot(d, sp, b, t, 0, j)];
                    grads.dw_hh[k * h + j] = grads.dw_hh[k * h + j] + vh * hp;
                }
            }
        }
        for j in 0..h {
            let gh0 = g[slot(d, sp, b, 0, 0, j)];
            let extra = if cell == Cell::Gru {
                carry[b * h + j]
            } else {
                zero
            };
            grads.dh0[b * h + j] = gh0 + dhrec[b * h + j] + extra;
            if cell == Cell::Lstm {
                grads.dc0[b * h + j] = g[slot(d, sp, b, 0, 1, j)] + carry[b * h + j];
            }
        }
    }
    grads
}

/// Output of a multi-layer stack.
#[derive(Debug, Clone)]
pub struct StackOutput<T> {
    /// (B, T, H), the top layer's h at every step.
    pub output: Vec<T>,
    /// (L, B, H), each layer's last h.
    pub h_n: Vec<T>,
    /// (L, B, H), each layer's last c (LSTM; zeros otherwise).
    pub c_n: Vec<T>,
}

/// Forward of an L-layer stack (no dropout) over x (B, T, I), from `h0` and `c0` (L, B, H).
pub fn stack_forward<T: Float>(
    cell: Cell,
    d: SeqDims,
    input: usize,
    x: &[T],
    layers: &[LayerWeights<T>],
    h0: &[T],
    c0: &[T],
) -> StackOutput<T> {
    let (b_n, h, sp) = (d.batch, d.hidden, cell.state_parts());
    let bh = b_n * h;
    let mut cur = x.to_vec();
    let mut cur_in = input;
    let mut h_n = Vec::with_capacity(layers.len() * bh);
    let mut c_n = Vec::with_capacity(layers.len() * bh);
    for (l, w) in layers.iter().enumerate() {
        let f = layer_forward(
            cell,
            d,
            cur_in,
            &cur,
            w,
            &h0[l * bh..(l + 1) * bh],
            &c0[l * bh..(l + 1) * bh],
        );
        let mut out = Vec::with_capacity(b_n * d.steps * h);
        for b in 0..b_n {
            for t in 1..=d.steps {
                for j in 0..h {
                    out.push(f.state[slot(d, sp, b, t, 0, j)]);
                }
            }
        }
        for b in 0..b_n {
            for j in 0..h {
                h_n.push(f.state[slot(d, sp, b, d.steps, 0, j)]);
                c_n.push(if sp == 2 {
                    f.state[slot(d, sp, b, d.steps, 1, j)]
                } else {
                    T::zero()
                });
            }
        }
        cur = out;
        cur_in = h;
    }
    StackOutput {
        output: cur,
        h_n,
        c_n,
    }
}
