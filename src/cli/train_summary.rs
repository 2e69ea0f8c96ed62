//! The end of `kiln train`: `summary.json` and the closing lines in the terminal.

use std::path::Path;
use std::sync::Arc;

use super::spec::{PreparedData, RunSpec};
use super::{Error, Result};
use crate::train::{self, Evaluation, Task, metrics};

#[allow(clippy::too_many_arguments)]
pub(super) fn write_summary(
    dir: &Path,
    spec: &RunSpec,
    data: &PreparedData,
    test: Option<&Evaluation>,
    report: &train::FitReport,
    wall: f64,
    gpu: &Arc<crate::Gpu>,
    params: usize,
    semi: Option<serde_json::Value>,
) -> Result<()> {
    let mut s = serde_json::json!({
        "model": spec.model,
        "data": spec.data,
        "parameters": params,
        "epochs_run": report.progress.epoch,
        "batches_into_next_epoch": report.progress.batch,
        "steps": report.progress.step,
        "best_epoch": report.progress.best_epoch,
        "stopped_early": report.stopped_early,
        "wall_seconds": wall,
        "device": gpu.info().name,
        "backend": format!("{:?}", gpu.info().backend),
        "best_val_loss": report.progress.best_val_loss,
        "budget_reached": report.budget_reached,
    });
    if let Some(v) = semi {
        s["semi"] = v;
    }
    let Some(test) = test else {
        s["test_split"] = format!("not evaluated ({})", no_test_reason(data)).into();
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        crate::io::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
        return Ok(());
    };
    s["test_loss"] = test.loss.into();
    s["test_examples"] = test.examples.into();
    if let Some(t) = &data.text {
        s["test_perplexity"] = test.loss.exp().into();
        s["unigram_baseline_loss"] = t.unigram_baseline.into();
        s["tokenizer"] = t.tokenizer.kind().into();
        s["vocab_size"] = data.output.into();
        if let Some(m) = &test.classification {
            s["test_token_accuracy"] = m.accuracy.into();
        }
    } else if let Some(m) = &test.classification {
        s["test_accuracy"] = m.accuracy.into();
        s["test_macro_precision"] = m.macro_precision.into();
        s["test_macro_recall"] = m.macro_recall.into();
        s["test_macro_f1"] = m.macro_f1.into();
        s["test_confusion"] = serde_json::to_value(&m.confusion).unwrap_or_default();
        if let Task::Classification { class_names } = &data.task {
            s["class_names"] = serde_json::to_value(class_names).unwrap_or_default();
        }
    }
    if let Some(m) = &test.regression {
        s["test_mse"] = m.mse.into();
        s["test_mae"] = m.mae.into();
        s["test_r2"] = m.r2.into();
    }
    let text = serde_json::to_string_pretty(&s).unwrap_or_default();
    crate::io::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    Ok(())
}

/// Why a run has no test score: `--no-test`, or a test split left empty by `--test-fraction 0`.
fn no_test_reason(data: &PreparedData) -> &'static str {
    if data.test.is_empty() {
        "--test-fraction 0 left no test split"
    } else {
        "--no-test"
    }
}

pub(super) fn print_summary(
    data: &PreparedData,
    test: Option<&Evaluation>,
    report: &train::FitReport,
    wall: f64,
    dir: &Path,
    quiet: bool,
) {
    let stop = if report.stopped_early {
        " (early stop)"
    } else {
        ""
    };
    let stop = if report.budget_reached {
        " (step/time budget reached)"
    } else {
        stop
    };
    let head = format!("{}{stop} in {wall:.1}s", done(&report.progress));
    let Some(test) = test else {
        let best = report
            .progress
            .best_val_loss
            .map_or("no validation".into(), |v| format!("best val loss {v:.4}"));
        println!(
            "{head}: {best} (test split not evaluated: {})",
            no_test_reason(data)
        );
        return;
    };
    if let (Some(t), Some(m)) = (&data.text, &test.classification) {
        if !quiet {
            println!(
                "\nrun directory: {} (metrics.csv, curves.png, best.safetensors, tokenizer.json)",
                dir.display()
            );
            println!(
                "sample it: kiln generate --checkpoint {} --prompt \"...\" --max-tokens 200",
                dir.display()
            );
        }
        let base = t
            .unigram_baseline
            .map(|b| format!(" (unigram baseline {b:.4})"))
            .unwrap_or_default();
        println!(
            "{head}: test loss {:.4}{base}, perplexity {:.2}, token accuracy {:.2}%",
            test.loss,
            test.loss.exp(),
            100.0 * m.accuracy
        );
        return;
    }
    if let Some(m) = &test.classification {
        if !quiet {
            println!("\ntest ({} examples):", test.examples);
            println!(
                "  accuracy {:.2}%   loss {:.4}   macro precision {:.3}   recall {:.3}   F1 {:.3}",
                100.0 * m.accuracy,
                test.loss,
                m.macro_precision,
                m.macro_recall,
                m.macro_f1
            );
            if let Task::Classification { class_names } = &data.task {
                if class_names.len() <= 12 {
                    println!("\nconfusion matrix (rows: true class, columns: predicted)");
                    print!("{}", metrics::confusion_table(&m.confusion, class_names));
                }
            }
            println!(
                "\nrun directory: {} (metrics.csv, curves.png, best.safetensors, summary.json)",
                dir.display()
            );
        }
        println!(
            "{head}: test accuracy {:.2}%, test loss {:.4}",
            100.0 * m.accuracy,
            test.loss
        );
    }
    if let Some(m) = &test.regression {
        if !quiet {
            println!(
                "\nrun directory: {} (metrics.csv, curves.png, best.safetensors, summary.json)",
                dir.display()
            );
        }
        println!(
            "{head}: test MSE {:.4}, MAE {:.4}, R2 {:.3}",
            m.mse, m.mae, m.r2
        );
    }
}

/// "3 epochs", or "1 epoch + 13 batches" for a run that stopped inside an epoch.
pub(super) fn done(p: &train::Progress) -> String {
    let epochs = format!("{} epoch{}", p.epoch, if p.epoch == 1 { "" } else { "s" });
    if p.batch == 0 {
        epochs
    } else {
        format!("{epochs} + {} batches", p.batch)
    }
}

/// Refuse a validation or test split left empty by a fraction above 0: its loss and accuracy
/// would read 0, and the best epoch would be chosen on nothing. The test split may be empty on
/// purpose (`--test-fraction 0`: no test score is reported); the validation split may not, as
/// the best epoch, early stopping and the explosion check read its loss.
pub(super) fn check_splits(spec: &RunSpec, data: &PreparedData) -> Result<()> {
    let total = data.train.len() + data.val.len() + data.test.len();
    if data.val.is_empty() && spec.val_fraction <= 0.0 {
        return Err(Error(format!(
            "--val-fraction {}: no validation split, but kiln chooses the best epoch (and stops \
             early) on the validation loss; give a fraction above 0 (the default is 0.05)",
            spec.val_fraction
        )));
    }
    for (what, len, fraction, flag) in [
        (
            "validation",
            data.val.len(),
            spec.val_fraction,
            "--val-fraction",
        ),
        (
            "test",
            data.test.len(),
            spec.test_fraction,
            "--test-fraction",
        ),
    ] {
        if len == 0 && fraction > 0.0 {
            return Err(Error(format!(
                "{flag} {fraction}: the {what} split of these {total} examples is empty; give \
                 more data or a larger {flag}"
            )));
        }
    }
    Ok(())
}

/// True when `dir/summary.json` reports the run at `p` (its end was evaluated and written).
pub(super) fn summarised(dir: &Path, p: &crate::train::Progress) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["epochs_run"].as_u64() == Some(p.epoch as u64) && v["batches_into_next_epoch"] == 0
}
