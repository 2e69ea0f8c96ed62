//! `kiln explain`: one training step, dispatch by dispatch.
//!
//! Takes `kiln train`'s flags (the same [`TrainArgs`]), so the model and data are built exactly
//! as `kiln train` builds them (`train::run_with`), runs two optimizer steps (`--max-steps 2`,
//! quiet, in a temporary run directory unless `--out` is given; the first compiles the
//! pipelines) with the kiln-kernels capture on from each batch's data phase to the end of its
//! optimizer phase, and reports the second (the first when the run has one step): every
//! dispatch in order: phase, op and shapes (from the autograd layer), kernel entry point and
//! `shaders/<file>.wgsl:<line>`, specialisation and the tuner's reason (cached, default),
//! FLOPs and bytes (`kiln_kernels::launch::cost`), GPU time and the percentage of the
//! adapter's ceiling that bounds it (compute ceiling for compute-heavy dispatches, memory for
//! the rest; both measured here with `kiln bench`'s probes, `shaders/bench/`). Totals per phase
//! and per op follow; `--json` prints the same as one JSON document.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use serde_json::{Value, json};

use super::train::TrainArgs;
use super::{Error, Result};
use crate::Gpu;
use crate::train::{Hook, Phase};
use kiln_kernels::capture::{self, Capture, DispatchRecord, OpScope};
use kiln_kernels::launch::bench as bk;
use kiln_kernels::profile::Profiler;

/// Flags of `kiln explain`: `kiln train`'s, and how to print.
#[derive(Debug, Args, Default)]
pub struct ExplainArgs {
    /// The flags of `kiln train` (the model and data are built as it builds them).
    #[command(flatten)]
    pub train: TrainArgs,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the step's autograd graph: `.dot` (Graphviz text), `.svg` or `.png`.
    #[arg(long, value_name = "FILE.svg|.png|.dot")]
    pub graph: Option<PathBuf>,
}

/// What the hook saw of the first step.
#[derive(Default)]
struct Seen {
    capture: Option<Capture>,
    /// Dispatches the encoder counted over the same stretch.
    counted: u64,
    /// The step's autograd graph, when asked for.
    graph: Option<Vec<crate::autograd::GraphNode>>,
    /// The step captured (1-based).
    step: u64,
}

/// Steps `kiln explain` runs: the first compiles the pipelines (lavapipe also compiles each
/// shader on its first dispatch, inside the GPU time), the second is the one reported.
const STEPS: u64 = 2;

/// Captures each step (the last one kept); names the optimizer's dispatches.
struct Recorder {
    gpu: Arc<Gpu>,
    seen: Arc<Mutex<Seen>>,
    /// Steps done, and whether one is being captured.
    steps: u64,
    capturing: bool,
    from: u64,
    scope: Option<OpScope>,
    graph: bool,
}

impl Hook for Recorder {
    fn on_phase(&mut self, phase: Phase, start: bool) {
        if !self.capturing && self.steps < STEPS && phase == Phase::Data && start {
            self.from = self.gpu.encoder_stats().total_dispatches;
            self.gpu.start_capture();
            self.capturing = true;
        }
        if !self.capturing {
            return;
        }
        self.scope = None;
        // Between phases the loop keeps its books (the epoch's loss sum).
        capture::set_phase(if start { phase.name() } else { "loop" });
        if start {
            if phase == Phase::Optimizer {
                self.scope = Some(capture::op_scope("optimizer step", String::new));
            }
            return;
        }
        if phase == Phase::Optimizer {
            let c = self.gpu.finish_capture();
            let counted = self.gpu.encoder_stats().total_dispatches - self.from;
            self.steps += 1;
            if let Ok(mut s) = self.seen.lock() {
                (s.capture, s.counted, s.step) = (c, counted, self.steps);
            }
            self.capturing = false;
        }
    }

    fn before_backward(&mut self, loss: crate::Tensor) -> crate::error::Result<crate::Tensor> {
        if self.graph && self.capturing {
            let nodes = crate::autograd::graph_nodes(&loss);
            if let Ok(mut s) = self.seen.lock() {
                s.graph = Some(nodes);
            }
        }
        Ok(loss)
    }
}

/// Run `kiln explain`.
pub fn run(mut a: ExplainArgs) -> Result<()> {
    if let Some(g) = &a.graph {
        super::explain_graph::check(g)?;
    }
    let t = &mut a.train;
    if t.common.resume {
        return Err(Error(
            "kiln explain: --resume is not supported (explain starts one fresh step)".into(),
        ));
    }
    if t.trace.trace.is_some() {
        return Err(Error(
            "kiln explain: --trace belongs to kiln train (explain already records every \
             dispatch of its step)"
                .into(),
        ));
    }
    let temp = t
        .common
        .out
        .is_none()
        .then(|| std::env::temp_dir().join(format!("kiln-explain-{}", std::process::id())));
    if let Some(dir) = &temp {
        let _ = std::fs::remove_dir_all(dir);
        t.common.out = Some(dir.clone());
    }
    t.common.max_steps = Some(STEPS);
    t.common.quiet = true;
    t.no_test = true;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let graph = a.graph.is_some();
    let shared = seen.clone();
    let mut make = move |gpu: &Arc<Gpu>| -> Vec<Box<dyn Hook>> {
        vec![Box::new(Recorder {
            gpu: gpu.clone(),
            seen: shared.clone(),
            steps: 0,
            capturing: false,
            from: 0,
            scope: None,
            graph,
        })]
    };
    let device = t.common.device.clone();
    let result = super::train::run_with(a.train, Some(&mut make));
    if let Some(dir) = &temp {
        let _ = std::fs::remove_dir_all(dir);
    }
    result?;
    let mut seen = std::mem::take(&mut *seen.lock().map_err(|_| Error("recorder".into()))?);
    let cap = seen.capture.take().ok_or_else(|| {
        Error("kiln explain: the run made no training step (is the training set empty?)".into())
    })?;
    if let (Some(path), Some(nodes)) = (&a.graph, &seen.graph) {
        super::explain_graph::write(path, nodes)?;
        if !a.json {
            println!("graph: {} ({} nodes)", path.display(), nodes.len());
        }
    }
    let gpu = device.open()?;
    let ceilings = ceilings(&gpu)?;
    let rows: Vec<Row> = cap
        .dispatches
        .iter()
        .map(|r| Row::of(r, ceilings))
        .collect();
    let mut doc = document(&gpu, &cap, &rows, seen.counted, ceilings);
    doc["step"] = json!(seen.step);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        super::explain_table::print(&doc);
    }
    Ok(())
}

/// The adapter's compute (GFLOP/s) and memory (GB/s) ceilings, measured briefly with the
/// probes of `kiln bench` (its full measurement grows the sizes until a launch takes 20 ms).
fn ceilings(gpu: &Gpu) -> Result<(f64, f64)> {
    let p = Profiler::new(gpu);
    let (n, iters) = (1usize << 16, 256u32);
    let out = gpu.alloc(4 * n as u64, "explain fma out")?;
    let t = p.time(gpu, 1, 5, || {
        bk::fma_chains(gpu, &out, n, iters, 0.999, 1e-3)
    })?;
    let gflops = bk::fma_flops(n, iters) as f64 / (t.min_ms() * 1e6);
    let bytes = 16u64 << 20;
    let (src, dst) = (gpu.alloc(bytes, "copy src")?, gpu.alloc(bytes, "copy dst")?);
    let t = p.time(gpu, 1, 5, || {
        bk::copy_vec4(gpu, &src, &dst, (bytes / 16) as usize)
    })?;
    let gbps = 2.0 * bytes as f64 / (t.min_ms() * 1e6);
    Ok((gflops, gbps))
}

/// One dispatch as explain reports it.
pub(super) struct Row {
    file_line: String,
    variant: String,
    why: String,
    time_us: f64,
    /// Percent of the bounding ceiling, and which (`compute` or `memory`).
    pct: Option<(f64, &'static str)>,
}

impl Row {
    fn of(r: &DispatchRecord, (gflops, gbps): (f64, f64)) -> Row {
        let line = capture::entry_line(r.shader, r.entry);
        let file_line = match line {
            Some(l) => format!("shaders/{}:{l}", r.shader),
            None => format!("shaders/{}", r.shader),
        };
        let variant: Vec<String> = r
            .constants
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let why = r
            .choice
            .clone()
            .unwrap_or_else(|| "-: no tuner lookup for this dispatch".into());
        let time_us = r.duration_ns() as f64 / 1e3;
        let pct = r.cost.filter(|_| time_us > 0.0).map(|c| {
            // GFLOP/s and GB/s are both "per ns": work / ns.
            let ns = time_us * 1e3;
            let (fc, mc) = (c.flops as f64 / ns / gflops, c.bytes as f64 / ns / gbps);
            if fc >= mc {
                (100.0 * fc, "compute")
            } else {
                (100.0 * mc, "memory")
            }
        });
        Row {
            file_line,
            variant: variant.join(","),
            why,
            time_us,
            pct,
        }
    }
}

/// Sum of (dispatches, FLOPs, bytes, µs) by `key`.
fn totals<'a>(
    recs: &'a [DispatchRecord],
    rows: &[Row],
    key: impl Fn(&'a DispatchRecord) -> &'a str,
) -> Value {
    let mut m: BTreeMap<&str, (u64, u64, u64, f64)> = BTreeMap::new();
    for (r, row) in recs.iter().zip(rows) {
        let e = m.entry(key(r)).or_default();
        let c = r.cost.unwrap_or_default();
        *e = (e.0 + 1, e.1 + c.flops, e.2 + c.bytes, e.3 + row.time_us);
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.3.total_cmp(&a.1.3));
    Value::Array(
        v.into_iter()
            .map(|(k, (n, f, b, t))| {
                json!({"name": if k.is_empty() { "(none)" } else { k }, "dispatches": n,
                       "flops": f, "bytes": b, "time_us": t})
            })
            .collect(),
    )
}

/// The whole report as JSON (what `--json` prints and the table is drawn from).
fn document(gpu: &Gpu, cap: &Capture, rows: &[Row], counted: u64, ceil: (f64, f64)) -> Value {
    let dispatches: Vec<Value> = cap
        .dispatches
        .iter()
        .zip(rows)
        .map(|(r, row)| {
            let c = r.cost;
            json!({
                "seq": r.seq, "phase": r.phase, "op": r.op, "shapes": r.shapes,
                "entry": r.entry, "shader": r.shader, "wgsl": row.file_line,
                "kernel": r.label, "variant": row.variant, "why": row.why,
                "workgroups": r.workgroups, "bytes_bound": r.bytes_bound,
                "flops": c.map(|c| c.flops), "bytes": c.map(|c| c.bytes),
                "time_us": row.time_us,
                "time_source": if cap.gpu_timestamps { "gpu" } else { "estimated" },
                "pct_of_ceiling": row.pct.map(|p| p.0), "bound": row.pct.map(|p| p.1),
            })
        })
        .collect();
    json!({
        "adapter": gpu.info().name,
        "time_source": if cap.gpu_timestamps { "gpu timestamps" } else { "estimated (submission wall time split by bytes bound)" },
        "ceilings": {"gflops": ceil.0, "gbps": ceil.1},
        "dispatches_counted": counted,
        "dispatches": dispatches,
        "per_phase": totals(&cap.dispatches, rows, |r| r.phase.as_str()),
        "per_op": totals(&cap.dispatches, rows, |r| r.op.as_str()),
    })
}
