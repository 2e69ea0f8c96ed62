//! Data checks at preparation time, saved in the run directory for `kiln diagnose`:
//! `preparation.json` holds the findings on the prepared splits (and the preparation report),
//! `failure.json` the error of a run that stopped before training (e.g. a target column with
//! one class only).
//!
//! | finding | rule (on the training split unless said) |
//! | --- | --- |
//! | constant feature | a named (CSV) feature column with min = max over the training rows |
//! | class imbalance | largest class / smallest class >= [`IMBALANCE_RATIO`], or a class with no training rows |
//! | duplicates between splits | >= [`DUPLICATE_FRACTION`] of validation + test rows equal (bit for bit) a training row |
//!
//! Splits larger than [`MAX_VALUES`] feature values in all are not checked (the scan reads them
//! on the host).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diagnose::{Finding, Kind};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result, io_err};

/// The file of the preparation findings.
pub const PREPARATION_FILE: &str = "preparation.json";
/// The file of a run that failed before training.
pub const FAILURE_FILE: &str = "failure.json";
/// Largest / smallest class count from which the imbalance is reported.
pub const IMBALANCE_RATIO: f64 = 10.0;
/// Fraction of validation + test rows found in the training split from which it is reported.
pub const DUPLICATE_FRACTION: f64 = 0.01;
/// Feature values (all splits) above which the checks are skipped.
pub const MAX_VALUES: usize = 20_000_000;

/// What the preparation of a run found, as saved in `preparation.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preparation {
    /// The findings (empty: nothing wrong seen).
    pub findings: Vec<Finding>,
    /// The data report printed by `kiln train`.
    pub report: String,
}

/// Check `train` against `val` and `test`. `feature_names` names CSV features (only named
/// features are checked for constants: image borders are constant by nature); `class_names`
/// names the classes.
pub fn check(
    train: &dyn Dataset,
    others: &[&dyn Dataset],
    feature_names: Option<&[String]>,
    class_names: &[String],
) -> Vec<Finding> {
    let width: usize = train.feature_shape().iter().product();
    let rows = train.len() + others.iter().map(|d| d.len()).sum::<usize>();
    if train.is_empty() || width == 0 || rows.saturating_mul(width) > MAX_VALUES {
        return Vec::new();
    }
    let all = |d: &dyn Dataset| d.batch(&(0..d.len()).collect::<Vec<_>>());
    let t = all(train);
    let mut out = Vec::new();
    if let Some(names) = feature_names.filter(|n| n.len() == width) {
        let constant: Vec<String> = (0..width)
            .filter(|&j| {
                let first = t.x[j];
                t.x.chunks(width).all(|r| r[j] == first)
            })
            .map(|j| format!("{}: one value in every training row", names[j]))
            .collect();
        if !constant.is_empty() {
            out.push(Finding::new(
                Kind::ConstantFeature,
                format!(
                    "{} feature column(s) never change over the {} training rows: they carry \
                     no information (drop them from the CSV)",
                    constant.len(),
                    train.len()
                ),
                constant,
            ));
        }
    }
    if let Targets::Classes {
        labels,
        num_classes,
    } = &t.y
        && labels.len() == train.len()
    {
        let mut counts = vec![0usize; *num_classes];
        for &l in labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
        let (big, &most) = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .unwrap_or((0, &0));
        let (small, &least) = counts
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .unwrap_or((0, &0));
        if counts.len() > 1 && (least == 0 || most as f64 >= IMBALANCE_RATIO * least as f64) {
            let evidence = counts
                .iter()
                .enumerate()
                .map(|(c, n)| format!("class {}: {n} training rows", name(c)))
                .collect();
            out.push(Finding::new(
                Kind::ClassImbalance,
                format!(
                    "heavy class imbalance: class {} has {most} training rows, class {} only \
                     {least}; accuracy flatters a model that favours the big class (weigh the \
                     classes, resample, or read the macro F1)",
                    name(big),
                    name(small)
                ),
                evidence,
            ));
        }
    }
    let seen: HashSet<Vec<u32>> = t.x.chunks(width).map(bits).collect();
    let repeated = 1.0 - seen.len() as f64 / train.len() as f64;
    let (mut dup, mut total) = (0usize, 0usize);
    for d in others.iter().filter(|d| !d.is_empty()) {
        let b = all(*d);
        total += d.len();
        dup +=
            b.x.chunks(width)
                .filter(|r| seen.contains(&bits(r)))
                .count();
    }
    if total > 0 && dup as f64 >= DUPLICATE_FRACTION * total as f64 {
        out.push(Finding::new(
            Kind::DuplicatesBetweenSplits,
            format!(
                "{dup} of the {total} validation and test rows have exact copies (same \
                 features) in the training split: if they are the same examples, their scores \
                 overstate how well the model generalises (deduplicate the data before \
                 splitting); with few, coarse features, identical rows are expected"
            ),
            vec![
                format!(
                    "{:.1} % of held-out rows",
                    100.0 * dup as f64 / total as f64
                ),
                format!(
                    "the training split itself repeats {:.1} % of its rows",
                    100.0 * repeated
                ),
            ],
        ));
    }
    out
}

fn bits(row: &[f32]) -> Vec<u32> {
    row.iter().map(|v| v.to_bits()).collect()
}

/// Write `dir/preparation.json`.
pub fn save(dir: &Path, p: &Preparation) -> Result<()> {
    let path = dir.join(PREPARATION_FILE);
    let text = serde_json::to_string_pretty(p).map_err(|e| io_err(&path, e))?;
    crate::io::write_atomic(&path, text.as_bytes())
}

/// Write `dir/failure.json`: the run stopped at `stage` with `error` (best effort: the error
/// itself is what the caller reports).
pub fn record_failure(dir: &Path, stage: &str, error: &str) {
    let v = serde_json::json!({ "stage": stage, "error": error });
    let _ = std::fs::create_dir_all(dir);
    let _ = crate::io::write_atomic(&dir.join(FAILURE_FILE), v.to_string().as_bytes());
}

/// Read `dir/preparation.json` (none when absent).
pub fn load(dir: &Path) -> Result<Option<Preparation>> {
    let path = dir.join(PREPARATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).map(Some).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}
