//! Naive CPU twins of every kernel: the oracle for tests.
//!
//! Written for clarity, not speed, and generic over [`num_traits::Float`] so the gradient checks
//! can run them in f64. Each file mirrors one launcher family.

pub mod attention;
pub mod batch_norm;
pub mod bias_gelu;
pub mod cluster;
pub mod conv;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod index;
pub mod itemsets;
pub mod matmul;
pub mod nf4;
pub mod norm;
pub mod optim;
pub mod outlier;
pub mod pack16;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;

mod tolerance;
pub use tolerance::{Mismatch, Tolerance};

/// Gather a strided view into a contiguous row-major vector.
///
/// `data[offset + sum_k c_k * strides[k]]` for every coordinate `c` of `shape`, in row-major order.
pub fn gather_strided<T: Copy>(
    data: &[T],
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let o: usize = offset + idx.iter().zip(strides).map(|(c, s)| c * s).sum::<usize>();
        out.push(data[o]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}
