//! Time one Adam training step of a small CNN at batch 64 on 28x28 inputs:
//! conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU, max-pool 2,
//! linear 32*7*7 -> 10 (the shape of the peer comparison in the CNN issue).
use kiln::Tensor;
use kiln::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use kiln::ops::Conv2dOptions;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use std::time::Instant;

fn main() -> kiln::Result<()> {
    let gpu = kiln::device()?;
    let pad1 = Conv2dOptions {
        padding: (1, 1),
        ..Default::default()
    };
    let model = Sequential::new()
        .with(Conv2d::new(1, 16, (3, 3), pad1)?)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Conv2d::new(16, 32, (3, 3), pad1)?)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Flatten::default())
        .with(Linear::new(32 * 7 * 7, 10, true)?);
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    let x = Tensor::randn_on(&gpu, &[64, 1, 28, 28], 0)?;
    let y = Tensor::from_slice_on(&gpu, &(0..64u32).map(|i| i % 10).collect::<Vec<_>>(), &[64])?;
    let step = |opt: &mut Adam| -> kiln::Result<()> {
        let loss = model.forward(&x)?.cross_entropy(&y)?;
        loss.backward()?;
        opt.step()?;
        opt.zero_grad()
    };
    for _ in 0..3 {
        step(&mut opt)?;
    }
    gpu.sync()?;
    let s0 = gpu.encoder_stats();
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        step(&mut opt)?;
    }
    gpu.sync()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let s1 = gpu.encoder_stats();
    println!(
        "{ms:.1} ms per Adam step (batch 64, 28x28), {} dispatches per step",
        (s1.total_dispatches - s0.total_dispatches) / n
    );
    Ok(())
}
