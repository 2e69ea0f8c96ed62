//! The model zoo. Every model is described by a serialisable [`ModelSpec`], stored in its
//! checkpoints, so `kiln eval`, `kiln predict` and `--resume` rebuild exactly the same network.

mod mlp;

pub use mlp::Mlp;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Gpu;
use crate::error::{Error, Result};
use crate::nn::Module;

/// A buildable model description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelSpec {
    /// A multi-layer perceptron: Linear -> activation (-> dropout) ... -> Linear.
    Mlp {
        /// Input features.
        input: usize,
        /// Width of each hidden layer.
        hidden: Vec<usize>,
        /// Outputs (classes, or regression targets).
        output: usize,
        /// `relu`, `gelu`, `silu`, `tanh` or `sigmoid`.
        activation: String,
        /// Dropout probability after each hidden activation (0 = none).
        dropout: f32,
    },
    /// Logistic / linear regression: a single Linear layer.
    Linear {
        /// Input features.
        input: usize,
        /// Outputs.
        output: usize,
    },
}

/// Model names `kiln train --model` accepts.
pub const MODEL_NAMES: &[&str] = &["mlp", "linear"];

impl ModelSpec {
    /// The spec `--model NAME` means for `input` features and `output` outputs.
    pub fn from_name(name: &str, input: usize, output: usize) -> Result<ModelSpec> {
        match name {
            "mlp" => Ok(ModelSpec::Mlp {
                input,
                hidden: vec![256, 128],
                output,
                activation: "relu".into(),
                dropout: 0.1,
            }),
            "linear" => Ok(ModelSpec::Linear { input, output }),
            _ => Err(Error::Config(format!(
                "unknown model {name:?}; available: {}",
                MODEL_NAMES.join(", ")
            ))),
        }
    }

    /// Short name (`mlp`, `linear`).
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Mlp { .. } => "mlp",
            ModelSpec::Linear { .. } => "linear",
        }
    }

    /// Construct the model on `gpu` with fresh parameters (from kiln's seeded RNG).
    pub fn build(&self, gpu: &Arc<Gpu>) -> Result<Box<dyn Module>> {
        match self {
            ModelSpec::Mlp {
                input,
                hidden,
                output,
                activation,
                dropout,
            } => Ok(Box::new(Mlp::new_on(
                gpu, *input, hidden, *output, activation, *dropout,
            )?)),
            ModelSpec::Linear { input, output } => Ok(Box::new(Mlp::new_on(
                gpu,
                *input,
                &[],
                *output,
                "relu",
                0.0,
            )?)),
        }
    }
}
