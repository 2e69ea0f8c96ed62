//! `kiln train --semi pseudo|fixmatch|spread`: semi-supervised classification.
//!
//! Unlabelled examples come from the rows of a CSV whose target is empty, from `--unlabeled
//! FILE` (a CSV with the same feature columns), or, for experiments, from `--labeled N`: the
//! training split keeps N labels (stratified) and the rest lose theirs (their hidden labels
//! only score the pseudo-labels at the end; without `--semi` the run is the supervised
//! baseline on the N labels alone). The validation and test splits stay labelled and
//! untouched.
//!
//! - `pseudo` and `fixmatch` train the network in the one loop with
//!   [`SemiSupervised`](crate::train::semi::SemiSupervised) as the objective; an epoch covers
//!   the unlabelled set once (the labelled set is repeated to match).
//! - `spread` trains no network: [`LabelSpreading`] over a k-NN graph of the training
//!   features (labelled and unlabelled), and the test split takes the labels of its
//!   neighbours. The run directory holds config.toml and summary.json only.

use std::path::Path;
use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::spec::{PreparedData, RunSpec};
use super::{Error, Result};
use crate::data::images::{CropFlip, Strong};
use crate::data::{Dataset, InMemoryDataset, Preprocessor, Table, Targets, permutation};
use crate::error::{Error as KError, Result as KResult};
use crate::train::semi::{Cycled, SemiMethod, SemiOptions, SemiSupervised};
use crate::train::{Task, metrics};
use crate::unsupervised::LabelSpreading;

/// The semi-supervised flags of `kiln train` (flattened into it).
#[derive(Debug, Args, Default, Clone)]
pub struct SemiArgs {
    /// Semi-supervised learning: pseudo (pseudo-labelling), fixmatch (image data: weak and
    /// strong augmentations), spread (label spreading over a k-NN graph; no network), none.
    #[arg(long, value_name = "pseudo|fixmatch|spread|none")]
    pub semi: Option<String>,
    /// Keep the labels of N training examples (stratified by class) and treat the others as
    /// unlabelled: the classic low-label experiment.
    #[arg(long, value_name = "N")]
    pub labeled: Option<usize>,
    /// CSV data: unlabelled rows from FILE (the same feature columns; a target column may be
    /// absent or empty).
    #[arg(long, value_name = "FILE")]
    pub unlabeled: Option<String>,
    /// Confidence a prediction needs to become a pseudo-label, in (0, 1) (default 0.95).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Weight of the unlabelled loss term (default 1).
    #[arg(long)]
    pub unlabeled_weight: Option<f32>,
    /// Unlabelled examples per labelled one in a step (default 7).
    #[arg(long)]
    pub unlabeled_ratio: Option<usize>,
    /// Epochs of supervised training before the unlabelled term starts (default 0).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// --semi spread: neighbours per point in the k-NN graph (default 7).
    #[arg(long)]
    pub neighbours: Option<usize>,
}

/// The `[semi]` table of a run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemiSpec {
    /// `none`, `pseudo`, `fixmatch` or `spread`.
    pub method: String,
    /// Labels kept in the training split (the rest become unlabelled).
    pub labeled: Option<usize>,
    /// A CSV of unlabelled rows.
    pub unlabeled: Option<String>,
    /// Pseudo-label confidence threshold.
    pub threshold: f32,
    /// Weight of the unlabelled term.
    pub weight: f32,
    /// Unlabelled examples per labelled one.
    pub ratio: usize,
    /// Supervised epochs first.
    pub warmup: usize,
    /// Label spreading: neighbours.
    pub neighbours: usize,
    /// Label spreading: alpha.
    pub alpha: f32,
}

impl Default for SemiSpec {
    fn default() -> Self {
        SemiSpec {
            method: "none".into(),
            labeled: None,
            unlabeled: None,
            threshold: 0.95,
            weight: 1.0,
            ratio: 7,
            warmup: 0,
            neighbours: 7,
            alpha: 0.2,
        }
    }
}

impl SemiSpec {
    /// True when no semi-supervised setting is used (the table is then left out of files).
    pub fn is_off(&self) -> bool {
        *self == SemiSpec::default()
    }

    /// True for pseudo, fixmatch and spread.
    pub fn on(&self) -> bool {
        self.method != "none"
    }

    /// The objective's options (pseudo / fixmatch).
    fn options(&self, seed: u64) -> Result<SemiOptions> {
        let method = match self.method.as_str() {
            "pseudo" => SemiMethod::Pseudo,
            "fixmatch" => SemiMethod::FixMatch,
            other => {
                return Err(Error(format!(
                    "--semi {other:?}: use pseudo, fixmatch, spread or none"
                )));
            }
        };
        let o = SemiOptions {
            method,
            threshold: self.threshold,
            weight: self.weight,
            ratio: self.ratio,
            warmup: self.warmup,
            seed,
        };
        o.validate()?;
        Ok(o)
    }

    /// Check the settings, naming the flag that is off.
    pub fn validate(&self) -> Result<()> {
        match self.method.as_str() {
            "none" => {
                if self.unlabeled.is_some() {
                    return Err(Error(
                        "--unlabeled goes with --semi pseudo, fixmatch or spread".into(),
                    ));
                }
                Ok(())
            }
            "spread" => {
                if self.neighbours == 0 || self.neighbours > 1000 {
                    return Err(Error(format!(
                        "--neighbours {}: between 1 and 1000",
                        self.neighbours
                    )));
                }
                Ok(())
            }
            _ => self.options(0).map(|_| ()),
        }
    }
}

/// Set in `s` what the flags of `a` give.
pub fn apply_flags(a: &SemiArgs, s: &mut SemiSpec) {
    if let Some(m) = &a.semi {
        s.method = m.clone();
    }
    if a.labeled.is_some() {
        s.labeled = a.labeled;
    }
    if a.unlabeled.is_some() {
        s.unlabeled = a.unlabeled.clone();
    }
    let set = |v: Option<f32>, f: &mut f32| v.into_iter().for_each(|v| *f = v);
    set(a.threshold, &mut s.threshold);
    set(a.unlabeled_weight, &mut s.weight);
    let set = |v: Option<usize>, f: &mut usize| v.into_iter().for_each(|v| *f = v);
    set(a.unlabeled_ratio, &mut s.ratio);
    set(a.warmup, &mut s.warmup);
    set(a.neighbours, &mut s.neighbours);
}

/// Every example of `d` as one host batch.
fn all_of(d: &dyn Dataset) -> crate::data::Batch {
    d.batch(&(0..d.len()).collect::<Vec<_>>())
}

/// Unlabelled examples `(U, F)` as a dataset of `classes` classes (its labels are 0 and never
/// read).
fn unlabeled_dataset(x: Vec<f32>, shape: Vec<usize>, classes: usize) -> KResult<InMemoryDataset> {
    let n = x.len() / shape.iter().product::<usize>().max(1);
    let targets = Targets::Classes {
        labels: vec![0; n],
        num_classes: classes.max(1),
    };
    Ok(InMemoryDataset::new(x, shape, targets)?)
}

/// CSV data: the rows of the file whose target is empty (`rows`), plus `--unlabeled FILE`,
/// prepared by the preprocessor fitted on the training rows.
pub(super) fn csv_unlabeled(
    s: &SemiSpec,
    pre: &Preprocessor,
    rows: &Table,
) -> KResult<Option<Arc<dyn Dataset>>> {
    let classes = pre.class_names().map_or(0, <[String]>::len);
    let mut x = pre.transform(rows)?;
    if let Some(f) = &s.unlabeled {
        x.extend(pre.transform(&pre.read_csv(Path::new(f))?)?);
    }
    if x.is_empty() {
        return Ok(None);
    }
    let shape = vec![pre.num_features()];
    Ok(Some(Arc::new(unlabeled_dataset(x, shape, classes)?)))
}

/// `--labeled N`: keep N labels of the training split (round-robin over the classes in a
/// seeded order, so every class gets one before any gets two) and move the rest to
/// `data.unlabeled`, their labels to `data.hidden_labels`.
pub(super) fn keep_labels(data: &mut PreparedData, n: usize, seed: u64) -> KResult<()> {
    let b = all_of(data.train.as_ref());
    let Targets::Classes {
        labels,
        num_classes,
    } = &b.y
    else {
        return Err(KError::Config(
            "--labeled: semi-supervised training needs a classification task".into(),
        ));
    };
    if n < *num_classes || n >= labels.len() {
        return Err(KError::Config(format!(
            "--labeled {n}: keep from {num_classes} (one per class) to {} (fewer than the {} \
             training examples)",
            labels.len().saturating_sub(1),
            labels.len()
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); *num_classes];
    for i in permutation(labels.len(), seed, 0x4c41_4245) {
        by_class[labels[i] as usize].push(i);
    }
    let mut keep = vec![false; labels.len()];
    let (mut kept, mut round) = (0, 0);
    while kept < n {
        for rows in &by_class {
            if kept < n && round < rows.len() {
                keep[rows[round]] = true;
                kept += 1;
            }
        }
        round += 1;
    }
    let per: usize = b.x_shape[1..].iter().product();
    let (mut xl, mut yl, mut xu, mut hidden) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &k) in keep.iter().enumerate() {
        let row = &b.x[i * per..(i + 1) * per];
        if k {
            xl.extend_from_slice(row);
            yl.push(labels[i]);
        } else {
            xu.extend_from_slice(row);
            hidden.push(labels[i]);
        }
    }
    let shape = b.x_shape[1..].to_vec();
    let mut labelled = InMemoryDataset::new(
        xl,
        shape.clone(),
        Targets::Classes {
            labels: yl,
            num_classes: *num_classes,
        },
    )?;
    if let Task::Classification { class_names } = &data.task {
        labelled = labelled.with_class_names(class_names.clone())?;
    }
    data.train = Arc::new(labelled);
    data.unlabeled = Some(Arc::new(unlabeled_dataset(xu, shape, *num_classes)?));
    data.hidden_labels = Some(hidden);
    Ok(())
}

/// What `kiln train` runs for a semi-supervised spec: the objective (the training set
/// replaced by the labelled set repeated over an epoch of unlabelled data), and one line for
/// the terminal.
pub(super) fn objective(
    spec: &RunSpec,
    data: &mut PreparedData,
    gpu: &Arc<crate::Gpu>,
) -> Result<Option<SemiSupervised>> {
    let s = &spec.semi;
    if !s.on() {
        return Ok(None);
    }
    let opts = s.options(spec.train.seed)?;
    let unlabeled = unlabeled_of(data)?;
    let mut obj = SemiSupervised::new(
        gpu,
        data.task.clone(),
        unlabeled.clone(),
        spec.train.batch_size,
        opts,
    )?;
    if opts.method == SemiMethod::FixMatch {
        let shape = data.image.ok_or_else(|| {
            Error("--semi fixmatch augments images; use --semi pseudo for tables".into())
        })?;
        let strong = Strong::for_shape(shape);
        let weak = CropFlip {
            shape,
            padding: strong.shift,
            flip: spec.augment.contains("flip"),
        };
        obj = obj.with_augment(Arc::new(weak), Arc::new(strong));
    }
    data.train = Arc::new(Cycled::covering(
        data.train.clone(),
        unlabeled.len(),
        s.ratio,
    ));
    Ok(Some(obj))
}

/// The unlabelled examples, or an error saying where they come from.
fn unlabeled_of(data: &PreparedData) -> Result<Arc<dyn Dataset>> {
    data.unlabeled
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error(
                "semi-supervised training found no unlabelled examples: leave the target empty \
             in some CSV rows, pass --unlabeled FILE, or --labeled N to hide labels"
                    .into(),
            )
        })
}

/// `--semi spread`: label spreading on the training features, scored on the test split.
/// Returns the summary fields.
pub(super) fn spread(
    spec: &RunSpec,
    data: &PreparedData,
    gpu: &Arc<crate::Gpu>,
) -> Result<serde_json::Value> {
    let unlabeled = unlabeled_of(data)?;
    let (l, u, t) = (
        all_of(data.train.as_ref()),
        all_of(unlabeled.as_ref()),
        all_of(data.test.as_ref()),
    );
    let Targets::Classes {
        labels,
        num_classes,
    } = &l.y
    else {
        return Err(Error("--semi spread needs a classification task".into()));
    };
    let d: usize = l.x_shape[1..].iter().product();
    let x = [l.x.as_slice(), u.x.as_slice()].concat();
    let mut given: Vec<Option<u32>> = labels.iter().map(|&c| Some(c)).collect();
    given.resize(x.len() / d, None);
    let ls = LabelSpreading {
        k: spec.semi.neighbours,
        alpha: spec.semi.alpha,
        ..LabelSpreading::default()
    };
    let fit = ls.fit_on(gpu, &x, d, &given, *num_classes)?;
    let spread_labels = fit.labels();
    let mut out = serde_json::json!({
        "method": "spread",
        "labelled": labels.len(),
        "unlabelled": u.x.len() / d,
        "neighbours": ls.k,
        "alpha": ls.alpha,
        "iterations": fit.iterations,
    });
    if let Some(h) = &data.hidden_labels {
        let right = h
            .iter()
            .zip(&spread_labels[labels.len()..])
            .filter(|(a, b)| a == b)
            .count();
        out["unlabelled_accuracy"] = (right as f64 / h.len().max(1) as f64).into();
    }
    if let Targets::Classes { labels: truth, .. } = &t.y
        && !truth.is_empty()
    {
        let pred = fit.predict(&t.x, d)?;
        let m = metrics::classification(&pred, truth, *num_classes);
        out["test_accuracy"] = m.accuracy.into();
        out["test_macro_f1"] = m.macro_f1.into();
        out["test_examples"] = truth.len().into();
    }
    Ok(out)
}

/// One line on the unlabelled examples for the terminal.
pub(super) fn describe(data: &PreparedData, spec: &RunSpec) -> Option<String> {
    let u = data.unlabeled.as_ref()?;
    Some(format!(
        "semi:   {} on {} labelled + {} unlabelled examples{}",
        spec.semi.method,
        crate::show::digits(data.train.len()),
        crate::show::digits(u.len()),
        match spec.semi.method.as_str() {
            "spread" => format!(" ({} neighbours)", spec.semi.neighbours),
            _ => format!(
                " (threshold {}, {} unlabelled per labelled, weight {}, warm-up {} epochs)",
                spec.semi.threshold, spec.semi.ratio, spec.semi.weight, spec.semi.warmup
            ),
        }
    ))
}

/// `kiln train --semi spread`: write config.toml, spread the labels, score the test split,
/// write summary.json and say what came out.
pub(super) fn spread_run(
    spec: &RunSpec,
    data: &PreparedData,
    dir: &Path,
    resume: bool,
    gpu: &Arc<crate::Gpu>,
) -> Result<()> {
    if !resume {
        crate::io::write_atomic(&dir.join("config.toml"), spec.to_toml().as_bytes())?;
    }
    let start = std::time::Instant::now();
    let semi = spread(spec, data, gpu)?;
    let wall = start.elapsed().as_secs_f64();
    let mut s = serde_json::json!({
        "model": "label-spreading",
        "data": spec.data,
        "wall_seconds": wall,
        "semi": semi,
    });
    for key in ["test_accuracy", "test_macro_f1", "test_examples"] {
        if let Some(v) = s["semi"].get(key).cloned() {
            s[key] = v;
        }
    }
    let text = serde_json::to_string_pretty(&s).unwrap_or_default();
    crate::io::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    let pct = |k: &str| s[k].as_f64().map(|v| format!("{:.2} %", 100.0 * v));
    println!(
        "label spreading ({} neighbours, {} iterations) in {wall:.1}s: test accuracy {} on {} \
         examples{}",
        s["semi"]["neighbours"],
        s["semi"]["iterations"],
        pct("test_accuracy").unwrap_or_else(|| "not measured (no test split)".into()),
        s["test_examples"],
        s["semi"]["unlabelled_accuracy"]
            .as_f64()
            .map(|v| format!("; hidden labels recovered {:.2} %", 100.0 * v))
            .unwrap_or_default()
    );
    println!("run directory: {}", dir.display());
    Ok(())
}

/// After a pseudo / fixmatch run: how the model treats the unlabelled examples (printed unless
/// `quiet`), for summary.json.
pub(super) fn pseudo_label_summary(
    gpu: &Arc<crate::Gpu>,
    model: &mut dyn crate::nn::Module,
    data: &PreparedData,
    spec: &RunSpec,
    quiet: bool,
) -> Result<Option<serde_json::Value>> {
    let Some(u) = data.unlabeled.as_ref().filter(|_| spec.semi.on()) else {
        return Ok(None);
    };
    let th = spec.semi.threshold;
    let hidden = data.hidden_labels.as_deref();
    let r = crate::train::semi::pseudo_label_report(gpu, model, u.as_ref(), hidden, th)?;
    if !quiet {
        let pct = |v: f64| format!("{:.1} %", 100.0 * v);
        let right = match (r.confident_accuracy, r.accuracy) {
            (Some(c), Some(a)) => format!(
                "; hidden labels: {} of the confident ones right, {} of all",
                pct(c),
                pct(a)
            ),
            _ => String::new(),
        };
        println!(
            "unlabelled: {} examples, {} predicted above {th}{right}",
            crate::show::digits(r.examples),
            pct(r.confident)
        );
    }
    let mut v = serde_json::to_value(r)?;
    v["method"] = spec.semi.method.clone().into();
    Ok(Some(v))
}
