//! CPU twins of `softmax.wgsl` and `cross_entropy.wgsl`, on contiguous row-major data.
//!
//! Textbook two-pass forms (max first, then the sum), not the kernels' online pass, so a test
//! also checks that the online rescaling is right.

use num_traits::Float;

use crate::launch::softmax::SoftmaxMode;

/// `(shift, ln sum exp(x - shift))` of one row, with shift = max (0 for a row of only -inf, whose
/// log-sum-exp is then -inf and softmax 0/0 = NaN, as in PyTorch).
fn max_and_log_sum<T: Float>(row: &[T]) -> (T, T) {
    let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
    let m = if m == T::neg_infinity() { T::zero() } else { m };
    let s = row.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
    (m, s.ln())
}

/// Softmax, log-softmax or log-sum-exp of each row of a contiguous (rows, len) matrix.
/// Returns (rows, len) values, or (rows) for [`SoftmaxMode::LogSumExp`].
pub fn softmax_rows<T: Float>(mode: SoftmaxMode, x: &[T], rows: usize, len: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for r in 0..rows {
        let row = &x[r * len..(r + 1) * len];
        let (m, ls) = max_and_log_sum(row);
        match mode {
            SoftmaxMode::Softmax => out.extend(row.iter().map(|&v| (v - m - ls).exp())),
            SoftmaxMode::LogSoftmax => out.extend(row.iter().map(|&v| v - m - ls)),
            SoftmaxMode::LogSumExp => out.push(m + ls),
        }
    }
    out
}

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
