//! `Sequential`: layers applied in order, `y = f_n(... f_1(f_0(x)))`.
//!
//! Children are named by position, so the parameters of an MLP are `0.weight`, `0.bias`,
//! `2.weight`, ... (an activation at position 1 has none), and a model that keeps the container in
//! a field `layers` reports `layers.0.weight`, as PyTorch does. [`Module::set_training`] reaches
//! every child.
//!
//! ```
//! use kiln::nn::{Linear, Module, ReLU, Sequential};
//! let mlp = Sequential::new()
//!     .with(Linear::new(4, 8, true)?)
//!     .with(ReLU)
//!     .with(Linear::new(8, 2, true)?);
//! let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! assert_eq!(mlp.num_parameters(), 4 * 8 + 8 + 8 * 2 + 2);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::{Module, prefixed};
use crate::error::Result;
use crate::tensor::Tensor;

/// Layers applied one after another.
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
    training: bool,
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl From<Vec<Box<dyn Module>>> for Sequential {
    fn from(layers: Vec<Box<dyn Module>>) -> Self {
        Sequential {
            layers,
            training: true,
        }
    }
}

impl Sequential {
    /// `tensors(layer)` of every layer, named `<index>.<name>` (parameters or buffers).
    fn named(
        &self,
        tensors: impl Fn(&dyn Module) -> Vec<(String, Tensor)>,
    ) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&i.to_string(), tensors(l.as_ref())))
            .collect()
    }

    /// An empty container (its forward is the identity), in training mode.
    pub fn new() -> Self {
        Self::from(Vec::new())
    }

    /// Append a layer (builder style).
    pub fn with(mut self, layer: impl Module + 'static) -> Self {
        self.push(Box::new(layer));
        self
    }

    /// Append a boxed layer. It takes the container's training mode.
    pub fn push(&mut self, mut layer: Box<dyn Module>) {
        layer.set_training(self.training);
        self.layers.push(layer);
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True with no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Layer `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&dyn Module> {
        self.layers.get(i).map(|l| l.as_ref())
    }

    /// Layer `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Box<dyn Module>> {
        self.layers.get_mut(i)
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }
}

impl Module for Sequential {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_linears_mut(&crate::nn::child_path(prefix, &i.to_string()), f);
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.named(|l| l.named_parameters())
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.named(|l| l.named_buffers())
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for l in &mut self.layers {
            l.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }
}
