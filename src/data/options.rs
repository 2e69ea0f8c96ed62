//! [`TabularOptions`] and its choices. Every choice has one spelling, used alike by `FromStr`
//! (CLI flags), `Display` and serde (config files and the saved [`Preprocessor`]):
//!
//! | option | values |
//! | --- | --- |
//! | `header` | `auto`, `present`, `absent` |
//! | `missing` | `drop`, `mean`, `median`, `most-frequent` |
//! | `categorical` | `one-hot`, `label` |
//! | `scaling` | `standard`, `min-max`, `none` |
//! | `task` | `auto`, `classification`, `regression` |
//!
//! Parsing ignores case and accepts `_` for `-` (and `onehot`, `minmax`, `mode`, `drop-rows`).
//!
//! [`Preprocessor`]: super::Preprocessor

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{DataError, invalid};

/// Whether the first row of a CSV file holds column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HeaderMode {
    /// Decide from the data (the rule is in [`Table`](super::Table)).
    #[default]
    Auto,
    /// The first row is a header.
    Present,
    /// There is no header; columns are named `column1`, `column2`, ...
    Absent,
}

/// Which statistic fills a missing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Impute {
    /// The training mean (numeric columns).
    Mean,
    /// The training median (numeric columns).
    Median,
    /// The most frequent training value (ties: the smallest number, or the first category in
    /// sorted order).
    MostFrequent,
}

/// What to do with missing feature values. Categorical columns are always filled with their
/// most frequent training category (a mean of categories means nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MissingPolicy {
    /// Drop every row with a missing feature value. At transform time (new data) a missing value
    /// is then an error, since a prediction cannot drop its row.
    DropRows,
    /// Fill missing values with a statistic of the training rows.
    Impute(Impute),
}

impl Default for MissingPolicy {
    fn default() -> Self {
        MissingPolicy::Impute(Impute::Mean)
    }
}

/// How categorical feature columns become numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CategoricalEncoding {
    /// One 0/1 column per training category (`island=Biscoe`); an unseen category is all zeros.
    #[default]
    OneHot,
    /// One column of codes 0, 1, ... in sorted category order; an unseen category is an error.
    Label,
}

/// How numeric feature columns are scaled (statistics from the training rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scaling {
    /// `(x - mean) / std` (population std; a std of 0 divides by 1).
    #[default]
    Standard,
    /// `(x - min) / (max - min)` to [0, 1] on the training rows (a range of 0 divides by 1);
    /// new values outside the training range go outside [0, 1].
    MinMax,
    /// Leave the values as they are.
    None,
}

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TaskKind {
    /// Classification when the target column is categorical, or numeric with only integer
    /// values and at most [`MAX_AUTO_CLASSES`](super::MAX_AUTO_CLASSES) distinct ones;
    /// regression otherwise.
    #[default]
    Auto,
    /// Predict a class.
    Classification,
    /// Predict a number.
    Regression,
}

/// How to read and prepare a tabular CSV file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TabularOptions {
    /// The column to predict.
    pub target: String,
    /// Header row: auto-detected by default.
    #[serde(default)]
    pub header: HeaderMode,
    /// Missing feature values: imputed with the training mean by default.
    #[serde(default)]
    pub missing: MissingPolicy,
    /// Categorical features: one-hot by default.
    #[serde(default)]
    pub categorical: CategoricalEncoding,
    /// Numeric features: standardised by default.
    #[serde(default)]
    pub scaling: Scaling,
    /// Classification or regression: decided from the target column by default.
    #[serde(default)]
    pub task: TaskKind,
}

impl TabularOptions {
    /// The defaults for predicting `target`.
    pub fn new(target: impl Into<String>) -> Self {
        TabularOptions {
            target: target.into(),
            header: HeaderMode::default(),
            missing: MissingPolicy::default(),
            categorical: CategoricalEncoding::default(),
            scaling: Scaling::default(),
            task: TaskKind::default(),
        }
    }
}

/// `Display`, `FromStr` and the serde string conversions of a choice, from one table of names.
macro_rules! choice {
    ($ty:ty, $what:literal, [$($val:expr => $name:literal $(| $alias:literal)*),+ $(,)?]) => {
        impl $ty {
            /// The accepted names.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if *self == $val { return f.write_str($name); })+
                unreachable!("every value has a name")
            }
        }
        impl FromStr for $ty {
            type Err = DataError;
            fn from_str(s: &str) -> Result<Self, DataError> {
                match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                    $($name $(| $alias)* => Ok($val),)+
                    _ => invalid(format!(
                        "{} {s:?}: expected one of {}",
                        $what,
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }
        impl TryFrom<String> for $ty {
            type Error = DataError;
            fn try_from(s: String) -> Result<Self, DataError> {
                s.parse()
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.to_string()
            }
        }
    };
}

choice!(HeaderMode, "header", [
    HeaderMode::Auto => "auto",
    HeaderMode::Present => "present" | "yes" | "true",
    HeaderMode::Absent => "absent" | "no" | "false" | "none",
]);
choice!(MissingPolicy, "missing-value policy", [
    MissingPolicy::DropRows => "drop" | "drop-rows",
    MissingPolicy::Impute(Impute::Mean) => "mean",
    MissingPolicy::Impute(Impute::Median) => "median",
    MissingPolicy::Impute(Impute::MostFrequent) => "most-frequent" | "mode",
]);
choice!(CategoricalEncoding, "categorical encoding", [
    CategoricalEncoding::OneHot => "one-hot" | "onehot",
    CategoricalEncoding::Label => "label",
]);
choice!(Scaling, "scaling", [
    Scaling::Standard => "standard" | "standardize" | "standardise",
    Scaling::MinMax => "min-max" | "minmax",
    Scaling::None => "none",
]);
choice!(TaskKind, "task", [
    TaskKind::Auto => "auto",
    TaskKind::Classification => "classification",
    TaskKind::Regression => "regression",
]);
