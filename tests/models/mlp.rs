//! End to end: a 2-layer MLP fits a small synthetic regression problem with plain SGD.

use crate::common;

use common::*;
use kiln::Tensor;

#[test]
fn two_layer_mlp_fits_with_sgd() {
    let g = gpu();
    // y = sin(2 x0) * x1 + 0.5 x0 on [-1, 1]^2: smooth, nonlinear, zero-free.
    let n = 256;
    let xs = rand_vec(2 * n, seed("mlp-x"), -1.0, 1.0);
    let ys: Vec<f32> = xs
        .chunks(2)
        .map(|p| (2.0 * p[0]).sin() * p[1] + 0.5 * p[0])
        .collect();
    let x = Tensor::from_slice_on(&g, &xs, &[n, 2]).unwrap(); // (N, 2)
    let y = Tensor::from_slice_on(&g, &ys, &[n, 1]).unwrap(); // (N, 1)

    let h = 32;
    let w1 = Tensor::randn_on(&g, &[2, h], 1)
        .unwrap()
        .mul_scalar(0.7)
        .unwrap()
        .requires_grad();
    let b1 = Tensor::zeros_on(&g, &[h]).unwrap().requires_grad();
    let w2 = Tensor::randn_on(&g, &[h, 1], 2)
        .unwrap()
        .mul_scalar(0.18)
        .unwrap()
        .requires_grad();
    let b2 = Tensor::zeros_on(&g, &[1]).unwrap().requires_grad();
    let params = [&w1, &b1, &w2, &b2];

    let mse = || -> Tensor {
        let pred = x
            .matmul(&w1)
            .unwrap()
            .add(&b1)
            .unwrap()
            .tanh()
            .unwrap()
            .matmul(&w2)
            .unwrap()
            .add(&b2)
            .unwrap();
        pred.sub(&y).unwrap().square().unwrap().mean().unwrap()
    };
    let first = mse().item().unwrap();
    let mut losses = Vec::new();
    for step in 0..400 {
        let loss = mse();
        loss.backward().unwrap();
        for p in params {
            p.axpy_assign(-0.3, &p.grad().unwrap()).unwrap();
            p.zero_grad().unwrap();
        }
        if step % 100 == 0 {
            losses.push(loss.item().unwrap());
        }
    }
    let last = mse().item().unwrap();
    // The target's variance is ~0.2; a fit below 0.01 means the network learned the surface.
    assert!(first > 0.05, "initial loss {first} suspiciously low");
    assert!(
        last < 0.01,
        "final MSE {last} not below 0.01 (first {first}, trace {losses:?})"
    );
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "loss did not fall steadily: {losses:?}"
    );
}
