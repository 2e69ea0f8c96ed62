//! `kiln train --devices 0,1 [--zero 1|2]`: data parallel training on several devices of one
//! process. Rank 0 is the run `kiln train` builds as usual (its hooks, progress, logs and
//! checkpoints); ranks 1.. are bare replicas on their own threads, each with its own model copy
//! built from the same spec (rank 0's weights are broadcast at the start), optimizer and
//! objective. See `kiln::train::parallel` for what the loop does per step.

use std::path::Path;
use std::sync::Arc;

use clap::Args;

use super::spec::{PreparedData, RunSpec};
use super::{Error, Result};
use crate::Gpu;
use crate::dist::Local;
use crate::models::ModelSpec;
use crate::nn::Module;
use crate::optim::{Optimizer, OptimizerKind};
use crate::train::parallel::Replica;
use crate::train::{FitReport, Objective, Progress, Supervised, Trainer};

/// `--devices`, `--zero`.
#[derive(Args, Debug, Clone, Default)]
pub struct ParallelArgs {
    /// Train data parallel on these devices: indices or name substrings as `kiln devices`
    /// lists them, or `all` (`0,0` opens one adapter twice). The global batch (--batch-size)
    /// is split across them; the losses equal a one-device run's.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// ZeRO stage with --devices: 0 all-reduces the gradients, 1 also shards the optimizer
    /// state across the devices, 2 also the gradients.
    #[arg(long, default_value_t = 0, value_name = "0|1|2", requires = "devices")]
    pub zero: u8,
}

/// What every replica needs to build its copy of the run.
pub struct Setup<'s> {
    /// The run's settings.
    pub spec: &'s RunSpec,
    /// The model to build on each device.
    pub model: &'s ModelSpec,
    /// The run's data (splits shared by the replicas).
    pub data: &'s PreparedData,
}

impl ParallelArgs {
    /// The devices of `--devices` (none without it), after checking what a data-parallel run
    /// cannot do.
    pub fn open(&self, spec: &RunSpec, resume: bool) -> Result<Option<Vec<Arc<Gpu>>>> {
        let Some(list) = &self.devices else {
            return Ok(None);
        };
        let bad = |m: &str| Err(Error(format!("--devices {list}: {m}")));
        if self.zero > 2 {
            return bad(&format!("--zero {}: expected 0, 1 or 2", self.zero));
        }
        if resume {
            return bad("resuming a data-parallel run is not supported yet; resume on one device");
        }
        if spec.semi.on() {
            return bad("semi-supervised training runs on one device");
        }
        if spec.train.offload_optimizer || spec.train.unfreeze_at.is_some() {
            return bad("--offload-optimizer and --unfreeze-at run on one device");
        }
        let gpus = Gpu::open_list(list).map_err(|e| Error(e.to_string()))?;
        Ok(Some(gpus))
    }

    /// The optimizer of one replica: the plain one, or ZeRO's sharded one.
    pub fn optimizer(
        &self,
        spec: &RunSpec,
        replica: &Replica,
        model: &dyn Module,
    ) -> Result<Box<dyn Optimizer>> {
        let kind: OptimizerKind = spec
            .train
            .optimizer
            .parse()
            .map_err(|e| Error(format!("--optimizer: {e}")))?;
        let t = &spec.train;
        let build = |p| crate::optim::build(kind, p, t.lr, t.weight_decay, t.momentum);
        Ok(if self.zero > 0 {
            let z = crate::train::zero::Zero::new(
                replica.clone(),
                self.zero,
                model.named_parameters(),
                build,
            )?;
            Box::new(z)
        } else {
            build(model.named_parameters())?
        })
    }

    /// Run rank 0 (`fit`, on the calling thread) and ranks 1.. (bare replicas on `gpus[1..]`)
    /// to the end; rank 0's report, or the first error (rank 0's first).
    pub fn fit(
        &self,
        setup: &Setup<'_>,
        gpus: &[Arc<Gpu>],
        dir: &Path,
        fit: impl FnOnce(Replica) -> Result<FitReport>,
    ) -> Result<(FitReport, u64)> {
        let timeout = crate::dist::local::timeout_from_env()?;
        let mut group = Local::group(gpus.len(), timeout)?.into_iter();
        let root = Replica::new(Box::new(group.next().expect("rank 0")), self.zero);
        std::thread::scope(|s| {
            let others: Vec<_> = group
                .zip(&gpus[1..])
                .map(|(c, gpu)| {
                    let replica = Replica::new(Box::new(c), self.zero);
                    s.spawn(move || {
                        crate::with_device(gpu, || self.replica(setup, gpu, dir, replica))
                    })
                })
                .collect();
            let report = crate::with_device(&gpus[0], || fit(root.clone()));
            let sent = root.bytes_sent();
            drop(root); // a failed rank 0 releases the others at once
            let mut first = report.map(|r| (r, sent));
            for h in others {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(Error("a replica's thread panicked".into())));
                if let (Ok(_), Err(e)) = (&first, r) {
                    first = Err(e);
                }
            }
            first
        })
    }

    /// One bare replica: its model, optimizer, objective and loop (no hooks, no output).
    fn replica(
        &self,
        setup: &Setup<'_>,
        gpu: &Arc<Gpu>,
        dir: &Path,
        replica: Replica,
    ) -> Result<()> {
        let spec = setup.spec;
        // No manual_seed: kiln's random stream is process-wide and rank 0 is drawing from it;
        // this replica's initial weights are replaced by rank 0's at the start of `fit`.
        let mut model = setup.model.build(gpu)?;
        super::grad_checkpoint::apply(model.as_mut(), &spec.train, &spec.model)?;
        if !spec.freeze.is_empty() {
            crate::nn::freeze::freeze(model.as_ref(), &spec.freeze)?;
        }
        let mut opt = self.optimizer(spec, &replica, model.as_ref())?;
        let mut cfg = spec.train.clone();
        cfg.quiet = true;
        let data = setup.data;
        let mut t = Trainer::new(gpu, cfg, data.train.clone(), dir).with_val(data.val.clone());
        t.replica = Some(replica);
        let mut objective = Supervised::new(gpu, data.task.clone());
        t.fit(
            model.as_mut(),
            opt.as_mut(),
            &mut objective,
            Progress::default(),
        )?;
        Ok(())
    }
}

/// The data-parallel line of `kiln train`'s output: devices, ZeRO stage and the bytes rank 0
/// sent per step beside a ring all-reduce of the gradients, `2 (N-1)/N * 4 P`.
pub fn summary(
    args: &ParallelArgs,
    gpus: &[Arc<Gpu>],
    params: usize,
    sent: u64,
    steps: u64,
) -> String {
    let n = gpus.len() as f64;
    let theory = 2.0 * (n - 1.0) / n * 4.0 * params as f64;
    let names: Vec<String> = gpus
        .iter()
        .map(|g| format!("{:?}", g.info().backend))
        .collect();
    format!(
        "data parallel: {} devices ({}), zero {}: {:.0} bytes sent per step by rank 0 \
         (gradients in a ring: 2 (N-1)/N x 4 x {params} = {theory:.0})",
        gpus.len(),
        names.join(", "),
        args.zero,
        sent as f64 / steps.max(1) as f64
    )
}

/// `trainer.fit(...)` on one device, or on every device of `gpus` (rank 0 with `trainer`,
/// which then holds the replica), printing the traffic line unless quiet.
#[allow(clippy::too_many_arguments)]
pub fn run(
    args: &ParallelArgs,
    gpus: Option<&[Arc<Gpu>]>,
    setup: &Setup<'_>,
    trainer: &mut Trainer<'_>,
    model: &mut dyn Module,
    opt: &mut dyn Optimizer,
    objective: &mut dyn Objective,
    progress: Progress,
) -> Result<FitReport> {
    let Some(gpus) = gpus else {
        return Ok(trainer.fit(model, opt, objective, progress)?);
    };
    let dir = trainer.dir.clone();
    let (report, sent) = args.fit(setup, gpus, &dir, |replica| {
        let mut zero = match args.zero {
            0 => None,
            _ => Some(args.optimizer(setup.spec, &replica, model)?),
        };
        trainer.replica = Some(replica);
        let opt = zero.as_deref_mut().unwrap_or(opt);
        let report = trainer.fit(model, opt, objective, progress);
        // Rank 0's last handle goes with `fit`'s: a failed rank 0 releases the others at once.
        trainer.replica = None;
        Ok(report?)
    })?;
    if !setup.spec.train.quiet {
        let steps = report.progress.step;
        println!(
            "{}",
            summary(args, gpus, model.num_parameters(), sent, steps)
        );
    }
    Ok(report)
}
