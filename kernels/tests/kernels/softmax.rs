//! Softmax, log_softmax and logsumexp kernels: both strategies against the CPU twins at awkward
//! sizes (contiguous and strided) and rows past lavapipe's loop limit. The fused ops against
//! their compositions and gradient checks are the root crate's tests/ops/softmax.rs.

use crate::common::*;
use kiln_kernels::launch::reduce::{ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode, Vector};
use kiln_kernels::reference::softmax as cpu;

const MODES: [SoftmaxMode; 3] = [
    SoftmaxMode::Softmax,
    SoftmaxMode::LogSoftmax,
    SoftmaxMode::LogSumExp,
];
pub const STRATEGIES: [ReduceStrategy; 2] = [ReduceStrategy::Serial, ReduceStrategy::Workgroup];

/// f32 results of exp/log over a row reduction, against f64: a few ulp from exp/log plus the
/// reordered sum; absolute floor for log-softmax values near 0 and tiny probabilities.
pub const TOL: Tolerance = Tolerance::new(
    3e-4,
    3e-6,
    "f32 exp/log (few ulp) over an f32 sum in another order",
);

#[test]
fn softmax_kernels_match_cpu_in_both_strategies() {
    let g = gpu();
    for &rows in &[1usize, 7, 17, 129] {
        for &len in &[1usize, 7, 17, 65, 129, 257, 1000] {
            let x = rand_vec(rows * len, seed(&format!("sm{rows}x{len}")), -6.0, 6.0);
            let x64 = f64s(&x);
            // The same matrix stored transposed (len, rows) after a 3-element gap, read with
            // strides: exercises offset, row_stride and col_stride.
            let mut xt = vec![7.0f32; 3 + rows * len];
            for r in 0..rows {
                for j in 0..len {
                    xt[3 + j * rows + r] = x[r * len + j];
                }
            }
            let (xc, xs) = (upload(&g, &x), upload(&g, &xt));
            let views = [
                Rows::contiguous(&xc, rows, len),
                Rows {
                    buf: &xs,
                    offset: 3,
                    rows,
                    len,
                    row_stride: 1,
                    col_stride: rows,
                },
            ];
            for mode in MODES {
                let want = cpu::softmax_rows(mode, &x64, rows, len);
                for strategy in STRATEGIES {
                    for (v, view) in views.iter().enumerate() {
                        // Write after a 5-element gap to check out_offset.
                        let out = g.alloc(((5 + want.len()) * 4) as u64, "out").unwrap();
                        sk::softmax_rows(&g, mode, strategy, *view, &out, 5).unwrap();
                        let got = read(&g, &out, 5 + want.len());
                        let what = format!("{mode:?} {strategy:?} view {v} ({rows}, {len})");
                        TOL.assert_close(&what, &got[5..], &want);
                    }
                }
            }
        }
    }
}

/// Mesa's lavapipe ends an invocation's loops after 65,535 iterations in total: the kernels read 4
/// elements per iteration, Auto gives over-long rows a workgroup, and a forced Serial is refused.
#[test]
fn softmax_kernels_handle_rows_longer_than_65535() {
    let g = gpu();
    let (rows, len) = (2usize, 70_001usize);
    let x = rand_vec(rows * len, seed("long rows"), -3.0, 3.0);
    let x64 = f64s(&x);
    let xt = upload(&g, &x);
    let view = Rows::contiguous(&xt, rows, len);
    for strategy in STRATEGIES {
        for mode in [SoftmaxMode::LogSoftmax, SoftmaxMode::LogSumExp] {
            let want = cpu::softmax_rows(mode, &x64, rows, len);
            let out = g.alloc((want.len() * 4) as u64, "out").unwrap();
            sk::softmax_rows(&g, mode, strategy, view, &out, 0).unwrap();
            let got = read(&g, &out, want.len());
            TOL.assert_close(
                &format!("{mode:?} {strategy:?} ({rows}, {len})"),
                &got,
                &want,
            );
        }
    }
    let t: Vec<u32> = vec![3, 70_000];
    let tt = upload_u32(&g, &t);
    let (want_loss, _) = kiln_kernels::reference::cross_entropy::cross_entropy(&x64, &t, rows, len);
    for strategy in STRATEGIES {
        let (loss, lse) = (g.alloc(8, "loss").unwrap(), g.alloc(8, "lse").unwrap());
        let tv = Vector {
            buf: &tt,
            offset: 0,
            stride: 1,
        };
        kiln_kernels::launch::cross_entropy::cross_entropy_forward(
            &g, strategy, view, tv, &loss, &lse,
        )
        .unwrap();
        TOL.assert_close(
            &format!("cross-entropy {strategy:?}"),
            &read(&g, &loss, 2),
            &want_loss,
        );
    }
    // Rows longer than one invocation may walk: Serial is refused, Auto takes a workgroup per row.
    let (rows, len) = (3usize, sk::MAX_PER_INVOCATION + 3);
    let x = rand_vec(rows * len, seed("longer rows"), -3.0, 3.0);
    let xt = upload(&g, &x);
    let view = Rows::contiguous(&xt, rows, len);
    let out = g.alloc((rows * 4) as u64, "out").unwrap();
    let e = sk::softmax_rows(
        &g,
        SoftmaxMode::LogSumExp,
        ReduceStrategy::Serial,
        view,
        &out,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
    sk::softmax_rows(
        &g,
        SoftmaxMode::LogSumExp,
        ReduceStrategy::Auto,
        view,
        &out,
        0,
    )
    .unwrap();
    let want = cpu::softmax_rows(SoftmaxMode::LogSumExp, &f64s(&x), rows, len);
    TOL.assert_close("logsumexp of 3 long rows", &read(&g, &out, rows), &want);
}
