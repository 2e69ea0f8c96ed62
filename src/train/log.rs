//! The run directory: per-epoch metrics as JSON lines and CSV, the loss/accuracy curves as PNG.
//!
//! ```text
//! runs/<name>/
//!   config.toml          the settings of the run (written by the CLI)
//!   metrics.jsonl        one JSON object per epoch
//!   metrics.csv          the same, as a table
//!   curves.png           train/validation loss (and validation accuracy) per epoch
//!   diagnostics.jsonl    gradient norms, update ratios, activations every N steps, and
//!   diagnostics.png      gradient norms per tensor (super::diagnostics; kiln diagnose reads them)
//!   preparation.json     data checks (super::data_checks); failure.json when training never began
//!   checkpoint.safetensors, best.safetensors, summary.json
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};

/// What one epoch produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification).
    pub val_accuracy: Option<f64>,
    /// Validation macro F1 (classification).
    pub val_macro_f1: Option<f64>,
    /// Validation R^2 (regression).
    pub val_r2: Option<f64>,
    /// Validation perplexity `exp(val_loss)` (classification; for a language model the
    /// effective number of tokens it hesitates between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch, seconds.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
    /// Set when the run stopped inside this epoch: the batches it had trained. Such a record
    /// is replaced by the full epoch's when the run is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_batches: Option<usize>,
    /// Accuracy on a sample of the training set at the epoch's end, in eval mode
    /// (diagnostics; beside `val_accuracy` it shows over- and underfitting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Loss on that training sample, in eval mode (no dropout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_eval_loss: Option<f64>,
    /// Validation confusion matrix `[true][predicted]`, for up to [`CONFUSION_MAX_CLASSES`]
    /// classes (`kiln diagnose` finds the classes the model never predicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_confusion: Option<Vec<Vec<u64>>>,
    /// The loss scale at the epoch's end (f16 training with dynamic loss scaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Optimizer steps skipped so far because the scaled gradients overflowed (inf/NaN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_skips: Option<u64>,
}

/// Classes up to which each epoch's record keeps the validation confusion matrix.
pub const CONFUSION_MAX_CLASSES: usize = 32;

impl EpochRecord {
    /// Copy the validation figures of `ev` into the record.
    pub fn fill(&mut self, ev: &super::Evaluation) {
        self.val_loss = Some(ev.loss);
        self.val_accuracy = ev.classification.as_ref().map(|m| m.accuracy);
        self.val_macro_f1 = ev.classification.as_ref().map(|m| m.macro_f1);
        self.val_r2 = ev.regression.as_ref().map(|m| m.r2);
        if ev.classification.is_some() {
            self.val_perplexity = Some(ev.loss.exp());
        }
        self.val_confusion = ev
            .classification
            .as_ref()
            .filter(|m| m.confusion.len() <= CONFUSION_MAX_CLASSES)
            .map(|m| m.confusion.clone());
    }

    /// Copy the figures of an evaluation on a training sample into the record.
    pub fn fill_train(&mut self, ev: &super::Evaluation) {
        self.train_eval_loss = Some(ev.loss);
        self.train_accuracy = ev.classification.as_ref().map(|m| m.accuracy);
    }
}

/// Appends records to `metrics.jsonl` / `metrics.csv` and redraws `curves.png`.
pub struct RunLog {
    dir: PathBuf,
    records: Vec<EpochRecord>,
}

const CSV_HEADER: &str = concat!(
    "epoch,train_loss,val_loss,val_accuracy,val_macro_f1,val_r2,lr,seconds,samples_per_sec,",
    "val_perplexity,partial_batches"
);

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl RunLog {
    /// Start a log in `dir`, keeping earlier records of complete epochs up to `keep_until` (for
    /// resumed runs; 0 starts fresh). Later lines (a partial epoch, or one logged just before a
    /// kill, whose checkpoint never landed) are dropped, so the log matches the checkpoint.
    pub fn open(dir: &Path, keep_until: usize) -> Result<RunLog> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut records = Vec::new();
        let jsonl = dir.join("metrics.jsonl");
        if keep_until > 0 && jsonl.exists() {
            let text = std::fs::read_to_string(&jsonl).map_err(|e| io_err(&jsonl, e))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let r: EpochRecord = serde_json::from_str(line).map_err(|e| Error::Io {
                    path: jsonl.display().to_string(),
                    msg: format!("line {}: {e}", i + 1),
                })?;
                if r.epoch <= keep_until && r.partial_batches.is_none() {
                    records.push(r);
                }
            }
        }
        let log = RunLog {
            dir: dir.to_path_buf(),
            records,
        };
        log.rewrite()?;
        Ok(log)
    }

    /// Records so far.
    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    /// Add one epoch and update the files (JSON lines, CSV, plot).
    pub fn push(&mut self, r: EpochRecord) -> Result<()> {
        let jsonl = self.dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&jsonl)
            .map_err(|e| io_err(&jsonl, e))?;
        let line = serde_json::to_string(&r).map_err(|e| io_err(&jsonl, e))?;
        writeln!(f, "{line}")
            .and_then(|_| f.sync_data())
            .map_err(|e| io_err(&jsonl, e))?;
        self.records.push(r);
        self.write_csv()?;
        self.plot()
    }

    fn rewrite(&self) -> Result<()> {
        let jsonl = self.dir.join("metrics.jsonl");
        let mut text = String::new();
        for r in &self.records {
            text += &serde_json::to_string(r).map_err(|e| io_err(&jsonl, e))?;
            text.push('\n');
        }
        crate::io::write_atomic(&jsonl, text.as_bytes())?;
        self.write_csv()
    }

    fn write_csv(&self) -> Result<()> {
        let path = self.dir.join("metrics.csv");
        let mut s = String::from(CSV_HEADER);
        s.push('\n');
        for r in &self.records {
            s += &format!(
                "{},{},{},{},{},{},{},{:.3},{:.1},{},{}\n",
                r.epoch,
                r.train_loss,
                opt(r.val_loss),
                opt(r.val_accuracy),
                opt(r.val_macro_f1),
                opt(r.val_r2),
                r.lr,
                r.seconds,
                r.samples_per_sec,
                opt(r.val_perplexity),
                r.partial_batches.map(|b| b.to_string()).unwrap_or_default()
            );
        }
        crate::io::write_atomic(&path, s.as_bytes())
    }

    /// Draw `curves.png`: losses on the left axis, validation accuracy (if any) on the right
    /// (with the `plots` feature, on by default; without it, nothing is drawn).
    pub fn plot(&self) -> Result<()> {
        #[cfg(feature = "plots")]
        super::plot::save_png(&self.dir, "curves.png", |tmp| {
            super::plot::draw_curves(tmp, &self.records)
        })?;
        Ok(())
    }
}
