//! `kiln diagnose`: read a run directory and say in plain words what went wrong, each finding
//! with its evidence. Reads `metrics.jsonl` (epochs: losses, train and validation accuracy,
//! validation confusion), `diagnostics.jsonl` ([`super::diagnostics`]: losses, gradient norms
//! and update ratios per tensor, activations), `preparation.json` and `failure.json`
//! ([`super::data_checks`]).
//!
//! | finding | rule |
//! | --- | --- |
//! | lr too high | a loss is not finite, or a loss (step or epoch) exceeds [`SPIKE_FACTOR`] x the first step's, or the last epoch's train loss ends above the first step's |
//! | lr too low | over >= 2 epochs the train loss moved less than [`FLAT_CHANGE`] (relative) from the first step's |
//! | overfitting | validation loss rose >= [`OVERFIT_RISE`] (relative) above its best epoch while the train loss kept falling, or train accuracy - validation accuracy >= [`OVERFIT_GAP`] |
//! | underfitting | (no lr finding) the last train accuracy is below [`UNDERFIT_ACCURACY`] (validation R^2 below [`UNDERFIT_R2`] for regression) |
//! | exploding gradients | a tensor's gradient norm is not finite or grows past [`EXPLODE_FACTOR`] x its first measured norm |
//! | vanishing gradients | a tensor's gradient norm is, in the median over measured steps, below [`VANISH_RATIO`] x the largest tensor's |
//! | dead units | a ReLU layer has >= [`DEAD_FRACTION`] of its units never positive over a batch (full diagnostics) |
//! | never-predicted class | at the last epoch a class with validation rows is never predicted |
//! | data problems | as found at preparation (constant feature, class imbalance, duplicates between splits) or the error that stopped the run before training (one class only, ...) |

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::data_checks;
use super::diagnostics::{StepRecord, read_jsonl, read_records};
use super::log::EpochRecord;
use crate::error::{Error, Result, io_err};

/// A loss this many times the first step's is a spike (lr too high).
pub const SPIKE_FACTOR: f64 = 10.0;
/// Relative change of the train loss below which it "barely moved" (lr too low).
pub const FLAT_CHANGE: f64 = 0.02;
/// Relative rise of the validation loss above its best that counts as overfitting.
pub const OVERFIT_RISE: f64 = 0.10;
/// Train accuracy minus validation accuracy that counts as overfitting.
pub const OVERFIT_GAP: f64 = 0.20;
/// Train accuracy below which a run underfits.
pub const UNDERFIT_ACCURACY: f64 = 0.6;
/// Validation R^2 below which a regression underfits.
pub const UNDERFIT_R2: f64 = 0.3;
/// Growth of a gradient norm over its first value that counts as exploding.
pub const EXPLODE_FACTOR: f64 = 1e3;
/// Ratio to the largest tensor's gradient norm below which a tensor's gradients vanish.
pub const VANISH_RATIO: f64 = 1e-4;
/// Fraction of dead ReLU units that is reported.
pub const DEAD_FRACTION: f64 = 0.5;

/// What a finding is about (serde: kebab-case, e.g. `lr-too-high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The run stopped before training (the error is the evidence).
    Failed,
    /// Learning rate too high: loss spikes, NaN, divergence.
    LrTooHigh,
    /// Learning rate too low: the loss barely moves.
    LrTooLow,
    /// Validation loss rising while the training loss falls.
    Overfitting,
    /// Training accuracy (or R^2) stays low.
    Underfitting,
    /// Gradient norms growing without bound.
    ExplodingGradients,
    /// Gradient norms of some tensors tiny next to the others.
    VanishingGradients,
    /// ReLU units never active.
    DeadUnits,
    /// A class the model never predicts.
    NeverPredictedClass,
    /// A feature column that never changes.
    ConstantFeature,
    /// Classes of very different sizes.
    ClassImbalance,
    /// Every label is the same class.
    SingleClass,
    /// Held-out rows that are copies of training rows.
    DuplicatesBetweenSplits,
}

/// One thing `kiln diagnose` saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What it is about.
    pub kind: Kind,
    /// In plain words, with what to do.
    pub summary: String,
    /// The figures it rests on (epochs, steps, values).
    pub evidence: Vec<String>,
}

impl Finding {
    /// A finding.
    pub fn new(kind: Kind, summary: impl Into<String>, evidence: Vec<String>) -> Finding {
        Finding {
            kind,
            summary: summary.into(),
            evidence,
        }
    }
}

/// What `kiln diagnose` says about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The run directory.
    pub run: String,
    /// Epoch records read.
    pub epochs: usize,
    /// Measured steps read (`diagnostics.jsonl`).
    pub measured_steps: usize,
    /// The findings, most basic first (failure, data, learning rate, fit, gradients, units).
    pub findings: Vec<Finding>,
}

/// Diagnose the run in `dir`.
pub fn diagnose(dir: &Path) -> Result<Diagnosis> {
    if !dir.is_dir() {
        return Err(Error::Config(format!(
            "{}: not a directory (give a kiln run directory, e.g. runs/digits-mlp-1)",
            dir.display()
        )));
    }
    let epochs: Vec<EpochRecord> = read_jsonl(&dir.join("metrics.jsonl"))?;
    let steps = read_records(dir)?;
    let mut f = Vec::new();
    failure(dir, &mut f)?;
    if let Some(p) = data_checks::load(dir)? {
        f.extend(p.findings);
    }
    if f.is_empty() && epochs.is_empty() && steps.is_empty() {
        return Err(Error::Config(format!(
            "{}: no metrics.jsonl, diagnostics.jsonl or preparation.json; is it a kiln run \
             directory?",
            dir.display()
        )));
    }
    let lr = learning_rate(&epochs, &steps, &mut f);
    fit(&epochs, lr, &mut f);
    gradients(&steps, lr, &mut f);
    dead_units(&steps, &mut f);
    never_predicted(&epochs, &mut f);
    Ok(Diagnosis {
        run: dir.display().to_string(),
        epochs: epochs.len(),
        measured_steps: steps.len(),
        findings: f,
    })
}

fn failure(dir: &Path, f: &mut Vec<Finding>) -> Result<()> {
    let path = dir.join(data_checks::FAILURE_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| io_err(&path, e))?;
    let error = v["error"].as_str().unwrap_or("").to_string();
    let stage = v["stage"].as_str().unwrap_or("preparation");
    // src/data/tabular.rs words a one-class target as "holds one value only".
    let (kind, summary) = if error.contains("one value only") {
        (
            Kind::SingleClass,
            "every label is the same class: there is nothing to learn (a model that always \
             answers it scores 100 %); give rows of at least two classes",
        )
    } else {
        (Kind::Failed, "the run stopped before training")
    };
    f.push(Finding::new(
        kind,
        summary,
        vec![format!("{stage}: {error}")],
    ));
    Ok(())
}

/// The first step's loss (the run's starting point): the first measured step, else the first
/// epoch's train loss.
fn first_loss(epochs: &[EpochRecord], steps: &[StepRecord]) -> Option<f64> {
    match steps.first() {
        Some(s) => s.loss,
        None => epochs.first().map(|e| e.train_loss),
    }
}

/// Learning-rate findings; true when one was made.
fn learning_rate(epochs: &[EpochRecord], steps: &[StepRecord], f: &mut Vec<Finding>) -> bool {
    let lr = epochs
        .first()
        .map(|e| format!(" (lr {:e})", e.lr as f32))
        .unwrap_or_default();
    let Some(l0) = first_loss(epochs, steps).filter(|l| l.is_finite()) else {
        if steps.first().is_some_and(|s| s.loss.is_none()) {
            f.push(Finding::new(
                Kind::LrTooHigh,
                format!("the loss was not finite from the first step{lr}; lower --lr"),
                vec!["step 1: loss NaN or infinite".into()],
            ));
            return true;
        }
        return false;
    };
    let mut ev = Vec::new();
    if let Some(s) = steps.iter().find(|s| s.loss.is_none()) {
        ev.push(format!(
            "step {} (epoch {}): loss NaN or infinite",
            s.step, s.epoch
        ));
    }
    let spike_s = steps
        .iter()
        .filter_map(|s| s.loss.map(|l| (s, l)))
        .filter(|(_, l)| *l > SPIKE_FACTOR * l0.max(1e-12))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((s, l)) = spike_s {
        ev.push(format!(
            "step {}: loss {l:.4e}, {:.0}x the first step's {l0:.4}",
            s.step,
            l / l0
        ));
    }
    let spike_e = epochs
        .iter()
        .filter(|e| !e.train_loss.is_finite() || e.train_loss > SPIKE_FACTOR * l0.max(1e-12))
        .max_by(|a, b| a.train_loss.total_cmp(&b.train_loss));
    if let Some(e) = spike_e {
        ev.push(format!(
            "epoch {}: mean train loss {:.4e}",
            e.epoch, e.train_loss
        ));
    }
    if let Some(last) = epochs.last().filter(|e| e.train_loss > l0 * 1.05) {
        ev.push(format!(
            "the train loss ended at {:.4} (epoch {}), above the first step's {l0:.4}",
            last.train_loss, last.epoch
        ));
    }
    if !ev.is_empty() {
        f.push(Finding::new(
            Kind::LrTooHigh,
            format!(
                "the learning rate is too high{lr}: the loss spikes or diverges instead of \
                 falling; lower --lr (kiln lr-find suggests one) or add --clip-grad-norm"
            ),
            ev,
        ));
        return true;
    }
    let full: Vec<&EpochRecord> = epochs
        .iter()
        .filter(|e| e.partial_batches.is_none())
        .collect();
    if let (true, Some(last)) = (full.len() >= 2, full.last()) {
        let change = (l0 - last.train_loss) / l0.abs().max(1e-12);
        if change.abs() < FLAT_CHANGE {
            let mut ev = vec![format!(
                "the train loss went from {l0:.4} (first step) to {:.4} (epoch {}): {:+.2} %",
                last.train_loss,
                last.epoch,
                -100.0 * change
            )];
            if let Some(r) = median_update_ratio(steps) {
                ev.push(format!(
                    "median update/weight ratio {r:.1e} per step (healthy: about 1e-3)"
                ));
            }
            f.push(Finding::new(
                Kind::LrTooLow,
                format!(
                    "the learning rate is too low{lr}: the loss barely moves; raise --lr \
                     (kiln lr-find suggests one)"
                ),
                ev,
            ));
            return true;
        }
    }
    false
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn median_update_ratio(steps: &[StepRecord]) -> Option<f64> {
    median(
        steps
            .iter()
            .flat_map(|s| s.layers.iter().filter_map(|l| l.update_ratio))
            .collect(),
    )
}

/// Over- and underfitting (underfitting only when no lr finding explains it).
fn fit(epochs: &[EpochRecord], lr_found: bool, f: &mut Vec<Finding>) {
    let full: Vec<&EpochRecord> = epochs
        .iter()
        .filter(|e| e.partial_batches.is_none())
        .collect();
    let Some(last) = full.last() else {
        return;
    };
    let mut ev = Vec::new();
    let best = full
        .iter()
        .filter(|e| e.val_loss.is_some_and(f64::is_finite))
        .min_by(|a, b| {
            a.val_loss
                .unwrap_or(0.0)
                .total_cmp(&b.val_loss.unwrap_or(0.0))
        });
    if let (Some(b), Some(vl)) = (best, last.val_loss) {
        let bl = b.val_loss.unwrap_or(vl);
        if b.epoch < last.epoch && vl >= bl * (1.0 + OVERFIT_RISE) && last.train_loss < b.train_loss
        {
            ev.push(format!(
                "validation loss was lowest at epoch {} ({bl:.4}) and rose to {vl:.4} by epoch {} \
                 (+{:.0} %), while the train loss fell from {:.4} to {:.4}",
                b.epoch,
                last.epoch,
                100.0 * (vl / bl - 1.0),
                b.train_loss,
                last.train_loss
            ));
        }
    }
    if let (Some(t), Some(v)) = (last.train_accuracy, last.val_accuracy)
        && t - v >= OVERFIT_GAP
    {
        ev.push(format!(
            "epoch {}: train accuracy {:.1} % against validation accuracy {:.1} %",
            last.epoch,
            100.0 * t,
            100.0 * v
        ));
    }
    if !ev.is_empty() {
        let from = best.map(|b| b.epoch + 1).unwrap_or(last.epoch);
        f.push(Finding::new(
            Kind::Overfitting,
            format!(
                "the model overfits from about epoch {from}: it learns the training examples \
                 instead of the pattern; use more data, a smaller model, dropout or weight \
                 decay, or stop earlier (--patience; the best checkpoint is kept)"
            ),
            ev,
        ));
        return;
    }
    if lr_found {
        return;
    }
    let (low, what) = match (last.train_accuracy, last.val_r2) {
        (Some(a), _) if a < UNDERFIT_ACCURACY => {
            (true, format!("train accuracy {:.1} %", 100.0 * a))
        }
        (None, Some(r2)) if r2 < UNDERFIT_R2 => (true, format!("validation R^2 {r2:.3}")),
        _ => (false, String::new()),
    };
    if low {
        f.push(Finding::new(
            Kind::Underfitting,
            "the model underfits: it does not fit even the training data; train longer, use a \
             larger model, or check the features",
            vec![format!(
                "epoch {}: {what}, train loss {:.4}",
                last.epoch, last.train_loss
            )],
        ));
    }
}

/// Exploding and vanishing gradients, per tensor (vanishing only when no lr finding explains
/// it: a diverged run's dead units pass no gradient at all).
fn gradients(steps: &[StepRecord], lr_found: bool, f: &mut Vec<Finding>) {
    let Some(first) = steps.first() else {
        return;
    };
    let mut exploding = Vec::new();
    let mut vanishing = Vec::new();
    for (k, layer) in first.layers.iter().enumerate() {
        let norms: Vec<(u64, Option<f64>)> = steps
            .iter()
            .filter_map(|s| s.layers.get(k).map(|l| (s.step, l.grad_norm)))
            .collect();
        let g0 = layer.grad_norm.unwrap_or(f64::NAN);
        if let Some((step, g)) = norms
            .iter()
            .find(|(_, g)| g.is_none_or(|g| g > EXPLODE_FACTOR * g0.max(1e-12)))
        {
            let g = g.map_or("not finite".into(), |g| format!("{g:.3e}"));
            exploding.push(format!(
                "{}: {g} at step {step} (first {g0:.3e})",
                layer.name
            ));
        }
        let ratios = steps.iter().filter_map(|s| {
            let top = s
                .layers
                .iter()
                .filter_map(|l| l.grad_norm)
                .fold(0.0, f64::max);
            let g = s.layers.get(k)?.grad_norm?;
            (top > 0.0).then_some(g / top)
        });
        if let Some(r) = median(ratios.collect()).filter(|r| *r < VANISH_RATIO) {
            vanishing.push(format!(
                "{}: {r:.1e} x the largest tensor's gradient norm",
                layer.name
            ));
        }
    }
    if !exploding.is_empty() {
        f.push(Finding::new(
            Kind::ExplodingGradients,
            "exploding gradients: gradient norms grow without bound; lower --lr or add \
             --clip-grad-norm 1",
            exploding,
        ));
    }
    if !vanishing.is_empty() && !lr_found {
        f.push(Finding::new(
            Kind::VanishingGradients,
            "vanishing gradients: these tensors get almost no gradient and barely learn; use \
             ReLU/GELU over sigmoid/tanh, normalisation layers, or residual connections",
            vanishing,
        ));
    }
}

/// ReLU layers with mostly dead units at the last measured step that has activations.
fn dead_units(steps: &[StepRecord], f: &mut Vec<Finding>) {
    let Some(s) = steps.iter().rev().find(|s| !s.activations.is_empty()) else {
        return;
    };
    let ev: Vec<String> = s
        .activations
        .iter()
        .filter_map(|a| {
            a.dead_fraction.filter(|d| *d >= DEAD_FRACTION).map(|d| {
                format!(
                    "{}: {:.0} % of units dead at step {}",
                    a.name,
                    100.0 * d,
                    s.step
                )
            })
        })
        .collect();
    if !ev.is_empty() {
        f.push(Finding::new(
            Kind::DeadUnits,
            "dead ReLU units: many units never fire, so they neither compute nor learn; lower \
             --lr, or use a different initialisation or activation",
            ev,
        ));
    }
}

/// Classes with validation rows that the last epoch's model never predicted.
fn never_predicted(epochs: &[EpochRecord], f: &mut Vec<Finding>) {
    let Some((e, m)) = epochs
        .iter()
        .rev()
        .find_map(|e| e.val_confusion.as_ref().map(|m| (e.epoch, m)))
    else {
        return;
    };
    let never: Vec<String> = (0..m.len())
        .filter(|&c| {
            let rows: u64 = m[c].iter().sum();
            let predicted: u64 = m.iter().map(|r| r.get(c).copied().unwrap_or(0)).sum();
            rows > 0 && predicted == 0
        })
        .map(|c| format!("class {c} ({} validation rows)", m[c].iter().sum::<u64>()))
        .collect();
    if !never.is_empty() {
        let ev = vec![format!("epoch {e}, never predicted: {}", never.join(", "))];
        f.push(Finding::new(
            Kind::NeverPredictedClass,
            format!(
                "the model never predicts {} of the {} classes: it ignores them (class \
                 imbalance, too few epochs, or a learning-rate problem)",
                never.len(),
                m.len()
            ),
            ev,
        ));
    }
}

/// The diagnosis as plain text, one paragraph per finding.
pub fn render(d: &Diagnosis) -> String {
    let mut s = format!(
        "run: {} ({} epoch records, {} measured steps)\n",
        d.run, d.epochs, d.measured_steps
    );
    if d.findings.is_empty() {
        s += "no problems found: the loss fell, validation followed it, and the gradients, \
              updates and classes look healthy\n";
        return s;
    }
    for x in &d.findings {
        let kind = serde_json::to_value(x.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        s += &format!("\n[{kind}] {}\n", x.summary);
        for e in &x.evidence {
            s += &format!("  - {e}\n");
        }
    }
    s
}
