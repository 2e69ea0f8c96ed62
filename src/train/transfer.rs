//! Transfer learning, the recipe (what `kiln train --init-from` and `examples/transfer_digits.rs`
//! do), with the pieces in the layers they belong to:
//!
//! 1. build the model for the new task (its head, the last Linear layer named by
//!    [`crate::models::ModelSpec::head_name`], has the new class count);
//! 2. [`crate::nn::load::load_pretrained`] copies every tensor of a checkpoint into the
//!    parameter or buffer of the same name, skipping names that match skip patterns, and
//!    skipping the head when its shape differs (a different class count);
//! 3. [`crate::nn::freeze::freeze`] turns `requires_grad` off for the trunk (`features.*`);
//! 4. train; optionally [`unfreeze_with_lr`] later (here, because it touches the optimizer)
//!    with a smaller learning-rate scale, so the pretrained weights move gently. The trainer
//!    does this at `unfreeze_at`.
//!
//! Name patterns are described in [`crate::io::names`]; class subsets in
//! [`crate::data::classes`].

use crate::error::Result;
use crate::io::names::any_match;
use crate::nn::Module;
use crate::nn::freeze::{check_patterns, owned, unfreeze};
use crate::optim::Optimizer;

/// [`crate::nn::freeze::unfreeze`], then give the unfrozen parameters the learning rate `lr_scale` x the base rate
/// in `opt` (which must hold them: build optimizers over all of `named_parameters()`, frozen
/// ones included; they cost nothing while frozen). Errors, changing nothing, on a bad pattern,
/// a bad scale or a parameter `opt` does not hold.
pub fn unfreeze_with_lr(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    patterns: &[impl AsRef<str>],
    lr_scale: f32,
) -> Result<Vec<String>> {
    let patterns = owned(patterns);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| any_match(&patterns, n))
        .collect();
    check_patterns("unfreeze", &patterns, &names)?;
    opt.set_lr_scale(&names, lr_scale)?;
    unfreeze(model, &patterns)
}

/// Unfreeze every frozen parameter of `model` at `lr_scale` x the base rate (what the trainer
/// does at `unfreeze_at`). Returns their names; empty (and nothing changed) when none is frozen.
pub fn unfreeze_all_with_lr(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    lr_scale: f32,
) -> Result<Vec<String>> {
    let frozen: Vec<String> = model
        .named_parameters()
        .into_iter()
        .filter(|(_, t)| !t.requires_grad_flag())
        .map(|(n, _)| n)
        .collect();
    if frozen.is_empty() {
        return Ok(frozen);
    }
    unfreeze_with_lr(model, opt, &frozen, lr_scale)
}
