//! Helpers shared by the recurrent-layer suites (tests/ops/rnn.rs,
//! tests/models/rnn_models.rs): the cells, tolerances and random layer weights.
#![allow(dead_code)]

use crate::common::*;
use kiln::nn::{Recurrent, RnnOptions};
use kiln::ops::RnnCell;
use kiln_kernels::reference::rnn::LayerWeights;

pub const CELLS: [RnnCell; 3] = [RnnCell::RnnTanh, RnnCell::Lstm, RnnCell::Gru];

/// Gate math in f32 against f64: a handful of transcendental ops per element.
pub const GATES: Tolerance = Tolerance::new(1e-5, 2e-6, "f32 gate nonlinearities vs f64");
/// Whole sequences: matmuls of length I and H plus T steps of error growth.
pub const SEQ: Tolerance = Tolerance::new(2e-4, 2e-5, "f32 sequence of matmuls + gates vs f64");

pub fn rand_weights(cell: RnnCell, input: usize, h: usize, k: u64) -> LayerWeights<f32> {
    let gw = cell.gates() * h;
    LayerWeights {
        w_ih: rand_vec(gw * input, seed("w_ih") + k, -0.8, 0.8),
        w_hh: rand_vec(gw * h, seed("w_hh") + k, -0.8, 0.8),
        b_ih: rand_vec(gw, seed("b_ih") + k, -0.5, 0.5),
        b_hh: rand_vec(gw, seed("b_hh") + k, -0.5, 0.5),
    }
}

pub fn to64(w: &LayerWeights<f32>) -> LayerWeights<f64> {
    LayerWeights {
        w_ih: f64s(&w.w_ih),
        w_hh: f64s(&w.w_hh),
        b_ih: f64s(&w.b_ih),
        b_hh: f64s(&w.b_hh),
    }
}

pub fn module(cell: RnnCell, opts: RnnOptions) -> Recurrent {
    Recurrent::new_on(&gpu(), cell, opts).unwrap()
}

/// The module's parameters read back as CPU weights.
pub fn weights_of(m: &Recurrent) -> Vec<LayerWeights<f64>> {
    m.layers
        .iter()
        .map(|l| LayerWeights {
            w_ih: f64s(&f32s(&l.weight_ih)),
            w_hh: f64s(&f32s(&l.weight_hh)),
            b_ih: f64s(&f32s(l.bias_ih.as_ref().unwrap())),
            b_hh: f64s(&f32s(l.bias_hh.as_ref().unwrap())),
        })
        .collect()
}
