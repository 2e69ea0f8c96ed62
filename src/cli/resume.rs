//! Resuming a run: restoring its last checkpoint, the line that says where it resumed, and the
//! settings a `--resume`'s flags would change.

use std::path::Path;

use super::{Error, Result};
use crate::io::run_dir::LAST;
use crate::train::{Progress, Trainer};

use super::spec::RunSpec;
use super::train::{TrainArgs, apply_flags};

/// The settings that the flags of a `--resume` would change in the saved run `saved` (a flag
/// that repeats the saved value is fine), as `key (saved X, given Y)`.
pub(super) fn changed_settings(a: &TrainArgs, saved: &RunSpec) -> Result<Vec<String>> {
    if a.config.is_some() {
        return Ok(vec!["--config (the run's own config.toml is used)".into()]);
    }
    let mut probe = saved.clone();
    apply_flags(a, &mut probe)?;
    // The budget may change; it is applied separately.
    probe.train.epochs = saved.train.epochs;
    probe.train.max_steps = saved.train.max_steps;
    probe.train.time_limit_minutes = saved.train.time_limit_minutes;
    probe.train.checkpoint_every = saved.train.checkpoint_every;
    probe.train.stop_at_epoch = saved.train.stop_at_epoch;
    probe.train.quiet = saved.train.quiet;
    let table = |s: &RunSpec| -> Result<toml::Table> {
        toml::Table::try_from(s).map_err(|e| Error(format!("settings: {e}")))
    };
    let (was, now) = (table(saved)?, table(&probe)?);
    let mut out = Vec::new();
    diff_tables("", &was, &now, &mut out);
    Ok(out)
}

/// The keys whose values differ between two TOML tables (nested tables as `a.b`).
fn diff_tables(prefix: &str, was: &toml::Table, now: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    for k in keys {
        let name = format!("{prefix}{k}");
        match (was.get(k), now.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_tables(&format!("{name}."), x, y, out)
            }
            (x, y) if x != y => {
                let show = |v: Option<&toml::Value>| v.map_or("unset".into(), |v| v.to_string());
                out.push(format!("{name} (saved {}, given {})", show(x), show(y)));
            }
            _ => {}
        }
    }
}

/// Restore a run from its last checkpoint, or (a run killed before its first one) start it
/// over, saying so.
pub(super) fn resume_from(
    trainer: &Trainer<'_>,
    dir: &Path,
    model: &mut dyn crate::nn::Module,
    opt: &mut dyn crate::optim::Optimizer,
) -> Result<Progress> {
    let last = dir.join(LAST);
    crate::io::atomic::remove_stale_tmp(&last);
    crate::io::atomic::remove_stale_tmp(&dir.join(crate::io::run_dir::BEST));
    if !last.exists() {
        println!(
            "note: {} has no checkpoint yet (the run stopped before its first one); starting \
             it from the beginning",
            dir.display()
        );
        return Ok(Progress::default());
    }
    let p = trainer.resume(&last, model, opt)?;
    let epochs = trainer.config.epochs;
    if p.batch == 0 && p.epoch >= epochs && !super::train_summary::summarised(dir, &p) {
        // Killed after its last checkpoint, before the test evaluation and summary.json.
        println!(
            "note: {} finished training ({} epochs) but stopped before its test evaluation; \
             finishing that",
            dir.display(),
            p.epoch
        );
        return Ok(p);
    }
    if p.batch == 0 && p.epoch >= epochs {
        return Err(Error(format!(
            "{} already ran {} epochs; pass --epochs N with N > {} to train further",
            dir.display(),
            p.epoch,
            p.epoch
        )));
    }
    if p.batch > 0 && p.epoch + 1 > epochs {
        return Err(Error(format!(
            "{} stopped inside epoch {}; --epochs must be at least {} to finish it",
            dir.display(),
            p.epoch + 1,
            p.epoch + 1
        )));
    }
    Ok(p)
}

/// "resumed after epoch 2 (step 54)" or "resumed in epoch 3 at batch 13 (step 67)".
pub(super) fn resumed_line(p: &Progress) -> String {
    if p.batch > 0 {
        format!(
            "resumed in epoch {} at batch {} (step {})",
            p.epoch + 1,
            p.batch + 1,
            p.step
        )
    } else {
        format!("resumed after epoch {} (step {})", p.epoch, p.step)
    }
}
