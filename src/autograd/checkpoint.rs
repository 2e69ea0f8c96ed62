//! Checkpointed segments: activation memory traded for one more forward pass.
//!
//! A segment `y = f(x_1..x_k; p_1..p_m)` (inputs x, parameters p that `f` reads) runs in the
//! forward pass under [`no_grad`]: none of its intermediate tensors is kept, only the inputs
//! (the parameters are alive anyway). The output `y` gets one node, `checkpoint`, whose inputs
//! are `(x_1..x_k, p_1..p_m)`. In backward, given `g = dL/dy`, the node
//!
//! ```text
//! x'_i = detach(x_i)            (requires grad where x_i does)
//! y'   = f(x'; p)               recomputed with grad on: the segment's graph, alive only now
//! dL/dx_i = g . dy'/dx'_i,  dL/dp_j = g . dy'/dp_j     (propagated from y' with seed g)
//! ```
//!
//! and returns those gradients like any op, so the outer pass adds them up (the `.grad` of a
//! parameter is written by the outer pass, not inside the node). A leaf that `f` reads but the
//! caller did not list among `p` still gets its gradient, accumulated into its `.grad` directly.
//!
//! Memory: the forward keeps the k inputs instead of `f`'s intermediates; backward holds one
//! segment's intermediates at a time. Time: one more forward of `f` per backward.
//!
//! `f` must compute the same `y` both times. It is told which [`Pass`] it runs: random draws
//! replay their stream on [`Pass::Recompute`] (the layer wrapper `nn::checkpoint` does that for
//! kiln's RNG), and layers that update state in forward (BatchNorm's running statistics) skip
//! the update while [`is_recomputing`] is true. Segments nest: a segment inside a recomputed
//! one records its own node.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{GRAD_ENABLED, NoGradGuard, is_grad_enabled, no_grad};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Which pass runs a segment's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The forward pass (under no-grad when checkpointed).
    Forward,
    /// The recomputation in backward, with grad on.
    Recompute,
}

/// A segment's function: inputs -> output, told which pass runs it.
pub type SegmentFn = dyn Fn(&[Tensor], Pass) -> Result<Tensor> + Send + Sync;

thread_local! {
    static RECOMPUTING: Cell<usize> = const { Cell::new(0) };
}

/// True while a checkpointed segment is being recomputed in backward on this thread (layers
/// that update state in their forward, like BatchNorm's running statistics, skip it then).
pub fn is_recomputing() -> bool {
    RECOMPUTING.with(|r| r.get() > 0)
}

/// Marks a recomputation until dropped.
struct RecomputeGuard;

impl RecomputeGuard {
    fn new() -> Self {
        RECOMPUTING.with(|r| r.set(r.get() + 1));
        RecomputeGuard
    }
}

impl Drop for RecomputeGuard {
    fn drop(&mut self) {
        RECOMPUTING.with(|r| r.set(r.get() - 1));
    }
}

/// Turn graph recording on until the guard drops (inside backward, which runs without it).
fn enable_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(true));
    NoGradGuard { prev }
}

/// Run `f` on `inputs` as a checkpointed segment (see the module notes); `params` are the
/// tensors `f` reads besides its inputs that need gradients (the segment's parameters; listed
/// twice counts once). Without grad mode, or when neither an input nor a parameter requires
/// grad, `f` simply runs ([`Pass::Forward`]).
pub fn checkpoint_segment(
    inputs: &[Tensor],
    params: &[Tensor],
    f: Arc<SegmentFn>,
) -> Result<Tensor> {
    let mut seen = HashSet::new();
    let params: Vec<Tensor> = params
        .iter()
        .filter(|p| seen.insert(p.id()))
        .cloned()
        .collect();
    let wanted = inputs.iter().chain(&params).any(Tensor::requires_grad_flag);
    if !is_grad_enabled() || !wanted {
        return f(inputs, Pass::Forward);
    }
    let y = {
        let _g = no_grad();
        f(inputs, Pass::Forward)?
    };
    let shape = y.shape().to_vec();
    // The saved inputs: their data without their graph (the node keeps that as its inputs).
    let saved: Vec<(Tensor, bool)> = inputs
        .iter()
        .map(|x| (x.detach(), x.requires_grad_flag()))
        .collect();
    let node_params = params.clone();
    let all: Vec<&Tensor> = inputs.iter().chain(&params).collect();
    Ok(y.record("checkpoint", &all, move |g| {
        recompute(&saved, &node_params, f.as_ref(), &shape, g)
    }))
}

/// The `checkpoint` node's gradient rule: rebuild the segment's graph from the saved inputs and
/// propagate `g` through it, collecting the gradients of the inputs and the parameters.
fn recompute(
    saved: &[(Tensor, bool)],
    params: &[Tensor],
    f: &SegmentFn,
    shape: &[usize],
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let _grad = enable_grad();
    let _r = RecomputeGuard::new();
    let xs: Vec<Tensor> = saved
        .iter()
        .map(|(x, rg)| {
            let x = x.detach();
            // A leaf that collects its gradient, but not a parameter: `requires_grad()` would
            // retag the saved activation's storage as weights in the memory ledger.
            if *rg {
                x.set_requires_grad(true)?;
            }
            Ok(x)
        })
        .collect::<Result<_>>()?;
    let y = f(&xs, Pass::Recompute)?;
    if y.shape() != shape {
        return Err(Error::Autograd(format!(
            "checkpoint: the recomputed segment gave shape {:?}, the forward pass {shape:?} \
             (the segment's function must compute the same thing both times)",
            y.shape()
        )));
    }
    let targets: Vec<&Tensor> = xs.iter().chain(params).collect();
    let stop: HashSet<u64> = targets.iter().map(|t| t.id()).collect();
    let mut got: HashMap<u64, Tensor> = HashMap::new();
    if y.requires_grad_flag() {
        y.propagate(g, &stop, &mut |t, gt| {
            if stop.contains(&t.id()) {
                got.insert(t.id(), gt);
                Ok(())
            } else {
                t.accumulate_grad(gt)
            }
        })?;
    }
    Ok(targets.iter().map(|t| got.remove(&t.id())).collect())
}
