//! Time one Adam training step of a small CNN at batch 64 on 28x28 inputs:
//! conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU, max-pool 2,
//! linear 32*7*7 -> 10 (the shape of the peer comparison in the CNN issue).
use kiln::Tensor;
use kiln::nn::{Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential};
use kiln::ops::Conv2dOptions;

mod common;

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
    let x = Tensor::randn_on(&gpu, &[64, 1, 28, 28], 0)?;
    let (ms, dispatches) = common::time_adam_steps(&model, &x, &common::labels(&gpu, 64)?, 3, 20)?;
    println!("{ms:.1} ms per Adam step (batch 64, 28x28), {dispatches} dispatches per step");
    Ok(())
}
