//! The training loop.
//!
//! One epoch: for each batch, upload it, run the model, compute the loss (cross-entropy for
//! classification, MSE for regression), `backward()`, and every `accumulate` micro-batches clip,
//! set the scheduled learning rate, step the optimizer and zero the gradients. The loss is read
//! back only every few batches (for the progress bar) and at the end of the epoch: no per-step
//! device sync. After each epoch: validation, early stopping, a checkpoint, and the run log.
//!
//! Resuming restores weights, buffers, optimizer state, step counters, the early-stopping state
//! and kiln's RNG state, and the data order is a pure function of (seed, epoch): a resumed run
//! computes exactly the losses of an uninterrupted one on the same device.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint;
use super::config::{Task, TrainConfig};
use super::log::{EpochRecord, RunLog};
use super::metrics::{self, ClassificationMetrics, RegressionMetrics};
use crate::Gpu;
use crate::data::{Batch, DataLoader, Dataset, Targets};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::optim::{Optimizer, Schedule};
use crate::tensor::Tensor;

/// Loss and metrics of one evaluation pass.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Classification metrics (classification tasks).
    pub classification: Option<ClassificationMetrics>,
    /// Regression metrics (regression tasks).
    pub regression: Option<RegressionMetrics>,
    /// Examples evaluated.
    pub examples: usize,
}

/// Early-stopping and progress state saved in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// Epoch of the best validation loss.
    pub best_epoch: usize,
    /// Epochs since the last improvement.
    pub since_best: usize,
}

/// What a finished `fit` reports.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Final progress state.
    pub progress: Progress,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
    /// True when `max_steps` or `time_limit_minutes` ended the run (the last epoch may be
    /// partial).
    pub budget_reached: bool,
    /// Seconds spent training (this process).
    pub seconds: f64,
}

/// Upload a host batch: features (B, ...) and targets.
pub fn upload(gpu: &Arc<Gpu>, b: &Batch) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice_on(gpu, &b.x, &b.x_shape)?;
    let y = match &b.y {
        Targets::Classes { labels, .. } => Tensor::from_slice_on(gpu, labels, &[labels.len()])?,
        Targets::Values { values, width } => {
            Tensor::from_slice_on(gpu, values, &[values.len() / (*width).max(1), *width])?
        }
    };
    Ok((x, y))
}

/// The training loss of `out` against `y` for `task`.
pub fn task_loss(task: &Task, out: &Tensor, y: &Tensor) -> Result<Tensor> {
    match task {
        Task::Classification { .. } => out.cross_entropy(y),
        Task::Regression { .. } => out.sub(y)?.square()?.mean(),
    }
}

/// Evaluate `model` on `data` in eval mode (no graph, no dropout, BatchNorm running stats).
pub fn evaluate(
    gpu: &Arc<Gpu>,
    model: &mut dyn Module,
    task: &Task,
    data: &dyn Dataset,
    batch_size: usize,
) -> Result<Evaluation> {
    let was_training = model.is_training();
    model.set_training(false);
    let _g = crate::no_grad();
    let n = data.len();
    let mut loss_sum = 0.0f64;
    let mut preds_c: Vec<u32> = Vec::with_capacity(n);
    let mut preds_v: Vec<f32> = Vec::new();
    let mut targets_c: Vec<u32> = Vec::with_capacity(n);
    let mut targets_v: Vec<f32> = Vec::new();
    let idx: Vec<usize> = (0..n).collect();
    let mut losses = Vec::new();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = data.batch(chunk);
        let (x, y) = upload(gpu, &b)?;
        let out = model.forward(&x)?;
        losses.push((task_loss(task, &out, &y)?, chunk.len()));
        match (&b.y, task) {
            (Targets::Classes { labels, .. }, Task::Classification { .. }) => {
                preds_c.extend(out.argmax(-1, false)?.to_vec::<u32>()?);
                targets_c.extend_from_slice(labels);
            }
            (Targets::Values { values, .. }, Task::Regression { .. }) => {
                preds_v.extend(out.to_vec::<f32>()?);
                targets_v.extend_from_slice(values);
            }
            _ => {
                return Err(Error::Config(
                    "dataset targets do not match the task".into(),
                ));
            }
        }
    }
    for (l, k) in losses {
        loss_sum += l.item()? as f64 * k as f64;
    }
    model.set_training(was_training);
    let (classification, regression) = match task {
        Task::Classification { class_names } => (
            Some(classification_metrics(
                &preds_c,
                &targets_c,
                class_names.len(),
            )),
            None,
        ),
        Task::Regression { .. } => (None, Some(metrics::regression(&preds_v, &targets_v))),
    };
    Ok(Evaluation {
        loss: loss_sum / n.max(1) as f64,
        classification,
        regression,
        examples: n,
    })
}

/// Classes above which [`evaluate`] reports accuracy only: a language model's vocabulary (GPT-2
/// has 50,257 tokens) would make the `C x C` confusion matrix gigabytes.
pub const MAX_CONFUSION_CLASSES: usize = 1024;

/// [`metrics::classification`], or for more than [`MAX_CONFUSION_CLASSES`] classes the accuracy
/// alone (macro scores NaN, confusion matrix empty).
fn classification_metrics(pred: &[u32], target: &[u32], classes: usize) -> ClassificationMetrics {
    if classes <= MAX_CONFUSION_CLASSES {
        return metrics::classification(pred, target, classes);
    }
    let correct = pred.iter().zip(target).filter(|(p, t)| p == t).count();
    ClassificationMetrics {
        accuracy: correct as f64 / pred.len().max(1) as f64,
        macro_precision: f64::NAN,
        macro_recall: f64::NAN,
        macro_f1: f64::NAN,
        confusion: Vec::new(),
    }
}

/// A callback run after each epoch.
pub type EpochHook<'a> = Box<dyn FnMut(&EpochRecord) + 'a>;

/// Everything a run needs besides the model and optimizer.
pub struct Trainer<'a> {
    /// The device.
    pub gpu: Arc<Gpu>,
    /// Settings.
    pub config: TrainConfig,
    /// The task (loss and metrics).
    pub task: Task,
    /// Training examples.
    pub train: Arc<dyn Dataset>,
    /// Validation examples (early stopping and best checkpoint use them).
    pub val: Option<Arc<dyn Dataset>>,
    /// Run directory (log, plot, checkpoints).
    pub dir: PathBuf,
    /// Extra metadata stored in every checkpoint (model spec, data preparation, ...).
    pub metadata: BTreeMap<String, String>,
    /// Called after each epoch with the record (the CLI prints it).
    pub on_epoch: Option<EpochHook<'a>>,
}

/// Checkpoint file names inside the run directory.
pub const LAST: &str = "checkpoint.safetensors";
/// The best-validation checkpoint.
pub const BEST: &str = "best.safetensors";

impl Trainer<'_> {
    fn save(
        &self,
        path: &Path,
        model: &dyn Module,
        opt: &dyn Optimizer,
        progress: &Progress,
    ) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        tensors.extend(
            model
                .named_parameters()
                .into_iter()
                .map(|(n, t)| (format!("model.{n}"), t)),
        );
        tensors.extend(
            model
                .named_buffers()
                .into_iter()
                .map(|(n, t)| (format!("buffer.{n}"), t)),
        );
        let st = opt.state();
        tensors.extend(
            st.tensors
                .into_iter()
                .map(|(n, t)| (format!("optim.{n}"), t)),
        );
        let mut meta = self.metadata.clone();
        let js = |v: &dyn erased::Ser| v.json();
        meta.insert("progress".into(), js(progress));
        meta.insert("optimizer_step".into(), st.step.to_string());
        meta.insert("rng".into(), js(&crate::nn::rng::rng_state()));
        meta.insert("train_config".into(), js(&self.config));
        meta.insert("task".into(), js(&self.task));
        checkpoint::save(path, &tensors, &meta)
    }

    /// Restore model, optimizer, RNG and progress from a checkpoint written by this trainer.
    pub fn resume(
        &self,
        path: &Path,
        model: &mut dyn Module,
        opt: &mut dyn Optimizer,
    ) -> Result<Progress> {
        let ck = checkpoint::load(path)?;
        ck.restore_into("model", &model.named_parameters())?;
        ck.restore_into("buffer", &model.named_buffers())?;
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
        let names = ck.names_under("optim");
        let mut tensors = Vec::new();
        for n in names {
            let h = &ck.tensors[&format!("optim.{n}")];
            tensors.push((n, Tensor::from_slice_on(&self.gpu, &h.to_f32()?, &h.shape)?));
        }
        opt.load_state(&crate::optim::OptimizerState { step, tensors })?;
        let rng = serde_json::from_str(ck.meta("rng")?).map_err(|e| bad(e.to_string()))?;
        crate::nn::rng::set_rng_state(rng);
        Ok(progress)
    }

    /// Train until `config.epochs` or early stopping, starting from `progress`.
    pub fn fit(
        &mut self,
        model: &mut dyn Module,
        opt: &mut dyn Optimizer,
        mut progress: Progress,
    ) -> Result<FitReport> {
        let cfg = self.config.clone();
        cfg.validate()?;
        let loader = DataLoader::new(self.train.clone(), cfg.batch_size)
            .map_err(|e| Error::Config(e.to_string()))?
            .shuffle(cfg.seed);
        // Training-time augmentation (random crops, flips) applies to this loader only;
        // `evaluate` reads datasets directly and never augments.
        let loader = match self.train.augmentation() {
            Some(a) => loader.augment(a, cfg.seed),
            None => loader,
        };
        let batches_per_epoch = loader.len();
        let mut total_steps = (cfg.epochs * batches_per_epoch).div_ceil(cfg.accumulate) as u64;
        if let Some(m) = cfg.max_steps {
            total_steps = total_steps.min(m); // the schedule ends where the run will
        }
        let deadline = cfg
            .time_limit_minutes
            .map(|m| Instant::now() + std::time::Duration::from_secs_f64(m * 60.0));
        let mut budget_reached = false;
        let schedule = Schedule::from_name(&cfg.schedule, total_steps)
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut log = RunLog::open(&self.dir, progress.epoch)?;
        let start = Instant::now();
        let mut stopped_early = false;
        model.set_training(true);
        for epoch in progress.epoch + 1..=cfg.epochs {
            if cfg.unfreeze_at.is_some_and(|at| epoch >= at) {
                let s = cfg.unfreeze_lr_scale;
                let names = super::transfer::unfreeze_all_with_lr(model, opt, s)?;
                if !names.is_empty() && !cfg.quiet {
                    println!("epoch {epoch}: unfroze {} tensors at {s} x lr", names.len());
                }
            }
            let t0 = Instant::now();
            let bar = self.bar(epoch, cfg.epochs, batches_per_epoch);
            let mut loss_sum: Option<Tensor> = None; // GPU scalar: sum of batch-size-weighted losses
            let mut seen = 0usize;
            for (i, b) in loader.epoch(epoch as u64).enumerate() {
                let (x, y) = upload(&self.gpu, &b)?;
                let out = model.forward(&x)?;
                let loss = task_loss(&self.task, &out, &y)?;
                let scaled = if cfg.accumulate > 1 {
                    loss.mul_scalar(1.0 / cfg.accumulate as f32)?
                } else {
                    loss.clone()
                };
                scaled.backward()?;
                let bs = b.x_shape[0];
                seen += bs;
                let weighted = loss.detach().mul_scalar(bs as f32)?;
                loss_sum = Some(match loss_sum {
                    None => weighted,
                    Some(s) => s.add(&weighted)?,
                });
                let last = i + 1 == batches_per_epoch;
                if (i + 1) % cfg.accumulate == 0 || last {
                    if let Some(c) = cfg.clip_grad_norm {
                        crate::optim::clip_grad_norm(&model.parameters(), c)?;
                    }
                    opt.set_learning_rate(schedule.lr_at(cfg.lr, progress.step));
                    opt.step()?;
                    opt.zero_grad()?;
                    progress.step += 1;
                    budget_reached = cfg.max_steps.is_some_and(|m| progress.step >= m)
                        || deadline.is_some_and(|d| Instant::now() >= d);
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                    if (i + 1) % 10 == 0 || last {
                        // One readback every 10 batches for the bar.
                        let l = loss.item()?;
                        check_finite(l, epoch, i + 1)?;
                        let rate = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                        bar.set_message(format!("loss {l:.4}  {rate:.0} samples/s"));
                    }
                }
                if budget_reached {
                    break; // a partial epoch: validate and checkpoint what was learned
                }
            }
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let train_loss = match loss_sum {
                Some(s) => s.item()? as f64 / seen.max(1) as f64,
                None => f64::NAN,
            };
            check_finite(train_loss as f32, epoch, batches_per_epoch)?;
            let eval_batch = cfg.eval_batch_size.unwrap_or(cfg.batch_size.max(256));
            let seconds = t0.elapsed().as_secs_f64();
            let mut rec = EpochRecord {
                epoch,
                train_loss,
                lr: opt.learning_rate() as f64,
                seconds,
                samples_per_sec: seen as f64 / seconds.max(1e-9),
                ..Default::default()
            };
            if let Some(val) = &self.val {
                let ev = evaluate(&self.gpu, model, &self.task, val.as_ref(), eval_batch)?;
                check_finite(ev.loss as f32, epoch, batches_per_epoch)?;
                rec.val_loss = Some(ev.loss);
                rec.val_accuracy = ev.classification.as_ref().map(|m| m.accuracy);
                rec.val_macro_f1 = ev.classification.as_ref().map(|m| m.macro_f1);
                rec.val_r2 = ev.regression.as_ref().map(|m| m.r2);
                if ev.classification.is_some() {
                    rec.val_perplexity = Some(ev.loss.exp());
                }
                let improved = progress
                    .best_val_loss
                    .is_none_or(|b| ev.loss < b - cfg.min_delta);
                if improved {
                    progress.best_val_loss = Some(ev.loss);
                    progress.best_epoch = epoch;
                    progress.since_best = 0;
                } else {
                    progress.since_best += 1;
                }
                progress.epoch = epoch;
                if improved {
                    self.save(&self.dir.join(BEST), model, opt, &progress)?;
                }
            }
            progress.epoch = epoch;
            self.save(&self.dir.join(LAST), model, opt, &progress)?;
            log.push(rec.clone())?;
            if let Some(f) = self.on_epoch.as_mut() {
                f(&rec);
            }
            if cfg.patience.is_some_and(|p| progress.since_best >= p) {
                stopped_early = true;
                break;
            }
            if budget_reached {
                break;
            }
        }
        if cfg.restore_best && self.val.is_some() && self.dir.join(BEST).exists() {
            let ck = checkpoint::load(&self.dir.join(BEST))?;
            ck.restore_into("model", &model.named_parameters())?;
            ck.restore_into("buffer", &model.named_buffers())?;
        }
        Ok(FitReport {
            progress,
            stopped_early,
            budget_reached,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    fn bar(&self, epoch: usize, epochs: usize, len: usize) -> Option<ProgressBar> {
        if self.config.quiet {
            return None;
        }
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        Some(bar)
    }
}

fn check_finite(loss: f32, epoch: usize, batch: usize) -> Result<()> {
    if !loss.is_finite() {
        return Err(Error::Diverged(format!(
            "the loss became {loss} in epoch {epoch} (batch {batch}); training stopped and the last \
             good checkpoint was kept. Lower the learning rate (--lr), add --clip-grad-norm, or \
             check the data for extreme values"
        )));
    }
    Ok(())
}

/// JSON for checkpoint metadata.
mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
