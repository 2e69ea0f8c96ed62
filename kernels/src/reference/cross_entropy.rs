//! CPU twin of `cross_entropy.wgsl`, on contiguous row-major data: the loss from the row's
//! log-sum-exp ([`crate::reference::softmax`]) and the gradient `softmax(x) - onehot(t)`.

use num_traits::Float;

use crate::launch::softmax::SoftmaxMode;
use crate::reference::softmax::softmax_rows;

/// Cross-entropy forward of logits (rows, classes) and targets (rows): returns `(loss, lse)`,
/// both (rows), with `loss[r] = lse[r] - x[r, t[r]]`; NaN where `t[r] >= classes`.
pub fn cross_entropy<T: Float>(
    x: &[T],
    targets: &[u32],
    rows: usize,
    classes: usize,
) -> (Vec<T>, Vec<T>) {
    let lse = softmax_rows(SoftmaxMode::LogSumExp, x, rows, classes);
    let loss = (0..rows)
        .map(|r| {
            let t = targets[r] as usize;
            if t < classes {
                lse[r] - x[r * classes + t]
            } else {
                T::nan()
            }
        })
        .collect();
    (loss, lse)
}

/// Cross-entropy backward: `dx[r, j] = (exp(x[r, j] - lse[r]) - [j == t[r]]) * g[r] * scale`,
/// (rows, classes); row `r` is NaN where `t[r] >= classes`.
pub fn cross_entropy_backward<T: Float>(
    x: &[T],
    targets: &[u32],
    lse: &[T],
    g: &[T],
    scale: T,
    rows: usize,
    classes: usize,
) -> Vec<T> {
    let mut dx = Vec::with_capacity(rows * classes);
    for r in 0..rows {
        let t = targets[r] as usize;
        for j in 0..classes {
            dx.push(if t < classes {
                let onehot = if j == t { T::one() } else { T::zero() };
                ((x[r * classes + j] - lse[r]).exp() - onehot) * g[r] * scale
            } else {
                T::nan()
            });
        }
    }
    dx
}
