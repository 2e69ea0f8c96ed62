//! The unary cases both crates' tests use (the root crate's `tests/ops/elementwise.rs` includes
//! this file by path): every `unary.wgsl` function with its parameters and the input domain where
//! it is smooth and defined.
#![allow(dead_code)] // each including crate uses a part

use crate::common::{rand_signed_away_from_zero, rand_vec};
use kiln_kernels::launch::elementwise::{BinaryOp, UnaryOp};

/// Input domain where each unary op is smooth and defined: (lo, hi, signed away from zero).
fn domain(op: UnaryOp) -> (f32, f32, bool) {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => (0.1, 4.0, false),
        UnaryOp::Recip | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign => (0.05, 3.0, true),
        UnaryOp::Clamp => (0.05, 3.0, true),
        UnaryOp::Pow => (0.2, 2.0, false),
        _ => (-3.0, 3.0, false),
    }
}

/// Every unary function with its (alpha, beta): the parameters of clamp, pow and affine, zeros
/// for the others.
pub fn unary_cases() -> impl Iterator<Item = (UnaryOp, f32, f32)> {
    UnaryOp::ALL.into_iter().map(|op| {
        let (a, b) = match op {
            UnaryOp::Clamp => (-1.0, 1.5),
            UnaryOp::Pow => (2.5, 0.0),
            UnaryOp::Affine => (-1.5, 0.25),
            _ => (0.0, 0.0),
        };
        (op, a, b)
    })
}

/// `n` seeded inputs in the domain of `op`.
pub fn inputs_for(op: UnaryOp, n: usize, seed: u64) -> Vec<f32> {
    let (lo, hi, signed) = domain(op);
    if signed {
        rand_signed_away_from_zero(n, seed, lo, hi)
    } else {
        rand_vec(n, seed, lo, hi)
    }
}

/// Every binary function but `Axpy`: the arithmetic ones first (the differentiable seven), then
/// the comparisons.
pub fn binary_ops() -> &'static [BinaryOp] {
    &BinaryOp::ALL[..13]
}
