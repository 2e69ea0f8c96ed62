//! Recurrent models: a tiny language model that overfits a repeated sequence and generates it,
//! the classifier's shapes, pooling and names, dropout between layers, and errors on bad shapes.

use crate::common;
use crate::rnn_util;

use common::*;
use kiln::Tensor;
use kiln::models::{
    RnnClassifier, RnnClassifierConfig, RnnLanguageModel, RnnLmConfig, SequenceInput,
    SequencePooling,
};
use kiln::nn::{Module, Recurrent, RnnOptions, RnnState};
use kiln::ops::{RnnCell, RnnLayerParams, rnn_layer};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use rnn_util::*;

#[test]
fn tiny_language_model_overfits_a_repeated_sequence() {
    kiln::nn::manual_seed(7);
    for cell in [RnnCell::Lstm, RnnCell::Gru] {
        let (v, t_n) = (6usize, 12usize);
        let mut cfg = RnnLmConfig::new(cell, v, 8, 24);
        cfg.num_layers = 2;
        let lm = RnnLanguageModel::new_on(&gpu(), cfg).unwrap();
        // Two rows of the repeated pattern 0 1 2 3 4 5, shifted; predict the next token.
        let seq: Vec<u32> = (0..2 * (t_n + 1)).map(|k| (k % v) as u32).collect();
        let mut ids = Vec::new();
        let mut next = Vec::new();
        for r in 0..2 {
            let row = &seq[r * 3..r * 3 + t_n + 1];
            ids.extend_from_slice(&row[..t_n]);
            next.extend_from_slice(&row[1..]);
        }
        let ids = Tensor::from_slice_on(&gpu(), &ids, &[2, t_n]).unwrap();
        let next = Tensor::from_slice_on(&gpu(), &next, &[2 * t_n]).unwrap();
        let mut opt = Adam::new(lm.named_parameters(), AdamConfig::adam(0.03)).unwrap();
        let mut losses = Vec::new();
        for _ in 0..60 {
            opt.zero_grad().unwrap();
            let logits = lm.forward(&ids).unwrap();
            let loss = logits
                .reshape(&[2 * t_n, v])
                .unwrap()
                .cross_entropy(&next)
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            losses.push(loss.item().unwrap());
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last < 0.1 * first && last < 0.2,
            "{}: loss went from {first} to {last}: {losses:?}",
            cell.name()
        );
        // Greedy generation with the stateful step continues the pattern.
        let mut state = None;
        let mut tok = Tensor::from_slice_on(&gpu(), &[0u32], &[1]).unwrap();
        let mut got = Vec::new();
        for _ in 0..8 {
            let (logits, s) = lm.step(&tok, state.as_ref()).unwrap();
            let id = logits.argmax(-1, false).unwrap().to_vec::<u32>().unwrap()[0];
            got.push(id);
            tok = Tensor::from_slice_on(&gpu(), &[id], &[1]).unwrap();
            state = Some(s.detach());
        }
        assert_eq!(got, [1, 2, 3, 4, 5, 0, 1, 2], "{} generation", cell.name());
    }
}

#[test]
fn classifier_shapes_and_pooling() {
    for pooling in [SequencePooling::Last, SequencePooling::Mean] {
        let c = RnnClassifier::new_on(
            &gpu(),
            RnnClassifierConfig {
                cell: RnnCell::Gru,
                input: SequenceInput::Features { size: 4 },
                hidden_size: 9,
                num_layers: 2,
                classes: 3,
                pooling,
                dropout: 0.0,
            },
        )
        .unwrap();
        let x = Tensor::randn(&[5, 7, 4], 3).unwrap();
        assert_eq!(c.forward(&x).unwrap().shape(), [5, 3]);
    }
    let c = RnnClassifier::new_on(
        &gpu(),
        RnnClassifierConfig {
            cell: RnnCell::Lstm,
            input: SequenceInput::Tokens {
                vocab_size: 10,
                embed_dim: 6,
            },
            hidden_size: 8,
            num_layers: 1,
            classes: 2,
            pooling: SequencePooling::Last,
            dropout: 0.3,
        },
    )
    .unwrap();
    let ids = Tensor::from_slice_on(&gpu(), &[1u32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    assert_eq!(c.forward(&ids).unwrap().shape(), [2, 2]);
    let names: Vec<String> = c.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "embedding.weight");
    assert_eq!(names[1], "rnn.weight_ih_l0");
    assert_eq!(names.last().unwrap(), "head.bias");
}

#[test]
fn dropout_between_layers_only_in_training() {
    let mut m = module(
        RnnCell::RnnTanh,
        RnnOptions::new(3, 8).num_layers(2).dropout(0.5),
    );
    let x = Tensor::randn(&[2, 5, 3], 11).unwrap();
    let a = f32s(&m.forward(&x).unwrap());
    let b = f32s(&m.forward(&x).unwrap());
    assert_ne!(a, b, "training dropout should draw a new mask per call");
    m.set_training(false);
    let c = f32s(&m.forward(&x).unwrap());
    let d = f32s(&m.forward(&x).unwrap());
    assert_eq!(c, d);
}

#[test]
fn bad_shapes_are_errors() {
    let w_ih = tensor(&[0.1; 12 * 3], &[12, 3]);
    let w_hh = tensor(&[0.1; 12 * 4], &[12, 4]);
    let p = RnnLayerParams {
        weight_ih: &w_ih,
        weight_hh: &w_hh,
        bias_ih: None,
        bias_hh: None,
    };
    let x = tensor(&[0.5; 2 * 3 * 3], &[2, 3, 3]);
    // 12 = 3 * 4 fits the GRU; the LSTM needs 16 rows.
    assert!(rnn_layer(RnnCell::Gru, &x, None, None, p).is_ok());
    let e = err_text(rnn_layer(RnnCell::Lstm, &x, None, None, p));
    assert_mentions(&e, &["weight_hh", "[12, 4]"]);
    let e = err_text(rnn_layer(
        RnnCell::Gru,
        &x.reshape(&[6, 3]).unwrap(),
        None,
        None,
        p,
    ));
    assert!(e.contains("(B, T, I)") && e.contains("[6, 3]"), "{e}");
    let x4 = tensor(&[0.5; 2 * 3 * 4], &[2, 3, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x4, None, None, p));
    assert!(e.contains("weight_ih"), "{e}");
    let h_bad = tensor(&[0.0; 3 * 4], &[3, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x, Some(&h_bad), None, p));
    assert_mentions(&e, &["h0", "[3, 4]"]);
    let c0 = tensor(&[0.0; 2 * 4], &[2, 4]);
    let e = err_text(rnn_layer(RnnCell::Gru, &x, None, Some(&c0), p));
    assert!(e.contains("c0"), "{e}");
    let empty = Tensor::zeros_on(&gpu(), &[2, 0, 3]).unwrap();
    let e = err_text(rnn_layer(RnnCell::Gru, &empty, None, None, p));
    assert!(e.contains("T >= 1"), "{e}");

    let m = module(RnnCell::Lstm, RnnOptions::new(3, 4).num_layers(2));
    let e = err_text(m.forward_with(&x4, None));
    assert!(e.contains("(B, T, 3)"), "{e}");
    let bad_state = RnnState {
        h: Tensor::zeros_on(&gpu(), &[1, 2, 4]).unwrap(),
        c: None,
    };
    let e = err_text(m.forward_with(&x, Some(&bad_state)));
    assert_mentions(&e, &["state", "[2, 2, 4]"]);
    assert!(Recurrent::new_on(&gpu(), RnnCell::Gru, RnnOptions::new(0, 4)).is_err());
    assert!(Recurrent::new_on(&gpu(), RnnCell::Gru, RnnOptions::new(3, 4).dropout(1.5)).is_err());
}
