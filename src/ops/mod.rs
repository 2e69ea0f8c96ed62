//! Differentiable ops, one file each, forward and backward side by side.
//!
//! Every op checks its inputs (dtype, shapes, device) and returns an [`crate::Error`] naming the
//! op and the shapes on misuse; allocates its output from the pool; records its kernel launches;
//! and, when an input requires grad, attaches the gradient rule with `Tensor::record`.
//!
//! | file | ops |
//! | --- | --- |
//! | `elementwise/` | `unary.rs`: neg exp log sqrt abs relu gelu silu tanh sigmoid clamp powf ...; `binary.rs`: add sub mul div pow maximum minimum (NumPy broadcasting); `compare.rs`: eq ne lt le gt ge, where_cond, masked_fill |
//! | `reduce.rs` | sum mean max min argmax argmin over any axes; sum_to |
//! | `matmul.rs` | batched matmul with broadcasting and transposed operands |
//! | `linear.rs` | `x W^T + b` as one node (nn::Linear), weight gradient in W's layout |
//! | `lora.rs` | LoRA's `x W^T + b + s (x A^T) B^T` as one node (f32 or NF4 base) |
//! | `softmax.rs` | fused softmax, log_softmax, logsumexp |
//! | `cross_entropy.rs` | fused cross-entropy from logits and class indices |
//! | `dropout.rs` | dropout with a given key (Philox mask on the GPU); the layer and the key stream are in `nn/` |
//! | `index.rs` | gather, index_select, embedding (scatter-add backward) |
//! | `concat.rs` | concat, stack, split, chunk |
//! | `conv.rs` | conv2d, conv1d (stride, padding, dilation, groups) |
//! | `pool.rs` | max_pool2d, avg_pool2d, adaptive_avg_pool2d (gather backward, no atomics) |
//! | `attention.rs` | fused scaled dot-product attention (causal, key padding), fused backward |
//! | `batch_norm.rs` | fused batch_norm2d (per-channel statistics, running-statistics update) |
//! | `norm.rs` | fused layer_norm, rms_norm (and their composed references) |
//! | `rope.rs` | rotary position embedding with a position offset (composed) |
//! | `bias_gelu.rs` | GELU erf / tanh forms, bias + GELU |
//! | `nf4.rs` | QLoRA's NF4 frozen weight: fused dequantising linear, input gradient |
//! | `rnn.rs` | one RNN / LSTM / GRU layer over a sequence, fused gates, one graph node |

mod attention;
pub mod batch_norm;
pub mod bias_gelu;
mod concat;
mod conv;
mod cross_entropy;
pub mod dropout;
mod elementwise;
mod index;
mod linear;
pub mod lora;
mod matmul;
pub mod nf4;
pub mod norm;
mod pool;
mod reduce;
mod rnn;
pub mod rope;
mod softmax;

pub use attention::{AttentionOptions, attention_composed, scaled_dot_product_attention};
pub use conv::{Conv1dOptions, Conv2dOptions};
pub use cross_entropy::{IGNORE_INDEX, Reduction};
pub use rnn::{RnnCell, RnnLayerOutput, RnnLayerParams, rnn_cell_composed, rnn_layer};

use crate::error::{Result, shape_err};

/// True when shapes `a` and `b` have one rank and agree in every dim but `d` (concat's inputs,
/// gather's index and input).
fn same_but(a: &[usize], b: &[usize], d: usize) -> bool {
    a.len() == b.len() && (0..a.len()).all(|k| k == d || a[k] == b[k])
}

/// NumPy broadcasting of two shapes (right-aligned; each dim equal or 1).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for k in 0..r {
        let da = if k + a.len() >= r {
            a[k + a.len() - r]
        } else {
            1
        };
        let db = if k + b.len() >= r {
            b[k + b.len() - r]
        } else {
            1
        };
        out[k] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return shape_err(
                op,
                format!("shapes {a:?} and {b:?} do not broadcast (dim {k}: {da} vs {db})"),
            );
        };
    }
    Ok(out)
}
