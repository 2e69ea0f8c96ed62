//! [`Preprocessor`]: turns the text rows of a [`Table`] into model inputs, with every statistic
//! (imputation values, category vocabularies, scalers) fitted on the training rows only. It is
//! serde-serialisable and saved with the model, so `kiln predict` applies the same steps to a new
//! CSV file.
//!
//! Per feature column, in file order (the target column is left out):
//! - numeric: missing -> the fill value (mean / median / most frequent of the training values),
//!   then the [`Scaler`] (fitted on the training values after filling);
//! - categorical, one-hot: one 0/1 column per training category, in sorted order, named
//!   `column=category`; missing -> the most frequent training category; an unseen category ->
//!   all zeros;
//! - categorical, label: one column of codes 0, 1, ... (sorted order, not scaled); missing -> the
//!   most frequent training category; an unseen category -> an error naming line and column.
//!
//! Under [`MissingPolicy::DropRows`] there are no fill values: a missing value at transform time
//! is an error (a prediction cannot drop its row).
//!
//! Columns are found by name. A file without a header whose width is one less than the training
//! file is taken to be the training layout without the target column.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Targets;
use super::error::{DataError, clip};
use super::memory::InMemoryDataset;
use super::options::{CategoricalEncoding, HeaderMode, Impute, MissingPolicy, TabularOptions};
use super::scaler::Scaler;
use super::table::{ColumnKind, Table, is_missing, parse_number};

/// How one feature column becomes numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ColumnEncoding {
    /// A number, filled then scaled.
    Numeric {
        /// What fills a missing value (`None` under drop-rows).
        fill: Option<f64>,
        /// The scaling fitted on the training values.
        scaler: Scaler,
    },
    /// One 0/1 column per category.
    OneHot {
        /// Training categories, sorted.
        categories: Vec<String>,
        /// What fills a missing value (`None` under drop-rows).
        fill: Option<String>,
    },
    /// The category's index in `categories`.
    Label {
        /// Training categories, sorted.
        categories: Vec<String>,
        /// What fills a missing value (`None` under drop-rows).
        fill: Option<String>,
    },
}

/// One input column of the file and its encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureColumn {
    /// Column name in the file.
    pub name: String,
    /// How it is encoded.
    pub encoding: ColumnEncoding,
}

/// The target column and how its values become targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum TargetEncoding {
    /// Class indices into `classes`.
    Classification {
        /// Column name.
        column: String,
        /// Class names, in index order (sorted; numerically for numeric targets).
        classes: Vec<String>,
        /// True when the classes are numbers (`"1"` and `"1.0"` are then the same class).
        numeric: bool,
    },
    /// The number itself (not scaled).
    Regression {
        /// Column name.
        column: String,
    },
}

impl TargetEncoding {
    /// The target column's name.
    pub fn column(&self) -> &str {
        match self {
            TargetEncoding::Classification { column, .. }
            | TargetEncoding::Regression { column } => column,
        }
    }
}

/// A category the training rows never held, found by [`Preprocessor::unseen_categories`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unseen {
    /// The column.
    pub column: String,
    /// The first unseen value.
    pub value: String,
    /// The 1-based line of its row.
    pub line: usize,
    /// Rows of the column holding an unseen value.
    pub rows: usize,
}

/// Fitted preparation of tabular rows (see the module note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    source_columns: Vec<String>,
    header_present: bool,
    target: TargetEncoding,
    columns: Vec<FeatureColumn>,
}

impl Preprocessor {
    /// Fit on the training rows. `kinds` has one entry per column of `train` (the target's is
    /// ignored).
    pub fn fit(
        train: &Table,
        kinds: &[ColumnKind],
        target: TargetEncoding,
        opts: &TabularOptions,
    ) -> Result<Preprocessor, DataError> {
        let tcol = train.column(target.column())?;
        let mut columns = Vec::new();
        for (j, name) in train.columns.iter().enumerate() {
            if j == tcol {
                continue;
            }
            let present = train
                .rows
                .iter()
                .map(|r| r[j].as_str())
                .filter(|v| !is_missing(v));
            let missing = train.missing_count(j);
            let encoding = match kinds[j] {
                ColumnKind::Numeric => {
                    let mut vals: Vec<f64> = present.filter_map(parse_number).collect();
                    let fill = match opts.missing {
                        MissingPolicy::DropRows => None,
                        MissingPolicy::Impute(how) => Some(statistic(&vals, how)),
                    };
                    if let Some(f) = fill {
                        vals.extend(std::iter::repeat_n(f, missing));
                    }
                    ColumnEncoding::Numeric {
                        fill,
                        scaler: Scaler::fit(opts.scaling, &vals),
                    }
                }
                ColumnKind::Categorical => {
                    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                    for v in present {
                        *counts.entry(v).or_default() += 1;
                    }
                    // Ties go to the first category in sorted order (max_by_key keeps the last).
                    let mode = counts
                        .iter()
                        .rev()
                        .max_by_key(|(_, c)| **c)
                        .map(|(v, _)| v.to_string());
                    let fill = match opts.missing {
                        MissingPolicy::DropRows => None,
                        MissingPolicy::Impute(_) => mode,
                    };
                    let categories = counts.keys().map(|s| s.to_string()).collect();
                    match opts.categorical {
                        CategoricalEncoding::OneHot => ColumnEncoding::OneHot { categories, fill },
                        CategoricalEncoding::Label => ColumnEncoding::Label { categories, fill },
                    }
                }
            };
            columns.push(FeatureColumn {
                name: name.clone(),
                encoding,
            });
        }
        Ok(Preprocessor {
            source_columns: train.columns.clone(),
            header_present: train.header_present,
            target,
            columns,
        })
    }

    /// The feature columns and their encodings, in file order.
    pub fn columns(&self) -> &[FeatureColumn] {
        &self.columns
    }

    /// The target column and its encoding.
    pub fn target(&self) -> &TargetEncoding {
        &self.target
    }

    /// Class names, for classification.
    pub fn class_names(&self) -> Option<&[String]> {
        match &self.target {
            TargetEncoding::Classification { classes, .. } => Some(classes),
            TargetEncoding::Regression { .. } => None,
        }
    }

    /// The name of every output feature: the column name, or `column=category` for one-hot.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for c in &self.columns {
            match &c.encoding {
                ColumnEncoding::OneHot { categories, .. } => {
                    names.extend(categories.iter().map(|k| format!("{}={k}", c.name)));
                }
                _ => names.push(c.name.clone()),
            }
        }
        names
    }

    /// Output features per row.
    pub fn num_features(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match &c.encoding {
                ColumnEncoding::OneHot { categories, .. } => categories.len(),
                _ => 1,
            })
            .sum()
    }

    /// Read a new CSV file with the training file's header setting.
    pub fn read_csv(&self, path: &Path) -> Result<Table, DataError> {
        let mode = if self.header_present {
            HeaderMode::Present
        } else {
            HeaderMode::Absent
        };
        Table::read_csv(path, mode)
    }

    /// The values of one-hot columns that the training rows never held, one entry per column
    /// with any: they encode as all zeros, which a model has never seen, so a caller should
    /// warn. Missing values (filled as in training) are not counted.
    pub fn unseen_categories(&self, table: &Table) -> Result<Vec<Unseen>, DataError> {
        let cols = self.locate_all(table)?;
        let mut found = Vec::new();
        for (c, &j) in self.columns.iter().zip(&cols) {
            let ColumnEncoding::OneHot { categories, .. } = &c.encoding else {
                continue;
            };
            let known: std::collections::HashSet<&str> =
                categories.iter().map(String::as_str).collect();
            let mut hit: Option<Unseen> = None;
            for (r, row) in table.rows.iter().enumerate() {
                let v = row[j].as_str();
                if is_missing(v) || known.contains(v) {
                    continue;
                }
                match &mut hit {
                    Some(u) => u.rows += 1,
                    None => {
                        hit = Some(Unseen {
                            column: c.name.clone(),
                            value: v.to_string(),
                            line: table.lines[r],
                            rows: 1,
                        })
                    }
                }
            }
            found.extend(hit);
        }
        Ok(found)
    }

    /// Features of every row, row-major `(N, num_features)`.
    pub fn transform(&self, table: &Table) -> Result<Vec<f32>, DataError> {
        let cols = self.locate_all(table)?;
        let mut out = Vec::with_capacity(table.len() * self.num_features()); // (N, F)
        for (r, row) in table.rows.iter().enumerate() {
            for (c, &j) in self.columns.iter().zip(&cols) {
                encode(
                    c,
                    &row[j],
                    &|msg: String| DataError::Value {
                        file: table.file.clone(),
                        line: table.lines[r],
                        column: c.name.clone(),
                        value: row[j].clone(),
                        msg,
                    },
                    &mut out,
                )?;
            }
        }
        Ok(out)
    }

    /// Targets of every row (the table must have the target column; a missing target is an
    /// error).
    pub fn targets(&self, table: &Table) -> Result<Targets, DataError> {
        let j = table.column(self.target.column())?;
        let err = |r: usize, msg: String| DataError::Value {
            file: table.file.clone(),
            line: table.lines[r],
            column: self.target.column().to_string(),
            value: table.rows[r][j].clone(),
            msg,
        };
        match &self.target {
            TargetEncoding::Classification {
                classes, numeric, ..
            } => {
                let mut labels = Vec::with_capacity(table.len());
                for (r, row) in table.rows.iter().enumerate() {
                    let v = &row[j];
                    let key = if *numeric {
                        parse_number(v).map(format_number)
                    } else {
                        Some(v.clone())
                    };
                    match key.and_then(|k| classes.iter().position(|c| *c == k)) {
                        Some(i) => labels.push(i as u32),
                        None => {
                            return Err(err(
                                r,
                                format!(
                                    "target {} is not one of the classes {}",
                                    clip(v),
                                    classes.join(", ")
                                ),
                            ));
                        }
                    }
                }
                Ok(Targets::Classes {
                    labels,
                    num_classes: classes.len(),
                })
            }
            TargetEncoding::Regression { .. } => {
                let mut values = Vec::with_capacity(table.len());
                for (r, row) in table.rows.iter().enumerate() {
                    match parse_number(&row[j]).map(|v| (v, v as f32)) {
                        Some((_, v)) if v.is_finite() => values.push(v),
                        Some((v, _)) => return Err(err(r, beyond_f32(v))),
                        None => {
                            return Err(err(
                                r,
                                format!("expected a number, found {}", clip(&row[j])),
                            ));
                        }
                    }
                }
                Ok(Targets::Values { values, width: 1 })
            }
        }
    }

    /// Features and targets of every row as a dataset (with class names for classification).
    pub fn dataset(&self, table: &Table) -> Result<InMemoryDataset, DataError> {
        let ds = InMemoryDataset::new(
            self.transform(table)?,
            vec![self.num_features()],
            self.targets(table)?,
        )?;
        match self.class_names() {
            Some(names) => ds.with_class_names(names.to_vec()),
            None => Ok(ds),
        }
    }

    /// Where feature column `name` is in `table` (see the module note).
    /// The column of `table` holding each feature column, by name. The names are indexed once
    /// (a wide file has 200k columns: a search per column would be quadratic). Without a
    /// header and without the target column (rows to predict), columns are the training
    /// columns in order, the target left out.
    fn locate_all(&self, table: &Table) -> Result<Vec<usize>, DataError> {
        fn index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
            let mut m = HashMap::new();
            for (j, n) in names.enumerate() {
                m.entry(n).or_insert(j);
            }
            m
        }
        let positional =
            if !table.header_present && table.columns.len() + 1 == self.source_columns.len() {
                let target = self.target.column();
                index(
                    self.source_columns
                        .iter()
                        .map(String::as_str)
                        .filter(|c| *c != target),
                )
            } else {
                HashMap::new()
            };
        let named = index(table.columns.iter().map(String::as_str));
        self.columns
            .iter()
            .map(|c| {
                let n = c.name.as_str();
                match positional.get(n).or_else(|| named.get(n)) {
                    Some(&j) => Ok(j),
                    None => table.column(n),
                }
            })
            .collect()
    }
}

/// Append the encoding of one value; `err` builds an error about it.
/// The error for a number (after scaling) that f32 cannot hold.
fn beyond_f32(v: f64) -> String {
    format!(
        "{v:e} (after scaling) is beyond the range of 32-bit floats (about ±3.4e38) that kiln \
         trains in; rescale the column"
    )
}

fn encode(
    c: &FeatureColumn,
    v: &str,
    err: &dyn Fn(String) -> DataError,
    out: &mut Vec<f32>,
) -> Result<(), DataError> {
    let no_fill = || {
        err(format!(
            "missing value ({}), and the model was trained with missing = drop, which has no \
             fill value; fill it in, or train with --missing mean",
            clip(v)
        ))
    };
    match &c.encoding {
        ColumnEncoding::Numeric { fill, scaler } => {
            let x = if is_missing(v) {
                fill.ok_or_else(no_fill)?
            } else {
                parse_number(v)
                    .ok_or_else(|| err(format!("expected a number, found {}", clip(v))))?
            };
            let y = scaler.apply(x);
            if !(y as f32).is_finite() {
                return Err(err(beyond_f32(y)));
            }
            out.push(y as f32);
        }
        ColumnEncoding::OneHot { categories, fill } => {
            let v = if is_missing(v) {
                fill.as_deref().ok_or_else(no_fill)?
            } else {
                v
            };
            out.extend(categories.iter().map(|k| if k == v { 1.0 } else { 0.0 }));
        }
        ColumnEncoding::Label { categories, fill } => {
            let v = if is_missing(v) {
                fill.as_deref().ok_or_else(no_fill)?
            } else {
                v
            };
            let code = categories.iter().position(|k| k == v).ok_or_else(|| {
                err(format!(
                    "category {} was not in the training rows ({}); label encoding has no \
                     code for it (one-hot encodes unseen categories as all zeros)",
                    clip(v),
                    categories.join(", ")
                ))
            })?;
            out.push(code as f32);
        }
    }
    Ok(())
}

/// Mean, median or most frequent of `vals` (0 when there are none).
pub fn statistic(vals: &[f64], how: Impute) -> f64 {
    if vals.is_empty() {
        return 0.0;
    }
    let mut s = vals.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match how {
        Impute::Mean => s.iter().sum::<f64>() / n as f64,
        Impute::Median if n % 2 == 1 => s[n / 2],
        Impute::Median => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        Impute::MostFrequent => {
            // Runs of equal values in sorted order; the first longest run wins (smallest value).
            let (mut best, mut best_len, mut i) = (s[0], 0, 0);
            while i < n {
                let j = s[i..].iter().position(|&x| x != s[i]).map_or(n, |k| i + k);
                if j - i > best_len {
                    (best, best_len) = (s[i], j - i);
                }
                i = j;
            }
            best
        }
    }
}

/// A number as a class name: `1.0` -> `"1"`, `0.5` -> `"0.5"`.
pub fn format_number(v: f64) -> String {
    format!("{v}")
}
