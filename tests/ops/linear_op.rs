//! `Tensor::linear` (one node for `x W^T + b`) against the composed ops and finite differences,
//! and the deferred `zero_grad` that lets a backward pass adopt fresh gradients.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::{Linear, Module, ReLU, Sequential};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::launch::matmul::{MatLayout, MatmulDims};
use kiln_kernels::reference::matmul::matmul as matmul_ref;

/// `x W^T + b` in f64: x (rows, k), w (n, k), b (n).
fn linear_ref(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    rows: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let dims = MatmulDims {
        batch: 1,
        m: rows,
        n,
        k,
    };
    let mut y = matmul_ref(
        x,
        MatLayout::contiguous(rows, k),
        w,
        MatLayout::transposed(k, n),
        dims,
    );
    if let Some(b) = b {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[i % n];
        }
    }
    y
}

#[test]
fn linear_gradcheck_awkward_sizes() {
    for &(rows, k, n) in &[(1, 1, 1), (7, 17, 5), (17, 7, 129), (3, 129, 7)] {
        let name = format!("linear {rows}x{k} -> {n}");
        let s = seed(&name);
        gradcheck(
            &name,
            &[
                Input::rand(&[rows, k], s, -1.0, 1.0),
                Input::rand(&[n, k], s + 1, -1.0, 1.0),
                Input::rand(&[n], s + 2, -1.0, 1.0),
            ],
            |t| t[0].linear(&t[1], Some(&t[2])),
            |x| linear_ref(&x[0], &x[1], Some(&x[2]), rows, k, n),
            GradTol::default(),
        );
    }
}

#[test]
fn linear_without_bias_and_rank3_gradcheck() {
    // (2, 3, 7) input: the leading dims flatten to 6 rows.
    gradcheck(
        "linear rank 3, no bias",
        &[
            Input::rand(&[2, 3, 7], seed("l3x"), -1.0, 1.0),
            Input::rand(&[5, 7], seed("l3w"), -1.0, 1.0),
        ],
        |t| t[0].linear(&t[1], None),
        |x| linear_ref(&x[0], &x[1], None, 6, 7, 5),
        GradTol::default(),
    );
    // A 1-D input is one row, and the result is 1-D.
    gradcheck(
        "linear 1-D input",
        &[
            Input::rand(&[17], seed("l1x"), -1.0, 1.0),
            Input::rand(&[7, 17], seed("l1w"), -1.0, 1.0),
            Input::rand(&[7], seed("l1b"), -1.0, 1.0),
        ],
        |t| t[0].linear(&t[1], Some(&t[2])),
        |x| linear_ref(&x[0], &x[1], Some(&x[2]), 1, 17, 7),
        GradTol::default(),
    );
}

#[test]
fn linear_matches_composed_ops_and_skips_unneeded_gradients() {
    let g = gpu();
    let (rows, k, n) = (129, 17, 7);
    let x = Tensor::from_slice_on(&g, &rand_vec(rows * k, seed("cx"), -1.0, 1.0), &[rows, k]);
    let x = x.unwrap();
    let w = Tensor::from_slice_on(&g, &rand_vec(n * k, seed("cw"), -1.0, 1.0), &[n, k]).unwrap();
    let b = Tensor::from_slice_on(&g, &rand_vec(n, seed("cb"), -1.0, 1.0), &[n]).unwrap();
    let (w1, b1) = (w.detach().requires_grad(), b.detach().requires_grad());
    let (w2, b2) = (w.detach().requires_grad(), b.detach().requires_grad());
    let fused = x.linear(&w1, Some(&b1)).unwrap();
    let composed = x.matmul(&w2.t().unwrap()).unwrap().add(&b2).unwrap();
    let tol = Tolerance::new(1e-5, 1e-6, "same f32 kernels, same order");
    tol.assert_close(
        "forward",
        &fused.to_vec::<f32>().unwrap(),
        &composed.to_vec::<f32>().unwrap(),
    );
    assert_eq!(fused.grad_fn(), Some("linear"));
    let up = Tensor::from_slice_on(&g, &rand_vec(rows * n, seed("cg"), 0.5, 1.5), &[rows, n]);
    let up = up.unwrap();
    fused.backward_with(&up).unwrap();
    composed.backward_with(&up).unwrap();
    let read = |t: &Tensor| t.grad().unwrap().to_vec::<f32>().unwrap();
    let tol = Tolerance::new(1e-4, 1e-5, "f32 sums in different orders");
    tol.assert_close("dW", &read(&w1), &read(&w2));
    tol.assert_close("db", &read(&b1), &read(&b2));
    let gw = w1.grad().unwrap();
    assert!(gw.is_contiguous(), "dW comes back in W's own layout");
    // x does not require grad: no gradient for it, and nothing breaks.
    assert!(x.grad().is_none());
}

#[test]
fn linear_rejects_bad_shapes() {
    let g = gpu();
    let x = Tensor::zeros_on(&g, &[3, 4]).unwrap();
    let w = Tensor::zeros_on(&g, &[5, 6]).unwrap();
    let e = x.linear(&w, None).unwrap_err().to_string();
    assert!(e.contains("linear") && e.contains("[3, 4]"), "{e}");
    let w = Tensor::zeros_on(&g, &[5, 4]).unwrap();
    let b = Tensor::zeros_on(&g, &[4]).unwrap();
    let e = x.linear(&w, Some(&b)).unwrap_err().to_string();
    assert!(e.contains("bias"), "{e}");
}

/// d/dw sum(w * c) = c, on a fresh graph each call.
fn backward_once(w: &Tensor, c: &[f32]) {
    let c = Tensor::from_slice_on(w.gpu(), c, w.shape()).unwrap();
    w.mul(&c).unwrap().sum().unwrap().backward().unwrap();
}

/// A parameter of `n` random values and two random directions `c1`, `c2` for
/// [`backward_once`], seeded by `tag`.
fn param_and_directions(n: usize, tag: &str) -> (Tensor, Vec<f32>, Vec<f32>) {
    let [w, c1, c2] = ["w", "c1", "c2"].map(|k| rand_vec(n, seed(&format!("{tag}{k}")), -1.0, 1.0));
    (tensor(&w, &[n]).requires_grad(), c1, c2)
}

#[test]
fn deferred_zero_grad_replaces_instead_of_adding() {
    let (w, c1, c2) = param_and_directions(129, "z");
    backward_once(&w, &c1);
    w.zero_grad().unwrap();
    backward_once(&w, &c2);
    assert_eq!(
        w.grad().unwrap().to_vec::<f32>().unwrap(),
        c2,
        "only the new gradient"
    );
    // Accumulation still works after an adopted gradient.
    backward_once(&w, &c1);
    let want: Vec<f32> = c1.iter().zip(&c2).map(|(a, b)| a + b).collect();
    let tol = Tolerance::new(1e-6, 1e-7, "one f32 add");
    tol.assert_close(
        "accumulated",
        &w.grad().unwrap().to_vec::<f32>().unwrap(),
        &want,
    );
}

#[test]
fn deferred_zero_grad_keeps_a_held_buffer_in_place() {
    let (w, c1, c2) = param_and_directions(17, "h");
    backward_once(&w, &c1);
    let held = w.grad().unwrap();
    w.zero_grad().unwrap();
    backward_once(&w, &c2);
    // The held handle is the gradient buffer, so it shows the new gradient (as in PyTorch).
    assert!(w.grad().unwrap().shares_storage(&held));
    assert_eq!(held.to_vec::<f32>().unwrap(), c2);
    // zero_grad then a read: zeros, same buffer.
    w.zero_grad().unwrap();
    assert_eq!(held.to_vec::<f32>().unwrap(), vec![0.0; 17]);
    assert!(w.grad().unwrap().shares_storage(&held));
    w.zero_grad().unwrap();
    w.clear_grad();
    assert!(w.grad().is_none());
}

/// The MLP of `examples/mlp_step.rs` (small): a few Adam steps with `Tensor::linear` and the
/// deferred zero_grad give the same parameters as the composed ops with eager zeroing.
#[test]
fn mlp_adam_steps_match_composed_reference() {
    let g = gpu();
    let (b, d_in, hid, out) = (17, 33, 19, 7);
    let model = Sequential::new()
        .with(Linear::new_on(&g, d_in, hid, true).unwrap())
        .with(ReLU)
        .with(Linear::new_on(&g, hid, out, true).unwrap());
    let params = model.named_parameters();
    // The reference: copies of the same parameters, composed ops, eager zeroing in place.
    let copies: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| {
            let v = p.to_vec::<f32>().unwrap();
            Tensor::from_slice_on(&g, &v, p.shape())
                .unwrap()
                .requires_grad()
        })
        .collect();
    let mut opt = Adam::new(params.clone(), AdamConfig::adam(1e-2)).unwrap();
    let named: Vec<(String, Tensor)> = params
        .iter()
        .zip(&copies)
        .map(|((n, _), c)| (n.clone(), c.clone()))
        .collect();
    let mut opt_ref = Adam::new(named, AdamConfig::adam(1e-2)).unwrap();
    let x = Tensor::from_slice_on(&g, &rand_vec(b * d_in, seed("mx"), -1.0, 1.0), &[b, d_in]);
    let x = x.unwrap();
    let y: Vec<u32> = (0..b as u32).map(|i| i % out as u32).collect();
    let y = Tensor::from_slice_on(&g, &y, &[b]).unwrap();
    for _ in 0..3 {
        classifier_step(&model, &mut opt, &x, &y);

        let [w1, b1, w2, b2] = [0, 1, 2, 3].map(|i| copies[i].clone());
        let h = x
            .matmul(&w1.t().unwrap())
            .unwrap()
            .add(&b1)
            .unwrap()
            .relu()
            .unwrap();
        let logits = h.matmul(&w2.t().unwrap()).unwrap().add(&b2).unwrap();
        logits.cross_entropy(&y).unwrap().backward().unwrap();
        opt_ref.step().unwrap();
        for c in &copies {
            c.set_grad(Some(Tensor::zeros_on(&g, c.shape()).unwrap()));
        }
    }
    let tol = Tolerance::new(1e-4, 1e-5, "f32, sums in different orders, 3 Adam steps");
    for ((name, p), c) in params.iter().zip(&copies) {
        tol.assert_close(
            name,
            &p.to_vec::<f32>().unwrap(),
            &c.to_vec::<f32>().unwrap(),
        );
        let gz = p.grad().unwrap().to_vec::<f32>().unwrap();
        assert!(
            gz.iter().all(|&v| v == 0.0),
            "{name}: zero_grad shows zeros"
        );
    }
}
