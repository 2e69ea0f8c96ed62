//! `kiln bench`: the kernel suite on one adapter, in hardware units, beside baselines measured in
//! the same run and against the adapter's own measured ceilings.
//!
//! Order of a run:
//! 1. **Ceilings.** An FMA-bound kernel (`shaders/bench/fma.wgsl`, 16 independent fma chains per
//!    invocation, no memory traffic) gives the compute ceiling in GFLOP/s; a large vec4 copy
//!    (`shaders/bench/copy.wgsl`) gives the memory ceiling in GB/s (bytes read + written). Both grow
//!    their problem until one launch takes long enough to time well, and keep the best rate.
//! 2. **Kernels** (see [`cases`]): matmul (every rung, naive the baseline), elementwise, reduce,
//!    softmax, conv2d forward / grad-input / grad-weight (direct the baseline), attention, NF4;
//!    the unsupervised kernels (k-means step, itemset support counts, k-NN for LOF) against
//!    their CPU twins ([`unsupervised`]); the Adam update, 32- and 8-bit, beside its CPU twins
//!    ([`optim`]).
//! 3. **Dispatch overhead**: many tiny adds recorded into one submit vs each followed by a sync.
//! 4. **Training steps** of the default models, split into forward, backward and optimizer.
//!
//! Every row has a median time; FLOP-bound rows report GFLOP/s and the percentage of the compute
//! ceiling, memory-bound rows GB/s and the percentage of the memory ceiling. `speed-up` is the
//! baseline's median over this row's median, both from this run. Times come from GPU timestamp
//! queries where the adapter has them ([`kiln_kernels::profile`]), else from wall time around a
//! device sync; the `timer` column says which.

mod cases;
mod optim;
mod roofline;
mod train_step;
mod unsupervised;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kiln_kernels::KernelError;
use kiln_kernels::profile::{Profiler, Timing};
use serde::Serialize;

use super::Result;
use crate::Gpu;

/// Flags of `kiln bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// Print one JSON object per row (one per line) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw a roofline (arithmetic intensity vs GFLOP/s, log-log) with every kernel on it.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Smaller problems and fewer samples (skips matmul 2048): a quick look, not a reference.
    #[arg(long)]
    pub quick: bool,
    /// Run only rows whose "op shape variant" contains this text (ceilings always run).
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
}

/// Which rate a row is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// GFLOP/s against the compute ceiling.
    Compute,
    /// GB/s against the memory ceiling.
    Memory,
}

/// One measured row, as printed and as serialised with `--json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    op: String,
    shape: String,
    dtype: &'static str,
    variant: String,
    ms_median: f64,
    ms_min: f64,
    samples: usize,
    timer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gbps: Option<f64>,
    /// FLOPs per byte of the minimal memory traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    intensity: Option<f64>,
    /// Baseline median / this median (same run, same group).
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup: Option<f64>,
    /// Percent of the measured ceiling that bounds this row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pct_peak: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    adapter: String,
    backend: String,
    #[serde(skip)]
    group: Option<String>,
    #[serde(skip)]
    baseline: bool,
}

/// What a case is, before it is measured.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    /// Operation, e.g. `matmul`.
    pub op: &'static str,
    /// Problem shape in words, e.g. `512x512x512`.
    pub shape: String,
    /// Kernel variant / rung, e.g. `vec4`.
    pub variant: String,
    /// Element type of the operands (`f32`, or `f16` for the f16 matmul rungs).
    pub dtype: &'static str,
    /// FLOPs of one run (0 = none counted).
    pub flops: u64,
    /// Minimal bytes moved by one run (each input read once, each output written once).
    pub bytes: u64,
    /// Which ceiling bounds it.
    pub bound: Bound,
    /// Rows of one group share a baseline (`None`: no speed-up).
    pub group: Option<String>,
    /// This row is its group's baseline.
    pub baseline: bool,
}

impl Case {
    pub(crate) fn new(op: &'static str, shape: impl Into<String>, variant: &str) -> Case {
        Case {
            op,
            shape: shape.into(),
            variant: variant.to_string(),
            dtype: "f32",
            flops: 0,
            bytes: 0,
            bound: Bound::Compute,
            group: None,
            baseline: false,
        }
    }

    pub(crate) fn work(mut self, flops: u64, bytes: u64, bound: Bound) -> Case {
        (self.flops, self.bytes, self.bound) = (flops, bytes, bound);
        self
    }

    /// Put the case in the group named by its op and shape; `baseline` marks the reference.
    pub(crate) fn grouped(mut self, baseline: bool) -> Case {
        self.group = Some(format!("{} {}", self.op, self.shape));
        self.baseline = baseline;
        self
    }
}

/// The running suite: device, timing policy, ceilings and rows so far.
pub(crate) struct Suite {
    pub gpu: Arc<Gpu>,
    pub quick: bool,
    profiler: Profiler,
    filter: Option<String>,
    json: bool,
    bar: ProgressBar,
    /// Measured compute ceiling (GFLOP/s) and memory ceiling (GB/s).
    pub ceilings: (f64, f64),
    pub rows: Vec<Row>,
}

/// A kiln-level error as a kernel error, so tensor-level closures can be timed by [`Profiler`].
pub(crate) fn kerr(e: crate::Error) -> KernelError {
    KernelError::launch("kiln bench", e.to_string())
}

impl Suite {
    /// True when `case` passes `--filter`.
    pub(crate) fn wants(&self, op: &str, shape: &str, variant: &str) -> bool {
        match &self.filter {
            None => true,
            Some(f) => format!("{op} {shape} {variant}")
                .to_ascii_lowercase()
                .contains(&f.to_ascii_lowercase()),
        }
    }

    /// Time `launch` with a sample count that fits the time budget: one warm run and one timed
    /// run first; a case slower than the single-run budget keeps that one sample.
    pub(crate) fn time<F>(&self, mut launch: F) -> kiln_kernels::Result<Timing>
    where
        F: FnMut() -> kiln_kernels::Result<()>,
    {
        let (single, total, min, max) = if self.quick {
            (1_500.0, 150.0, 3, 15)
        } else {
            (5_000.0, 1_000.0, 5, 50)
        };
        let first = self.profiler.time(&self.gpu, 1, 1, &mut launch)?;
        let one = first.median_ms();
        if one > single {
            return Ok(first);
        }
        let iters = ((total / one.max(1e-3)) as usize).clamp(min, max);
        self.profiler.time(&self.gpu, 1, iters, &mut launch)
    }

    /// Measure `case` with `launch` (skipped when filtered out) and record the row.
    pub(crate) fn run<F>(&mut self, case: Case, launch: F) -> Result<()>
    where
        F: FnMut() -> kiln_kernels::Result<()>,
    {
        if !self.wants(case.op, &case.shape, &case.variant) {
            return Ok(());
        }
        self.bar
            .set_message(format!("{} {} {}", case.op, case.shape, case.variant));
        // A launcher that refuses a case (an adapter limit, a rung's layout rule) skips that
        // row, not the suite.
        match self.time(launch) {
            Ok(t) => self.record(case, &t, None),
            Err(e) => self
                .bar
                .suspend(|| eprintln!("skipped {} {} {}: {e}", case.op, case.shape, case.variant)),
        }
        Ok(())
    }

    /// Record a row from a timing (the rates follow from `case`'s work and the median).
    pub(crate) fn record(&mut self, case: Case, t: &Timing, note: Option<String>) {
        let ms = t.median_ms();
        let rate = |work: u64| (work > 0).then(|| work as f64 / (ms * 1e6));
        let (gflops, gbps) = (rate(case.flops), rate(case.bytes));
        let (peak_flops, peak_bytes) = self.ceilings;
        // 100 * (g / peak), not 100 * g / peak: a ceiling row divides by itself and must read
        // exactly 100 (the product 100 * g rounds first and can give 99.99999999999999).
        let pct = match case.bound {
            Bound::Compute => gflops.map(|g| 100.0 * (g / peak_flops)),
            Bound::Memory => gbps.map(|g| 100.0 * (g / peak_bytes)),
        }
        .filter(|p| p.is_finite());
        let info = self.gpu.info();
        let row = Row {
            op: case.op.to_string(),
            shape: case.shape,
            dtype: case.dtype,
            variant: case.variant,
            ms_median: ms,
            ms_min: t.min_ms(),
            samples: t.samples_ms.len(),
            timer: t.source.name(),
            gflops,
            gbps,
            intensity: (case.flops > 0 && case.bytes > 0)
                .then(|| case.flops as f64 / case.bytes as f64),
            speedup: None,
            pct_peak: pct,
            note,
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend).to_ascii_lowercase(),
            group: case.group,
            baseline: case.baseline,
        };
        self.bar.inc(1);
        self.rows.push(row);
        self.fill_speedups();
        if self.json {
            // The row is final unless its group's baseline comes later (baselines run first).
            let line = serde_json::to_string(self.rows.last().unwrap()).unwrap_or_default();
            self.bar.suspend(|| println!("{line}"));
        }
    }

    fn fill_speedups(&mut self) {
        let Some(last) = self.rows.last() else {
            return;
        };
        let Some(group) = last.group.clone() else {
            return;
        };
        let base = self
            .rows
            .iter()
            .find(|r| r.baseline && r.group.as_deref() == Some(&group))
            .map(|r| r.ms_median);
        if let (Some(b), Some(r)) = (base, self.rows.last_mut()) {
            r.speedup = Some(b / r.ms_median);
        }
    }
}

/// Run `kiln bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let gpu = args.device.open()?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {pos} rows  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut suite = Suite {
        profiler: Profiler::new(&gpu),
        gpu,
        quick: args.quick,
        filter: args.filter.clone(),
        json: args.json,
        bar,
        ceilings: (f64::NAN, f64::NAN),
        rows: Vec::new(),
    };
    if !args.json {
        let info = suite.gpu.info();
        eprintln!(
            "kiln bench on {} ({:?}, {}), timer: {}{}",
            info.name,
            info.backend,
            info.driver,
            suite.profiler.source().name(),
            if args.quick { ", --quick" } else { "" }
        );
    }
    cases::ceilings(&mut suite)?;
    cases::matmul(&mut suite)?;
    cases::elementwise(&mut suite)?;
    cases::conv(&mut suite)?;
    cases::attention(&mut suite)?;
    cases::nf4(&mut suite)?;
    optim::run(&mut suite)?;
    unsupervised::run(&mut suite)?;
    cases::dispatch_overhead(&mut suite)?;
    cases::train_steps(&mut suite)?;
    suite.bar.finish_and_clear();
    if !args.json {
        print_table(&suite.rows, suite.ceilings);
    }
    if let Some(path) = &args.plot {
        let png = roofline::png(&suite.rows, suite.ceilings, &suite.gpu.info().name)
            .map_err(|e| super::Error(format!("--plot {}: {e}", path.display())))?;
        crate::io::write_output(path, &png, "--plot")?;
        if !args.json {
            eprintln!("roofline written to {}", path.display());
        }
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => String::new(),
    }
}

/// The rows as an aligned table on stdout.
fn print_table(rows: &[Row], (gflops, gbps): (f64, f64)) {
    let header = [
        "op", "shape", "dtype", "variant", "ms", "GFLOP/s", "GB/s", "speed-up", "%peak", "timer",
        "note",
    ];
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            [
                r.op.clone(),
                r.shape.clone(),
                r.dtype.to_string(),
                r.variant.clone(),
                format!("{:.4}", r.ms_median),
                fmt_opt(r.gflops, 2),
                fmt_opt(r.gbps, 2),
                fmt_opt(r.speedup, 2).to_string() + if r.speedup.is_some() { "x" } else { "" },
                fmt_opt(r.pct_peak, 1),
                r.timer.to_string(),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if (4..=8).contains(&i) {
                s += &format!("{c:>w$}  ");
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "measured ceilings: compute {gflops:.2} GFLOP/s (fma), memory {gbps:.2} GB/s (copy)"
    );
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for c in &cells {
        let _ = writeln!(out, "{}", line(c.iter().map(String::as_str).collect()));
    }
}
