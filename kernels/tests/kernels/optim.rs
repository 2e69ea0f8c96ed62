//! The optimizer kernels (`optim.wgsl`: SGD, Adam / AdamW and the vec4 Adam entry) against their
//! CPU twin at awkward sizes, at non-zero offsets inside larger buffers; the launchers' operand
//! checks. SGD / Adam over several steps, schedules and clipping are the root crate's
//! tests/ops/optim.rs.
//!
//! The vec4 entry (`adam4`, 4 elements per invocation) is checked at sizes that are multiples of
//! 4 but of no workgroup, at aligned non-zero offsets, plus the sizes and offsets that must fall
//! back to the scalar entry.
//!
//! 8-bit Adam (`optim8bit.wgsl:adam8bit`) runs three steps from zero state at sizes that are no
//! multiple of its block (2048) or word (4), at offsets; after each step the parameter must match
//! the twin's within `F32_TRANSCENDENTAL` and the block scales within `F32_ELEMENTWISE`, and the
//! codes must be the twin's except where `m / absmax` lies within f32 rounding of a midpoint
//! between two codes (the GPU's division is not the CPU's): there the neighbouring code is
//! accepted, for at most 1 value in 500. The next step starts from the GPU's own state on both
//! sides, so a tie never compounds.

use crate::common::*;
use kiln_kernels::launch::optim::{self as k, AdamStep, SgdStep};
use kiln_kernels::reference::optim as twin;
use kiln_kernels::{GpuBuffer, Operand};

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
                None,
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
    let e = err_text(k::sgd(&g, &h, 8, p.operand(), gr.operand(), None, None));
    assert!(e.contains("momentum buffer"), "{e}");
    // The same buffer as parameter and gradient.
    let h0 = SgdStep { momentum: 0.0, ..h };
    let e = err_text(k::sgd(&g, &h0, 8, p.operand(), p.operand(), None, None));
    assert!(e.contains("share a buffer"), "{e}");
    // Overrunning the buffer (capacity is a size class; ask for far more).
    let e = err_text(k::sgd(
        &g,
        &h0,
        1 << 20,
        p.operand(),
        gr.operand(),
        None,
        None,
    ));
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

#[test]
fn q8_code_books_are_ascending_and_nearest_is_the_argmin() {
    let code = twin::q8_code();
    assert_eq!(code.len(), 2 * k::Q8_CODES);
    let (signed, unsigned) = code.split_at(k::Q8_CODES);
    for (name, book, lo) in [("signed", signed, -1.0), ("unsigned", unsigned, 0.0)] {
        assert!(
            book.windows(2).all(|w| w[0] < w[1]),
            "{name} book ascending"
        );
        assert!(
            book[0] >= lo && book[255] == 1.0,
            "{name} book within [{lo}, 1]"
        );
        assert!(
            book.iter().all(|x| x.abs() < 1e-6 || x.abs() > 1e-7),
            "{name}"
        );
    }
    assert_eq!(signed[k::Q8_SIGNED_ZERO as usize], 0.0);
    assert_eq!(unsigned[0], 0.0);
    for (i, &x) in rand_vec(2000, seed("q8 nearest"), -1.1, 1.1)
        .iter()
        .enumerate()
    {
        let x = x * 10f32.powi(-(i as i32 % 7)); // across every decade
        for book in [signed, unsigned] {
            let got = twin::q8_nearest(book, x) as usize;
            let best = (book[got] - x).abs();
            assert!(
                book.iter().all(|c| (c - x).abs() >= best),
                "x {x}: code {got}"
            );
        }
    }
}

#[test]
fn adam8bit_matches_cpu_twin_at_awkward_sizes() {
    let g = gpu();
    let code = twin::q8_code();
    let book = upload(&g, &code);
    for &n in &[1usize, 7, 257, 2049, 5003, 70_001] {
        for decoupled in [false, true] {
            let s = seed(&format!("adam8bit {n} {decoupled}"));
            let (words, blocks) = (k::q8_words(n), k::q8_blocks(n));
            let p = Shifted::between(&g, &[0.5; 3], &rand_vec(n, s, -1.0, 1.0), &[]);
            let mq = upload_u32(&g, &vec![7u32; words + 2]);
            let vq = upload_u32(&g, &vec![0u32; words + 1]);
            let sc = Shifted::between(&g, &[3.0; 5], &vec![0.0; 2 * blocks], &[3.0]);
            // Zero scales decode any code as 0: a fresh state, whatever the words hold.
            for step in 1..=3u64 {
                // Gradients spanning decades within a block, as real ones do.
                let mut gr = rand_signed_away_from_zero(n, s + step, 0.01, 1.0);
                for (i, x) in gr.iter_mut().enumerate() {
                    *x *= 10f32.powi(-(i as i32 % 5));
                }
                let gt = Shifted::between(&g, &[1.0; 2], &gr, &[]);
                let (mut wp, mut wm, mut wv, mut ws) = (
                    p.read(&g),
                    read_at::<u32>(&g, &mq, 2, words),
                    read_at::<u32>(&g, &vq, 1, words),
                    sc.read(&g),
                );
                let h = adam_step(decoupled, step);
                let state = k::Q8State {
                    mq: Operand::new(&mq, 2),
                    vq: Operand::new(&vq, 1),
                    scales: sc.operand(),
                };
                k::adam8bit(&g, &h, n, p.operand(), gt.operand(), state, &book).unwrap();
                twin::adam8bit(&h, &code, &mut wp, &gr, &mut wm, &mut wv, &mut ws);
                let what = format!("adam8bit n={n} decoupled={decoupled} step {step}");
                Tolerance::F32_TRANSCENDENTAL.assert_close(&what, &p.read(&g), &wp);
                let tol = Tolerance::F32_ELEMENTWISE;
                tol.assert_close(&format!("{what} scales"), &sc.read(&g), &ws);
                let got_m = read_at::<u32>(&g, &mq, 2, words);
                let got_v = read_at::<u32>(&g, &vq, 1, words);
                let mut ties = 0;
                for i in 0..words * k::Q8_PER_WORD {
                    for (name, got, want) in [("m", &got_m, &wm), ("v", &got_v, &wv)] {
                        let (a, b) = (twin::q8_get(got, i), twin::q8_get(want, i));
                        assert!(a.abs_diff(b) <= 1, "{what}: {name} code {i}: {a} vs {b}");
                        ties += (a != b) as usize;
                    }
                }
                assert!(ties * 500 <= 2 * n, "{what}: {ties} codes off by one");
                // Nothing outside the state's spans moves.
                assert_eq!(read_at::<u32>(&g, &mq, 0, 2), [7, 7], "{what}");
                let all = sc.read_all(&g);
                assert!(all[..5] == [3.0; 5] && all[5 + 2 * blocks] == 3.0, "{what}");
            }
        }
    }
}

#[test]
fn adam8bit_refuses_short_state() {
    let g = gpu();
    let book = upload(&g, &twin::q8_code());
    let n = 700_001; // 342 blocks: 684 scales (capacities are size classes; ask for far more)
    let (p, gr) = (upload(&g, &vec![0.1; n]), upload(&g, &vec![0.2; n]));
    let words = vec![0; k::q8_words(n)];
    let (mq, vq) = (upload_u32(&g, &words), upload_u32(&g, &words));
    let sc = upload(&g, &[0.0; 16]);
    let h = adam_step(true, 1);
    let w = Operand::whole;
    let run = |v: &GpuBuffer, sc: &GpuBuffer| {
        let state = k::Q8State {
            mq: w(&mq),
            vq: Operand::whole(v),
            scales: Operand::whole(sc),
        };
        err_text(k::adam8bit(&g, &h, n, w(&p), w(&gr), state, &book))
    };
    let e = run(&vq, &sc);
    assert!(e.contains("block scales") && e.contains("overrun"), "{e}");
    let sc = upload(&g, &vec![0.0; 2 * k::q8_blocks(n)]);
    let e = run(&mq, &sc);
    assert!(e.contains("share a buffer"), "{e}");
}

mod scale;
