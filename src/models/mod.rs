//! The model zoo. Every model is described by a serialisable [`ModelSpec`], stored in its
//! checkpoints, so `kiln eval`, `kiln predict` and `--resume` rebuild exactly the same network.

mod cnn;
mod mlp;

pub use cnn::{BasicBlock, ImageShape, LeNet, RESNET_WIDTHS, ResNet18, VGG_WIDTHS, Vgg};
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
    /// LeNet-5 (see [`LeNet`]).
    #[serde(rename = "lenet")]
    LeNet {
        /// Input channels.
        channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Classes.
        classes: usize,
    },
    /// A small VGG with BatchNorm (see [`Vgg`]).
    Vgg {
        /// Input channels.
        channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Classes.
        classes: usize,
    },
    /// A narrow ResNet-18 for small images (see [`ResNet18`]).
    #[serde(rename = "resnet18")]
    ResNet18 {
        /// Input channels.
        channels: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Classes.
        classes: usize,
    },
}

/// Model names `kiln train --model` accepts.
pub const MODEL_NAMES: &[&str] = &["mlp", "linear", "lenet", "vgg", "resnet18"];

impl ModelSpec {
    /// The spec `--model NAME` means for `input` features and `output` outputs. The
    /// convolutional models (`lenet`, `vgg`, `resnet18`) need the data's `image` shape
    /// (C, H, W); `output` is then the number of classes.
    pub fn from_name(
        name: &str,
        input: usize,
        output: usize,
        image: Option<ImageShape>,
    ) -> Result<ModelSpec> {
        let image_shape = || {
            let (channels, height, width) = image.ok_or_else(|| {
                Error::Config(format!(
                    "model {name} needs image data (digits or fashion-mnist)"
                ))
            })?;
            if channels * height * width != input {
                return Err(Error::Config(format!(
                    "model {name}: image shape ({channels}, {height}, {width}) does not match \
                     {input} input features"
                )));
            }
            Ok((channels, height, width))
        };
        match name {
            "lenet" | "vgg" | "resnet18" => {
                let (channels, height, width) = image_shape()?;
                let classes = output;
                Ok(match name {
                    "lenet" => ModelSpec::LeNet {
                        channels,
                        height,
                        width,
                        classes,
                    },
                    "vgg" => ModelSpec::Vgg {
                        channels,
                        height,
                        width,
                        classes,
                    },
                    _ => ModelSpec::ResNet18 {
                        channels,
                        height,
                        width,
                        classes,
                    },
                })
            }
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

    /// Short name (`mlp`, `linear`, `lenet`, `vgg`, `resnet18`).
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Mlp { .. } => "mlp",
            ModelSpec::Linear { .. } => "linear",
            ModelSpec::LeNet { .. } => "lenet",
            ModelSpec::Vgg { .. } => "vgg",
            ModelSpec::ResNet18 { .. } => "resnet18",
        }
    }

    /// Features per example the model takes (flat; images are C*H*W).
    pub fn input_len(&self) -> usize {
        match self {
            ModelSpec::Mlp { input, .. } | ModelSpec::Linear { input, .. } => *input,
            ModelSpec::LeNet {
                channels,
                height,
                width,
                ..
            }
            | ModelSpec::Vgg {
                channels,
                height,
                width,
                ..
            }
            | ModelSpec::ResNet18 {
                channels,
                height,
                width,
                ..
            } => channels * height * width,
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
            ModelSpec::LeNet {
                channels,
                height,
                width,
                classes,
            } => Ok(Box::new(LeNet::new_on(
                gpu,
                (*channels, *height, *width),
                *classes,
            )?)),
            ModelSpec::Vgg {
                channels,
                height,
                width,
                classes,
            } => Ok(Box::new(Vgg::new_on(
                gpu,
                (*channels, *height, *width),
                *classes,
            )?)),
            ModelSpec::ResNet18 {
                channels,
                height,
                width,
                classes,
            } => Ok(Box::new(ResNet18::new_on(
                gpu,
                (*channels, *height, *width),
                *classes,
            )?)),
        }
    }
}
