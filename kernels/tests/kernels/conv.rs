//! Convolution: every rung of the conv ladder (forward, grad input, grad weight) against the CPU
//! twin at awkward shapes (strides, padding, dilation, groups, depthwise), a weight gradient whose
//! reduction is longer than lavapipe's per-invocation loop limit, and the launcher's errors.
//! Gradient checks of `Tensor::conv2d` / `conv1d`, the layers and the op errors are the root
//! crate's tests/ops/conv.rs; every tuner candidate is checked in [`crate::tune`].

use crate::common::{Tolerance, f64s, gpu, rand_vec, read, seed, upload};
use kiln_kernels::launch::conv::{self as ck, CHUNK_MAX, Conv2dShape, ConvVariant};
use kiln_kernels::reference::conv as cpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SENTINEL: f32 = 12345.0;

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        h: hw.0,
        w: hw.1,
        c_out,
        kh: k.0,
        kw: k.1,
        stride: (stride, stride),
        padding: (pad, pad),
        dilation: (dil, dil),
        groups,
    }
}

/// Run forward (with and without bias), grad input and grad weight of one rung on fresh random
/// data (outputs pre-filled with sentinels) and compare each with the CPU twin.
fn check_rung(variant: ConvVariant, s: &Conv2dShape, lo: f32, tag: &str) {
    let g = gpu();
    let sd = seed(tag);
    let (xl, wl, yl) = (
        s.input_shape().iter().product::<usize>(),
        s.weight_shape().iter().product::<usize>(),
        s.output_shape().iter().product::<usize>(),
    );
    let x = rand_vec(xl, sd, lo, 1.0);
    let w = rand_vec(wl, sd ^ 1, lo, 1.0);
    let b = rand_vec(s.c_out, sd ^ 2, lo, 1.0);
    let dy = rand_vec(yl, sd ^ 3, lo, 1.0);
    let (gx, gw, gb, gdy) = (
        upload(&g, &x),
        upload(&g, &w),
        upload(&g, &b),
        upload(&g, &dy),
    );
    let what = format!("{} {tag} {s:?}", variant.name());
    let (x64, w64, b64, dy64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
    let (fwd_terms, back_terms) = (s.k_len(), s.c_out / s.groups * s.kh * s.kw);

    for bias in [true, false] {
        let out = upload(&g, &vec![SENTINEL; yl]);
        ck::conv2d_forward(&g, variant, s, &gx, &gw, bias.then_some(&gb), &out)
            .unwrap_or_else(|e| panic!("{what}: forward launch: {e}"));
        let want = cpu::conv2d_forward(s, &x64, &w64, bias.then_some(&b64[..]));
        Tolerance::f32_dot(fwd_terms + 1).assert_close(
            &format!("{what} forward (bias {bias})"),
            &read(&g, &out, yl),
            &want,
        );
    }
    let dx = upload(&g, &vec![SENTINEL; xl]);
    ck::conv2d_grad_input(&g, variant, s, &gw, &gdy, &dx).unwrap();
    Tolerance::f32_dot(back_terms).assert_close(
        &format!("{what} grad input"),
        &read(&g, &dx, xl),
        &cpu::conv2d_grad_input(s, &w64, &dy64),
    );
    let dw = upload(&g, &vec![SENTINEL; wl]);
    ck::conv2d_grad_weight(&g, variant, s, &gx, &gdy, &dw).unwrap();
    let [n, _, oh, ow] = s.output_shape();
    Tolerance::f32_dot(n * oh * ow).assert_close(
        &format!("{what} grad weight"),
        &read(&g, &dw, wl),
        &cpu::conv2d_grad_weight(s, &x64, &dy64),
    );
    // The weight gradient with the bias gradient fused in (implicit GEMM only).
    let db = upload(&g, &vec![SENTINEL; s.c_out]);
    let dw = upload(&g, &vec![SENTINEL; wl]);
    let r = ck::conv2d_grad_weight_bias(&g, variant, s, &gx, &gdy, &dw, Some(&db));
    if variant == ConvVariant::Direct {
        assert!(
            r.is_err(),
            "{what}: the direct rung has no fused bias gradient"
        );
        return;
    }
    r.unwrap();
    Tolerance::f32_dot(n * oh * ow).assert_close(
        &format!("{what} grad weight (with bias)"),
        &read(&g, &dw, wl),
        &cpu::conv2d_grad_weight(s, &x64, &dy64),
    );
    let plane = oh * ow;
    let want_db: Vec<f64> = (0..s.c_out)
        .map(|co| {
            (0..n)
                .flat_map(|i| &dy64[(i * s.c_out + co) * plane..(i * s.c_out + co + 1) * plane])
                .sum()
        })
        .collect();
    Tolerance::f32_dot(n * oh * ow).assert_close(
        &format!("{what} fused bias gradient"),
        &read(&g, &db, s.c_out),
        &want_db,
    );
}

/// Hand-picked corner cases plus a seeded sample of the grid of awkward sizes.
fn awkward_shapes() -> Vec<Conv2dShape> {
    let mut v = vec![
        shape(1, 1, (1, 1), 1, (1, 1), 1, 0, 1, 1),
        shape(3, 3, (7, 13), 5, (3, 3), 1, 1, 1, 1),
        shape(1, 5, (13, 7), 3, (5, 5), 2, 2, 1, 1),
        shape(3, 3, (13, 13), 5, (3, 3), 2, 0, 2, 1),
        shape(1, 3, (7, 7), 1, (5, 3), 1, 2, 2, 1),
        shape(3, 4, (7, 13), 6, (3, 3), 2, 1, 1, 2),
        shape(1, 6, (13, 7), 2, (3, 5), 1, 2, 2, 2),
        shape(3, 5, (13, 13), 5, (3, 3), 1, 1, 1, 5), // depthwise
        shape(1, 3, (7, 13), 6, (5, 5), 2, 2, 1, 3),  // depthwise, multiplier 2
        shape(3, 1, (1, 13), 3, (1, 5), 2, 2, 2, 1),  // conv1d-like
        shape(1, 3, (13, 1), 5, (3, 1), 1, 0, 1, 1),
        shape(1, 9, (7, 7), 7, (1, 1), 1, 0, 1, 1), // 1x1
        // Wide layers: 3 and 4 quads of channels per invocation, partial channel blocks.
        shape(2, 11, (7, 9), 13, (3, 3), 1, 1, 1, 1),
        shape(1, 18, (5, 6), 20, (3, 3), 2, 1, 1, 1),
        shape(3, 34, (7, 7), 34, (3, 3), 1, 1, 1, 2),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed("conv awkward grid"));
    let pick = |rng: &mut ChaCha8Rng, xs: &[usize]| xs[rng.random_range(0..xs.len())];
    while v.len() < 40 {
        let groups = pick(&mut rng, &[1, 1, 2, 0]);
        let (cin, cout, groups) = match groups {
            2 => (
                2 * pick(&mut rng, &[1, 3]),
                2 * pick(&mut rng, &[1, 3, 5]),
                2,
            ),
            0 => {
                let c = pick(&mut rng, &[1, 3, 5]);
                (c, c * pick(&mut rng, &[1, 2]), c)
            }
            _ => (pick(&mut rng, &[1, 3, 5]), pick(&mut rng, &[1, 3, 5]), 1),
        };
        let s = shape(
            pick(&mut rng, &[1, 3]),
            cin,
            (pick(&mut rng, &[1, 7, 13]), pick(&mut rng, &[1, 7, 13])),
            cout,
            (pick(&mut rng, &[1, 3, 5]), pick(&mut rng, &[1, 3, 5])),
            pick(&mut rng, &[1, 2]),
            pick(&mut rng, &[0, 1, 2]),
            pick(&mut rng, &[1, 2]),
            groups,
        );
        if s.problem().is_none() {
            v.push(s);
        }
    }
    v
}

#[test]
fn every_rung_matches_cpu_twin_at_awkward_shapes() {
    for (i, s) in awkward_shapes().iter().enumerate() {
        for v in ConvVariant::ALL {
            check_rung(v, s, -1.0, &format!("case {i}"));
        }
    }
}

#[test]
fn weight_gradient_splits_reductions_past_the_loop_limit() {
    // N * OH * OW = 80,000 terms per weight element: more than the 65,535 loop iterations
    // lavapipe allows one invocation. Positive data, so a truncated sum would be ~18% short.
    let s = shape(2, 1, (200, 200), 1, (1, 1), 1, 0, 1, 1);
    for v in ConvVariant::ALL {
        let (splits, chunk) = ck::grad_weight_splits(v, &s);
        assert!(splits > 1 && chunk <= CHUNK_MAX && splits * chunk >= 80_000);
        check_rung(v, &s, 0.5, "loop limit");
    }
    // Forward and grad-input loop nests just inside the launcher's budget (8,500 steps of a 1x1
    // kernel: about 51,000 of lavapipe's 65,535 iterations) still sum every term.
    for v in ConvVariant::ALL {
        check_rung(
            v,
            &shape(1, 8500, (2, 3), 1, (1, 1), 1, 0, 1, 1),
            0.5,
            "long forward",
        );
        check_rung(
            v,
            &shape(1, 1, (2, 3), 8500, (1, 1), 1, 0, 1, 1),
            0.5,
            "long grad input",
        );
    }
    // A wider case: 3 x 2 weights, 2 * 150 * 150 = 45,000 terms each, with padding.
    let s = shape(2, 2, (150, 150), 3, (3, 3), 1, 1, 1, 1);
    check_rung(ConvVariant::ImplicitGemm, &s, 0.5, "wide split");
}

#[test]
fn launcher_refuses_a_buffer_too_small_for_the_shape() {
    let g = gpu();
    // The launcher refuses a buffer too small for the shape (and records nothing).
    let s = shape(1, 10, (4, 4), 100, (3, 3), 1, 0, 1, 1);
    let small = upload(&g, &[1.0; 3]);
    let (x, out) = (upload(&g, &[1.0; 160]), upload(&g, &[1.0; 400]));
    let e = ck::conv2d_forward(&g, ConvVariant::Direct, &s, &x, &small, None, &out).unwrap_err();
    assert!(e.to_string().contains("w needs 9000 f32"), "{e}");
}
