//! Optimizer-state offload (`--offload-optimizer`, ZeRO-Offload's idea on one device): Adam /
//! AdamW with both moments in host memory and the update computed on the CPU, so the device
//! holds no optimizer state at all (Adam's 8 bytes per trained value stay in RAM).
//!
//! One step: every gradient and parameter is copied into one staging buffer on the device
//! (recorded copies), read back in one readback (one device sync per step), updated on the host
//! with the CPU twin of the fused kernel (`kiln_kernels::reference::optim::adam`, f32, the same
//! formula as [`super::Adam`]) and uploaded again:
//!
//! ```text
//! device -> host   g, p                    (4 + 4 bytes per value)
//! host             (p, m, v) = adam(p, g, m, v, t)
//! host -> device   p                       (4 bytes per value)
//! ```
//!
//! The parameters are read back each step rather than mirrored on the host, so whatever else
//! writes them (a checkpoint load, a weight reset) is seen. There is no overlap of the host
//! update with the next forward: kiln runs one training step at a time in one queue, and the next
//! forward reads every parameter this update writes; overlapping would need ZeRO-Offload's
//! one-step-delayed update, which changes the math. The cost is measured in BENCHMARKS.md.
//!
//! State names are [`super::Adam`]'s (`exp_avg.<name>`, `exp_avg_sq.<name>`, `step.<name>`), so
//! a checkpoint of an offloaded run resumes on the device and the other way round.

use kiln_kernels::reference::optim as cpu;

use super::adam::{EXP_AVG, EXP_AVG_SQ, STEP, hyper};
use super::params::{Slots, Update, optimizer_common};
use super::{Adam, AdamConfig, Optimizer, OptimizerState};
use crate::error::Result;
use crate::tensor::Tensor;

const OP: &str = "OffloadAdam";

/// Host moments of one parameter.
struct HostMoments {
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

/// Adam / AdamW with host-resident moments and a host update; see the module notes.
pub struct OffloadAdam {
    slots: Slots<HostMoments>,
    config: AdamConfig,
}

super::params::optimizer_new!(OffloadAdam, AdamConfig, "Adam / AdamW with offloaded state");

/// One parameter's part of a step, gathered before the readback.
struct Job {
    /// Index in the parameter list.
    index: usize,
    p: Tensor,
    lr_scale: f32,
    /// Element offset of its gradient, then of its parameter, in the staging buffer.
    at: usize,
}

impl OffloadAdam {
    /// Record the copies of one parameter's gradient and value into the staging buffer.
    fn gather(u: Update<'_, HostMoments>, stage: &mut Vec<(Tensor, Tensor)>, jobs: &mut Vec<Job>) {
        let at = stage.iter().map(|(g, _)| 2 * g.numel()).sum();
        jobs.push(Job {
            index: u.index,
            p: u.p.clone(),
            lr_scale: u.lr_scale,
            at,
        });
        stage.push((u.g.clone(), u.p.clone()));
    }
}

impl Optimizer for OffloadAdam {
    fn step(&mut self) -> Result<()> {
        let (mut stage, mut jobs) = (Vec::new(), Vec::new());
        self.slots.step(OP, |u| {
            Self::gather(u, &mut stage, &mut jobs);
            Ok(())
        })?;
        let Some(gpu) = jobs.first().map(|j| j.p.gpu().clone()) else {
            return Ok(());
        };
        let total: usize = stage.iter().map(|(g, _)| 2 * g.numel()).sum();
        let buf = gpu.alloc(4 * total as u64, "offloaded optimizer staging")?;
        let mut at = 0u64;
        for (g, p) in &stage {
            for t in [g, p] {
                let bytes = 4 * t.numel() as u64;
                gpu.copy(t.buffer(), 4 * t.operand().offset as u64, &buf, at, bytes);
                at += bytes;
            }
        }
        let host: Vec<f32> = bytemuck::pod_collect_to_vec(&gpu.read(&buf, 0, at)?);
        drop(buf);
        for job in jobs {
            let n = job.p.numel();
            let (g, p) = host[job.at..job.at + 2 * n].split_at(n);
            let mut p = p.to_vec();
            let s = self.slots.state[job.index].get_or_insert_with(|| HostMoments {
                m: vec![0.0; n],
                v: vec![0.0; n],
                step: 0,
            });
            s.step += 1;
            let h = hyper(&self.config, job.lr_scale, s.step);
            cpu::adam(&h, &mut p, g, &mut s.m, &mut s.v);
            let off = 4 * job.p.operand().offset as u64;
            gpu.upload(job.p.buffer(), off, bytemuck::cast_slice(&p));
        }
        Ok(())
    }

    optimizer_common!(no_step);

    /// Adam's state names, the host moments uploaded into fresh tensors (copies: a later step
    /// does not change them).
    fn state(&self) -> OptimizerState {
        let mut tensors = Vec::new();
        let sl = &self.slots;
        for ((name, p), s) in sl.params.iter().zip(&sl.state) {
            let Some(s) = s else { continue };
            let up = |v: &[f32], shape: &[usize]| Tensor::from_slice_on(p.gpu(), v, shape);
            let (Ok(m), Ok(v), Ok(t)) = (
                up(&s.m, p.shape()),
                up(&s.v, p.shape()),
                up(&[s.step as f32], &[]),
            ) else {
                continue; // out of device memory: a checkpoint then fails on the missing state
            };
            tensors.push((format!("{EXP_AVG}.{name}"), m));
            tensors.push((format!("{EXP_AVG_SQ}.{name}"), v));
            tensors.push((format!("{STEP}.{name}"), t));
        }
        OptimizerState {
            step: sl.step,
            tensors,
        }
    }

    /// Read Adam-named state into host memory: `exp_avg.<name>` and `exp_avg_sq.<name>` in
    /// pairs, `step.<name>` optional (default `state.step`). Checked by [`super::Adam`]'s own
    /// `load_state` (its errors, naming the tensor), changing nothing on an error.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let mut dev = Adam::new(self.slots.params.clone(), self.config)?;
        dev.load_state(state)?;
        let mut slots = Vec::with_capacity(self.slots.params.len());
        for s in dev.into_moments() {
            slots.push(match s {
                Some(s) => Some(HostMoments {
                    m: s.exp_avg.to_vec()?,
                    v: s.exp_avg_sq.to_vec()?,
                    step: s.step,
                }),
                None => None,
            });
        }
        self.slots.state = slots;
        self.slots.step = state.step;
        Ok(())
    }
}
