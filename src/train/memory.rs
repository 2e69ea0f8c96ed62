//! The memory ledger of a training run (`kiln train --memory`): device memory by category,
//! read from the buffer pool's counters ([`Gpu::memory_stats`], no device sync), per optimizer
//! step and overall, written to `memory.json` and plotted in `memory.png`.
//!
//! Categories (see [`crate::memory`] for how a buffer gets one): `weights` (parameters and
//! buffers; [`tag_weights`] retags them when the loop starts), `gradients` (the `.grad`s),
//! `optimizer_state` (what `optimizer.step()` allocates: the loop runs it in that scope),
//! `activations_peak` (tensors made while autograd records: at their peak, the end of the
//! forward, what the graph keeps for backward) and `workspace` (everything else: backward's
//! temporaries, the batch, metrics). Each step's row holds each category's *peak during the
//! step* and the peak of the total (`peak_total`, at most the sum: the categories peak at
//! different moments); `overall` is the largest of each over the steps. Bytes are the pool's
//! size classes, what the device holds. Validation (between epochs) is not part of a step.
//!
//! ```text
//! on_epoch_start: reset the peaks      after_step: row = peaks since the reset; reset
//! end_of_epoch / on_partial_epoch: write memory.json (and memory.png)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_kernels::buffer_pool::size_class;
use kiln_kernels::memory::{Category, MemoryStats, format_bytes};
use serde::{Deserialize, Serialize};

use super::hooks::{Control, EpochEnd, Hook, StepInfo};
use super::log::EpochRecord;
use crate::Gpu;
use crate::error::{Error, Result};
use crate::nn::Module;

/// The ledger file of a run directory.
pub const MEMORY_JSON: &str = "memory.json";

/// Steps whose rows `memory.json` keeps (and `memory.png` plots); later steps count only in
/// `overall`.
pub const STEPS_KEPT: usize = 50;

/// Bytes by category: one step's peaks, or the overall ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRow {
    /// Parameters and buffers.
    pub weights: u64,
    /// Accumulated gradients.
    pub gradients: u64,
    /// Optimizer state.
    pub optimizer_state: u64,
    /// Tensors kept for backward, at their peak.
    pub activations_peak: u64,
    /// Temporaries and everything else.
    pub workspace: u64,
    /// Peak of all live bytes together.
    pub peak_total: u64,
}

impl MemoryRow {
    /// Each category's peak and the total's, from the pool's counters.
    pub fn from_peaks(s: &MemoryStats) -> MemoryRow {
        MemoryRow {
            weights: s.peak_of(Category::Weights),
            gradients: s.peak_of(Category::Gradients),
            optimizer_state: s.peak_of(Category::OptimizerState),
            activations_peak: s.peak_of(Category::Activations),
            workspace: s.peak_of(Category::Workspace),
            peak_total: s.peak_total,
        }
    }

    /// The six values with their `memory.json` keys, in ledger order.
    pub fn entries(&self) -> [(&'static str, u64); 6] {
        [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer_state", self.optimizer_state),
            ("activations_peak", self.activations_peak),
            ("workspace", self.workspace),
            ("peak_total", self.peak_total),
        ]
    }

    /// The larger of `self` and `other`, key by key.
    pub fn max(self, o: MemoryRow) -> MemoryRow {
        MemoryRow {
            weights: self.weights.max(o.weights),
            gradients: self.gradients.max(o.gradients),
            optimizer_state: self.optimizer_state.max(o.optimizer_state),
            activations_peak: self.activations_peak.max(o.activations_peak),
            workspace: self.workspace.max(o.workspace),
            peak_total: self.peak_total.max(o.peak_total),
        }
    }

    /// One line per key: `  weights            1.23 MiB  (1290240 bytes)`.
    pub fn table(&self) -> String {
        self.entries()
            .iter()
            .map(|(k, v)| format!("  {k:<17} {:>11}  ({v} bytes)\n", format_bytes(*v)))
            .collect()
    }
}

/// One step's row in `memory.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRow {
    /// Optimizer steps done (1 for the first).
    pub step: u64,
    /// Its peaks.
    #[serde(flatten)]
    pub bytes: MemoryRow,
}

/// What [`memory_formula`] predicts from the parameters alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formula {
    /// Parameters, buffers and NF4-packed bases.
    pub weights: u64,
    /// One f32 gradient per trainable parameter.
    pub gradients: u64,
    /// The optimizer's state; `None` for an optimizer the formula does not know.
    pub optimizer_state: Option<u64>,
    /// Scalar parameters (trainable and frozen; NF4 bases not included).
    pub parameters: u64,
    /// Trainable scalar parameters.
    pub trainable: u64,
}

/// The contents of `memory.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// The largest of each key over the steps.
    pub overall: MemoryRow,
    /// The first [`STEPS_KEPT`] steps.
    pub steps: Vec<StepRow>,
    /// Steps measured (all of them, kept or not).
    pub steps_measured: u64,
    /// The per-parameter prediction, when the ledger was given one.
    pub formula: Option<Formula>,
    /// The device-memory cap in force, if any.
    pub cap: Option<u64>,
    /// True when measured in a dry run (nothing allocated; see `Gpu::set_dry_run`).
    pub dry_run: bool,
}

impl MemoryReport {
    /// Read a `memory.json`.
    pub fn load(path: &Path) -> Result<MemoryReport> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: format!("not a kiln memory ledger: {e}"),
        })
    }
}

/// Count every parameter and buffer of `model` as weights (the loop does this when it starts,
/// so tensors built before any scope was opened are counted right).
pub fn tag_weights(model: &dyn Module) {
    let (p, b) = (model.named_parameters(), model.named_buffers());
    for (_, t) in p.iter().chain(&b) {
        t.set_memory_category(Category::Weights);
    }
}

/// Bytes the pool gives an NF4 weight of `out x in`: its codes (8 per u32 word), int8 block
/// scales (4 per word) and f32 statistics (a mean and one scale per 256 blocks), each its own
/// buffer rounded to a size class, and the 256-byte placeholder the layer keeps.
pub fn nf4_pool_bytes(out: usize, inp: usize) -> u64 {
    use kiln_kernels::reference::nf4::{BLOCK, GROUP, PER_WORD};
    let n = out * inp;
    let blocks = n.div_ceil(BLOCK);
    let words = [
        n.div_ceil(PER_WORD),
        blocks.div_ceil(4),
        1 + blocks.div_ceil(GROUP),
    ];
    words
        .iter()
        .map(|w| size_class(4 * *w.max(&1) as u64))
        .sum::<u64>()
        + size_class(4)
}

/// Predict weights, gradients and optimizer state of `model` trained by `optimizer` (`sgd`,
/// `adam`, `adamw`, `adam8bit`, `adamw8bit`, or `offload` for Adam/AdamW with host moments;
/// `momentum` for SGD) from its tensors' shapes alone, each tensor rounded up to the pool's size
/// class:
///
/// ```text
/// weights          sum over parameters and buffers of 4 n (f32), NF4 bases by nf4_pool_bytes
/// gradients        4 n per trainable parameter (frozen ones have none)
/// optimizer_state  SGD: 4 n with momentum, 0 without; Adam/AdamW: 8 n (two moments) + a
///                  256-byte step counter per trainable parameter; 8-bit Adam/AdamW: as Adam
///                  below 4,096 values, else 2 n bytes of codes + 8 bytes per block of 2,048
///                  (two absmax scales) + the step counter, and 2 KiB of code books;
///                  offloaded Adam: no state on the device, but each step stages every
///                  gradient and value in one buffer for the readback, 8 n bytes in all
/// ```
///
/// So f32 Adam is 16 bytes per trainable parameter before rounding (4 + 4 + 8), and a LoRA
/// fine-tune pays gradients and state only for its adapters.
pub fn memory_formula(model: &mut dyn Module, optimizer: &str, momentum: f32) -> Formula {
    let mut f = Formula::default();
    let mut seen = std::collections::HashSet::new();
    let (params, buffers) = (model.named_parameters(), model.named_buffers());
    let (mut state, mut state8, mut largest) = (0u64, 0u64, 0usize);
    for (_, t) in params.iter().chain(&buffers) {
        // Tied weights share storage: count the buffer once.
        if !seen.insert(Arc::as_ptr(&t.inner.storage) as usize) {
            continue;
        }
        let bytes = size_class((t.numel() * t.dtype().size()).max(t.dtype().size()) as u64);
        f.weights += bytes;
        if t.requires_grad_flag() {
            f.gradients += bytes;
            f.trainable += t.numel() as u64;
            state += bytes;
            state8 += adam8bit_state_bytes(t.numel(), bytes);
            largest = largest.max(t.numel());
        }
    }
    f.parameters = params.iter().map(|(_, t)| t.numel() as u64).sum();
    model.visit_linears_mut("", &mut |_, lin| {
        if let Some(w) = lin.nf4_weight() {
            let [o, i] = w.shape();
            f.weights += nf4_pool_bytes(o, i);
        }
    });
    let trainable_tensors = params
        .iter()
        .filter(|(_, t)| t.requires_grad_flag())
        .count() as u64;
    f.optimizer_state = match optimizer.trim().to_ascii_lowercase().as_str() {
        "sgd" if momentum == 0.0 => Some(0),
        "sgd" => Some(state),
        "adam" | "adamw" => Some(2 * state + size_class(4) * trainable_tensors),
        // Plus the two 256-value code books (512 f32), uploaded once when any tensor is quantised.
        "adam8bit" | "adamw8bit" if largest >= crate::optim::Adam8bit::MIN_QUANTISED => {
            Some(state8 + size_class(512 * 4))
        }
        "adam8bit" | "adamw8bit" => Some(state8),
        "offload" => Some(size_class(8 * f.trainable)),
        _ => None,
    };
    f
}

/// Optimizer-state bytes of 8-bit Adam for one parameter of `n` values (`bytes` = its own
/// pool size): f32 moments below [`Adam8bit::MIN_QUANTISED`], else two code arrays (four codes
/// per u32) and the per-block scales, each rounded to the pool's size class.
fn adam8bit_state_bytes(n: usize, bytes: u64) -> u64 {
    use kiln_kernels::launch::optim::{q8_blocks, q8_words};
    let counter = size_class(4);
    if n < crate::optim::Adam8bit::MIN_QUANTISED {
        return 2 * bytes + counter;
    }
    2 * size_class(4 * q8_words(n) as u64) + size_class(8 * q8_blocks(n) as u64) + counter
}

struct State {
    gpu: Arc<Gpu>,
    dir: Option<PathBuf>,
    report: MemoryReport,
}

/// The ledger as a [`Hook`]: add a clone to the trainer, read [`MemoryLedger::report`] after
/// the run. Cloning shares the ledger.
#[derive(Clone)]
pub struct MemoryLedger {
    state: Arc<Mutex<State>>,
}

impl MemoryLedger {
    /// A ledger of `gpu`'s pool; `dir`: where `memory.json` (and `memory.png`) go after each
    /// epoch (`None`: only in memory).
    pub fn new(gpu: &Arc<Gpu>, dir: Option<PathBuf>) -> MemoryLedger {
        let report = MemoryReport {
            dry_run: gpu.is_dry_run(),
            cap: gpu.memory_stats().cap,
            ..MemoryReport::default()
        };
        MemoryLedger {
            state: Arc::new(Mutex::new(State {
                gpu: gpu.clone(),
                dir,
                report,
            })),
        }
    }

    /// Keep `formula` beside the measurement (written to `memory.json`).
    pub fn with_formula(self, formula: Formula) -> MemoryLedger {
        self.lock().report.formula = Some(formula);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was measured so far.
    pub fn report(&self) -> MemoryReport {
        self.lock().report.clone()
    }

    /// Write `memory.json` (and `memory.png` with the `plots` feature) into the run directory.
    pub fn write(&self) -> Result<()> {
        let st = self.lock();
        let Some(dir) = &st.dir else { return Ok(()) };
        let json = serde_json::to_string_pretty(&st.report).unwrap_or_default();
        crate::io::write_atomic(&dir.join(MEMORY_JSON), json.as_bytes())?;
        #[cfg(feature = "plots")]
        super::memory_plot::draw(dir, &st.report.steps)?;
        Ok(())
    }

    /// The summary printed at the end of a run: the overall peaks by category, the formula's
    /// prediction beside them when there is one.
    pub fn summary(&self) -> String {
        let r = self.report();
        let mut s = format!(
            "memory (peak over {} steps, pooled device bytes):\n",
            r.steps_measured
        );
        s += &r.overall.table();
        if let Some(f) = r.formula {
            let state = f.optimizer_state.map_or("?".into(), format_bytes);
            s += &format!(
                "  formula ({} trainable of {} parameters): weights {}, gradients {}, \
                 optimizer_state {state}\n",
                f.trainable,
                f.parameters,
                format_bytes(f.weights),
                format_bytes(f.gradients)
            );
        }
        s
    }
}

impl Hook for MemoryLedger {
    fn on_epoch_start(&mut self, _: usize, _: usize, _: usize) -> Result<()> {
        self.lock().gpu.reset_peak();
        Ok(())
    }

    fn after_step(&mut self, info: &StepInfo, _: &dyn Module) -> Result<Control> {
        let mut st = self.lock();
        let row = MemoryRow::from_peaks(&st.gpu.memory_stats());
        st.gpu.reset_peak();
        let r = &mut st.report;
        if r.steps.len() < STEPS_KEPT {
            r.steps.push(StepRow {
                step: info.step,
                bytes: row,
            });
        }
        r.overall = r.overall.max(row);
        r.steps_measured += 1;
        Ok(Control::Continue)
    }

    fn end_of_epoch(&mut self, _: &EpochRecord, _: &EpochEnd, _: &dyn Module) -> Result<Control> {
        self.write()?;
        Ok(Control::Continue)
    }

    fn on_partial_epoch(&mut self, _: &EpochRecord, _: &dyn Module) -> Result<()> {
        self.write()
    }
}
