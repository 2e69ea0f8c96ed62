//! Launchers for `rnn.wgsl`: the fused per-step gate kernels of the recurrent cells.
//!
//! One step of a layer is `gh = h_{t-1} W_hh^T` (a matmul, launched by the caller) followed by
//! one of these kernels, which applies the gate nonlinearities, updates the state in place in a
//! (B, T + 1, S*H) state buffer and saves the gate activations for the backward pass. The
//! backward step kernel turns the gradient of the state into gradients of the gate
//! pre-activations. Both are elementwise over B*H with no loops (see `shaders/rnn.wgsl` for the
//! equations and every buffer layout).
//!
//! See also:
//! - shader: `shaders/rnn.wgsl`
//! - CPU twin: [`crate::reference::rnn`]
//! - op: `src/ops/rnn.rs`
//! - tests: `kernels/tests/kernels/rnn.rs` (gate kernels vs twin), `tests/ops/rnn.rs`;
//!   benchmark: `benches/rnn.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

/// Invocations per workgroup (WGSL `override WG`). The kernels are tiny and elementwise; 64 keeps
/// a few workgroups busy even for small B*H.
pub const WG: u32 = 64;

crate::kernel_params! {
    /// Params of every entry point in `rnn.wgsl`.
    pub struct RnnParams in "rnn.wgsl" as "RnnParams" {
        /// B, batch.
        pub batch: u32,
        /// T, time steps.
        pub steps: u32,
        /// H, hidden size.
        pub hidden: u32,
        /// The step, `0 <= t < T`.
        pub t: u32,
        /// Element offset of the buffer at binding 1.
        pub o1: u32,
        /// Element offset of the buffer at binding 2.
        pub o2: u32,
        /// Element offset of the buffer at binding 3.
        pub o3: u32,
        /// Element offset of the buffer at binding 4.
        pub o4: u32,
        /// Element offset of the buffer at binding 5.
        pub o5: u32,
        /// Element offset of the buffer at binding 6.
        pub o6: u32,
        /// Element offset of the buffer at binding 7.
        pub o7: u32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    /// Elman RNN with tanh: `h = tanh(W_ih x + b_ih + W_hh h_prev + b_hh)`.
    RnnTanh,
    /// LSTM, gate order i, f, g, o.
    Lstm,
    /// GRU, gate order r, z, n.
    Gru,
}

impl Cell {
    /// G, the number of gate blocks of H rows in `weight_ih` / `weight_hh` (1, 4, 3).
    pub fn gates(self) -> usize {
        match self {
            Cell::RnnTanh => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    /// S, state vectors per step in the state buffer: 2 for the LSTM (h, c), else 1.
    pub fn state_parts(self) -> usize {
        match self {
            Cell::Lstm => 2,
            _ => 1,
        }
    }

    /// Saved activations per step and unit (the `gates` buffer holds (B, T, saved * H)): 0 for
    /// the RNN (h itself suffices), 4 otherwise (LSTM i, f, g, o; GRU r, z, n, hn).
    pub fn saved(self) -> usize {
        match self {
            Cell::RnnTanh => 0,
            _ => 4,
        }
    }

    /// Lower-case name, as in PyTorch's `mode` (`rnn_tanh`, `lstm`, `gru`).
    pub fn name(self) -> &'static str {
        match self {
            Cell::RnnTanh => "rnn_tanh",
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
        }
    }
}

/// Sizes of one layer's sequence: B, T, H.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqDims {
    /// B, batch.
    pub batch: usize,
    /// T, time steps.
    pub steps: usize,
    /// H, hidden size.
    pub hidden: usize,
}

/// Buffers of one forward step.
#[derive(Debug, Clone, Copy)]
pub struct ForwardBufs<'a> {
    /// `x W_ih^T + b_ih` for all steps, (B, T, G*H).
    pub gi: Operand<'a>,
    /// `h_{t-1} W_hh^T` of this step, (B, G*H).
    pub gh: Operand<'a>,
    /// `b_hh`, (G*H) (zeros for a layer without bias).
    pub b_hh: Operand<'a>,
    /// The state, (B, T + 1, S*H): reads slot t, writes slot t + 1.
    pub state: Operand<'a>,
    /// Saved activations, (B, T, 4*H); required for the LSTM and GRU, unused by the RNN.
    pub gates: Option<Operand<'a>>,
}

/// Buffers of one backward step.
#[derive(Debug, Clone, Copy)]
pub struct BackwardBufs<'a> {
    /// Upstream gradient of the state, (B, T + 1, S*H).
    pub g: Operand<'a>,
    /// The forward's state, (B, T + 1, S*H).
    pub state: Operand<'a>,
    /// `dgh_{t+1} W_hh`, (B, H) (zeros at the last step).
    pub dhrec: Operand<'a>,
    /// Gradients of the input-path pre-activations, (B, T, G*H): writes step t.
    pub dgi: Operand<'a>,
    /// Running gradient carried to the previous step, (B, H), read and overwritten: dc for the
    /// LSTM, `z * dh` for the GRU (zeros before the last step); unused by the RNN.
    pub carry: Option<Operand<'a>>,
    /// The forward's saved activations, (B, T, 4*H); LSTM and GRU only.
    pub gates: Option<Operand<'a>>,
    /// Gradients of the recurrent-path pre-activations, (B, T, G*H): writes step t; GRU only
    /// (for the RNN and LSTM they equal `dgi`).
    pub dgh: Option<Operand<'a>>,
}

/// The name errors give for `cell`'s kernels.
fn kernel(cell: Cell) -> String {
    format!("rnn.wgsl ({})", cell.name())
}

fn check(cell: Cell, d: SeqDims, t: usize, offsets: &[usize]) -> Result<()> {
    if t >= d.steps {
        return Err(KernelError::launch(
            kernel(cell),
            format!("step {t} is outside 0..{}", d.steps),
        ));
    }
    let h = d.hidden as u128;
    let widest = (cell.state_parts() as u128)
        .max(cell.gates() as u128)
        .max(4);
    let elems = d.batch as u128 * (d.steps as u128 + 1) * widest * h;
    let max_off = offsets.iter().copied().max().unwrap_or(0) as u128;
    if elems + max_off > u32::MAX as u128 {
        return Err(KernelError::launch(
            kernel(cell),
            format!(
                "(B, T, H) = ({}, {}, {}) exceeds the 2^32 index range",
                d.batch, d.steps, d.hidden
            ),
        ));
    }
    Ok(())
}

fn need<'a>(cell: Cell, what: &str, b: Option<Operand<'a>>) -> Result<Operand<'a>> {
    match b {
        Some(b) => Ok(b),
        None => Err(KernelError::launch(
            kernel(cell),
            format!("the {what} buffer is required for this cell"),
        )),
    }
}

fn params(d: SeqDims, t: usize, o: [usize; 7]) -> RnnParams {
    RnnParams {
        batch: d.batch as u32,
        steps: d.steps as u32,
        hidden: d.hidden as u32,
        t: t as u32,
        o1: o[0] as u32,
        o2: o[1] as u32,
        o3: o[2] as u32,
        o4: o[3] as u32,
        o5: o[4] as u32,
        o6: o[5] as u32,
        o7: o[6] as u32,
        _pad: 0,
    }
}

/// Record step `t` of `cell`'s forward or `backward` entry of rnn.wgsl, one invocation per
/// (batch, hidden) element, the operands at offsets `o` and the buffers from `bufs` (asked for
/// after the checks) bound in order; nothing for an empty batch or hidden size.
fn record<'a>(
    gpu: &Gpu,
    (cell, backward): (Cell, bool),
    (d, t): (SeqDims, usize),
    o: [usize; 7],
    bufs: impl FnOnce() -> Result<Vec<&'a GpuBuffer>>,
) -> Result<()> {
    if d.batch * d.hidden == 0 {
        return Ok(());
    }
    check(cell, d, t, &o)?;
    let entry = match (cell, backward) {
        (Cell::RnnTanh, false) => "rnn_tanh_forward",
        (Cell::Lstm, false) => "lstm_forward",
        (Cell::Gru, false) => "gru_forward",
        (Cell::RnnTanh, true) => "rnn_tanh_backward",
        (Cell::Lstm, true) => "lstm_backward",
        (Cell::Gru, true) => "gru_backward",
    };
    let key = KernelKey::new("rnn.wgsl", entry).with("WG", WG);
    let grid = grid_1d(d.batch * d.hidden, WG);
    gpu.dispatch(&key, &params(d, t, o), &bufs()?, grid);
    Ok(())
}

/// Forward gates of step `t`: reads `gi[:, t]`, `gh`, `b_hh` and state slot t, writes state slot
/// t + 1 and (LSTM, GRU) the saved activations of step t.
pub fn gates_forward(
    gpu: &Gpu,
    cell: Cell,
    d: SeqDims,
    t: usize,
    bufs: ForwardBufs<'_>,
) -> Result<()> {
    let ForwardBufs {
        gi,
        gh,
        b_hh,
        state,
        gates,
    } = bufs;
    let gates_off = gates.map_or(0, |g| g.offset);
    let o = [
        gi.offset,
        gh.offset,
        b_hh.offset,
        state.offset,
        gates_off,
        0,
        0,
    ];
    record(gpu, (cell, false), (d, t), o, || {
        let mut list = vec![gi.buf, gh.buf, b_hh.buf, state.buf];
        if cell != Cell::RnnTanh {
            list.push(need(cell, "gates", gates)?.buf);
        }
        Ok(list)
    })
}

/// Backward gates of step `t` (call for t = T-1 down to 0): writes `dgi[:, t]` (and for the GRU
/// `dgh[:, t]`) and updates `carry` for step t - 1.
pub fn gates_backward(
    gpu: &Gpu,
    cell: Cell,
    d: SeqDims,
    t: usize,
    bufs: BackwardBufs<'_>,
) -> Result<()> {
    let BackwardBufs {
        g,
        state,
        dhrec,
        dgi,
        carry,
        gates,
        dgh,
    } = bufs;
    let off = |b: Option<Operand<'_>>| b.map_or(0, |b| b.offset);
    let o = [
        g.offset,
        state.offset,
        dhrec.offset,
        dgi.offset,
        off(carry),
        off(gates),
        off(dgh),
    ];
    record(gpu, (cell, true), (d, t), o, || {
        let mut list = vec![g.buf, state.buf, dhrec.buf, dgi.buf];
        if cell != Cell::RnnTanh {
            list.push(need(cell, "carry", carry)?.buf);
            list.push(need(cell, "gates", gates)?.buf);
        }
        if cell == Cell::Gru {
            list.push(need(cell, "dgh", dgh)?.buf);
        }
        Ok(list)
    })
}
