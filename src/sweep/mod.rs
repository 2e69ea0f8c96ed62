//! Hyperparameter search: the search space, grid / random / successive-halving (ASHA)
//! decisions and the trial journal. The `kiln sweep` command runs the trials, each an
//! ordinary `kiln train` run in its own run directory (so one trial is exactly the one
//! training loop), and promotes a trial past a rung by resuming it: exact resume makes a
//! trial trained rung by rung identical to one trained in one go.
//!
//! A sweep file is a `kiln train --config` file with a `[sweep]` section:
//!
//! ```toml
//! model = "mlp"
//! [train]
//! epochs = 9
//! [sweep]
//! method = "asha"           # grid | random | asha
//! trials = 12               # random and asha (grid: every point)
//! metric = "val_loss"       # val_loss, val_accuracy, val_macro_f1, val_r2, val_perplexity
//! seed = 0
//! min_epochs = 1            # asha: the first rung; rungs grow by `reduction` to max_epochs
//! reduction = 3
//! [sweep.space]
//! lr = { log-uniform = [1e-4, 1e-1] }
//! batch_size = [32, 64, 128]
//! ```

pub mod asha;
pub mod journal;
pub mod space;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How trials are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every point of the grid (lists only).
    Grid,
    /// `trials` independent draws.
    Random,
    /// Random draws, stopped early by successive halving.
    Asha,
}

/// The metric trials are ranked by: a field of the run's epoch records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy (higher).
    ValAccuracy,
    /// Validation macro F1 (higher).
    ValMacroF1,
    /// Validation R² (higher).
    ValR2,
    /// Validation perplexity (lower).
    ValPerplexity,
}

impl Metric {
    /// Every metric, by its name in `metrics.jsonl`.
    pub const ALL: [(&'static str, Metric); 5] = [
        ("val_loss", Metric::ValLoss),
        ("val_accuracy", Metric::ValAccuracy),
        ("val_macro_f1", Metric::ValMacroF1),
        ("val_r2", Metric::ValR2),
        ("val_perplexity", Metric::ValPerplexity),
    ];

    /// Parse a metric name.
    pub fn parse(s: &str) -> Result<Metric> {
        Metric::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
                Error::Config(format!(
                    "sweep.metric: unknown metric `{s}` (one of {})",
                    names.join(", ")
                ))
            })
    }

    /// Its name in `metrics.jsonl`.
    pub fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("val_loss")
    }

    /// True when higher is better.
    pub fn maximize(self) -> bool {
        matches!(
            self,
            Metric::ValAccuracy | Metric::ValMacroF1 | Metric::ValR2
        )
    }

    /// The better of two values.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.maximize() { a > b } else { a < b }
    }
}

/// The `[sweep]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Search method.
    pub method: Method,
    /// Trials (random and asha; a grid runs every point).
    #[serde(default)]
    pub trials: Option<usize>,
    /// The metric to optimise.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// `min` or `max` (default: the metric's own direction); must agree with the metric.
    #[serde(default)]
    pub direction: Option<String>,
    /// Seed of the random draws (trials' own seeds are `train.seed`).
    #[serde(default)]
    pub seed: u64,
    /// Epochs of a full trial (default: `train.epochs`).
    #[serde(default)]
    pub max_epochs: Option<usize>,
    /// ASHA: epochs of the first rung.
    #[serde(default = "one")]
    pub min_epochs: usize,
    /// ASHA: keep the top 1 / reduction at each rung.
    #[serde(default = "three")]
    pub reduction: usize,
    /// Wall-clock budget of the whole sweep, minutes: no trial starts or moves on after it.
    #[serde(default)]
    pub time_limit: Option<f64>,
    /// GPU adapters to spread trials over (`kiln devices` indices or names), round robin.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The search space.
    pub space: toml::Table,
}

fn default_metric() -> String {
    "val_loss".into()
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

impl SweepSection {
    /// Check the settings that need no data: counts, direction, metric name.
    pub fn validate(&self) -> Result<Metric> {
        let metric = Metric::parse(&self.metric)?;
        if let Some(d) = &self.direction {
            let want = if metric.maximize() { "max" } else { "min" };
            if d != want {
                return Err(Error::Config(format!(
                    "sweep.direction = \"{d}\" but {} is better {}; use \"{want}\" or leave it out",
                    metric.name(),
                    if metric.maximize() { "higher" } else { "lower" }
                )));
            }
        }
        match (self.method, self.trials) {
            (Method::Grid, _) => {}
            (_, None) => {
                return Err(Error::Config(
                    "sweep.trials: random and asha searches need a number of trials".into(),
                ));
            }
            (_, Some(0)) => return Err(Error::Config("sweep.trials must be at least 1".into())),
            (_, Some(n)) if n > 10_000 => {
                return Err(Error::Config(format!(
                    "sweep.trials = {n}: at most 10,000 trials"
                )));
            }
            _ => {}
        }
        if self.max_epochs == Some(0) {
            return Err(Error::Config("sweep.max_epochs must be at least 1".into()));
        }
        if let Some(t) = self.time_limit
            && !(t > 0.0 && t.is_finite())
        {
            return Err(Error::Config(format!(
                "sweep.time_limit must be a positive number of minutes, got {t}"
            )));
        }
        Ok(metric)
    }
}
