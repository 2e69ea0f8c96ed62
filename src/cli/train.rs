//! `kiln train`: train a model on a dataset, log it, checkpoint it, test it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::loop_args::{LoopArgs, refuse_fixed_flags};
use super::progress::{self, Units};
use super::resume::{changed_settings, resume_from, resumed_line};
use super::spec::RunSpec;
use super::text_data;
use super::train_summary::{check_splits, print_summary, write_summary};
use super::{Error, Result};
use crate::io::run_dir::{LAST, RunLock};
use crate::models::ModelSpec;
use crate::optim::OptimizerKind;
use crate::show::digits;
use crate::train::{self, Progress, Supervised, Trainer};

/// Flags of `kiln train`. Any flag given overrides the same setting from `--config`.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// The training-loop flags, shared with `kiln finetune`.
    #[command(flatten)]
    pub common: LoopArgs,
    /// Semi-supervised learning (`--semi`, `--labeled`, `--unlabeled`, ...).
    #[command(flatten)]
    pub semi: super::semi::SemiArgs,
    /// `--trace FILE.json`, `--trace-steps N`.
    #[command(flatten)]
    pub trace: super::trace::TraceArgs,
    /// Training diagnostics (`--diagnostics off|basic|full`, `--diagnostics-every N`).
    #[command(flatten)]
    pub diagnostics: super::diagnostics_args::DiagnosticsArgs,
    /// Several devices: `--devices 0,1`, `--zero 1|2`.
    #[command(flatten)]
    pub parallel: super::data_parallel::ParallelArgs,
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
    /// Test fraction; 0 keeps no test split (the run reports no test score).
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
    /// Do not evaluate the test split at the end (`kiln sweep` trials: selection must never
    /// see it). `kiln eval RUN` evaluates it later.
    #[arg(long)]
    pub no_test: bool,
    /// Data parallel over MPI: this process is one rank of `mpirun -n N kiln train ...
    /// --distributed` (a kiln built with `--features mpi`). Rank 0 writes the run directory;
    /// `--device A,B,..` gives the ranks on each machine their adapters, by local rank.
    #[arg(long)]
    pub distributed: bool,
}

pub(super) fn resolve(a: &TrainArgs) -> Result<RunSpec> {
    let mut s = match &a.config {
        Some(p) => RunSpec::from_toml_file(p)?,
        None => RunSpec::default(),
    };
    apply_flags(a, &mut s)?;
    s.train
        .optimizer
        .parse::<OptimizerKind>()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    s.train.validate()?;
    s.semi.validate()?;
    Ok(s)
}

/// Set in `s` what the flags of `a` give (the rest of `s` as it is).
pub(super) fn apply_flags(a: &TrainArgs, s: &mut RunSpec) -> Result<()> {
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
    super::semi::apply_flags(&a.semi, &mut s.semi);
    Ok(())
}

pub(super) fn next_run_dir(spec: &RunSpec) -> PathBuf {
    let base = format!("{}-{}", spec.data_label(), spec.model);
    (1..)
        .map(|n| Path::new("runs").join(format!("{base}-{n}")))
        .find(|p| !p.exists())
        .expect("some run number is free")
}

/// Run `kiln train`.
pub fn run(a: TrainArgs) -> Result<()> {
    if a.distributed {
        return super::distributed::run(a);
    }
    run_with(a, None)
}

/// `kiln train` with `kiln explain`'s hooks: the run then ends after `Trainer::fit`.
pub(super) fn run_with(mut a: TrainArgs, explain: Option<super::trace::ExtraHooks>) -> Result<()> {
    let dry = super::memory_args::prepare(&mut a.common)?;
    a.diagnostics.level()?; // a bad --diagnostics fails before any work
    let resume = a.common.resume;
    let (spec, dir) = if resume {
        let dir = a.common.resume_dir("run")?;
        let cfg = dir.join("config.toml");
        if !cfg.exists() {
            return Err(Error(format!(
                "--resume: {} has no config.toml; is it a kiln run directory?",
                dir.display()
            )));
        }
        let mut spec = RunSpec::from_toml_file(&cfg)?;
        refuse_fixed_flags(&changed_settings(&a, &spec)?)?;
        a.common.extend_resumed(&mut spec.train);
        spec.train.validate()?;
        (spec, dir)
    } else {
        let spec = resolve(&a)?;
        let dir = a.common.fresh_dir("a run", || next_run_dir(&spec))?;
        (spec, dir)
    };
    let _lock = RunLock::acquire(&dir)?;
    let gpus = a.parallel.open(&spec, resume)?;
    let gpu = match &gpus {
        Some(g) => g[0].clone(),
        None => a.common.device.open()?,
    };
    a.common.memory.apply(&gpu)?;
    let quiet = spec.train.quiet;
    let saved_tokenizer = dir.join(crate::data::tokenizer::TOKENIZER_FILE);
    let data = if spec.is_text() && resume && saved_tokenizer.exists() {
        let tok = crate::data::tokenizer::load_tokenizer(&saved_tokenizer)?;
        text_data::load_text(&spec, Some(Arc::from(tok)))?
    } else {
        super::diagnostics_args::recorded(&dir, "data preparation", spec.load_data())?
    };
    if spec.semi.method == "spread" {
        return super::semi::spread_run(&spec, &data, &dir, resume, &gpu);
    }
    let mut data = data;
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
    let mut model = model_spec.build(&gpu).map_err(|e| {
        Error(format!(
            "--model {} for {} inputs and {} outputs: {e}",
            spec.model, data.input, data.output
        ))
    })?;
    super::grad_checkpoint::apply(model.as_mut(), &spec.train, &spec.model)?;
    let init_report = if resume && dir.join(LAST).exists() {
        None // the run's own checkpoint restores everything
    } else {
        init_from(&spec, &model_spec, model.as_ref())?
    };
    if !spec.freeze.is_empty() {
        crate::nn::freeze::freeze(model.as_ref(), &spec.freeze)
            .map_err(|e| Error(format!("--freeze: {e}")))?;
    }
    let kind: OptimizerKind = spec
        .train
        .optimizer
        .parse()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    let mut opt = crate::optim::build_with(
        kind,
        model.named_parameters(),
        (spec.train.lr, spec.train.weight_decay, spec.train.momentum),
        spec.train.offload_optimizer,
    )?;
    if !resume {
        crate::io::write_atomic(&dir.join("config.toml"), spec.to_toml().as_bytes())?;
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
            digits(model.num_parameters()),
            spec.train.optimizer,
            spec.train.lr,
            spec.train.schedule,
            spec.train.batch_size,
            spec.train.epochs
        );
        if let Some(r) = &init_report {
            print!("{r}");
        }
        let c = crate::nn::freeze::param_counts(model.as_ref());
        println!(
            "params: {} trainable of {} ({} of {} tensors){}",
            digits(c.trainable),
            digits(c.total),
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
        if let Some(line) = super::semi::describe(&data, &spec) {
            println!("{line}");
        }
        println!("run:    {}", dir.display());
        if let Some(b) = data.text.as_ref().and_then(|t| t.unigram_baseline) {
            println!(
                "baseline: unigram (training token frequencies) val loss {b:.4}, perplexity {:.2}",
                b.exp()
            );
        }
    }
    if !resume {
        super::diagnostics_args::save_preparation(&dir, &data)?;
    }
    let semi = super::semi::objective(&spec, &mut data, &gpu)?;
    super::loop_args::check_accumulate(&spec.train, data.train.len())?;
    check_splits(&spec, &data)?;
    let mut trainer =
        Trainer::new(&gpu, spec.train.clone(), data.train.clone(), &dir).with_val(data.val.clone());
    trainer.metadata = metadata;
    let progress = if resume {
        let p = resume_from(&trainer, &dir, model.as_mut(), opt.as_mut())?;
        if !quiet {
            println!("{}", resumed_line(&p));
        }
        p
    } else {
        Progress::default()
    };
    trainer
        .hooks
        .push(Box::new(super::explosion::Explosion::default()));
    let extras = super::trace::Extras::add(&mut trainer.hooks, &a.trace, &gpu, explain)?;
    let diag = &a.diagnostics;
    diag.install(&mut trainer, &dir, model.as_ref(), progress.step)?;
    if !quiet {
        let units = match &data.text {
            Some(t) => Units::Tokens { context: t.context },
            None => Units::Samples,
        };
        trainer
            .hooks
            .push(Box::new(progress::Progress::new(units, spec.train.epochs)));
    }
    let mut objective: Box<dyn train::Objective> = match semi {
        Some(o) => Box::new(o),
        None => Box::new(Supervised::new(&gpu, data.task.clone())),
    };
    let mem = (a.common.memory).attach(&gpu, &dir, model.as_mut(), &spec.train, &mut trainer);
    let start = Instant::now();
    let setup = super::data_parallel::Setup {
        spec: &spec,
        model: &model_spec,
        data: &data,
    };
    let (m, o) = (model.as_mut(), opt.as_mut());
    let report = super::data_parallel::run(
        &a.parallel,
        gpus.as_deref(),
        &setup,
        &mut trainer,
        m,
        o,
        objective.as_mut(),
        progress,
    )?;
    let explained = extras.finish(quiet)?;
    if super::memory_args::finish(mem.as_ref(), dry, &gpu)? || explained {
        return Ok(());
    }
    let semi = super::semi::pseudo_label_summary(&gpu, model.as_mut(), &data, &spec, quiet)?;
    // No test split (--no-test, or --test-fraction 0): nothing to score, said as such.
    let test = if a.no_test || data.test.is_empty() {
        None
    } else {
        Some(train::evaluate(
            &gpu,
            model.as_mut(),
            &data.task,
            data.test.as_ref(),
            eval_batch,
        )?)
    };
    let wall = start.elapsed().as_secs_f64();
    write_summary(
        &dir,
        &spec,
        &data,
        test.as_ref(),
        &report,
        wall,
        &gpu,
        model.num_parameters(),
        semi,
    )?;
    print_summary(&data, test.as_ref(), &report, wall, &dir, quiet);
    Ok(())
}

/// Load `--init-from` into `model` (nothing when the spec names no checkpoint). The head is
/// skipped when its shape differs from the file's, or always with `--new-head`.
fn init_from(
    spec: &RunSpec,
    model_spec: &ModelSpec,
    model: &dyn crate::nn::Module,
) -> Result<Option<crate::nn::load::LoadReport>> {
    let Some(src) = &spec.init_from else {
        return Ok(None);
    };
    let head = model_spec.head_name();
    let mut skip = spec.init_skip.clone();
    if spec.new_head {
        skip.push(head.clone());
    }
    let opts = crate::nn::load::LoadOptions {
        skip,
        strict: spec.init_strict,
        head: Some(head),
    };
    let report = crate::nn::load::load_pretrained(model, Path::new(src), &opts)
        .map_err(|e| Error(format!("--init-from: {e}")))?;
    Ok(Some(report))
}
