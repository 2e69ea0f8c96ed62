//! What a run is made of — data, model, training settings — as one serialisable [`RunSpec`].
//!
//! The resolved spec is written to `config.toml` in the run directory and into every checkpoint,
//! so `kiln train --resume`, `kiln eval` and `kiln predict` rebuild the same data split,
//! preprocessing and network.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{
    self, CategoricalEncoding, Dataset, InMemoryDataset, MissingPolicy, Preprocessor, Scaling,
    SplitFractions, TabularOptions, Targets,
};
use crate::error::{Error, Result};
use crate::train::{Task, TrainConfig};

/// Everything that defines a run. Every field has a default, so a TOML file may set any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    /// Model name (`mlp`, `linear`, `lenet`, `vgg`, `resnet18`).
    pub model: String,
    /// Dataset: `digits`, `fashion-mnist`, or a path to a CSV file.
    pub data: String,
    /// Target column (CSV only).
    pub target: Option<String>,
    /// Fraction of examples for validation (digits/CSV; Fashion-MNIST takes it from train).
    pub val_fraction: f64,
    /// Fraction of examples for the test split (digits/CSV; Fashion-MNIST has its own).
    pub test_fraction: f64,
    /// CSV missing values: `drop`, `mean`, `median`, `most-frequent`.
    pub missing: String,
    /// CSV categorical encoding: `one-hot` or `label`.
    pub encoding: String,
    /// CSV numeric scaling: `standard`, `min-max` or `none`.
    pub scaling: String,
    /// Training settings.
    pub train: TrainConfig,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            model: "mlp".into(),
            data: "digits".into(),
            target: None,
            val_fraction: 0.15,
            test_fraction: 0.15,
            missing: "median".into(),
            encoding: "one-hot".into(),
            scaling: "standard".into(),
            train: TrainConfig::default(),
        }
    }
}

impl RunSpec {
    /// Read a TOML run file (`--config`); unknown keys are errors naming the key.
    pub fn from_toml_file(path: &Path) -> Result<RunSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::error::io_err(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The spec as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Short dataset label for run-directory names.
    pub fn data_label(&self) -> String {
        match self.data.as_str() {
            "digits" | "fashion-mnist" => self.data.clone(),
            p => Path::new(p)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "csv".into()),
        }
    }

    fn tabular_options(&self) -> Result<TabularOptions> {
        let target = self.target.clone().ok_or_else(|| {
            Error::Config(format!(
                "--data {} is a CSV file: say which column to predict with --target COLUMN",
                self.data
            ))
        })?;
        let mut o = TabularOptions::new(target);
        o.missing = self.missing.parse::<MissingPolicy>()?;
        o.categorical = self.encoding.parse::<CategoricalEncoding>()?;
        o.scaling = self.scaling.parse::<Scaling>()?;
        Ok(o)
    }

    /// Load and split the data.
    pub fn load_data(&self) -> Result<PreparedData> {
        let fractions = SplitFractions {
            train: 1.0 - self.val_fraction - self.test_fraction,
            val: self.val_fraction,
            test: self.test_fraction,
        };
        fractions.validate()?;
        let seed = self.train.seed;
        match self.data.as_str() {
            "digits" => {
                let all = data::digits()?;
                let labels = all.labels().map(<[u32]>::to_vec).unwrap_or_default();
                let s = data::stratified_split(&labels, fractions, seed);
                let (train, val, test) = (
                    all.subset(&s.train)?,
                    all.subset(&s.val)?,
                    all.subset(&s.test)?,
                );
                let report = format!(
                    "digits: 1,797 8x8 images (UCI via scikit-learn), 10 classes; {} train / {} val / {} test",
                    train.len(),
                    val.len(),
                    test.len()
                );
                PreparedData::new(train, val, test, None, report, Some((1, 8, 8)))
            }
            "fashion-mnist" => {
                let (full, test) = data::fashion_mnist(None)?;
                let labels = full.labels().map(<[u32]>::to_vec).unwrap_or_default();
                let f = SplitFractions {
                    train: 1.0 - self.val_fraction,
                    val: self.val_fraction,
                    test: 0.0,
                };
                let s = data::stratified_split(&labels, f, seed);
                let (train, val) = (full.subset(&s.train)?, full.subset(&s.val)?);
                let report = format!(
                    "fashion-mnist: 28x28 images, 10 classes; {} train / {} val / {} test",
                    train.len(),
                    val.len(),
                    test.len()
                );
                PreparedData::new(train, val, test, None, report, Some((1, 28, 28)))
            }
            path => {
                let p = PathBuf::from(path);
                if !p.exists() {
                    return Err(Error::Config(format!(
                        "--data {path:?}: no such file, and not a built-in dataset (digits, fashion-mnist)"
                    )));
                }
                let t = data::load_tabular(&p, &self.tabular_options()?, fractions, seed)?;
                PreparedData::new(t.train, t.val, t.test, Some(t.preprocessor), t.report, None)
            }
        }
    }
}

/// Data ready for training.
pub struct PreparedData {
    /// Training split.
    pub train: Arc<dyn Dataset>,
    /// Validation split.
    pub val: Arc<dyn Dataset>,
    /// Test split.
    pub test: Arc<dyn Dataset>,
    /// The task the targets define.
    pub task: Task,
    /// Features per example.
    pub input: usize,
    /// Outputs the model needs (classes, or regression width).
    pub output: usize,
    /// Fitted CSV preprocessing (saved with the model), if the data is a CSV file.
    pub preprocessor: Option<Preprocessor>,
    /// A human-readable account of the data.
    pub report: String,
    /// Image shape (C, H, W) of the built-in image datasets (None for CSV data).
    pub image: Option<(usize, usize, usize)>,
}

impl PreparedData {
    fn new(
        train: InMemoryDataset,
        val: InMemoryDataset,
        test: InMemoryDataset,
        preprocessor: Option<Preprocessor>,
        report: String,
        image: Option<(usize, usize, usize)>,
    ) -> Result<PreparedData> {
        let input = train.feature_len();
        let (task, output) = match train.targets() {
            Targets::Classes { num_classes, .. } => {
                let names = train
                    .class_names()
                    .map(<[String]>::to_vec)
                    .unwrap_or_else(|| (0..*num_classes).map(|c| c.to_string()).collect());
                (Task::Classification { class_names: names }, *num_classes)
            }
            Targets::Values { width, .. } => (Task::Regression { width: *width }, *width),
        };
        if train.is_empty() {
            return Err(Error::Config(
                "the training split is empty; lower --val-fraction/--test-fraction".into(),
            ));
        }
        Ok(PreparedData {
            train: Arc::new(train),
            val: Arc::new(val),
            test: Arc::new(test),
            task,
            input,
            output,
            preprocessor,
            report,
            image,
        })
    }
}
