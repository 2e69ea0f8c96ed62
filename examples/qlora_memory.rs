//! QLoRA memory: base-weight bytes in NF4 against f32, and the peak GPU memory of one training
//! step of the same GPT with a full fine-tune, LoRA, and QLoRA.
//!
//! ```text
//! cargo run --release --example qlora_memory                     # default `kiln train --model gpt` size
//! cargo run --release --example qlora_memory -- --batch 8 --minilm models/all-MiniLM-L6-v2
//! ```
//!
//! The GPT is the default of `kiln train --model gpt` on the character-level Shakespeare slice:
//! 4 blocks, 4 heads, width 128, context 64, vocabulary 65, batch 64 (`--batch`, `--layers`,
//! `--width`, `--context` change them). LoRA and QLoRA adapt every projection of every block
//! (`q_proj k_proj v_proj o_proj fc1 fc2`, r 8, alpha 16); QLoRA first holds those layers' base
//! weights in NF4 ([`lora::quantize_bases`]), then adds the adapters.
//!
//! Each mode runs on its own device ([`Gpu::new`]) so that the counters see only it. "weights"
//! is [`Gpu::live_bytes`] after building the model (parameters, adapters, NF4 buffers); "step
//! peak" is [`Gpu::peak_bytes`] over one step (forward, cross-entropy, backward, Adam step,
//! which allocates the optimizer state) after [`Gpu::reset_peak`]. Both count buffers the pool
//! hands out, rounded up to its size classes.
//!
//! With `--minilm DIR` it also quantises the Linear layers of all-MiniLM-L6-v2 (fetched by
//! `scripts/fetch-minilm.sh`) and prints their NF4 and f32 bytes.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use kiln::models::{BertEncoder, Gpt};
use kiln::nn::lora::{self, LoraConfig};
use kiln::nn::{Module, loss};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln::{Gpu, Tensor};

/// The layers LoRA and QLoRA adapt.
const TARGETS: &[&str] = &["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"];

struct Opts {
    batch: usize,
    layers: usize,
    width: usize,
    context: usize,
    minilm: Option<PathBuf>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        batch: 64,
        layers: 4,
        width: 128,
        context: 64,
        minilm: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut val = || args.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--batch" => o.batch = num(val()?)?,
            "--layers" => o.layers = num(val()?)?,
            "--width" => o.width = num(val()?)?,
            "--context" => o.context = num(val()?)?,
            "--minilm" => o.minilm = Some(PathBuf::from(val()?)),
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--batch, --layers, --width, --context, --minilm DIR)"
                ));
            }
        }
    }
    Ok(o)
}

/// One mode's numbers.
struct Row {
    mode: &'static str,
    trainable: usize,
    base_bytes: usize,
    weights: u64,
    peak: u64,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn run_mode(mode: &'static str, o: &Opts) -> kiln::Result<Row> {
    let gpu: Arc<Gpu> = Gpu::new()?;
    kiln::nn::manual_seed(0);
    let cfg = common::gpt_config(65, o.layers, o.width, o.context);
    let mut gpt = Gpt::new_on(&gpu, cfg)?;
    let lcfg = LoraConfig::new(8, 16.0, TARGETS);
    let mut base_bytes = 0;
    gpt.visit_linears_mut("", &mut |n, l| {
        if lcfg.selects(n) {
            base_bytes += 4 * l.in_features() * l.out_features();
        }
    });
    let params = match mode {
        "full" => gpt.named_parameters(),
        _ => {
            if mode == "qlora" {
                let r = lora::quantize_bases(&mut gpt, &lcfg)?;
                base_bytes = r.nf4_bytes();
            }
            lora::apply_lora(&mut gpt, &lcfg)?;
            lora::lora_parameters(&gpt)
        }
    };
    let trainable = params.iter().map(|(_, t)| t.numel()).sum();
    let mut opt = Adam::new(params, AdamConfig::adamw(1e-3))?;
    let n = o.batch * o.context;
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 65).collect();
    let tgt: Vec<u32> = (0..n as u32).map(|i| (i * 5 + 1) % 65).collect();
    let x = Tensor::from_slice_on(&gpu, &ids, &[o.batch, o.context])?;
    let y = Tensor::from_slice_on(&gpu, &tgt, &[n])?;
    gpu.sync()?;
    let weights = gpu.live_bytes();
    gpu.reset_peak();
    opt.zero_grad()?;
    let logits = gpt.forward(&x)?.reshape(&[n, 65])?;
    let l = loss::cross_entropy(&logits, &y, &Default::default())?;
    l.backward()?;
    opt.step()?;
    gpu.sync()?;
    Ok(Row {
        mode,
        trainable,
        base_bytes,
        weights,
        peak: gpu.peak_bytes(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    println!(
        "GPT: {} blocks, width {}, context {}, vocab 65, batch {}; adapters r 8 on {}",
        o.layers,
        o.width,
        o.context,
        o.batch,
        TARGETS.join(" ")
    );
    let rows: Vec<Row> = ["full", "lora", "qlora"]
        .into_iter()
        .map(|m| run_mode(m, &o))
        .collect::<kiln::Result<_>>()?;
    println!(
        "{:<6} {:>11} {:>16} {:>13} {:>15} {:>9}",
        "mode", "trainable", "adapted base B", "weights MiB", "step peak MiB", "vs full"
    );
    for r in &rows {
        println!(
            "{:<6} {:>11} {:>16} {:>13.2} {:>15.2} {:>8.3}x",
            r.mode,
            r.trainable,
            r.base_bytes,
            mib(r.weights),
            mib(r.peak),
            r.peak as f64 / rows[0].peak as f64
        );
    }
    println!(
        "base weights of the adapted layers: NF4 {} B vs f32 {} B = {:.4}x",
        rows[2].base_bytes,
        rows[0].base_bytes,
        rows[2].base_bytes as f64 / rows[0].base_bytes as f64
    );
    if let Some(dir) = &o.minilm {
        let gpu = Gpu::new()?;
        let mut enc = BertEncoder::from_hf_dir_on(&gpu, dir)?;
        let live = gpu.live_bytes();
        let cfg = LoraConfig::new(8, 16.0, &["query", "key", "value", "dense"]);
        let r = lora::quantize_bases(&mut enc, &cfg)?;
        println!(
            "MiniLM ({}): {} Linear layers, NF4 {} B vs f32 {} B = {:.4}x, worst rel. error \
             {:.4}; live GPU bytes {:.2} -> {:.2} MiB",
            dir.display(),
            r.layers.len(),
            r.nf4_bytes(),
            r.f32_bytes(),
            r.ratio(),
            r.max_rel_error(),
            mib(live),
            mib(gpu.live_bytes())
        );
    }
    Ok(())
}
