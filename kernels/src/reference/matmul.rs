//! CPU twin of the matmul kernels (`shaders/matmul/*.wgsl`): a plain triple loop over strided
//! operands, accumulating in `T` in order p = 0, 1, ..., K-1.

use num_traits::Float;

use crate::launch::matmul::{MatLayout, MatmulDims};

/// `C[z, i, j] = sum_p A[z, i, p] * B[z, p, j]`, returned row-major as (batch, M, N).
///
/// `a` is read through `la` as (batch, M, K) and `b` through `lb` as (batch, K, N), exactly as
/// the kernels read them (batch stride 0 = broadcast, swapped strides = transposed).
pub fn matmul<T: Float>(
    a: &[T],
    la: MatLayout,
    b: &[T],
    lb: MatLayout,
    dims: MatmulDims,
) -> Vec<T> {
    let MatmulDims { batch, m, n, k } = dims;
    let mut c = Vec::with_capacity(batch * m * n);
    for z in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::zero();
                for p in 0..k {
                    let x =
                        a[la.offset + z * la.batch_stride + i * la.row_stride + p * la.col_stride];
                    let y =
                        b[lb.offset + z * lb.batch_stride + p * lb.row_stride + j * lb.col_stride];
                    acc = acc + x * y;
                }
                c.push(acc);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_and_transpose() {
        // [[1, 2, 3], [4, 5, 6]] @ [[1, 0], [0, 1], [1, 1]] = [[4, 5], [10, 11]]
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, 0.0, 0.0, 1.0, 1.0, 1.0];
        let dims = MatmulDims {
            batch: 1,
            m: 2,
            n: 2,
            k: 3,
        };
        let c = matmul(
            &a,
            MatLayout::contiguous(2, 3),
            &b,
            MatLayout::contiguous(3, 2),
            dims,
        );
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        // A^T @ A with A stored (2, 3): read it as a (3, 2) transposed view.
        let dims = MatmulDims {
            batch: 2,
            m: 3,
            n: 3,
            k: 2,
        };
        let at = MatLayout::transposed(3, 2).broadcast();
        let c = matmul(&a, at, &a, MatLayout::contiguous(2, 3).broadcast(), dims);
        assert_eq!(&c[..3], &[17.0, 22.0, 27.0]);
        assert_eq!(&c[..9], &c[9..]);
    }
}
