//! Activation layers: parameter-free wrappers of the elementwise ops, for [`super::Sequential`].
//!
//! | layer | y | dy/dx |
//! | --- | --- | --- |
//! | [`ReLU`] | max(x, 0) | 1 if x > 0, else 0 |
//! | [`GELU`] | x Phi(x) (exact, erf form) | Phi(x) + x phi(x) |
//! | [`SiLU`] | x sigmoid(x) | s (1 + x (1 - s)) |
//! | [`Tanh`] | tanh x | 1 - tanh^2 x |
//! | [`Sigmoid`] | 1 / (1 + e^-x) | s (1 - s) |
//!
//! Each layer hands its output to [`super::probe`] (training diagnostics) while it is armed.

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident => $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                let y = x.$method()?;
                super::probe::record(stringify!($name), &y);
                Ok(y)
            }

            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                Vec::new()
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    ReLU => relu
);
activation!(
    /// GELU, exact (erf) form as PyTorch's default: `x * Phi(x)`.
    #[allow(clippy::upper_case_acronyms)] // PyTorch's name
    GELU => gelu
);
activation!(
    /// SiLU / swish: `x * sigmoid(x)`.
    SiLU => silu
);
activation!(
    /// `tanh x`.
    Tanh => tanh
);
activation!(
    /// `1 / (1 + e^-x)`.
    Sigmoid => sigmoid
);
