//! `kiln train --trace trace.json [--trace-steps N]`: a Chrome trace-event file (Perfetto,
//! chrome://tracing) of the first N optimizer steps.
//!
//! Tracks (one process, `pid` 1):
//! - `host` (tid 1): the loop's phases as begin/end pairs (data, forward, backward, optimizer,
//!   checkpoint, evaluation, from [`Hook::on_phase`]), host uploads as complete slices inside
//!   them;
//! - `GPU` (tid 2): one complete slice per dispatch, from the kiln-kernels capture
//!   (`Gpu::start_capture`): GPU timestamps moved to the host clock (no batch starts before
//!   its submission), or
//!   each submission's wall time split over its dispatches where the adapter has no timestamps
//!   (`otherData.gpu_time` says which). A slice starting before the previous one ended is moved
//!   to that end, so the track nests;
//! - `pool live bytes`: a counter of the buffer pool's live bytes at every phase edge and
//!   dispatch.
//!
//! Times are microseconds since the trace started (the first batch's data phase). The trace
//! runs from then until the data phase after step N (so the checkpoint and evaluation that
//! follow the last step are in it) or the end of the run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::{Error, Result};
use crate::Gpu;
use crate::train::{Hook, Phase};
use kiln_kernels::capture::Capture;

/// The `--trace` flags of `kiln train`.
#[derive(Debug, Args, Default, Clone)]
pub struct TraceArgs {
    /// Write a Chrome trace-event JSON (open it in https://ui.perfetto.dev) of the first
    /// --trace-steps optimizer steps: host phases, one slice per GPU dispatch, pool memory.
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Optimizer steps the trace covers (default 3).
    #[arg(long, value_name = "N", requires = "trace",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub trace_steps: Option<u64>,
}

/// Where the recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first batch.
    Waiting,
    /// Host phases and GPU dispatches.
    Capturing,
    /// The N steps are done: host phases until the next data phase.
    Tail,
    /// Nothing more.
    Done,
}

struct State {
    gpu: Arc<Gpu>,
    steps: u64,
    stage: Stage,
    t0: Instant,
    /// (phase, start, host ns since t0, live bytes).
    host: Vec<(Phase, bool, u64, u64)>,
    done_steps: u64,
    counted_from: u64,
    counted: u64,
    capture: Option<Capture>,
}

impl State {
    fn end_capture(&mut self) {
        if self.stage == Stage::Capturing {
            self.capture = self.gpu.finish_capture();
            self.counted = self.gpu.encoder_stats().total_dispatches - self.counted_from;
            self.stage = Stage::Tail;
        }
    }
}

/// The hook that records, shared with the [`Tracer`] that writes the file.
struct TraceHook(Arc<Mutex<State>>);

impl Hook for TraceHook {
    fn on_phase(&mut self, phase: Phase, start: bool) {
        let Ok(mut s) = self.0.lock() else { return };
        match (s.stage, phase, start) {
            (Stage::Waiting, Phase::Data, true) => {
                s.t0 = Instant::now();
                s.counted_from = s.gpu.encoder_stats().total_dispatches;
                s.gpu.start_capture();
                s.stage = Stage::Capturing;
            }
            (Stage::Tail, Phase::Data, true) => {
                s.stage = Stage::Done;
                return;
            }
            (Stage::Waiting | Stage::Done, ..) => return,
            _ => {}
        }
        kiln_kernels::capture::set_phase(if start { phase.name() } else { "loop" });
        let at = s.t0.elapsed().as_nanos() as u64;
        let live = s.gpu.live_bytes();
        s.host.push((phase, start, at, live));
        if phase == Phase::Optimizer && !start && s.stage == Stage::Capturing {
            s.done_steps += 1;
            if s.done_steps >= s.steps {
                s.end_capture();
            }
        }
    }
}

/// Extra hooks for a run, made once its device is open (`kiln explain`'s recorder).
pub(super) type ExtraHooks<'h> = &'h mut dyn FnMut(&Arc<Gpu>) -> Vec<Box<dyn Hook>>;

/// What `--trace` and `kiln explain` add to a `kiln train` run.
pub(super) struct Extras {
    tracer: Option<Tracer>,
    explaining: bool,
}

impl Extras {
    /// Add the `--trace` hook (when asked for) and `explain`'s hooks to `hooks`.
    pub(super) fn add(
        hooks: &mut Vec<Box<dyn Hook + '_>>,
        a: &TraceArgs,
        gpu: &Arc<Gpu>,
        explain: Option<ExtraHooks<'_>>,
    ) -> Result<Extras> {
        let tracer = Tracer::start(a, gpu)?.map(|(t, hook)| {
            hooks.push(hook);
            t
        });
        let explaining = explain.is_some();
        if let Some(make) = explain {
            hooks.extend(make(gpu));
        }
        Ok(Extras { tracer, explaining })
    }

    /// After `Trainer::fit`: write the trace; true when the run ends here (`kiln explain`).
    pub(super) fn finish(self, quiet: bool) -> Result<bool> {
        if let Some(t) = self.tracer {
            t.write(quiet)?;
        }
        Ok(self.explaining)
    }
}

/// A trace in progress; [`Tracer::write`] after the run writes the file.
pub(super) struct Tracer {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Tracer {
    /// The tracer and its hook when `--trace` was given.
    pub(super) fn start(a: &TraceArgs, gpu: &Arc<Gpu>) -> Result<Option<(Tracer, Box<dyn Hook>)>> {
        let Some(path) = a.trace.clone() else {
            return Ok(None);
        };
        let steps = a.trace_steps.unwrap_or(3);
        if steps == 0 {
            return Err(Error("--trace-steps must be at least 1".into()));
        }
        let state = Arc::new(Mutex::new(State {
            gpu: gpu.clone(),
            steps,
            stage: Stage::Waiting,
            t0: Instant::now(),
            host: Vec::new(),
            done_steps: 0,
            counted_from: 0,
            counted: 0,
            capture: None,
        }));
        let hook = Box::new(TraceHook(state.clone()));
        Ok(Some((Tracer { path, state }, hook)))
    }

    /// Stop recording and write the trace file; prints where unless `quiet`.
    pub(super) fn write(self, quiet: bool) -> Result<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| Error("--trace: the trace recorder failed".into()))?;
        s.end_capture();
        s.stage = Stage::Done;
        let doc = document(&s);
        let n = doc["otherData"]["dispatches"].as_u64().unwrap_or(0);
        let text = serde_json::to_string(&doc).unwrap_or_default();
        crate::io::write_output(&self.path, text.as_bytes(), "--trace")?;
        if !quiet {
            println!(
                "trace:  {} ({} steps, {n} GPU dispatches; open it in https://ui.perfetto.dev)",
                self.path.display(),
                s.done_steps
            );
        }
        Ok(())
    }
}

const HOST: u64 = 1;
const GPU: u64 = 2;

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// The trace-event document of a finished recording.
fn document(s: &State) -> Value {
    let gpu_name = match &s.capture {
        Some(c) if !c.gpu_timestamps => "GPU (estimated from submission wall time)",
        _ => "GPU (timestamps)",
    };
    let meta = |tid: u64, name: &str| json!({"name": "thread_name", "ph": "M", "ts": 0.0, "pid": 1, "tid": tid, "args": {"name": name}});
    let mut events: Vec<(f64, Value)> = Vec::new();
    let counter = |ns: u64, bytes: u64| {
        let e = json!({"name": "pool live bytes", "ph": "C", "ts": us(ns), "pid": 1,
                       "tid": 0, "args": {"bytes": bytes}});
        (us(ns), e)
    };
    let mut open = Vec::new();
    let mut last = 0;
    for &(phase, start, ns, live) in &s.host {
        let ph = if start { "B" } else { "E" };
        if start {
            open.push(phase);
        } else if open.pop() != Some(phase) {
            continue; // an end without its start (cannot happen: phases do not nest)
        }
        last = last.max(ns);
        let e = json!({"name": phase.name(), "cat": "host", "ph": ph, "ts": us(ns),
                       "pid": 1, "tid": HOST});
        events.push((us(ns), e));
        events.push(counter(ns, live));
    }
    // Close what the run left open (it stopped inside a phase).
    while let Some(phase) = open.pop() {
        let e = json!({"name": phase.name(), "cat": "host", "ph": "E", "ts": us(last),
                       "pid": 1, "tid": HOST});
        events.push((us(last), e));
    }
    let mut dispatches = 0;
    if let Some(c) = &s.capture {
        // The capture's clock starts when the capture did, just after t0.
        let shift = c.start.duration_since(s.t0).as_nanos() as u64;
        for u in &c.uploads {
            let (a, b) = (u.host_ns.0 + shift, u.host_ns.1 + shift);
            let e = json!({"name": "upload", "cat": "host", "ph": "X", "ts": us(a),
                           "dur": us(b - a), "pid": 1, "tid": HOST, "args": {"bytes": u.bytes}});
            events.push((us(a), e));
        }
        let mut prev_end = 0;
        for r in &c.dispatches {
            dispatches += 1;
            let (a, b) = r.gpu_ns.unwrap_or((r.host_ns, r.host_ns));
            let a = (a + shift).max(prev_end);
            let b = (b + shift).max(a);
            prev_end = b;
            let name = if r.op.is_empty() {
                r.entry.to_string()
            } else {
                format!("{} ({})", r.entry, r.op)
            };
            let cost = r.cost.unwrap_or_default();
            let e = json!({"name": name, "cat": "gpu", "ph": "X", "ts": us(a), "dur": us(b - a),
                "pid": 1, "tid": GPU, "args": {"kernel": r.label, "phase": r.phase,
                "op": r.op, "shapes": r.shapes, "flops": cost.flops, "bytes": cost.bytes,
                "workgroups": r.workgroups}});
            events.push((us(a), e));
            events.push(counter(r.host_ns + shift, r.live_bytes));
        }
    }
    // Stable: a begin and the counter sample at its time keep their order.
    events.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut all = vec![
        json!({"name": "process_name", "ph": "M", "ts": 0.0, "pid": 1, "tid": 0,
               "args": {"name": "kiln train"}}),
        meta(HOST, "host"),
        meta(GPU, gpu_name),
    ];
    all.extend(events.into_iter().map(|e| e.1));
    json!({
        "traceEvents": all,
        "displayTimeUnit": "ms",
        "otherData": {
            "adapter": s.gpu.info().name,
            "gpu_time": if gpu_name.contains("estimated") { "estimated" } else { "timestamps" },
            "steps": s.done_steps,
            "dispatches": dispatches,
            "dispatches_counted": s.counted,
        }
    })
}
