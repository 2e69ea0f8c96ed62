//! One recurrent layer over a whole sequence (RNN tanh, LSTM, GRU), forward and backward through
//! time, recorded as ONE autograd node.
//!
//! Shapes, batch first, PyTorch layouts: x (B, T, I); `weight_ih` (G*H, I); `weight_hh` (G*H, H);
//! `bias_ih`, `bias_hh` (G*H); h0, c0 (B, H); gate blocks (G = 1, 4, 3) in PyTorch order:
//!
//! ```text
//! RNN   h_t = tanh(a),  a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
//! LSTM  (i, f, g, o) = (sig, sig, tanh, sig)(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//!       c_t = f c_{t-1} + i g          h_t = o tanh(c_t)
//! GRU   r = sig(W_ir x + b_ir + W_hr h + b_hr)     z = sig(W_iz x + b_iz + W_hz h + b_hz)
//!       n = tanh(W_in x + b_in + r (W_hn h + b_hn))
//!       h_t = (1 - z) n + z h_{t-1}
//! ```
//!
//! Forward: `gi = x W_ih^T + b_ih` for all steps in one matmul, then per step
//! `gh = h_{t-1} W_hh^T` (matmul) and one fused gate kernel (`rnn.wgsl`) that writes h_t (and c_t)
//! into a (B, T + 1, S*H) state tensor (slot 0 = initial state; S = 2 for the LSTM, [h | c]) and
//! saves the gate activations. The output, h_n and c_n are views of that state tensor, so the
//! whole layer is one graph node however long the sequence.
//!
//! Backward, with `dgi_t`, `dgh_t` the gradients of the gate pre-activations on the input and the
//! recurrent path (equal except for the GRU's n gate, where `dgh_n = dgi_n * r`):
//!
//! ```text
//! per step t = T-1 .. 0:  fused kernel: (g_t, dh_rec, carry, saved) -> dgi_t, dgh_t, carry
//!                         dh_rec = dgh_t W_hh                                 (matmul)
//! afterwards, over all steps at once:
//!   dx = dgi W_ih      dW_ih = dgi^T x      db_ih = sum dgi
//!   dW_hh = dgh^T h_prev                    db_hh = sum dgh
//!   dh0 = g_0 + dh_rec (+ carry for the GRU)   dc0 = g_0c + carry (LSTM)
//! ```
//!
//! where the fused kernel applies the derivatives `sig' = s (1 - s)`, `tanh' = 1 - t^2`:
//! LSTM `dc = dc_next + dh o (1 - tanh^2 c)`, `di = dc g`, `df = dc c_prev`, `dg = dc i`,
//! `do = dh tanh c`, carry `dc f`; GRU `dn = dh (1 - z)`, `dz = dh (h_prev - n)`,
//! `dr = dn_pre (W_hn h + b_hn)`, carry `dh z`; RNN `da = dh (1 - h^2)`. Nothing syncs with the
//! host: every step is a few dispatches recorded into the pending encoder.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::Tensor;
//! use kiln::ops::{RnnCell, RnnLayerParams, rnn_layer};
//! // One unit, one step: h = tanh(2 * 0.5 + 0.1) with h0 = 0.
//! let x = Tensor::from_slice(&[0.5f32], &[1, 1, 1])?;
//! let w_ih = Tensor::from_slice(&[2.0f32], &[1, 1])?;
//! let w_hh = Tensor::from_slice(&[3.0f32], &[1, 1])?;
//! let b = Tensor::from_slice(&[0.1f32], &[1])?;
//! let p = RnnLayerParams { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: Some(&b), bias_hh: None };
//! let out = rnn_layer(RnnCell::RnnTanh, &x, None, None, p)?;
//! let h = out.output.to_vec::<f32>()?;
//! assert!((h[0] - 1.1f32.tanh()).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

use kiln_kernels::launch::rnn::{self as rk, BackwardBufs, ForwardBufs, SeqDims};

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

pub use kiln_kernels::launch::rnn::Cell as RnnCell;

/// One layer's parameters, PyTorch names and layouts.
#[derive(Debug, Clone, Copy)]
pub struct RnnLayerParams<'a> {
    /// `weight_ih_l{k}`, (G*H, I).
    pub weight_ih: &'a Tensor,
    /// `weight_hh_l{k}`, (G*H, H).
    pub weight_hh: &'a Tensor,
    /// `bias_ih_l{k}`, (G*H), if the layer has biases.
    pub bias_ih: Option<&'a Tensor>,
    /// `bias_hh_l{k}`, (G*H), if the layer has biases.
    pub bias_hh: Option<&'a Tensor>,
}

/// What [`rnn_layer`] returns: three views of one recorded state tensor.
#[derive(Debug, Clone)]
pub struct RnnLayerOutput {
    /// (B, T, H): h_t at every step.
    pub output: Tensor,
    /// (B, H): the last h.
    pub h_n: Tensor,
    /// (B, H): the last c (LSTM only).
    pub c_n: Option<Tensor>,
}

const OP: &str = "rnn_layer";

/// Check every shape; returns (B, T, I, H).
fn check(
    cell: RnnCell,
    x: &Tensor,
    h0: Option<&Tensor>,
    c0: Option<&Tensor>,
    p: &RnnLayerParams<'_>,
) -> Result<(usize, usize, usize, usize)> {
    let mut all = vec![x, p.weight_ih, p.weight_hh];
    all.extend(h0);
    all.extend(c0);
    all.extend(p.bias_ih);
    all.extend(p.bias_hh);
    for t in &all {
        t.expect_f32(OP)?;
        x.same_device(OP, t)?;
    }
    let name = cell.name();
    let &[b, t, i] = x.shape() else {
        return shape_err(
            OP,
            format!("{name}: input must be (B, T, I), got shape {:?}", x.shape()),
        );
    };
    if b == 0 || t == 0 {
        return shape_err(
            OP,
            format!(
                "{name}: input (B, T, I) = {:?} needs B >= 1 and T >= 1",
                x.shape()
            ),
        );
    }
    let g = cell.gates();
    let whh = p.weight_hh.shape();
    if whh.len() != 2 || whh[1] == 0 || whh[0] != g * whh[1] {
        return shape_err(
            OP,
            format!("{name}: weight_hh must be ({g}*H, H) with H >= 1, got shape {whh:?}"),
        );
    }
    let h = whh[1];
    if p.weight_ih.shape() != [g * h, i] {
        return shape_err(
            OP,
            format!(
                "{name}: weight_ih must be ({}, {i}) for input {:?} and H = {h}, got shape {:?}",
                g * h,
                x.shape(),
                p.weight_ih.shape()
            ),
        );
    }
    for (what, bias) in [("bias_ih", p.bias_ih), ("bias_hh", p.bias_hh)] {
        if let Some(bt) = bias
            && bt.shape() != [g * h]
        {
            return shape_err(
                OP,
                format!(
                    "{name}: {what} must be ({}), got shape {:?}",
                    g * h,
                    bt.shape()
                ),
            );
        }
    }
    for (what, s) in [("h0", h0), ("c0", c0)] {
        if let Some(s) = s
            && s.shape() != [b, h]
        {
            return shape_err(
                OP,
                format!(
                    "{name}: {what} must be (B, H) = ({b}, {h}), got shape {:?}",
                    s.shape()
                ),
            );
        }
    }
    if c0.is_some() && cell != RnnCell::Lstm {
        return shape_err(OP, format!("{name}: only the LSTM takes a cell state c0"));
    }
    Ok((b, t, i, h))
}

/// The `(B, H)` view of part `part` (0 = h, 1 = c) of state slot `slot` in a (B, T + 1, S*H)
/// tensor.
fn slot_view(state: &Tensor, d: SeqDims, s: usize, slot: usize, part: usize) -> Tensor {
    let row = (d.steps + 1) * s * d.hidden;
    state.with_view(
        vec![d.batch, d.hidden],
        vec![row, 1],
        state.offset() + slot * s * d.hidden + part * d.hidden,
    )
}

/// Step `t` of a contiguous (B, T, W) tensor as a (B, W) view.
fn step_view(t_all: &Tensor, d: SeqDims, width: usize, t: usize) -> Tensor {
    t_all.with_view(
        vec![d.batch, width],
        vec![d.steps * width, 1],
        t_all.offset() + t * width,
    )
}

/// Run one recurrent layer of `cell` over `x` (B, T, I) from `h0` (B, H) and, for the LSTM, `c0`
/// (B, H) (zeros when `None`). Differentiable in every tensor argument.
pub fn rnn_layer(
    cell: RnnCell,
    x: &Tensor,
    h0: Option<&Tensor>,
    c0: Option<&Tensor>,
    p: RnnLayerParams<'_>,
) -> Result<RnnLayerOutput> {
    let (b, t, _i, h) = check(cell, x, h0, c0, &p)?;
    let d = SeqDims {
        batch: b,
        steps: t,
        hidden: h,
    };
    let (g_w, s) = (cell.gates() * h, cell.state_parts());
    let gpu = x.gpu().clone();
    let (x_c, w_ih, w_hh, state, gates, b_hh) = {
        let _ng = crate::no_grad();
        let x_c = x.detach().contiguous()?;
        let w_ih = p.weight_ih.detach();
        let w_hh = p.weight_hh.detach();
        // gi = x W_ih^T + b_ih, all steps at once: (B, T, G*H).
        let mut gi = x_c.matmul(&w_ih.t()?)?;
        if let Some(bi) = p.bias_ih {
            gi = gi.add(&bi.detach())?;
        }
        let gi = gi.contiguous()?;
        let b_hh = match p.bias_hh {
            Some(bh) => bh.detach().contiguous()?,
            None => Tensor::zeros_on(&gpu, &[g_w])?,
        };
        let state = Tensor::empty_on(&gpu, &[b, t + 1, s * h], DType::F32)?;
        let zeros = Tensor::zeros_on(&gpu, &[b, h])?;
        slot_view(&state, d, s, 0, 0).assign_from(h0.unwrap_or(&zeros))?;
        if cell == RnnCell::Lstm {
            slot_view(&state, d, s, 0, 1).assign_from(c0.unwrap_or(&zeros))?;
        }
        let gates_shape = if cell.saved() > 0 {
            vec![b, t, cell.saved() * h]
        } else {
            vec![1]
        };
        let gates = Tensor::empty_on(&gpu, &gates_shape, DType::F32)?;
        let w_hh_t = w_hh.t()?;
        for step in 0..t {
            // gh = h_{t-1} W_hh^T: (B, H) @ (H, G*H), read straight from the state tensor.
            let gh = slot_view(&state, d, s, step, 0).matmul(&w_hh_t)?;
            rk::gates_forward(
                &gpu,
                cell,
                d,
                step,
                ForwardBufs {
                    gi: gi.operand(),
                    gh: gh.operand(),
                    b_hh: b_hh.operand(),
                    state: state.operand(),
                    gates: (cell.saved() > 0).then(|| gates.operand()),
                },
            )?;
        }
        (x_c, w_ih, w_hh, state, gates, b_hh)
    };
    drop(b_hh);

    // Inputs of the node, in the order the backward returns their gradients.
    let mut inputs: Vec<&Tensor> = vec![x, p.weight_ih, p.weight_hh];
    inputs.extend(p.bias_ih);
    inputs.extend(p.bias_hh);
    inputs.extend(h0);
    inputs.extend(c0);
    let (has_bi, has_bh, has_h0, has_c0) = (
        p.bias_ih.is_some(),
        p.bias_hh.is_some(),
        h0.is_some(),
        c0.is_some(),
    );
    let saved_state = state.detach();
    let recorded = state.record(cell.name(), &inputs, move |g| {
        let grads = layer_backward(cell, d, &x_c, &w_ih, &w_hh, &saved_state, &gates, g)?;
        let mut out = vec![Some(grads.dx), Some(grads.dw_ih), Some(grads.dw_hh)];
        if has_bi {
            out.push(Some(grads.db_ih));
        }
        if has_bh {
            out.push(Some(grads.db_hh));
        }
        if has_h0 {
            out.push(Some(grads.dh0));
        }
        if has_c0 {
            out.push(grads.dc0);
        }
        Ok(out)
    });

    let hs = recorded.narrow(1, t, 1)?;
    let (output, h_n, c_n) = if s == 1 {
        (recorded.narrow(1, 1, t)?, hs.reshape(&[b, h])?, None)
    } else {
        (
            recorded.narrow(1, 1, t)?.narrow(2, 0, h)?,
            hs.narrow(2, 0, h)?.reshape(&[b, h])?,
            Some(hs.narrow(2, h, h)?.reshape(&[b, h])?),
        )
    };
    Ok(RnnLayerOutput { output, h_n, c_n })
}

/// Gradients of one layer (the backward of [`rnn_layer`]).
struct LayerGrads {
    dx: Tensor,
    dw_ih: Tensor,
    dw_hh: Tensor,
    db_ih: Tensor,
    db_hh: Tensor,
    dh0: Tensor,
    dc0: Option<Tensor>,
}

/// Backward through time from `g` = dL/d(state), (B, T + 1, S*H).
#[allow(clippy::too_many_arguments)]
fn layer_backward(
    cell: RnnCell,
    d: SeqDims,
    x_c: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    state: &Tensor,
    gates: &Tensor,
    g: &Tensor,
) -> Result<LayerGrads> {
    let _ng = crate::no_grad();
    let gpu = g.gpu().clone();
    let (b, t, h) = (d.batch, d.steps, d.hidden);
    let (g_w, s) = (cell.gates() * h, cell.state_parts());
    let g = g.contiguous()?;
    let dgi = Tensor::empty_on(&gpu, &[b, t, g_w], DType::F32)?;
    let dgh_own = if cell == RnnCell::Gru {
        Some(Tensor::empty_on(&gpu, &[b, t, g_w], DType::F32)?)
    } else {
        None
    };
    let dgh = dgh_own.as_ref().unwrap_or(&dgi);
    let carry = Tensor::zeros_on(&gpu, &[b, h])?;
    let mut dhrec = Tensor::zeros_on(&gpu, &[b, h])?;
    let has_gates = cell.saved() > 0;
    for step in (0..t).rev() {
        rk::gates_backward(
            &gpu,
            cell,
            d,
            step,
            BackwardBufs {
                g: g.operand(),
                state: state.operand(),
                dhrec: dhrec.operand(),
                dgi: dgi.operand(),
                carry: has_gates.then(|| carry.operand()),
                gates: has_gates.then(|| gates.operand()),
                dgh: dgh_own.as_ref().map(Tensor::operand),
            },
        )?;
        // dh_rec for step t - 1: dgh_t W_hh, (B, G*H) @ (G*H, H).
        dhrec = step_view(dgh, d, g_w, step).matmul(w_hh)?;
    }
    let dgi_flat = dgi.reshape(&[b * t, g_w])?;
    let dgh_flat = dgh.reshape(&[b * t, g_w])?;
    let dx = dgi.matmul(w_ih)?;
    let dw_ih = dgi_flat
        .t()?
        .matmul(&x_c.reshape(&[b * t, x_c.shape()[2]])?)?;
    let db_ih = dgi_flat.sum_dims(&[0], false)?;
    // h_{t-1} for every step: the h parts of state slots 0..T.
    let h_prev = state
        .with_view(
            vec![b, t, h],
            vec![(t + 1) * s * h, s * h, 1],
            state.offset(),
        )
        .contiguous()?
        .reshape(&[b * t, h])?;
    let dw_hh = dgh_flat.t()?.matmul(&h_prev)?;
    let db_hh = dgh_flat.sum_dims(&[0], false)?;
    let mut dh0 = slot_view(&g, d, s, 0, 0).add(&dhrec)?;
    if cell == RnnCell::Gru {
        dh0 = dh0.add(&carry)?;
    }
    let dc0 = if cell == RnnCell::Lstm {
        Some(slot_view(&g, d, s, 0, 1).add(&carry)?)
    } else {
        None
    };
    Ok(LayerGrads {
        dx,
        dw_ih,
        dw_hh,
        db_ih,
        db_hh,
        dh0,
        dc0,
    })
}

/// One step of `cell` composed from primitive ops (matmul, add, sigmoid, tanh, mul), as written
/// in PyTorch's cell documentation: x (B, I), h0 (B, H), c0 (B, H) (LSTM only; zeros when
/// `None`). Returns h (B, H) and, for the LSTM, c (B, H). Gradients come from the primitives.
///
/// This is the reference the fused [`rnn_layer`] is tested and benchmarked against (one graph
/// node per primitive, against one node for the whole sequence).
pub fn rnn_cell_composed(
    cell: RnnCell,
    x: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
    p: RnnLayerParams<'_>,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "rnn_cell_composed";
    let (&[b, _], &[_, hid]) = (x.shape(), h0.shape()) else {
        return shape_err(
            OP,
            format!(
                "{}: x must be (B, I) and h0 (B, H), got shapes {:?} and {:?}",
                cell.name(),
                x.shape(),
                h0.shape()
            ),
        );
    };
    let mut gi = x.matmul(&p.weight_ih.t()?)?;
    if let Some(bi) = p.bias_ih {
        gi = gi.add(bi)?;
    }
    let mut gh = h0.matmul(&p.weight_hh.t()?)?;
    if let Some(bh) = p.bias_hh {
        gh = gh.add(bh)?;
    }
    let blk = |t: &Tensor, k: usize| t.narrow(1, k * hid, hid);
    Ok(match cell {
        RnnCell::RnnTanh => (gi.add(&gh)?.tanh()?, None),
        RnnCell::Lstm => {
            let zeros;
            let c0 = match c0 {
                Some(c) => c,
                None => {
                    zeros = Tensor::zeros_on(x.gpu(), &[b, hid])?;
                    &zeros
                }
            };
            let a = gi.add(&gh)?;
            let i = blk(&a, 0)?.sigmoid()?;
            let f = blk(&a, 1)?.sigmoid()?;
            let g = blk(&a, 2)?.tanh()?;
            let o = blk(&a, 3)?.sigmoid()?;
            let c = f.mul(c0)?.add(&i.mul(&g)?)?;
            (o.mul(&c.tanh()?)?, Some(c))
        }
        RnnCell::Gru => {
            let r = blk(&gi, 0)?.add(&blk(&gh, 0)?)?.sigmoid()?;
            let z = blk(&gi, 1)?.add(&blk(&gh, 1)?)?.sigmoid()?;
            let n = blk(&gi, 2)?.add(&r.mul(&blk(&gh, 2)?)?)?.tanh()?;
            // h = (1 - z) n + z h0 = n + z (h0 - n)
            (n.add(&z.mul(&h0.sub(&n)?)?)?, None)
        }
    })
}
