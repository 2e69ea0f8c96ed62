//! Pooling (`pool.wgsl`): the max, average and adaptive kernels, forward and backward, against
//! their CPU twins at awkward shapes (overlapping, gapped and padded windows, adaptive windows
//! that do not divide the input, sources at an offset), and the tiled max-pool entries against
//! the generic ones. Outputs start as NaN, so an element a kernel forgets to write shows up.
//! The ops, their gradient checks and the layers are the root crate's `tests/ops/pool.rs`.

mod cases;

use crate::common::*;
use cases::*;
use kiln_kernels::launch::pool as pk;
use kiln_kernels::reference::pool as cpu;
use kiln_kernels::{Gpu, GpuBuffer};

/// A fresh buffer of `n` NaNs (an output the kernel must overwrite).
fn garbage(g: &Gpu, n: usize) -> GpuBuffer {
    upload(g, &vec![f32::NAN; n])
}

/// A fresh argmax buffer of `n` u32::MAX.
fn no_argmax(g: &Gpu, n: usize) -> GpuBuffer {
    upload_u32(g, &vec![u32::MAX; n])
}

/// Seeded input and output gradient of case `k` (tag `tag`), each behind three sentinels.
fn inputs(
    g: &Gpu,
    s: pk::PoolShape,
    tag: &str,
    k: usize,
) -> (Vec<f32>, Shifted, Vec<f32>, Shifted) {
    let xs = rand_vec(
        s.input_len(),
        seed(&format!("{tag} x")) + k as u64,
        -2.0,
        2.0,
    );
    let gs = rand_vec(
        s.output_len(),
        seed(&format!("{tag} g")) + k as u64,
        -1.0,
        1.0,
    );
    let (x, gt) = (Shifted::new(g, &xs), Shifted::new(g, &gs));
    (xs, x, gs, gt)
}

#[test]
fn max_pool_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let (xs, x, gs, gt) = inputs(&g, s, "max", k);
        let (y, arg) = (garbage(&g, s.output_len()), no_argmax(&g, s.output_len()));
        pk::max_pool2d(&g, s, win, x.operand(), &y, &arg).unwrap();
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &xs);
        let got_y = read(&g, &y, s.output_len());
        MAX_EXACT.assert_close(&format!("max_pool2d {case:?}"), &got_y, &want_y);
        let got_arg: Vec<u32> = read_at(&g, &arg, 0, s.output_len());
        assert_eq!(got_arg, want_arg, "argmax {case:?}");

        let gx = garbage(&g, s.input_len());
        pk::max_pool2d_backward(&g, s, win, gt.operand(), &arg, &gx).unwrap();
        let want = cpu::max_pool2d_backward(s, &gs, &want_arg);
        let got = read(&g, &gx, s.input_len());
        WINDOW_SUM.assert_close(&format!("max_pool2d backward {case:?}"), &got, &want);
    }
}

/// Windows that tile the input (stride = kernel, no padding): the tiled entries against the
/// CPU twin and the generic entries. The third case drops a row and a column (forward tiled,
/// backward generic); the last has more planes than one grid dimension holds.
const TILED: &[Case] = &[
    (1, 1, 2, 2, (2, 2), (2, 2), (0, 0)),
    (3, 5, 14, 18, (2, 2), (2, 2), (0, 0)),
    (2, 3, 13, 17, (2, 2), (2, 2), (0, 0)),
    (1, 7, 9, 12, (3, 4), (3, 4), (0, 0)),
    (3, 1, 17, 7, (1, 7), (1, 7), (0, 0)),
    (17, 7, 129, 2, (1, 1), (1, 1), (0, 0)),
    (70_001, 1, 2, 4, (2, 2), (2, 2), (0, 0)),
];

#[test]
fn tiled_max_pool_matches_generic_and_cpu_twin() {
    let g = gpu();
    for (k, case) in TILED.iter().enumerate() {
        let (s, win) = window(case);
        assert!(pk::tiles_forward(s, win), "{case:?} tiles");
        let (xs, x, gs, gt) = inputs(&g, s, "tiled", k);
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &xs);
        let want_gx = cpu::max_pool2d_backward(s, &gs, &want_arg);
        for tiled in [false, true] {
            let (y, ab) = (garbage(&g, s.output_len()), no_argmax(&g, s.output_len()));
            if tiled {
                pk::max_pool2d_tiled(&g, s, win, x.operand(), &y, &ab).unwrap();
            } else {
                pk::max_pool2d_generic(&g, s, win, x.operand(), &y, &ab).unwrap();
            }
            let what = format!("max_pool2d tiled={tiled} {case:?}");
            MAX_EXACT.assert_close(&what, &read(&g, &y, s.output_len()), &want_y);
            let got_arg: Vec<u32> = read_at(&g, &ab, 0, s.output_len());
            assert_eq!(got_arg, want_arg, "argmax {what}");
            let gxb = garbage(&g, s.input_len());
            if tiled && pk::tiles_backward(s, win) {
                pk::max_pool2d_backward_tiled(&g, s, win, gt.operand(), &ab, &gxb).unwrap();
            } else if tiled {
                let e = pk::max_pool2d_backward_tiled(&g, s, win, gt.operand(), &ab, &gxb);
                assert!(
                    e.is_err(),
                    "{what}: a window that drops input must be refused"
                );
                pk::max_pool2d_backward(&g, s, win, gt.operand(), &ab, &gxb).unwrap();
            } else {
                pk::max_pool2d_backward_generic(&g, s, win, gt.operand(), &ab, &gxb).unwrap();
            }
            let got = read(&g, &gxb, s.input_len());
            WINDOW_SUM.assert_close(&format!("{what} backward"), &got, &want_gx);
        }
    }
    // An overlapping window is refused by the tiled entry.
    let (s, win) = window(&CASES[1]);
    assert!(!pk::tiles_forward(s, win));
    let x = garbage(&g, s.input_len());
    let y = garbage(&g, s.output_len());
    let x = kiln_kernels::Operand::whole(&x);
    assert!(pk::max_pool2d_tiled(&g, s, win, x, &y, &y).is_err());
}

#[test]
fn avg_pool_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let (xs, x, gs, gt) = inputs(&g, s, "avg", k);
        let y = garbage(&g, s.output_len());
        pk::avg_pool2d(&g, s, win, x.operand(), &y).unwrap();
        let want = cpu::avg_pool2d(s, win, &xs);
        let got = read(&g, &y, s.output_len());
        WINDOW_SUM.assert_close(&format!("avg_pool2d {case:?}"), &got, &want);

        let gx = garbage(&g, s.input_len());
        pk::avg_pool2d_backward(&g, s, win, gt.operand(), &gx).unwrap();
        let want = cpu::avg_pool2d_backward(s, win, &gs);
        let got = read(&g, &gx, s.input_len());
        WINDOW_SUM.assert_close(&format!("avg_pool2d backward {case:?}"), &got, &want);
    }
}

#[test]
fn adaptive_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, case) in ADAPTIVE.iter().enumerate() {
        let s = adaptive_shape(case);
        let (xs, x, gs, gt) = inputs(&g, s, "ada", k);
        let y = garbage(&g, s.output_len());
        pk::adaptive_avg_pool2d(&g, s, x.operand(), &y).unwrap();
        let want = cpu::adaptive_avg_pool2d(s, &xs);
        let got = read(&g, &y, s.output_len());
        WINDOW_SUM.assert_close(&format!("adaptive {s:?}"), &got, &want);

        let gx = garbage(&g, s.input_len());
        pk::adaptive_avg_pool2d_backward(&g, s, gt.operand(), &gx).unwrap();
        let want = cpu::adaptive_avg_pool2d_backward(s, &gs);
        let got = read(&g, &gx, s.input_len());
        WINDOW_SUM.assert_close(&format!("adaptive backward {s:?}"), &got, &want);
    }
    // PyTorch's windows for 5 -> 2: rows 0..3 and 2..5 (they overlap on row 2).
    assert_eq!(pk::adaptive_window(0, 5, 2), (0, 3));
    assert_eq!(pk::adaptive_window(1, 5, 2), (2, 5));
    assert_eq!(pk::adaptive_window(2, 7, 3), (4, 7));
}
