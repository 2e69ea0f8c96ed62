//! ZeRO stages 1 and 2 (Rajbhandari et al., 2020): each of `N` data-parallel replicas keeps
//! the optimizer state of `1/N` of the parameters.
//!
//! The trainable parameters, flattened in order, form one vector of `P` values, padded to
//! `N s` (`s = ceil(P / N)`) and split into `N` contiguous shards; rank `r` owns values
//! `[r s, (r+1) s)`. One step of [`Zero`]:
//!
//! ```text
//! g (P, this rank's unreduced gradients) --reduce-scatter--> g_r (s, summed over ranks)
//! inner optimizer (Adam, SGD, ...) updates w_r (s) with g_r    state: 8 s bytes for Adam
//! w_r (s) --all-gather--> w (N s) -> written back into every parameter
//! ```
//!
//! Stage 1 keeps the full gradient buffers between steps (zeroed in place) beside the shard's
//! gradient; stage 2 frees the full ones right after the reduce-scatter and the shard's after
//! the update, so a replica never holds both. kiln's backward still materialises the full
//! gradient before the step (no reduce-scatter during backward), so stage 2's peak gradient
//! memory is `4 P` bytes, not ZeRO's `4 P / N`. The shard is a copy of this rank's slice of the
//! parameters (the inner optimizer's parameter): `4 P / N` more bytes of weights. Elementwise optimizers give the same update as unsharded data parallel; per-
//! parameter learning-rate scales and checkpoint resume are not supported with ZeRO.

use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerState};
use crate::tensor::Tensor;

use super::parallel::{Replica, f32_values, grad_values, upload_like, write_grad};

/// An optimizer whose state is partitioned across the replicas (see the module notes).
pub struct Zero {
    replica: Replica,
    stage: u8,
    params: Vec<Tensor>,
    /// This rank's shard of the flattened parameters: the inner optimizer's one parameter.
    shard: Tensor,
    inner: Box<dyn Optimizer>,
    /// The shard was read from the parameters after the loop's broadcast (first step).
    synced: bool,
}

impl Zero {
    /// ZeRO `stage` (1 or 2) over the trainable tensors of `named` (every replica passes its
    /// copies in the same order); `build` makes the inner optimizer over the one shard tensor
    /// it is given (e.g. `|p| optim::build(kind, p, lr, wd, momentum)`).
    pub fn new(
        replica: Replica,
        stage: u8,
        named: Vec<(String, Tensor)>,
        build: impl FnOnce(Vec<(String, Tensor)>) -> Result<Box<dyn Optimizer>>,
    ) -> Result<Zero> {
        if !(1..=2).contains(&stage) {
            return Err(Error::Config(format!("--zero {stage}: expected 1 or 2")));
        }
        let params: Vec<Tensor> = named
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.requires_grad_flag())
            .collect();
        let Some(first) = params.first() else {
            return Err(Error::Config(
                "--zero: the model has no trainable parameters".into(),
            ));
        };
        let gpu = first.gpu().clone();
        let (rank, world) = replica.place();
        let total: usize = params.iter().map(|p| p.numel()).sum();
        let s = total.div_ceil(world);
        let mut flat = Vec::with_capacity(s * world);
        for p in &params {
            flat.extend(f32_values(p, "--zero")?);
        }
        flat.resize(s * world, 0.0);
        let shard = Tensor::from_slice_on(&gpu, &flat[rank * s..(rank + 1) * s], &[s])?;
        let shard = shard.requires_grad();
        let inner = build(vec![("zero_shard".into(), shard.clone())])?;
        Ok(Zero {
            replica,
            stage,
            params,
            shard,
            inner,
            synced: false,
        })
    }

    /// Values per shard (`ceil(P / N)`).
    pub fn shard_len(&self) -> usize {
        self.shard.numel()
    }
}

impl Optimizer for Zero {
    fn step(&mut self) -> Result<()> {
        let s = self.shard.numel();
        let (_, world) = self.replica.place();
        if !self.synced {
            // The loop broadcast rank 0's weights after this optimizer was made: start from them.
            let (rank, mut w) = (self.replica.place().0, Vec::with_capacity(s * world));
            for p in &self.params {
                w.extend(f32_values(p, "--zero")?);
            }
            w.resize(s * world, 0.0);
            self.shard
                .copy_from(&upload_like(&self.shard, &w[rank * s..(rank + 1) * s])?)?;
            self.synced = true;
        }
        let mut flat = Vec::with_capacity(s * world);
        for p in &self.params {
            flat.extend(grad_values(p)?);
        }
        flat.resize(s * world, 0.0);
        let mut mine = vec![0.0; s];
        self.replica
            .with(|c| c.reduce_scatter_sum(&flat, &mut mine))?;
        if self.stage >= 2 {
            for p in &self.params {
                p.clear_grad();
            }
        }
        write_grad(&self.shard, &mine)?;
        self.inner.step()?;
        if self.stage >= 2 {
            self.shard.clear_grad(); // only one of the full and the shard gradient at a time
        }
        let updated = self.shard.to_vec::<f32>()?;
        let mut all = vec![0.0; s * world];
        self.replica.with(|c| c.all_gather(&updated, &mut all))?;
        let mut at = 0;
        for p in &self.params {
            let n = p.numel();
            p.copy_from(&upload_like(p, &all[at..at + n])?)?;
            at += n;
        }
        Ok(())
    }

    fn zero_grad(&self) -> Result<()> {
        for p in &self.params {
            p.zero_grad()?;
        }
        self.inner.zero_grad()
    }

    fn learning_rate(&self) -> f32 {
        self.inner.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr)
    }

    fn state(&self) -> OptimizerState {
        self.inner.state()
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        self.inner.load_state(state)
    }
}
