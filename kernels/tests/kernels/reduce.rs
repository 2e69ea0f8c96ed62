//! Row reductions (sum, max, min, arg max / min): both kernel strategies against the CPU twin at
//! awkward sizes. The ops over any axes and their gradients are the root crate's tests/ops/reduce.rs.

use crate::common::*;
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::reference::reduce as cpu;

#[test]
fn reduce_kernels_match_cpu_in_both_strategies() {
    let g = gpu();
    for &rows in &[1usize, 7, 129] {
        for &len in &[1usize, 17, 257, 1000] {
            let x = rand_vec(rows * len, seed(&format!("r{rows}x{len}")), -4.0, 4.0);
            let xt = upload(&g, &x);
            for strategy in [ReduceStrategy::Serial, ReduceStrategy::Workgroup] {
                for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
                    let out = g.alloc((rows * 4) as u64, "out").unwrap();
                    let view = Rows::contiguous(&xt, rows, len);
                    rk::reduce_rows(&g, op, strategy, view, &out, 0, 0.5).unwrap();
                    let got: Vec<f32> =
                        bytemuck::cast_slice(&g.read(&out, 0, rows as u64 * 4).unwrap()).to_vec();
                    let scale = if op == ReduceOp::Sum { 0.5 } else { 1.0 };
                    let want = cpu::reduce_rows::<f64>(
                        op,
                        &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                        rows,
                        len,
                        scale,
                    );
                    Tolerance::F32_REDUCTION.assert_close(
                        &format!("{op:?} {strategy:?} ({rows},{len})"),
                        &got,
                        &want,
                    );
                }
                for max in [true, false] {
                    let out = g.alloc((rows * 4) as u64, "idx").unwrap();
                    let view = Rows::contiguous(&xt, rows, len);
                    rk::arg_rows(&g, max, strategy, view, &out, 0).unwrap();
                    let got: Vec<u32> =
                        bytemuck::cast_slice(&g.read(&out, 0, rows as u64 * 4).unwrap()).to_vec();
                    assert_eq!(
                        got,
                        cpu::arg_rows(max, &x, rows, len),
                        "arg max={max} {strategy:?} ({rows},{len})"
                    );
                }
            }
        }
    }
}
