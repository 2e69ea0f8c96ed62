//! Shared pieces of the timing examples (`mlp_step`, `cnn_step`, `mlp_breakdown`,
//! `cnn_breakdown`): class labels, a timed Adam step, and one timed piece of a step; the GPT
//! of the memory examples (`qlora_memory`, `adam8bit_gpt`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use kiln::nn::Module;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln::{Gpu, Tensor};
use kiln_kernels::KernelError;
use kiln_kernels::profile::Profiler;

/// Labels `0, 1, ..., 9, 0, 1, ...` for a batch of `b` (b).
pub fn labels(gpu: &Arc<Gpu>, b: usize) -> kiln::Result<Tensor> {
    let y: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    Tensor::from_slice_on(gpu, &y, &[b])
}

/// Milliseconds per Adam step (lr 1e-3: forward through the cross-entropy of `x` against `y`,
/// backward, step, zero_grad) of `model`, over `n` steps after `warm` untimed ones, synced
/// before and after; and the dispatches per step.
pub fn time_adam_steps(
    model: &dyn Module,
    x: &Tensor,
    y: &Tensor,
    warm: usize,
    n: usize,
) -> kiln::Result<(f64, u64)> {
    let gpu = x.gpu().clone();
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    let mut step = || -> kiln::Result<()> {
        let loss = model.forward(x)?.cross_entropy(y)?;
        loss.backward()?;
        opt.step()?;
        opt.zero_grad()
    };
    for _ in 0..warm {
        step()?;
    }
    gpu.sync()?;
    let s0 = gpu.encoder_stats();
    let t = Instant::now();
    for _ in 0..n {
        step()?;
    }
    gpu.sync()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let s1 = gpu.encoder_stats();
    Ok((ms, (s1.total_dispatches - s0.total_dispatches) / n as u64))
}

/// The first command-line argument as a count, else `default`.
pub fn iters_arg(default: usize) -> usize {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Time `f` with `prof` (2 warm-up runs, the median of `iters`) and print one line: `name`
/// padded to `width`, the median in ms and the dispatches of one run.
pub fn time_piece(
    gpu: &Arc<Gpu>,
    prof: &Profiler,
    iters: usize,
    width: usize,
    name: &str,
    f: &mut dyn FnMut() -> kiln::Result<()>,
) -> kiln::Result<()> {
    let s0 = gpu.encoder_stats().total_dispatches;
    f()?;
    let d = gpu.encoder_stats().total_dispatches - s0;
    let kerr = |e: kiln::Error| KernelError::Launch {
        kernel: "breakdown".into(),
        message: e.to_string(),
    };
    let t = prof
        .time(gpu, 2, iters, || f().map_err(kerr))
        .map_err(kiln::Error::from)?;
    println!(
        "{name:<width$} {:>8.3} ms  {d:>3} dispatches",
        t.median_ms()
    );
    Ok(())
}

/// The GPT of the memory examples (`qlora_memory`, `adam8bit_gpt`): 4 heads (no grouped
/// keys), no dropout, learned positions; `kiln train --model gpt` at 4 layers, width 128,
/// context 64.
pub fn gpt_config(
    vocab: usize,
    layers: usize,
    width: usize,
    context: usize,
) -> kiln::models::GptConfig {
    kiln::models::GptConfig {
        vocab_size: vocab,
        n_layer: layers,
        n_head: 4,
        n_kv_head: 4,
        d_model: width,
        context,
        dropout: 0.0,
        rope: false,
    }
}
