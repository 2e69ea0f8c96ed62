//! One Adam training step of kiln's default models, timed on the wall clock.
//!
//! - MLP 784-256-10 (ReLU), batch 128;
//! - small CNN on 28 x 28: conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU,
//!   max-pool 2, linear 32*7*7 -> 10, batch 64.
//!
//! The split rows put a device sync between forward (through the loss), backward, and optimizer
//! (`step` + `zero_grad`), so each phase's time includes recording its dispatches and running
//! them; the `step` row is the same step with one sync at the end (the phases then overlap host
//! recording with GPU work, so it is usually less than the sum of the parts).

use std::sync::Arc;
use std::time::Instant;

use kiln_kernels::launch::conv::Conv2dShape;

use super::cases::wall_timing;
use super::{Bound, Case, Suite};
use crate::cli::Result;
use crate::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use crate::ops::Conv2dOptions;
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::{Gpu, Tensor};

/// A model, its batch, and the FLOPs of one forward pass.
struct Setup {
    name: &'static str,
    model: Sequential,
    x: Tensor,
    y: Tensor,
    forward_flops: u64,
}

fn mlp(gpu: &Arc<Gpu>) -> crate::Result<Setup> {
    let b = 128;
    let model = Sequential::new()
        .with(Linear::new_on(gpu, 784, 256, true)?)
        .with(ReLU)
        .with(Linear::new_on(gpu, 256, 10, true)?);
    Ok(Setup {
        name: "mlp 784-256-10 b128",
        model,
        x: Tensor::randn_on(gpu, &[b, 784], 0)?,
        y: labels(gpu, b)?,
        forward_flops: 2 * (b * (784 * 256 + 256 * 10)) as u64,
    })
}

fn cnn(gpu: &Arc<Gpu>) -> crate::Result<Setup> {
    let b = 64;
    let pad1 = Conv2dOptions {
        padding: (1, 1),
        ..Default::default()
    };
    let model = Sequential::new()
        .with(Conv2d::new_on(gpu, 1, 16, (3, 3), pad1)?)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Conv2d::new_on(gpu, 16, 32, (3, 3), pad1)?)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Flatten::default())
        .with(Linear::new_on(gpu, 32 * 7 * 7, 10, true)?);
    let conv = |c_in, c_out, hw| Conv2dShape::new(b, c_in, c_out, (hw, hw), (3, 3)).padded((1, 1));
    let flops = conv(1, 16, 28).flops() + conv(16, 32, 14).flops() + 2 * (b * 1568 * 10) as u64;
    Ok(Setup {
        name: "cnn 28x28 b64",
        model,
        x: Tensor::randn_on(gpu, &[b, 1, 28, 28], 0)?,
        y: labels(gpu, b)?,
        forward_flops: flops,
    })
}

fn labels(gpu: &Arc<Gpu>, b: usize) -> crate::Result<Tensor> {
    let y: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    Tensor::from_slice_on(gpu, &y, &[b])
}

/// Time both models; rows `train_step <model> forward|backward|optimizer|step`.
pub(super) fn run(s: &mut Suite) -> Result<()> {
    let gpu = s.gpu.clone();
    let (warm, iters) = if s.quick { (1, 3) } else { (3, 10) };
    for build in [mlp as fn(&Arc<Gpu>) -> crate::Result<Setup>, cnn] {
        let setup = build(&gpu)?;
        let phases = ["forward", "backward", "optimizer", "step"];
        if !phases.iter().any(|p| s.wants("train_step", setup.name, p)) {
            continue;
        }
        s.bar.set_message(format!("train_step {}", setup.name));
        let params = setup.model.named_parameters();
        let n_params: usize = params.iter().map(|(_, t)| t.numel()).sum();
        let mut opt = Adam::new(params, AdamConfig::adam(1e-3))?;
        let forward = || setup.model.forward(&setup.x)?.cross_entropy(&setup.y);
        let mut split = [vec![], vec![], vec![]];
        let mut whole = vec![];
        for i in 0..warm + iters {
            gpu.sync()?;
            let t0 = Instant::now();
            let loss = forward()?;
            gpu.sync()?;
            let t1 = Instant::now();
            loss.backward()?;
            gpu.sync()?;
            let t2 = Instant::now();
            opt.step()?;
            opt.zero_grad()?;
            gpu.sync()?;
            let t3 = Instant::now();
            let t4 = Instant::now();
            let loss = forward()?;
            loss.backward()?;
            opt.step()?;
            opt.zero_grad()?;
            gpu.sync()?;
            let t5 = Instant::now();
            if i >= warm {
                let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
                split[0].push(ms(t0, t1));
                split[1].push(ms(t1, t2));
                split[2].push(ms(t2, t3));
                whole.push(ms(t4, t5));
            }
        }
        let f = setup.forward_flops;
        // Adam reads p, g, m, v and writes p, m, v; zero_grad writes g.
        let opt_bytes = 8 * 4 * n_params as u64;
        let work = [
            (f, 0, Bound::Compute),
            (2 * f, 0, Bound::Compute),
            (0, opt_bytes, Bound::Memory),
        ];
        for (k, samples) in split.into_iter().enumerate() {
            let (flops, bytes, bound) = work[k];
            let case = Case::new("train_step", setup.name, phases[k]).work(flops, bytes, bound);
            if s.wants(case.op, &case.shape, &case.variant) {
                s.record(case, &wall_timing(samples), None);
            }
        }
        let case = Case::new("train_step", setup.name, "step").work(3 * f, 0, Bound::Compute);
        if s.wants(case.op, &case.shape, &case.variant) {
            let note = format!("{n_params} params, Adam");
            s.record(case, &wall_timing(whole), Some(note));
        }
    }
    Ok(())
}
