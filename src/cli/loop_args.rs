//! The training-loop flags shared by `kiln train` and `kiln finetune`, and what `--resume`
//! lets change.

use std::path::PathBuf;

use clap::Args;

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
    /// Optimizer: sgd, adam, adamw, adam8bit or adamw8bit (8-bit moments).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Keep Adam's moments in host memory and run the update on the CPU (adam / adamw).
    #[arg(long)]
    pub offload_optimizer: bool,
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
    /// Validation fraction, above 0 and below 1 (the best epoch is chosen on it).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// Output directory (kiln train's default: runs/<data>-<model>-<n>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out exactly where its last checkpoint stands (mid-epoch too),
    /// with its saved settings; only --epochs, --max-steps, --time-limit, --stop-at-epoch,
    /// --checkpoint-every, --quiet and --device may change with it.
    #[arg(long)]
    pub resume: bool,
    /// Also checkpoint every N optimizer steps inside epochs, so that a killed run resumes
    /// (--resume) from at most N steps back, exactly.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Stop once this epoch is complete, keeping the learning-rate schedule of --epochs (a
    /// budget like --max-steps: `--resume` continues the run exactly).
    #[arg(long, value_name = "EPOCH")]
    pub stop_at_epoch: Option<usize>,
    /// Only the final summary line.
    #[arg(long, short)]
    pub quiet: bool,
    /// --memory, --max-memory, --dry-run.
    #[command(flatten)]
    pub memory: super::memory_args::MemoryArgs,
    /// `--grad-checkpoint [N]`.
    #[command(flatten)]
    pub grad_checkpoint: super::grad_checkpoint::GradCheckpointArgs,
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
                 clip_grad_norm => clip_grad_norm, checkpoint_every => checkpoint_every,
                 stop_at_epoch => stop_at_epoch);
        t.quiet |= self.quiet;
        t.offload_optimizer |= self.offload_optimizer;
        self.grad_checkpoint.apply_to(t);
    }

    /// The budget of a resumed run: `--epochs` (the new total; the learning-rate schedule is
    /// recomputed for it), `--max-steps` (a total step count, as in the first run),
    /// `--time-limit` (minutes of this process), `--checkpoint-every` and `--quiet`. The saved
    /// step and time budgets are per invocation and do not carry over.
    pub fn extend_resumed(&self, t: &mut crate::train::TrainConfig) {
        if let Some(e) = self.epochs {
            t.epochs = e;
        }
        t.max_steps = self.max_steps;
        t.time_limit_minutes = self.time_limit;
        t.stop_at_epoch = self.stop_at_epoch;
        if self.checkpoint_every.is_some() {
            t.checkpoint_every = self.checkpoint_every;
        }
        t.quiet = self.quiet;
        self.grad_checkpoint.apply_to(t);
    }

    /// The directory `--resume` continues: `--out`, required (`what`: "run", "fine-tune").
    pub fn resume_dir(&self, what: &str) -> super::Result<PathBuf> {
        self.out.clone().ok_or_else(|| {
            super::Error(format!("--resume needs --out DIR, the {what} to continue"))
        })
    }

    /// The directory of a new run: `--out`, or `default()` without it. An error when it already
    /// holds a run (`what`: "a run", "a fine-tune"): continuing one takes `--resume`.
    pub fn fresh_dir(
        &self,
        what: &str,
        default: impl FnOnce() -> PathBuf,
    ) -> super::Result<PathBuf> {
        let dir = self.out.clone().unwrap_or_else(default);
        if dir.join(crate::io::run_dir::LAST).exists() {
            return Err(super::Error(format!(
                "{} already holds {what}; continue it with --resume, or pick another --out",
                dir.display()
            )));
        }
        Ok(dir)
    }

    /// The loop flags given with values that differ from the saved run's `t` (and validation
    /// fraction), which a resumed run cannot change, as `--flag (saved X, given Y)`.
    pub fn fixed_flags_changed(
        &self,
        t: &crate::train::TrainConfig,
        val_fraction: f64,
    ) -> Vec<String> {
        let mut v = Vec::new();
        macro_rules! changed {
            ($($field:ident => $saved:expr, $flag:literal),* $(,)?) => {
                $( if let Some(x) = &self.$field {
                    if Some(x.clone()) != $saved {
                        v.push(format!("{} (saved {:?}, given {x:?})", $flag, $saved));
                    }
                } )*
            };
        }
        changed!(batch_size => Some(t.batch_size), "--batch-size",
                 lr => Some(t.lr), "--lr",
                 optimizer => Some(t.optimizer.clone()), "--optimizer",
                 schedule => Some(t.schedule.clone()), "--schedule",
                 weight_decay => Some(t.weight_decay), "--weight-decay",
                 momentum => Some(t.momentum), "--momentum",
                 seed => Some(t.seed), "--seed",
                 patience => t.patience, "--patience",
                 clip_grad_norm => t.clip_grad_norm, "--clip-grad-norm",
                 accumulate => Some(t.accumulate), "--accumulate",
                 val_fraction => Some(val_fraction), "--val-fraction");
        v
    }
}

/// Refuse a `--resume` given with flags that would change the run: naming them and the ones
/// that may change.
pub fn refuse_fixed_flags(given: &[String]) -> super::Result<()> {
    if given.is_empty() {
        return Ok(());
    }
    Err(super::Error(format!(
        "--resume continues a run with its saved settings, which these flags would change: {}. \
         Only --epochs, --max-steps, --time-limit, --stop-at-epoch, --checkpoint-every, \
         --grad-checkpoint, --quiet and --device may change on --resume (start a new run with another --out to \
         change the others)",
        given.join("; ")
    )))
}

/// Refuse `--accumulate N` larger than the batches of an epoch (`examples` training examples
/// in batches of `cfg.batch_size`): the optimizer would step only at each epoch's end, on
/// fewer batches than asked for.
pub fn check_accumulate(cfg: &crate::train::TrainConfig, examples: usize) -> super::Result<()> {
    let batches = examples.div_ceil(cfg.batch_size.max(1));
    if cfg.accumulate > batches.max(1) {
        return Err(super::Error(format!(
            "--accumulate {}: an epoch has only {batches} batch(es) of {} ({examples} training \
             examples); accumulate at most {} batches",
            cfg.accumulate,
            cfg.batch_size,
            batches.max(1)
        )));
    }
    Ok(())
}
