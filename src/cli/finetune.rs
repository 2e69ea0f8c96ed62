//! `kiln finetune`: LoRA (or QLoRA) fine-tuning of a kiln GPT on chat data.
//!
//! ```text
//! kiln finetune --base runs/shakespeare-gpt-1 --data chat.jsonl --lora-rank 8 --out runs/chat
//! ```
//!
//! The base is a `kiln train --model gpt` checkpoint; its tokenizer and context are used for
//! the chat data (see [`super::chat_data`]). Adapters A (r, in) and B (out, r) go on the Linear
//! layers that `--target-modules` names (PEFT's matching: `q_proj` selects every
//! `blocks.N.attn.q_proj`); everything else is frozen, and the optimizer holds state for the
//! adapters only. With `--qlora` the targeted base weights are first quantised to NF4.
//!
//! The loss is the masked cross-entropy ([`crate::Tensor::cross_entropy_masked`]): the mean
//! over the assistant's tokens only. An epoch's loss is the mean over all its trained tokens.
//! The run goes through the one trainer ([`crate::train::Trainer`]) with the
//! [`crate::train::MaskedLm`] objective: its checkpoints (`checkpoint.safetensors`, holding the
//! adapters, optimizer, RNG and loader position) resume exactly anywhere, and the PEFT adapter (`adapter_model.safetensors`,
//! `adapter_config.json`, plus kiln's [`super::chat_model::ADAPTER_META`]) is written
//! atomically whenever the validation loss improves (every epoch without validation), so --out
//! always holds the best adapter. `metrics.csv`, `curves.png` and `summary.json` report the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::chat_data::{self, CHITCHAT};
use super::chat_model::{ADAPTER_META, AdapterMeta, GptBase, quant_line, quantize_targets};
use super::loop_args::{LoopArgs, refuse_fixed_flags};
use super::progress::{self, Units};
use super::resume::{resume_from, resumed_line};
use super::{Error, Result};
use crate::data::Dataset;
use crate::data::chat::ChatTemplate;
use crate::io::run_dir::RunLock;
use crate::models::LanguageModel;
use crate::nn::Module;
use crate::nn::lora::{self, LoraConfig};
use crate::optim::OptimizerKind;
use crate::show::digits;
use crate::train::log::EpochRecord;
use crate::train::{
    Control, EpochEnd, Hook, MaskedLm, Objective, Progress, Saved, TrainConfig, Trainer,
};

/// The resolved settings in `--out`.
pub const SETTINGS: &str = "finetune.json";

/// Flags of `kiln finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The base: a run directory or checkpoint of `kiln train --model gpt`.
    #[arg(long, value_name = "CHECKPOINT_DIR")]
    pub base: Option<PathBuf>,
    /// Chat data: a JSONL file of {"messages": [{"role", "content"}, ...]} lines (gzipped or
    /// not), or `chitchat` (the embedded set, the default).
    #[arg(long, value_name = "FILE|chitchat")]
    pub data: Option<String>,
    /// LoRA rank r.
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA alpha; the adapter path is scaled by alpha / r (default 2 r).
    #[arg(long)]
    pub lora_alpha: Option<f32>,
    /// Dropout on the adapter path's input, in training.
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f32,
    /// QLoRA: hold the targeted base weights in NF4 (about 0.13 x the f32 bytes).
    #[arg(long)]
    pub qlora: bool,
    /// Linear layers to adapt, comma-separated (PEFT's matching; the GPT's are q_proj, k_proj,
    /// v_proj, o_proj, fc1, fc2, lm_head; globs like 'blocks.0.*' work too).
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub target_modules: Vec<String>,
    /// One conversation piece per window (padded) instead of packing several end to end.
    #[arg(long)]
    pub no_pack: bool,
    /// The training-loop flags of `kiln train` (finetune defaults: 3 epochs, batch 16, lr 1e-3,
    /// adamw, 10 % of the conversations for validation; --out default runs/finetune-<n>).
    #[command(flatten)]
    pub common: LoopArgs,
}

/// Everything that defines a fine-tune, saved as [`SETTINGS`] for `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSpec {
    /// The base checkpoint.
    pub base: String,
    /// The chat data.
    pub data: String,
    /// Rank.
    pub r: usize,
    /// Alpha.
    pub alpha: f32,
    /// Adapter dropout.
    pub dropout: f32,
    /// Target modules.
    pub target_modules: Vec<String>,
    /// NF4 bases.
    pub qlora: bool,
    /// Pack conversation pieces.
    pub pack: bool,
    /// Fraction of conversations for validation.
    pub val_fraction: f64,
    /// Loop settings.
    pub train: TrainConfig,
}

impl FinetuneSpec {
    fn lora(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: Some(self.base.clone()),
        }
    }
}

fn resolve(a: &FinetuneArgs) -> Result<FinetuneSpec> {
    let base = a.base.as_ref().ok_or_else(|| {
        Error("--base CHECKPOINT_DIR is required: a run of `kiln train --model gpt`".into())
    })?;
    if a.lora_rank == 0 {
        return Err(Error("--lora-rank 0: the rank must be at least 1".into()));
    }
    let alpha = a.lora_alpha.unwrap_or(2.0 * a.lora_rank as f32);
    if !alpha.is_finite() {
        return Err(Error(format!(
            "--lora-alpha {alpha}: must be a finite number"
        )));
    }
    if !(0.0..1.0).contains(&a.lora_dropout) {
        return Err(Error(format!(
            "--lora-dropout {}: must be in [0, 1)",
            a.lora_dropout
        )));
    }
    let targets: Vec<String> = a
        .target_modules
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        return Err(Error(
            "--target-modules is empty; name the Linear layers to adapt".into(),
        ));
    }
    let mut train = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 1e-3,
        optimizer: "adamw".into(),
        weight_decay: 0.0,
        restore_best: false,
        ..TrainConfig::default()
    };
    a.common.apply_to(&mut train);
    train
        .optimizer
        .parse::<OptimizerKind>()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    train.validate()?;
    let val_fraction = a.common.val_fraction.unwrap_or(0.1);
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error(format!(
            "--val-fraction {val_fraction}: must be in [0, 1)"
        )));
    }
    Ok(FinetuneSpec {
        base: base.display().to_string(),
        data: a.data.clone().unwrap_or_else(|| CHITCHAT.into()),
        r: a.lora_rank,
        alpha,
        dropout: a.lora_dropout,
        target_modules: targets,
        qlora: a.qlora,
        pack: !a.no_pack,
        val_fraction,
        train,
    })
}

/// An error naming the Linear layers of `lm` when a target selects none of them.
fn check_targets(lm: &mut LanguageModel, cfg: &LoraConfig) -> Result<()> {
    let mut names = Vec::new();
    lm.visit_linears_mut("", &mut |n, _| names.push(n.to_string()));
    for t in &cfg.target_modules {
        if !names.iter().any(|n| LoraConfig::target_matches(t, n)) {
            let mut leaves: Vec<&str> = names
                .iter()
                .map(|n| n.rsplit('.').next().unwrap_or(n))
                .collect();
            leaves.sort_unstable();
            leaves.dedup();
            return Err(Error(format!(
                "--target-modules: `{t}` matches no Linear layer of the base; its Linear layers \
                 are named {} (paths like {})",
                leaves.join(", "),
                names.first().map_or("none", String::as_str)
            )));
        }
    }
    Ok(())
}

/// Refuse a rank whose adapter matrices cannot be allocated, before any is: A is (r, in) and B
/// is (out, r) for each adapted Linear.
fn check_rank(lm: &mut LanguageModel, cfg: &LoraConfig, gpu: &crate::Gpu) -> Result<()> {
    let mut first = Ok(());
    lm.visit_linears_mut("", &mut |name, lin| {
        if first.is_err()
            || !cfg
                .target_modules
                .iter()
                .any(|t| LoraConfig::target_matches(t, name))
        {
            return;
        }
        let (out, inp) = (lin.weight.shape()[0], lin.in_features());
        for shape in [[cfg.r, inp], [out, cfg.r]] {
            let what = format!("--lora-rank {} ({name}: adapter {shape:?})", cfg.r);
            if let Err(e) = crate::tensor::check_fits(gpu, &shape, crate::DType::F32, &what) {
                first = Err(Error(e.to_string()));
                return;
            }
        }
    });
    first
}

fn next_dir() -> PathBuf {
    (1..)
        .map(|n| Path::new("runs").join(format!("finetune-{n}")))
        .find(|p| !p.exists())
        .expect("some run number is free")
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Writes the PEFT adapter whenever the validation loss improves (every epoch without
/// validation), so `--out` always holds the best adapter; a run stopped inside an epoch writes
/// it too when that partial epoch validates best so far (or there is no validation).
struct AdapterSaver<'a> {
    best: Option<f64>,
    dir: &'a Path,
    cfg: &'a LoraConfig,
    spec: &'a FinetuneSpec,
    context: usize,
    template: &'a ChatTemplate,
}

impl AdapterSaver<'_> {
    fn save(&self, model: &dyn Module) -> crate::Result<()> {
        save_adapter(
            self.dir,
            model,
            self.cfg,
            self.spec,
            self.context,
            self.template,
        )
        .map_err(|e| crate::Error::Config(e.0))
    }
}

impl Hook for AdapterSaver<'_> {
    fn on_partial_epoch(&mut self, r: &EpochRecord, model: &dyn Module) -> crate::Result<()> {
        let better = match (r.val_loss, self.best) {
            (Some(v), Some(b)) => v < b,
            _ => true,
        };
        if better {
            self.best = r.val_loss.or(self.best);
            self.save(model)?;
        }
        Ok(())
    }

    fn end_of_epoch(
        &mut self,
        r: &EpochRecord,
        end: &EpochEnd,
        model: &dyn Module,
    ) -> crate::Result<Control> {
        if end.improved {
            self.best = r.val_loss;
            self.save(model)?;
        }
        Ok(Control::Continue)
    }
}

/// Run `kiln finetune`.
pub fn run(mut a: FinetuneArgs) -> Result<()> {
    let dry = super::memory_args::prepare(&mut a.common)?;
    let resume = a.common.resume;
    let (spec, dir) = if resume {
        let dir = a.common.resume_dir("fine-tune")?;
        let p = dir.join(SETTINGS);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            Error(format!(
                "--resume: {}: {e}; is it a kiln finetune directory?",
                p.display()
            ))
        })?;
        let mut spec: FinetuneSpec = serde_json::from_str(&text)
            .map_err(|e| Error(format!("{}: unreadable settings ({e})", p.display())))?;
        let mut given = a.common.fixed_flags_changed(&spec.train, spec.val_fraction);
        macro_rules! changed {
            ($($v:expr => $saved:expr, $flag:literal),* $(,)?) => {
                $( if let Some(x) = $v {
                    if x != $saved {
                        given.push(format!("{} (saved {:?}, given {x:?})", $flag, $saved));
                    }
                } )*
            };
        }
        changed!(a.base.as_ref().map(|b| b.display().to_string()) => spec.base, "--base",
                 a.data.clone() => spec.data, "--data",
                 a.lora_alpha => spec.alpha, "--lora-alpha",
                 a.qlora.then_some(true) => spec.qlora, "--qlora",
                 a.no_pack.then_some(false) => spec.pack, "--no-pack",
                 // Flags with defaults: a value other than the default was surely given.
                 (a.lora_rank != 8).then_some(a.lora_rank) => spec.r, "--lora-rank",
                 (a.lora_dropout != 0.05).then_some(a.lora_dropout) => spec.dropout,
                     "--lora-dropout",
                 (a.target_modules != ["q_proj", "v_proj"]).then(|| a.target_modules.clone())
                     => spec.target_modules, "--target-modules");
        refuse_fixed_flags(&given)?;
        a.common.extend_resumed(&mut spec.train);
        spec.train.validate()?;
        (spec, dir)
    } else {
        let spec = resolve(&a)?;
        let dir = a.common.fresh_dir("a fine-tune", next_dir)?;
        (spec, dir)
    };
    let _lock = RunLock::acquire(&dir)?;
    let quiet = spec.train.quiet;
    let cfg = spec.lora();
    let base = GptBase::open(Path::new(&spec.base), "--base")?;
    let template = ChatTemplate::default();
    let (convs, label) = chat_data::load_conversations(&spec.data)?;
    let t = &spec.train;
    let data = chat_data::prepare(
        &convs,
        base.tokenizer.as_ref(),
        &template,
        base.context,
        spec.val_fraction,
        t.seed,
        spec.pack,
    )?;
    let gpu = a.common.device.open()?;
    a.common.memory.apply(&gpu)?;
    gpu.reset_peak();
    let mut lm = base.build(&gpu)?;
    check_targets(&mut lm, &cfg)?;
    check_rank(&mut lm, &cfg, &gpu)?;
    crate::nn::manual_seed(t.seed);
    let quant = if spec.qlora {
        Some(quantize_targets(&mut lm, &cfg)?)
    } else {
        None
    };
    let adapted = lora::apply_lora(&mut lm, &cfg)?;
    let kind: OptimizerKind = t
        .optimizer
        .parse()
        .map_err(|e| Error(format!("--optimizer: {e}")))?;
    let mut opt = crate::optim::build_with(
        kind,
        lora::lora_parameters(&lm),
        (t.lr, t.weight_decay, t.momentum),
        t.offload_optimizer,
    )?;
    let settings = serde_json::to_string_pretty(&spec).unwrap_or_default();
    crate::io::write_atomic(&dir.join(SETTINGS), settings.as_bytes())?;
    let counts = crate::nn::freeze::param_counts(&lm);
    let nf4_numel = lora::quantized_numel(&mut lm);
    let total = counts.total + nf4_numel;
    let pct = 100.0 * counts.trainable as f64 / total.max(1) as f64;
    let frozen_f32 = 4 * (counts.total - counts.trainable) as u64;
    let base_bytes = frozen_f32 + quant.as_ref().map_or(0, |q| q.nf4_bytes() as u64);
    let base_f32 = 4 * (total - counts.trainable) as u64;
    // Validation at the training batch size, so that the peak memory is the training's.
    let eval_batch = t.eval_batch_size.unwrap_or(t.batch_size);
    if !quiet {
        println!("device: {} ({:?})", gpu.info().name, gpu.info().backend);
        println!(
            "base:   {} (gpt, context {})",
            base.saved.path.display(),
            base.context
        );
        println!("data:   {label}: {}", data.report);
        println!(
            "lora:   r {}, alpha {}, dropout {} on {} layers ({})",
            cfg.r,
            cfg.alpha,
            cfg.dropout,
            adapted.len(),
            cfg.target_modules.join(", ")
        );
        // PEFT's print_trainable_parameters line, NF4 base weights counted in "all".
        println!(
            "params: trainable params: {} || all params: {} || trainable%: {pct:.4}",
            digits(counts.trainable),
            digits(total)
        );
        match &quant {
            Some(q) => println!(
                "base weights: {} (QLoRA: {}) vs {} all in f32",
                mb(base_bytes),
                quant_line(q),
                mb(base_f32)
            ),
            None => println!("base weights: {} in f32", mb(base_bytes)),
        }
        println!("out:    {}", dir.display());
    }
    let mut train_cfg = spec.train.clone();
    train_cfg.eval_batch_size = Some(eval_batch);
    let train_data: Arc<dyn Dataset> = data.train.clone();
    super::loop_args::check_accumulate(&train_cfg, train_data.len())?;
    let mut trainer = Trainer::new(&gpu, train_cfg, train_data, &dir);
    if let Some(v) = &data.val {
        trainer = trainer.with_val(v.clone());
    }
    trainer.saved = Saved::Only {
        prefix: "lora".into(),
        tensors: lora::lora_parameters(&lm),
    };
    let progress = if resume {
        let p = resume_from(&trainer, &dir, &mut lm, opt.as_mut())?;
        if !quiet {
            println!("{}", resumed_line(&p));
        }
        p
    } else {
        Progress::default()
    };
    let mut objective = MaskedLm { gpu: gpu.clone() };
    let before = match &data.val {
        Some(v) if progress.epoch == 0 && progress.batch == 0 => {
            lm.set_training(false);
            let _g = crate::no_grad();
            Some(objective.evaluate(&lm, v.as_ref(), eval_batch)?.loss)
        }
        _ => None,
    };
    if let (Some(b), false) = (before, quiet) {
        println!("before: val loss {b:.4} (assistant tokens only)");
    }
    if !quiet {
        let units = Units::Tokens {
            context: base.context,
        };
        trainer
            .hooks
            .push(Box::new(progress::Progress::new(units, t.epochs)));
    }
    trainer
        .hooks
        .push(Box::new(super::explosion::Explosion::default()));
    trainer.hooks.push(Box::new(AdapterSaver {
        best: progress.best_val_loss,
        dir: &dir,
        cfg: &cfg,
        spec: &spec,
        context: base.context,
        template: &template,
    }));
    let mem = (a.common.memory).attach(&gpu, &dir, &mut lm, t, &mut trainer);
    let report = trainer.fit(&mut lm, opt.as_mut(), &mut objective, progress)?;
    drop(trainer);
    if super::memory_args::finish(mem.as_ref(), dry, &gpu)? {
        return Ok(());
    }
    let progress = report.progress.clone();
    let last = report.records.last();
    let wall = report.seconds;
    let peak = gpu.peak_bytes();
    let summary = serde_json::json!({
        "base": spec.base,
        "data": spec.data,
        "qlora": spec.qlora,
        "trainable_parameters": counts.trainable,
        "total_parameters": total,
        "trainable_percent": pct,
        "base_weight_bytes": base_bytes,
        "base_weight_bytes_f32": base_f32,
        "peak_gpu_bytes": peak,
        "val_loss_before": before,
        "best_val_loss": progress.best_val_loss,
        "last_train_loss": last.map(|r| r.train_loss),
        "last_val_loss": last.and_then(|r| r.val_loss),
        "epochs_run": progress.epoch,
        "batches_into_next_epoch": progress.batch,
        "steps": progress.step,
        "stopped_early": report.stopped_early,
        "budget_reached": report.budget_reached,
        "wall_seconds": wall,
        "device": gpu.info().name,
    });
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    crate::io::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    if !quiet {
        println!(
            "peak GPU memory: {} (model, adapters, optimizer state, activations)",
            mb(peak)
        );
        println!(
            "\nadapter: {} (adapter_model.safetensors, adapter_config.json, {ADAPTER_META})",
            dir.display()
        );
        println!(
            "chat with it: kiln chat --checkpoint {} --adapter {}",
            spec.base,
            dir.display()
        );
    }
    let after = progress
        .best_val_loss
        .into_iter()
        .chain(last.and_then(|r| r.val_loss))
        .reduce(f64::min);
    let losses = match (before, after) {
        (Some(b), Some(v)) => format!("val loss {b:.4} -> {v:.4}"),
        (None, Some(v)) => format!("best val loss {v:.4}"),
        _ => format!("train loss {:.4}", last.map_or(f64::NAN, |r| r.train_loss)),
    };
    let stop = if report.stopped_early {
        " (early stop)"
    } else if report.budget_reached {
        " (step/time budget reached)"
    } else {
        ""
    };
    println!(
        "{}{stop} in {wall:.1}s: {losses} (assistant tokens); {} of {} parameters \
         trainable ({pct:.2} %); peak GPU memory {}",
        super::train_summary::done(&progress),
        digits(counts.trainable),
        digits(total),
        mb(peak)
    );
    Ok(())
}

fn save_adapter(
    dir: &Path,
    lm: &dyn Module,
    cfg: &LoraConfig,
    spec: &FinetuneSpec,
    context: usize,
    template: &ChatTemplate,
) -> Result<()> {
    crate::nn::lora_io::save_adapter(lm, cfg, dir)?;
    let meta = AdapterMeta {
        base: spec.base.clone(),
        qlora: spec.qlora,
        context,
        end_marker: template.end.clone(),
    };
    let text = serde_json::to_string_pretty(&meta).unwrap_or_default();
    Ok(crate::io::write_atomic(
        &dir.join(ADAPTER_META),
        text.as_bytes(),
    )?)
}
