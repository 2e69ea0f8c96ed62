//! Ops and layers through the autograd: gradient checks, layers, optimizers, the runtime.
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/rnn.rs"]
mod rnn_util;

mod autograd;
mod linear_op;
mod nf4;
mod nn;
mod optim;
mod rnn_layers;
mod transformer_layers;
