//! `kiln tune-kernels`: tune the matmul, conv and attention kernels ahead of time for a model's
//! shapes.
//!
//! The shapes come from one forward and backward pass of the model on random input with the
//! tuner's shape recorder on (so they are exactly the products, convolutions and attention calls
//! training runs, transposed backward operands included), plus any `--matmul MxNxK[xB]` given.
//! Each shape bucket is timed over every kernel variant and tile configuration the adapter can
//! run, the winner is checked against the CPU twin, and the choices are written to the tuning
//! cache that `Tensor::matmul`, `Tensor::conv2d` and the fused attention read (see
//! `kiln_kernels::tune`).

use std::time::Duration;

use clap::Args;
use kiln_kernels::launch::matmul::MatmulDims;
use kiln_kernels::tune::{self, SeenShape, Tuner};

use super::{Error, Result};
use crate::Tensor;
use crate::models::ModelSpec;

/// `kiln tune-kernels` flags.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Model whose shapes to tune: mlp, linear, lenet, vgg, resnet18, or a sequence model such
    /// as gpt (token ids of length --input; its attention is tuned too). None: only --matmul.
    #[arg(long)]
    pub model: Option<String>,
    /// Examples per batch, as in training.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Image shape C,H,W for the convolutional models.
    #[arg(long, default_value = "1,28,28")]
    pub image: String,
    /// Input features for mlp / linear.
    #[arg(long, default_value_t = 784)]
    pub input: usize,
    /// Classes (outputs).
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Extra matmul shapes, `MxNxK` or `MxNxKxBATCH` (repeatable).
    #[arg(long)]
    pub matmul: Vec<String>,
    /// Re-measure shapes already in the cache.
    #[arg(long)]
    pub force: bool,
    /// Milliseconds to spend timing each candidate.
    #[arg(long, default_value_t = 300)]
    pub budget_ms: u64,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// Parse `MxNxK` or `MxNxKxB`.
fn parse_matmul(s: &str) -> Result<MatmulDims> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error(format!(
                "--matmul {s:?}: {e} (expected MxNxK or MxNxKxBATCH)"
            ))
        })?;
    let positive = v.iter().all(|&d| d > 0);
    if positive {
        crate::tensor::numel_checked(&v, &format!("--matmul {s:?}"))?;
    }
    match v[..] {
        [m, n, k] if positive => Ok(MatmulDims { batch: 1, m, n, k }),
        [m, n, k, batch] if positive => Ok(MatmulDims { batch, m, n, k }),
        _ => Err(Error(format!(
            "--matmul {s:?}: expected MxNxK or MxNxKxBATCH with every size at least 1"
        ))),
    }
}

/// The model's kernel shapes: one forward and backward pass with the recorder on.
fn model_shapes(a: &TuneArgs, gpu: &std::sync::Arc<crate::Gpu>) -> Result<Vec<SeenShape>> {
    let Some(name) = a.model.as_deref() else {
        return Ok(Vec::new());
    };
    let dims: Vec<usize> = a
        .image
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error(format!("--image {:?}: {e} (expected C,H,W)", a.image)))?;
    let [c, h, w] = dims[..] else {
        return Err(Error(format!("--image {:?}: expected C,H,W", a.image)));
    };
    let conv = matches!(name, "lenet" | "vgg" | "resnet18");
    let mut shape = vec![a.batch_size];
    if conv {
        shape.extend([c, h, w]);
    } else {
        shape.push(a.input);
    }
    let flags = if conv {
        format!("--batch-size {} --image {}", a.batch_size, a.image)
    } else {
        format!("--batch-size {} --input {}", a.batch_size, a.input)
    };
    // Checked before the model is built: (batch, input) and every weight must fit a buffer.
    let n = crate::tensor::check_fits(gpu, &shape, crate::DType::F32, &flags)?;
    let input = if conv { c * h * w } else { a.input };
    let spec = ModelSpec::from_name(name, input, a.classes, Some((c, h, w)))?;
    let model = spec
        .build(gpu)
        .map_err(|e| Error(format!("--model {name} with {flags}: {e}")))?;
    // Sequence models (gpt, lstm, ...) take (batch, --input) token ids below --classes, so their
    // attention shapes (B, H, T = --input, D) are recorded too.
    let x = if spec.is_sequence() {
        let ids: Vec<u32> = (0..n)
            .map(|i| ((i * 7919) % a.classes.max(1)) as u32)
            .collect();
        Tensor::from_slice_on(gpu, &ids, &shape)?
    } else {
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        Tensor::from_slice_on(gpu, &data, &shape)?
    };
    tune::start_recording();
    let pass = model
        .forward(&x)
        .and_then(|y| y.sum())
        .and_then(|l| l.backward());
    let seen = tune::stop_recording();
    pass?;
    Ok(seen)
}

fn describe(s: &SeenShape) -> String {
    match *s {
        SeenShape::Matmul {
            dims,
            a_t,
            b_t,
            f16,
        } => {
            let t = |x: bool| if x { "^T" } else { "" };
            format!(
                "matmul {}x({}x{}{} @ {}x{}{}) {}",
                dims.batch,
                dims.m,
                dims.k,
                t(a_t),
                dims.k,
                dims.n,
                t(b_t),
                if f16 { "f16" } else { "f32" }
            )
        }
        SeenShape::Conv(c) => format!(
            "conv2d {}x{}x{}x{} -> {} k{}x{} s{}",
            c.n, c.c_in, c.h, c.w, c.c_out, c.kh, c.kw, c.stride.0
        ),
        SeenShape::Attention(a) => format!(
            "attention B{} H{} T{}x{} D{}{}",
            a.batch,
            a.heads,
            a.tq,
            a.tk,
            a.d,
            if a.causal { " causal" } else { "" }
        ),
    }
}

/// Run `kiln tune-kernels`.
pub fn run(a: TuneArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Error(
            "--batch-size 0: tune for the batch size you train with (at least 1)".into(),
        ));
    }
    let gpu = a.device.open()?;
    let mut shapes = model_shapes(&a, &gpu)?;
    for s in &a.matmul {
        shapes.push(SeenShape::Matmul {
            dims: parse_matmul(s)?,
            a_t: false,
            b_t: false,
            f16: false,
        });
    }
    if shapes.is_empty() {
        return Err(Error(
            "nothing to tune: give --model NAME and/or --matmul MxNxK".into(),
        ));
    }
    let mut tuner = Tuner::new(&gpu)?;
    tuner.force = a.force;
    tuner.budget = Duration::from_millis(a.budget_ms);
    if let Some(w) = tuner.cache().warning() {
        eprintln!("warning: {w}");
    }
    println!(
        "tuning {} shape(s) on {} (driver {}), timed by {}",
        shapes.len(),
        gpu.info().name,
        tune::driver_of(&gpu),
        match tuner.time_source() {
            kiln_kernels::profile::TimeSource::GpuTimestamps => "GPU timestamps",
            kiln_kernels::profile::TimeSource::WallClock => "wall time around a sync",
        }
    );
    println!(
        "{:<44} {:<18} {:>9} {:>9} {:>8}",
        "shape", "winner", "GFLOP/s", "default", "speed-up"
    );
    for s in &shapes {
        let report = match *s {
            SeenShape::Matmul {
                dims,
                a_t,
                b_t,
                f16,
            } => tuner.tune_matmul(dims, a_t, b_t, f16),
            SeenShape::Conv(c) => tuner.tune_conv(&c),
            SeenShape::Attention(a) => tuner.tune_attention(&a),
        }?;
        println!(
            "{:<44} {:<18} {:>9.2} {:>9.2} {:>7.2}x{}",
            describe(s),
            report.winner,
            report.gflops,
            report.default_gflops,
            report.speedup(),
            if report.cached { " (cached)" } else { "" }
        );
        if std::env::var_os("KILN_TUNE_VERBOSE").is_some() {
            for (label, r) in &report.candidates {
                match r {
                    Ok(g) => println!("    {label:<22} {g:>9.2} GFLOP/s"),
                    Err(why) => println!("    {label:<22} skipped: {why}"),
                }
            }
        }
    }
    tuner.save()?;
    println!("cache written to {}", tuner.cache().path().display());
    Ok(())
}
