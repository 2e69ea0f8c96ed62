//! CPU twin of `reduce.wgsl`.

use num_traits::Float;

use crate::launch::reduce::ReduceOp;

/// Reduce each row of a contiguous (rows, len) matrix.
pub fn reduce_rows<T: Float>(op: ReduceOp, x: &[T], rows: usize, len: usize, scale: T) -> Vec<T> {
    (0..rows)
        .map(|r| {
            let row = &x[r * len..(r + 1) * len];
            match op {
                ReduceOp::Sum => row.iter().fold(T::zero(), |a, &b| a + b) * scale,
                ReduceOp::Max => row.iter().fold(T::neg_infinity(), |a, &b| a.max(b)),
                ReduceOp::Min => row.iter().fold(T::infinity(), |a, &b| a.min(b)),
            }
        })
        .collect()
}

/// Index of the first maximum (or minimum) of each row.
pub fn arg_rows<T: Float>(max: bool, x: &[T], rows: usize, len: usize) -> Vec<u32> {
    (0..rows)
        .map(|r| {
            let row = &x[r * len..(r + 1) * len];
            let mut bi = 0;
            for j in 1..len {
                let better = if max {
                    row[j] > row[bi]
                } else {
                    row[j] < row[bi]
                };
                if better {
                    bi = j;
                }
            }
            bi as u32
        })
        .collect()
}
