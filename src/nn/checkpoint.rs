//! Activation checkpointing for layers: keep a segment's inputs, recompute the rest in backward.
//!
//! The mechanism is [`crate::autograd::checkpoint`]'s: a segment `y = f(x)` runs in the forward
//! pass without recording a graph, and its backward recomputes `f` with grad on and propagates
//! through that. This module adds what layers need on top:
//!
//! - **the same random draws**: the segment records the keys its forward drew from kiln's
//!   stream ([`super::rng::record_keys`]) and its recomputation draws them again
//!   ([`super::rng::replay_keys`]): dropout gets the same masks, and the stream does not move;
//! - **modules**: [`checkpoint`] runs one [`Module`], [`forward_blocks`] a stack of blocks in
//!   segments of `every` blocks (how GPT, ResNet-18 and the recurrent stacks implement
//!   [`Module::set_checkpointing`]), [`Checkpoint`] wraps any module;
//! - **several outputs** ([`checkpoint_fn_multi`]): packed into one flat tensor (B T H each,
//!   say, for a recurrent layer's output and final states) and handed out as views of it.
//!
//! Shapes: whatever the function takes and returns. Gradients equal the unsegmented run's up
//! to float rounding (the sums of parameter gradients may add in another order).
//!
//! ```
//! use kiln::{Tensor, nn::{Linear, Module, checkpoint}};
//! let fc = Linear::new(3, 2, true)?;
//! let x = Tensor::randn(&[4, 3], 1)?.requires_grad();
//! let y = checkpoint::checkpoint(&fc, &x)?;         // (4, 2); no activations of fc kept
//! y.square()?.sum()?.backward()?;
//! assert_eq!(fc.weight.grad().unwrap().shape(), [2, 3]);
//! assert_eq!(x.grad().unwrap().shape(), [4, 3]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::{Arc, Mutex};

use super::Module;
use super::rng::{record_keys, replay_keys};
use crate::autograd::checkpoint::{Pass, checkpoint_segment};
use crate::error::Result;
use crate::tensor::Tensor;

/// Run `f(inputs)` as a checkpointed segment; `params` are the tensors `f` reads besides its
/// inputs that need gradients (its layers' parameters). Random draws of kiln's stream replay
/// in the recomputation. Outside grad mode `f` simply runs.
pub fn checkpoint_fn(
    inputs: &[Tensor],
    params: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let tape: Mutex<Vec<u64>> = Mutex::default();
    let segment = move |xs: &[Tensor], pass: Pass| match pass {
        Pass::Forward => {
            let (y, keys) = record_keys(|| f(xs));
            *tape.lock().unwrap_or_else(|e| e.into_inner()) = keys;
            y
        }
        Pass::Recompute => {
            let keys = tape.lock().unwrap_or_else(|e| e.into_inner()).clone();
            replay_keys(&keys, || f(xs))
        }
    };
    checkpoint_segment(inputs, params, Arc::new(segment))
}

/// [`checkpoint_fn`] for a function with several outputs: they travel as one flat tensor (the
/// concatenation of the flattened outputs, f32) and come back as views of it, shaped as `f`
/// returned them.
pub fn checkpoint_fn_multi(
    inputs: &[Tensor],
    params: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync + 'static,
) -> Result<Vec<Tensor>> {
    let shapes: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
    let seen = shapes.clone();
    let packed = checkpoint_fn(inputs, params, move |xs| {
        let outs = f(xs)?;
        *seen.lock().unwrap_or_else(|e| e.into_inner()) =
            outs.iter().map(|o| o.shape().to_vec()).collect();
        let flat = outs
            .iter()
            .map(Tensor::flatten_all)
            .collect::<Result<Vec<_>>>()?;
        Tensor::concat(&flat.iter().collect::<Vec<_>>(), 0)
    })?;
    let shapes = shapes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut at = 0;
    shapes
        .iter()
        .map(|s| {
            let n = s.iter().product::<usize>();
            at += n;
            packed.narrow(0, at - n, n)?.reshape(s)
        })
        .collect()
}

/// `m.forward(x)` as a checkpointed segment (the module is cloned into the graph: its
/// parameters are shared, not copied).
pub fn checkpoint<M: Module + Clone + 'static>(m: &M, x: &Tensor) -> Result<Tensor> {
    let own = m.clone();
    checkpoint_fn(std::slice::from_ref(x), &m.parameters(), move |xs| {
        own.forward(&xs[0])
    })
}

/// `blocks` applied in order to x, as checkpointed segments of `every` consecutive blocks
/// (the last one shorter); `every == 0`, or no grad mode, runs them plainly.
pub fn forward_blocks<M: Module + Clone + 'static>(
    blocks: &[M],
    every: usize,
    x: &Tensor,
) -> Result<Tensor> {
    let run = |bs: &[M], x: &Tensor| bs.iter().try_fold(x.clone(), |h, b| b.forward(&h));
    if every == 0 || !crate::is_grad_enabled() {
        return run(blocks, x);
    }
    blocks.chunks(every).try_fold(x.clone(), |h, seg| {
        let params: Vec<Tensor> = seg.iter().flat_map(|b| b.parameters()).collect();
        let seg = seg.to_vec();
        checkpoint_fn(&[h], &params, move |xs| {
            seg.iter().try_fold(xs[0].clone(), |h, b| b.forward(&h))
        })
    })
}

/// Any module as one checkpointed segment (when on; off, it is the module itself). Names,
/// parameters, buffers and modes are the inner module's.
#[derive(Debug, Clone)]
pub struct Checkpoint<M> {
    /// The wrapped module.
    pub inner: M,
    /// Whether the forward is checkpointed.
    pub on: bool,
}

impl<M> Checkpoint<M> {
    /// `inner`, checkpointed.
    pub fn new(inner: M) -> Self {
        Checkpoint { inner, on: true }
    }
}

impl<M: Module + Clone + 'static> Module for Checkpoint<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.on {
            checkpoint(&self.inner, x)
        } else {
            self.inner.forward(x)
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.inner.named_parameters()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.inner.named_buffers()
    }

    fn set_training(&mut self, training: bool) {
        self.inner.set_training(training)
    }

    fn is_training(&self) -> bool {
        self.inner.is_training()
    }

    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut super::Linear)) {
        self.inner.visit_linears_mut(prefix, f)
    }

    /// Any `every > 0` turns the wrapper on, 0 off.
    fn set_checkpointing(&mut self, every: usize) -> bool {
        self.on = every > 0;
        true
    }
}
