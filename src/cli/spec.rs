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

use super::semi::SemiSpec;

/// The largest `--image-size` side: a 4096x4096 RGB image is 200 MB as f32 already.
const MAX_IMAGE_SIDE: usize = 4096;

/// Everything that defines a run. Every field has a default, so a TOML file may set any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    /// Model name (`mlp`, `linear`, `lenet`, `vgg`, `resnet18`).
    pub model: String,
    /// Dataset: `digits`, `fashion-mnist`, a path to a CSV file, or a folder of images
    /// (`DIR/<class>/*.png|jpg`, see [`data::images`]).
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
    /// Image folders: resize every image to `N` (square) or `HxW` (none: keep the files' size,
    /// which must then be the same for all).
    pub image_size: Option<String>,
    /// Image folders: 1 (grey) or 3 (RGB) channels (none: RGB if any image has colour).
    pub channels: Option<usize>,
    /// Training augmentation of image data: `none`, or a comma list of `crop` and `flip`.
    pub augment: String,
    /// Zero padding per side of the random crop (`augment` with `crop`).
    pub crop_padding: usize,
    /// Train on a subset of the built-in dataset's classes (`0-4`, `5,6,7,8,9`), relabelled
    /// 0..k-1 in the order given, class names kept.
    pub classes: Option<String>,
    /// Transfer learning: initialise the model from this checkpoint (a run directory or a
    /// `.safetensors` file), matching tensors by name (see `kiln::nn::load`).
    pub init_from: Option<String>,
    /// Name patterns of tensors not to load from `init_from`.
    pub init_skip: Vec<String>,
    /// Every tensor must match (true), or load what fits and report the rest (false).
    pub init_strict: bool,
    /// Re-initialise the classifier head even when the class count matches (new classes).
    pub new_head: bool,
    /// Name patterns of parameters to freeze (`features.*`).
    pub freeze: Vec<String>,
    /// Language models: `char` (one id per character of the corpus), `bpe` (byte-level BPE
    /// trained on the corpus to `bpe_vocab` ids), `gpt2` (GPT-2's embedded 50,257-token BPE),
    /// or the path of a `tokenizer.json`.
    pub tokenizer: String,
    /// Vocabulary size of a `bpe` tokenizer trained on the corpus.
    pub bpe_vocab: usize,
    /// Language models: tokens per training window, T (none: 64).
    pub context: Option<usize>,
    /// Language models: transformer blocks (gpt) or recurrent layers (lstm, gru, rnn).
    pub layers: Option<usize>,
    /// GPT attention heads.
    pub heads: Option<usize>,
    /// GPT model width, or the recurrent hidden size.
    pub width: Option<usize>,
    /// Language models: dropout in training.
    pub dropout: Option<f32>,
    /// Training settings.
    pub train: TrainConfig,
    /// Semi-supervised learning (`[semi]`; left out of files when unused).
    #[serde(skip_serializing_if = "SemiSpec::is_off")]
    pub semi: SemiSpec,
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
            image_size: None,
            channels: None,
            augment: "none".into(),
            crop_padding: 4,
            classes: None,
            init_from: None,
            init_skip: Vec::new(),
            init_strict: true,
            new_head: false,
            freeze: Vec::new(),
            tokenizer: "char".into(),
            bpe_vocab: 512,
            context: None,
            layers: None,
            heads: None,
            width: None,
            dropout: None,
            train: TrainConfig::default(),
            semi: SemiSpec::default(),
        }
    }
}

/// `file: <error>` for a TOML error, each line cut to 200 characters: the parser quotes the
/// offending source line, which may be megabytes long.
pub fn toml_error(file: &Path, e: &dyn std::fmt::Display) -> String {
    let lines: Vec<String> = e
        .to_string()
        .lines()
        .map(|l| match l.char_indices().nth(200) {
            Some((end, _)) => format!("{}... ({} characters)", &l[..end], l.chars().count()),
            None => l.to_string(),
        })
        .collect();
    format!("{}: {}", file.display(), lines.join("\n"))
}

impl RunSpec {
    /// Read a TOML run file (`--config`); unknown keys are errors naming the key.
    pub fn from_toml_file(path: &Path) -> Result<RunSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("--config {}: cannot read it ({e})", path.display()))
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parse a TOML run file's text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<RunSpec> {
        toml::from_str(text).map_err(|e| Error::Config(toml_error(file, &e)))
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

    /// True when `model` is a language model (`gpt`, `lstm`, `gru`, `rnn`), which trains on
    /// text.
    pub fn is_text(&self) -> bool {
        crate::models::SEQUENCE_MODEL_NAMES.contains(&self.model.as_str())
    }

    /// Load and split the data; the training split of image data carries the augmentation.
    pub fn load_data(&self) -> Result<PreparedData> {
        if self.is_text() {
            return super::text_data::load_text(self, None);
        }
        let mut data = self.load_splits()?;
        if let Some(n) = self.semi.labeled {
            if data.unlabeled.is_some() {
                return Err(Error::Config(format!(
                    "--labeled {n} hides labels for an experiment, but {} already has \
                     unlabelled rows; use one or the other",
                    self.data
                )));
            }
            super::semi::keep_labels(&mut data, n, self.train.seed)?;
        }
        if self.semi.unlabeled.is_some() && data.preprocessor.is_none() {
            return Err(Error::Config(format!(
                "--unlabeled FILE adds rows to CSV data; {} is not a CSV file",
                self.data
            )));
        }
        if let Some(aug) = self.augmentation(data.image)? {
            data.train = Arc::new(data::images::Augmented::new(data.train.clone(), aug)?);
        }
        Ok(data)
    }

    /// The training augmentation `augment` asks for, for images of shape `image`.
    fn augmentation(
        &self,
        image: Option<(usize, usize, usize)>,
    ) -> Result<Option<data::images::CropFlip>> {
        let (mut crop, mut flip) = (false, false);
        for part in self.augment.split(',').map(str::trim) {
            match part {
                "none" | "" => {}
                "crop" => crop = true,
                "flip" => flip = true,
                other => {
                    return Err(Error::Config(format!(
                        "--augment: unknown augmentation {other:?}; use none, or a comma list of crop, flip"
                    )));
                }
            }
        }
        if !(crop || flip) {
            return Ok(None);
        }
        let shape = image.ok_or_else(|| {
            Error::Config(format!(
                "--augment {}: augmentation needs image data (an image folder, digits, fashion-mnist)",
                self.augment
            ))
        })?;
        let (_, h, w) = shape;
        if crop && self.crop_padding > h.max(w) {
            return Err(Error::Config(format!(
                "--crop-padding {}: larger than the images ({h}x{w}); a random crop would be \
                 almost all padding (4 suits 32x32 images)",
                self.crop_padding
            )));
        }
        Ok(Some(data::images::CropFlip {
            shape,
            padding: if crop { self.crop_padding } else { 0 },
            flip,
        }))
    }

    /// The image loading options `image_size` and `channels` ask for.
    fn image_options(&self) -> Result<data::images::ImageOptions> {
        let size = match self.image_size.as_deref().map(str::trim) {
            None => None,
            Some(t) => {
                let num = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
                let hw = match t.split_once(['x', 'X']) {
                    Some((h, w)) => num(h).zip(num(w)),
                    None => num(t).map(|n| (n, n)),
                };
                let (h, w) = hw.ok_or_else(|| {
                    Error::Config(format!(
                        "--image-size {t:?}: expected a size like 28 or 32x48 (HxW)"
                    ))
                })?;
                if h.max(w) > MAX_IMAGE_SIDE {
                    return Err(Error::Config(format!(
                        "--image-size {t}: at most {MAX_IMAGE_SIDE} pixels a side (one \
                         {h}x{w} image would take {} as f32)",
                        crate::tensor::human_bytes((h as u64).saturating_mul(w as u64 * 12))
                    )));
                }
                Some((h, w))
            }
        };
        let channels = match self.channels {
            None => data::images::Channels::Infer,
            Some(n) => data::images::Channels::from_count(n)?,
        };
        Ok(data::images::ImageOptions { size, channels })
    }

    /// An image folder split into train / validation / test: `DIR/train` and `DIR/test` when
    /// both exist (validation comes from train), else a stratified split of `DIR`. The
    /// per-channel normalisation is fitted on the training split and applied to all three.
    fn load_image_folder(&self, dir: &Path, fractions: SplitFractions) -> Result<PreparedData> {
        use data::images::{ChannelNorm, ImageFolder, ImagePrep};
        let opts = self.image_options()?;
        let seed = self.train.seed;
        let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
        let (train, val, test, skipped) = if train_dir.is_dir() && test_dir.is_dir() {
            let full = ImageFolder::load(&train_dir, &opts)?;
            let (c, h, w) = full.shape();
            let test_opts = data::images::ImageOptions {
                size: Some((h, w)),
                channels: data::images::Channels::from_count(c)?,
            };
            let test = ImageFolder::load_with_classes(&test_dir, &test_opts, full.class_names())?;
            let labels = full
                .dataset
                .labels()
                .map(<[u32]>::to_vec)
                .unwrap_or_default();
            let f = SplitFractions {
                train: 1.0 - self.val_fraction,
                val: self.val_fraction,
                test: 0.0,
            };
            let s = data::stratified_split(&labels, f, seed);
            (
                full.dataset.subset(&s.train)?,
                full.dataset.subset(&s.val)?,
                test.dataset,
                full.skipped + test.skipped,
            )
        } else {
            let all = ImageFolder::load(dir, &opts)?;
            let labels = all
                .dataset
                .labels()
                .map(<[u32]>::to_vec)
                .unwrap_or_default();
            let s = data::stratified_split(&labels, fractions, seed);
            (
                all.dataset.subset(&s.train)?,
                all.dataset.subset(&s.val)?,
                all.dataset.subset(&s.test)?,
                all.skipped,
            )
        };
        let shape = match train.feature_shape().as_slice() {
            &[c, h, w] => (c, h, w),
            _ => (0, 0, 0),
        };
        let prep = ImagePrep {
            channels: shape.0,
            height: shape.1,
            width: shape.2,
            class_names: train
                .class_names()
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            norm: ChannelNorm::fit_dataset(&train)?,
        };
        let (train, val, test) = (
            prep.normalize(train)?,
            prep.normalize(val)?,
            prep.normalize(test)?,
        );
        let skip_note = if skipped > 0 {
            format!(" ({skipped} non-image files skipped)")
        } else {
            String::new()
        };
        let report = format!(
            "{}: {}x{} images, {} channel{}, {} classes; {} train / {} val / {} test{skip_note}",
            dir.display(),
            shape.1,
            shape.2,
            shape.0,
            if shape.0 == 1 { "" } else { "s" },
            prep.class_names.len(),
            train.len(),
            val.len(),
            test.len()
        );
        let mut data = PreparedData::new(train, val, test, None, report, Some(shape))?;
        data.image_prep = Some(prep);
        Ok(data)
    }

    /// `data` restricted to [`RunSpec::classes`] (unchanged when none are chosen).
    fn class_subset(&self, data: InMemoryDataset) -> Result<InMemoryDataset> {
        match &self.classes {
            None => Ok(data),
            Some(c) => {
                let classes = crate::data::classes::parse_classes(c)
                    .map_err(|e| Error::Config(format!("--classes: {e}")))?;
                crate::data::classes::select_classes(&data, &classes)
                    .map_err(|e| Error::Config(format!("--classes: {e}")))
            }
        }
    }

    /// `10 classes`, or `classes 5,6,7 of 10 ...` for a subset.
    fn classes_note(&self, all: usize) -> String {
        match &self.classes {
            None => format!("{all} classes"),
            Some(c) => format!("classes {c} of {all} (relabelled from 0)"),
        }
    }

    fn load_splits(&self) -> Result<PreparedData> {
        let fractions = SplitFractions {
            train: 1.0 - self.val_fraction - self.test_fraction,
            val: self.val_fraction,
            test: self.test_fraction,
        };
        fractions.validate()?;
        let seed = self.train.seed;
        match self.data.as_str() {
            "digits" => {
                let all = self.class_subset(data::digits()?)?;
                let labels = all.labels().map(<[u32]>::to_vec).unwrap_or_default();
                let s = data::stratified_split(&labels, fractions, seed);
                let (train, val, test) = (
                    all.subset(&s.train)?,
                    all.subset(&s.val)?,
                    all.subset(&s.test)?,
                );
                let report = format!(
                    "digits: 1,797 8x8 images (UCI via scikit-learn), {}; {} train / {} val / {} test",
                    self.classes_note(10),
                    train.len(),
                    val.len(),
                    test.len()
                );
                PreparedData::new(train, val, test, None, report, Some((1, 8, 8)))
            }
            "fashion-mnist" => {
                let (full, test) = data::fashion_mnist(None)?;
                let (full, test) = (self.class_subset(full)?, self.class_subset(test)?);
                let labels = full.labels().map(<[u32]>::to_vec).unwrap_or_default();
                let f = SplitFractions {
                    train: 1.0 - self.val_fraction,
                    val: self.val_fraction,
                    test: 0.0,
                };
                let s = data::stratified_split(&labels, f, seed);
                let (train, val) = (full.subset(&s.train)?, full.subset(&s.val)?);
                let report = format!(
                    "fashion-mnist: 28x28 images, {}; {} train / {} val / {} test",
                    self.classes_note(10),
                    train.len(),
                    val.len(),
                    test.len()
                );
                PreparedData::new(train, val, test, None, report, Some((1, 28, 28)))
            }
            path => {
                if let Some(c) = &self.classes {
                    return Err(Error::Config(format!(
                        "--classes {c}: class subsets work with the built-in datasets (digits, \
                         fashion-mnist), not with {path}"
                    )));
                }
                let p = PathBuf::from(path);
                if p.is_dir() {
                    return self.load_image_folder(&p, fractions);
                }
                if self.image_size.is_some() || self.channels.is_some() {
                    return Err(Error::Config(format!(
                        "--image-size and --channels apply to image folders; {path:?} is not a directory"
                    )));
                }
                if !p.exists() {
                    return Err(Error::Config(format!(
                        "--data {path:?}: no such file, and not a built-in dataset (digits, fashion-mnist)"
                    )));
                }
                let t = data::load_tabular(&p, &self.tabular_options()?, fractions, seed)?;
                let mut d = PreparedData::new(t.train, t.val, t.test, None, t.report, None)?;
                if self.semi.on() {
                    d.unlabeled =
                        super::semi::csv_unlabeled(&self.semi, &t.preprocessor, &t.unlabeled)?;
                }
                d.preprocessor = Some(t.preprocessor);
                Ok(d)
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
    /// Image shape (C, H, W) of image data (None for CSV data).
    pub image: Option<(usize, usize, usize)>,
    /// How an image folder was loaded and normalised (saved with the model), if the data is one.
    pub image_prep: Option<data::images::ImagePrep>,
    /// Text data: the tokenizer and the unigram baseline (see [`super::text_data`]).
    pub text: Option<super::text_data::TextInfo>,
    /// Unlabelled examples (semi-supervised training; see [`super::semi`]).
    pub unlabeled: Option<Arc<dyn Dataset>>,
    /// The hidden labels of the unlabelled examples, when `--labeled N` hid them.
    pub hidden_labels: Option<Vec<u32>>,
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
            image_prep: None,
            text: None,
            unlabeled: None,
            hidden_labels: None,
        })
    }
}
