//! `kiln train`: a two-layer MLP learns the two-moons problem with plain SGD.
//!
//! The whole training path in ~100 lines: seeded data, parameters with `requires_grad`, a forward
//! pass, fused cross-entropy, `backward()`, an in-place SGD update, and one readback per report.

use std::time::Instant;

use clap::Args;
use crate::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::anyhow_like::{Error, Result};

/// Flags of `kiln train`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Optimisation steps (full batch).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    pub lr: f32,
    /// Hidden units.
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Points in the training set.
    #[arg(long, default_value_t = 1024)]
    pub points: usize,
    /// Seed for data and initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print nothing but the final line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Two interleaved half circles with noise: (points, 2) features and (points) labels 0/1.
pub fn two_moons(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        let t = rng.random_range(0.0..std::f32::consts::PI);
        let (px, py) = if label == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        x.push(px + rng.random_range(-0.1..0.1));
        x.push(py + rng.random_range(-0.1..0.1));
        y.push(label);
    }
    (x, y)
}

pub fn run(a: DemoArgs) -> Result<()> {
    if a.steps == 0 || a.hidden == 0 || a.points < 2 || !(a.lr > 0.0 && a.lr.is_finite()) {
        return Err(Error(format!(
            "--steps, --hidden and --lr must be positive and --points at least 2 (got steps {}, \
             hidden {}, lr {}, points {})",
            a.steps, a.hidden, a.lr, a.points
        )));
    }
    let gpu = crate::device()?;
    if !a.quiet {
        println!("device: {} ({:?})", gpu.info().name, gpu.info().backend);
    }
    let (xs, ys) = two_moons(a.points, a.seed);
    let x = Tensor::from_slice_on(&gpu, &xs, &[a.points, 2])?; // (N, 2)
    let y = Tensor::from_slice_on(&gpu, &ys, &[a.points])?; // (N)

    // Xavier-style init: W ~ N(0, 1/fan_in).
    let h = a.hidden;
    let w1 = Tensor::randn_on(&gpu, &[2, h], a.seed + 1)?.mul_scalar((1.0f32 / 2.0).sqrt())?.requires_grad(); // (2, H)
    let b1 = Tensor::zeros_on(&gpu, &[h])?.requires_grad(); // (H)
    let w2 = Tensor::randn_on(&gpu, &[h, 2], a.seed + 2)?.mul_scalar((1.0 / h as f32).sqrt())?.requires_grad(); // (H, 2)
    let b2 = Tensor::zeros_on(&gpu, &[2])?.requires_grad(); // (2)
    let params = [&w1, &b1, &w2, &b2];

    let forward = |x: &Tensor| -> crate::Result<Tensor> {
        x.matmul(&w1)?.add(&b1)?.tanh()?.matmul(&w2)?.add(&b2) // (N, 2) logits
    };

    let start = Instant::now();
    let report = (a.steps / 10).max(1);
    let mut last = f32::NAN;
    for step in 1..=a.steps {
        let loss = forward(&x)?.cross_entropy(&y)?;
        loss.backward()?;
        for p in params {
            let g = p.grad().ok_or_else(|| Error("a parameter got no gradient".into()))?;
            p.axpy_assign(-a.lr, &g)?; // p -= lr * dL/dp
            p.zero_grad()?;
        }
        if step % report == 0 || step == a.steps {
            last = loss.item()?; // the only sync in the loop
            if !last.is_finite() {
                return Err(Error(format!("loss became {last} at step {step}; lower --lr")));
            }
            if !a.quiet {
                println!("step {step:>5}  loss {last:.4}");
            }
        }
    }
    let _g = crate::no_grad();
    let pred = forward(&x)?.argmax(1, false)?.to_vec::<u32>()?;
    let acc = pred.iter().zip(&ys).filter(|(p, t)| p == t).count() as f32 / ys.len() as f32;
    println!(
        "trained {} steps in {:.2}s: loss {last:.4}, train accuracy {:.1}%",
        a.steps,
        start.elapsed().as_secs_f32(),
        100.0 * acc
    );
    Ok(())
}
