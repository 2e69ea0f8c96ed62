//! The model zoo. Every model is described by a serialisable [`ModelSpec`], stored in its
//! checkpoints, so `kiln eval`, `kiln predict` and `--resume` rebuild exactly the same network.

pub mod bert;
pub mod bert_classifier;
mod cnn;
pub mod gpt;
pub mod hf;
pub mod lm;
mod mlp;
pub mod pretrained;
pub mod rnn;
pub mod sampling;
mod size;

pub use bert::{BertConfig, BertEncoder, l2_normalize, mean_pool};
pub use cnn::{BasicBlock, ImageShape, LeNet, RESNET_WIDTHS, ResNet18, VGG_WIDTHS, Vgg};
pub use gpt::{Gpt, GptArch, GptConfig};
pub use lm::LanguageModel;
pub use mlp::Mlp;
pub use rnn::{
    RnnClassifier, RnnClassifierConfig, RnnLanguageModel, RnnLmConfig, SequenceInput,
    SequencePooling,
};
pub use sampling::{Sampler, Sampling};
pub use size::physical_memory;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Gpu;
use crate::error::{Error, Result};
use crate::nn::{self, Module};
use crate::tensor::{DType, Tensor};

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
    /// A GPT decoder over token ids (see [`Gpt`]), trained as a [`LanguageModel`].
    Gpt {
        /// V, vocabulary size.
        vocab_size: usize,
        /// Transformer blocks.
        n_layer: usize,
        /// Attention heads.
        n_head: usize,
        /// C, model width (a multiple of `n_head`).
        d_model: usize,
        /// T, the longest sequence (training windows are this long).
        context: usize,
        /// Dropout in training.
        dropout: f32,
        /// Rotary position embedding instead of a learned position table.
        rope: bool,
    },
    /// A recurrent language model (see [`RnnLanguageModel`]), trained as a [`LanguageModel`].
    Rnn {
        /// `rnn` (tanh), `lstm` or `gru`.
        cell: String,
        /// V, vocabulary size.
        vocab_size: usize,
        /// E, embedding width.
        embed_dim: usize,
        /// H, hidden width.
        hidden_size: usize,
        /// Stacked recurrent layers.
        num_layers: usize,
        /// T, the length of the training windows.
        context: usize,
        /// Dropout between layers and before the head, in training.
        dropout: f32,
    },
}

/// Model names `kiln train --model` accepts.
pub const MODEL_NAMES: &[&str] = &[
    "mlp", "linear", "lenet", "vgg", "resnet18", "gpt", "lstm", "gru", "rnn",
];

/// The language models among [`MODEL_NAMES`]: they train on text (see
/// [`ModelSpec::from_name`]).
pub const SEQUENCE_MODEL_NAMES: &[&str] = &["gpt", "lstm", "gru", "rnn"];

impl ModelSpec {
    /// The spec `--model NAME` means for `input` features and `output` outputs. The
    /// convolutional models (`lenet`, `vgg`, `resnet18`) need the data's `image` shape
    /// (C, H, W); `output` is then the number of classes. For the language models
    /// ([`SEQUENCE_MODEL_NAMES`]) `input` is the context T and `output` the vocabulary size V;
    /// their defaults are sized for a software GPU:
    ///
    /// | name | default |
    /// | --- | --- |
    /// | `gpt` | 4 layers, 4 heads, width 128, learned positions, no dropout (0.80M + 256 V parameters: 0.82M for 77 characters) |
    /// | `lstm`, `gru`, `rnn` | embedding 64, 1 layer of 256, no dropout |
    ///
    /// ```
    /// use kiln::models::ModelSpec;
    /// let gpt = ModelSpec::from_name("gpt", 64, 77, None)?;
    /// assert!(matches!(gpt, ModelSpec::Gpt { n_layer: 4, n_head: 4, d_model: 128, context: 64, .. }));
    /// assert_eq!((gpt.name(), gpt.is_sequence()), ("gpt", true));
    /// # Ok::<(), kiln::Error>(())
    /// ```
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
            "gpt" => Ok(ModelSpec::Gpt {
                vocab_size: output,
                n_layer: 4,
                n_head: 4,
                d_model: 128,
                context: input,
                dropout: 0.0,
                rope: false,
            }),
            "lstm" | "gru" | "rnn" => Ok(ModelSpec::Rnn {
                cell: name.into(),
                vocab_size: output,
                embed_dim: 64,
                hidden_size: 256,
                num_layers: 1,
                context: input,
                dropout: 0.0,
            }),
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
            ModelSpec::Gpt { .. } => "gpt",
            ModelSpec::Rnn { cell, .. } => match cell.as_str() {
                "lstm" => "lstm",
                "gru" => "gru",
                _ => "rnn",
            },
        }
    }

    /// True for the language models (`gpt`, `lstm`, `gru`, `rnn`), which train on text.
    pub fn is_sequence(&self) -> bool {
        matches!(self, ModelSpec::Gpt { .. } | ModelSpec::Rnn { .. })
    }

    /// The image input (C, H, W) and the class count of the convolutional models (LeNet, VGG,
    /// ResNet-18); `None` for the others.
    pub fn image(&self) -> Option<(ImageShape, usize)> {
        match *self {
            ModelSpec::LeNet {
                channels,
                height,
                width,
                classes,
            }
            | ModelSpec::Vgg {
                channels,
                height,
                width,
                classes,
            }
            | ModelSpec::ResNet18 {
                channels,
                height,
                width,
                classes,
            } => Some(((channels, height, width), classes)),
            _ => None,
        }
    }

    /// The configuration of a recurrent language model spec (`lstm`, `gru`, `rnn`); an error for
    /// an unknown cell name or another model.
    pub fn rnn_lm_config(&self) -> Result<RnnLmConfig> {
        let ModelSpec::Rnn {
            cell,
            vocab_size,
            embed_dim,
            hidden_size,
            num_layers,
            dropout,
            ..
        } = self
        else {
            return Err(Error::Config(format!(
                "model {} is not a recurrent language model",
                self.name()
            )));
        };
        let cell = match cell.as_str() {
            "lstm" => crate::ops::RnnCell::Lstm,
            "gru" => crate::ops::RnnCell::Gru,
            "rnn" => crate::ops::RnnCell::RnnTanh,
            other => {
                return Err(Error::Config(format!(
                    "model rnn: unknown cell {other:?}; use rnn, lstm or gru"
                )));
            }
        };
        Ok(RnnLmConfig {
            cell,
            vocab_size: *vocab_size,
            embed_dim: *embed_dim,
            hidden_size: *hidden_size,
            num_layers: *num_layers,
            dropout: *dropout,
        })
    }

    /// Features per example the model takes (flat; images are C*H*W).
    pub fn input_len(&self) -> usize {
        match self {
            ModelSpec::Mlp { input, .. } | ModelSpec::Linear { input, .. } => *input,
            ModelSpec::LeNet { .. } | ModelSpec::Vgg { .. } | ModelSpec::ResNet18 { .. } => {
                let ((c, h, w), _) = self.image().unwrap_or_default();
                c * h * w
            }
            ModelSpec::Gpt { context, .. } | ModelSpec::Rnn { context, .. } => *context,
        }
    }

    /// The name of the classifier head, the last Linear layer, whose tensors are
    /// `<head>.weight` (outputs, in) and `<head>.bias` (outputs):
    ///
    /// | model | head |
    /// | --- | --- |
    /// | `mlp` | `layers.<k>`, k = 2 per hidden layer (3 with dropout) |
    /// | `linear` | `layers.0` |
    /// | `lenet` | `classifier.4` |
    /// | `vgg` | `classifier.0` |
    /// | `resnet18` | `fc` |
    /// | `gpt` | `lm_head` (outputs: the vocabulary) |
    /// | `lstm`, `gru`, `rnn` | `head` (outputs: the vocabulary) |
    ///
    /// ```
    /// use kiln::models::ModelSpec;
    /// let spec = ModelSpec::from_name("mlp", 64, 10, None)?; // hidden [256, 128], dropout 0.1
    /// assert_eq!(spec.head_name(), "layers.6");
    /// # Ok::<(), kiln::Error>(())
    /// ```
    pub fn head_name(&self) -> String {
        match self {
            ModelSpec::Mlp {
                hidden, dropout, ..
            } => {
                let block = if *dropout > 0.0 { 3 } else { 2 };
                format!("layers.{}", hidden.len() * block)
            }
            ModelSpec::Linear { .. } => "layers.0".into(),
            ModelSpec::LeNet { .. } => "classifier.4".into(),
            ModelSpec::Vgg { .. } => "classifier.0".into(),
            ModelSpec::ResNet18 { .. } => "fc".into(),
            ModelSpec::Gpt { .. } => "lm_head".into(),
            ModelSpec::Rnn { .. } => "head".into(),
        }
    }

    /// Outputs of the head: classes, or regression targets.
    pub fn outputs(&self) -> usize {
        match self {
            ModelSpec::Mlp { output, .. } | ModelSpec::Linear { output, .. } => *output,
            ModelSpec::LeNet { classes, .. }
            | ModelSpec::Vgg { classes, .. }
            | ModelSpec::ResNet18 { classes, .. } => *classes,
            ModelSpec::Gpt { vocab_size, .. } | ModelSpec::Rnn { vocab_size, .. } => *vocab_size,
        }
    }

    /// The same architecture with a head of `outputs` outputs (for a new number of classes).
    pub fn with_outputs(&self, outputs: usize) -> ModelSpec {
        let mut s = self.clone();
        match &mut s {
            ModelSpec::Mlp { output, .. } | ModelSpec::Linear { output, .. } => *output = outputs,
            ModelSpec::LeNet { classes, .. }
            | ModelSpec::Vgg { classes, .. }
            | ModelSpec::ResNet18 { classes, .. } => *classes = outputs,
            ModelSpec::Gpt { vocab_size, .. } | ModelSpec::Rnn { vocab_size, .. } => {
                *vocab_size = outputs
            }
        }
        s
    }

    /// Construct the model on `gpu` with fresh parameters (from kiln's seeded RNG).
    pub fn build(&self, gpu: &Arc<Gpu>) -> Result<Box<dyn Module>> {
        self.check_size()?;
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
            ModelSpec::LeNet { .. } | ModelSpec::Vgg { .. } | ModelSpec::ResNet18 { .. } => {
                let (input, classes) = self.image().unwrap_or_default();
                Ok(match self {
                    ModelSpec::LeNet { .. } => Box::new(LeNet::new_on(gpu, input, classes)?),
                    ModelSpec::Vgg { .. } => Box::new(Vgg::new_on(gpu, input, classes)?),
                    _ => Box::new(ResNet18::new_on(gpu, input, classes)?),
                })
            }
            ModelSpec::Gpt { .. } | ModelSpec::Rnn { .. } => Ok(Box::new(self.build_lm(gpu)?)),
        }
    }

    /// Construct a language model (`gpt`, `lstm`, `gru`, `rnn`) on `gpu` with fresh
    /// parameters; an error for the other models.
    pub fn build_lm(&self, gpu: &Arc<Gpu>) -> Result<LanguageModel> {
        self.check_size()?;
        match self {
            ModelSpec::Gpt {
                vocab_size,
                n_layer,
                n_head,
                d_model,
                context,
                dropout,
                rope,
            } => {
                if *n_head == 0 || d_model % n_head != 0 {
                    return Err(Error::Config(format!(
                        "model gpt: width {d_model} must be a positive multiple of heads {n_head}"
                    )));
                }
                let cfg = GptConfig {
                    vocab_size: *vocab_size,
                    n_layer: *n_layer,
                    n_head: *n_head,
                    n_kv_head: *n_head,
                    d_model: *d_model,
                    context: *context,
                    dropout: *dropout,
                    rope: *rope,
                };
                Ok(LanguageModel::Gpt(Gpt::new_on(gpu, cfg)?))
            }
            ModelSpec::Rnn { .. } => Ok(LanguageModel::Rnn(RnnLanguageModel::new_on(
                gpu,
                self.rnn_lm_config()?,
            )?)),
            other => Err(Error::Config(format!(
                "model {} is not a language model (gpt, lstm, gru, rnn)",
                other.name()
            ))),
        }
    }
}

/// A freshly initialised Linear layer shaped like the head `old` (same input width, bias and
/// device) but with `outputs` outputs: the body of every zoo model's `replace_head`.
fn new_head(old: &dyn Module, outputs: usize, model: &str) -> Result<nn::Linear> {
    let params = old.named_parameters();
    let weight = params
        .iter()
        .find(|(n, _)| n == "weight")
        .map(|(_, t)| t)
        .ok_or_else(|| Error::Config(format!("{model}: the head layer has no weight")))?;
    if outputs == 0 || weight.rank() != 2 {
        return Err(Error::Config(format!(
            "{model}: cannot replace the head with {outputs} outputs (head weight {:?})",
            weight.shape()
        )));
    }
    let bias = params.iter().any(|(n, _)| n == "bias");
    nn::Linear::new_on(weight.gpu(), weight.shape()[1], outputs, bias)
}

/// Token ids `(B, T)` as u32, for the models that embed them: u32 as is, i32 converted; another
/// rank or dtype is an error naming `model`.
pub(crate) fn token_ids(model: &'static str, ids: &Tensor) -> Result<Tensor> {
    ids.expect_rank(model, "ids", 2, "(B, T)")?;
    match ids.dtype() {
        DType::U32 => Ok(ids.clone()),
        DType::I32 => ids.to_dtype(DType::U32),
        d => crate::error::arg_err(model, format!("ids must be u32 or i32, got {d:?}")),
    }
}
