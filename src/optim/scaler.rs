//! Dynamic loss scaling for f16 training, PyTorch's `torch.amp.GradScaler`, kept on the device.
//!
//! ```text
//! scale = 2^16 (init_scale), good = 0
//! each step:  loss' = loss * scale                    before backward (the gradients are x scale)
//!             g = g / scale for every gradient        after backward; found_inf = any g inf/NaN
//!             optimizer step, skipped where found_inf  (the guarded optimizer kernels)
//!             found_inf: scale *= 0.5, good = 0, skipped += 1
//!             else:      good += 1; good == 2000 (interval): scale *= 2, good = 0
//! ```
//!
//! Nothing is read back per step: the scale (one f32) and the counters (found_inf, good steps,
//! skipped steps: u32) live in two small device buffers that the kernels of
//! `grad_scale.wgsl` and the optimizers' guarded entries read; [`GradScaler::stats`] reads them
//! once, when the loop reads its metrics anyway (end of epoch). The training loop drives it as a
//! hook (`train::scaler`); [`Scaled`] wraps the optimizer so that a skipped step really skips
//! the update and the checkpoint holds the scale (`optim.scaler.*`), so a resumed run goes on
//! with the same scale.
//!
//! One departure from PyTorch: an optimizer counts a skipped step in its own step counter (the
//! host never learns that the device skipped), so Adam's bias corrections run a few steps ahead
//! after early overflows; past the first hundred steps the corrections are 1 either way.

use std::sync::Arc;

use kiln_kernels::launch::optim::{self as k, SCALER_WORDS, ScaleUpdate};
use serde::{Deserialize, Serialize};

use super::{Optimizer, OptimizerState};
use crate::Gpu;
use crate::error::{Result, arg_err};
use crate::memory::Category;
use crate::tensor::Tensor;

const OP: &str = "GradScaler";
/// Name of the scale in [`Scaled`]'s state (`optim.scaler.scale` in a checkpoint).
const SCALE: &str = "scaler.scale";
/// Name of the counters (found_inf, good steps, skipped steps, unused) as f32.
const COUNTERS: &str = "scaler.counters";

/// Settings of a [`GradScaler`] (PyTorch's defaults from [`ScalerConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerConfig {
    /// The first scale (2^16).
    pub init_scale: f32,
    /// Multiplies the scale after `growth_interval` good steps in a row (2).
    pub growth_factor: f32,
    /// Multiplies the scale after an overflow (0.5).
    pub backoff_factor: f32,
    /// Good steps between growths (2000).
    pub growth_interval: u32,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl ScalerConfig {
    /// Check every field; the error names the field and its value.
    pub fn validate(&self) -> Result<()> {
        let pos = |x: f32| x.is_finite() && x > 0.0;
        if !pos(self.init_scale) {
            return arg_err(
                OP,
                format!("init_scale must be finite and > 0, got {}", self.init_scale),
            );
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            let g = self.growth_factor;
            return arg_err(OP, format!("growth_factor must be finite and > 1, got {g}"));
        }
        if !(pos(self.backoff_factor) && self.backoff_factor < 1.0) {
            let b = self.backoff_factor;
            return arg_err(OP, format!("backoff_factor must be in (0, 1), got {b}"));
        }
        if self.growth_interval == 0 {
            return arg_err(OP, "growth_interval must be >= 1, got 0");
        }
        Ok(())
    }
}

/// What the scaler's device buffers hold, read back by [`GradScaler::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerStats {
    /// The current scale.
    pub scale: f32,
    /// Good steps since the last growth or backoff.
    pub good_steps: u32,
    /// Steps skipped because their gradients held inf or NaN, since the run began.
    pub skipped: u32,
}

/// A dynamic loss scaler on the device; see the module notes. Clones share the same buffers.
#[derive(Clone)]
pub struct GradScaler {
    /// Rank 0, f32: the scale.
    scale: Tensor,
    /// (4) u32: found_inf, good steps, skipped steps, unused.
    state: Tensor,
    config: ScalerConfig,
}

impl GradScaler {
    /// A scaler at `config.init_scale` on `gpu`. Errors on an invalid config.
    pub fn new(gpu: &Arc<Gpu>, config: ScalerConfig) -> Result<GradScaler> {
        config.validate()?;
        let scale = Tensor::from_slice_on(gpu, &[config.init_scale], &[])?;
        let state = Tensor::from_slice_on(gpu, &[0u32; SCALER_WORDS], &[SCALER_WORDS])?;
        for t in [&scale, &state] {
            t.set_memory_category(Category::OptimizerState);
        }
        Ok(GradScaler {
            scale,
            state,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ScalerConfig {
        &self.config
    }

    /// The counters' tensor (u32, word 0 = found_inf): the skip flag the optimizers' guarded
    /// kernels read ([`Optimizer::set_skip_flag`]).
    pub fn flag(&self) -> Tensor {
        self.state.clone()
    }

    /// `loss * scale` (the scale a device value: no readback), to call `backward()` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        loss.mul(&self.scale)
    }

    /// Divide every gradient of `params` by the scale in place and set found_inf where one
    /// becomes inf or NaN. Parameters without a gradient are passed over.
    pub fn unscale(&self, params: &[Tensor]) -> Result<()> {
        for p in params {
            let Some(g) = p.grad() else { continue };
            if !g.is_contiguous() || g.dtype() != crate::DType::F32 {
                return arg_err(
                    OP,
                    format!(
                        "a gradient of shape {:?} is not a contiguous f32 tensor ({:?})",
                        g.shape(),
                        g.dtype()
                    ),
                );
            }
            let (sc, st) = (self.scale.buffer(), self.state.buffer());
            k::unscale(g.gpu(), g.numel(), g.operand(), sc, st)?;
        }
        Ok(())
    }

    /// After the optimizer step: back off (and count the skip) on overflow, else count a good
    /// step and grow every `growth_interval`; clear found_inf.
    pub fn update(&self) -> Result<()> {
        let c = &self.config;
        let u = ScaleUpdate {
            growth: c.growth_factor,
            backoff: c.backoff_factor,
            interval: c.growth_interval,
        };
        k::update_scale(
            self.scale.gpu(),
            &u,
            self.scale.buffer(),
            self.state.buffer(),
        )?;
        Ok(())
    }

    /// Read the scale and counters back (a device sync: call it where the loop reads anyway).
    pub fn stats(&self) -> Result<ScalerStats> {
        let s = self.state.to_vec::<u32>()?;
        Ok(ScalerStats {
            scale: self.scale.item()?,
            good_steps: s[1],
            skipped: s[2],
        })
    }

    /// The scale and counters as f32 tensors for a checkpoint.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let s = self.stats()?;
        let counters = [0.0, s.good_steps as f32, s.skipped as f32, 0.0];
        let gpu = self.scale.gpu();
        Ok(vec![
            (SCALE.into(), Tensor::from_slice_on(gpu, &[s.scale], &[])?),
            (
                COUNTERS.into(),
                Tensor::from_slice_on(gpu, &counters, &[4])?,
            ),
        ])
    }

    /// Write saved values into this scaler's buffers (its clones see them too).
    fn load(&self, scale: &Tensor, counters: &Tensor) -> Result<()> {
        let (sv, cv) = (scale.to_vec::<f32>()?, counters.to_vec::<f32>()?);
        if sv.len() != 1 || cv.len() != SCALER_WORDS || !(sv[0].is_finite() && sv[0] > 0.0) {
            return arg_err(
                OP,
                format!(
                    "saved scale {sv:?} / counters {cv:?}: expected one scale > 0 and 4 counters"
                ),
            );
        }
        let words: Vec<u32> = cv.iter().map(|&c| c.max(0.0) as u32).collect();
        let gpu = self.scale.gpu();
        gpu.upload(self.scale.buffer(), 0, bytemuck::bytes_of(&sv[0]));
        gpu.upload(
            self.state.buffer(),
            0,
            bytemuck::cast_slice(&[0, words[1], words[2], 0]),
        );
        Ok(())
    }
}

/// An optimizer whose updates are skipped on the device when a [`GradScaler`] found an
/// overflow, and whose state carries the scaler's (`scaler.scale`, `scaler.counters`).
pub struct Scaled {
    inner: Box<dyn Optimizer>,
    scaler: GradScaler,
}

impl Scaled {
    /// Guard `inner` with `scaler`'s flag. Errors when the optimizer cannot skip on the device
    /// (8-bit Adam, host-offloaded Adam).
    pub fn new(mut inner: Box<dyn Optimizer>, scaler: GradScaler) -> Result<Scaled> {
        inner.set_skip_flag(Some(scaler.flag()))?;
        Ok(Scaled { inner, scaler })
    }
}

impl Optimizer for Scaled {
    fn step(&mut self) -> Result<()> {
        self.inner.step()
    }
    fn zero_grad(&self) -> Result<()> {
        self.inner.zero_grad()
    }
    fn learning_rate(&self) -> f32 {
        self.inner.learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr)
    }
    /// The inner optimizer's state and the scaler's (read back: a device sync).
    fn state(&self) -> OptimizerState {
        let mut st = self.inner.state();
        if let Ok(t) = self.scaler.state_tensors() {
            st.tensors.extend(t);
        }
        st
    }
    /// The inner optimizer's state; `scaler.*` tensors, when present, set the scale.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let (mine, rest): (Vec<_>, Vec<_>) = state
            .tensors
            .iter()
            .cloned()
            .partition(|(n, _)| n.starts_with("scaler."));
        let find = |name: &str| mine.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        if let (Some(s), Some(c)) = (find(SCALE), find(COUNTERS)) {
            self.scaler.load(s, c)?;
        }
        let inner = OptimizerState {
            step: state.step,
            tensors: rest,
        };
        self.inner.load_state(&inner)
    }
    fn set_lr_scale(&mut self, names: &[String], scale: f32) -> Result<()> {
        self.inner.set_lr_scale(names, scale)
    }
    fn lr_scale(&self, name: &str) -> Option<f32> {
        self.inner.lr_scale(name)
    }
    fn state_bytes(&self) -> u64 {
        self.inner.state_bytes() + (4 + 4 * SCALER_WORDS) as u64
    }
    fn set_skip_flag(&mut self, flag: Option<Tensor>) -> Result<()> {
        self.inner.set_skip_flag(flag)
    }
}
