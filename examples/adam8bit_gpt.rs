//! 8-bit Adam and optimizer offload against 32-bit Adam on a character-level GPT: optimizer
//! state bytes, device memory, step time and loss over the same steps from the same start.
//!
//! ```text
//! cargo run --example adam8bit_gpt -- --steps 200                 # scripts/adam8bit.sh runs this
//! cargo run --example adam8bit_gpt -- --steps 50 --layers 2 --width 64
//! ```
//!
//! The GPT is the default of `kiln train --model gpt` (4 blocks, 4 heads, width 128, context
//! 64) on the bundled Shakespeare slice, characters as tokens; batches of `--batch` (16)
//! windows drawn from the first 90 % of the text with a fixed seed, the same for every
//! optimizer; validation is the mean loss of 32 fixed windows of the last 10 %. Each optimizer
//! (AdamW, lr 1e-3, weight decay 0.01) runs on its own device ([`Gpu::new`]), so its pool
//! counters see only it:
//!
//! - `state` is [`Optimizer::state_bytes`] (codes, scales, moments, step counts);
//! - `device` is [`Gpu::live_bytes`] after the run (parameters, their gradients, optimizer
//!   state on the device), counted in the pool's size classes;
//! - `ms/step` is the wall-clock median over the steps after the first five (forward,
//!   backward, optimizer step, with one device sync per step);
//! - `train` is the mean loss of the last 10 steps, `val` the validation loss at the end.

mod common;

use std::sync::Arc;
use std::time::Instant;

use kiln::models::Gpt;
use kiln::nn::Module;
use kiln::optim::{Adam, Adam8bit, AdamConfig, OffloadAdam, Optimizer};
use kiln::{Gpu, Tensor};

struct Opts {
    steps: usize,
    batch: usize,
    layers: usize,
    width: usize,
    context: usize,
}

/// The flags and their defaults, in [`Opts`] order.
const FLAGS: [(&str, usize); 5] = [
    ("--steps", 200),
    ("--batch", 16),
    ("--layers", 4),
    ("--width", 128),
    ("--context", 64),
];

fn parse() -> Result<Opts, String> {
    let mut v = FLAGS.map(|(_, d)| d);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(k) = FLAGS.iter().position(|(f, _)| *f == flag) else {
            let names: Vec<&str> = FLAGS.iter().map(|(f, _)| *f).collect();
            return Err(format!("unknown flag {flag} ({})", names.join(", ")));
        };
        let x = args.next().ok_or(format!("{flag} needs a value"))?;
        v[k] = x.parse().map_err(|e| format!("{flag} {x}: {e}"))?;
    }
    let [steps, batch, layers, width, context] = v;
    Ok(Opts {
        steps,
        batch,
        layers,
        width,
        context,
    })
}

/// A cheap deterministic stream of window starts (xorshift).
fn starts(seed: u64, count: usize, lo: usize, hi: usize) -> Vec<usize> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (x % (hi - lo) as u64) as usize
        })
        .collect()
}

/// Input ids `[b, context]` and flat targets `[b * context]` of the windows at `at`.
fn batch(gpu: &Arc<Gpu>, ids: &[u32], at: &[usize], ctx: usize) -> kiln::Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &s in at {
        x.extend_from_slice(&ids[s..s + ctx]);
        y.extend_from_slice(&ids[s + 1..s + ctx + 1]);
    }
    Ok((
        Tensor::from_slice_on(gpu, &x, &[at.len(), ctx])?,
        Tensor::from_slice_on(gpu, &y, &[at.len() * ctx])?,
    ))
}

struct Row {
    mode: &'static str,
    state: u64,
    device: u64,
    ms: f64,
    train: f32,
    val: f32,
}

fn run(mode: &'static str, o: &Opts, ids: &[u32], vocab: usize) -> kiln::Result<Row> {
    let gpu = Gpu::new()?;
    kiln::nn::manual_seed(0);
    let cfg = common::gpt_config(vocab, o.layers, o.width, o.context);
    let gpt = Gpt::new_on(&gpu, cfg)?;
    let (params, c) = (gpt.named_parameters(), AdamConfig::adamw(1e-3));
    let mut opt: Box<dyn Optimizer> = match mode {
        "adamw" => Box::new(Adam::new(params, c)?),
        "adamw8bit" => Box::new(Adam8bit::new(params, c)?),
        _ => Box::new(OffloadAdam::new(params, c)?),
    };
    let cut = ids.len() * 9 / 10;
    let forward = |x: &Tensor, y: &Tensor| {
        let logits = gpt.forward(x)?;
        logits.reshape(&[y.numel(), vocab])?.cross_entropy(y)
    };
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for step in 0..o.steps {
        let at = starts(step as u64 + 1, o.batch, 0, cut - o.context - 1);
        let (x, y) = batch(&gpu, ids, &at, o.context)?;
        let t0 = Instant::now();
        let loss = forward(&x, &y)?;
        opt.zero_grad()?;
        loss.backward()?;
        opt.step()?;
        losses.push(loss.item()?); // the step's one sync
        if step >= 5 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = starts(999, 32, cut, ids.len() - o.context - 1);
    let (x, y) = batch(&gpu, ids, &at, o.context)?;
    let val = {
        let _g = kiln::no_grad();
        forward(&x, &y)?.item()?
    };
    let tail = &losses[losses.len().saturating_sub(10)..];
    Ok(Row {
        mode,
        state: opt.state_bytes(),
        device: gpu.live_bytes(),
        ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        train: tail.iter().sum::<f32>() / tail.len() as f32,
        val,
    })
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("adam8bit_gpt: {e}");
            std::process::exit(2);
        }
    };
    let text = kiln::data::text::shakespeare().expect("the bundled Shakespeare slice");
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let ids: Vec<u32> = text
        .chars()
        .map(|c| chars.binary_search(&c).unwrap() as u32)
        .collect();
    println!(
        "GPT {} blocks, width {}, context {}, vocab {}, batch {}, {} steps",
        o.layers,
        o.width,
        o.context,
        chars.len(),
        o.batch,
        o.steps
    );
    println!("| optimizer | state bytes | device bytes | ms/step | train loss | val loss |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut base = None;
    for mode in ["adamw", "adamw8bit", "adamw offload"] {
        match run(mode, &o, &ids, chars.len()) {
            Ok(r) => {
                let (s0, v0) = *base.get_or_insert((r.state, r.val));
                println!(
                    "| {} | {} ({:.1} %) | {} | {:.1} | {:.4} | {:.4} ({:+.2} %) |",
                    r.mode,
                    r.state,
                    100.0 * r.state as f64 / s0 as f64,
                    r.device,
                    r.ms,
                    r.train,
                    r.val,
                    100.0 * (r.val - v0) / v0
                );
            }
            Err(e) => {
                eprintln!("adam8bit_gpt: {mode}: {e}");
                std::process::exit(1);
            }
        }
    }
}
