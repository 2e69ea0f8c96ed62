//! Convolution: every rung of the conv ladder (forward, grad input, grad weight) against the CPU
//! twin at awkward shapes (strides, padding, dilation, groups, depthwise), a weight gradient whose
//! reduction is longer than lavapipe's per-invocation loop limit, gradient checks of
//! `Tensor::conv2d` / `conv1d` in f64, the layers, and the errors.

mod common;

use common::{GradTol, Input, Tolerance, gpu, gradcheck, rand_vec, seed, tensor};
use kiln::Tensor;
use kiln::nn::{Conv1d, Conv2d, Module};
use kiln::ops::{Conv1dOptions, Conv2dOptions};
use kiln_kernels::launch::conv::{self as ck, CHUNK_MAX, Conv2dShape, ConvVariant};
use kiln_kernels::reference::conv as cpu;
use kiln_kernels::{Gpu, GpuBuffer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// f32 sums of `terms` products of values in [-1, 1) against f64: the rounding error grows with
/// the number of terms, and a sum that cancels to ~0 has no relative accuracy, hence an absolute
/// floor proportional to the count.
fn sum_tolerance(terms: usize) -> Tolerance {
    Tolerance::new(
        1e-4,
        2e-6 * terms.max(1) as f64,
        "f32 sums of products (different order, fma) vs f64; abs floor 2e-6 * terms",
    )
}

const SENTINEL: f32 = 12345.0;

fn upload(gpu: &Gpu, data: &[f32]) -> GpuBuffer {
    let buf = gpu.alloc(4 * data.len() as u64, "test input").unwrap();
    gpu.upload(&buf, 0, bytemuck::cast_slice(data));
    buf
}

fn read(gpu: &Gpu, buf: &GpuBuffer, len: usize) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&gpu.read(buf, 0, 4 * len as u64).unwrap())
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

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
        sum_tolerance(fwd_terms + 1).assert_close(
            &format!("{what} forward (bias {bias})"),
            &read(&g, &out, yl),
            &want,
        );
    }
    let dx = upload(&g, &vec![SENTINEL; xl]);
    ck::conv2d_grad_input(&g, variant, s, &gw, &gdy, &dx).unwrap();
    sum_tolerance(back_terms).assert_close(
        &format!("{what} grad input"),
        &read(&g, &dx, xl),
        &cpu::conv2d_grad_input(s, &w64, &dy64),
    );
    let dw = upload(&g, &vec![SENTINEL; wl]);
    ck::conv2d_grad_weight(&g, variant, s, &gx, &gdy, &dw).unwrap();
    let [n, _, oh, ow] = s.output_shape();
    sum_tolerance(n * oh * ow).assert_close(
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
    sum_tolerance(n * oh * ow).assert_close(
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
    sum_tolerance(n * oh * ow).assert_close(
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

fn opts(stride: usize, pad: usize, dil: usize, groups: usize) -> Conv2dOptions {
    Conv2dOptions {
        stride: (stride, stride),
        padding: (pad, pad),
        dilation: (dil, dil),
        groups,
    }
}

/// Gradient check of conv2d (x, w, bias) for one rung.
fn gradcheck_conv2d(variant: ConvVariant, s: Conv2dShape, tag: &str) {
    let sd = seed(tag);
    let inputs = [
        Input::rand(&s.input_shape(), sd, -1.0, 1.0),
        Input::rand(&s.weight_shape(), sd ^ 1, -1.0, 1.0),
        Input::rand(&[s.c_out], sd ^ 2, -1.0, 1.0),
    ];
    let o = Conv2dOptions {
        stride: s.stride,
        padding: s.padding,
        dilation: s.dilation,
        groups: s.groups,
    };
    gradcheck(
        &format!("conv2d {} {tag}", variant.name()),
        &inputs,
        |t| t[0].conv2d_variant(&t[1], Some(&t[2]), o, variant),
        |x| cpu::conv2d_forward(&s, &x[0], &x[1], Some(&x[2])),
        GradTol::default(),
    );
}

#[test]
fn conv2d_gradcheck_input_weight_bias() {
    let cases = [
        (shape(2, 2, (5, 4), 3, (3, 3), 2, 1, 1, 1), "strided padded"),
        (
            shape(1, 4, (5, 6), 2, (2, 3), 1, 2, 2, 2),
            "grouped dilated",
        ),
        (shape(2, 3, (4, 5), 3, (3, 3), 1, 1, 1, 3), "depthwise"),
    ];
    for v in ConvVariant::ALL {
        for (s, tag) in cases {
            gradcheck_conv2d(v, s, tag);
        }
    }
}

#[test]
fn conv1d_forward_and_gradcheck() {
    // (N, C, L) = (2, 4, 11), weight (6, 2, 3), stride 2, pad 2, dil 2, groups 2.
    let o = Conv1dOptions {
        stride: 2,
        padding: 2,
        dilation: 2,
        groups: 2,
    };
    let s = Conv2dShape {
        stride: (1, 2),
        padding: (0, 2),
        dilation: (1, 2),
        ..shape(2, 4, (1, 11), 6, (1, 3), 1, 0, 1, 2)
    };
    let sd = seed("conv1d");
    let inputs = [
        Input::rand(&[2, 4, 11], sd, -1.0, 1.0),
        Input::rand(&[6, 2, 3], sd ^ 1, -1.0, 1.0),
        Input::rand(&[6], sd ^ 2, -1.0, 1.0),
    ];
    let y = tensor(&inputs[0].data, &[2, 4, 11])
        .conv1d(&tensor(&inputs[1].data, &[6, 2, 3]), None, o)
        .unwrap();
    assert_eq!(y.shape(), [2, 6, 6]);
    gradcheck(
        "conv1d",
        &inputs,
        |t| t[0].conv1d(&t[1], Some(&t[2]), o),
        |x| cpu::conv2d_forward(&s, &x[0], &x[1], Some(&x[2])),
        GradTol::default(),
    );
}

#[test]
fn conv2d_reads_views_and_skips_unneeded_gradients() {
    // x given as a transposed view of a (N, H, C, W) tensor.
    let s = shape(2, 3, (5, 6), 4, (3, 3), 1, 1, 1, 1);
    let sd = seed("views");
    let raw = rand_vec(2 * 5 * 3 * 6, sd, -1.0, 1.0);
    let xv = tensor(&raw, &[2, 5, 3, 6]).transpose(1, 2).unwrap();
    let x_nchw = xv.contiguous().unwrap().to_vec::<f32>().unwrap();
    let w = rand_vec(4 * 3 * 9, sd ^ 1, -1.0, 1.0);
    let wt = tensor(&w, &[4, 3, 3, 3]).requires_grad();
    let y = xv.conv2d(&wt, None, opts(1, 1, 1, 1)).unwrap();
    let want = cpu::conv2d_forward(&s, &f64s(&x_nchw), &f64s(&w), None);
    sum_tolerance(27).assert_close("view input", &y.to_vec::<f32>().unwrap(), &want);
    y.sum().unwrap().backward().unwrap();
    let ones = vec![1.0; want.len()];
    sum_tolerance(60).assert_close(
        "view input grad weight",
        &wt.grad().unwrap().to_vec::<f32>().unwrap(),
        &cpu::conv2d_grad_weight(&s, &f64s(&x_nchw), &ones),
    );
}

#[test]
fn conv_layers_init_names_and_forward() {
    let g = gpu();
    let o = opts(2, 1, 1, 2);
    let layer = Conv2d::new_on(&g, 4, 6, (3, 3), o).unwrap();
    let names: Vec<String> = layer.named_parameters().into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["weight", "bias"]);
    assert_eq!(layer.weight.shape(), [6, 2, 3, 3]);
    // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4/2 * 3 * 3 = 18.
    let bound = 1.0 / 18f32.sqrt();
    for (name, t) in layer.named_parameters() {
        let v = t.to_vec::<f32>().unwrap();
        assert!(
            v.iter().all(|x| x.abs() <= bound),
            "{name} outside +-{bound}"
        );
        let spread = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        // 108 weights all inside half the range: probability 2^-108.
        assert!(
            name == "bias" || spread > 0.5 * bound,
            "{name} does not fill its range"
        );
        assert!(t.requires_grad_flag());
    }
    let x = tensor(
        &rand_vec(2 * 4 * 7 * 7, seed("layer"), -1.0, 1.0),
        &[2, 4, 7, 7],
    );
    let y = layer.forward(&x).unwrap();
    assert_eq!(y.shape(), [2, 6, 4, 4]);
    let direct = x
        .conv2d(&layer.weight, layer.bias.as_ref(), o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    Tolerance::EXACT.assert_close("layer = op", &y.to_vec::<f32>().unwrap(), &f64s(&direct));
    y.sum().unwrap().backward().unwrap();
    assert_eq!(layer.bias.as_ref().unwrap().grad().unwrap().shape(), [6]);
    let no_bias = Conv2d::new_on(&g, 4, 6, (3, 3), o).unwrap().without_bias();
    assert_eq!(no_bias.named_parameters().len(), 1);

    let l1 = Conv1d::new_on(&g, 3, 5, 4, Conv1dOptions::default()).unwrap();
    assert_eq!(l1.weight.shape(), [5, 3, 4]);
    let bound = 1.0 / 12f32.sqrt();
    let v = l1.weight.to_vec::<f32>().unwrap();
    assert!(v.iter().all(|x| x.abs() <= bound));
    let y = l1
        .forward(&tensor(&rand_vec(2 * 3 * 9, 7, -1.0, 1.0), &[2, 3, 9]))
        .unwrap();
    assert_eq!(y.shape(), [2, 5, 6]);
}

#[test]
fn conv_errors_name_the_op_and_shapes() {
    let g = gpu();
    let x = Tensor::ones_on(&g, &[2, 3, 8, 8]).unwrap();
    let w = Tensor::ones_on(&g, &[16, 4, 3, 3]).unwrap();
    let msg = |r: kiln::Result<Tensor>| r.expect_err("should fail").to_string();
    let d = Conv2dOptions::default();
    assert_eq!(
        msg(x.conv2d(&w, None, d)),
        "conv2d: input channels 3 do not match weight (16, 4, 3, 3) x groups 1"
    );
    let w3 = Tensor::ones_on(&g, &[16, 3, 3, 3]).unwrap();
    let e = msg(x.conv2d(&Tensor::ones_on(&g, &[16, 3, 3]).unwrap(), None, d));
    assert!(e.contains("conv2d") && e.contains("(16, 3, 3)"), "{e}");
    let e = msg(x.conv2d(&w3, Some(&Tensor::ones_on(&g, &[15]).unwrap()), d));
    assert!(e.contains("bias (15,)"), "{e}");
    let e = msg(x.conv2d(
        &Tensor::ones_on(&g, &[5, 1, 3, 3]).unwrap(),
        None,
        opts(1, 0, 1, 3),
    ));
    assert!(e.contains("not a multiple of groups 3"), "{e}");
    let e = msg(x.conv2d(&w3, None, opts(0, 0, 1, 1)));
    assert!(e.contains("at least 1"), "{e}");
    let e = msg(x.conv2d(&Tensor::ones_on(&g, &[2, 3, 9, 9]).unwrap(), None, d));
    assert!(e.contains("more than the padded input"), "{e}");
    let e = msg(x.conv2d(
        &Tensor::ones_on(&g, &[2, 3, 5, 5]).unwrap(),
        None,
        opts(1, 0, 2, 1),
    ));
    assert!(e.contains("dilation"), "{e}");
    let xi = Tensor::from_slice_on(&g, &[1i32; 4], &[1, 1, 2, 2]).unwrap();
    assert!(msg(xi.conv2d(&Tensor::ones_on(&g, &[1, 1, 1, 1]).unwrap(), None, d)).contains("f32"));
    let x1 = Tensor::ones_on(&g, &[2, 3, 8]).unwrap();
    let e = msg(x1.conv1d(
        &Tensor::ones_on(&g, &[4, 2, 3]).unwrap(),
        None,
        Conv1dOptions::default(),
    ));
    assert_eq!(
        e,
        "conv1d: input channels 3 do not match weight (4, 2, 3) x groups 1"
    );
    assert!(Conv2d::new_on(&g, 3, 4, (3, 3), opts(1, 0, 1, 2)).is_err());
    assert!(Conv1d::new_on(&g, 3, 4, 0, Conv1dOptions::default()).is_err());
    // Loop nests longer than lavapipe runs are refused, not silently truncated (a 1x1 kernel
    // over 25,000 channels was measured to return 44% of the sum).
    let wide = Tensor::ones_on(&g, &[1, 25_000, 1, 1]).unwrap();
    let e = msg(wide.conv2d(&wide, None, d));
    assert!(e.contains("silently stops"), "{e}");
    // The launcher refuses a buffer too small for the shape (and records nothing).
    let s = shape(1, 10, (4, 4), 100, (3, 3), 1, 0, 1, 1);
    let small = upload(&g, &[1.0; 3]);
    let (x, out) = (upload(&g, &[1.0; 160]), upload(&g, &[1.0; 400]));
    let e = ck::conv2d_forward(&g, ConvVariant::Direct, &s, &x, &small, None, &out).unwrap_err();
    assert!(e.to_string().contains("w needs 9000 f32"), "{e}");
}
