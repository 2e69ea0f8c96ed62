//! The memory flags of `kiln train` and `kiln finetune` (flattened into [`LoopArgs`]): the
//! ledger (`--memory`), the device-memory cap (`--max-memory`, or `KILN_MAX_MEMORY`) and the
//! plan (`--dry-run`).
//!
//! `--dry-run` plans a run without allocating device memory: the device goes into a dry run
//! (`Gpu::set_dry_run`: allocations counted, kernels skipped), the command builds its model,
//! optimizer and data as usual and trains [`DRY_STEPS`] steps shape-only into a temporary
//! directory, and the plan is printed: weights, gradients and optimizer state from the
//! per-parameter formulas ([`crate::train::memory::memory_formula`]), activations, workspace and
//! the peak total from the shape-only steps. With `--out DIR` it is also written to
//! `DIR/memory_plan.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use super::loop_args::LoopArgs;
use super::{Error, Result};
use crate::Gpu;
use crate::memory::{format_bytes, parse_size};
use crate::nn::Module;
use crate::train::memory::{Formula, MemoryLedger, MemoryRow, memory_formula};
use crate::train::{TrainConfig, Trainer};

/// Optimizer steps a dry run takes: the first makes the optimizer state, the second runs with
/// gradients already held, as every later step does.
pub const DRY_STEPS: u64 = 2;

/// The plan file `--dry-run --out DIR` writes.
pub const PLAN_JSON: &str = "memory_plan.json";

/// The memory flags.
#[derive(Debug, Args, Default, Clone)]
pub struct MemoryArgs {
    /// Report device memory by category (weights, gradients, optimizer state, activations,
    /// workspace, peak total) per step and overall: memory.json and memory.png in the run
    /// directory, and a summary at the end.
    #[arg(long)]
    pub memory: bool,
    /// Cap the device memory kiln's buffer pool may hold, like 512MiB, 2GiB, 1.5GB or bytes
    /// (also KILN_MAX_MEMORY); going over it is an error naming the tensor and what is live.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Plan the run's memory without allocating it: build everything, train a few steps
    /// shape-only, print the predicted breakdown (also to --out DIR/memory_plan.json) and stop.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where a dry run trains and where its plan goes; the scratch directory is removed when this
/// drops (after the plan, or on an error).
#[derive(Debug)]
pub struct DryRun {
    scratch: PathBuf,
    plan_dir: Option<PathBuf>,
}

impl Drop for DryRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Check `--max-memory`; for `--dry-run`, point the run at a scratch directory, limit it to
/// [`DRY_STEPS`] steps and quiet it (`None` without it). Call first, before the run directory
/// is made.
pub fn prepare(common: &mut LoopArgs) -> Result<Option<DryRun>> {
    common.memory.cap()?;
    if !common.memory.dry_run {
        return Ok(None);
    }
    if common.resume {
        return Err(Error(
            "--dry-run plans a new run; it cannot be combined with --resume".into(),
        ));
    }
    let scratch = std::env::temp_dir().join(format!("kiln-dry-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let plan_dir = common.out.replace(scratch.clone());
    common.max_steps = Some(common.max_steps.unwrap_or(DRY_STEPS).min(DRY_STEPS));
    common.quiet = true;
    Ok(Some(DryRun { scratch, plan_dir }))
}

impl MemoryArgs {
    /// Once the device is open: the cap of `--max-memory` (over `KILN_MAX_MEMORY`), and the
    /// dry run of `--dry-run`.
    pub fn apply(&self, gpu: &Gpu) -> Result<()> {
        if let Some(cap) = self.cap()? {
            gpu.set_max_memory(Some(cap));
        }
        gpu.set_dry_run(self.dry_run);
        Ok(())
    }

    /// The cap `--max-memory` gives, if any.
    fn cap(&self) -> Result<Option<u64>> {
        let parse = |t: &String| parse_size(t).map_err(|e| Error(format!("--max-memory: {e}")));
        self.max_memory.as_ref().map(parse).transpose()
    }

    /// With `--memory` or `--dry-run`: a ledger of `gpu` writing into `dir`, with the
    /// formula's prediction for `model` under `cfg`'s optimizer, added to `trainer`'s hooks.
    pub fn attach(
        &self,
        gpu: &Arc<Gpu>,
        dir: &Path,
        model: &mut dyn Module,
        cfg: &TrainConfig,
        trainer: &mut Trainer<'_>,
    ) -> Option<MemoryLedger> {
        if !(self.memory || self.dry_run) {
            return None;
        }
        let optimizer = match cfg.offload_optimizer {
            true => "offload",
            false => &cfg.optimizer,
        };
        let formula = memory_formula(model, optimizer, cfg.momentum);
        let ledger = MemoryLedger::new(gpu, Some(dir.to_path_buf())).with_formula(formula);
        trainer.hooks.push(Box::new(ledger.clone()));
        Some(ledger)
    }
}

/// After the run: write the ledger and print its summary; for a dry run print the plan (and
/// write it), end the dry run and return true (the command stops there).
pub fn finish(ledger: Option<&MemoryLedger>, dry: Option<DryRun>, gpu: &Gpu) -> Result<bool> {
    let Some(ledger) = ledger else {
        return Ok(false);
    };
    ledger.write()?;
    let Some(dry) = dry else {
        print!("{}", ledger.summary());
        return Ok(false);
    };
    gpu.set_dry_run(false);
    let plan = Plan::new(ledger);
    print!("{}", plan.text());
    if let Some(d) = &dry.plan_dir {
        let json = serde_json::to_string_pretty(&plan).unwrap_or_default();
        crate::io::write_atomic(&d.join(PLAN_JSON), json.as_bytes())?;
        println!("plan written to {}", d.join(PLAN_JSON).display());
    }
    Ok(true)
}

/// `memory_plan.json`: the predicted ledger, the formula it took weights, gradients and
/// optimizer state from, and what the shape-only steps measured.
#[derive(Debug, Serialize)]
struct Plan {
    #[serde(flatten)]
    predicted: MemoryRow,
    formula: Formula,
    shape_only: MemoryRow,
    steps: u64,
    cap: Option<u64>,
}

impl Plan {
    fn new(ledger: &MemoryLedger) -> Plan {
        let r = ledger.report();
        let formula = r.formula.unwrap_or_default();
        let measured = r.overall;
        Plan {
            predicted: MemoryRow {
                weights: formula.weights,
                gradients: formula.gradients,
                optimizer_state: formula.optimizer_state.unwrap_or(measured.optimizer_state),
                ..measured
            },
            formula,
            shape_only: measured,
            steps: r.steps_measured,
            cap: r.cap,
        }
    }

    fn text(&self) -> String {
        let f = &self.formula;
        let mut s = format!(
            "memory plan (nothing allocated on the device; {} trainable of {} parameters):\n",
            f.trainable, f.parameters
        );
        s += &self.predicted.table();
        s += &format!(
            "weights, gradients, optimizer_state: per-parameter formulas; activations_peak, \
             workspace, peak_total: {} shape-only steps\n",
            self.steps
        );
        if let Some(cap) = self.cap {
            let fits = if self.predicted.peak_total <= cap {
                "fits under"
            } else {
                "does not fit under"
            };
            s += &format!("{fits} the cap of {}\n", format_bytes(cap));
        }
        s
    }
}
