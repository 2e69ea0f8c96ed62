//! LayerNorm / RMSNorm (`norm.wgsl`): the fused forward and backward launchers against the f64
//! CPU twin at awkward sizes, with x and g at element offsets, and the refusal of rows past the
//! loop budget. The ops (composed fallback, gradient checks, modules) are the root crate's
//! `tests/ops/norm.rs`.

use crate::common::*;
use kiln_kernels::launch::norm::{self as nk, NormKind, RowNorm};
use kiln_kernels::reference::norm as cpu;

/// f32 row sums (mean, variance, dot products over D <= 257) in another order than f64.
const TOL: Tolerance = Tolerance::new(
    2e-4,
    2e-5,
    "f32 two-pass row statistics over D <= 257 vs f64",
);

const ROWS: [usize; 3] = [1, 7, 129];
const WIDTHS: [usize; 5] = [1, 7, 17, 129, 257];

/// Run the forward on (rows, d) with affine params, then the backward of `sum(y * g)`; compare
/// y, dx and dw (the column sums of the kernel's `g * xhat`) with the twin.
fn check_against_twin(kind: NormKind, rows: usize, d: usize) {
    let gpu = gpu();
    let s = seed(&format!("{kind:?}{rows}x{d}"));
    let x = rand_vec(rows * d, s, -2.0, 3.0);
    let w = rand_vec(d, s + 1, 0.5, 1.5);
    let b = rand_vec(d, s + 2, -0.5, 0.5);
    let g = rand_vec(rows * d, s + 3, -1.0, 1.0);
    let eps = 1e-5f32;
    let (xb, gb) = (Shifted::new(&gpu, &x), Shifted::new(&gpu, &g));
    let (wb, bb) = (upload(&gpu, &w), upload(&gpu, &b));
    let out = || upload(&gpu, &vec![f32::NAN; rows * d]);
    let (y, stats, dx, gxh) = (out(), upload(&gpu, &vec![0.0; 2 * rows]), out(), out());
    let sh = RowNorm { kind, rows, d, eps };
    nk::forward(&gpu, sh, xb.operand(), &wb, &bb, &y, &stats).unwrap();
    let (d_in, g_in) = (xb.operand(), gb.operand());
    nk::backward(&gpu, sh, d_in, &wb, g_in, &stats, &dx, &gxh).unwrap();

    let (want_y, _) = cpu::norm_forward(kind, d, &f64s(&x), &f64s(&w), &f64s(&b), eps as f64);
    let what = format!("{kind:?} rows {rows} d {d}");
    // d = 1 LayerNorm: x - mean = 0 exactly, y = b.
    TOL.assert_close(&format!("{what} y"), &read(&gpu, &y, rows * d), &want_y);
    let (want_dx, want_dw, _) =
        cpu::norm_backward(kind, d, &f64s(&x), &f64s(&w), &f64s(&g), eps as f64);
    // dx involves a difference of O(1) terms scaled by rstd; with d = 1 and eps tiny rstd is
    // huge for RMSNorm, so compare with an absolute floor relative to rstd.
    let dx_tol = Tolerance::new(5e-4, 5e-5, "f32 dx = rstd (gw - means), cancellation");
    dx_tol.assert_close(&format!("{what} dx"), &read(&gpu, &dx, rows * d), &want_dx);
    let gxh = read(&gpu, &gxh, rows * d);
    let dw: Vec<f32> = (0..d)
        .map(|j| (0..rows).map(|r| gxh[r * d + j] as f64).sum::<f64>() as f32)
        .collect();
    TOL.assert_close(&format!("{what} dw"), &dw, &want_dw);
}

#[test]
fn layer_norm_matches_twin_at_awkward_sizes() {
    for rows in ROWS {
        for d in WIDTHS {
            check_against_twin(NormKind::LayerNorm, rows, d);
        }
    }
}

#[test]
fn rms_norm_matches_twin_at_awkward_sizes() {
    for rows in ROWS {
        for d in WIDTHS {
            check_against_twin(NormKind::RmsNorm, rows, d);
        }
    }
}

/// Rows longer than the fused kernel's loop budget (`MAX_D`) are refused by the launcher rather
/// than truncated silently (the op takes the composed path for them).
#[test]
fn launcher_refuses_rows_past_the_loop_limit() {
    let (rows, d) = (2usize, nk::MAX_D + 3);
    let g = gpu();
    let buf = |n: usize| g.alloc(n as u64 * 4, "test").unwrap();
    let (xb, wb, yb, sb) = (buf(rows * d), buf(d), buf(rows * d), buf(2 * rows));
    let x = kiln_kernels::Operand::whole(&xb);
    let kind = NormKind::LayerNorm;
    let sh = RowNorm {
        kind,
        rows,
        d,
        eps: 1e-5,
    };
    let err = nk::forward(&g, sh, x, &wb, &wb, &yb, &sb);
    assert!(err.is_err(), "launcher must refuse D > MAX_D");
}
