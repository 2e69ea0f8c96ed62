//! Checkpointed segments (`nn::checkpoint`, `autograd::checkpoint`): finite-difference gradient
//! checks through a segment (single output, several outputs, one segment nested in another),
//! and dropout's masks replayed in the recomputation. Whole models: tests/models/checkpointing.rs.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::checkpoint::{checkpoint_fn, checkpoint_fn_multi};
use kiln::nn::rng::{record_keys, replay_keys};

/// tanh(x W + b) in f64, x (n, k), W (k, m), b (m), row-major.
fn tanh_affine(x: &[f64], w: &[f64], b: &[f64], (n, k, m): (usize, usize, usize)) -> Vec<f64> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let s: f64 = (0..k).map(|p| x[i * k + p] * w[p * m + j]).sum();
            out[i * m + j] = (s + b[j]).tanh();
        }
    }
    out
}

/// Awkward sizes: x (3, 5), W (5, 7), b (7).
const DIMS: (usize, usize, usize) = (3, 5, 7);

fn inputs(tag: &str) -> Vec<Input> {
    let (n, k, m) = DIMS;
    let s = seed(tag);
    vec![
        Input::rand(&[n, k], s, -1.0, 1.0),
        Input::rand(&[k, m], s ^ 1, -0.8, 0.8),
        Input::rand(&[m], s ^ 2, -0.5, 0.5),
    ]
}

/// d/dx, d/dW and d/db of one segment tanh(x W + b), W and b its parameters.
#[test]
fn gradcheck_through_a_segment() {
    gradcheck(
        "checkpoint tanh(xW+b)",
        &inputs("checkpoint-single"),
        |t| {
            let (w, b) = (t[1].clone(), t[2].clone());
            checkpoint_fn(&t[..1], &t[1..], move |xs| {
                xs[0].matmul(&w)?.add(&b)?.tanh()
            })
        },
        |x| tanh_affine(&x[0], &x[1], &x[2], DIMS),
        GradTol::default(),
    );
}

/// Two outputs (tanh(x W) + b and x^2) from one segment whose tanh(x W) is itself a segment:
/// the packed outputs and the nested recomputation give central differences' gradients.
#[test]
fn gradcheck_several_outputs_and_a_nested_segment() {
    let (n, k, m) = DIMS;
    gradcheck(
        "checkpoint nested, two outputs",
        &inputs("checkpoint-multi"),
        |t| {
            let (w, b) = (t[1].clone(), t[2].clone());
            let outer_params = [t[1].clone(), t[2].clone()];
            let outs = checkpoint_fn_multi(&t[..1], &outer_params, move |xs| {
                let inner_w = w.clone();
                let h = checkpoint_fn(&xs[..1], std::slice::from_ref(&w), move |ys| {
                    ys[0].matmul(&inner_w)?.tanh()
                })?;
                Ok(vec![h.add(&b)?, xs[0].square()?])
            })?;
            assert_eq!(outs[0].shape(), [n, m]);
            assert_eq!(outs[1].shape(), [n, k]);
            Tensor::concat(&[&outs[0].flatten_all()?, &outs[1].flatten_all()?], 0)
        },
        |x| {
            let h = tanh_affine(&x[0], &x[1], &vec![0.0; m], DIMS);
            let shifted = h.iter().enumerate().map(|(i, v)| v + x[2][i % m]);
            shifted.chain(x[0].iter().map(|v| v * v)).collect()
        },
        GradTol::default(),
    );
}

/// Dropout inside a segment: the recomputation draws the masks the forward drew (gradients
/// equal the plain run's exactly) without drawing from the stream again. (Keys recorded from the
/// plain run and replayed, per thread: parallel tests draw from the same global stream.)
#[test]
fn dropout_masks_replay_in_the_recomputation() {
    let g = gpu();
    let x = rand_vec(6 * 11, seed("checkpoint-dropout"), -1.0, 1.0);
    let w = rand_vec(11 * 11, seed("checkpoint-dropout-w"), -0.5, 0.5);
    let run = |segmented: bool| {
        let xt = Tensor::from_slice_on(&g, &x, &[6, 11])
            .unwrap()
            .requires_grad();
        let wt = Tensor::from_slice_on(&g, &w, &[11, 11])
            .unwrap()
            .requires_grad();
        let f = {
            let wt = wt.clone();
            move |xs: &[Tensor]| {
                let h = kiln::nn::dropout(&xs[0], 0.4, true)?.matmul(&wt)?.tanh()?;
                kiln::nn::dropout(&h, 0.3, true)
            }
        };
        let y = if segmented {
            checkpoint_fn(std::slice::from_ref(&xt), std::slice::from_ref(&wt), f).unwrap()
        } else {
            f(std::slice::from_ref(&xt)).unwrap()
        };
        // One more draw after the segment, before backward.
        let y = kiln::nn::dropout(&y, 0.2, true).unwrap();
        y.square().unwrap().sum().unwrap().backward().unwrap();
        (f32s(&xt.grad().unwrap()), f32s(&wt.grad().unwrap()))
    };
    let (plain, keys) = record_keys(|| run(false));
    assert_eq!(keys.len(), 3);
    let (seg, drawn) = replay_keys(&keys, || record_keys(|| run(true)));
    assert_eq!(
        drawn, keys,
        "keys drawn: the forward's three, none in backward"
    );
    assert_eq!(plain.0, seg.0, "dL/dx");
    assert_eq!(plain.1, seg.1, "dL/dW");
}

/// Without grad mode a segment is its function: no graph, the same values.
#[test]
fn outside_grad_mode_a_segment_just_runs() {
    let t: Vec<Tensor> = inputs("checkpoint-nograd")
        .iter()
        .map(|i| tensor(&i.data, &i.shape).requires_grad())
        .collect();
    let _g = kiln::no_grad();
    let (w, b) = (t[1].clone(), t[2].clone());
    let y = checkpoint_fn(&t[..1], &t[1..], move |xs| {
        xs[0].matmul(&w)?.add(&b)?.tanh()
    })
    .unwrap();
    assert!(y.is_leaf() && !y.requires_grad_flag());
    let want = t[0]
        .matmul(&t[1])
        .unwrap()
        .add(&t[2])
        .unwrap()
        .tanh()
        .unwrap();
    assert_eq!(f32s(&y), f32s(&want));
}
