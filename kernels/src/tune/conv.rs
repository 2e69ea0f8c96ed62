//! Convolutions in the tuner: per adapter and shape bucket ([`super::conv_bucket`]), the fastest
//! correct [`ConvConfig`]: the rung, the implicit-GEMM rung's channel quads for each pass and the
//! weight gradient's split count.
//!
//! The three passes are separate kernels whose times add up (the op runs all three with one
//! rung), so each rung's configuration is searched pass by pass instead of over the product:
//! the forward at 1..=q quads of output channels (q: the quads that cover the layer's channels;
//! more would only compute lanes that are thrown away), grad input at 1..=q quads of input
//! channels, grad weight at 1..=q quads with the heuristic split count, then its fastest quads
//! at the split counts of [`ConvConfig::split_candidates`] (the heuristic's, a quarter, half,
//! twice, four times). The direct rung has no quads, only the splits. Every candidate is legal
//! by construction: quads change no loop's length, split counts are clamped so that no split
//! sums more than `CHUNK_MAX` terms (lavapipe's loop limit), and the launchers refuse a layer
//! whose forward or grad-input loop nest exceeds `LOOP_BUDGET` (then the candidate is reported
//! as skipped with the launcher's error, never picked).
//!
//! At every step the heuristic's choice is the incumbent, and a challenger replaces it only
//! when it is faster by [`MARGIN`] (3 %): timings on a busy CPU adapter vary by several percent,
//! and without the margin the tuner would record noise. A rung's time is the sum of its three
//! fastest passes; the fastest rung's configuration then runs whole steps (all three passes)
//! against the default, alternated over three rounds, and wins only by the margin there too
//! (the sum of the fastest of many noisy timings flatters it). The winner is checked against
//! the CPU twin ([`verify_conv`]; one that disagrees is dropped and the next checked) and cached
//! under `conv2d/<bucket>/f32` as its [`ConvConfig::label`], e.g.
//! `implicit_gemm:fq4:iq1:wq4:s2`. The report's GFLOP/s count all three passes (3 x the
//! forward's FLOPs), from the whole-step rounds where they ran; each pass candidate's count its
//! one pass, and the two `step ...` candidates are the whole-step rounds. A cache entry holding
//! only a rung's name (written before quads and splits were tuned) still loads: the rung with
//! the heuristics.

use std::collections::HashMap;

use super::measure::{TuneReport, Tuner, noise, time_best};
use super::{SeenShape, conv_bucket, entry_key, record};
use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::conv::{self as ck, Conv2dShape, ConvConfig, ConvVariant};
use crate::reference::Tolerance;
use crate::reference::conv as cpu;

/// The configuration for shape `s`: the cached choice for its bucket when there is one (an old
/// entry naming only the rung gets that rung's heuristics), else [`ConvConfig::default`]. Never
/// tunes.
pub fn conv_choice(gpu: &Gpu, s: &Conv2dShape) -> ConvConfig {
    record(SeenShape::Conv(*s));
    let key = entry_key("conv2d", &conv_bucket(s), "f32");
    super::choose(
        gpu,
        &key,
        ConvConfig::parse,
        ConvConfig::default(),
        ConvConfig::label,
    )
}

/// One of the three conv kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pass {
    Forward,
    GradInput,
    GradWeight,
}

impl Pass {
    /// The pass's name and the fields of `cfg` it uses, e.g. `grad_weight implicit_gemm:wq4:s8`.
    fn label(self, cfg: &ConvConfig) -> String {
        let only = ConvConfig::of(cfg.variant);
        let (name, part) = match self {
            Pass::Forward => (
                "forward",
                ConvConfig {
                    fwd_quads: cfg.fwd_quads,
                    ..only
                },
            ),
            Pass::GradInput => (
                "grad_input",
                ConvConfig {
                    input_quads: cfg.input_quads,
                    ..only
                },
            ),
            Pass::GradWeight => (
                "grad_weight",
                ConvConfig {
                    weight_quads: cfg.weight_quads,
                    splits: cfg.splits,
                    ..only
                },
            ),
        };
        format!("{name} {}", part.label())
    }
}

/// Operands of one shape, filled with noise.
struct Operands {
    x: GpuBuffer,
    w: GpuBuffer,
    dy: GpuBuffer,
    out: GpuBuffer,
    dx: GpuBuffer,
    dw: GpuBuffer,
}

/// Upload `v` (f32) into a new buffer.
fn put(gpu: &Gpu, v: &[f32], what: &str) -> Result<GpuBuffer> {
    let buf = gpu.alloc(4 * v.len().max(1) as u64, what)?;
    gpu.upload(&buf, 0, bytemuck::cast_slice(v));
    Ok(buf)
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

impl Operands {
    fn new(gpu: &Gpu, s: &Conv2dShape) -> Result<Self> {
        let empty = |shape, what| gpu.alloc(4 * numel(shape).max(1) as u64, what);
        Ok(Operands {
            x: put(gpu, &noise(numel(s.input_shape()), 3), "tune conv x")?,
            w: put(gpu, &noise(numel(s.weight_shape()), 4), "tune conv w")?,
            dy: put(gpu, &noise(numel(s.output_shape()), 5), "tune conv dy")?,
            out: empty(s.output_shape(), "tune conv out")?,
            dx: empty(s.input_shape(), "tune conv dx")?,
            dw: empty(s.weight_shape(), "tune conv dw")?,
        })
    }

    fn run(&self, gpu: &Gpu, pass: Pass, cfg: ConvConfig, s: &Conv2dShape) -> Result<()> {
        match pass {
            Pass::Forward => ck::conv2d_forward(gpu, cfg, s, &self.x, &self.w, None, &self.out),
            Pass::GradInput => ck::conv2d_grad_input(gpu, cfg, s, &self.w, &self.dy, &self.dx),
            Pass::GradWeight => ck::conv2d_grad_weight(gpu, cfg, s, &self.x, &self.dy, &self.dw),
        }
    }
}

/// The measurements of one tuning run.
struct Search<'a> {
    gpu: &'a Gpu,
    s: &'a Conv2dShape,
    ops: Operands,
    budget: std::time::Duration,
    /// Seconds of each (pass, label) measured.
    times: HashMap<String, f64>,
    /// Fastest time of each pass so far (hopeless candidates are cut short).
    best: HashMap<Pass, f64>,
    /// Every candidate, in order: label and GFLOP/s of its pass, or why it did not run.
    candidates: Vec<(String, std::result::Result<f64, String>)>,
}

/// A challenger replaces the incumbent (the heuristic's choice, or the default configuration)
/// only when it takes at most this fraction of its time: on a busy CPU adapter two runs of the
/// same kernel differ by several percent, and the fastest of many noisy timings is partly luck.
const MARGIN: f64 = 0.97;

/// The incumbent `(config, seconds)`, unless `challenger` is faster by [`MARGIN`].
fn keep_unless_beaten<C>(incumbent: (C, f64), challenger: (C, f64)) -> (C, f64) {
    if challenger.1 < MARGIN * incumbent.1 {
        challenger
    } else {
        incumbent
    }
}

impl Search<'_> {
    /// Time `pass` of every configuration in `options`, of which the first is the incumbent;
    /// the fastest and its seconds, where another beats the incumbent only by [`MARGIN`].
    /// `incumbent`: one timed before, to which `options` are challengers.
    fn fastest(
        &mut self,
        pass: Pass,
        options: &[ConvConfig],
        incumbent: Option<(ConvConfig, f64)>,
    ) -> Option<(ConvConfig, f64)> {
        let (gpu, s, ops) = (self.gpu, self.s, &self.ops);
        let mut first = incumbent;
        let mut winner: Option<(ConvConfig, f64)> = incumbent;
        for &cfg in options {
            let label = pass.label(&cfg);
            let give_up = 4.0 * self.best.get(&pass).copied().unwrap_or(f64::INFINITY);
            // The warm-up builds the pipeline: one more full run (conv pipelines compile fast).
            let run = || ops.run(gpu, pass, cfg, s);
            let t = time_best(gpu, self.budget, give_up, run, run);
            let flops = s.flops() as f64;
            self.candidates.push((
                label.clone(),
                t.as_ref()
                    .map(|t| flops / t / 1e9)
                    .map_err(|e| e.to_string()),
            ));
            let Ok(t) = t else { continue };
            self.times.insert(label, t);
            let b = self.best.entry(pass).or_insert(t);
            *b = b.min(t);
            first.get_or_insert((cfg, t));
            if winner.is_none_or(|(_, w)| t < w) {
                winner = Some((cfg, t));
            }
        }
        match (first, winner) {
            (Some(inc), Some(win)) => Some(keep_unless_beaten(inc, win)),
            _ => winner,
        }
    }

    /// Seconds of a full step (forward, grad input, grad weight) of `a` and of `b`, timed in
    /// three alternating rounds (each the best repetition within the budget; the best round
    /// counts), so that both see the same machine load.
    fn head_to_head(&self, a: ConvConfig, b: ConvConfig) -> Result<(f64, f64)> {
        let (gpu, s, ops) = (self.gpu, self.s, &self.ops);
        let step = |cfg: ConvConfig| {
            move || -> Result<()> {
                for pass in [Pass::Forward, Pass::GradInput, Pass::GradWeight] {
                    ops.run(gpu, pass, cfg, s)?;
                }
                Ok(())
            }
        };
        let (mut ta, mut tb) = (f64::INFINITY, f64::INFINITY);
        for round in 0..3 {
            let time = |cfg| time_best(gpu, self.budget, f64::INFINITY, step(cfg), step(cfg));
            if round % 2 == 0 {
                ta = ta.min(time(a)?);
                tb = tb.min(time(b)?);
            } else {
                tb = tb.min(time(b)?);
                ta = ta.min(time(a)?);
            }
        }
        Ok((ta, tb))
    }

    /// The fastest configuration of `variant`, pass by pass, and its total seconds.
    fn tune_variant(&mut self, variant: ConvVariant) -> Option<(ConvConfig, f64)> {
        let s = self.s;
        let base = ConvConfig::of(variant).resolved(s);
        // The heuristic quads first (the incumbent), then the fewer ones for the implicit-GEMM
        // rung; the direct rung has none.
        let range = |q: Option<usize>| -> Vec<Option<usize>> {
            match q {
                Some(q) => (1..=q).rev().map(Some).collect(),
                None => vec![None],
            }
        };
        // `base` with each quads count of `range(q)` set by `set`.
        let with = |q: Option<usize>, set: fn(&mut ConvConfig, Option<usize>)| -> Vec<ConvConfig> {
            let one = |q| {
                let mut c = base;
                set(&mut c, q);
                c
            };
            range(q).into_iter().map(one).collect()
        };
        let fwd = with(base.fwd_quads, |c, q| c.fwd_quads = q);
        let (f, tf) = self.fastest(Pass::Forward, &fwd, None)?;
        let gi = with(base.input_quads, |c, q| c.input_quads = q);
        let (i, ti) = self.fastest(Pass::GradInput, &gi, None)?;
        // Grad weight: the quads at their heuristic (clamped) split count first...
        let gw = with(base.weight_quads, |c, q| {
            c.weight_quads = q;
            c.splits = None;
        });
        let gw: Vec<ConvConfig> = gw
            .into_iter()
            .map(|c| ConvConfig {
                splits: Some(c.grad_weight_split(s).0),
                ..c
            })
            .collect();
        let (w, tw) = self.fastest(Pass::GradWeight, &gw, None)?;
        // ... then the fastest quads at the other split counts.
        let more: Vec<ConvConfig> = w
            .split_candidates(s)
            .into_iter()
            .filter(|&n| Some(n) != w.splits)
            .map(|n| ConvConfig {
                splits: Some(n),
                ..w
            })
            .collect();
        let (w, tw) = self
            .fastest(Pass::GradWeight, &more, Some((w, tw)))
            .unwrap_or((w, tw));
        let cfg = ConvConfig {
            variant,
            fwd_quads: f.fwd_quads,
            input_quads: i.input_quads,
            weight_quads: w.weight_quads,
            splits: w.splits,
        };
        Some((cfg, tf + ti + tw))
    }

    /// The summed time of `cfg`'s three passes, when each was measured.
    fn total(&self, cfg: &ConvConfig) -> Option<f64> {
        [Pass::Forward, Pass::GradInput, Pass::GradWeight]
            .iter()
            .map(|p| self.times.get(&p.label(cfg)).copied())
            .sum()
    }
}

impl Tuner<'_> {
    /// Tune the conv bucket of `s` ([`super::conv_bucket`]): search each rung's channel quads
    /// and split count pass by pass (see the module notes), check the fastest configuration
    /// against the CPU twin ([`verify_conv`]), cache it.
    pub fn tune_conv(&mut self, s: &Conv2dShape) -> Result<TuneReport> {
        let gpu = self.gpu;
        let key = entry_key("conv2d", &conv_bucket(s), "f32");
        if let Some(report) = self.cached_report(&key) {
            return Ok(report);
        }
        if let Some(p) = s.problem() {
            return Err(KernelError::Unavailable(format!("tuning {key}: {p}")));
        }
        let mut search = Search {
            gpu,
            s,
            ops: Operands::new(gpu, s)?,
            budget: self.budget,
            times: HashMap::new(),
            best: HashMap::new(),
            candidates: Vec::new(),
        };
        // The default rung first, so that a hopeless rung is cut short from the start.
        let default = ConvConfig::default().resolved(s);
        let default = ConvConfig {
            splits: Some(default.grad_weight_split(s).0),
            ..default
        };
        let mut order = vec![default.variant];
        order.extend(
            ConvVariant::ALL
                .into_iter()
                .filter(|&v| v != default.variant),
        );
        let mut ranked: Vec<(ConvConfig, f64)> = order
            .into_iter()
            .filter_map(|v| search.tune_variant(v))
            .collect();
        let flops = 3.0 * s.flops() as f64;
        let mut default_secs = search.total(&default);
        ranked.sort_by(|x, y| x.1.total_cmp(&y.1));
        ranked.retain(|(c, _)| *c != default);
        // The pass-by-pass winner against the default in whole steps, alternated: it replaces
        // the default only when it is faster by the margin there too (the sum of the fastest
        // of many noisy pass timings flatters it). Without a duel the default takes its place
        // by the summed pass times, with the margin. Those after the first are fallbacks for
        // verification.
        let duel = match (ranked.first(), default_secs) {
            (Some(&(best, est)), Some(d)) if est < d => search.head_to_head(best, default).ok(),
            _ => None,
        };
        if let Some((tb, td)) = duel {
            let best = ranked[0].0;
            for (c, t) in [(best, tb), (default, td)] {
                let label = format!("step {}", c.label());
                search.candidates.push((label, Ok(flops / t / 1e9)));
            }
            ranked[0].1 = tb;
            let at = usize::from(tb < MARGIN * td);
            ranked.insert(at, (default, td));
            default_secs = Some(td);
        } else if let Some(t) = default_secs {
            let at = ranked.partition_point(|&(_, x)| x < MARGIN * t);
            ranked.insert(at, (default, t));
        }
        let mut winner = None;
        for (cfg, t) in ranked {
            match verify_conv(gpu, cfg, s) {
                Ok(()) => {
                    winner = Some((cfg, flops / t / 1e9));
                    break;
                }
                Err(why) => search
                    .candidates
                    .push((cfg.label(), Err(format!("rejected: {why}")))),
            }
        }
        let candidates = search.candidates;
        let Some((cfg, gflops)) = winner else {
            return Err(KernelError::Unavailable(format!(
                "tuning {key}: no conv configuration ran and matched the CPU twin: \
                 {candidates:?}"
            )));
        };
        let default_gflops = default_secs.map_or(0.0, |t| flops / t / 1e9);
        Ok(self.record_winner(key, (cfg.label(), gflops), default_gflops, candidates))
    }
}

/// Compare `got` with the f64 CPU twin: f32 sums of `terms` products of values in [-1, 1)
/// (rel 1e-4, abs 2e-6 per term, as tests/ops/conv.rs).
fn compare(what: &str, got: &[f32], want: &[f64], terms: usize) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let why = "f32 sums of products (different order, fma) vs f64; abs floor 2e-6 * terms";
    Tolerance::new(1e-4, 2e-6 * terms.max(1) as f64, why)
        .compare(got, want)
        .map_err(|m| format!("{what}: {m}"))
}

/// Run `cfg`'s three passes (forward with a bias; grad weight with the fused bias gradient on
/// the implicit-GEMM rung, as `Tensor::conv2d` does) on small random operands of `s`'s geometry
/// (the channels, kernel, stride, padding, dilation and groups of `s`; N at most 2, H and W at
/// most 7 and 9 or the kernel's span) and compare each result with the f64 CPU twin.
pub fn verify_conv(gpu: &Gpu, cfg: ConvConfig, s: &Conv2dShape) -> std::result::Result<(), String> {
    if let Some(p) = s.problem() {
        return Err(p);
    }
    let span = |k: usize, d: usize| d * (k - 1) + 1;
    let t = Conv2dShape {
        n: s.n.min(2),
        h: s.h.min(span(s.kh, s.dilation.0).max(7)),
        w: s.w.min(span(s.kw, s.dilation.1).max(9)),
        ..*s
    };
    let e = |e: KernelError| e.to_string();
    let what = format!("{} at {t:?}", cfg.label());
    let (xv, wv, bv, dyv) = (
        noise(numel(t.input_shape()), 11),
        noise(numel(t.weight_shape()), 12),
        noise(t.c_out, 13),
        noise(numel(t.output_shape()), 14),
    );
    let f64s = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
    let (x64, w64, b64, dy64) = (f64s(&xv), f64s(&wv), f64s(&bv), f64s(&dyv));
    let up = |v: &[f32]| put(gpu, v, "verify conv").map_err(e);
    let (x, w, b, dy) = (up(&xv)?, up(&wv)?, up(&bv)?, up(&dyv)?);
    let alloc = |n: usize| gpu.alloc(4 * n.max(1) as u64, "verify conv").map_err(e);
    let (yl, xl, wl) = (
        numel(t.output_shape()),
        numel(t.input_shape()),
        numel(t.weight_shape()),
    );
    let (out, dx, dw, db) = (alloc(yl)?, alloc(xl)?, alloc(wl)?, alloc(t.c_out)?);
    let fused = cfg.variant == ConvVariant::ImplicitGemm;
    ck::conv2d_forward(gpu, cfg, &t, &x, &w, Some(&b), &out).map_err(e)?;
    ck::conv2d_grad_input(gpu, cfg, &t, &w, &dy, &dx).map_err(e)?;
    ck::conv2d_grad_weight_bias(gpu, cfg, &t, &x, &dy, &dw, fused.then_some(&db)).map_err(e)?;
    let read = |b: &GpuBuffer, n: usize| -> std::result::Result<Vec<f32>, String> {
        Ok(bytemuck::pod_collect_to_vec(
            &gpu.read(b, 0, 4 * n as u64).map_err(e)?,
        ))
    };
    let [n, _, oh, ow] = t.output_shape();
    compare(
        &format!("{what} forward"),
        &read(&out, yl)?,
        &cpu::conv2d_forward(&t, &x64, &w64, Some(&b64)),
        t.k_len() + 1,
    )?;
    compare(
        &format!("{what} grad input"),
        &read(&dx, xl)?,
        &cpu::conv2d_grad_input(&t, &w64, &dy64),
        t.c_out / t.groups * t.kh * t.kw,
    )?;
    compare(
        &format!("{what} grad weight"),
        &read(&dw, wl)?,
        &cpu::conv2d_grad_weight(&t, &x64, &dy64),
        n * oh * ow,
    )?;
    if fused {
        compare(
            &format!("{what} bias gradient"),
            &read(&db, t.c_out)?,
            &cpu::conv2d_grad_bias(&t, &dy64),
            n * oh * ow,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challengers_need_the_margin() {
        assert_eq!(
            keep_unless_beaten(("heuristic", 1.0), ("other", 0.98)).0,
            "heuristic"
        );
        assert_eq!(
            keep_unless_beaten(("heuristic", 1.0), ("other", 0.96)).0,
            "other"
        );
        assert_eq!(
            keep_unless_beaten(("heuristic", 1.0), ("other", 1.5)).0,
            "heuristic"
        );
    }

    #[test]
    fn pass_labels_name_only_their_fields() {
        let cfg = ConvConfig::parse("implicit_gemm:fq3:iq2:wq1:s7").unwrap();
        assert_eq!(Pass::Forward.label(&cfg), "forward implicit_gemm:fq3");
        assert_eq!(Pass::GradInput.label(&cfg), "grad_input implicit_gemm:iq2");
        assert_eq!(
            Pass::GradWeight.label(&cfg),
            "grad_weight implicit_gemm:wq1:s7"
        );
        let direct = ConvConfig::parse("direct:s4").unwrap();
        assert_eq!(Pass::Forward.label(&direct), "forward direct");
        assert_eq!(Pass::GradWeight.label(&direct), "grad_weight direct:s4");
    }
}
