//! CPU twin of `softmax.wgsl`, on contiguous row-major data (cross-entropy, built on it:
//! [`crate::reference::cross_entropy`]).
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
