//! Define-by-run reverse-mode autodiff, as in PyTorch.
//!
//! Each differentiable op that sees an input with `requires_grad` attaches a [`Node`] to its
//! output: the op's name, its inputs, and a closure that maps dL/d(output) to dL/d(each input).
//! `loss.backward()` orders the graph topologically from the loss, calls each node once with the
//! summed gradient of its output, and *adds* the results into the `.grad` of leaf tensors
//! (gradients accumulate across calls; [`Tensor::zero_grad`] is a separate step).
//!
//! The graph lives in the `Arc`s of the tensors that hold it: dropping the loss frees it.
//! Inside [`no_grad`] no nodes are recorded (backward itself runs that way).
//!
//! Memory ledger: tensors made while the graph records count as activations (see
//! `Tensor::empty_on`), a leaf marked with [`Tensor::requires_grad`] as weights, and a gradient
//! as gradients once it becomes a leaf's `.grad`.
//!
//! [`checkpoint`] holds checkpointed segments: a part of the graph not kept in the forward pass
//! and recomputed in backward (activation checkpointing).

pub mod checkpoint;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kiln_kernels::memory::Category;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod graph;
pub use graph::{GraphNode, graph_dot, graph_nodes, graph_to_dot};

/// Maps dL/d(output) to dL/d(input) for each input (`None` = no gradient flows there).
pub type BackwardFn = dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync;

/// One recorded op in the graph.
pub struct Node {
    /// The op's name (shown in `Debug` and in errors).
    pub name: &'static str,
    /// The op's inputs, in the order `backward` returns their gradients.
    pub inputs: Vec<Tensor>,
    /// The gradient rule.
    pub backward: Box<BackwardFn>,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside a [`no_grad`] scope on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped.
pub struct NoGradGuard {
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Disable graph recording until the guard drops: `let _g = kiln::no_grad();`.
pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

impl Tensor {
    /// Attach a backward node to `self` (an op's fresh output) if grad is on and an input needs it.
    pub(crate) fn record(
        self,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        // `kiln explain` / `--trace`: the kernels that just ran were this op's.
        kiln_kernels::capture::claim(name, || op_shapes(inputs, self.shape()));
        if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad_flag()) {
            return self;
        }
        let node = Arc::new(Node {
            name,
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward: Box::new(backward),
        });
        let mut t = self.detach();
        let inner = Arc::get_mut(&mut t.inner).expect("fresh tensor is unique");
        *inner.requires_grad.get_mut() = true;
        inner.node = Some(node);
        t
    }

    /// True when gradients flow to or through this tensor.
    pub fn requires_grad_flag(&self) -> bool {
        self.inner
            .requires_grad
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turn gradient collection of a leaf on or off in place (freezing a parameter: ops recorded
    /// afterwards send it no gradient). Errors on non-leaf tensors, whose flag follows their inputs.
    pub fn set_requires_grad(&self, on: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(Error::Autograd(format!(
                "set_requires_grad on a non-leaf tensor (made by {}); detach() it first",
                self.grad_fn().unwrap_or("an op")
            )));
        }
        self.inner
            .requires_grad
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Mark this tensor as a leaf that collects gradients (a parameter; the memory ledger counts
    /// its storage as weights). Returns the marked tensor.
    pub fn requires_grad(self) -> Tensor {
        let t = self.detach();
        t.set_memory_category(Category::Weights);
        t.inner
            .requires_grad
            .store(true, std::sync::atomic::Ordering::Relaxed);
        t
    }

    /// The same data with no graph history and no grad requirement.
    pub fn detach(&self) -> Tensor {
        self.with_view(
            self.shape().to_vec(),
            self.strides().to_vec(),
            self.offset(),
        )
    }

    /// True for tensors not produced by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.inner.node.is_none()
    }

    /// Name of the op that produced this tensor, if recorded.
    pub fn grad_fn(&self) -> Option<&'static str> {
        self.inner.node.as_ref().map(|n| n.name)
    }

    /// The accumulated gradient of a leaf, if any backward pass reached it.
    pub fn grad(&self) -> Option<Tensor> {
        let slot = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = slot.as_ref()
            && self.inner.grad_zeroed.swap(false, Ordering::Relaxed)
        {
            // A deferred zero_grad becomes real before anyone sees the buffer. `zero_grad`
            // defers only fills that cannot fail (see `deferrable`).
            let _ = fill_zero(g);
        }
        slot.clone()
    }

    /// Drop the accumulated gradient (the next backward starts from nothing).
    pub fn clear_grad(&self) {
        self.set_grad(None);
    }

    /// Set the accumulated gradient to zeros, keeping the buffer (as seen through
    /// [`Tensor::grad`], which always shows zeros afterwards).
    ///
    /// When nothing but this tensor holds the gradient buffer (no clone from [`Tensor::grad`]
    /// is alive), the fill is deferred: it runs when the gradient is next read, and is skipped
    /// entirely when the next backward pass adopts its freshly computed gradient as the new
    /// buffer (nobody can tell the difference). In a training loop that saves a fill and an add
    /// over every parameter per step.
    pub fn zero_grad(&self) -> Result<()> {
        let slot = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(g) if alone(g) && deferrable(g) => {
                self.inner.grad_zeroed.store(true, Ordering::Relaxed)
            }
            Some(g) => fill_zero(g)?,
            None => {}
        }
        Ok(())
    }

    /// Replace the gradient (used by optimizers and gradient clipping).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        if let Some(g) = &grad {
            g.set_memory_category(Category::Gradients);
        }
        let mut slot = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.grad_zeroed.store(false, Ordering::Relaxed);
        *slot = grad;
    }

    /// Backpropagate from this scalar: `.grad` of every leaf it depends on grows by dself/dleaf.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a scalar (one element), got shape {:?}; \
                 reduce it (e.g. .sum()) or use backward_with(grad)",
                self.shape()
            )));
        }
        let seed = {
            let _g = no_grad();
            let _op = kiln_kernels::capture::op_scope("backward seed", || {
                format!("ones {:?}", self.shape())
            });
            self.ones_like()?
        };
        self.backward_with(&seed)
    }

    /// Backpropagate with an explicit upstream gradient of this tensor's shape.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if !self.requires_grad_flag() {
            return Err(Error::Autograd(
                "backward() on a tensor that does not require grad: no parameter it depends on \
                 has requires_grad(), or it was computed inside no_grad()"
                    .into(),
            ));
        }
        if grad.shape() != self.shape() {
            return Err(Error::Autograd(format!(
                "backward_with: gradient shape {:?} differs from tensor shape {:?}",
                grad.shape(),
                self.shape()
            )));
        }
        self.propagate(grad, &HashSet::new(), &mut |leaf, g| {
            leaf.accumulate_grad(g)
        })
    }

    /// The traversal behind [`Tensor::backward_with`]: `grad` flows from `self` through the
    /// recorded nodes; each leaf that requires grad, and each tensor whose id is in `stop`
    /// (treated as a leaf: the traversal does not go past it), receives its summed gradient
    /// through `sink`.
    fn propagate(
        &self,
        grad: &Tensor,
        stop: &HashSet<u64>,
        sink: &mut dyn FnMut(&Tensor, Tensor) -> Result<()>,
    ) -> Result<()> {
        let _g = no_grad();
        let order = topo_order(self, stop);
        let mut grads: HashMap<u64, Tensor> = HashMap::new();
        grads.insert(self.id(), grad.clone());
        for t in order.iter().rev() {
            let Some(g) = grads.remove(&t.id()) else {
                continue;
            };
            let node = match &t.inner.node {
                Some(node) if !stop.contains(&t.id()) => node,
                _ => {
                    if t.requires_grad_flag() {
                        let shape = || format!("{:?}", t.shape());
                        let _op = kiln_kernels::capture::op_scope("accumulate_grad", shape);
                        sink(t, g)?;
                    }
                    continue;
                }
            };
            let _op = kiln_kernels::capture::op_scope(node.name, || {
                let inputs: Vec<&Tensor> = node.inputs.iter().collect();
                op_shapes(&inputs, t.shape())
            });
            let gs = (node.backward)(&g)?;
            for (input, gi) in node.inputs.iter().zip(gs) {
                let Some(gi) = gi else { continue };
                if !input.requires_grad_flag() {
                    continue;
                }
                if gi.shape() != input.shape() {
                    return Err(Error::Autograd(format!(
                        "{}: backward produced a gradient of shape {:?} for an input of \
                         shape {:?} (a bug in the op's gradient rule)",
                        node.name,
                        gi.shape(),
                        input.shape()
                    )));
                }
                let sum = match grads.remove(&input.id()) {
                    Some(prev) => prev.add(&gi)?,
                    None => gi,
                };
                grads.insert(input.id(), sum);
            }
        }
        Ok(())
    }

    /// `self.grad += g` (in place when a gradient exists already). After a deferred
    /// [`Tensor::zero_grad`] the sum is `g` itself: adopted as the new buffer when nobody else
    /// holds the old one, else the old buffer is zeroed and `g` added in place.
    fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut slot = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.grad_zeroed.swap(false, Ordering::Relaxed)
            && let Some(existing) = slot.as_ref()
        {
            if alone(existing) && owns_contiguous(&g) {
                *slot = None; // the old buffer goes first: the ledger never counts both
                g.set_memory_category(Category::Gradients);
                *slot = Some(g);
                return Ok(());
            }
            fill_zero(existing)?;
        }
        match slot.as_ref() {
            Some(existing) => {
                let shape = existing.shape().to_vec();
                kiln_kernels::launch::elementwise::binary_inplace(
                    self.gpu(),
                    kiln_kernels::launch::elementwise::BinaryOp::Add,
                    &shape,
                    existing.strided(),
                    g.strided_as(&shape),
                    0.0,
                )?;
            }
            None => {
                // Own the buffer: a gradient may be a broadcast view or share storage.
                let owned = if owns_contiguous(&g) {
                    g
                } else {
                    g.copy_contiguous()?
                };
                owned.set_memory_category(Category::Gradients);
                *slot = Some(owned);
            }
        }
        Ok(())
    }
}

/// An op's shapes as `kiln explain` prints them: `[64, 784], [128, 784] -> [64, 128]`.
fn op_shapes(inputs: &[&Tensor], out: &[usize]) -> String {
    let ins: Vec<String> = inputs.iter().map(|t| format!("{:?}", t.shape())).collect();
    format!("{} -> {out:?}", ins.join(", "))
}

/// True when `g` is a contiguous view of the whole of storage nobody else holds (a gradient
/// that can become a `.grad` buffer as it is).
fn owns_contiguous(g: &Tensor) -> bool {
    g.is_contiguous() && Arc::strong_count(&g.inner.storage) == 1
}

/// True when nobody but the `.grad` slot holds `g`'s buffer, through a clone or a view: then
/// replacing or zeroing it late is invisible.
fn alone(g: &Tensor) -> bool {
    Arc::strong_count(&g.inner) == 1 && Arc::strong_count(&g.inner.storage) == 1
}

/// True when zeroing `g` can be deferred: a contiguous f32 buffer within the u32 index range,
/// whose fill cannot fail later.
fn deferrable(g: &Tensor) -> bool {
    g.is_contiguous() && g.dtype() == crate::tensor::DType::F32 && g.numel() <= u32::MAX as usize
}

/// Write zeros over the gradient `g` in place.
fn fill_zero(g: &Tensor) -> Result<()> {
    kiln_kernels::launch::elementwise::fill(g.gpu(), g.shape(), g.strided(), 0.0)?;
    Ok(())
}

/// Tensors reachable from `root` through recorded nodes, parents before children; the inputs of
/// tensors in `stop` are not visited.
fn topo_order(root: &Tensor, stop: &HashSet<u64>) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative DFS: (tensor, next input index to visit).
    let mut stack: Vec<(Tensor, usize)> = vec![(root.clone(), 0)];
    seen.insert(root.id());
    while let Some((t, i)) = stack.pop() {
        let inputs = match &t.inner.node {
            Some(n) if !stop.contains(&t.id()) => n.inputs.as_slice(),
            _ => &[],
        };
        if i < inputs.len() {
            let child = inputs[i].clone();
            stack.push((t, i + 1));
            if child.requires_grad_flag() && seen.insert(child.id()) {
                stack.push((child, 0));
            }
        } else {
            order.push(t);
        }
    }
    order
}
