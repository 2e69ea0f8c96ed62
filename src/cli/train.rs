//! `kiln train`: train a model on a dataset, log it, checkpoint it, test it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::spec::{PreparedData, RunSpec};
use super::text_data;
use super::{Error, Result, open_device};
use crate::models::ModelSpec;
use crate::optim::OptimizerKind;
use crate::train::{self, Evaluation, Progress, Task, Trainer, metrics};

/// Flags of `kiln train`. Any flag given overrides the same setting from `--config`.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// The training-loop flags, shared with `kiln finetune`.
    #[command(flatten)]
    pub common: LoopArgs,
    /// Model: mlp, linear, lenet, vgg, resnet18, or a language model: gpt, lstm, gru, rnn
    /// (these train on text: the embedded Shakespeare, or --text FILE).
    #[arg(long)]
    pub model: Option<String>,
    /// Language models: train on this UTF-8 text file instead of the embedded Shakespeare
    /// (the default model is then gpt).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "images"])]
    pub text: Option<String>,
    /// Language models: char (default), bpe (trained on the text, --bpe-vocab ids), gpt2, or
    /// the path of a tokenizer.json.
    #[arg(long, value_name = "char|bpe|gpt2|FILE")]
    pub tokenizer: Option<String>,
    /// Vocabulary size of --tokenizer bpe (default 512).
    #[arg(long)]
    pub bpe_vocab: Option<usize>,
    /// Language models: tokens per training window, T (default 64).
    #[arg(long)]
    pub context: Option<usize>,
    /// Language models: transformer blocks (gpt, default 4) or recurrent layers (default 1).
    #[arg(long)]
    pub layers: Option<usize>,
    /// GPT attention heads (default 4).
    #[arg(long)]
    pub heads: Option<usize>,
    /// GPT width d_model (default 128), or the recurrent hidden size (default 256).
    #[arg(long)]
    pub width: Option<usize>,
    /// Language models: dropout in training (default 0).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Dataset: digits (built in), fashion-mnist, or a CSV file.
    #[arg(long)]
    pub data: Option<String>,
    /// Column to predict (CSV data).
    #[arg(long)]
    pub target: Option<String>,
    /// Train on a folder of images, one sub-folder per class (DIR/<class>/*.png|jpg; DIR/train
    /// and DIR/test are used as splits when both exist). The default model is then lenet.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub images: Option<String>,
    /// Image folders: resize every image to N (square) or HxW.
    #[arg(long, value_name = "N|HxW")]
    pub image_size: Option<String>,
    /// Image folders: 1 (grey) or 3 (RGB) channels (default: RGB if any image has colour).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Training augmentation of image data: none, or a comma list of crop, flip.
    #[arg(long, value_name = "crop,flip|none")]
    pub augment: Option<String>,
    /// Zero padding per side of the random crop.
    #[arg(long)]
    pub crop_padding: Option<usize>,
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
    /// Settings from a TOML file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Transfer learning: initialise the model from a checkpoint (a run directory or a
    /// .safetensors file; kiln's or any other with PyTorch-style names), tensor by tensor by name.
    /// The classifier head is re-initialised when its class count differs.
    #[arg(long, value_name = "CKPT_DIR_OR_FILE")]
    pub init_from: Option<String>,
    /// Do not load tensors matching this name pattern from --init-from (repeatable; `*` any
    /// characters, `?` one; a module name selects all its tensors).
    #[arg(long, value_name = "PATTERN")]
    pub init_skip: Vec<String>,
    /// Load the tensors --init-from and the model share, and report the missing and
    /// unexpected ones instead of failing.
    #[arg(long)]
    pub init_non_strict: bool,
    /// Re-initialise the classifier head even when the class count matches (new classes).
    #[arg(long)]
    pub new_head: bool,
    /// Freeze the parameters matching this name pattern, e.g. 'features.*' (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub freeze: Vec<String>,
    /// Unfreeze every frozen parameter at the start of this epoch (1-based).
    #[arg(long, value_name = "EPOCH")]
    pub unfreeze_at: Option<usize>,
    /// Learning-rate multiplier of the parameters unfrozen by --unfreeze-at (default 0.1).
    #[arg(long)]
    pub unfreeze_lr_scale: Option<f32>,
    /// Train on a subset of the built-in dataset's classes: 0-4, 5,6,7,8,9 or 0-2,7
    /// (relabelled 0..k-1, class names kept).
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
}

/// The training-loop flags of `kiln train`, shared with `kiln finetune` (flattened into both).
#[derive(Debug, Args, Default, Clone)]
pub struct LoopArgs {
    /// Stop after this many optimizer steps (the last epoch is then partial).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop training after this many minutes (checked after every batch; the epoch in progress
    /// is validated and checkpointed).
    #[arg(long, value_name = "MINUTES")]
    pub time_limit: Option<f64>,
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
    /// GPU adapter (index or name substring, as listed by `kiln devices`).
    #[arg(long)]
    pub device: Option<String>,
    /// Output directory (kiln train's default: runs/<data>-<model>-<n>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (its saved settings are used;
    /// --epochs, --max-steps and --time-limit may extend it).
    #[arg(long)]
    pub resume: bool,
    /// Only the final summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

impl LoopArgs {
    /// Set the loop settings these flags give in `t`, leaving the others as they are.
    pub fn apply_to(&self, t: &mut crate::train::TrainConfig) {
        macro_rules! set {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $( if let Some(v) = self.$flag.clone() { t.$field = v; } )*
            };
        }
        set!(epochs => epochs, batch_size => batch_size, lr => lr, optimizer => optimizer,
             schedule => schedule, weight_decay => weight_decay, momentum => momentum,
             seed => seed, accumulate => accumulate);
        macro_rules! set_opt {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $( if self.$flag.is_some() { t.$field = self.$flag; } )*
            };
        }
        set_opt!(max_steps => max_steps, time_limit => time_limit_minutes, patience => patience,
                 clip_grad_norm => clip_grad_norm);
        t.quiet |= self.quiet;
    }

    /// Set the budget flags (`--epochs`, `--max-steps`, `--time-limit`, `--quiet`) that may
    /// extend a resumed run in `t`.
    pub fn extend_resumed(&self, t: &mut crate::train::TrainConfig) {
        if let Some(e) = self.epochs {
            t.epochs = e;
        }
        if self.max_steps.is_some() {
            t.max_steps = self.max_steps;
        }
        if self.time_limit.is_some() {
            t.time_limit_minutes = self.time_limit;
        }
        t.quiet |= self.quiet;
    }
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
    set!(model => model, data => data, test_fraction => test_fraction, missing => missing,
         encoding => encoding, scaling => scaling);
    let c = &a.common;
    c.apply_to(&mut s.train);
    if let Some(v) = c.val_fraction {
        s.val_fraction = v;
    }
    if a.target.is_some() {
        s.target = a.target.clone();
    }
    if let Some(dir) = &a.images {
        if !Path::new(dir).is_dir() {
            return Err(Error(format!(
                "--images {dir:?}: image folder not found (expected a directory holding one \
                 sub-folder per class)"
            )));
        }
        s.data = dir.clone();
        if a.model.is_none() && a.config.is_none() {
            s.model = "lenet".into(); // pictures want a CNN
        }
    }
    set!(augment => augment, crop_padding => crop_padding);
    if let Some(f) = &a.text {
        s.data = f.clone();
        if a.model.is_none() && a.config.is_none() {
            s.model = "gpt".into(); // text wants a language model
        }
    }
    if s.is_text() && a.data.is_none() && a.text.is_none() && s.data == "digits" {
        s.data = "shakespeare".into(); // the default corpus of the language models
    }
    if s.is_text() && a.config.is_none() {
        // 5 % of a corpus is plenty to measure a loss on (50,000 tokens of Shakespeare), and
        // every validation pass costs a forward over all of it.
        s.val_fraction = c.val_fraction.unwrap_or(0.05);
        s.test_fraction = a.test_fraction.unwrap_or(0.05);
    }
    if !s.is_text() && (a.text.is_some() || s.data == "shakespeare") {
        return Err(Error(format!(
            "model {} does not train on text; use --model gpt, lstm, gru or rnn",
            s.model
        )));
    }
    set!(tokenizer => tokenizer, bpe_vocab => bpe_vocab);
    macro_rules! set_opt {
        ($($flag:ident => $($field:ident).+),* $(,)?) => {
            $( if a.$flag.is_some() { s.$($field).+ = a.$flag; } )*
        };
    }
    set_opt!(context => context, layers => layers, heads => heads, width => width,
             dropout => dropout);
    if a.image_size.is_some() {
        s.image_size = a.image_size.clone();
    }
    if a.channels.is_some() {
        s.channels = a.channels;
    }
    set!(unfreeze_lr_scale => train.unfreeze_lr_scale);
    if a.unfreeze_at.is_some() {
        s.train.unfreeze_at = a.unfreeze_at;
    }
    if a.classes.is_some() {
        s.classes = a.classes.clone();
    }
    if a.init_from.is_some() {
        s.init_from = a.init_from.clone();
    }
    s.init_skip.extend(a.init_skip.iter().cloned());
    s.freeze.extend(a.freeze.iter().cloned());
    s.init_strict &= !a.init_non_strict;
    s.new_head |= a.new_head;
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
    let (spec, dir) = if a.common.resume {
        let dir = a
            .common
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
        a.common.extend_resumed(&mut spec.train);
        (spec, dir)
    } else {
        let spec = resolve(&a)?;
        let dir = a.common.out.clone().unwrap_or_else(|| next_run_dir(&spec));
        if dir.join(train::trainer::LAST).exists() {
            return Err(Error(format!(
                "{} already holds a run; continue it with --resume, or pick another --out",
                dir.display()
            )));
        }
        (spec, dir)
    };
    let gpu = open_device(a.common.device.as_deref())?;
    let quiet = spec.train.quiet;
    let saved_tokenizer = dir.join(crate::data::tokenizer::TOKENIZER_FILE);
    let data = if spec.is_text() && a.common.resume && saved_tokenizer.exists() {
        let tok = crate::data::tokenizer::load_tokenizer(&saved_tokenizer)?;
        text_data::load_text(&spec, Some(Arc::from(tok)))?
    } else {
        spec.load_data()?
    };
    crate::nn::manual_seed(spec.train.seed);
    let model_spec = ModelSpec::from_name(&spec.model, data.input, data.output, data.image)?;
    let model_spec = text_data::apply_overrides(&spec, model_spec)?;
    // Language models: bound the logits (B * T, V) of one evaluation batch to about 64 MB.
    let eval_batch = match &data.text {
        Some(t) => (16 << 20) / (t.context * data.output).max(1),
        None => 512,
    }
    .clamp(1, 512);
    let mut spec = spec;
    if data.text.is_some() && spec.train.eval_batch_size.is_none() {
        spec.train.eval_batch_size = Some(eval_batch.min(spec.train.batch_size.max(256)));
    }
    let spec = spec;
    let mut model = model_spec.build(&gpu)?;
    let init_report = if a.common.resume {
        None // the run's own checkpoint restores everything
    } else {
        init_from(&spec, &model_spec, model.as_ref())?
    };
    if !spec.freeze.is_empty() {
        train::transfer::freeze(model.as_ref(), &spec.freeze)
            .map_err(|e| Error(format!("--freeze: {e}")))?;
    }
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
    if !a.common.resume {
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
    if let Some(p) = &data.image_prep {
        metadata.insert(
            "image_prep".into(),
            serde_json::to_string(p).unwrap_or_default(),
        );
    }
    if let Some(t) = &data.text {
        metadata.insert(
            text_data::TOKENIZER_META.into(),
            text_data::tokenizer_metadata(&spec, t.tokenizer.as_ref()),
        );
        t.tokenizer.save(&saved_tokenizer)?;
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
        if let Some(r) = &init_report {
            print!("{r}");
        }
        let c = train::transfer::param_counts(model.as_ref());
        println!(
            "params: {} trainable of {} ({} of {} tensors){}",
            group(c.trainable),
            group(c.total),
            c.trainable_tensors,
            c.total_tensors,
            match spec.train.unfreeze_at {
                Some(e) if c.trainable < c.total => format!(
                    "; the frozen ones train from epoch {e} at {} x lr",
                    spec.train.unfreeze_lr_scale
                ),
                _ => String::new(),
            }
        );
        println!("run:    {}", dir.display());
        if let Some(b) = data.text.as_ref().and_then(|t| t.unigram_baseline) {
            println!(
                "baseline: unigram (training token frequencies) val loss {b:.4}, perplexity {:.2}",
                b.exp()
            );
        }
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
    let progress = if a.common.resume {
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
    let text = data.text.is_some();
    let context = data.text.as_ref().map(|t| t.context);
    if !quiet {
        trainer.on_epoch = Some(Box::new(move |r| {
            let mut line = format!(
                "epoch {:>3}/{epochs}  train loss {:.4}",
                r.epoch, r.train_loss
            );
            if let Some(v) = r.val_loss {
                line += &format!("  val loss {v:.4}");
            }
            if let (true, Some(p)) = (text, r.val_perplexity) {
                line += &format!("  val ppl {p:.2}");
            }
            if let Some(acc) = r.val_accuracy {
                let what = if text { "token acc" } else { "val acc" };
                line += &format!("  {what} {:.1}%", 100.0 * acc);
            }
            if let Some(r2) = r.val_r2 {
                line += &format!("  val R2 {r2:.3}");
            }
            match context {
                Some(t) => {
                    let rate = r.samples_per_sec * t as f64;
                    line += &format!("  {:.2}s ({rate:.0} tokens/s)", r.seconds);
                }
                None => {
                    line += &format!("  {:.2}s ({:.0} samples/s)", r.seconds, r.samples_per_sec)
                }
            }
            println!("{line}");
        }));
    }
    let start = Instant::now();
    let report = trainer.fit(model.as_mut(), opt.as_mut(), progress)?;
    let test = train::evaluate(
        &gpu,
        model.as_mut(),
        &data.task,
        data.test.as_ref(),
        eval_batch,
    )?;
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

/// Load `--init-from` into `model` (nothing when the spec names no checkpoint). The head is
/// skipped when its shape differs from the file's, or always with `--new-head`.
fn init_from(
    spec: &RunSpec,
    model_spec: &ModelSpec,
    model: &dyn crate::nn::Module,
) -> Result<Option<train::transfer::LoadReport>> {
    let Some(src) = &spec.init_from else {
        return Ok(None);
    };
    let head = model_spec.head_name();
    let mut skip = spec.init_skip.clone();
    if spec.new_head {
        skip.push(head.clone());
    }
    let opts = train::transfer::LoadOptions {
        skip,
        strict: spec.init_strict,
        head: Some(head),
    };
    let report = train::transfer::load_pretrained(model, Path::new(src), &opts)
        .map_err(|e| Error(format!("--init-from: {e}")))?;
    Ok(Some(report))
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
    if let Some(t) = &data.text {
        s["test_perplexity"] = test.loss.exp().into();
        s["unigram_baseline_loss"] = t.unigram_baseline.into();
        s["tokenizer"] = t.tokenizer.kind().into();
        s["vocab_size"] = data.output.into();
        s["budget_reached"] = report.budget_reached.into();
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
    let stop = if report.budget_reached {
        " (step/time budget reached)"
    } else {
        stop
    };
    let head = format!("{} epochs{stop} in {wall:.1}s", report.progress.epoch);
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
