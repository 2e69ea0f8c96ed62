//! Time one training step (forward, backward, Adam) of a 784-256-10 MLP at batch 128.
use kiln::Tensor;
use kiln::nn::{Linear, ReLU, Sequential};

mod common;

fn main() -> kiln::Result<()> {
    let gpu = kiln::device()?;
    let model = Sequential::new()
        .with(Linear::new(784, 256, true)?)
        .with(ReLU)
        .with(Linear::new(256, 10, true)?);
    let x = Tensor::randn_on(&gpu, &[128, 784], 0)?;
    let (ms, dispatches) = common::time_adam_steps(&model, &x, &common::labels(&gpu, 128)?, 5, 50)?;
    println!("{ms:.2} ms per step, {dispatches} dispatches per step");
    Ok(())
}
