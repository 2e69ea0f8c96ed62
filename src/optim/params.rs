//! Bookkeeping shared by the optimizers: checking the named parameters, finding the gradient to
//! apply, and validating named state tensors (`<kind>.<param name>`) on load.

use std::collections::HashSet;

use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

/// Check the parameter list an optimizer is built over: unique names, f32, contiguous.
fn check_params(op: &'static str, params: &[(String, Tensor)]) -> Result<()> {
    let mut seen = HashSet::new();
    for (name, p) in params {
        if !seen.insert(name.as_str()) {
            return arg_err(op, format!("parameter name `{name}` appears twice"));
        }
        if p.dtype() != DType::F32 {
            return arg_err(
                op,
                format!(
                    "parameter `{name}` has dtype {:?}; optimizers update f32 tensors",
                    p.dtype()
                ),
            );
        }
        if !p.is_contiguous() {
            return arg_err(
                op,
                format!(
                    "parameter `{name}` (shape {:?}, strides {:?}) is not contiguous; \
                     parameters are updated in place and must be created contiguous",
                    p.shape(),
                    p.strides()
                ),
            );
        }
    }
    Ok(())
}

/// What every optimizer keeps besides its settings: the named parameters, one state slot per
/// parameter (`S`: Adam's moments, SGD's momentum buffer; created on the parameter's first update,
/// never for a frozen one), a learning-rate multiplier per parameter
/// ([`super::Optimizer::set_lr_scale`], 1 by default) and the step count.
pub(super) struct Slots<S> {
    pub(super) params: Vec<(String, Tensor)>,
    pub(super) state: Vec<Option<S>>,
    pub(super) lr_scales: Vec<f32>,
    pub(super) step: u64,
    /// The skip flag of [`super::Optimizer::set_skip_flag`] (a loss scaler's counters).
    pub(super) skip: Option<Tensor>,
}

impl<S> Slots<S> {
    /// Empty slots over `params`, after [`check_params`].
    pub(super) fn new(op: &'static str, params: Vec<(String, Tensor)>) -> Result<Self> {
        check_params(op, &params)?;
        let n = params.len();
        Ok(Slots {
            params,
            state: (0..n).map(|_| None).collect(),
            lr_scales: vec![1.0; n],
            step: 0,
            skip: None,
        })
    }

    /// One optimizer step: `update` of every parameter with a usable gradient
    /// ([`grad_for_update`]), then count the step.
    pub(super) fn step(
        &mut self,
        op: &'static str,
        mut update: impl FnMut(Update<'_, S>) -> Result<()>,
    ) -> Result<()> {
        let slots = self.state.iter_mut().zip(&self.lr_scales);
        for (index, ((name, p), (slot, &lr_scale))) in self.params.iter().zip(slots).enumerate() {
            if let Some(g) = grad_for_update(op, name, p)? {
                update(Update {
                    index,
                    p,
                    g: &g,
                    slot,
                    lr_scale,
                    skip: self.skip.as_ref(),
                })?;
            }
        }
        self.step += 1;
        Ok(())
    }
}

/// One parameter's part of an optimizer step.
pub(super) struct Update<'a, S> {
    /// The parameter's index in the list.
    pub(super) index: usize,
    /// The parameter, updated in place.
    pub(super) p: &'a Tensor,
    /// Its gradient (f32, contiguous, its shape).
    pub(super) g: &'a Tensor,
    /// Its state, `None` before its first update.
    pub(super) slot: &'a mut Option<S>,
    /// Its learning-rate multiplier.
    pub(super) lr_scale: f32,
    /// The skip flag: update through the guarded kernel entry when set.
    pub(super) skip: Option<&'a Tensor>,
}

/// The gradient to apply to parameter `name`, or `None` when it is frozen or has no gradient.
/// Errors when the gradient cannot be used by a fused update (dtype, shape, layout, aliasing).
fn grad_for_update(op: &'static str, name: &str, p: &Tensor) -> Result<Option<Tensor>> {
    if !p.requires_grad_flag() {
        return Ok(None);
    }
    let Some(g) = p.grad() else {
        return Ok(None);
    };
    check_like(op, &format!("gradient of `{name}`"), &g, p)?;
    if !g.is_contiguous() {
        return arg_err(
            op,
            format!(
                "gradient of `{name}` (shape {:?}, strides {:?}) is not contiguous",
                g.shape(),
                g.strides()
            ),
        );
    }
    if g.shares_storage(p) {
        return arg_err(
            op,
            format!("gradient of `{name}` shares storage with the parameter itself"),
        );
    }
    Ok(Some(g))
}

/// Error unless `t` (`what`: a gradient or a loaded state tensor) is an f32 tensor of the shape
/// of parameter `p`, on its device.
fn check_like(op: &'static str, what: &str, t: &Tensor, p: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return arg_err(
            op,
            format!("{what} has dtype {:?}, expected f32", t.dtype()),
        );
    }
    t.expect_shape_of(op, what, ("its parameter", p))
}

/// Zero every parameter's gradient in place.
pub(super) fn zero_grads(params: &[(String, Tensor)]) -> Result<()> {
    for (_, p) in params {
        p.zero_grad()?;
    }
    Ok(())
}

/// Zeros shaped like `p`, on its device (fresh optimizer state).
pub(super) fn zeros_like(p: &Tensor) -> Result<Tensor> {
    Tensor::zeros_on(p.gpu(), p.shape())
}

/// Split a state name `<kind>.<param name>` into (kind, parameter index), checking that the kind
/// is one of `kinds` and that the parameter exists.
pub(super) fn parse_state_name<'k>(
    op: &'static str,
    full: &str,
    kinds: &[&'k str],
    params: &[(String, Tensor)],
) -> Result<(&'k str, usize)> {
    let expected = || {
        kinds
            .iter()
            .map(|k| format!("`{k}.<param>`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((kind, pname)) = full.split_once('.') else {
        return arg_err(
            op,
            format!("state tensor `{full}` is not named like {}", expected()),
        );
    };
    let Some(kind) = kinds.iter().find(|k| **k == kind) else {
        return arg_err(
            op,
            format!(
                "state tensor `{full}`: unknown kind `{kind}` (this optimizer keeps {})",
                expected()
            ),
        );
    };
    let Some(i) = params.iter().position(|(n, _)| n == pname) else {
        return arg_err(
            op,
            format!(
                "state tensor `{full}` names parameter `{pname}`, which this optimizer \
                 does not have"
            ),
        );
    };
    Ok((kind, i))
}

/// Check a loaded moment/momentum tensor against its parameter and copy it into a fresh
/// contiguous buffer owned by the optimizer (so later updates never write into the caller's
/// tensors).
pub(super) fn load_like(op: &'static str, full: &str, t: &Tensor, p: &Tensor) -> Result<Tensor> {
    check_like(op, &format!("state tensor `{full}`"), t, p)?;
    t.copy_contiguous()
}

/// Set `scales[i] = scale` for every parameter named in `names` (the shared body of
/// [`super::Optimizer::set_lr_scale`]); errors, changing nothing, on an unknown name or a scale
/// that is not a finite number > 0.
pub(super) fn set_lr_scales(
    op: &'static str,
    params: &[(String, Tensor)],
    scales: &mut [f32],
    names: &[String],
    scale: f32,
) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        return arg_err(
            op,
            format!("learning-rate scale must be a finite number > 0, got {scale}"),
        );
    }
    let mut idx = Vec::with_capacity(names.len());
    for n in names {
        match params.iter().position(|(p, _)| p == n) {
            Some(i) => idx.push(i),
            None => {
                return arg_err(
                    op,
                    format!("set_lr_scale: this optimizer holds no parameter `{n}`"),
                );
            }
        }
    }
    for i in idx {
        scales[i] = scale;
    }
    Ok(())
}

/// The [`super::Optimizer`] methods that only read or write the parameter list, the config's
/// `lr` and the per-parameter `lr_scales` (fields every optimizer has; `OP` names it in errors):
/// written once, expanded inside each `impl Optimizer`.
/// `optimizer_common!(no_step)` leaves `step` to the optimizer (one whose update needs more
/// than its config).
macro_rules! optimizer_common {
    () => {
        fn step(&mut self) -> Result<()> {
            let c = self.config;
            self.slots.step(OP, |u| Self::update(&c, u))
        }

        fn set_skip_flag(&mut self, flag: Option<Tensor>) -> Result<()> {
            self.slots.skip = flag;
            Ok(())
        }

        super::params::optimizer_common!(no_step);
    };
    (no_step) => {
        fn zero_grad(&self) -> Result<()> {
            super::params::zero_grads(&self.slots.params)
        }

        fn learning_rate(&self) -> f32 {
            self.config.lr
        }

        fn set_learning_rate(&mut self, lr: f32) {
            self.config.lr = lr;
        }

        fn set_lr_scale(&mut self, names: &[String], scale: f32) -> Result<()> {
            let s = &mut self.slots;
            super::params::set_lr_scales(OP, &s.params, &mut s.lr_scales, names, scale)
        }

        fn lr_scale(&self, name: &str) -> Option<f32> {
            let i = self.slots.params.iter().position(|(n, _)| n == name)?;
            Some(self.slots.lr_scales[i])
        }
    };
}
pub(super) use optimizer_common;

/// The inherent `new` and `config` of optimizer `$name` (settings `$config`, its state in
/// [`Slots`]); `$what` names it in the rustdoc.
macro_rules! optimizer_new {
    ($name:ident, $config:ty, $what:literal) => {
        impl $name {
            #[doc = concat!($what, " over `params` (names as from a module's ",
                        "`named_parameters`). Errors on an invalid config, duplicate names, or ",
                        "parameters that are not contiguous f32.")]
            pub fn new(params: Vec<(String, Tensor)>, config: $config) -> Result<$name> {
                config.validate()?;
                let slots = super::params::Slots::new(OP, params)?;
                Ok($name { slots, config })
            }

            /// The settings (with the current learning rate).
            pub fn config(&self) -> &$config {
                &self.config
            }
        }
    };
}
pub(super) use optimizer_new;
