//! `--diagnostics off|basic|full` of `kiln train` and what it installs: the diagnostics hook
//! ([`crate::train::diagnostics`]), the train accuracy at each epoch's end, and the data checks
//! saved for `kiln diagnose` (`preparation.json`, `failure.json`).

use std::path::Path;

use clap::Args;

use super::Result;
use super::spec::PreparedData;
use crate::train::data_checks::{self, Preparation};
use crate::train::diagnostics::{DEFAULT_EVERY, Diagnostics, Level};
use crate::train::{Task, Trainer};

/// Most training examples evaluated at each epoch's end for the train accuracy.
pub const TRAIN_EVAL_EXAMPLES: usize = 2048;

/// The diagnostics flags of `kiln train` (flattened into it).
#[derive(Debug, Args, Default, Clone)]
pub struct DiagnosticsArgs {
    /// Training diagnostics in the run directory (diagnostics.jsonl, diagnostics.png, train
    /// accuracy in metrics.jsonl): off; basic (default: gradient norm and update/weight ratio
    /// per tensor every --diagnostics-every steps); full (also activation mean/std and dead
    /// ReLU units). `kiln diagnose RUN` reads them.
    #[arg(long, value_name = "off|basic|full")]
    pub diagnostics: Option<String>,
    /// Optimizer steps between diagnostic measurements (default 10; the first step is always
    /// measured).
    #[arg(long, value_name = "N")]
    pub diagnostics_every: Option<u64>,
}

impl DiagnosticsArgs {
    /// The level asked for (basic by default).
    pub fn level(&self) -> Result<Level> {
        Ok(match &self.diagnostics {
            Some(s) => s.parse()?,
            None => Level::default(),
        })
    }

    /// Add the hook and the train evaluation to `trainer` (nothing with `off`); `step` is the
    /// optimizer step the run starts from (a resumed run keeps the records up to it).
    pub fn install(
        &self,
        trainer: &mut Trainer<'_>,
        dir: &Path,
        model: &dyn crate::nn::Module,
        step: u64,
    ) -> Result<()> {
        let level = self.level()?;
        if level == Level::Off {
            return Ok(());
        }
        let every = self.diagnostics_every.unwrap_or(DEFAULT_EVERY);
        if every == 0 {
            return Err(super::Error(
                "--diagnostics-every 0: give a number of steps of at least 1".into(),
            ));
        }
        let hook = Diagnostics::new(level, every, dir, model, step)?;
        trainer.hooks.push(Box::new(hook));
        // As many training examples as validation ones (capped): the two accuracies then have
        // the same noise, and the train pass costs no more than the validation pass.
        let val = trainer
            .val
            .as_ref()
            .map_or(TRAIN_EVAL_EXAMPLES, |v| v.len());
        trainer.train_eval = Some(val.clamp(1, TRAIN_EVAL_EXAMPLES));
        Ok(())
    }
}

/// `r`, recording its error in `dir/failure.json` (stage `stage`) for `kiln diagnose`.
pub fn recorded<T, E: std::fmt::Display>(
    dir: &Path,
    stage: &str,
    r: std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    if let Err(e) = &r {
        data_checks::record_failure(dir, stage, &e.to_string());
    }
    r
}

/// Check the prepared splits and write `dir/preparation.json` (text data is not checked); the
/// `failure.json` of an earlier attempt in `dir` no longer holds and is removed.
pub fn save_preparation(dir: &Path, data: &PreparedData) -> Result<()> {
    let _ = std::fs::remove_file(dir.join(data_checks::FAILURE_FILE));
    let findings = if data.text.is_some() {
        Vec::new()
    } else {
        let names = data.preprocessor.as_ref().map(|p| p.feature_names());
        let classes = match &data.task {
            Task::Classification { class_names } => class_names.clone(),
            _ => Vec::new(),
        };
        let others = [data.val.as_ref(), data.test.as_ref()];
        data_checks::check(data.train.as_ref(), &others, names.as_deref(), &classes)
    };
    let p = Preparation {
        findings,
        report: data.report.clone(),
    };
    Ok(data_checks::save(dir, &p)?)
}
