//! The training loop: the one loop every kiln training run goes through (tables and images,
//! language models, chat fine-tuning with LoRA/QLoRA, the BERT classifier, transfer learning).
//!
//! ```text
//! fit(model, optimizer, objective, progress)
//!   for epoch, from where `progress` stands (mid-epoch on resume):
//!     for batch in loader.epoch_from(epoch, progress.batch)     order = f(seed, epoch)
//!       (loss, weight) = objective.loss(model, batch)
//!       hooks.before_backward -> backward                        grads accumulate
//!       every `accumulate` batches: hooks.after_backward, clip, lr = schedule(step),
//!         hooks.before_step, step, zero_grad, hooks.after_step
//!         budget (--max-steps, --time-limit) or a hook's Stop: checkpoint here and return
//!         --checkpoint-every N steps: checkpoint here and go on
//!   end of epoch: validate -> metrics line -> best checkpoint -> last checkpoint
//!                 -> hooks.end_of_epoch -> early stopping
//! ```
//!
//! The loss is read back every [`BatchInfo::EVERY`] batches and at the epoch's end: no per-step sync.
//!
//! **Exact resume anywhere.** A checkpoint holds the weights, buffers, optimizer state, kiln's
//! RNG state (dropout), the step counter, early-stopping state and the loader position (epoch,
//! batch, and the partial sums of the epoch's loss). The data order and augmentation are pure
//! functions of (seed, epoch, batch), so a run stopped anywhere and resumed computes the same
//! losses, bit for bit on the same device, as one that never stopped. The learning-rate
//! schedule spans `epochs` (not the step or time budget), so a budget does not bend it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint;
use super::config::TrainConfig;
use super::hooks::{BatchInfo, Control, EpochEnd, Hook, Phase, StepInfo};
use super::log::{EpochRecord, RunLog};
use super::objective::{Evaluation, Objective};
use crate::Gpu;
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
pub use crate::io::run_dir::{BEST, LAST};
use crate::nn::Module;
use crate::optim::{Optimizer, Schedule};
use crate::tensor::Tensor;

pub use super::progress::{FitReport, PartialEpoch, Progress, Saved, StopReason};
use super::progress::{check_finite, erased};

/// A training run: data, settings, run directory and hooks. See the module notes.
pub struct Trainer<'a> {
    /// The device.
    pub gpu: Arc<Gpu>,
    /// Settings.
    pub config: TrainConfig,
    /// Training examples.
    pub train: Arc<dyn Dataset>,
    /// Validation examples (early stopping and the best checkpoint use them).
    pub val: Option<Arc<dyn Dataset>>,
    /// Run directory (log, plot, checkpoints).
    pub dir: PathBuf,
    /// Extra metadata stored in every checkpoint (model spec, data preparation, ...).
    pub metadata: BTreeMap<String, String>,
    /// Callbacks into the loop, called in order.
    pub hooks: Vec<Box<dyn Hook + 'a>>,
    /// What the checkpoints hold.
    pub saved: Saved,
    /// A schedule used instead of `config.schedule` (`kiln lr-find`'s exponential ramp).
    pub schedule: Option<Schedule>,
    /// Also evaluate this many training examples (evenly spaced) at each epoch's end, for the
    /// train accuracy beside the validation one (diagnostics; none: not measured).
    pub train_eval: Option<usize>,
    /// This run's place in a data-parallel group (`None`: one device); see [`super::parallel`].
    pub replica: Option<super::parallel::Replica>,
}

impl<'a> Trainer<'a> {
    /// A run of `config` on `train` writing to `dir`: no validation set, metadata or hooks.
    pub fn new(
        gpu: &Arc<Gpu>,
        config: TrainConfig,
        train: Arc<dyn Dataset>,
        dir: impl Into<PathBuf>,
    ) -> Trainer<'a> {
        Trainer {
            gpu: gpu.clone(),
            config,
            train,
            val: None,
            dir: dir.into(),
            metadata: BTreeMap::new(),
            hooks: Vec::new(),
            saved: Saved::Model,
            schedule: None,
            train_eval: None,
            replica: None,
        }
    }

    /// Validate on `val` after every epoch.
    pub fn with_val(mut self, val: Arc<dyn Dataset>) -> Self {
        self.val = Some(val);
        self
    }

    /// Add a hook (called after those added before it).
    pub fn hook(mut self, h: impl Hook + 'a) -> Self {
        self.hooks.push(Box::new(h));
        self
    }

    fn tensors(&self, model: &dyn Module) -> Vec<(String, Tensor)> {
        match &self.saved {
            Saved::Model => {
                let mut v: Vec<(String, Tensor)> = model
                    .named_parameters()
                    .into_iter()
                    .map(|(n, t)| (format!("model.{n}"), t))
                    .collect();
                v.extend(
                    model
                        .named_buffers()
                        .into_iter()
                        .map(|(n, t)| (format!("buffer.{n}"), t)),
                );
                v
            }
            Saved::Only { prefix, tensors } => tensors
                .iter()
                .map(|(n, t)| (format!("{prefix}.{n}"), t.clone()))
                .collect(),
        }
    }

    fn save(
        &self,
        path: &Path,
        model: &dyn Module,
        opt: &dyn Optimizer,
        objective: &dyn Objective,
        progress: &Progress,
    ) -> Result<()> {
        if self.replica.as_ref().is_some_and(|r| !r.is_root()) {
            return Ok(()); // rank 0 alone writes the run directory
        }
        let mut tensors = self.tensors(model);
        let st = opt.state();
        tensors.extend(
            st.tensors
                .into_iter()
                .map(|(n, t)| (format!("optim.{n}"), t)),
        );
        let mut meta = self.metadata.clone();
        meta.extend(objective.metadata());
        let js = |v: &dyn erased::Ser| v.json();
        meta.insert("progress".into(), js(progress));
        meta.insert("optimizer_step".into(), st.step.to_string());
        meta.insert("rng".into(), js(&crate::nn::rng::rng_state()));
        meta.insert("train_config".into(), js(&self.config));
        checkpoint::save(path, &tensors, &meta)
    }

    /// Restore the saved tensors, optimizer, RNG and progress from a checkpoint written by
    /// this trainer (the loop then continues at the saved loader position).
    pub fn resume(
        &self,
        path: &Path,
        model: &mut dyn Module,
        opt: &mut dyn Optimizer,
    ) -> Result<Progress> {
        let ck = checkpoint::load(path)?;
        match &self.saved {
            Saved::Model => {
                ck.restore_into("model", &model.named_parameters())?;
                ck.restore_into("buffer", &model.named_buffers())?;
            }
            Saved::Only { prefix, tensors } => ck.restore_into(prefix, tensors)?,
        }
        let bad = |m: String| Error::Checkpoint {
            path: ck.path.clone(),
            msg: m,
        };
        let progress: Progress =
            serde_json::from_str(ck.meta("progress")?).map_err(|e| bad(e.to_string()))?;
        let step: u64 = ck
            .meta("optimizer_step")?
            .parse()
            .map_err(|e| bad(format!("optimizer_step: {e}")))?;
        let mut tensors = Vec::new();
        for n in ck.names_under("optim") {
            let h = &ck.tensors[&format!("optim.{n}")];
            tensors.push((n, Tensor::from_host_on(&self.gpu, h)?));
        }
        if tensors.is_empty() && step > 0 && self.config.optimizer_keeps_state() {
            return Err(bad(
                "the optimizer state (optim.*) is missing; resuming without it would not \
                 continue the run"
                    .into(),
            ));
        }
        for (_, t) in &tensors {
            t.set_memory_category(crate::memory::Category::OptimizerState);
        }
        opt.load_state(&crate::optim::OptimizerState { step, tensors })?;
        let rng = serde_json::from_str(ck.meta("rng")?).map_err(|e| bad(e.to_string()))?;
        crate::nn::rng::set_rng_state(rng);
        Ok(progress)
    }

    /// Train `model` with `opt` on `objective` until `config.epochs`, early stopping, the
    /// step or time budget or a hook's stop, starting from `progress` (the default for a new
    /// run, or what [`Trainer::resume`] returned).
    pub fn fit(
        &mut self,
        model: &mut dyn Module,
        opt: &mut dyn Optimizer,
        objective: &mut dyn Objective,
        mut progress: Progress,
    ) -> Result<FitReport> {
        let cfg = self.config.clone();
        cfg.validate()?;
        if let Some(n) = cfg.grad_checkpoint
            && !model.set_checkpointing(n)
        {
            return Err(Error::Config(format!(
                "grad_checkpoint {n}: the model has no blocks to checkpoint"
            )));
        }
        let loader = DataLoader::new(self.train.clone(), cfg.batch_size)
            .map_err(|e| Error::Config(e.to_string()))?
            .shuffle(cfg.seed);
        // Training-time augmentation (random crops, flips) applies to this loader only;
        // evaluation reads datasets directly and never augments.
        let loader = match self.train.augmentation() {
            Some(a) => loader.augment(a, cfg.seed),
            None => loader,
        };
        let per_epoch = loader.len();
        if per_epoch == 0 {
            return Err(Error::Config("the training set is empty".into()));
        }
        if progress.batch >= per_epoch {
            return Err(Error::Config(format!(
                "the checkpoint stands at batch {} of an epoch, but an epoch now has {per_epoch} \
                 batches; resume with the data and batch size the run was started with",
                progress.batch
            )));
        }
        let steps_per_epoch = per_epoch.div_ceil(cfg.accumulate) as u64;
        let total_steps = cfg.epochs as u64 * steps_per_epoch;
        let schedule = match self.schedule {
            Some(s) => s,
            None => Schedule::from_name(&cfg.schedule, total_steps)
                .map_err(|e| Error::Config(e.to_string()))?,
        };
        let deadline = cfg
            .time_limit_minutes
            .map(|m| Instant::now() + std::time::Duration::from_secs_f64(m * 60.0));
        let replica = self.replica.clone();
        if let Some(r) = &replica {
            r.check(&cfg, self.train.len())?;
        }
        let root = replica.as_ref().is_none_or(|r| r.is_root());
        let mut log = root
            .then(|| RunLog::open(&self.dir, progress.epoch))
            .transpose()?;
        let start = Instant::now();
        let mut reason = StopReason::Finished;
        let mut records = Vec::new();
        let eval_batch = cfg.eval_batch_size.unwrap_or(cfg.batch_size.max(256));
        let trainable = |model: &dyn Module| -> Vec<Tensor> {
            let all = model.parameters().into_iter();
            all.filter(|t| t.requires_grad_flag()).collect()
        };
        let mut params = trainable(model);
        if let Some(r) = &replica {
            r.broadcast_module(model)?;
        }
        model.set_training(true);
        super::memory::tag_weights(model);
        'epochs: for epoch in progress.epoch + 1..=cfg.epochs {
            if cfg.unfreeze_at.is_some_and(|at| epoch >= at) {
                let s = cfg.unfreeze_lr_scale;
                let names = super::transfer::unfreeze_all_with_lr(model, opt, s)?;
                if !names.is_empty() {
                    // The hooks (all-reduce, diagnostics) and clipping see the new ones too.
                    params = trainable(model);
                    if !cfg.quiet {
                        println!("epoch {epoch}: unfroze {} tensors at {s} x lr", names.len());
                    }
                }
            }
            let first = progress.batch;
            let partial = progress.partial.take().unwrap_or_default();
            let t0 = Instant::now() - std::time::Duration::from_secs_f64(partial.seconds);
            // GPU scalar: the sum of weight-scaled losses (no readback per batch).
            let mut loss_sum: Option<Tensor> = (first > 0)
                .then(|| Tensor::from_slice_on(&self.gpu, &[partial.loss_sum], &[]))
                .transpose()?;
            let (mut weight, mut seen) = (partial.weight, partial.examples);
            for h in &mut self.hooks {
                h.on_epoch_start(epoch, first, per_epoch)?;
            }
            let mut stopped_inside = false;
            let mut batches = loader.epoch_from(epoch as u64, first).enumerate();
            while let Some((k, b)) = self.timed(Phase::Data, |_| batches.next()) {
                let i = first + k;
                let b = super::parallel::shard(replica.as_ref(), b)?;
                objective.position(epoch, i, per_epoch);
                let (loss, w) = self.timed(Phase::Forward, |_| objective.loss(model, &b))?;
                self.phase(Phase::Backward, true);
                let mut l = loss.clone();
                for h in &mut self.hooks {
                    l = h.before_backward(l)?;
                }
                if cfg.accumulate > 1 {
                    l = l.mul_scalar(1.0 / cfg.accumulate as f32)?;
                }
                let l = super::parallel::scale_loss(replica.as_ref(), l, w)?;
                l.backward()?;
                self.phase(Phase::Backward, false);
                let weighted = loss.detach().mul_scalar(w as f32)?;
                loss_sum = Some(match loss_sum {
                    None => weighted,
                    Some(s) => s.add(&weighted)?,
                });
                weight += w;
                seen += b.x_shape.first().copied().unwrap_or(0);
                progress.batch = i + 1;
                let last = i + 1 == per_epoch;
                let at = StepInfo {
                    epoch,
                    batch: i + 1,
                    batches: per_epoch,
                    step: progress.step,
                };
                let read = (i + 1).is_multiple_of(BatchInfo::EVERY) || last;
                let info = BatchInfo {
                    at,
                    loss: if read && !self.hooks.is_empty() {
                        let v = loss.item()?;
                        check_finite(v, epoch, i + 1)?;
                        Some(v)
                    } else {
                        None
                    },
                    examples: seen,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                for h in &mut self.hooks {
                    h.on_batch(&info)?;
                }
                if !(i + 1).is_multiple_of(cfg.accumulate) && !last {
                    continue;
                }
                super::parallel::after_backward(replica.as_ref(), &params)?;
                for h in &mut self.hooks {
                    h.after_backward(&params)?;
                }
                self.phase(Phase::Optimizer, true);
                if let Some(c) = cfg.clip_grad_norm {
                    crate::optim::clip_grad_norm(&params, c)?;
                }
                opt.set_learning_rate(schedule.lr_at(cfg.lr, progress.step));
                let mut skip = false;
                for h in &mut self.hooks {
                    skip |= h.before_step(&at)? == Control::Skip;
                }
                if !skip {
                    // What the update allocates is its state (moments made on the first step).
                    let _m = crate::memory::scope(crate::memory::Category::OptimizerState);
                    opt.step()?;
                }
                opt.zero_grad()?;
                self.phase(Phase::Optimizer, false);
                progress.step += 1;
                let at = StepInfo {
                    step: progress.step,
                    ..at
                };
                let mut stop = None;
                for h in &mut self.hooks {
                    if h.after_step(&at, model)? == Control::Stop {
                        stop = Some(StopReason::Hook);
                    }
                }
                if cfg.max_steps.is_some_and(|m| progress.step >= m) {
                    stop = Some(StopReason::MaxSteps);
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    stop = Some(StopReason::TimeLimit);
                }
                let periodic = cfg
                    .checkpoint_every
                    .is_some_and(|n| progress.step.is_multiple_of(n));
                if last {
                    if let Some(r) = stop {
                        reason = r; // the epoch is complete: finish it below, then stop
                    }
                    break;
                }
                if stop.is_some() || periodic {
                    progress.partial = Some(PartialEpoch {
                        loss_sum: match &loss_sum {
                            Some(s) => s.item()?,
                            None => 0.0,
                        },
                        weight,
                        examples: seen,
                        seconds: t0.elapsed().as_secs_f64(),
                    });
                    self.save_last(model, opt, objective, &progress)?;
                    if let Some(r) = stop {
                        reason = r;
                        stopped_inside = true;
                        break;
                    }
                    progress.partial = None;
                }
            }
            let seconds = t0.elapsed().as_secs_f64();
            let loss_total = loss_sum.as_ref().map_or(Ok(0.0), |s| s.item())? as f64;
            let mut sums = [loss_total, weight, seen as f64];
            if let Some(r) = &replica {
                r.sum(&mut sums)?; // the global batches' loss
            }
            let train_loss = match &loss_sum {
                Some(_) => sums[0] / sums[1].max(f64::MIN_POSITIVE),
                None => f64::NAN,
            };
            check_finite(train_loss as f32, epoch, progress.batch)?;
            let mut rec = EpochRecord {
                epoch,
                train_loss,
                lr: opt.learning_rate() as f64,
                seconds,
                samples_per_sec: sums[2] / seconds.max(1e-9),
                ..Default::default()
            };
            for h in &mut self.hooks {
                h.fill_record(&mut rec)?;
            }
            let ev = match self.val.clone() {
                Some(val) if root => {
                    self.phase(Phase::Evaluation, true);
                    let ev = self.validate(model, objective, val.as_ref(), eval_batch)?;
                    self.phase(Phase::Evaluation, false);
                    check_finite(ev.loss as f32, epoch, progress.batch)?;
                    rec.fill(&ev);
                    Some(ev)
                }
                _ => None,
            };
            if let Some(n) = self.train_eval {
                let sample = super::diagnostics::Sample::new(self.train.clone(), n);
                let ev = self.validate(model, objective, &sample, eval_batch)?;
                rec.fill_train(&ev);
            }
            if stopped_inside {
                // A partial epoch: reported and logged (a resumed run replaces the line), but
                // not used for early stopping or the best checkpoint, so that resuming gives
                // what an uninterrupted run would.
                rec.partial_batches = Some(progress.batch);
                if let Some(l) = &mut log {
                    l.push(rec.clone())?;
                }
                for h in &mut self.hooks {
                    h.on_partial_epoch(&rec, model)?;
                }
                records.push(rec);
                break 'epochs;
            }
            let val_loss = match (&replica, &self.val) {
                (Some(r), Some(_)) => Some(r.from_root(ev.as_ref().map_or(0.0, |e| e.loss))?),
                _ => ev.as_ref().map(|e| e.loss),
            };
            let improved = match val_loss {
                Some(loss) => {
                    let better = progress
                        .best_val_loss
                        .is_none_or(|b| loss < b - cfg.min_delta);
                    if better {
                        progress.best_val_loss = Some(loss);
                        progress.best_epoch = epoch;
                        progress.since_best = 0;
                    } else {
                        progress.since_best += 1;
                    }
                    better
                }
                None => true,
            };
            progress.epoch = epoch;
            progress.batch = 0;
            progress.partial = None;
            // The metrics line first: a kill after it leaves a checkpoint one epoch older, and
            // the resumed run rewrites the log up to that checkpoint.
            if let Some(l) = &mut log {
                l.push(rec.clone())?;
            }
            if improved && self.val.is_some() {
                self.phase(Phase::Checkpoint, true);
                self.save(&self.dir.join(BEST), model, opt, objective, &progress)?;
                self.phase(Phase::Checkpoint, false);
            }
            self.save_last(model, opt, objective, &progress)?;
            let end = EpochEnd {
                improved,
                epochs: cfg.epochs,
            };
            if cfg.stop_at_epoch.is_some_and(|e| epoch >= e) && epoch < cfg.epochs {
                reason = StopReason::StopAtEpoch;
            }
            let mut stop = reason != StopReason::Finished;
            for h in &mut self.hooks {
                if h.end_of_epoch(&rec, &end, model)? == Control::Stop {
                    stop = true;
                    if reason == StopReason::Finished {
                        reason = StopReason::Hook;
                    }
                }
            }
            records.push(rec);
            if cfg.patience.is_some_and(|p| progress.since_best >= p) {
                reason = StopReason::EarlyStop;
                break;
            }
            if stop {
                break;
            }
        }
        if cfg.restore_best && root && self.val.is_some() && self.dir.join(BEST).exists() {
            let ck = checkpoint::load(&self.dir.join(BEST))?;
            match &self.saved {
                Saved::Model => {
                    ck.restore_into("model", &model.named_parameters())?;
                    ck.restore_into("buffer", &model.named_buffers())?;
                }
                Saved::Only { prefix, tensors } => ck.restore_into(prefix, tensors)?,
            }
        }
        Ok(FitReport {
            progress,
            reason,
            stopped_early: reason == StopReason::EarlyStop,
            budget_reached: matches!(
                reason,
                StopReason::MaxSteps
                    | StopReason::TimeLimit
                    | StopReason::Hook
                    | StopReason::StopAtEpoch
            ),
            records,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Tell the hooks that `phase` starts (`start`) or ends.
    fn phase(&mut self, phase: Phase, start: bool) {
        for h in &mut self.hooks {
            h.on_phase(phase, start);
        }
    }

    /// `f` inside `phase` (started before, ended after).
    fn timed<T>(&mut self, phase: Phase, f: impl FnOnce(&mut Self) -> T) -> T {
        self.phase(phase, true);
        let out = f(self);
        self.phase(phase, false);
        out
    }

    /// Write `checkpoint.safetensors` inside [`Phase::Checkpoint`].
    fn save_last(
        &mut self,
        model: &dyn Module,
        opt: &dyn Optimizer,
        objective: &dyn Objective,
        progress: &Progress,
    ) -> Result<()> {
        self.phase(Phase::Checkpoint, true);
        self.save(&self.dir.join(LAST), model, opt, objective, progress)?;
        self.phase(Phase::Checkpoint, false);
        Ok(())
    }

    /// Evaluate in eval mode without a graph, restoring training mode after.
    fn validate(
        &self,
        model: &mut dyn Module,
        objective: &mut dyn Objective,
        data: &dyn Dataset,
        batch_size: usize,
    ) -> Result<Evaluation> {
        model.set_training(false);
        let ev = {
            let _g = crate::no_grad();
            objective.evaluate(model, data, batch_size)
        };
        model.set_training(true);
        ev
    }
}
