//! Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
//! (`torch.optim.SGD` with dampening 0), one fused kernel dispatch per parameter:
//!
//! ```text
//! g   = grad + wd * p
//! buf = mu * buf + g          (buf = g on the first step; no buffer when mu = 0)
//! u   = nesterov ? g + mu * buf : buf
//! p   = p - lr * u
//! ```
//!
//! ```
//! use kiln::optim::{Optimizer, Sgd, SgdConfig};
//! use kiln::Tensor;
//! let w = Tensor::from_slice(&[1.0f32, -2.0], &[2])?.requires_grad();
//! let mut opt = Sgd::new(vec![("w".into(), w.clone())], SgdConfig::new(0.1))?;
//! w.square()?.sum()?.backward()?;     // grad = 2 w = [2, -4]
//! opt.step()?;                        // w = w - 0.1 * grad
//! let v = w.to_vec::<f32>()?;
//! assert!((v[0] - 0.8).abs() < 1e-6 && (v[1] + 1.6).abs() < 1e-6);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::optim::{self as k, SgdStep};
use serde::{Deserialize, Serialize};

use super::params::{
    Slots, Update, load_like, optimizer_common, optimizer_new, parse_state_name, zeros_like,
};
use super::{Optimizer, OptimizerState};
use crate::error::{Result, arg_err};
use crate::tensor::Tensor;

const OP: &str = "Sgd";
const BUF: &str = "momentum_buffer";

/// Settings of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate (> 0).
    pub lr: f32,
    /// Momentum factor mu, in [0, 1); 0 keeps no state.
    pub momentum: f32,
    /// Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
    /// L2 weight decay added to the gradient (>= 0).
    pub weight_decay: f32,
}

impl SgdConfig {
    /// Plain SGD at learning rate `lr`: no momentum, no weight decay.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// Check every field; the error names the field and its value.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return arg_err(
                "SgdConfig",
                format!("lr must be a finite number > 0, got {}", self.lr),
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return arg_err(
                "SgdConfig",
                format!("momentum must be in [0, 1), got {}", self.momentum),
            );
        }
        if self.nesterov && self.momentum == 0.0 {
            return arg_err("SgdConfig", "nesterov needs momentum > 0, got momentum 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return arg_err(
                "SgdConfig",
                format!(
                    "weight_decay must be a finite number >= 0, got {}",
                    self.weight_decay
                ),
            );
        }
        Ok(())
    }
}

/// SGD over named parameters; see the module notes for the update.
pub struct Sgd {
    /// Parameters, momentum buffers (with momentum), lr scales, step count.
    slots: Slots<Tensor>,
    config: SgdConfig,
}

optimizer_new!(Sgd, SgdConfig, "SGD");

impl Sgd {
    /// One parameter's update from its gradient `g`, creating its momentum buffer on the first.
    fn update(c: &SgdConfig, u: Update<'_, Tensor>) -> Result<()> {
        let (p, buf) = (u.p, u.slot);
        let h = SgdStep {
            lr: c.lr * u.lr_scale,
            momentum: c.momentum,
            nesterov: c.nesterov,
            weight_decay: c.weight_decay,
        };
        if c.momentum != 0.0 && buf.is_none() {
            // Zeros make the first update buf = mu * 0 + g = g, as in PyTorch.
            *buf = Some(zeros_like(p)?);
        }
        k::sgd(
            p.gpu(),
            &h,
            p.numel(),
            p.operand(),
            u.g.operand(),
            buf.as_ref().map(Tensor::operand),
            u.skip.map(Tensor::buffer),
        )?;
        Ok(())
    }
}

impl Optimizer for Sgd {
    optimizer_common!();

    /// The step count and `momentum_buffer.<param name>` for every parameter that has one. The
    /// tensors are the live buffers (as PyTorch's `state_dict`): save or copy them before the
    /// next step.
    fn state(&self) -> OptimizerState {
        let sl = &self.slots;
        let tensors = sl
            .params
            .iter()
            .zip(&sl.state)
            .filter_map(|((name, _), b)| b.as_ref().map(|b| (format!("{BUF}.{name}"), b.clone())))
            .collect();
        OptimizerState {
            step: sl.step,
            tensors,
        }
    }

    /// Replace all state with copies of `state`'s tensors. Errors, changing nothing, on unknown
    /// names, mis-shaped tensors, or buffers given to an optimizer without momentum.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let params = &self.slots.params;
        let mut buffers: Vec<Option<Tensor>> = vec![None; params.len()];
        for (full, t) in &state.tensors {
            let (_, i) = parse_state_name(OP, full, &[BUF], params)?;
            if self.config.momentum == 0.0 {
                return arg_err(
                    OP,
                    format!(
                        "state tensor `{full}`: this optimizer has momentum 0 and keeps no \
                         momentum buffers (was the state saved with momentum?)"
                    ),
                );
            }
            if buffers[i].is_some() {
                return arg_err(OP, format!("state tensor `{full}` is given twice"));
            }
            buffers[i] = Some(load_like(OP, full, t, &params[i].1)?);
        }
        self.slots.state = buffers;
        self.slots.step = state.step;
        Ok(())
    }
}
