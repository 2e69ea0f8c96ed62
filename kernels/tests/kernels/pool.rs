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
use std::sync::Arc;

/// A fresh buffer of `n` NaNs (an output the kernel must overwrite).
fn garbage(g: &Gpu, n: usize) -> GpuBuffer {
    upload(g, &vec![f32::NAN; n])
}

/// One case on the device: its shape, seeded input `xs` and output gradient `gs`, each behind
/// three sentinels (`x`, `gt`).
struct Run {
    g: Arc<Gpu>,
    s: pk::PoolShape,
    xs: Vec<f32>,
    x: Shifted,
    gs: Vec<f32>,
    gt: Shifted,
}

impl Run {
    /// Case `k` of shape `s`, its data seeded from `tag`.
    fn new(s: pk::PoolShape, tag: &str, k: usize) -> Run {
        let g = gpu();
        let draw = |n: usize, what: &str, lo: f32| {
            rand_vec(n, seed(&format!("{tag} {what}")) + k as u64, lo, -lo)
        };
        let (xs, gs) = (
            draw(s.input_len(), "x", -2.0),
            draw(s.output_len(), "g", -1.0),
        );
        let (x, gt) = (Shifted::new(&g, &xs), Shifted::new(&g, &gs));
        Run {
            g,
            s,
            xs,
            x,
            gs,
            gt,
        }
    }

    /// Fresh (output, argmax) buffers of the output's size: NaN and u32::MAX.
    fn outputs(&self) -> (GpuBuffer, GpuBuffer) {
        let n = self.s.output_len();
        (garbage(&self.g, n), upload_u32(&self.g, &vec![u32::MAX; n]))
    }

    /// A fresh input-gradient buffer of NaNs.
    fn grad_input(&self) -> GpuBuffer {
        garbage(&self.g, self.s.input_len())
    }

    /// Compare an output (`forward`) or input gradient read back from `buf` with `want`.
    fn check<T: Into<f64> + Copy>(
        &self,
        tol: Tolerance,
        what: &str,
        forward: bool,
        buf: &GpuBuffer,
        want: &[T],
    ) {
        let n = if forward {
            self.s.output_len()
        } else {
            self.s.input_len()
        };
        tol.assert_close(what, &read(&self.g, buf, n), want);
    }

    /// Compare an argmax buffer with the twin's.
    fn check_argmax(&self, what: &str, buf: &GpuBuffer, want: &[u32]) {
        let got: Vec<u32> = read_at(&self.g, buf, 0, self.s.output_len());
        assert_eq!(got, want, "argmax {what}");
    }
}

#[test]
fn max_pool_kernels_match_cpu_twin() {
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let r = Run::new(s, "max", k);
        let (y, arg) = r.outputs();
        pk::max_pool2d(&r.g, s, win, r.x.operand(), &y, &arg).unwrap();
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &r.xs);
        let what = format!("max_pool2d {case:?}");
        r.check(MAX_EXACT, &what, true, &y, &want_y);
        r.check_argmax(&what, &arg, &want_arg);

        let gx = r.grad_input();
        pk::max_pool2d_backward(&r.g, s, win, r.gt.operand(), &arg, &gx).unwrap();
        let want = cpu::max_pool2d_backward(s, &r.gs, &want_arg);
        r.check(WINDOW_SUM, &format!("{what} backward"), false, &gx, &want);
    }
}

/// Windows that tile the input (stride = kernel, no padding): the tiled entries against the
/// CPU twin and the generic entries. The third case drops a row and a column (forward tiled,
/// backward generic); the last has more planes than one grid dimension holds.
const TILED: &[Case] = &[
    tiling(1, 1, 2, 2, (2, 2)),
    tiling(3, 5, 14, 18, (2, 2)),
    tiling(2, 3, 13, 17, (2, 2)),
    tiling(1, 7, 9, 12, (3, 4)),
    tiling(3, 1, 17, 7, (1, 7)),
    tiling(17, 7, 129, 2, (1, 1)),
    tiling(70_001, 1, 2, 4, (2, 2)),
];

/// (N, C, H, W) pooled by windows of `kernel` that tile it: stride = kernel, no padding.
const fn tiling(n: usize, c: usize, h: usize, w: usize, kernel: (usize, usize)) -> Case {
    (n, c, h, w, kernel, kernel, (0, 0))
}

#[test]
fn tiled_max_pool_matches_generic_and_cpu_twin() {
    for (k, case) in TILED.iter().enumerate() {
        let (s, win) = window(case);
        assert!(pk::tiles_forward(s, win), "{case:?} tiles");
        let r = Run::new(s, "tiled", k);
        let (g, x, gt) = (&r.g, r.x.operand(), r.gt.operand());
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &r.xs);
        let want_gx = cpu::max_pool2d_backward(s, &r.gs, &want_arg);
        for tiled in [false, true] {
            let (y, ab) = r.outputs();
            if tiled {
                pk::max_pool2d_tiled(g, s, win, x, &y, &ab).unwrap();
            } else {
                pk::max_pool2d_generic(g, s, win, x, &y, &ab).unwrap();
            }
            let what = format!("max_pool2d tiled={tiled} {case:?}");
            r.check(MAX_EXACT, &what, true, &y, &want_y);
            r.check_argmax(&what, &ab, &want_arg);
            let gxb = r.grad_input();
            if tiled && pk::tiles_backward(s, win) {
                pk::max_pool2d_backward_tiled(g, s, win, gt, &ab, &gxb).unwrap();
            } else if tiled {
                let e = pk::max_pool2d_backward_tiled(g, s, win, gt, &ab, &gxb);
                assert!(
                    e.is_err(),
                    "{what}: a window that drops input must be refused"
                );
                pk::max_pool2d_backward(g, s, win, gt, &ab, &gxb).unwrap();
            } else {
                pk::max_pool2d_backward_generic(g, s, win, gt, &ab, &gxb).unwrap();
            }
            r.check(
                WINDOW_SUM,
                &format!("{what} backward"),
                false,
                &gxb,
                &want_gx,
            );
        }
    }
    let g = gpu();
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
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let r = Run::new(s, "avg", k);
        let (y, gx) = (r.outputs().0, r.grad_input());
        pk::avg_pool2d(&r.g, s, win, r.x.operand(), &y).unwrap();
        pk::avg_pool2d_backward(&r.g, s, win, r.gt.operand(), &gx).unwrap();
        let what = format!("avg_pool2d {case:?}");
        r.check(WINDOW_SUM, &what, true, &y, &cpu::avg_pool2d(s, win, &r.xs));
        let want = cpu::avg_pool2d_backward(s, win, &r.gs);
        r.check(WINDOW_SUM, &format!("{what} backward"), false, &gx, &want);
    }
}

#[test]
fn adaptive_kernels_match_cpu_twin() {
    for (k, case) in ADAPTIVE.iter().enumerate() {
        let s = adaptive_shape(case);
        let r = Run::new(s, "ada", k);
        let (y, gx) = (r.outputs().0, r.grad_input());
        pk::adaptive_avg_pool2d(&r.g, s, r.x.operand(), &y).unwrap();
        pk::adaptive_avg_pool2d_backward(&r.g, s, r.gt.operand(), &gx).unwrap();
        let what = format!("adaptive {s:?}");
        r.check(
            WINDOW_SUM,
            &what,
            true,
            &y,
            &cpu::adaptive_avg_pool2d(s, &r.xs),
        );
        let want = cpu::adaptive_avg_pool2d_backward(s, &r.gs);
        r.check(WINDOW_SUM, &format!("{what} backward"), false, &gx, &want);
    }
    // PyTorch's windows for 5 -> 2: rows 0..3 and 2..5 (they overlap on row 2).
    assert_eq!(pk::adaptive_window(0, 5, 2), (0, 3));
    assert_eq!(pk::adaptive_window(1, 5, 2), (2, 5));
    assert_eq!(pk::adaptive_window(2, 7, 3), (4, 7));
}
