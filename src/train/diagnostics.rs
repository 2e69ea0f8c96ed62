//! Training diagnostics: a [`Hook`] that measures, every `every` optimizer steps, what a run's
//! health shows in, and appends it to the run directory's `diagnostics.jsonl` (one JSON object
//! a line; `kiln diagnose` reads it beside `metrics.jsonl`).
//!
//! Per parameter tensor `W` (shape as the layer holds it) with gradient `g`, at a measured
//! step `t` (the first step and every `every`-th):
//!
//! ```text
//! grad_norm     = ||g||_2                      (after accumulation, before clipping)
//! weight_norm   = ||W_t||_2                    (after the update)
//! update_ratio  = ||W_t - W_{t-1}||_2 / ||W_t||_2      healthy runs: about 1e-3
//! ```
//!
//! With [`Level::Full`], also per activation layer (in forward order) over the step's first
//! micro-batch, from [`crate::nn::probe`]: `mean` and `std` of its output `y`, and for a ReLU
//! the fraction of dead units, units whose output is never positive over the batch (a unit is
//! a feature of `(B, F)` or `(B, T, F)` outputs, a channel of `(B, C, H, W)` ones).
//!
//! Every figure is a rank-0 tensor computed on the GPU with kiln's reductions; they are stacked
//! into one vector and read back once per measured step (never per layer per step). The loss
//! of the measured step's last micro-batch rides along. Train accuracy beside validation
//! accuracy comes from the trainer ([`super::Trainer::train_eval`]) into `metrics.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::hooks::{Control, EpochEnd, Hook, StepInfo};
use super::log::EpochRecord;
use crate::data::{Batch, Dataset};
use crate::error::{Error, Result, io_err};
use crate::nn::Module;
use crate::tensor::Tensor;

/// The file the hook appends to, in the run directory.
pub const DIAGNOSTICS_FILE: &str = "diagnostics.jsonl";

/// Steps between measurements by default.
pub const DEFAULT_EVERY: u64 = 10;

/// How much the diagnostics measure (`--diagnostics off|basic|full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing (no hook, no train accuracy).
    Off,
    /// Gradient norms and update-to-weight ratios per tensor, train accuracy per epoch.
    #[default]
    Basic,
    /// Basic, plus activation mean/std and dead ReLU units per activation layer.
    Full,
}

impl FromStr for Level {
    type Err = Error;
    fn from_str(s: &str) -> Result<Level> {
        match s {
            "off" => Ok(Level::Off),
            "basic" => Ok(Level::Basic),
            "full" => Ok(Level::Full),
            _ => Err(Error::Config(format!(
                "--diagnostics {s:?}: expected off, basic or full"
            ))),
        }
    }
}

/// One tensor's figures at a measured step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStat {
    /// Parameter name (`0.weight`).
    pub name: String,
    /// `||g||`.
    pub grad_norm: Option<f64>,
    /// `||W||` after the update.
    pub weight_norm: Option<f64>,
    /// `||dW|| / ||W||`.
    pub update_ratio: Option<f64>,
}

/// One activation layer's figures at a measured step (full diagnostics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationStat {
    /// `ReLU 1`, `GELU 2`, ...: the layer kind and its position among the activations.
    pub name: String,
    /// Mean of the output.
    pub mean: Option<f64>,
    /// Standard deviation of the output.
    pub std: Option<f64>,
    /// Fraction of units never positive over the batch (ReLU layers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_fraction: Option<f64>,
}

/// One line of `diagnostics.jsonl`. Non-finite values are written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps taken (this one included).
    pub step: u64,
    /// The loss of the step's last micro-batch (`null`: not finite).
    pub loss: Option<f64>,
    /// Per parameter tensor.
    pub layers: Vec<LayerStat>,
    /// Per activation layer (full diagnostics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations: Vec<ActivationStat>,
}

/// Read `dir/diagnostics.jsonl` (empty when absent).
pub fn read_records(dir: &Path) -> Result<Vec<StepRecord>> {
    read_jsonl(&dir.join(DIAGNOSTICS_FILE))
}

/// The records of a JSON-lines file, one a line (empty when the file is absent; a last line
/// without its newline is left out).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    // A last line without its newline was cut short by a kill: not an error, just not there.
    let text = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut out = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        out.push(serde_json::from_str(l).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: format!("line {}: {e}", i + 1),
        })?);
    }
    Ok(out)
}

/// What a measured step holds between the backward and the update.
struct Pending {
    epoch: usize,
    /// The measured parameters (the trainer's list at the backward), `||g||^2` per tensor and
    /// the weights before the update (copies).
    params: Vec<Tensor>,
    grad_sq: Vec<Tensor>,
    before: Vec<Tensor>,
    loss: Option<Tensor>,
    activations: Vec<(String, Vec<Tensor>)>,
}

/// The diagnostics hook; see the module notes.
pub struct Diagnostics {
    level: Level,
    every: u64,
    path: PathBuf,
    names: Vec<String>,
    /// The step about to run (0-based count of steps done).
    step: u64,
    epoch: usize,
    loss: Option<Tensor>,
    activations: Vec<(String, Vec<Tensor>)>,
    pending: Option<Pending>,
    /// Every record of the run (for the plot).
    records: Vec<StepRecord>,
}

impl Diagnostics {
    /// Measure at `level` every `every` steps into `dir/diagnostics.jsonl`; `model` gives the
    /// parameter names (in the trainer's order: the parameters that require gradients). A
    /// resumed run (`resumed_at` steps done) drops the lines past that step.
    pub fn new(
        level: Level,
        every: u64,
        dir: &Path,
        model: &dyn Module,
        resumed_at: u64,
    ) -> Result<Diagnostics> {
        let path = dir.join(DIAGNOSTICS_FILE);
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        // A line a kill cut short does not parse and is dropped with the steps past the resume.
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept: Vec<StepRecord> = old
            .lines()
            .filter_map(|l| serde_json::from_str::<StepRecord>(l).ok())
            .filter(|r| resumed_at > 0 && r.step <= resumed_at)
            .collect();
        let mut text = String::new();
        for r in &kept {
            text += &serde_json::to_string(r).map_err(|e| io_err(&path, e))?;
            text.push('\n');
        }
        crate::io::write_atomic(&path, text.as_bytes())?;
        let names = model
            .named_parameters()
            .into_iter()
            .filter(|(_, t)| t.requires_grad_flag())
            .map(|(n, _)| n)
            .collect();
        let d = Diagnostics {
            level,
            every: every.max(1),
            path,
            names,
            step: resumed_at,
            epoch: 0,
            loss: None,
            activations: Vec::new(),
            pending: None,
            records: kept,
        };
        if level == Level::Full && d.measured(resumed_at) {
            crate::nn::probe::arm(); // the next step is measured
        }
        Ok(d)
    }

    /// True when the step after `done` steps is measured: the first and every `every`-th.
    fn measured(&self, done: u64) -> bool {
        done == 0 || (done + 1).is_multiple_of(self.every)
    }

    fn append(&self, r: &StepRecord) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, e))?;
        let line = serde_json::to_string(r).map_err(|e| io_err(&self.path, e))? + "\n";
        f.write_all(line.as_bytes()) // one write: a kill leaves a whole line or a cut one
            .map_err(|e| io_err(&self.path, e))
    }

    /// Redraw `diagnostics.png` beside the records (with the `plots` feature).
    fn plot(&self) -> Result<()> {
        #[cfg(feature = "plots")]
        if !self.records.is_empty() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            super::plot::save_png(dir, "diagnostics.png", |tmp| {
                super::plot::draw_diagnostics(tmp, &self.records)
            })?;
        }
        Ok(())
    }
}

/// `(sum y, sum y^2, n, dead fraction)` of one activation output, as rank-0 tensors.
fn activation_figures(kind: &str, y: &Tensor) -> Result<Vec<Tensor>> {
    let n = y.numel().max(1) as f32;
    let mean = y.sum()?.mul_scalar(1.0 / n)?;
    let sq = y.square()?.sum()?.mul_scalar(1.0 / n)?;
    let mut v = vec![mean, sq];
    if kind == "ReLU" && y.rank() >= 2 {
        // Units: the feature (last) dim of (B, F) / (B, T, F), the channel dim of (B, C, H, W).
        let unit = if y.rank() == 4 { 1 } else { y.rank() - 1 };
        let dims: Vec<isize> = (0..y.rank())
            .filter(|&d| d != unit)
            .map(|d| d as isize)
            .collect();
        let alive = y.max_dims(&dims, false)?.gt_scalar(0.0)?.mean()?;
        v.push(alive.mul_scalar(-1.0)?.add_scalar(1.0)?);
    }
    Ok(v)
}

/// Every finite value as `Some`.
fn finite(v: f32) -> Option<f64> {
    v.is_finite().then_some(v as f64)
}

impl Hook for Diagnostics {
    fn on_epoch_start(&mut self, epoch: usize, _first: usize, _batches: usize) -> Result<()> {
        self.epoch = epoch;
        crate::nn::probe::clear(); // a validation pass may have run since it was armed
        Ok(())
    }

    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        if self.measured(self.step) {
            self.loss = Some(loss.detach());
            if crate::nn::probe::armed() {
                let _g = crate::no_grad();
                let mut count = std::collections::BTreeMap::<&str, usize>::new();
                for (kind, y) in crate::nn::probe::take() {
                    let k = count.entry(kind).or_default();
                    *k += 1;
                    let name = format!("{kind} {k}");
                    self.activations.push((name, activation_figures(kind, &y)?));
                }
            }
        }
        Ok(loss)
    }

    fn after_backward(&mut self, params: &[Tensor]) -> Result<()> {
        if !self.measured(self.step) {
            return Ok(());
        }
        let _g = crate::no_grad();
        let mut grad_sq = Vec::with_capacity(params.len());
        let mut before = Vec::with_capacity(params.len());
        for p in params {
            grad_sq.push(match p.grad() {
                Some(g) => g.square()?.sum()?,
                None => Tensor::from_slice_on(p.gpu(), &[f32::NAN], &[])?,
            });
            before.push(p.detach().mul_scalar(1.0)?);
        }
        self.pending = Some(Pending {
            epoch: self.epoch,
            params: params.to_vec(),
            grad_sq,
            before,
            loss: self.loss.take(),
            activations: std::mem::take(&mut self.activations),
        });
        Ok(())
    }

    fn after_step(&mut self, info: &StepInfo, model: &dyn Module) -> Result<Control> {
        self.step = info.step;
        if self.level == Level::Full && self.measured(self.step) {
            crate::nn::probe::arm();
        }
        let Some(p) = self.pending.take() else {
            return Ok(Control::Continue);
        };
        let _g = crate::no_grad();
        // The tensors measured at the backward, named by the model now (unfreezing between
        // epochs changes the list; the names at install are only the fallback).
        let params = &p.params;
        let named: std::collections::HashMap<u64, String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (t.id(), n))
            .collect();
        // One vector: per tensor ||g||^2, ||W||^2, ||dW||^2; the loss; activation figures.
        let mut all: Vec<Tensor> = Vec::new();
        for ((w, b), g) in params.iter().zip(&p.before).zip(&p.grad_sq) {
            all.push(g.clone());
            all.push(w.square()?.sum()?);
            all.push(w.sub(b)?.square()?.sum()?);
        }
        let gpu = params.first().map(|t| t.gpu().clone());
        if let Some(gpu) = &gpu {
            all.push(match &p.loss {
                Some(l) => l.reshape(&[])?,
                None => Tensor::from_slice_on(gpu, &[f32::NAN], &[])?,
            });
        }
        for (_, figs) in &p.activations {
            all.extend(figs.iter().cloned());
        }
        if all.is_empty() {
            return Ok(Control::Continue);
        }
        let refs: Vec<&Tensor> = all.iter().collect();
        let v: Vec<f32> = Tensor::stack(&refs, 0)?.to_vec()?; // the one read-back
        let mut layers = Vec::new();
        for (k, t) in params.iter().enumerate() {
            let name = match (named.get(&t.id()), self.names.get(k)) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => &format!("parameter {k}"),
            };
            let (g2, w2, d2) = (v[3 * k], v[3 * k + 1], v[3 * k + 2]);
            let w = w2.sqrt();
            layers.push(LayerStat {
                name: name.to_string(),
                grad_norm: finite(g2.sqrt()),
                weight_norm: finite(w),
                update_ratio: finite(d2.sqrt() / w.max(f32::MIN_POSITIVE)),
            });
        }
        let mut at = 3 * params.len();
        let loss = finite(v[at]);
        at += 1;
        let mut activations = Vec::new();
        for (name, figs) in &p.activations {
            let (m, sq) = (v[at], v[at + 1]);
            activations.push(ActivationStat {
                name: name.clone(),
                mean: finite(m),
                std: finite((sq - m * m).max(0.0).sqrt()),
                dead_fraction: (figs.len() > 2).then(|| v[at + 2] as f64),
            });
            at += figs.len();
        }
        let r = StepRecord {
            epoch: p.epoch,
            step: info.step,
            loss,
            layers,
            activations,
        };
        self.append(&r)?;
        self.records.push(r);
        Ok(Control::Continue)
    }

    fn end_of_epoch(&mut self, _: &EpochRecord, _: &EpochEnd, _: &dyn Module) -> Result<Control> {
        self.plot()?;
        Ok(Control::Continue)
    }

    fn on_partial_epoch(&mut self, _: &EpochRecord, _: &dyn Module) -> Result<()> {
        self.plot()
    }
}

/// `n` examples of a dataset, evenly spaced (all of them when it has no more): what the
/// trainer evaluates for the train accuracy.
pub struct Sample {
    inner: Arc<dyn Dataset>,
    idx: Vec<usize>,
}

impl Sample {
    /// Up to `n` examples of `inner`, evenly spaced.
    pub fn new(inner: Arc<dyn Dataset>, n: usize) -> Sample {
        let len = inner.len();
        let k = n.min(len).max(1);
        let idx = (0..k).map(|i| i * len / k).filter(|&i| i < len).collect();
        Sample { inner, idx }
    }
}

impl Dataset for Sample {
    fn len(&self) -> usize {
        self.idx.len()
    }
    fn feature_shape(&self) -> Vec<usize> {
        self.inner.feature_shape()
    }
    fn batch(&self, indices: &[usize]) -> Batch {
        let idx: Vec<usize> = indices.iter().map(|&i| self.idx[i]).collect();
        self.inner.batch(&idx)
    }
}
