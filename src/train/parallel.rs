//! Data parallelism in the training loop: one [`Replica`] per device, each running
//! [`super::Trainer::fit`] on its own thread with its own model copy, talking through a
//! [`Collective`].
//!
//! What the loop does differently when [`super::Trainer::replica`] is set (world `N`, rank `r`):
//!
//! ```text
//! start        parameters and buffers broadcast from rank 0 (every replica starts equal)
//! each batch   the loader yields the *global* batch (B rows, same order as one device);
//!              rank r keeps rows [r B / N, (r+1) B / N)            shard()
//!              loss_r (a mean over its rows, weight w_r) is scaled by w_r / Σ_r w_r before
//!              backward, so Σ_r grad_r = the gradient of the global batch's mean   scale_loss()
//! each step    plain DP: the gradients are all-reduced (summed) in buckets    after_backward()
//!              ZeRO 1/2: the optimizer reduce-scatters them instead (`super::zero`)
//! epoch end    the loss sum, weight and examples are all-reduced: the logged loss is the
//!              global batch's; rank 0 alone validates, logs and writes checkpoints, and sends
//!              the validation loss to the others so that early stopping agrees
//! ```
//!
//! Dropout: the replicas draw their keys from kiln's one process-wide stream, in whatever order
//! their threads reach it, so with dropout on a data-parallel run is a different (equally
//! valid, not reproducible) random run, not the single-device one.

use std::sync::{Arc, Mutex};

use crate::data::{Batch, Targets};
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::{DType, Tensor};

use super::config::TrainConfig;

/// Gradient values per all-reduce bucket (25 MiB of `f32`, PyTorch DDP's default bucket).
pub const BUCKET_VALUES: usize = 25 << 18;

/// A collective shared by the loop and the optimizer of one replica (both on its thread).
pub type SharedCollective = Arc<Mutex<Box<dyn Collective>>>;

/// One replica's place in a data-parallel run (see the module notes).
#[derive(Clone)]
pub struct Replica {
    /// The group this replica belongs to.
    pub comm: SharedCollective,
    /// ZeRO stage: 0 (plain data parallel: all-reduce), 1 or 2 (the optimizer is a
    /// [`super::zero::Zero`], which reduce-scatters the gradients itself).
    pub zero: u8,
    /// Gradient values per all-reduce bucket.
    pub bucket_values: usize,
}

impl Replica {
    /// The replica of `comm` for ZeRO stage `zero` (0: plain data parallel).
    pub fn new(comm: Box<dyn Collective>, zero: u8) -> Replica {
        Replica {
            comm: Arc::new(Mutex::new(comm)),
            zero,
            bucket_values: BUCKET_VALUES,
        }
    }

    /// Run `f` on the collective.
    pub fn with<T>(&self, f: impl FnOnce(&mut dyn Collective) -> Result<T>) -> Result<T> {
        let mut c = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        f(c.as_mut())
    }

    /// `(rank, world size)`.
    pub fn place(&self) -> (usize, usize) {
        let c = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        (c.rank(), c.world_size())
    }

    /// True on rank 0, the replica that logs and writes checkpoints.
    pub fn is_root(&self) -> bool {
        self.place().0 == 0
    }

    /// Bytes this replica has sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.comm.lock().map(|c| c.bytes_sent()).unwrap_or(0)
    }

    /// Settings a data-parallel run cannot honour, and global batches some rank would get no
    /// row of (`n` training examples).
    pub fn check(&self, cfg: &TrainConfig, n: usize) -> Result<()> {
        let (_, world) = self.place();
        let bad = |m: String| Err(Error::Config(m));
        if cfg.time_limit_minutes.is_some() {
            return bad(
                "--time-limit with several devices: the replicas' clocks disagree \
                        on when to stop; use --max-steps"
                    .into(),
            );
        }
        if self.zero > 0 && cfg.clip_grad_norm.is_some() {
            return bad(
                "--clip-grad-norm with --zero: the full gradient is never gathered; \
                        train without clipping or with --zero 0"
                    .into(),
            );
        }
        let last = n % cfg.batch_size;
        if cfg.batch_size < world || (last != 0 && last < world) {
            return bad(format!(
                "batch size {} over {n} examples on {world} devices: every global batch (the \
                 last has {} rows) needs at least one row per device",
                cfg.batch_size,
                if last == 0 { cfg.batch_size } else { last }
            ));
        }
        Ok(())
    }

    /// Give every replica rank 0's parameters and buffers (f32 only).
    pub fn broadcast_module(&self, model: &dyn Module) -> Result<()> {
        let mut tensors = model.parameters();
        tensors.extend(model.named_buffers().into_iter().map(|(_, t)| t));
        for t in &tensors {
            let mut v = f32_values(t, "broadcast")?;
            self.with(|c| c.broadcast(&mut v, 0))?;
            t.copy_from(&upload_like(t, &v)?)?;
        }
        Ok(())
    }

    /// This rank's rows of the global batch `b`.
    pub fn shard(&self, b: Batch) -> Result<Batch> {
        let (rank, world) = self.place();
        let rows = b.x_shape.first().copied().unwrap_or(0);
        let (lo, hi) = (rank * rows / world, (rank + 1) * rows / world);
        let per = |len: usize| len / rows.max(1);
        let cut = |v: &[f32], w: usize| v[lo * w..hi * w].to_vec();
        let y = match b.y {
            Targets::Classes {
                labels,
                num_classes,
            } => {
                let w = per(labels.len());
                Targets::Classes {
                    labels: labels[lo * w..hi * w].to_vec(),
                    num_classes,
                }
            }
            Targets::Values { values, width } => Targets::Values {
                values: cut(&values, width),
                width,
            },
        };
        let mut x_shape = b.x_shape;
        if let Some(r) = x_shape.first_mut() {
            *r = hi - lo;
        }
        Ok(Batch {
            x: cut(&b.x, per(b.x.len())),
            x_shape,
            y,
        })
    }

    /// `loss * w / Σ_ranks w`: the share of the global mean this rank's gradients carry.
    pub fn scale_loss(&self, loss: Tensor, w: f64) -> Result<Tensor> {
        let mut total = [w as f32];
        self.with(|c| c.all_reduce_sum(&mut total))?;
        loss.mul_scalar(w as f32 / total[0].max(f32::MIN_POSITIVE))
    }

    /// Plain data parallel: sum every gradient over the replicas, in buckets of
    /// [`Replica::bucket_values`] (a parameter without a gradient contributes zeros). ZeRO:
    /// nothing (its optimizer reduce-scatters).
    pub fn after_backward(&self, params: &[Tensor]) -> Result<()> {
        if self.zero > 0 {
            return Ok(());
        }
        let mut start = 0;
        while start < params.len() {
            let mut end = start;
            let mut len = 0;
            while end < params.len()
                && (end == start || len + params[end].numel() <= self.bucket_values)
            {
                len += params[end].numel();
                end += 1;
            }
            let bucket = &params[start..end];
            let mut flat = Vec::with_capacity(len);
            for p in bucket {
                flat.extend(grad_values(p)?);
            }
            self.with(|c| c.all_reduce_sum(&mut flat))?;
            let mut at = 0;
            for p in bucket {
                let sum = &flat[at..at + p.numel()];
                at += p.numel();
                write_grad(p, sum)?;
            }
            start = end;
        }
        Ok(())
    }

    /// Sum `values` over the replicas (epoch totals: loss sum, weight, examples).
    pub fn sum(&self, values: &mut [f64]) -> Result<()> {
        let mut v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        self.with(|c| c.all_reduce_sum(&mut v))?;
        for (o, x) in values.iter_mut().zip(v) {
            *o = x as f64;
        }
        Ok(())
    }

    /// Rank 0's `value` on every rank (the validation loss early stopping reads).
    pub fn from_root(&self, value: f64) -> Result<f64> {
        let mut v = [value as f32];
        self.with(|c| c.broadcast(&mut v, 0))?;
        Ok(v[0] as f64)
    }
}

/// This rank's rows of `b` (all of them without a replica).
pub fn shard(r: Option<&Replica>, b: Batch) -> Result<Batch> {
    match r {
        Some(r) => r.shard(b),
        None => Ok(b),
    }
}

/// [`Replica::scale_loss`], or `loss` itself without a replica.
pub fn scale_loss(r: Option<&Replica>, loss: Tensor, w: f64) -> Result<Tensor> {
    match r {
        Some(r) => r.scale_loss(loss, w),
        None => Ok(loss),
    }
}

/// [`Replica::after_backward`], or nothing without a replica.
pub fn after_backward(r: Option<&Replica>, params: &[Tensor]) -> Result<()> {
    r.map_or(Ok(()), |r| r.after_backward(params))
}

/// The values of an f32 tensor, or an error naming `what` needed them.
pub(crate) fn f32_values(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    if t.dtype() != DType::F32 {
        return Err(Error::Config(format!(
            "data parallel {what}: a {:?} tensor of shape {:?}; several devices train f32 \
             parameters only",
            t.dtype(),
            t.shape()
        )));
    }
    t.to_vec::<f32>()
}

/// `values` as a tensor of `like`'s shape on its device, counted as workspace by the ledger.
pub(crate) fn upload_like(like: &Tensor, values: &[f32]) -> Result<Tensor> {
    let _w = crate::memory::scope(crate::memory::Category::Workspace);
    Tensor::from_slice_on(like.gpu(), values, like.shape())
}

/// Overwrite the gradient of `p` with `values` in place (the upload is workspace, so the
/// ledger's gradients stay one buffer per parameter).
pub(crate) fn write_grad(p: &Tensor, values: &[f32]) -> Result<()> {
    let up = upload_like(p, values)?;
    match p.grad() {
        Some(g) => g.copy_from(&up),
        None => {
            p.set_grad(Some(up));
            Ok(())
        }
    }
}

/// The gradient of `p` as host values (zeros when backward did not reach it).
pub(crate) fn grad_values(p: &Tensor) -> Result<Vec<f32>> {
    match p.grad() {
        Some(g) => f32_values(&g, "gradient"),
        None => Ok(vec![0.0; p.numel()]),
    }
}
