//! Freezing: which parameters train. A frozen parameter has `requires_grad` off, receives no
//! gradient, and the optimizer skips it (no state is created for it).
//!
//! Parameters are selected by name patterns ([`crate::io::names`]): `features.*`, `*.bias`,
//! `classifier`. Frozen BatchNorm layers still update their running statistics in training
//! mode (as in PyTorch); call `set_training(false)` on them to keep those fixed too.

use crate::error::Result;
use crate::io::names::{any_match, pattern_matches};
use crate::nn::Module;
use crate::tensor::Tensor;

/// Check that every pattern selects at least one of `names` (a typo would otherwise freeze
/// nothing, silently).
pub(crate) fn check_patterns(
    op: &'static str,
    patterns: &[String],
    names: &[String],
) -> Result<()> {
    for p in patterns {
        if !names.iter().any(|n| pattern_matches(p, n)) {
            let mut some: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            if names.len() > 8 {
                some.push("...");
            }
            return crate::error::arg_err(
                op,
                format!(
                    "pattern `{p}` matches no parameter of the model (its parameters: {})",
                    some.join(", ")
                ),
            );
        }
    }
    Ok(())
}

pub(crate) fn owned(patterns: &[impl AsRef<str>]) -> Vec<String> {
    patterns.iter().map(|p| p.as_ref().to_string()).collect()
}

fn set_frozen(
    op: &'static str,
    model: &dyn Module,
    patterns: &[String],
    frozen: bool,
) -> Result<Vec<String>> {
    let params = model.named_parameters();
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    check_patterns(op, patterns, &names)?;
    let mut changed = Vec::new();
    for (name, t) in &params {
        if any_match(patterns, name) {
            if t.requires_grad_flag() == frozen {
                changed.push(name.clone());
            }
            t.set_requires_grad(!frozen)?;
            if frozen {
                // A stale gradient would otherwise still be seen by clipping.
                t.clear_grad();
            }
        }
    }
    Ok(changed)
}

/// Freeze the parameters selected by any of `patterns`: `requires_grad` off, gradient dropped.
/// Returns the names that were trainable before. Errors, changing nothing, when a pattern
/// selects no parameter.
///
/// ```
/// use kiln::{models::LeNet, nn::{Module, freeze as transfer}};
/// let net = LeNet::new_on(&kiln::device()?, (1, 8, 8), 5)?;
/// let frozen = transfer::freeze(&net, &["features.*"])?;
/// assert_eq!(frozen, ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]);
/// let c = transfer::param_counts(&net);
/// assert_eq!(c.total - c.trainable, 6 * 25 + 6 + 16 * 6 * 25 + 16);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn freeze(model: &dyn Module, patterns: &[impl AsRef<str>]) -> Result<Vec<String>> {
    set_frozen("freeze", model, &owned(patterns), true)
}

/// Unfreeze the parameters selected by any of `patterns` (`requires_grad` on); they train at
/// the optimizer's rate times their scale (1 unless set). Returns the names that were frozen.
pub fn unfreeze(model: &dyn Module, patterns: &[impl AsRef<str>]) -> Result<Vec<String>> {
    set_frozen("unfreeze", model, &owned(patterns), false)
}

/// Trainable and total parameter counts (scalars and tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    /// Scalars that require grad.
    pub trainable: usize,
    /// All scalars.
    pub total: usize,
    /// Tensors that require grad.
    pub trainable_tensors: usize,
    /// All parameter tensors.
    pub total_tensors: usize,
}

/// Count `model`'s trainable and total parameters.
pub fn param_counts(model: &dyn Module) -> ParamCounts {
    let params = model.named_parameters();
    let on: Vec<&Tensor> = params
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.requires_grad_flag())
        .collect();
    ParamCounts {
        trainable: on.iter().map(|t| t.numel()).sum(),
        total: params.iter().map(|(_, t)| t.numel()).sum(),
        trainable_tensors: on.len(),
        total_tensors: params.len(),
    }
}
