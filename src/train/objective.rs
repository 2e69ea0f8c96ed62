//! What one batch costs: the per-batch step that [`super::Trainer::fit`] takes as a value.
//!
//! An [`Objective`] turns a host [`Batch`] into a scalar loss with its graph attached and a
//! weight (examples, or the tokens that count), and evaluates a dataset. The loop does the
//! rest (backward, accumulation, clipping, the update, metrics, checkpoints):
//!
//! | objective           | loss                                        | weight             |
//! | ------------------- | ------------------------------------------- | ------------------ |
//! | [`Supervised`]      | cross-entropy (classes) or MSE (values)     | examples           |
//! | [`MaskedLm`]        | cross-entropy over targets != IGNORE_INDEX  | targets that count |
//! | a closure           | whatever it returns                         | whatever it says   |
//!
//! An epoch's training loss is `sum(loss_b * weight_b) / sum(weight_b)`: the mean over all
//! examples (or tokens), whatever the batch sizes.

use std::sync::Arc;

use crate::Gpu;
use crate::data::{Batch, Dataset, Targets};
use crate::dtype::IGNORE_INDEX;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;

use super::config::Task;
use super::metrics::{self, ClassificationMetrics, RegressionMetrics};

/// Loss and metrics of one evaluation pass.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean loss (weighted as in training).
    pub loss: f64,
    /// Classification metrics (classification tasks).
    pub classification: Option<ClassificationMetrics>,
    /// Regression metrics (regression tasks).
    pub regression: Option<RegressionMetrics>,
    /// Examples evaluated.
    pub examples: usize,
}

/// The per-batch step of a training run. See the module notes.
pub trait Objective {
    /// The mean loss of `batch` (a scalar with its graph) and its weight.
    fn loss(&mut self, model: &dyn Module, batch: &Batch) -> Result<(Tensor, f64)>;

    /// Evaluate `model` on `data` (the loop has switched to eval mode and turned the graph
    /// off). The default: the weighted mean of [`Objective::loss`] over batches of
    /// `batch_size`, read back once at the end.
    fn evaluate(
        &mut self,
        model: &dyn Module,
        data: &dyn Dataset,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut parts = Vec::new();
        for chunk in idx.chunks(batch_size.max(1)) {
            parts.push(self.loss(model, &data.batch(chunk))?);
        }
        let (mut sum, mut weight) = (0.0f64, 0.0f64);
        for (l, w) in parts {
            sum += l.item()? as f64 * w;
            weight += w;
        }
        Ok(Evaluation {
            loss: sum / weight.max(f64::MIN_POSITIVE),
            classification: None,
            regression: None,
            examples: data.len(),
        })
    }

    /// Where the loop stands before each training batch: `epoch` (from 1), `batch` (from 0)
    /// of `batches` in the epoch. The default ignores it; an objective that draws data of its
    /// own (semi-supervised: a batch of unlabelled examples beside each labelled one) draws
    /// from this place, so a resumed run computes what an uninterrupted one would.
    fn position(&mut self, epoch: usize, batch: usize, batches: usize) {
        let _ = (epoch, batch, batches);
    }

    /// Extra checkpoint metadata (e.g. the task, for `kiln eval`).
    fn metadata(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A closure `(model, batch) -> (loss, weight)` is an objective (evaluated by the default).
impl<F> Objective for F
where
    F: FnMut(&dyn Module, &Batch) -> Result<(Tensor, f64)>,
{
    fn loss(&mut self, model: &dyn Module, batch: &Batch) -> Result<(Tensor, f64)> {
        self(model, batch)
    }
}

/// Upload a host batch: features (B, ...) and targets (class labels (B) u32, or values
/// (B, width) f32).
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

/// Supervised learning of a [`Task`]: `model.forward(x)` against the batch's targets; the
/// evaluation adds accuracy, macro scores and the confusion matrix, or MSE/MAE/R².
#[derive(Debug, Clone)]
pub struct Supervised {
    /// The device batches are uploaded to.
    pub gpu: Arc<Gpu>,
    /// The task.
    pub task: Task,
}

impl Supervised {
    /// An objective for `task` on `gpu`.
    pub fn new(gpu: &Arc<Gpu>, task: Task) -> Supervised {
        Supervised {
            gpu: gpu.clone(),
            task,
        }
    }
}

impl Objective for Supervised {
    fn loss(&mut self, model: &dyn Module, b: &Batch) -> Result<(Tensor, f64)> {
        let (x, y) = upload(&self.gpu, b)?;
        let out = model.forward(&x)?;
        Ok((task_loss(&self.task, &out, &y)?, b.x_shape[0] as f64))
    }

    fn evaluate(
        &mut self,
        model: &dyn Module,
        data: &dyn Dataset,
        batch_size: usize,
    ) -> Result<Evaluation> {
        evaluate_task(&self.gpu, model, &self.task, data, batch_size)
    }

    fn metadata(&self) -> Vec<(String, String)> {
        let task = serde_json::to_string(&self.task).unwrap_or_default();
        vec![("task".into(), task)]
    }
}

/// Evaluate `model` on `data` for `task` (call in eval mode under `no_grad`; see
/// [`evaluate`] for the wrapper that switches).
fn evaluate_task(
    gpu: &Arc<Gpu>,
    model: &dyn Module,
    task: &Task,
    data: &dyn Dataset,
    batch_size: usize,
) -> Result<Evaluation> {
    let n = data.len();
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
    let mut loss_sum = 0.0f64;
    for (l, k) in losses {
        loss_sum += l.item()? as f64 * k as f64;
    }
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

/// Evaluate `model` on `data` for `task` in eval mode (no graph, no dropout, BatchNorm running
/// statistics); the model's mode is restored afterwards.
pub fn evaluate(
    gpu: &Arc<Gpu>,
    model: &mut dyn Module,
    task: &Task,
    data: &dyn Dataset,
    batch_size: usize,
) -> Result<Evaluation> {
    let was_training = model.is_training();
    model.set_training(false);
    let out = {
        let _g = crate::no_grad();
        evaluate_task(gpu, model, task, data, batch_size)
    };
    model.set_training(was_training);
    out
}

/// Classes above which evaluation reports accuracy only: a language model's vocabulary (GPT-2
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

/// Language modelling with some targets masked out (chat fine-tuning: only the assistant's
/// tokens count): the batch's ids (B, T) go through the model, logits (B * T, V) meet the
/// labels, and labels equal to [`IGNORE_INDEX`] are skipped. The weight is the number of
/// labels that count, so an epoch's loss is the mean over all trained tokens.
#[derive(Debug, Clone)]
pub struct MaskedLm {
    /// The device batches are uploaded to.
    pub gpu: Arc<Gpu>,
}

impl Objective for MaskedLm {
    fn loss(&mut self, model: &dyn Module, b: &Batch) -> Result<(Tensor, f64)> {
        let x = Tensor::from_slice_on(&self.gpu, &b.x, &b.x_shape)?; // (B, T) ids as f32
        let Targets::Classes { labels, .. } = &b.y else {
            return Err(Error::Config(
                "masked language modelling needs token labels".into(),
            ));
        };
        let n = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        Ok((model.forward(&x)?.cross_entropy_masked(labels)?, n as f64))
    }
}
