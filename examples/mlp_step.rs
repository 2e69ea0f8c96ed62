//! Time one training step (forward, backward, Adam) of a 784-256-10 MLP at batch 128.
use kiln::Tensor;
use kiln::nn::{Linear, Module, ReLU, Sequential};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use std::time::Instant;

fn main() -> kiln::Result<()> {
    let gpu = kiln::device()?;
    let model = Sequential::new()
        .with(Linear::new(784, 256, true)?)
        .with(ReLU)
        .with(Linear::new(256, 10, true)?);
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    let x = Tensor::randn_on(&gpu, &[128, 784], 0)?;
    let y = Tensor::from_slice_on(
        &gpu,
        &(0..128u32).map(|i| i % 10).collect::<Vec<_>>(),
        &[128],
    )?;
    let step = |opt: &mut Adam| -> kiln::Result<()> {
        let loss = model.forward(&x)?.cross_entropy(&y)?;
        loss.backward()?;
        opt.step()?;
        opt.zero_grad()
    };
    for _ in 0..5 {
        step(&mut opt)?;
    }
    gpu.sync()?;
    let s0 = gpu.encoder_stats();
    let n = 50;
    let t = Instant::now();
    for _ in 0..n {
        step(&mut opt)?;
    }
    gpu.sync()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let s1 = gpu.encoder_stats();
    println!(
        "{ms:.2} ms per step, {} dispatches per step",
        (s1.total_dispatches - s0.total_dispatches) / n
    );
    Ok(())
}
