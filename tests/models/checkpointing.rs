//! Activation checkpointing of whole models (`Module::set_checkpointing`): a GPT's transformer
//! blocks (with dropout: the masks replay), ResNet-18's residual blocks (BatchNorm in training:
//! running statistics counted once) and an LSTM's layers (with dropout, and from a given state)
//! give the plain run's loss and gradients within float tolerance. The mechanism's
//! finite-difference checks: tests/ops/checkpoint.rs.
//!
//! Tests run in parallel threads that all draw from kiln's global random stream, so the runs
//! compared here take their keys from a recording of the plain run (`record_keys` /
//! `replay_keys`: per thread) rather than from a seed.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::models::{Gpt, GptConfig, ResNet18, RnnLanguageModel, RnnLmConfig};
use kiln::nn::rng::{record_keys, replay_keys};
use kiln::nn::{Lstm, Module, RnnOptions, RnnState};
use kiln::ops::RnnCell;

/// Float tolerance of a checkpointed run against the plain one: the same ops, but a parameter
/// used in several places may sum its gradient parts in another order.
const TOL: Tolerance = Tolerance::new(
    1e-4,
    1e-6,
    "same ops, gradient parts summed in another order",
);

/// Loss (a fixed random weighting of the outputs), gradients by parameter name, and buffers of
/// one forward and backward of `model` on `x`.
type Run = (Vec<f32>, Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>);

fn run(model: &dyn Module, x: &Tensor) -> Run {
    let y = model.forward(x).unwrap();
    let w = rand_vec(y.numel(), 99, -1.0, 1.0);
    let w = Tensor::from_slice_on(&gpu(), &w, y.shape()).unwrap();
    let loss = y.mul(&w).unwrap().sum().unwrap();
    loss.backward().unwrap();
    let named = |v: Vec<(String, Tensor)>, grad: bool| -> Vec<(String, Vec<f32>)> {
        v.into_iter()
            .map(|(n, t)| {
                let t = if grad {
                    t.grad().unwrap_or_else(|| panic!("{n}: no gradient"))
                } else {
                    t
                };
                (n, f32s(&t))
            })
            .collect()
    };
    (
        f32s(&loss),
        named(model.named_parameters(), true),
        named(model.named_buffers(), false),
    )
}

/// `plain` against `segmented`, loss, gradients and buffers, named in failures by `what`.
fn assert_same(what: &str, plain: &Run, segmented: &Run) {
    TOL.assert_close(&format!("{what}: loss"), &segmented.0, &f64s(&plain.0));
    for (kind, p, s) in [
        ("grad", &plain.1, &segmented.1),
        ("buffer", &plain.2, &segmented.2),
    ] {
        assert_eq!(p.len(), s.len(), "{what}: {kind} count");
        for ((n, a), (_, b)) in p.iter().zip(s) {
            TOL.assert_close(&format!("{what}: {kind} {n}"), b, &f64s(a));
        }
    }
}

/// A model built twice with the same keys: one runs as built, the other with
/// `set_checkpointing(every)`, both in training mode drawing the same keys.
fn compare<M: Module>(what: &str, build: impl Fn() -> M, x: &Tensor, every: &[usize]) {
    let (model, init) = record_keys(&build);
    let (plain, keys) = record_keys(|| run(&model, x));
    for &n in every {
        let mut m = replay_keys(&init, &build);
        assert!(m.set_checkpointing(n), "{what} checkpoints");
        let (segmented, drawn) = replay_keys(&keys, || record_keys(|| run(&m, x)));
        assert_eq!(
            drawn, keys,
            "{what} every {n}: the forward's keys, none more"
        );
        assert_same(&format!("{what} every {n}"), &plain, &segmented);
    }
}

#[test]
fn gpt_blocks_checkpointed_give_the_plain_gradients() {
    let cfg = GptConfig {
        vocab_size: 13,
        n_layer: 3,
        n_head: 2,
        n_kv_head: 2,
        d_model: 16,
        context: 9,
        dropout: 0.1,
        rope: false,
    };
    let ids: Vec<u32> = rand_vec(3 * 7, seed("ckpt-gpt"), 0.0, 12.99)
        .iter()
        .map(|v| *v as u32)
        .collect();
    let ids = Tensor::from_slice_on(&gpu(), &ids, &[3, 7]).unwrap();
    compare("gpt", || Gpt::new_on(&gpu(), cfg).unwrap(), &ids, &[1, 2]);
}

#[test]
fn resnet_blocks_checkpointed_give_the_plain_gradients_and_statistics() {
    let x = tensor(
        &rand_vec(4 * 3 * 8 * 8, seed("ckpt-resnet"), -1.0, 1.0),
        &[4, 3, 8, 8],
    );
    compare(
        "resnet18",
        || ResNet18::new_on(&gpu(), (3, 8, 8), 5).unwrap(),
        &x,
        &[1, 3],
    );
}

#[test]
fn lstm_layers_checkpointed_give_the_plain_gradients() {
    let cfg = RnnLmConfig {
        num_layers: 3,
        dropout: 0.2,
        ..RnnLmConfig::new(RnnCell::Lstm, 7, 5, 6)
    };
    let ids: Vec<u32> = rand_vec(2 * 5, seed("ckpt-lstm"), 0.0, 6.99)
        .iter()
        .map(|v| *v as u32)
        .collect();
    let ids = Tensor::from_slice_on(&gpu(), &ids, &[2, 5]).unwrap();
    compare(
        "lstm",
        || RnnLanguageModel::new_on(&gpu(), cfg).unwrap(),
        &ids,
        &[1, 2],
    );
}

/// From a given (h0, c0) that requires grad: the segments hand the states' gradients back, and
/// the final states match.
#[test]
fn lstm_state_gradients_through_segments() {
    let (b, t, i, h, l) = (2, 4, 3, 5, 3);
    let opts = RnnOptions::new(i, h).num_layers(l);
    let s = seed("ckpt-lstm-state");
    let x = tensor(&rand_vec(b * t * i, s, -1.0, 1.0), &[b, t, i]);
    let (_, init) = record_keys(|| Lstm::new_on(&gpu(), opts).unwrap());
    let run_state = |every: usize| {
        let mut m = replay_keys(&init, || Lstm::new_on(&gpu(), opts).unwrap());
        m.set_checkpointing(every);
        let h0 = tensor(&rand_vec(l * b * h, s ^ 1, -1.0, 1.0), &[l, b, h]).requires_grad();
        let c0 = tensor(&rand_vec(l * b * h, s ^ 2, -1.0, 1.0), &[l, b, h]).requires_grad();
        let state = RnnState {
            h: h0.clone(),
            c: Some(c0.clone()),
        };
        let out = m.forward_with(&x, Some(&state)).unwrap();
        let c_n = out.state.c.clone().unwrap();
        let loss = out.output.sum().unwrap();
        let loss = loss
            .add(&out.state.h.square().unwrap().sum().unwrap())
            .unwrap();
        let loss = loss.add(&c_n.sum().unwrap()).unwrap();
        loss.backward().unwrap();
        let mut v = vec![
            f32s(&loss),
            f32s(&h0.grad().unwrap()),
            f32s(&c0.grad().unwrap()),
        ];
        v.extend(m.parameters().iter().map(|p| f32s(&p.grad().unwrap())));
        v
    };
    let plain = run_state(0);
    for every in [1, 2] {
        for (k, (a, b)) in plain.iter().zip(run_state(every)).enumerate() {
            TOL.assert_close(
                &format!("lstm state, every {every}, value {k}"),
                &b,
                &f64s(a),
            );
        }
    }
}
