//! A multi-layer perceptron: `layers = Sequential(Linear, act, [Dropout], ..., Linear)`.
//!
//! For hidden widths h_1..h_k: x (B, in) -> Linear(in, h_1) -> act -> ... -> Linear(h_k, out),
//! giving logits (B, out). Parameter names follow PyTorch's `nn.Sequential` inside a `layers`
//! field: `layers.0.weight`, `layers.0.bias`, `layers.2.weight`, ... (with dropout, every hidden
//! block is three modules long: Linear, activation, Dropout).

use std::sync::Arc;

use crate::Gpu;
use crate::error::{Error, Result};
use crate::nn::{self, Module, Sequential};
use crate::tensor::Tensor;

/// The MLP.
pub struct Mlp {
    layers: Sequential,
}

fn activation(name: &str) -> Result<Box<dyn Module>> {
    Ok(match name {
        "relu" => Box::new(nn::ReLU),
        "gelu" => Box::new(nn::GELU),
        "silu" => Box::new(nn::SiLU),
        "tanh" => Box::new(nn::Tanh),
        "sigmoid" => Box::new(nn::Sigmoid),
        _ => {
            return Err(Error::Config(format!(
                "unknown activation {name:?}; use relu, gelu, silu, tanh or sigmoid"
            )));
        }
    })
}

impl Mlp {
    /// An MLP with the given hidden widths (empty = a single Linear layer).
    pub fn new_on(
        gpu: &Arc<Gpu>,
        input: usize,
        hidden: &[usize],
        output: usize,
        act: &str,
        dropout: f32,
    ) -> Result<Mlp> {
        let mut layers = Sequential::new();
        let mut width = input;
        for &h in hidden {
            layers.push(Box::new(nn::Linear::new_on(gpu, width, h, true)?));
            layers.push(activation(act)?);
            if dropout > 0.0 {
                layers.push(Box::new(nn::Dropout::new(dropout)?));
            }
            width = h;
        }
        layers.push(Box::new(nn::Linear::new_on(gpu, width, output, true)?));
        Ok(Mlp { layers })
    }

    /// Replace the last Linear layer (the head, `layers.<k>`, see
    /// [`super::ModelSpec::head_name`]) by a freshly initialised one with `output` outputs; the
    /// other layers keep their weights.
    pub fn replace_head(&mut self, output: usize) -> Result<()> {
        super::cnn::replace_last(&mut self.layers, output, "mlp")
    }
}

impl Module for Mlp {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        self.layers
            .visit_linears_mut(&crate::nn::child_path(prefix, "layers"), f);
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // (B, in) -> (B, out); extra leading dims are flattened into the batch.
        let x = if x.rank() > 2 {
            x.flatten(1, -1)?
        } else {
            x.clone()
        };
        self.layers.forward(&x)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::prefixed("layers", self.layers.named_parameters())
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::prefixed("layers", self.layers.named_buffers())
    }

    fn set_training(&mut self, training: bool) {
        self.layers.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.layers.is_training()
    }
}
