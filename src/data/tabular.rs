//! [`load_tabular`]: a CSV file to train/validation/test datasets in one call.
//!
//! 1. read the file ([`Table`]: header detection, ragged rows, missing markers);
//! 2. infer each column's kind (numeric or categorical; stray text in a numeric column is an
//!    error naming the line and column);
//! 3. drop the rows whose target is missing, and under `missing = drop` the rows with any missing
//!    feature;
//! 4. decide the task ([`TaskKind::Auto`]: classification for a categorical target, or a numeric
//!    one with only integer values and at most [`MAX_AUTO_CLASSES`] distinct values;
//!    regression otherwise) and the classes (sorted; numerically for numbers);
//! 5. split: stratified by class for classification, plain shuffled for regression
//!    ([`split`](super::split));
//! 6. fit the [`Preprocessor`] on the training rows only, and transform all three parts.
//!
//! ```
//! use kiln::data::{load_tabular, Dataset, SplitFractions, TabularOptions};
//! let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/penguins.csv");
//! let s = load_tabular(&path, &TabularOptions::new("species"), SplitFractions::default(), 0)?;
//! assert_eq!(s.class_names.as_deref(), Some(&["Adelie".into(), "Chinstrap".into(), "Gentoo".into()][..]));
//! assert_eq!(s.train.len() + s.val.len() + s.test.len(), 344);
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use super::Targets;
use super::error::{DataError, invalid};
use super::memory::InMemoryDataset;
use super::options::{MissingPolicy, TabularOptions, TaskKind};
use super::preprocess::{ColumnEncoding, Preprocessor, TargetEncoding, format_number};
use super::scaler::short;
use super::split::{SplitFractions, SplitIndices, shuffled_split, stratified_split};
use super::table::{ColumnKind, Table, is_missing, parse_number};

/// [`TaskKind::Auto`] takes an integer-valued numeric target with at most this many distinct
/// values as classes.
pub const MAX_AUTO_CLASSES: usize = 20;

/// A prepared tabular dataset: three parts, the fitted preprocessor and a report.
#[derive(Debug, Clone)]
pub struct TabularSplit {
    /// Training examples.
    pub train: InMemoryDataset,
    /// Validation examples.
    pub val: InMemoryDataset,
    /// Test examples.
    pub test: InMemoryDataset,
    /// The preparation fitted on the training rows (save it with the model).
    pub preprocessor: Preprocessor,
    /// Class names, for classification.
    pub class_names: Option<Vec<String>>,
    /// Rows left out: missing target, plus missing features under `missing = drop`.
    pub dropped_rows: usize,
    /// The rows whose target is missing (under `missing = drop` only those with every
    /// feature), as read: unlabelled examples for semi-supervised training
    /// ([`Preprocessor::transform`] prepares them like the others).
    pub unlabeled: Table,
    /// A short human-readable account: rows, columns, kinds, missing values, fills, classes.
    pub report: String,
}

/// Read, clean, split and prepare a CSV file (see the module note).
pub fn load_tabular(
    path: &Path,
    opts: &TabularOptions,
    split: SplitFractions,
    seed: u64,
) -> Result<TabularSplit, DataError> {
    prepare_table(Table::read_csv(path, opts.header)?, opts, split, seed)
}

/// [`load_tabular`] on a table already read.
pub fn prepare_table(
    table: Table,
    opts: &TabularOptions,
    split: SplitFractions,
    seed: u64,
) -> Result<TabularSplit, DataError> {
    split.validate()?;
    let (rows_read, file) = (table.len(), table.file.clone());
    if table.is_empty() {
        return invalid(format!("{file}: no data rows below the header"));
    }
    let tcol = table.column(&opts.target)?;
    let kinds: Vec<ColumnKind> = (0..table.columns.len())
        .map(|j| table.infer_kind(j))
        .collect::<Result<_, _>>()?;
    let missing: Vec<usize> = (0..table.columns.len())
        .map(|j| table.missing_count(j))
        .collect();
    if let Some(j) = (0..missing.len()).find(|&j| j != tcol && missing[j] == table.len()) {
        return invalid(format!(
            "{file}: column {} is missing in all {} rows; it carries nothing to learn from and \
             nothing to fill it with: remove it from the file",
            super::clip(&table.columns[j]),
            table.len()
        ));
    }

    // Rows kept: a target, and under drop-rows every feature.
    let drop_features = opts.missing == MissingPolicy::DropRows;
    let (mut no_target, mut no_feature) = (0, 0);
    let mut unlabeled_rows = Vec::new();
    let keep: Vec<usize> = (0..table.len())
        .filter(|&i| {
            let row = &table.rows[i];
            if is_missing(&row[tcol]) {
                no_target += 1;
                if !(drop_features && row.iter().any(|v| is_missing(v))) {
                    unlabeled_rows.push(i);
                }
                false
            } else if drop_features && row.iter().any(|v| is_missing(v)) {
                no_feature += 1;
                false
            } else {
                true
            }
        })
        .collect();
    let unlabeled_table = table.select(&unlabeled_rows);
    let table = table.select(&keep);
    if table.is_empty() {
        return invalid(format!(
            "{file}: no rows left after dropping {no_target} with a missing target and \
             {no_feature} with missing features"
        ));
    }

    let target = target_encoding(&table, tcol, kinds[tcol], opts)?;
    let parts = match &target {
        TargetEncoding::Classification {
            classes, numeric, ..
        } => {
            let labels = class_labels(&table, tcol, classes, *numeric);
            stratified_split(&labels, split, seed)
        }
        TargetEncoding::Regression { .. } => shuffled_split(table.len(), split, seed),
    };
    let train_rows = table.select(&parts.train);
    let pre = Preprocessor::fit(&train_rows, &kinds, target, opts)?;
    if pre.num_features() == 0 {
        return invalid(format!(
            "{file}: no feature columns besides the target {} ({} column(s) in the file); a \
             model needs at least one input column",
            super::clip(&opts.target),
            table.columns.len()
        ));
    }
    let train = pre.dataset(&train_rows)?;
    let val = pre.dataset(&table.select(&parts.val))?;
    let test = pre.dataset(&table.select(&parts.test))?;

    let report = report(&ReportInput {
        table: &table,
        rows_read,
        kinds: &kinds,
        missing: &missing,
        pre: &pre,
        opts,
        dropped: (no_target, no_feature),
        parts: &parts,
        train: &train,
        seed,
    });
    Ok(TabularSplit {
        class_names: pre.class_names().map(<[String]>::to_vec),
        train,
        val,
        test,
        preprocessor: pre,
        dropped_rows: no_target + no_feature,
        unlabeled: unlabeled_table,
        report,
    })
}

/// Decide the task and the classes from the target column (rows with a target only).
fn target_encoding(
    table: &Table,
    tcol: usize,
    kind: ColumnKind,
    opts: &TabularOptions,
) -> Result<TargetEncoding, DataError> {
    let column = table.columns[tcol].clone();
    let values = || table.rows.iter().map(|r| r[tcol].as_str());
    let numbers: Vec<f64> = values().filter_map(parse_number).collect();
    let task = match (opts.task, kind) {
        (TaskKind::Regression, ColumnKind::Categorical) => {
            let example = values().find(|v| parse_number(v).is_none()).unwrap_or("");
            return invalid(format!(
                "{}: regression needs a numeric target, but column {column} holds categories \
                 such as {example:?}",
                table.file
            ));
        }
        (TaskKind::Auto, ColumnKind::Numeric) => {
            let distinct: BTreeSet<u64> = numbers.iter().map(|v| v.to_bits()).collect();
            let integers = numbers.iter().all(|v| v.fract() == 0.0);
            if integers && distinct.len() <= MAX_AUTO_CLASSES {
                TaskKind::Classification
            } else {
                TaskKind::Regression
            }
        }
        (TaskKind::Auto, ColumnKind::Categorical) => TaskKind::Classification,
        (t, _) => t,
    };
    // One value only: nothing to learn, and a classifier would report 100 % and loss 0.
    // Numbers compare as numbers: "1" and "01" are one class.
    let distinct: BTreeSet<String> = values()
        .map(|v| match (kind, parse_number(v)) {
            (ColumnKind::Numeric, Some(x)) => format_number(x),
            _ => v.to_string(),
        })
        .collect();
    if distinct.len() == 1 {
        let only = distinct.iter().next().map_or("", String::as_str);
        return invalid(format!(
            "{}: the target column {column} holds one value only ({}, in all {} rows kept); \
             there is nothing to learn: a model that always answers it scores 100 %. Give rows \
             of at least two {}",
            table.file,
            super::clip(only),
            table.len(),
            if task == TaskKind::Regression {
                "values"
            } else {
                "classes"
            }
        ));
    }
    Ok(match (task, kind) {
        (TaskKind::Regression, _) => TargetEncoding::Regression { column },
        (_, ColumnKind::Numeric) => {
            let mut sorted = numbers;
            sorted.sort_by(f64::total_cmp);
            sorted.dedup();
            TargetEncoding::Classification {
                column,
                classes: sorted.into_iter().map(format_number).collect(),
                numeric: true,
            }
        }
        (_, ColumnKind::Categorical) => {
            let set: BTreeSet<&str> = values().collect();
            TargetEncoding::Classification {
                column,
                classes: set.into_iter().map(str::to_string).collect(),
                numeric: false,
            }
        }
    })
}

/// The class index of every row (all targets present and among `classes`).
fn class_labels(table: &Table, tcol: usize, classes: &[String], numeric: bool) -> Vec<u32> {
    table
        .rows
        .iter()
        .map(|r| {
            let key = if numeric {
                parse_number(&r[tcol])
                    .map(format_number)
                    .unwrap_or_default()
            } else {
                r[tcol].clone()
            };
            classes.iter().position(|c| *c == key).unwrap_or(0) as u32
        })
        .collect()
}

struct ReportInput<'a> {
    table: &'a Table,
    rows_read: usize,
    kinds: &'a [ColumnKind],
    missing: &'a [usize],
    pre: &'a Preprocessor,
    opts: &'a TabularOptions,
    dropped: (usize, usize),
    parts: &'a SplitIndices,
    train: &'a InMemoryDataset,
    seed: u64,
}

fn report(r: &ReportInput) -> String {
    let t = r.table;
    let mut s = String::new();
    let header = match (r.opts.header, t.header_present) {
        (super::HeaderMode::Auto, true) => "header detected",
        (super::HeaderMode::Auto, false) => "no header detected",
        (_, true) => "header",
        (_, false) => "no header",
    };
    let _ = writeln!(
        s,
        "{}: {} rows x {} columns ({header})",
        t.file,
        r.rows_read,
        t.columns.len()
    );
    let target = r.pre.target();
    match (target, r.train.targets()) {
        (TargetEncoding::Classification { classes, .. }, _) => {
            let mut counts = vec![0usize; classes.len()];
            for l in class_labels(
                t,
                t.column(target.column()).unwrap_or(0),
                classes,
                matches!(target, TargetEncoding::Classification { numeric: true, .. }),
            ) {
                counts[l as usize] += 1;
            }
            let list: Vec<String> = classes
                .iter()
                .zip(&counts)
                .map(|(c, n)| format!("{c} ({n})"))
                .collect();
            let _ = writeln!(
                s,
                "target {}: classification, {} classes: {}",
                target.column(),
                classes.len(),
                list.join(", ")
            );
        }
        (TargetEncoding::Regression { .. }, Targets::Values { values, .. }) => {
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let _ = writeln!(
                s,
                "target {}: regression, training values from {} to {}",
                target.column(),
                short(lo as f64),
                short(hi as f64)
            );
        }
        (TargetEncoding::Regression { .. }, _) => {}
    }
    let (no_target, no_feature) = r.dropped;
    let _ = writeln!(
        s,
        "dropped {} rows: {no_target} with a missing target, {no_feature} with missing features \
         (missing = {})",
        no_target + no_feature,
        r.opts.missing
    );
    let stratified = matches!(target, TargetEncoding::Classification { .. });
    let _ = writeln!(
        s,
        "split ({}, seed {}): train {}, val {}, test {}",
        if stratified {
            "stratified by class"
        } else {
            "shuffled"
        },
        r.seed,
        r.parts.train.len(),
        r.parts.val.len(),
        r.parts.test.len()
    );
    let _ = writeln!(
        s,
        "columns (missing counted in the file; fills and scaling from the {} training rows):",
        r.parts.train.len()
    );
    let width = t.columns.iter().map(|c| c.len()).max().unwrap_or(0).max(6);
    // Indexed once: a search per column is quadratic on a file of 200k columns.
    let encodings: HashMap<&str, &ColumnEncoding> = r
        .pre
        .columns()
        .iter()
        .map(|c| (c.name.as_str(), &c.encoding))
        .collect();
    for (j, name) in t.columns.iter().enumerate() {
        let kind = match r.kinds[j] {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        };
        let what = if name == target.column() {
            "target".to_string()
        } else {
            match encodings.get(name.as_str()).copied() {
                Some(ColumnEncoding::Numeric { fill, scaler }) => {
                    let constant = t
                        .rows
                        .iter()
                        .map(|row| row[j].as_str())
                        .filter(|v| !is_missing(v))
                        .collect::<BTreeSet<_>>()
                        .len()
                        <= 1;
                    format!(
                        "{}{}{}",
                        fill_note(
                            r.missing[j],
                            fill.map(|f| format!("{} {}", r.opts.missing, short(f)))
                        ),
                        scaler.describe(),
                        if constant {
                            "; constant: carries no information"
                        } else {
                            ""
                        }
                    )
                }
                Some(ColumnEncoding::OneHot { categories, fill }) => format!(
                    "{}one-hot, {} categories",
                    fill_note(
                        r.missing[j],
                        fill.as_ref().map(|f| format!("most frequent {f:?}"))
                    ),
                    categories.len()
                ),
                Some(ColumnEncoding::Label { categories, fill }) => format!(
                    "{}label codes 0..{}",
                    fill_note(
                        r.missing[j],
                        fill.as_ref().map(|f| format!("most frequent {f:?}"))
                    ),
                    categories.len().saturating_sub(1)
                ),
                None => String::new(),
            }
        };
        let _ = writeln!(
            s,
            "  {name:<width$}  {kind:<11}  missing {:>4}  {what}",
            r.missing[j]
        );
    }
    let names = r.pre.feature_names();
    let _ = write!(s, "features: {} ({})", names.len(), names.join(", "));
    s
}

fn fill_note(missing: usize, fill: Option<String>) -> String {
    match (missing, fill) {
        (0, _) => String::new(),
        (_, Some(f)) => format!("filled with {f}; "),
        (_, None) => "rows dropped; ".to_string(),
    }
}
