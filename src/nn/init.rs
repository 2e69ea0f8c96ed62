//! Parameter initialisation, with PyTorch's formulas (`torch.nn.init`).
//!
//! For a weight of shape (out, in, k...) the receptive field is `r = prod(k...)` (1 for a matrix),
//! `fan_in = in * r` and `fan_out = out * r`; [`FanMode`] picks one as `fan`.
//!
//! | initialiser | distribution |
//! | --- | --- |
//! | [`kaiming_uniform`] | U(-b, b), b = gain * sqrt(3 / fan) |
//! | [`kaiming_normal`] | N(0, std^2), std = gain / sqrt(fan) |
//! | [`xavier_uniform`] | U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) |
//! | [`xavier_normal`] | N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) |
//! | [`uniform`] | U(lo, hi) |
//! | [`normal`] | N(mean, std^2) |
//! | [`zeros`], [`ones`], [`constant`] | a constant (draws nothing) |
//!
//! `gain` comes from [`calculate_gain`]: 1 (linear, sigmoid), 5/3 (tanh), sqrt 2 (relu),
//! sqrt(2 / (1 + a^2)) (leaky relu with slope a), 3/4 (selu).
//!
//! Defaults of the layers (PyTorch's):
//! - `Linear`: weight kaiming_uniform with gain(leaky_relu, a = sqrt 5) and fan_in, which is
//!   U(-1/sqrt(in), 1/sqrt(in)); bias U(-1/sqrt(in), 1/sqrt(in)).
//! - `Embedding`: weight N(0, 1).
//! - `LayerNorm`, `BatchNorm1d`: weight 1, bias 0.
//!
//! Random values are generated on the host by ChaCha8 seeded with one key of kiln's global stream
//! ([`crate::nn::rng::next_key`]) per tensor, so [`crate::nn::rng::manual_seed`] makes every model
//! initialise identically on every device.
//!
//! ```
//! use kiln::nn::{init, rng};
//! rng::manual_seed(0);
//! let w = init::kaiming_uniform(&[64, 100], init::linear_default_gain(), init::FanMode::FanIn)?;
//! let v = w.to_vec::<f32>()?;
//! assert!(v.iter().all(|x| x.abs() <= 0.1)); // 1 / sqrt(100)
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Result, arg_err};
use crate::tensor::Tensor;

/// Which fan scales a Kaiming initialiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanMode {
    /// `fan_in` (in * receptive field): preserves the forward variance. PyTorch's default.
    #[default]
    FanIn,
    /// `fan_out` (out * receptive field): preserves the backward variance.
    FanOut,
}

/// The nonlinearity that follows a layer, for [`calculate_gain`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlinearity {
    /// Identity (also convolutions): gain 1.
    Linear,
    /// Sigmoid: gain 1.
    Sigmoid,
    /// Tanh: gain 5/3.
    Tanh,
    /// ReLU: gain sqrt 2.
    Relu,
    /// Leaky ReLU with negative slope `a`: gain sqrt(2 / (1 + a^2)).
    LeakyRelu(f32),
    /// SELU: gain 3/4.
    Selu,
}

/// The recommended gain for a nonlinearity (PyTorch's `calculate_gain`).
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f32 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => std::f32::consts::SQRT_2,
        Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// The gain of PyTorch's `Linear` default, `calculate_gain(LeakyRelu(sqrt 5))` = sqrt(1/3): with
/// [`kaiming_uniform`] and fan_in it gives U(-1/sqrt(in), 1/sqrt(in)).
pub fn linear_default_gain() -> f32 {
    calculate_gain(Nonlinearity::LeakyRelu(5f32.sqrt()))
}

/// `(fan_in, fan_out)` of a weight of shape (out, in, k...): (in * r, out * r) with r = prod(k...).
/// Errors for fewer than two dims, as PyTorch does.
pub fn fan_in_and_fan_out(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return arg_err(
            "init",
            format!(
                "fan in and fan out need a weight with at least 2 dims (out, in, ...), got shape \
                 {shape:?}"
            ),
        );
    }
    let r: usize = shape[2..].iter().product();
    Ok((shape[1] * r, shape[0] * r))
}

/// An initialiser: a recipe for a tensor's first values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All `v`.
    Constant(f32),
    /// U(lo, hi).
    Uniform {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// N(mean, std^2).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// U(-b, b), b = gain * sqrt(3 / fan).
    KaimingUniform {
        /// From [`calculate_gain`].
        gain: f32,
        /// Which fan.
        mode: FanMode,
    },
    /// N(0, std^2), std = gain / sqrt(fan).
    KaimingNormal {
        /// From [`calculate_gain`].
        gain: f32,
        /// Which fan.
        mode: FanMode,
    },
    /// U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
    XavierUniform {
        /// From [`calculate_gain`].
        gain: f32,
    },
    /// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
    XavierNormal {
        /// From [`calculate_gain`].
        gain: f32,
    },
}

/// What an [`Init`] amounts to for one shape.
enum Dist {
    Constant(f32),
    Uniform(f32, f32),
    Normal(f32, f32),
}

impl Init {
    /// The concrete distribution for `shape`, with its arguments checked.
    fn dist(&self, shape: &[usize]) -> Result<Dist> {
        let fan = |mode: FanMode| -> Result<f32> {
            let (fi, fo) = fan_in_and_fan_out(shape)?;
            let f = if mode == FanMode::FanIn { fi } else { fo };
            if f == 0 {
                return arg_err(
                    "init",
                    format!("{mode:?} of shape {shape:?} is 0: cannot scale by it"),
                );
            }
            Ok(f as f32)
        };
        let fan_sum = || -> Result<f32> {
            let (fi, fo) = fan_in_and_fan_out(shape)?;
            if fi + fo == 0 {
                return arg_err("init", format!("fan_in + fan_out of shape {shape:?} is 0"));
            }
            Ok((fi + fo) as f32)
        };
        let check_gain = |gain: f32| -> Result<()> {
            if !gain.is_finite() || gain < 0.0 {
                return arg_err("init", format!("gain must be finite and >= 0, got {gain}"));
            }
            Ok(())
        };
        let d = match *self {
            Init::Constant(v) => Dist::Constant(v),
            Init::Uniform { lo, hi } => {
                if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                    return arg_err(
                        "init",
                        format!("uniform needs finite lo <= hi, got lo {lo} hi {hi}"),
                    );
                }
                Dist::Uniform(lo, hi)
            }
            Init::Normal { mean, std } => {
                if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
                    return arg_err(
                        "init",
                        format!(
                            "normal needs a finite mean and std >= 0, got mean {mean} std {std}"
                        ),
                    );
                }
                Dist::Normal(mean, std)
            }
            Init::KaimingUniform { gain, mode } => {
                check_gain(gain)?;
                let b = gain * (3.0 / fan(mode)?).sqrt();
                Dist::Uniform(-b, b)
            }
            Init::KaimingNormal { gain, mode } => {
                check_gain(gain)?;
                Dist::Normal(0.0, gain / fan(mode)?.sqrt())
            }
            Init::XavierUniform { gain } => {
                check_gain(gain)?;
                let b = gain * (6.0 / fan_sum()?).sqrt();
                Dist::Uniform(-b, b)
            }
            Init::XavierNormal { gain } => {
                check_gain(gain)?;
                Dist::Normal(0.0, gain * (2.0 / fan_sum()?).sqrt())
            }
        };
        Ok(d)
    }

    /// The values for `shape`, row-major, on the host. Random initialisers draw one key from the
    /// global stream; constants draw nothing.
    pub fn sample(&self, shape: &[usize]) -> Result<Vec<f32>> {
        let n = crate::tensor::numel_checked(shape, "parameter")?;
        let keyed = || ChaCha8Rng::seed_from_u64(super::rng::next_key());
        Ok(match self.dist(shape)? {
            Dist::Constant(v) => vec![v; n],
            Dist::Uniform(lo, hi) => {
                let mut rng = keyed();
                (0..n)
                    .map(|_| lo + (hi - lo) * rng.random::<f32>())
                    .collect()
            }
            Dist::Normal(mean, std) => {
                let mut rng = keyed();
                (0..n)
                    .map(|_| {
                        let z: f32 = StandardNormal.sample(&mut rng);
                        mean + std * z
                    })
                    .collect()
            }
        })
    }

    /// A new tensor of `shape` on the default device.
    pub fn tensor(&self, shape: &[usize]) -> Result<Tensor> {
        self.tensor_on(&crate::device()?, shape)
    }

    /// A new tensor of `shape` on `gpu`.
    pub fn tensor_on(&self, gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
        crate::tensor::check_fits(gpu, shape, crate::DType::F32, "parameter")?;
        if let Dist::Constant(v) = self.dist(shape)? {
            return Tensor::full_on(gpu, shape, v);
        }
        Tensor::from_slice_on(gpu, &self.sample(shape)?, shape)
    }
}

/// Kaiming (He) uniform: U(-b, b) with b = gain * sqrt(3 / fan).
pub fn kaiming_uniform(shape: &[usize], gain: f32, mode: FanMode) -> Result<Tensor> {
    Init::KaimingUniform { gain, mode }.tensor(shape)
}

/// Kaiming (He) normal: N(0, std^2) with std = gain / sqrt(fan).
pub fn kaiming_normal(shape: &[usize], gain: f32, mode: FanMode) -> Result<Tensor> {
    Init::KaimingNormal { gain, mode }.tensor(shape)
}

/// Xavier (Glorot) uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform(shape: &[usize], gain: f32) -> Result<Tensor> {
    Init::XavierUniform { gain }.tensor(shape)
}

/// Xavier (Glorot) normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal(shape: &[usize], gain: f32) -> Result<Tensor> {
    Init::XavierNormal { gain }.tensor(shape)
}

/// U(lo, hi) (any shape).
pub fn uniform(shape: &[usize], lo: f32, hi: f32) -> Result<Tensor> {
    Init::Uniform { lo, hi }.tensor(shape)
}

/// N(mean, std^2) (any shape).
pub fn normal(shape: &[usize], mean: f32, std: f32) -> Result<Tensor> {
    Init::Normal { mean, std }.tensor(shape)
}

/// All `value`.
pub fn constant(shape: &[usize], value: f32) -> Result<Tensor> {
    Init::Constant(value).tensor(shape)
}

/// All zeros.
pub fn zeros(shape: &[usize]) -> Result<Tensor> {
    constant(shape, 0.0)
}

/// All ones.
pub fn ones(shape: &[usize]) -> Result<Tensor> {
    constant(shape, 1.0)
}
