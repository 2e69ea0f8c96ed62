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
//! After each epoch the run state (adapters, optimizer, RNG, progress) is written to
//! [`STATE`] for `--resume`, and the PEFT adapter (`adapter_model.safetensors`,
//! `adapter_config.json`, plus kiln's [`super::chat_model::ADAPTER_META`]) is written
//! atomically whenever the validation loss improves (every epoch without validation), so --out
//! always holds the best adapter. `metrics.csv`, `curves.png` and `summary.json` report the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::chat_data::{self, CHITCHAT};
use super::chat_model::{ADAPTER_META, AdapterMeta, GptBase, quant_line, quantize_targets};
use super::train::{LoopArgs, group};
use super::{Error, Result, open_device};
use crate::data::chat::{ChatDataset, ChatTemplate};
use crate::data::{DataLoader, Dataset, Targets};
use crate::models::LanguageModel;
use crate::nn::Module;
use crate::nn::lora::{self, LoraConfig};
use crate::ops::IGNORE_INDEX;
use crate::optim::{Optimizer, OptimizerKind, OptimizerState, Schedule};
use crate::tensor::Tensor;
use crate::train::log::{EpochRecord, RunLog};
use crate::train::{Progress, TrainConfig, checkpoint, transfer};

/// The resumable state file in `--out`.
pub const STATE: &str = "finetune_state.safetensors";
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

/// Mean masked loss of `lm` over `data` (no graph, eval mode), or `None` for no data.
fn masked_loss(lm: &mut LanguageModel, data: &ChatDataset, batch: usize) -> Result<f64> {
    let gpu = lm_gpu(lm)?;
    lora::set_training(lm, false);
    let _g = crate::no_grad();
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut parts = Vec::new();
    for chunk in idx.chunks(batch.max(1)) {
        let b = data.batch(chunk);
        let (x, labels) = upload(&gpu, &b)?;
        let n = trained(&labels);
        parts.push((lm.forward(&x)?.cross_entropy_masked(&labels)?, n));
    }
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (l, n) in parts {
        sum += l.item()? as f64 * n as f64;
        count += n;
    }
    Ok(sum / count.max(1) as f64)
}

fn lm_gpu(lm: &LanguageModel) -> Result<std::sync::Arc<crate::Gpu>> {
    Ok(super::chat_model::gpt_of(lm)?.tok_emb.weight.gpu().clone())
}

fn trained(labels: &[u32]) -> usize {
    labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
}

fn upload(gpu: &std::sync::Arc<crate::Gpu>, b: &crate::data::Batch) -> Result<(Tensor, Vec<u32>)> {
    let x = Tensor::from_slice_on(gpu, &b.x, &b.x_shape)?; // (B, T) ids as f32
    let Targets::Classes { labels, .. } = &b.y else {
        return Err(Error("chat batches carry class labels".into()));
    };
    Ok((x, labels.clone()))
}

fn save_state(dir: &Path, lm: &LanguageModel, opt: &dyn Optimizer, p: &Progress) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = lora::lora_parameters(lm)
        .into_iter()
        .map(|(n, t)| (format!("lora.{n}"), t))
        .collect();
    let st = opt.state();
    tensors.extend(
        st.tensors
            .into_iter()
            .map(|(n, t)| (format!("optim.{n}"), t)),
    );
    let mut meta = BTreeMap::new();
    meta.insert(
        "progress".into(),
        serde_json::to_string(p).unwrap_or_default(),
    );
    meta.insert("optimizer_step".into(), st.step.to_string());
    let rng = crate::nn::rng::rng_state();
    meta.insert(
        "rng".into(),
        serde_json::to_string(&rng).unwrap_or_default(),
    );
    Ok(checkpoint::save(&dir.join(STATE), &tensors, &meta)?)
}

fn load_state(dir: &Path, lm: &LanguageModel, opt: &mut dyn Optimizer) -> Result<Progress> {
    let ck = checkpoint::load(&dir.join(STATE))?;
    ck.restore_into("lora", &lora::lora_parameters(lm))?;
    let bad = |e: &dyn std::fmt::Display| Error(format!("{}: {e}", ck.path));
    let progress: Progress = serde_json::from_str(ck.meta("progress")?).map_err(|e| bad(&e))?;
    let step: u64 = ck.meta("optimizer_step")?.parse().map_err(|e| bad(&e))?;
    let gpu = lm_gpu(lm)?;
    let mut tensors = Vec::new();
    for n in ck.names_under("optim") {
        let h = &ck.tensors[&format!("optim.{n}")];
        tensors.push((n, Tensor::from_slice_on(&gpu, &h.to_f32()?, &h.shape)?));
    }
    opt.load_state(&OptimizerState { step, tensors })?;
    let rng = serde_json::from_str(ck.meta("rng")?).map_err(|e| bad(&e))?;
    crate::nn::rng::set_rng_state(rng);
    Ok(progress)
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

/// Run `kiln finetune`.
pub fn run(a: FinetuneArgs) -> Result<()> {
    let (spec, dir) = if a.common.resume {
        let dir =
            a.common.out.clone().ok_or_else(|| {
                Error("--resume needs --out DIR, the fine-tune to continue".into())
            })?;
        let p = dir.join(SETTINGS);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            Error(format!(
                "--resume: {}: {e}; is it a kiln finetune directory?",
                p.display()
            ))
        })?;
        let mut spec: FinetuneSpec = serde_json::from_str(&text)
            .map_err(|e| Error(format!("{}: unreadable settings ({e})", p.display())))?;
        a.common.extend_resumed(&mut spec.train);
        (spec, dir)
    } else {
        let spec = resolve(&a)?;
        let dir = a.common.out.clone().unwrap_or_else(next_dir);
        if dir.join(STATE).exists() {
            return Err(Error(format!(
                "{} already holds a fine-tune; continue it with --resume, or pick another --out",
                dir.display()
            )));
        }
        (spec, dir)
    };
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
    let gpu = open_device(a.common.device.as_deref())?;
    gpu.reset_peak();
    let mut lm = base.build(&gpu)?;
    check_targets(&mut lm, &cfg)?;
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
    let mut opt = crate::optim::build(
        kind,
        lora::lora_parameters(&lm),
        t.lr,
        t.weight_decay,
        t.momentum,
    )?;
    std::fs::create_dir_all(&dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    let settings = serde_json::to_string_pretty(&spec).unwrap_or_default();
    checkpoint::write_atomic(&dir.join(SETTINGS), settings.as_bytes())?;
    let counts = transfer::param_counts(&lm);
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
            group(counts.trainable),
            group(total)
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
    let mut progress = if a.common.resume && dir.join(STATE).exists() {
        let p = load_state(&dir, &lm, opt.as_mut())?;
        if !quiet {
            println!("resumed after epoch {} (step {})", p.epoch, p.step);
        }
        p
    } else {
        Progress::default()
    };
    let before = match &data.val {
        Some(v) if progress.epoch == 0 => Some(masked_loss(&mut lm, v, eval_batch)?),
        _ => None,
    };
    if let (Some(b), false) = (before, quiet) {
        println!("before: val loss {b:.4} (assistant tokens only)");
    }
    let loader = DataLoader::new(data.train.clone(), t.batch_size)
        .map_err(|e| Error(e.to_string()))?
        .shuffle(t.seed);
    let per_epoch = loader.len();
    let mut total_steps = (t.epochs * per_epoch).div_ceil(t.accumulate) as u64;
    if let Some(m) = t.max_steps {
        total_steps = total_steps.min(m);
    }
    let schedule = Schedule::from_name(&t.schedule, total_steps)?;
    let deadline = t
        .time_limit_minutes
        .map(|m| Instant::now() + std::time::Duration::from_secs_f64(m * 60.0));
    let mut log = RunLog::open(&dir, progress.epoch)?;
    let start = Instant::now();
    let mut budget = false;
    let mut stopped_early = false;
    let mut last: Option<EpochRecord> = None;
    let params = lora::lora_parameters(&lm);
    let params: Vec<Tensor> = params.into_iter().map(|(_, t)| t).collect();
    for epoch in progress.epoch + 1..=t.epochs {
        lora::set_training(&mut lm, true);
        let t0 = Instant::now();
        let bar = (!quiet).then(|| epoch_bar(epoch, t.epochs, per_epoch));
        let mut sum: Option<Tensor> = None; // GPU scalar: sum of token-weighted losses
        let (mut tokens, mut windows) = (0usize, 0usize);
        for (i, b) in loader.epoch(epoch as u64).enumerate() {
            let (x, labels) = upload(&gpu, &b)?;
            let n = trained(&labels);
            let loss = lm.forward(&x)?.cross_entropy_masked(&labels)?;
            let scaled = if t.accumulate > 1 {
                loss.mul_scalar(1.0 / t.accumulate as f32)?
            } else {
                loss.clone()
            };
            scaled.backward()?;
            let w = loss.detach().mul_scalar(n as f32)?;
            sum = Some(match sum {
                None => w,
                Some(s) => s.add(&w)?,
            });
            tokens += n;
            windows += b.x_shape[0];
            let end = i + 1 == per_epoch;
            if (i + 1) % t.accumulate == 0 || end {
                if let Some(c) = t.clip_grad_norm {
                    crate::optim::clip_grad_norm(&params, c)?;
                }
                opt.set_learning_rate(schedule.lr_at(t.lr, progress.step));
                opt.step()?;
                opt.zero_grad()?;
                progress.step += 1;
                budget = t.max_steps.is_some_and(|m| progress.step >= m)
                    || deadline.is_some_and(|d| Instant::now() >= d);
            }
            if let Some(bar) = &bar {
                bar.inc(1);
                if (i + 1) % 10 == 0 || end {
                    let l = loss.item()?;
                    let rate = windows as f64 * base.context as f64 / t0.elapsed().as_secs_f64();
                    bar.set_message(format!("loss {l:.4}  {rate:.0} tokens/s"));
                }
            }
            if budget {
                break;
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let train_loss = match sum {
            Some(s) => s.item()? as f64 / tokens.max(1) as f64,
            None => f64::NAN,
        };
        if !train_loss.is_finite() {
            return Err(Error(format!(
                "the masked loss became {train_loss} in epoch {epoch}; lower --lr or add \
                 --clip-grad-norm (the last good adapter is kept in {})",
                dir.display()
            )));
        }
        let seconds = t0.elapsed().as_secs_f64();
        let mut rec = EpochRecord {
            epoch,
            train_loss,
            lr: opt.learning_rate() as f64,
            seconds,
            samples_per_sec: windows as f64 / seconds.max(1e-9),
            ..Default::default()
        };
        let improved = match &data.val {
            Some(v) => {
                let l = masked_loss(&mut lm, v, eval_batch)?;
                rec.val_loss = Some(l);
                rec.val_perplexity = Some(l.exp());
                let better = progress.best_val_loss.is_none_or(|b| l < b - t.min_delta);
                if better {
                    progress.best_val_loss = Some(l);
                    progress.best_epoch = epoch;
                    progress.since_best = 0;
                } else {
                    progress.since_best += 1;
                }
                better
            }
            None => true,
        };
        progress.epoch = epoch;
        if improved {
            save_adapter(&dir, &lm, &cfg, &spec, base.context, &template)?;
        }
        save_state(&dir, &lm, opt.as_ref(), &progress)?;
        log.push(rec.clone())?;
        if !quiet {
            let mut line = format!("epoch {epoch:>3}/{}  train loss {train_loss:.4}", t.epochs);
            if let Some(v) = rec.val_loss {
                line += &format!("  val loss {v:.4}");
            }
            let rate = windows as f64 * base.context as f64 / seconds.max(1e-9);
            line += &format!("  {seconds:.2}s ({rate:.0} tokens/s)");
            println!("{line}");
        }
        last = Some(rec);
        if t.patience.is_some_and(|p| progress.since_best >= p) {
            stopped_early = true;
            break;
        }
        if budget {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
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
        "last_train_loss": last.as_ref().map(|r| r.train_loss),
        "last_val_loss": last.as_ref().and_then(|r| r.val_loss),
        "epochs_run": progress.epoch,
        "steps": progress.step,
        "stopped_early": stopped_early,
        "budget_reached": budget,
        "wall_seconds": wall,
        "device": gpu.info().name,
    });
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    checkpoint::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
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
    let losses = match (before, progress.best_val_loss) {
        (Some(b), Some(v)) => format!("val loss {b:.4} -> {v:.4}"),
        (None, Some(v)) => format!("best val loss {v:.4}"),
        _ => format!(
            "train loss {:.4}",
            last.as_ref().map_or(f64::NAN, |r| r.train_loss)
        ),
    };
    let stop = if stopped_early {
        " (early stop)"
    } else if budget {
        " (step/time budget reached)"
    } else {
        ""
    };
    println!(
        "{} epochs{stop} in {wall:.1}s: {losses} (assistant tokens); {} of {} parameters \
         trainable ({pct:.2} %); peak GPU memory {}",
        progress.epoch,
        group(counts.trainable),
        group(total),
        mb(peak)
    );
    Ok(())
}

fn save_adapter(
    dir: &Path,
    lm: &LanguageModel,
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
    Ok(checkpoint::write_atomic(
        &dir.join(ADAPTER_META),
        text.as_bytes(),
    )?)
}

fn epoch_bar(epoch: usize, epochs: usize, len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
