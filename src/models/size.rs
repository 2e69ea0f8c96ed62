//! How big a model spec is before it is built.
//!
//! `kiln train --model gpt --layers 1000000` would spend minutes initialising parameters one
//! layer at a time before running out of memory; every layer on its own fits a GPU buffer, so
//! the per-tensor checks do not catch it. [`ModelSpec::parameter_count`] counts the parameters
//! a spec implies (with checked arithmetic, a slight over-estimate for the convolutional
//! models' fixed bodies) and [`ModelSpec::check_size`] refuses a spec whose training state
//! cannot fit this machine's memory:
//!
//! ```text
//! training bytes = 4 (f32) * 4 (weights, gradients, two Adam moments) * parameters
//! refused when training bytes > physical memory (MemTotal in /proc/meminfo; 64 GiB elsewhere)
//! ```
//!
//! ```
//! use kiln::models::ModelSpec;
//! let mlp = ModelSpec::Linear { input: 3, output: 2 };
//! assert_eq!(mlp.parameter_count(), Some(8));
//! ```

use super::ModelSpec;
use crate::error::{Error, Result};
use crate::tensor::human_bytes;

/// The memory assumed where the OS does not say (64 GiB).
const FALLBACK_MEMORY: u64 = 64 << 30;

/// This machine's physical memory in bytes (Linux `MemTotal`), or [`FALLBACK_MEMORY`].
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(FALLBACK_MEMORY)
}

fn linear(i: usize, o: usize) -> Option<u64> {
    (i as u64).checked_mul(o as u64)?.checked_add(o as u64)
}

fn sum(parts: impl IntoIterator<Item = Option<u64>>) -> Option<u64> {
    parts
        .into_iter()
        .try_fold(0u64, |acc, p| acc.checked_add(p?))
}

impl ModelSpec {
    /// The parameters this spec builds (an upper bound for lenet/vgg/resnet18), `None` when the
    /// count overflows a `u64`.
    pub fn parameter_count(&self) -> Option<u64> {
        let mul = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        match self {
            ModelSpec::Linear { input, output } => linear(*input, *output),
            ModelSpec::Mlp {
                input,
                hidden,
                output,
                ..
            } => {
                let widths: Vec<usize> = std::iter::once(*input)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(*output))
                    .collect();
                sum(widths.windows(2).map(|w| linear(w[0], w[1])))
            }
            // Fixed bodies (at most ~11M parameters for resnet18) and a head on 512 features.
            ModelSpec::LeNet { classes, .. }
            | ModelSpec::Vgg { classes, .. }
            | ModelSpec::ResNet18 { classes, .. } => sum([Some(12_000_000), linear(512, *classes)]),
            ModelSpec::Gpt {
                vocab_size,
                n_layer,
                d_model,
                context,
                ..
            } => {
                let c = *d_model;
                // Attention q, k, v, o and the 4C MLP: 12 C^2 weights, 13 C biases and norms.
                let block = sum([mul(12, c).and_then(|x| x.checked_mul(c as u64)), mul(13, c)]);
                sum([
                    mul(*vocab_size, c),
                    mul(*context, c),
                    block.and_then(|b| b.checked_mul(*n_layer as u64)),
                    mul(2, c),
                    mul(*vocab_size, c),
                ])
            }
            ModelSpec::Rnn { .. } => {
                // An unknown cell was refused by `check_size` before this count.
                let c = self.rnn_lm_config().ok()?;
                let (h, gates) = (c.hidden_size, c.cell.gates() as u64);
                let layer = |input: usize| {
                    sum([mul(input, h), mul(h, h), mul(2, h)]).and_then(|p| p.checked_mul(gates))
                };
                let rest =
                    layer(h).and_then(|p| p.checked_mul(c.num_layers.saturating_sub(1) as u64));
                sum([
                    mul(c.vocab_size, c.embed_dim),
                    layer(c.embed_dim),
                    rest,
                    linear(h, c.vocab_size),
                ])
            }
        }
    }

    /// Refuse a spec whose training state (see the module notes) exceeds this machine's
    /// memory, naming the model and its parameter count; call before building it.
    pub fn check_size(&self) -> Result<()> {
        let memory = physical_memory();
        let too_big = |what: String| {
            Error::Config(format!(
                "model {} is too large: {what}, more than this machine's memory ({}); make it \
                 smaller (--layers, --width, --hidden, ...)",
                self.name(),
                human_bytes(memory)
            ))
        };
        if let ModelSpec::Rnn { .. } = self {
            self.rnn_lm_config()?; // names an unknown cell before counting
        }
        let params = self
            .parameter_count()
            .ok_or_else(|| too_big("its parameter count overflows".into()))?;
        let training = params.saturating_mul(16);
        if training > memory {
            return Err(too_big(format!(
                "{params} parameters ({} as f32; training holds about {} with gradients and \
                 Adam moments)",
                human_bytes(params.saturating_mul(4)),
                human_bytes(training)
            )));
        }
        Ok(())
    }
}
