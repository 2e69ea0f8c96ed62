//! Activation checkpointing on a GPT: activation memory, step time and the loss curve with and
//! without it (`scripts/grad-checkpoint.sh` runs it in release; the table is in BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --example grad_checkpoint                       # 8 blocks, width 64, 50 steps
//! cargo run --release --example grad_checkpoint -- --layers 8 --width 64 --context 64 \
//!     --batch 16 --steps 50 --every 1,2 --dropout 0.1
//! ```
//!
//! The data are windows of the embedded Shakespeare, characters as ids (65 of them); batch `s`
//! is a pure function of `s`. Each mode ("off", then every N blocks for each N of `--every`)
//! runs on its own device ([`Gpu::new`]), so the pool's counters see only it, from the same
//! seed: the same initial weights, batches and dropout keys, so the losses must agree. The
//! modes' steps interleave (step s of each, then step s + 1), so a busy machine slows them alike.
//!
//! Per Adam step (forward, cross-entropy, backward, step, zero_grad), measured with the
//! buffer pool's counters ([`Gpu::live_bytes`], [`Gpu::peak_bytes`] after [`Gpu::reset_peak`]):
//!
//! - `base`: live bytes before the forward: weights, the previous step's gradients and Adam's
//!   moments (everything that outlives a step);
//! - `kept`: live bytes after the forward and the loss minus `base`: what the graph holds for
//!   backward (activations, the logits and the loss);
//! - `act peak`: the peak over forward and backward minus `base`: activations plus the
//!   gradients and workspace of backward at its worst moment.
//!
//! Step 0 (pipelines compiled, Adam's moments allocated) is left out of the timing and the
//! memory columns; `ms/step` is the median over the other steps, each ended by a device sync and
//! the loss read back.

use std::sync::Arc;
use std::time::Instant;

use kiln::models::{Gpt, GptConfig};
use kiln::nn::rng::{record_keys, replay_keys};
use kiln::nn::{Module, loss};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln::{Gpu, Tensor};

struct Opts {
    layers: usize,
    width: usize,
    heads: usize,
    context: usize,
    batch: usize,
    steps: usize,
    every: Vec<usize>,
    dropout: f32,
}

/// The flags as `--name value` pairs, each known name at most once.
fn parse() -> Result<Opts, String> {
    const NAMES: [&str; 8] = [
        "layers", "width", "heads", "context", "batch", "steps", "every", "dropout",
    ];
    let mut given = std::collections::HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let name = flag.trim_start_matches("--");
        if !NAMES.contains(&name) || !flag.starts_with("--") {
            return Err(format!(
                "unknown flag {flag} (known: --{})",
                NAMES.join(", --")
            ));
        }
        let v = args.next().ok_or(format!("{flag} needs a value"))?;
        given.insert(name.to_string(), v);
    }
    let text = |name: &str, default: &str| given.get(name).cloned().unwrap_or(default.into());
    let num = |name: &str, default: &str| -> Result<usize, String> {
        let v = text(name, default);
        v.parse().map_err(|e| format!("--{name} {v}: {e}"))
    };
    let every = text("every", "1,2");
    let dropout = text("dropout", "0.1");
    let o = Opts {
        layers: num("layers", "8")?,
        width: num("width", "64")?,
        heads: num("heads", "4")?,
        context: num("context", "64")?,
        batch: num("batch", "16")?,
        steps: num("steps", "50")?,
        every: every
            .split(',')
            .map(|v| v.parse().map_err(|e| format!("--every {v}: {e}")))
            .collect::<Result<_, String>>()?,
        dropout: dropout
            .parse()
            .map_err(|e| format!("--dropout {dropout}: {e}"))?,
    };
    if o.steps < 2 || o.every.contains(&0) {
        return Err("--steps must be at least 2 and --every values at least 1".into());
    }
    Ok(o)
}

/// One mode's measurements.
struct Row {
    mode: String,
    losses: Vec<f32>,
    base: u64,
    kept: u64,
    peak: u64,
    ms: f64,
}

/// (ids, targets) of batch `s`: `batch` windows of `context` characters and the next ones.
fn batch(text: &[u32], o: &Opts, s: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..o.batch {
        let h = (s * 7919 + r * 104_729) as u64;
        let at =
            (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % (text.len() - o.context - 1);
        x.extend_from_slice(&text[at..at + o.context]);
        y.extend_from_slice(&text[at + 1..at + o.context + 1]);
    }
    (x, y)
}

/// One mode: its own device, model and optimizer, and what its steps measured.
struct Mode {
    every: usize,
    gpu: Arc<Gpu>,
    gpt: Gpt,
    opt: Adam,
    losses: Vec<f32>,
    times: Vec<f64>,
    base: u64,
    kept: u64,
    peak: u64,
}

impl Mode {
    /// A fresh GPT (seed 7: the same weights in every mode), checkpointed every `every` blocks.
    fn new(every: usize, o: &Opts, vocab: usize) -> kiln::Result<Mode> {
        let gpu: Arc<Gpu> = Gpu::new()?;
        kiln::nn::manual_seed(7);
        let cfg = GptConfig {
            vocab_size: vocab,
            n_layer: o.layers,
            n_head: o.heads,
            n_kv_head: o.heads,
            d_model: o.width,
            context: o.context,
            dropout: o.dropout,
            rope: false,
        };
        let mut gpt = Gpt::new_on(&gpu, cfg)?;
        gpt.set_checkpointing(every);
        let opt = Adam::new(gpt.named_parameters(), AdamConfig::adamw(1e-3))?;
        Ok(Mode {
            every,
            gpu,
            gpt,
            opt,
            losses: Vec::new(),
            times: Vec::new(),
            base: 0,
            kept: 0,
            peak: 0,
        })
    }

    /// Step `s` on ids `xs` (B T) and targets `ys` (B T), measured.
    fn step(&mut self, s: usize, xs: &[u32], ys: &[u32], o: &Opts) -> kiln::Result<()> {
        let (gpu, n) = (self.gpu.clone(), o.batch * o.context);
        let x = Tensor::from_slice_on(&gpu, xs, &[o.batch, o.context])?;
        let y = Tensor::from_slice_on(&gpu, ys, &[n])?;
        gpu.sync()?;
        let t0 = Instant::now();
        let b = gpu.live_bytes();
        gpu.reset_peak();
        let logits = self
            .gpt
            .forward(&x)?
            .reshape(&[n, self.gpt.config().vocab_size])?;
        let l = loss::cross_entropy(&logits, &y, &Default::default())?;
        let k = gpu.live_bytes() - b;
        l.backward()?;
        let p = gpu.peak_bytes() - b;
        self.losses.push(l.to_vec::<f32>()?[0]);
        drop((logits, l));
        self.opt.step()?;
        self.opt.zero_grad()?;
        gpu.sync()?;
        if s > 0 {
            self.times.push(t0.elapsed().as_secs_f64() * 1e3);
            (self.base, self.kept, self.peak) =
                (self.base.max(b), self.kept.max(k), self.peak.max(p));
        }
        Ok(())
    }

    fn row(mut self) -> Row {
        self.times.sort_by(f64::total_cmp);
        Row {
            mode: if self.every == 0 {
                "off".into()
            } else {
                format!("every {}", self.every)
            },
            ms: self.times[self.times.len() / 2],
            losses: self.losses,
            base: self.base,
            kept: self.kept,
            peak: self.peak,
        }
    }
}

/// Every mode's steps, interleaved (step s of each mode, then step s + 1), so that a change in
/// the machine's load touches all of them alike; the first mode's dropout keys are replayed in
/// the others (one process-wide stream).
fn run_modes(every: &[usize], o: &Opts, text: &[u32], vocab: usize) -> kiln::Result<Vec<Row>> {
    let mut modes: Vec<Mode> = every
        .iter()
        .map(|&e| Mode::new(e, o, vocab))
        .collect::<kiln::Result<_>>()?;
    kiln::nn::manual_seed(11);
    for s in 0..o.steps {
        let (xs, ys) = batch(text, o, s);
        let (first, rest) = modes.split_first_mut().expect("at least one mode");
        let (r, keys) = record_keys(|| first.step(s, &xs, &ys, o));
        r?;
        for m in rest {
            replay_keys(&keys, || m.step(s, &xs, &ys, o))?;
        }
    }
    Ok(modes.into_iter().map(Mode::row).collect())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let text = kiln::data::text::shakespeare()?;
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let ids: Vec<u32> = text
        .chars()
        .map(|c| chars.binary_search(&c).unwrap_or(0) as u32)
        .collect();
    let gpu = Gpu::new()?;
    println!(
        "GPT: {} blocks, width {}, {} heads, context {}, vocab {}, batch {}, dropout {}; {} \
         AdamW steps on {}",
        o.layers,
        o.width,
        o.heads,
        o.context,
        chars.len(),
        o.batch,
        o.dropout,
        o.steps,
        gpu.info().name
    );
    drop(gpu);
    let modes: Vec<usize> = std::iter::once(0).chain(o.every.iter().copied()).collect();
    let rows = run_modes(&modes, &o, &ids, chars.len())?;
    let off = &rows[0];
    println!(
        "{:<8} {:>9} {:>9} {:>13} {:>9} {:>8} {:>8} {:>17}",
        "mode",
        "base MiB",
        "kept MiB",
        "act peak MiB",
        "vs off",
        "ms/step",
        "vs off",
        "max |loss - off|"
    );
    for r in &rows {
        let diff = r
            .losses
            .iter()
            .zip(&off.losses)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{:<8} {:>9.2} {:>9.2} {:>13.2} {:>8.2}x {:>8.1} {:>+7.1}% {:>17.2e}",
            r.mode,
            mib(r.base),
            mib(r.kept),
            mib(r.peak),
            off.peak as f64 / r.peak as f64,
            r.ms,
            100.0 * (r.ms / off.ms - 1.0),
            diff
        );
    }
    println!(
        "loss: step 1 {:.4}, step {} {:.4}",
        off.losses[0],
        o.steps,
        off.losses[o.steps - 1]
    );
    // What one block and the head hold, for reading the table: B T C and B T V floats.
    let (btc, btv) = (
        (o.batch * o.context * o.width * 4) as f64,
        (o.batch * o.context * chars.len() * 4) as f64,
    );
    println!(
        "units: B*T*C floats = {:.3} MiB, B*T*V floats = {:.3} MiB; kept(off) = {:.1} BTC, \
         kept(every 1) = {:.1} BTC",
        btc / 1048576.0,
        btv / 1048576.0,
        off.kept as f64 / btc,
        rows.get(1).map_or(0.0, |r| r.kept as f64 / btc)
    );
    Ok(())
}
