//! Ops, kernels through the ops, and layers: gradient checks, ops against their CPU twins, layers, optimizers.
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/rnn.rs"]
mod rnn_util;

mod attention;
mod autograd;
mod batch_norm;
mod bias_gelu;
mod checkpoint;
mod conv;
mod cross_entropy;
mod dropout;
mod elementwise;
mod index;
mod linear_op;
mod matmul;
mod nf4;
mod nn;
mod norm;
mod optim;
mod pack16;
mod pool;
mod reduce;
mod rnn;
mod softmax;
mod swiglu;
mod transformer_layers;
mod tune;
