//! Adam (`torch.optim.Adam`, L2 weight decay added to the gradient) and AdamW
//! (`torch.optim.AdamW`, decoupled weight decay), one fused kernel dispatch per parameter. At the
//! parameter's step t = 1, 2, ...:
//!
//! ```text
//! p = p * (1 - lr * wd)                     AdamW only
//! g = grad + wd * p                         Adam only
//! m = b1 * m + (1 - b1) * g                 exp_avg, zeros before step 1
//! v = b2 * v + (1 - b2) * g^2               exp_avg_sq, zeros before step 1
//! p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Like PyTorch, each parameter counts its own steps (a parameter that starts receiving gradients
//! late is bias-corrected from its own first step); the bias corrections are computed on the host.
//!
//! ```
//! use kiln::optim::{Adam, AdamConfig, Optimizer};
//! use kiln::Tensor;
//! let w = Tensor::from_slice(&[1.0f32, -2.0], &[2])?.requires_grad();
//! let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::adam(0.1))?;
//! w.square()?.sum()?.backward()?;
//! opt.step()?;                        // the first Adam step moves each weight by about lr
//! let v = w.to_vec::<f32>()?;
//! assert!((v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::optim::{self as k, AdamStep};
use serde::{Deserialize, Serialize};

use super::params::{
    Slots, Update, load_like, optimizer_common, optimizer_new, parse_state_name, zeros_like,
};
use super::{Optimizer, OptimizerState};
use crate::error::{Result, arg_err};
use crate::tensor::Tensor;

const OP: &str = "Adam";
pub(super) const EXP_AVG: &str = "exp_avg";
pub(super) const EXP_AVG_SQ: &str = "exp_avg_sq";
pub(super) const STEP: &str = "step";

/// Settings of [`Adam`] (Adam or AdamW).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate (> 0).
    pub lr: f32,
    /// Decay rates (b1, b2) of the first and second moment, each in [0, 1).
    pub betas: (f32, f32),
    /// Added to the denominator (> 0).
    pub eps: f32,
    /// Weight decay (>= 0): L2 added to the gradient, or decoupled when `decoupled`.
    pub weight_decay: f32,
    /// True for AdamW: `p *= 1 - lr * wd` instead of `g += wd * p`.
    pub decoupled: bool,
}

impl AdamConfig {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f32) -> Self {
        AdamConfig {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// AdamW with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam(lr)
        }
    }

    /// Check every field; the error names the field and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| arg_err("AdamConfig", msg);
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a finite number > 0, got {}", self.lr));
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) {
            return bad(format!("betas.0 (beta1) must be in [0, 1), got {b1}"));
        }
        if !(0.0..1.0).contains(&b2) {
            return bad(format!("betas.1 (beta2) must be in [0, 1), got {b2}"));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be a finite number > 0, got {}", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be a finite number >= 0, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// Moments of one parameter (f32, its shape).
pub(super) struct Moments {
    pub(super) exp_avg: Tensor,
    pub(super) exp_avg_sq: Tensor,
    /// Updates applied to this parameter.
    pub(super) step: u64,
    /// Rank-0 f32 holding `step` for [`Optimizer::state`] (written there, on demand).
    pub(super) step_tensor: Tensor,
}

impl Moments {
    pub(super) fn zeros(p: &Tensor) -> Result<Moments> {
        Ok(Moments {
            exp_avg: zeros_like(p)?,
            exp_avg_sq: zeros_like(p)?,
            step: 0,
            step_tensor: Tensor::zeros_on(p.gpu(), &[])?,
        })
    }

    /// One fused update of `p` from its gradient `g` (count the step, then optim.wgsl:adam, or
    /// adam_guarded behind the skip flag `skip`).
    pub(super) fn update(
        &mut self,
        c: &AdamConfig,
        lr_scale: f32,
        (p, g): (&Tensor, &Tensor),
        skip: Option<&Tensor>,
    ) -> Result<()> {
        self.step += 1;
        let ops = [p, g, &self.exp_avg, &self.exp_avg_sq].map(Tensor::operand);
        let h = hyper(c, lr_scale, self.step);
        k::adam_guarded(p.gpu(), &h, p.numel(), ops, skip.map(Tensor::buffer))?;
        Ok(())
    }

    /// Append `exp_avg.<name>`, `exp_avg_sq.<name>` and `step.<name>` to `out`.
    pub(super) fn push_state(&self, name: &str, p: &Tensor, out: &mut Vec<(String, Tensor)>) {
        out.push((format!("{EXP_AVG}.{name}"), self.exp_avg.clone()));
        out.push((format!("{EXP_AVG_SQ}.{name}"), self.exp_avg_sq.clone()));
        push_step(name, p, self.step, &self.step_tensor, out);
    }
}

/// Write `step` into the rank-0 `step_tensor` and append it as `step.<name>` to `out`.
pub(super) fn push_step(
    name: &str,
    p: &Tensor,
    step: u64,
    step_tensor: &Tensor,
    out: &mut Vec<(String, Tensor)>,
) {
    let step = step as f32;
    p.gpu()
        .upload(step_tensor.buffer(), 0, bytemuck::bytes_of(&step));
    out.push((format!("{STEP}.{name}"), step_tensor.clone()));
}

/// The kernel's hyper-parameters for `c` at a parameter's step `step` (1-based), its learning
/// rate scaled by `lr_scale`.
pub(super) fn hyper(c: &AdamConfig, lr_scale: f32, step: u64) -> AdamStep {
    let (bc1, bc2) = AdamStep::bias_corrections(c.betas.0, c.betas.1, step);
    AdamStep {
        lr: c.lr * lr_scale,
        beta1: c.betas.0,
        beta2: c.betas.1,
        eps: c.eps,
        weight_decay: c.weight_decay,
        decoupled: c.decoupled,
        bc1,
        bc2,
    }
}

/// Adam or AdamW over named parameters; see the module notes for the update.
pub struct Adam {
    /// Parameters, moments (one [`Moments`] per parameter), lr scales, step count.
    slots: Slots<Moments>,
    config: AdamConfig,
}

optimizer_new!(Adam, AdamConfig, "Adam / AdamW");

impl Adam {
    /// The moments, one slot per parameter (`None`: no state yet), for
    /// [`super::OffloadAdam`]'s `load_state`.
    pub(super) fn into_moments(self) -> Vec<Option<Moments>> {
        self.slots.state
    }

    /// One parameter's update from its gradient `g`, creating its moments on the first.
    fn update(c: &AdamConfig, u: Update<'_, Moments>) -> Result<()> {
        let s = match u.slot {
            Some(s) => s,
            None => u.slot.insert(Moments::zeros(u.p)?),
        };
        s.update(c, u.lr_scale, (u.p, u.g), u.skip)
    }
}

impl Optimizer for Adam {
    optimizer_common!();

    /// The step count and, for every parameter with moments, `exp_avg.<name>`,
    /// `exp_avg_sq.<name>` and `step.<name>` (its own step count as a rank-0 f32, exact up to
    /// 2^24 steps). The moments are the live tensors (as PyTorch's `state_dict`): save or copy
    /// them before the next step.
    fn state(&self) -> OptimizerState {
        let mut tensors = Vec::new();
        let sl = &self.slots;
        for ((name, p), s) in sl.params.iter().zip(&sl.state) {
            if let Some(s) = s {
                s.push_state(name, p, &mut tensors);
            }
        }
        OptimizerState {
            step: sl.step,
            tensors,
        }
    }

    /// Replace all state with copies of `state`'s tensors. `exp_avg.<name>` and
    /// `exp_avg_sq.<name>` must come in pairs; `step.<name>` is optional (default: `state.step`).
    /// Errors, changing nothing, on unknown names, missing partners, or mis-shaped tensors.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let params = &self.slots.params;
        let n = params.len();
        let (mut m, mut v, mut steps) = (vec![None; n], vec![None; n], vec![None; n]);
        for (full, t) in &state.tensors {
            let kinds = [EXP_AVG, EXP_AVG_SQ, STEP];
            let (kind, i) = parse_state_name(OP, full, &kinds, params)?;
            let p = &params[i].1;
            let taken = match kind {
                EXP_AVG => m[i].replace(load_like(OP, full, t, p)?).is_some(),
                EXP_AVG_SQ => v[i].replace(load_like(OP, full, t, p)?).is_some(),
                _ => steps[i].replace(read_step(full, t)?).is_some(),
            };
            if taken {
                return arg_err(OP, format!("state tensor `{full}` is given twice"));
            }
        }
        let mut moments = Vec::with_capacity(n);
        for (i, (name, p)) in params.iter().enumerate() {
            let lacks = |has: &str, lacks: &str| {
                arg_err(
                    OP,
                    format!("state has `{has}.{name}` but is missing `{lacks}.{name}`"),
                )
            };
            moments.push(match (m[i].take(), v[i].take()) {
                (Some(exp_avg), Some(exp_avg_sq)) => Some(Moments {
                    exp_avg,
                    exp_avg_sq,
                    step: steps[i].unwrap_or(state.step),
                    step_tensor: Tensor::zeros_on(p.gpu(), &[])?,
                }),
                (None, None) if steps[i].is_none() => None,
                (None, None) => return lacks(STEP, EXP_AVG),
                (Some(_), None) => return lacks(EXP_AVG, EXP_AVG_SQ),
                (None, Some(_)) => return lacks(EXP_AVG_SQ, EXP_AVG),
            });
        }
        self.slots.state = moments;
        self.slots.step = state.step;
        Ok(())
    }
}

/// A per-parameter step count saved as a one-element f32 tensor (a non-negative integer).
pub(super) fn read_step(full: &str, t: &Tensor) -> Result<u64> {
    if t.numel() != 1 || t.dtype() != crate::tensor::DType::F32 {
        return arg_err(
            OP,
            format!(
                "state tensor `{full}` must be one f32 step count, got shape {:?} dtype {:?}",
                t.shape(),
                t.dtype()
            ),
        );
    }
    let s = t.item()?;
    if !(s.is_finite() && s >= 0.0 && s.fract() == 0.0) {
        return arg_err(
            OP,
            format!("state tensor `{full}` holds {s}, not a step count"),
        );
    }
    Ok(s as u64)
}
