//! Recurrent layers: [`Rnn`] (tanh), [`Lstm`] and [`Gru`], multi-layer, batch first.
//!
//! Each layer k runs [`crate::ops::rnn_layer`] (one fused gate kernel per step, one autograd node
//! per layer); layer k + 1 reads layer k's output, with dropout in between when training (not
//! after the last layer), as in PyTorch. The equations and their derivatives are in
//! `src/ops/rnn.rs`:
//!
//! ```text
//! RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//! LSTM  i, f, g, o = sig, sig, tanh, sig (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//!       c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
//! GRU   r, z = sig(...),  n = tanh(W_in x_t + b_in + r (W_hn h_{t-1} + b_hn)),
//!       h_t = (1 - z) n + z h_{t-1}
//! ```
//!
//! Inputs are always batch first, x (B, T, I) (PyTorch's `batch_first=True`); the state is
//! (L, B, H) as in PyTorch (it has no batch-first variant). Parameters are named and laid out
//! like `torch.nn.LSTM`'s: `weight_ih_l{k}` (G*H, I_k), `weight_hh_l{k}` (G*H, H), `bias_ih_l{k}`,
//! `bias_hh_l{k}` (G*H), G = 1 / 4 / 3 with gate blocks i, f, g, o (LSTM) and r, z, n (GRU), all
//! initialised U(-1/sqrt(H), 1/sqrt(H)); a state dict maps one to one onto PyTorch's.
//!
//! ```
//! use kiln::{Tensor, nn::{Lstm, Module, RnnOptions}};
//! let lstm = Lstm::new(RnnOptions::new(3, 5).num_layers(2))?;
//! let x = Tensor::randn(&[4, 7, 3], 1)?;
//! let out = lstm.forward_with(&x, None)?;
//! assert_eq!(out.output.shape(), [4, 7, 5]);
//! assert_eq!(out.state.h.shape(), [2, 4, 5]);
//! assert_eq!(out.state.c.as_ref().unwrap().shape(), [2, 4, 5]);
//! assert_eq!(lstm.named_parameters()[4].0, "weight_ih_l1");
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use super::init::Init;
use crate::error::{Result, arg_err, shape_err};
use crate::ops::{RnnCell, RnnLayerParams, rnn_layer};
use crate::tensor::Tensor;

/// Sizes and options of a recurrent stack (batch first always).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnOptions {
    /// I, features of each input step.
    pub input_size: usize,
    /// H, features of the hidden state.
    pub hidden_size: usize,
    /// L, stacked layers (>= 1).
    pub num_layers: usize,
    /// Whether the layers have `bias_ih` / `bias_hh`.
    pub bias: bool,
    /// Dropout probability on the outputs of every layer but the last, in training.
    pub dropout: f32,
}

impl RnnOptions {
    /// One layer with biases and no dropout.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        RnnOptions {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            dropout: 0.0,
        }
    }

    /// Set the number of layers.
    pub fn num_layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }

    /// Set whether the layers have biases.
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }

    /// Set the dropout between layers.
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }
}

/// The recurrent state of a stack: h (L, B, H) and, for the LSTM, c (L, B, H).
#[derive(Debug, Clone)]
pub struct RnnState {
    /// (L, B, H).
    pub h: Tensor,
    /// (L, B, H), LSTM only.
    pub c: Option<Tensor>,
}

impl RnnState {
    /// The same state without graph history (for truncated backpropagation through time, or to
    /// carry a state across generation steps).
    pub fn detach(&self) -> RnnState {
        RnnState {
            h: self.h.detach(),
            c: self.c.as_ref().map(Tensor::detach),
        }
    }
}

/// What a recurrent stack returns.
#[derive(Debug, Clone)]
pub struct RnnOutput {
    /// (B, T, H): the last layer's h at every step.
    pub output: Tensor,
    /// The final state of every layer.
    pub state: RnnState,
}

/// Parameters of one layer, PyTorch layouts.
#[derive(Debug, Clone)]
pub struct RecurrentLayer {
    /// `weight_ih_l{k}`, (G*H, I_k).
    pub weight_ih: Tensor,
    /// `weight_hh_l{k}`, (G*H, H).
    pub weight_hh: Tensor,
    /// `bias_ih_l{k}`, (G*H).
    pub bias_ih: Option<Tensor>,
    /// `bias_hh_l{k}`, (G*H).
    pub bias_hh: Option<Tensor>,
}

impl RecurrentLayer {
    /// The layer's tensors: weights, then the biases it has.
    fn tensors(&self) -> Vec<Tensor> {
        let biases = [&self.bias_ih, &self.bias_hh];
        let mut v = vec![self.weight_ih.clone(), self.weight_hh.clone()];
        v.extend(biases.into_iter().flatten().cloned());
        v
    }
}

/// A multi-layer recurrent stack of any [`RnnCell`]; [`Rnn`], [`Lstm`] and [`Gru`] wrap it.
#[derive(Debug, Clone)]
pub struct Recurrent {
    cell: RnnCell,
    opts: RnnOptions,
    /// The layers, bottom first.
    pub layers: Vec<RecurrentLayer>,
    training: bool,
    /// Layers per checkpointed segment (0: off).
    checkpoint_every: usize,
}

impl Recurrent {
    /// A stack of `cell` on `gpu` with PyTorch's initialisation.
    pub fn new_on(gpu: &Arc<Gpu>, cell: RnnCell, opts: RnnOptions) -> Result<Self> {
        let name = cell.name();
        if opts.input_size == 0 || opts.hidden_size == 0 || opts.num_layers == 0 {
            return arg_err(
                "Recurrent",
                format!(
                    "{name}: input_size, hidden_size and num_layers must be positive, got {}, \
                     {} and {}",
                    opts.input_size, opts.hidden_size, opts.num_layers
                ),
            );
        }
        if !(0.0..=1.0).contains(&opts.dropout) {
            return arg_err(
                "Recurrent",
                format!("{name}: dropout must be in [0, 1], got {}", opts.dropout),
            );
        }
        let (h, gh) = (opts.hidden_size, cell.gates() * opts.hidden_size);
        let k = 1.0 / (h as f32).sqrt();
        let u = Init::Uniform { lo: -k, hi: k };
        let mut layers = Vec::with_capacity(opts.num_layers);
        for l in 0..opts.num_layers {
            let i = if l == 0 { opts.input_size } else { h };
            let bias = |on: bool| -> Result<Option<Tensor>> {
                Ok(if on {
                    Some(u.tensor_on(gpu, &[gh])?.requires_grad())
                } else {
                    None
                })
            };
            layers.push(RecurrentLayer {
                weight_ih: u.tensor_on(gpu, &[gh, i])?.requires_grad(),
                weight_hh: u.tensor_on(gpu, &[gh, h])?.requires_grad(),
                bias_ih: bias(opts.bias)?,
                bias_hh: bias(opts.bias)?,
            });
        }
        Ok(Recurrent {
            cell,
            opts,
            layers,
            training: true,
            checkpoint_every: 0,
        })
    }

    /// The cell.
    pub fn cell(&self) -> RnnCell {
        self.cell
    }

    /// The options it was built with.
    pub fn options(&self) -> RnnOptions {
        self.opts
    }

    /// Run the stack over x (B, T, I) from `state` (zeros when `None`).
    pub fn forward_with(&self, x: &Tensor, state: Option<&RnnState>) -> Result<RnnOutput> {
        let name = self.cell.name();
        let (l_n, h) = (self.opts.num_layers, self.opts.hidden_size);
        let what = format!("{name}: ");
        let (b, _) = super::expect_sequence("Recurrent", &what, x, self.opts.input_size)?;
        if let Some(s) = state {
            let want = [l_n, b, h];
            let c_ok = match (&s.c, self.cell) {
                (Some(c), RnnCell::Lstm) => c.shape() == want,
                (None, RnnCell::Lstm) => false,
                (c, _) => c.is_none(),
            };
            if s.h.shape() != want || !c_ok {
                return shape_err(
                    "Recurrent",
                    format!(
                        "{name}: state must be h{} (L, B, H) = {want:?}, got h {:?}{}",
                        if self.cell == RnnCell::Lstm {
                            " and c"
                        } else {
                            " (and no c)"
                        },
                        s.h.shape(),
                        s.c.as_ref()
                            .map_or(String::new(), |c| format!(", c {:?}", c.shape()))
                    ),
                );
            }
        }
        let pick = |t: &Tensor, l: usize| t.narrow(0, l, 1)?.reshape(&[b, h]);
        let h0: Vec<Tensor> = match state {
            Some(s) => (0..l_n).map(|l| pick(&s.h, l)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let c0: Vec<Tensor> = match state.and_then(|s| s.c.as_ref()) {
            Some(c) => (0..l_n).map(|l| pick(c, l)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let every = self.checkpoint_every;
        let (cur, hs, cs) = if every == 0 || !crate::is_grad_enabled() {
            self.run_layers(0..l_n, x, &h0, &c0)?
        } else {
            self.checkpointed_layers(every, x, &h0, &c0)?
        };
        let stack = |v: &[Tensor]| Tensor::stack(&v.iter().collect::<Vec<_>>(), 0);
        let c = if cs.is_empty() {
            None
        } else {
            Some(stack(&cs)?)
        };
        Ok(RnnOutput {
            output: cur,
            state: RnnState { h: stack(&hs)?, c },
        })
    }
}

impl Recurrent {
    /// Layers `range` on x (B, T, I_k) from initial states `h0`, `c0` (B, H), one per layer of
    /// `range` in order (empty: zeros): the output (B, T, H), dropout applied unless `range`
    /// ends the stack, and the final h and c (B, H) of each layer in `range`.
    fn run_layers(
        &self,
        range: std::ops::Range<usize>,
        x: &Tensor,
        h0: &[Tensor],
        c0: &[Tensor],
    ) -> Result<(Tensor, Vec<Tensor>, Vec<Tensor>)> {
        let (mut cur, mut hs, mut cs) = (x.clone(), Vec::new(), Vec::new());
        let first = range.start;
        for l in range {
            let layer = &self.layers[l];
            let out = rnn_layer(
                self.cell,
                &cur,
                h0.get(l - first),
                c0.get(l - first),
                RnnLayerParams {
                    weight_ih: &layer.weight_ih,
                    weight_hh: &layer.weight_hh,
                    bias_ih: layer.bias_ih.as_ref(),
                    bias_hh: layer.bias_hh.as_ref(),
                },
            )?;
            cur = if l + 1 < self.opts.num_layers {
                super::dropout(&out.output, self.opts.dropout, self.training)?
            } else {
                out.output
            };
            hs.push(out.h_n);
            cs.extend(out.c_n);
        }
        Ok((cur, hs, cs))
    }

    /// [`Recurrent::run_layers`] over the whole stack as checkpointed segments of `every`
    /// layers: each segment keeps its input sequence and initial states only.
    fn checkpointed_layers(
        &self,
        every: usize,
        x: &Tensor,
        h0: &[Tensor],
        c0: &[Tensor],
    ) -> Result<(Tensor, Vec<Tensor>, Vec<Tensor>)> {
        let (l_n, lstm) = (self.opts.num_layers, self.cell == RnnCell::Lstm);
        let (mut cur, mut hs, mut cs) = (x.clone(), Vec::new(), Vec::new());
        for start in (0..l_n).step_by(every) {
            let range = start..(start + every).min(l_n);
            let n = range.len();
            // Inputs: the sequence, then the segment's h0 and c0 (when given).
            let mut inputs = vec![cur.clone()];
            inputs.extend(h0.get(range.clone()).unwrap_or(&[]).iter().cloned());
            inputs.extend(c0.get(range.clone()).unwrap_or(&[]).iter().cloned());
            let (has_h, has_c) = (!h0.is_empty(), !c0.is_empty());
            let params: Vec<Tensor> = self.layers[range.clone()]
                .iter()
                .flat_map(RecurrentLayer::tensors)
                .collect();
            let me = self.clone();
            let outs = super::checkpoint::checkpoint_fn_multi(&inputs, &params, move |xs| {
                let h = if has_h { &xs[1..1 + n] } else { &[] };
                let c_at = if has_h { 1 + n } else { 1 };
                let c = if has_c { &xs[c_at..c_at + n] } else { &[] };
                let (o, hs, cs) = me.run_layers(range.clone(), &xs[0], h, c)?;
                Ok([vec![o], hs, cs].concat())
            })?;
            cur = outs[0].clone();
            hs.extend_from_slice(&outs[1..1 + n]);
            if lstm {
                cs.extend_from_slice(&outs[1 + n..1 + 2 * n]);
            }
        }
        Ok((cur, hs, cs))
    }
}

impl Module for Recurrent {
    /// The output sequence (B, T, H) from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with(x, None)?.output)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (k, l) in self.layers.iter().enumerate() {
            v.push((format!("weight_ih_l{k}"), l.weight_ih.clone()));
            v.push((format!("weight_hh_l{k}"), l.weight_hh.clone()));
            if let Some(b) = &l.bias_ih {
                v.push((format!("bias_ih_l{k}"), b.clone()));
            }
            if let Some(b) = &l.bias_hh {
                v.push((format!("bias_hh_l{k}"), b.clone()));
            }
        }
        v
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }

    /// Checkpointed segments of `every` layers (0: off).
    fn set_checkpointing(&mut self, every: usize) -> bool {
        self.checkpoint_every = every;
        true
    }
}

macro_rules! cell_module {
    ($(#[$meta:meta])* $name:ident, $cell:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Recurrent);

        impl $name {
            /// A stack on the default device with PyTorch's initialisation.
            pub fn new(opts: RnnOptions) -> Result<Self> {
                Self::new_on(&crate::device()?, opts)
            }

            /// A stack on `gpu` with PyTorch's initialisation.
            pub fn new_on(gpu: &Arc<Gpu>, opts: RnnOptions) -> Result<Self> {
                Ok($name(Recurrent::new_on(gpu, $cell, opts)?))
            }

            /// Run over x (B, T, I) from `state` (zeros when `None`); see
            /// [`Recurrent::forward_with`].
            pub fn forward_with(&self, x: &Tensor, state: Option<&RnnState>) -> Result<RnnOutput> {
                self.0.forward_with(x, state)
            }
        }

        impl std::ops::Deref for $name {
            type Target = Recurrent;
            fn deref(&self) -> &Recurrent {
                &self.0
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                self.0.forward(x)
            }
            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                self.0.named_parameters()
            }
            fn set_training(&mut self, training: bool) {
                self.0.set_training(training)
            }
            fn is_training(&self) -> bool {
                self.0.is_training()
            }
            fn set_checkpointing(&mut self, every: usize) -> bool {
                self.0.set_checkpointing(every)
            }
        }
    };
}

cell_module!(
    /// Elman RNN with tanh (`torch.nn.RNN`, `nonlinearity='tanh'`, `batch_first=True`).
    Rnn,
    RnnCell::RnnTanh
);
cell_module!(
    /// LSTM (`torch.nn.LSTM`, `batch_first=True`); gate order i, f, g, o.
    Lstm,
    RnnCell::Lstm
);
cell_module!(
    /// GRU (`torch.nn.GRU`, `batch_first=True`); gate order r, z, n.
    Gru,
    RnnCell::Gru
);
