//! The optimizer kernels (`optim.wgsl`: SGD, Adam / AdamW and the vec4 Adam entry) against their
//! CPU twin at awkward sizes, at non-zero offsets inside larger buffers; the launchers' operand
//! checks. SGD / Adam over several steps, schedules and clipping are the root crate's
//! tests/ops/optim.rs.
//!
//! The vec4 entry (`adam4`, 4 elements per invocation) is checked at sizes that are multiples of
//! 4 but of no workgroup, at aligned non-zero offsets, plus the sizes and offsets that must fall
//! back to the scalar entry.

use crate::common::*;
use kiln_kernels::launch::optim::{self as k, AdamStep, SgdStep};
use kiln_kernels::reference::optim as twin;

/// Adam (AdamW when `decoupled`) at lr 0.01, betas (0.9, 0.999), weight decay 0.05, step `step`.
fn adam_step(decoupled: bool, step: u64) -> AdamStep {
    let (bc1, bc2) = AdamStep::bias_corrections(0.9, 0.999, step);
    AdamStep {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
        decoupled,
        bc1,
        bc2,
    }
}

/// `n` seeded parameters, gradients (away from zero), first-moment (or momentum) and positive
/// second-moment states.
fn draws(n: usize, s: u64) -> [Vec<f32>; 4] {
    [
        rand_vec(n, s, -1.0, 1.0),
        rand_signed_away_from_zero(n, s + 1, 0.05, 1.0),
        rand_vec(n, s + 2, -0.5, 0.5),
        rand_vec(n, s + 3, 0.01, 0.5),
    ]
}

#[test]
fn kernels_match_cpu_twin_at_awkward_sizes() {
    let g = gpu();
    for &n in &[1usize, 7, 17, 129, 257, 1031, 70_001] {
        let s = seed(&format!("twin{n}"));
        let [p0, gr, st0, sq0] = draws(n, s);
        // Operands at non-zero offsets inside larger buffers, to exercise the offsets.
        let at = |data: &[f32], pad: usize| {
            Shifted::between(&g, &rand_vec(pad, s + 9, -1.0, 1.0), data, &[])
        };
        let sgd_cases = [
            SgdStep {
                lr: 0.05,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            SgdStep {
                lr: 0.05,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.1,
            },
            SgdStep {
                lr: 0.05,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.01,
            },
            SgdStep {
                lr: 0.05,
                momentum: 0.8,
                nesterov: true,
                weight_decay: 0.01,
            },
        ];
        for h in sgd_cases {
            let p = at(&p0, 3);
            let gt = at(&gr, 5);
            let b = at(&st0, 1);
            let with_buf = h.momentum != 0.0;
            k::sgd(
                &g,
                &h,
                n,
                p.operand(),
                gt.operand(),
                with_buf.then(|| b.operand()),
            )
            .unwrap();
            let mut wp = f64s(&p0);
            let mut wb = f64s(&st0);
            twin::sgd(&h, &mut wp, &f64s(&gr), with_buf.then_some(&mut wb[..]));
            let what = format!("sgd {h:?} n={n}");
            Tolerance::F32_ELEMENTWISE.assert_close(&what, &p.read(&g), &wp);
            if with_buf {
                Tolerance::F32_ELEMENTWISE.assert_close(&format!("{what} buf"), &b.read(&g), &wb);
            }
        }
        for decoupled in [false, true] {
            let h = adam_step(decoupled, 3);
            let p = at(&p0, 2);
            let gt = at(&gr, 7);
            let m = at(&st0, 0);
            let v = at(&sq0, 4);
            k::adam(
                &g,
                &h,
                n,
                p.operand(),
                gt.operand(),
                m.operand(),
                v.operand(),
            )
            .unwrap();
            let (mut wp, mut wm, mut wv) = (f64s(&p0), f64s(&st0), f64s(&sq0));
            twin::adam(&h, &mut wp, &f64s(&gr), &mut wm, &mut wv);
            let what = format!("adam decoupled={decoupled} n={n}");
            // p goes through sqrt and a division; the moments are plain arithmetic.
            Tolerance::F32_TRANSCENDENTAL.assert_close(&what, &p.read(&g), &wp);
            let tol = Tolerance::F32_ELEMENTWISE;
            tol.assert_close(&format!("{what} exp_avg"), &m.read(&g), &wm);
            tol.assert_close(&format!("{what} exp_avg_sq"), &v.read(&g), &wv);
        }
    }
}

#[test]
fn kernel_launchers_refuse_bad_operands() {
    let g = gpu();
    let p = Shifted::between(&g, &[], &rand_vec(8, 1, -1.0, 1.0), &[]);
    let gr = Shifted::between(&g, &[], &rand_vec(8, 2, -1.0, 1.0), &[]);
    let h = SgdStep {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    // Momentum without a buffer.
    let e = err_text(k::sgd(&g, &h, 8, p.operand(), gr.operand(), None));
    assert!(e.contains("momentum buffer"), "{e}");
    // The same buffer as parameter and gradient.
    let h0 = SgdStep { momentum: 0.0, ..h };
    let e = err_text(k::sgd(&g, &h0, 8, p.operand(), p.operand(), None));
    assert!(e.contains("share a buffer"), "{e}");
    // Overrunning the buffer (capacity is a size class; ask for far more).
    let e = err_text(k::sgd(&g, &h0, 1 << 20, p.operand(), gr.operand(), None));
    assert!(e.contains("overrun"), "{e}");
}

#[test]
fn adam_vec4_matches_cpu_twin() {
    let g = gpu();
    // (n, offsets of p, grad, m, v): aligned cases take adam4, the others adam.
    let cases: &[(usize, [usize; 4], bool)] = &[
        (4, [0, 4, 8, 12], true),
        (68, [4, 0, 12, 8], true),
        (516, [8, 4, 0, 4], true),
        (70_004, [4, 8, 12, 0], true),
        // 65,537 vec4 invocations: the last workgroup holds one.
        (262_148, [0, 0, 0, 0], true),
        (7, [0, 4, 8, 12], false),
        (129, [4, 0, 0, 0], false),
        (68, [2, 0, 0, 0], false),
    ];
    for &(n, offs, vec4) in cases {
        let s = seed(&format!("adam4 {n} {offs:?}"));
        let [p0, gr, m0, v0] = draws(n, s);
        let at = |data: &[f32], pad: usize| {
            let (before, after) = (
                rand_vec(pad, s + 9, -1.0, 1.0),
                rand_vec(5, s + 10, -1.0, 1.0),
            );
            Shifted::between(&g, &before, data, &after)
        };
        let [po, go, mo, vo] = offs;
        let (p, gt, m, v) = (at(&p0, po), at(&gr, go), at(&m0, mo), at(&v0, vo));
        let spans = [&p, &gt, &m, &v].map(Shifted::operand);
        assert_eq!(
            k::adam_vec4_ok(n, &spans.iter().collect::<Vec<_>>()),
            vec4,
            "n {n} offsets {offs:?}"
        );
        for decoupled in [false, true] {
            let h = adam_step(decoupled, 2);
            let before: Vec<Vec<f32>> = [&p, &gt, &m, &v].iter().map(|t| t.read_all(&g)).collect();
            k::adam(&g, &h, n, spans[0], spans[1], spans[2], spans[3]).unwrap();
            let (mut wp, mut wm, mut wv) = (
                f64s(&before[0][po..po + n]),
                f64s(&before[2][mo..mo + n]),
                f64s(&before[3][vo..vo + n]),
            );
            twin::adam(&h, &mut wp, &f64s(&before[1][go..go + n]), &mut wm, &mut wv);
            let what = format!("adam n={n} offsets {offs:?} decoupled={decoupled}");
            let read = |t: &Shifted| t.read_all(&g);
            let (rp, rm, rv) = (read(&p), read(&m), read(&v));
            Tolerance::F32_TRANSCENDENTAL.assert_close(&what, &rp[po..po + n], &wp);
            let tol = Tolerance::F32_ELEMENTWISE;
            tol.assert_close(&format!("{what} exp_avg"), &rm[mo..mo + n], &wm);
            tol.assert_close(&format!("{what} exp_avg_sq"), &rv[vo..vo + n], &wv);
            // Nothing outside the spans moves.
            for (name, got, was, o) in [("p", &rp, &before[0], po), ("m", &rm, &before[2], mo)] {
                assert_eq!(got[..o], was[..o], "{what}: {name} before the span");
                assert_eq!(got[o + n..], was[o + n..], "{what}: {name} after the span");
            }
        }
    }
}
