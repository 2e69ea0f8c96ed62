//! The loss scaler (`grad_scale.wgsl`) and the guarded optimizer entries against their CPU twin:
//! unscale at awkward sizes and offsets, with and without an inf / NaN planted in the gradient
//! (the found_inf word must be set exactly when one is there); the scale's update through a
//! backoff, good steps and a growth; and each guarded update skipped (parameter and state
//! unchanged, bit for bit) while the flag is set, equal to the plain entry while it is clear.

use crate::common::*;
use kiln_kernels::launch::optim::{self as k, SCALER_WORDS, ScaleUpdate, SgdStep};
use kiln_kernels::reference::optim as twin;

fn read_state(g: &kiln_kernels::Gpu, b: &kiln_kernels::GpuBuffer) -> [u32; SCALER_WORDS] {
    read_at::<u32>(g, b, 0, SCALER_WORDS).try_into().unwrap()
}

#[test]
fn unscale_matches_twin_and_flags_overflow() {
    let g = gpu();
    for &n in &[1usize, 7, 257, 1031, 70_001] {
        let s = seed(&format!("unscale{n}"));
        let scale = 1024.0f32 * 3.0;
        for plant in [
            None,
            Some(f32::INFINITY),
            Some(f32::NAN),
            Some(f32::NEG_INFINITY),
        ] {
            let mut gr = rand_vec(n, s, -2000.0, 2000.0);
            if let Some(x) = plant {
                gr[n / 2] = x;
            }
            let gt = Shifted::between(&g, &rand_vec(5, s + 1, -1.0, 1.0), &gr, &[1.0]);
            let sc = upload(&g, &[scale]);
            let st = upload_u32(&g, &[0; SCALER_WORDS]);
            k::unscale(&g, n, gt.operand(), &sc, &st).unwrap();
            let mut want = gr.clone();
            let mut wst = [0u32; SCALER_WORDS];
            twin::unscale(&mut want, scale, &mut wst);
            let got = gt.read(&g);
            let what = format!("unscale n={n} plant={plant:?}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let same = (a.is_nan() && b.is_nan()) || a == b;
                assert!(same, "{what}: element {i}: got {a}, twin {b}");
            }
            assert_eq!(read_state(&g, &st), wst, "{what}: state");
            assert_eq!(wst[0], plant.is_some() as u32, "{what}: twin's found_inf");
        }
    }
}

#[test]
fn scale_update_backs_off_counts_and_grows_like_twin() {
    let g = gpu();
    let u = ScaleUpdate {
        interval: 3,
        ..Default::default()
    };
    let sc = upload(&g, &[65536.0]);
    let st = upload_u32(&g, &[0; SCALER_WORDS]);
    let (mut scale, mut state) = (65536.0f32, [0u32; SCALER_WORDS]);
    // overflow, 3 good steps (growth), overflow, overflow, 2 good steps.
    let steps = [true, false, false, false, true, true, false, false];
    for (i, overflow) in steps.into_iter().enumerate() {
        if overflow {
            g.upload(&st, 0, bytemuck::bytes_of(&1u32));
            state[0] = 1;
        }
        k::update_scale(&g, &u, &sc, &st).unwrap();
        twin::update_scale(&u, &mut scale, &mut state);
        assert_eq!(read(&g, &sc, 1)[0], scale, "step {i}: scale");
        assert_eq!(read_state(&g, &st), state, "step {i}: state");
    }
    assert_eq!((scale, state[1], state[2]), (16384.0, 2, 3));
}

#[test]
fn guarded_updates_skip_while_the_flag_is_set() {
    let g = gpu();
    let s = seed("guarded");
    // 1030 is no multiple of 4 (adam's scalar entry); 1028 takes adam4.
    for n in [1030usize, 1028] {
        let (p0, gr) = (rand_vec(n, s, -1.0, 1.0), rand_vec(n, s + 1, -1.0, 1.0));
        let (m0, v0) = (rand_vec(n, s + 2, -0.5, 0.5), rand_vec(n, s + 3, 0.01, 0.5));
        let h = super::adam_step(true, 2);
        let sgd = SgdStep {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.01,
        };
        for flag in [1u32, 0] {
            let st = upload_u32(&g, &[flag, 0, 0, 0]);
            let [p, gt, m, v] = [&p0, &gr, &m0, &v0].map(|d| Shifted::new(&g, d));
            let ops = [p.operand(), gt.operand(), m.operand(), v.operand()];
            k::adam_guarded(&g, &h, n, ops, Some(&st)).unwrap();
            let [sp, sb] = [&p0, &m0].map(|d| Shifted::new(&g, d));
            let buf = Some(sb.operand());
            k::sgd(&g, &sgd, n, sp.operand(), gt.operand(), buf, Some(&st)).unwrap();
            let (mut wp, mut wm, mut wv) = (f64s(&p0), f64s(&m0), f64s(&v0));
            let (mut wsp, mut wsb) = (f64s(&p0), f64s(&m0));
            if flag == 0 {
                twin::adam(&h, &mut wp, &f64s(&gr), &mut wm, &mut wv);
                twin::sgd(&sgd, &mut wsp, &f64s(&gr), Some(&mut wsb[..]));
            }
            let what = format!("guarded n={n} flag={flag}");
            let tol = Tolerance::F32_TRANSCENDENTAL;
            tol.assert_close(&format!("{what} adam p"), &p.read(&g), &wp);
            tol.assert_close(&format!("{what} adam m"), &m.read(&g), &wm);
            tol.assert_close(&format!("{what} adam v"), &v.read(&g), &wv);
            tol.assert_close(&format!("{what} sgd p"), &sp.read(&g), &wsp);
            tol.assert_close(&format!("{what} sgd buf"), &sb.read(&g), &wsb);
            if flag == 1 {
                assert_eq!(p.read(&g), p0, "{what}: skipped adam left p bit for bit");
            }
        }
    }
}
