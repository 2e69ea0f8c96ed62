//! `kiln train`: train a model on a dataset, log it, checkpoint it, test it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::spec::{PreparedData, RunSpec};
use super::{Error, Result, open_device};
use crate::models::ModelSpec;
use crate::optim::OptimizerKind;
use crate::train::{self, Evaluation, Progress, Task, Trainer, metrics};

/// Flags of `kiln train`. Any flag given overrides the same setting from `--config`.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// Model: mlp or linear.
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset: digits (built in), fashion-mnist, or a CSV file.
    #[arg(long)]
    pub data: Option<String>,
    /// Column to predict (CSV data).
    #[arg(long)]
    pub target: Option<String>,
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Optimizer: sgd, adam or adamw.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning-rate schedule: constant, step, exponential, cosine, warmup-cosine, one-cycle.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Seed for the split, initialisation, shuffling and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Early stopping: epochs without validation improvement before stopping.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Clip the global gradient norm.
    #[arg(long)]
    pub clip_grad_norm: Option<f32>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    pub accumulate: Option<usize>,
    /// Validation fraction.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Test fraction.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// CSV missing values: drop, mean, median, most-frequent.
    #[arg(long)]
    pub missing: Option<String>,
    /// CSV categorical encoding: one-hot or label.
    #[arg(long)]
    pub encoding: Option<String>,
    /// CSV numeric scaling: standard, min-max or none.
    #[arg(long)]
    pub scaling: Option<String>,
    /// GPU adapter (index or name substring, as listed by `kiln devices`).
    #[arg(long)]
    pub device: Option<String>,
    /// Run directory (default: runs/<data>-<model>-<n>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Settings from a TOML file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (its config.toml is used; --epochs may
    /// extend it).
    #[arg(long)]
    pub resume: bool,
    /// Only the final summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

fn resolve(a: &TrainArgs) -> Result<RunSpec> {
    let mut s = match &a.config {
        Some(p) => RunSpec::from_toml_file(p)?,
        None => RunSpec::default(),
    };
    macro_rules! set {
        ($($flag:ident => $($field:ident).+),* $(,)?) => {
            $( if let Some(v) = a.$flag.clone() { s.$($field).+ = v; } )*
        };
    }
    set!(model => model, data => data, epochs => train.epochs, batch_size => train.batch_size,
         lr => train.lr, optimizer => train.optimizer, schedule => train.schedule,
         weight_decay => train.weight_decay, momentum => train.momentum, seed => train.seed,
         accumulate => train.accumulate, val_fraction => val_fraction,
         test_fraction => test_fraction, missing => missing, encoding => encoding, scaling => scaling);
    if a.target.is_some() {
        s.target = a.target.clone();
    }
    if a.patience.is_some() {
        s.train.patience = a.patience;
    }
    if a.clip_grad_norm.is_some() {
        s.train.clip_grad_norm = a.clip_grad_norm;
    }
    s.train.quiet |= a.quiet;
    s.train
        .optimizer
        .parse::<OptimizerKind>()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    s.train.validate()?;
    Ok(s)
}

fn next_run_dir(spec: &RunSpec) -> PathBuf {
    let base = format!("{}-{}", spec.data_label(), spec.model);
    (1..)
        .map(|n| Path::new("runs").join(format!("{base}-{n}")))
        .find(|p| !p.exists())
        .expect("some run number is free")
}

/// Run `kiln train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let (spec, dir) = if a.resume {
        let dir = a
            .out
            .clone()
            .ok_or_else(|| Error("--resume needs --out DIR, the run to continue".into()))?;
        let cfg = dir.join("config.toml");
        if !cfg.exists() {
            return Err(Error(format!(
                "--resume: {} has no config.toml; is it a kiln run directory?",
                dir.display()
            )));
        }
        let mut spec = RunSpec::from_toml_file(&cfg)?;
        if let Some(e) = a.epochs {
            spec.train.epochs = e;
        }
        spec.train.quiet |= a.quiet;
        (spec, dir)
    } else {
        let spec = resolve(&a)?;
        let dir = a.out.clone().unwrap_or_else(|| next_run_dir(&spec));
        if dir.join(train::trainer::LAST).exists() {
            return Err(Error(format!(
                "{} already holds a run; continue it with --resume, or pick another --out",
                dir.display()
            )));
        }
        (spec, dir)
    };
    let gpu = open_device(a.device.as_deref())?;
    let quiet = spec.train.quiet;
    let data = spec.load_data()?;
    crate::nn::manual_seed(spec.train.seed);
    let model_spec = ModelSpec::from_name(&spec.model, data.input, data.output, data.image)?;
    let mut model = model_spec.build(&gpu)?;
    let kind: OptimizerKind = spec
        .train
        .optimizer
        .parse()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    let mut opt = crate::optim::build(
        kind,
        model.named_parameters(),
        spec.train.lr,
        spec.train.weight_decay,
        spec.train.momentum,
    )?;
    std::fs::create_dir_all(&dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    if !a.resume {
        train::checkpoint::write_atomic(&dir.join("config.toml"), spec.to_toml().as_bytes())?;
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "run_spec".into(),
        serde_json::to_string(&spec).unwrap_or_default(),
    );
    metadata.insert(
        "model_spec".into(),
        serde_json::to_string(&model_spec).unwrap_or_default(),
    );
    if let Some(p) = &data.preprocessor {
        metadata.insert(
            "preprocessor".into(),
            serde_json::to_string(p).unwrap_or_default(),
        );
    }
    if !quiet {
        println!("device: {} ({:?})", gpu.info().name, gpu.info().backend);
        println!("data:   {}", data.report.lines().next().unwrap_or(""));
        println!(
            "model:  {} ({} parameters), {} lr {} {}, batch {}, {} epochs",
            model_spec.name(),
            group(model.num_parameters()),
            spec.train.optimizer,
            spec.train.lr,
            spec.train.schedule,
            spec.train.batch_size,
            spec.train.epochs
        );
        println!("run:    {}", dir.display());
    }
    let mut trainer = Trainer {
        gpu: gpu.clone(),
        config: spec.train.clone(),
        task: data.task.clone(),
        train: data.train.clone(),
        val: Some(data.val.clone()),
        dir: dir.clone(),
        metadata,
        on_epoch: None,
    };
    let progress = if a.resume {
        let p = trainer.resume(
            &dir.join(train::trainer::LAST),
            model.as_mut(),
            opt.as_mut(),
        )?;
        if !quiet {
            println!("resumed after epoch {} (step {})", p.epoch, p.step);
        }
        p
    } else {
        Progress::default()
    };
    let epochs = spec.train.epochs;
    if !quiet {
        trainer.on_epoch = Some(Box::new(move |r| {
            let mut line = format!(
                "epoch {:>3}/{epochs}  train loss {:.4}",
                r.epoch, r.train_loss
            );
            if let Some(v) = r.val_loss {
                line += &format!("  val loss {v:.4}");
            }
            if let Some(acc) = r.val_accuracy {
                line += &format!("  val acc {:.1}%", 100.0 * acc);
            }
            if let Some(r2) = r.val_r2 {
                line += &format!("  val R2 {r2:.3}");
            }
            line += &format!("  {:.2}s ({:.0} samples/s)", r.seconds, r.samples_per_sec);
            println!("{line}");
        }));
    }
    let start = Instant::now();
    let report = trainer.fit(model.as_mut(), opt.as_mut(), progress)?;
    let test = train::evaluate(&gpu, model.as_mut(), &data.task, data.test.as_ref(), 512)?;
    let wall = start.elapsed().as_secs_f64();
    write_summary(
        &dir,
        &spec,
        &data,
        &test,
        &report,
        wall,
        &gpu,
        model.num_parameters(),
    )?;
    print_summary(&data, &test, &report, wall, &dir, quiet);
    Ok(())
}

/// Digits grouped by thousands: 12,345.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn write_summary(
    dir: &Path,
    spec: &RunSpec,
    data: &PreparedData,
    test: &Evaluation,
    report: &train::FitReport,
    wall: f64,
    gpu: &Arc<crate::Gpu>,
    params: usize,
) -> Result<()> {
    let mut s = serde_json::json!({
        "model": spec.model,
        "data": spec.data,
        "parameters": params,
        "epochs_run": report.progress.epoch,
        "best_epoch": report.progress.best_epoch,
        "stopped_early": report.stopped_early,
        "wall_seconds": wall,
        "device": gpu.info().name,
        "backend": format!("{:?}", gpu.info().backend),
        "test_loss": test.loss,
        "test_examples": test.examples,
    });
    if let Some(m) = &test.classification {
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
    train::checkpoint::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    Ok(())
}

fn print_summary(
    data: &PreparedData,
    test: &Evaluation,
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
    let head = format!("{} epochs{stop} in {wall:.1}s", report.progress.epoch);
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
