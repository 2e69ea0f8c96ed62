//! Semi-supervised training: labelled batches plus unlabelled ones that teach through their
//! own confident predictions, inside the one [`Trainer`](super::Trainer) loop.
//!
//! Each labelled batch `(x, y)` of size B is paired with an unlabelled batch `u` of size
//! `mu * B` (the `ratio`), and after `warmup` epochs of supervised training the loss is
//!
//! ```text
//! L = CE(f(x), y)  +  lambda * (1 / (mu B)) * sum_i [max_c p_ic > tau] * CE(f(u_i^s), argmax_c p_ic)
//!
//! pseudo-labelling (Lee 2013):  p = softmax(f(u)) of the same forward, detached; u^s = u
//! FixMatch (Sohn et al. 2020):  p = softmax(f(weak(u))) without a graph;       u^s = strong(u)
//! ```
//!
//! `tau` is the confidence threshold, `lambda` the weight of the unlabelled term. The mask,
//! the pseudo-labels and the per-row losses stay on the GPU (no readback per batch). The
//! denominator is the whole unlabelled batch, so a model that is confident about little learns
//! little from it.
//!
//! Batch `k` of epoch `e` takes unlabelled batch `k mod U_b` (`U_b` batches of `mu * B` per
//! epoch) from a permutation that depends on `(seed, e)` only, and augments it with
//! [`augment_seed`]: the unlabelled data a batch sees is a function of its place in the run,
//! so a resumed run computes what an uninterrupted one would. [`Cycled`] repeats the labelled
//! set so that one epoch covers the unlabelled set once (50 labelled images beside 1,200
//! unlabelled ones would otherwise make an epoch a single step).

use std::sync::Arc;

use crate::Gpu;
use crate::data::{Augment, Batch, Dataset, augment_seed, permutation};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::ops::Reduction;
use crate::tensor::Tensor;

use super::config::Task;
use super::objective::{Evaluation, Objective, Supervised, upload};

/// How unlabelled examples are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SemiMethod {
    /// Pseudo-labelling: the model's own confident predictions as targets.
    Pseudo,
    /// FixMatch: the prediction on a weakly augmented image is the target of a strongly
    /// augmented copy (image data).
    FixMatch,
}

/// The settings of a [`SemiSupervised`] objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemiOptions {
    /// The method.
    pub method: SemiMethod,
    /// Confidence threshold `tau` in (0, 1): predictions above it become pseudo-labels.
    pub threshold: f32,
    /// Weight `lambda` of the unlabelled term.
    pub weight: f32,
    /// Unlabelled examples per labelled one in a step, `mu`.
    pub ratio: usize,
    /// Epochs of supervised training before the unlabelled term starts.
    pub warmup: usize,
    /// Seed of the unlabelled order and augmentation.
    pub seed: u64,
}

impl SemiOptions {
    /// Check the numbers, naming the setting that is off.
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(Error::Config(format!(
                "semi.threshold {}: must be between 0 and 1 (0.95 is usual)",
                self.threshold
            )));
        }
        if !(self.weight.is_finite() && self.weight >= 0.0 && self.weight <= 1e3) {
            return Err(Error::Config(format!(
                "semi.weight {}: must be a number from 0 to 1000 (1 is usual)",
                self.weight
            )));
        }
        if self.ratio == 0 || self.ratio > 64 {
            return Err(Error::Config(format!(
                "semi.ratio {}: between 1 and 64 unlabelled examples per labelled one",
                self.ratio
            )));
        }
        Ok(())
    }
}

/// The objective of semi-supervised classification (see the module notes).
pub struct SemiSupervised {
    sup: Supervised,
    unlabeled: Arc<dyn Dataset>,
    opts: SemiOptions,
    /// Unlabelled examples per step, `mu * B`.
    per_step: usize,
    /// FixMatch: (weak, strong) augmentations.
    augment: Option<(Arc<dyn Augment>, Arc<dyn Augment>)>,
    place: (usize, usize),
    order: Option<(usize, Vec<usize>)>,
}

impl SemiSupervised {
    /// Classification of `task` from labelled batches of `batch_size` and the `unlabeled`
    /// examples (their targets are never read). FixMatch needs [`Self::with_augment`].
    pub fn new(
        gpu: &Arc<Gpu>,
        task: Task,
        unlabeled: Arc<dyn Dataset>,
        batch_size: usize,
        opts: SemiOptions,
    ) -> Result<SemiSupervised> {
        opts.validate()?;
        if !matches!(task, Task::Classification { .. }) {
            return Err(Error::Config(
                "semi-supervised training needs a classification task (pseudo-labels are \
                 classes)"
                    .into(),
            ));
        }
        if unlabeled.is_empty() {
            return Err(Error::Config(
                "semi-supervised training needs unlabelled examples: rows with an empty \
                 target, --unlabeled FILE, or --labeled N"
                    .into(),
            ));
        }
        Ok(SemiSupervised {
            sup: Supervised::new(gpu, task),
            per_step: (opts.ratio * batch_size.max(1)).min(unlabeled.len()),
            unlabeled,
            opts,
            augment: None,
            place: (1, 0),
            order: None,
        })
    }

    /// FixMatch's weak and strong augmentations of the unlabelled images.
    pub fn with_augment(mut self, weak: Arc<dyn Augment>, strong: Arc<dyn Augment>) -> Self {
        self.augment = Some((weak, strong));
        self
    }

    /// Unlabelled batches per epoch.
    fn batches(&self) -> usize {
        self.unlabeled.len().div_ceil(self.per_step)
    }

    /// The unlabelled batch for the current place (host; targets untouched and unused).
    fn unlabeled_batch(&mut self) -> Batch {
        let (epoch, batch) = self.place;
        let k = batch % self.batches();
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let n = self.unlabeled.len();
            self.order = Some((
                epoch,
                permutation(n, self.opts.seed, 0x554e_4c42 ^ epoch as u64),
            ));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let rows = &order[k * self.per_step..((k + 1) * self.per_step).min(order.len())];
        self.unlabeled.batch(rows)
    }

    /// `(pseudo-labels (N) u32, mask (N) of 1.0 where confident)` from logits (N, C), no graph.
    fn pseudo_labels(&self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        let _g = crate::no_grad();
        let logits = logits.detach();
        let conf = logits.softmax(-1)?.max_dims(&[-1], false)?;
        Ok((
            logits.argmax(-1, false)?,
            conf.gt_scalar(self.opts.threshold)?,
        ))
    }

    /// The unlabelled term `(1 / (mu B)) sum_i mask_i CE_i` for the current place.
    fn unlabeled_loss(&mut self, model: &dyn Module) -> Result<Tensor> {
        let mut u = self.unlabeled_batch();
        let n = u.x_shape[0];
        let gpu = self.sup.gpu.clone();
        let (logits, pl, mask) = match (self.opts.method, &self.augment) {
            (SemiMethod::Pseudo, _) => {
                let x = Tensor::from_slice_on(&gpu, &u.x, &u.x_shape)?;
                let logits = model.forward(&x)?;
                let (pl, mask) = self.pseudo_labels(&logits)?;
                (logits, pl, mask)
            }
            (SemiMethod::FixMatch, Some((weak, strong))) => {
                let (epoch, batch) = self.place;
                let seed = augment_seed(self.opts.seed, epoch as u64, batch as u64);
                let mut s = u.clone();
                weak.augment(&mut u, seed);
                strong.augment(&mut s, seed ^ 0x5eed);
                let (pl, mask) = {
                    let _g = crate::no_grad();
                    let xw = Tensor::from_slice_on(&gpu, &u.x, &u.x_shape)?;
                    self.pseudo_labels(&model.forward(&xw)?)?
                };
                let xs = Tensor::from_slice_on(&gpu, &s.x, &s.x_shape)?;
                (model.forward(&xs)?, pl, mask)
            }
            (SemiMethod::FixMatch, None) => {
                return Err(Error::Config(
                    "FixMatch needs weak and strong augmentations (image data)".into(),
                ));
            }
        };
        let per_row = logits.cross_entropy_with(&pl, Reduction::None)?; // (N)
        per_row
            .mul(&mask)?
            .sum()?
            .mul_scalar(self.opts.weight / n as f32)
    }
}

impl Objective for SemiSupervised {
    fn position(&mut self, epoch: usize, batch: usize, _batches: usize) {
        self.place = (epoch, batch);
    }

    fn loss(&mut self, model: &dyn Module, b: &Batch) -> Result<(Tensor, f64)> {
        let (sup, w) = self.sup.loss(model, b)?;
        if self.place.0 <= self.opts.warmup || self.opts.weight == 0.0 {
            return Ok((sup, w));
        }
        Ok((sup.add(&self.unlabeled_loss(model)?)?, w))
    }

    fn evaluate(
        &mut self,
        model: &dyn Module,
        data: &dyn Dataset,
        batch_size: usize,
    ) -> Result<Evaluation> {
        self.sup.evaluate(model, data, batch_size)
    }

    fn metadata(&self) -> Vec<(String, String)> {
        self.sup.metadata()
    }
}

/// What a trained model makes of the unlabelled examples: how many pass the threshold and,
/// when their hidden labels are known (`--labeled N` experiments), how many of those
/// pseudo-labels are right.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PseudoLabelReport {
    /// Unlabelled examples.
    pub examples: usize,
    /// Fraction whose top probability passes the threshold.
    pub confident: f64,
    /// Accuracy of the confident ones' pseudo-labels (hidden labels known).
    pub confident_accuracy: Option<f64>,
    /// Accuracy over all unlabelled examples (hidden labels known).
    pub accuracy: Option<f64>,
}

/// Score `model` on `unlabeled` (eval mode, no graph): see [`PseudoLabelReport`]. `hidden`
/// holds the true labels when they are known.
pub fn pseudo_label_report(
    gpu: &Arc<Gpu>,
    model: &mut dyn Module,
    unlabeled: &dyn Dataset,
    hidden: Option<&[u32]>,
    threshold: f32,
) -> Result<PseudoLabelReport> {
    let was = model.is_training();
    model.set_training(false);
    let _g = crate::no_grad();
    // Chunks are recorded without waiting; the results are read back once at the end.
    let (mut conf_t, mut pred_t) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..unlabeled.len()).collect();
    for chunk in idx.chunks(512) {
        let (x, _) = upload(gpu, &unlabeled.batch(chunk))?;
        let logits = model.forward(&x)?;
        conf_t.push(logits.softmax(-1)?.max_dims(&[-1], false)?);
        pred_t.push(logits.argmax(-1, false)?);
    }
    model.set_training(was);
    let (mut conf, mut pred) = (Vec::new(), Vec::new());
    for (c, p) in conf_t.iter().zip(&pred_t) {
        conf.extend(c.to_vec::<f32>()?);
        pred.extend(p.to_vec::<u32>()?);
    }
    let n = pred.len().max(1) as f64;
    let sure: Vec<usize> = (0..pred.len()).filter(|&i| conf[i] > threshold).collect();
    let right = |i: &usize, h: &[u32]| pred[*i] == h[*i];
    Ok(PseudoLabelReport {
        examples: pred.len(),
        confident: sure.len() as f64 / n,
        confident_accuracy: hidden
            .filter(|_| !sure.is_empty())
            .map(|h| sure.iter().filter(|i| right(i, h)).count() as f64 / sure.len() as f64),
        accuracy: hidden.map(|h| (0..pred.len()).filter(|i| right(i, h)).count() as f64 / n),
    })
}

/// A labelled dataset repeated to `len` examples (example `i` is `inner[i mod inner.len()]`),
/// so that a semi-supervised epoch covers the unlabelled set once. Augmentation passes through.
pub struct Cycled {
    inner: Arc<dyn Dataset>,
    len: usize,
}

impl Cycled {
    /// `inner` repeated to cover `unlabeled` examples at `ratio` unlabelled per labelled one
    /// (never shorter than `inner`).
    pub fn covering(inner: Arc<dyn Dataset>, unlabeled: usize, ratio: usize) -> Cycled {
        let len = unlabeled.div_ceil(ratio.max(1)).max(inner.len());
        Cycled { inner, len }
    }
}

impl Dataset for Cycled {
    fn len(&self) -> usize {
        self.len
    }
    fn feature_shape(&self) -> Vec<usize> {
        self.inner.feature_shape()
    }
    fn batch(&self, indices: &[usize]) -> Batch {
        let n = self.inner.len().max(1);
        let idx: Vec<usize> = indices.iter().map(|i| i % n).collect();
        self.inner.batch(&idx)
    }
    fn augmentation(&self) -> Option<Arc<dyn Augment>> {
        self.inner.augmentation()
    }
}
