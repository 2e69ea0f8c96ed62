//! A CSV table to the rows clustering works on, through the same preparation as `kiln train`
//! ([`Preprocessor`]: missing values filled, categorical columns one-hot or label encoded,
//! numeric columns scaled), with columns that are not features left out (`drop`) and an
//! optional label column kept aside for scoring, never used to fit.

use crate::data::error::clip;
use crate::data::options::{CategoricalEncoding, MissingPolicy, Scaling, TabularOptions};
use crate::data::preprocess::{Preprocessor, TargetEncoding};
use crate::data::table::{Table, is_missing};
use crate::data::{DataError, HeaderMode};
use crate::error::Result;

/// How to turn a table into features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureOptions {
    /// Columns that are not features (ids, names).
    pub drop: Vec<String>,
    /// A column of known labels, kept aside for scoring.
    pub label: Option<String>,
    /// Missing values: imputed (drop-rows is refused: every row gets a cluster).
    pub missing: MissingPolicy,
    /// Categorical columns.
    pub categorical: CategoricalEncoding,
    /// Numeric columns (standardised by default: k-means is scale-sensitive).
    pub scaling: Scaling,
    /// Header row.
    pub header: HeaderMode,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        let t = TabularOptions::new("");
        FeatureOptions {
            drop: Vec::new(),
            label: None,
            missing: t.missing,
            categorical: t.categorical,
            scaling: t.scaling,
            header: t.header,
        }
    }
}

/// Prepared rows: features in input row order, and the labels if asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Features, (n, d) row-major.
    pub x: Vec<f32>,
    /// Features per row.
    pub d: usize,
    /// Feature names (`column=category` for one-hot).
    pub names: Vec<String>,
    /// Label index per row (sorted label names; -1 where the label is missing).
    pub labels: Option<Vec<i32>>,
    /// Label names in index order.
    pub label_names: Vec<String>,
}

/// The column name that stands in for the target the preparation expects (clustering has none).
const NO_TARGET: &str = "\u{0}no target";

/// Prepare `table` (see the module notes). Unknown `drop` / `label` columns are errors naming
/// them.
pub fn prepare_features(table: &Table, opts: &FeatureOptions) -> Result<Features> {
    let file = &table.file;
    if table.is_empty() {
        return Err(DataError::Invalid(format!("{file}: no data rows")).into());
    }
    if opts.missing == MissingPolicy::DropRows {
        return Err(DataError::Invalid(
            "missing = drop: clustering gives every row a cluster; choose mean, median or \
             most-frequent"
                .into(),
        )
        .into());
    }
    let mut skip = Vec::new();
    for name in opts.drop.iter().chain(&opts.label) {
        skip.push(table.column(name)?);
    }
    let keep: Vec<usize> = (0..table.columns.len())
        .filter(|j| !skip.contains(j))
        .collect();
    if keep.is_empty() {
        return Err(DataError::Invalid(format!("{file}: no feature columns left")).into());
    }
    for &j in &keep {
        if table.missing_count(j) == table.len() {
            return Err(DataError::Invalid(format!(
                "{file}: column {} is missing in every row; drop it with --drop",
                clip(&table.columns[j])
            ))
            .into());
        }
    }
    let mut columns: Vec<String> = keep.iter().map(|&j| table.columns[j].clone()).collect();
    columns.push(NO_TARGET.to_string());
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| {
            let mut v: Vec<String> = keep.iter().map(|&j| r[j].clone()).collect();
            v.push("0".into());
            v
        })
        .collect();
    let t = Table {
        file: file.clone(),
        columns,
        header_present: table.header_present,
        rows,
        lines: table.lines.clone(),
    };
    let kinds = (0..t.columns.len())
        .map(|j| t.infer_kind(j))
        .collect::<Result<Vec<_>, _>>()?;
    let mut topts = TabularOptions::new(NO_TARGET);
    topts.missing = opts.missing;
    topts.categorical = opts.categorical;
    topts.scaling = opts.scaling;
    let target = TargetEncoding::Regression {
        column: NO_TARGET.into(),
    };
    let prep = Preprocessor::fit(&t, &kinds, target, &topts)?;
    let x = prep.transform(&t)?;
    let d = prep.num_features();
    let (labels, label_names) = match &opts.label {
        None => (None, Vec::new()),
        Some(name) => {
            let j = table.column(name)?;
            let mut names: Vec<String> = table
                .rows
                .iter()
                .map(|r| r[j].clone())
                .filter(|v| !is_missing(v))
                .collect();
            names.sort();
            names.dedup();
            let ids = table
                .rows
                .iter()
                .map(|r| names.binary_search(&r[j]).map_or(-1, |i| i as i32))
                .collect();
            (Some(ids), names)
        }
    };
    Ok(Features {
        x,
        d,
        names: prep.feature_names(),
        labels,
        label_names,
    })
}
