//! Activation probe: while armed, every activation layer ([`super::activation`]) hands its
//! output `y` (shape as the layer's input, batch first) to the probe, in forward order, so
//! training diagnostics can measure mean, std and dead ReLU units of one batch without a second
//! forward pass. Disarmed (the default) a layer pays one thread-local check.
//!
//! The probe is per thread: the training loop arms it, runs one forward on the same thread,
//! then [`take`]s what the layers recorded (which disarms it). Forwards without a graph
//! (validation, under `no_grad`) are not recorded.

use std::cell::RefCell;

use crate::tensor::Tensor;

thread_local! {
    static PROBE: RefCell<Option<Vec<(&'static str, Tensor)>>> = const { RefCell::new(None) };
}

/// Start recording activation outputs on this thread (what was recorded before is dropped).
pub fn arm() {
    PROBE.with(|p| *p.borrow_mut() = Some(Vec::new()));
}

/// True while armed.
pub fn armed() -> bool {
    PROBE.with(|p| p.borrow().is_some())
}

/// Drop what was recorded so far, staying armed (e.g. a validation pass ran in between).
pub fn clear() {
    PROBE.with(|p| {
        if let Some(v) = p.borrow_mut().as_mut() {
            v.clear();
        }
    });
}

/// The recorded outputs as (layer kind, output), in forward order; disarms the probe.
pub fn take() -> Vec<(&'static str, Tensor)> {
    PROBE.with(|p| p.borrow_mut().take().unwrap_or_default())
}

/// Record `y`, the output of an activation layer of kind `kind`, when armed and in a forward
/// that builds a graph (a training forward: evaluation passes run without one and are never
/// held).
pub(crate) fn record(kind: &'static str, y: &Tensor) {
    if !crate::autograd::is_grad_enabled() {
        return;
    }
    PROBE.with(|p| {
        if let Some(v) = p.borrow_mut().as_mut() {
            v.push((kind, y.detach()));
        }
    });
}
