//! Pooling: the pool.wgsl kernels against their CPU twins at
//! awkward shapes (overlapping, gapped and padded windows, adaptive windows that do not divide the
//! input, sources at an offset), finite-difference gradient checks of every op, the layers, and error cases
//! (BatchNorm2d is in `batch_norm.rs`).

use crate::common;

use common::*;
use kiln::nn::{AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Flatten, MaxPool2d, Module};
use kiln::{DType, Tensor};
use kiln_kernels::launch::pool::{self as pk, PoolShape, Window};
use kiln_kernels::reference::pool as cpu;

/// (N, C, H, W, kernel, stride, padding): overlapping (stride < kernel), tiling (stride =
/// kernel), gapped (stride > kernel), rectangular and padded windows, 1x1 planes.
type Case = (
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
);
const CASES: &[Case] = &[
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (3, 5, 7, 7, (3, 3), (2, 2), (1, 1)),
    (1, 5, 13, 17, (2, 2), (2, 2), (0, 0)),
    (3, 1, 17, 13, (3, 2), (1, 3), (1, 1)),
    (1, 1, 7, 13, (1, 3), (3, 1), (0, 1)),
    (3, 5, 13, 7, (2, 3), (3, 2), (1, 0)),
    (1, 5, 17, 17, (3, 3), (1, 1), (0, 0)),
    (3, 1, 1, 7, (1, 2), (1, 2), (0, 1)),
];

/// Adaptive cases: (N, C, H, W, (OH, OW)), including sizes that do not divide the input,
/// upsampling (OH > H) and the identity.
type AdaptiveCase = (usize, usize, usize, usize, (usize, usize));
const ADAPTIVE: &[AdaptiveCase] = &[
    (1, 1, 7, 7, (3, 3)),
    (3, 5, 5, 5, (2, 4)),
    (1, 5, 13, 17, (5, 3)),
    (3, 1, 1, 1, (1, 1)),
    (1, 5, 7, 13, (1, 1)),
    (1, 1, 5, 5, (7, 6)),
    (3, 5, 17, 7, (17, 7)),
];

const MAX_EXACT: Tolerance = Tolerance::new(0.0, 0.0, "max picks an element: a bit-exact copy");
const WINDOW_SUM: Tolerance = Tolerance::new(
    1e-5,
    1e-6,
    "f32 sums of a few terms; the backward twin divides each term, the kernel the sum",
);

/// `data` as a tensor viewed at element offset 3 of its storage (the kernels must honour it).
pub fn at_offset(data: &[f32], shape: &[usize]) -> Tensor {
    let mut v = vec![9.0f32; 3];
    v.extend_from_slice(data);
    tensor(&v, &[v.len()])
        .narrow(0, 3, data.len())
        .unwrap()
        .reshape(shape)
        .unwrap()
}

/// An output tensor pre-filled with NaN, so an element the kernel forgets to write shows up.
fn garbage(shape: &[usize]) -> Tensor {
    Tensor::full_on(&gpu(), shape, f32::NAN).unwrap()
}

fn window(c: &Case) -> (PoolShape, Window) {
    let &(n, ch, h, w, kernel, stride, padding) = c;
    let win = Window {
        kernel,
        stride,
        padding,
    };
    (win.shape(n, ch, h, w).unwrap(), win)
}

#[test]
fn max_pool_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let xs = rand_vec(s.input_len(), seed("max x") + k as u64, -2.0, 2.0);
        let x = at_offset(&xs, &[s.n, s.c, s.h, s.w]);
        let out = [s.n, s.c, s.oh, s.ow];
        let y = garbage(&out);
        let arg = Tensor::from_slice_on(&g, &vec![u32::MAX; s.output_len()], &out).unwrap();
        pk::max_pool2d(&g, s, win, x.operand(), y.operand().buf, arg.operand().buf).unwrap();
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &xs);
        MAX_EXACT.assert_close(&format!("max_pool2d {case:?}"), &f32s(&y), &want_y);
        assert_eq!(arg.to_vec::<u32>().unwrap(), want_arg, "argmax {case:?}");

        let gs = rand_vec(s.output_len(), seed("max g") + k as u64, -1.0, 1.0);
        let gt = at_offset(&gs, &out);
        let gx = garbage(&[s.n, s.c, s.h, s.w]);
        pk::max_pool2d_backward(
            &g,
            s,
            win,
            gt.operand(),
            arg.operand().buf,
            gx.operand().buf,
        )
        .unwrap();
        let want = cpu::max_pool2d_backward(s, &gs, &want_arg);
        WINDOW_SUM.assert_close(&format!("max_pool2d backward {case:?}"), &f32s(&gx), &want);
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
        let xs = rand_vec(s.input_len(), seed("tiled x") + k as u64, -2.0, 2.0);
        let x = at_offset(&xs, &[s.n, s.c, s.h, s.w]);
        let out = [s.n, s.c, s.oh, s.ow];
        let (want_y, want_arg) = cpu::max_pool2d(s, win, &xs);
        let gs = rand_vec(s.output_len(), seed("tiled g") + k as u64, -1.0, 1.0);
        let gt = at_offset(&gs, &out);
        let want_gx = cpu::max_pool2d_backward(s, &gs, &want_arg);
        for tiled in [false, true] {
            let y = garbage(&out);
            let arg = Tensor::from_slice_on(&g, &vec![u32::MAX; s.output_len()], &out).unwrap();
            let (yb, ab) = (y.operand().buf, arg.operand().buf);
            if tiled {
                pk::max_pool2d_tiled(&g, s, win, x.operand(), yb, ab).unwrap();
            } else {
                pk::max_pool2d_generic(&g, s, win, x.operand(), yb, ab).unwrap();
            }
            let what = format!("max_pool2d tiled={tiled} {case:?}");
            MAX_EXACT.assert_close(&what, &f32s(&y), &want_y);
            assert_eq!(arg.to_vec::<u32>().unwrap(), want_arg, "argmax {what}");
            let gx = garbage(&[s.n, s.c, s.h, s.w]);
            let gxb = gx.operand().buf;
            if tiled && pk::tiles_backward(s, win) {
                pk::max_pool2d_backward_tiled(&g, s, win, gt.operand(), ab, gxb).unwrap();
            } else if tiled {
                let e = pk::max_pool2d_backward_tiled(&g, s, win, gt.operand(), ab, gxb);
                assert!(
                    e.is_err(),
                    "{what}: a window that drops input must be refused"
                );
                pk::max_pool2d_backward(&g, s, win, gt.operand(), ab, gxb).unwrap();
            } else {
                pk::max_pool2d_backward_generic(&g, s, win, gt.operand(), ab, gxb).unwrap();
            }
            WINDOW_SUM.assert_close(&format!("{what} backward"), &f32s(&gx), &want_gx);
        }
    }
    // An overlapping window is refused by the tiled entry.
    let (s, win) = window(&CASES[1]);
    assert!(!pk::tiles_forward(s, win));
    let x = garbage(&[s.n, s.c, s.h, s.w]);
    let y = garbage(&[s.n, s.c, s.oh, s.ow]);
    assert!(
        pk::max_pool2d_tiled(&g, s, win, x.operand(), y.operand().buf, y.operand().buf).is_err()
    );
}

#[test]
fn max_pool_padding_counts_as_minus_infinity() {
    // All-negative input: a zero padding would win at the border windows.
    let xs = rand_vec(2 * 3 * 7 * 5, seed("neg"), -3.0, -0.5);
    let x = tensor(&xs, &[2, 3, 7, 5]);
    let y = x.max_pool2d((3, 3), (2, 2), (1, 1)).unwrap();
    let (s, win) = window(&(2, 3, 7, 5, (3, 3), (2, 2), (1, 1)));
    MAX_EXACT.assert_close("padded max", &f32s(&y), &cpu::max_pool2d(s, win, &xs).0);
    assert!(
        f32s(&y).iter().all(|&v| v < 0.0),
        "padding leaked into the max"
    );
}

#[test]
fn avg_pool_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, case) in CASES.iter().enumerate() {
        let (s, win) = window(case);
        let xs = rand_vec(s.input_len(), seed("avg x") + k as u64, -2.0, 2.0);
        let x = at_offset(&xs, &[s.n, s.c, s.h, s.w]);
        let out = [s.n, s.c, s.oh, s.ow];
        let y = garbage(&out);
        pk::avg_pool2d(&g, s, win, x.operand(), y.operand().buf).unwrap();
        let want = cpu::avg_pool2d(s, win, &xs);
        WINDOW_SUM.assert_close(&format!("avg_pool2d {case:?}"), &f32s(&y), &want);

        let gs = rand_vec(s.output_len(), seed("avg g") + k as u64, -1.0, 1.0);
        let gt = at_offset(&gs, &out);
        let gx = garbage(&[s.n, s.c, s.h, s.w]);
        pk::avg_pool2d_backward(&g, s, win, gt.operand(), gx.operand().buf).unwrap();
        let want = cpu::avg_pool2d_backward(s, win, &gs);
        WINDOW_SUM.assert_close(&format!("avg_pool2d backward {case:?}"), &f32s(&gx), &want);
    }
}

#[test]
fn avg_pool_counts_padding_in_the_divisor() {
    // 2x2 input, 2x2 window, padding 1: the corner window holds one real element of four.
    let x = tensor(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let y = x.avg_pool2d((2, 2), (1, 1), (1, 1)).unwrap();
    assert_eq!(y.shape(), [1, 1, 3, 3]);
    let want = [0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0];
    WINDOW_SUM.assert_close("count_include_pad", &f32s(&y), &want);
}

#[test]
fn adaptive_kernels_match_cpu_twin() {
    let g = gpu();
    for (k, &(n, c, h, w, (oh, ow))) in ADAPTIVE.iter().enumerate() {
        let s = PoolShape { n, c, h, w, oh, ow };
        let xs = rand_vec(s.input_len(), seed("ada x") + k as u64, -2.0, 2.0);
        let x = at_offset(&xs, &[n, c, h, w]);
        let y = garbage(&[n, c, oh, ow]);
        pk::adaptive_avg_pool2d(&g, s, x.operand(), y.operand().buf).unwrap();
        let want = cpu::adaptive_avg_pool2d(s, &xs);
        WINDOW_SUM.assert_close(&format!("adaptive {s:?}"), &f32s(&y), &want);

        let gs = rand_vec(s.output_len(), seed("ada g") + k as u64, -1.0, 1.0);
        let gt = at_offset(&gs, &[n, c, oh, ow]);
        let gx = garbage(&[n, c, h, w]);
        pk::adaptive_avg_pool2d_backward(&g, s, gt.operand(), gx.operand().buf).unwrap();
        let want = cpu::adaptive_avg_pool2d_backward(s, &gs);
        WINDOW_SUM.assert_close(&format!("adaptive backward {s:?}"), &f32s(&gx), &want);
    }
    // PyTorch's windows for 5 -> 2: rows 0..3 and 2..5 (they overlap on row 2).
    assert_eq!(pk::adaptive_window(0, 5, 2), (0, 3));
    assert_eq!(pk::adaptive_window(1, 5, 2), (2, 5));
    assert_eq!(pk::adaptive_window(2, 7, 3), (4, 7));
}

#[test]
fn global_average_pool_of_a_large_plane_falls_back_to_a_reduction() {
    let xs = rand_vec(2 * 300 * 300, seed("global"), -1.0, 1.0);
    let x = tensor(&xs, &[1, 2, 300, 300]);
    let y = x.adaptive_avg_pool2d((1, 1)).unwrap();
    assert_eq!(y.shape(), [1, 2, 1, 1]);
    let s = PoolShape {
        n: 1,
        c: 2,
        h: 300,
        w: 300,
        oh: 1,
        ow: 1,
    };
    Tolerance::F32_REDUCTION.assert_close(
        "global pool",
        &f32s(&y),
        &cpu::adaptive_avg_pool2d(s, &f64s(&xs)),
    );
    // Two windows of 151 x 300 each: too many loop iterations for one invocation.
    let one = tensor(&xs[..300 * 300], &[1, 1, 300, 300]);
    let err = err_text(one.adaptive_avg_pool2d((2, 1)));
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn pooling_reads_strided_inputs() {
    // NHWC data viewed as NCHW: the ops copy it contiguous first.
    let (n, c, h, w) = (3, 5, 7, 13);
    let xs = rand_vec(n * c * h * w, seed("nhwc"), -1.0, 1.0);
    let nhwc = tensor(&xs, &[n, h, w, c]);
    let x = nhwc.permute(&[0, 3, 1, 2]).unwrap();
    let xc = x.contiguous().unwrap();
    let pairs = [
        (
            x.max_pool2d((3, 3), (2, 2), (1, 1)),
            xc.max_pool2d((3, 3), (2, 2), (1, 1)),
        ),
        (
            x.avg_pool2d((2, 3), (1, 2), (1, 1)),
            xc.avg_pool2d((2, 3), (1, 2), (1, 1)),
        ),
        (
            x.adaptive_avg_pool2d((3, 4)),
            xc.adaptive_avg_pool2d((3, 4)),
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(f32s(&a.unwrap()), f32s(&b.unwrap()));
    }
}

/// f64 CPU twins of the ops, for the gradient checks.
fn pool_cpu(kind: &str, s: PoolShape, win: Window, x: &[f64]) -> Vec<f64> {
    match kind {
        "max" => cpu::max_pool2d(s, win, x).0,
        "avg" => cpu::avg_pool2d(s, win, x),
        _ => cpu::adaptive_avg_pool2d(s, x),
    }
}

#[test]
fn pooling_gradients() {
    let cases: &[Case] = &[
        (3, 5, 7, 7, (3, 3), (2, 2), (1, 1)),
        (1, 5, 13, 7, (2, 3), (3, 2), (1, 0)),
        (3, 1, 7, 13, (2, 2), (2, 2), (0, 0)),
        (1, 1, 7, 5, (3, 2), (1, 1), (1, 1)),
    ];
    for (k, case) in cases.iter().enumerate() {
        let (s, win) = window(case);
        let shape = [s.n, s.c, s.h, s.w];
        for kind in ["max", "avg"] {
            // Uniform f32 draws: ties in a window have probability ~0, so max is differentiable.
            let input = Input::rand(&shape, seed(kind) + k as u64, -2.0, 2.0);
            gradcheck(
                &format!("{kind}_pool2d {case:?}"),
                &[input],
                |t| match kind {
                    "max" => t[0].max_pool2d(win.kernel, win.stride, win.padding),
                    _ => t[0].avg_pool2d(win.kernel, win.stride, win.padding),
                },
                |x| pool_cpu(kind, s, win, &x[0]),
                GradTol::default(),
            );
        }
    }
    for (k, &(n, c, h, w, out)) in ADAPTIVE.iter().enumerate() {
        let s = PoolShape {
            n,
            c,
            h,
            w,
            oh: out.0,
            ow: out.1,
        };
        let input = Input::rand(&[n, c, h, w], seed("ada grad") + k as u64, -2.0, 2.0);
        gradcheck(
            &format!("adaptive_avg_pool2d {s:?}"),
            &[input],
            |t| t[0].adaptive_avg_pool2d(out),
            |x| pool_cpu("ada", s, win_none(), &x[0]),
            GradTol::default(),
        );
    }
}

fn win_none() -> Window {
    Window {
        kernel: (0, 0),
        stride: (0, 0),
        padding: (0, 0),
    }
}

#[test]
fn pooling_errors_name_the_op_and_shapes() {
    let x = tensor(&rand_vec(2 * 3 * 5 * 5, 1, -1.0, 1.0), &[2, 3, 5, 5]);
    let e = err_text(x.max_pool2d((6, 6), (1, 1), (0, 0)));
    assert!(
        e.contains("max_pool2d") && e.contains("larger than the padded input"),
        "{e}"
    );
    assert!(e.contains("[2, 3, 5, 5]"), "{e}");
    let e = err_text(x.avg_pool2d((2, 2), (1, 1), (2, 0)));
    assert!(
        e.contains("avg_pool2d") && e.contains("half of kernel"),
        "{e}"
    );
    let e = err_text(x.max_pool2d((0, 2), (1, 1), (0, 0)));
    assert!(e.contains("positive"), "{e}");
    let e = err_text(x.avg_pool2d((2, 2), (1, 0), (0, 0)));
    assert!(e.contains("positive"), "{e}");
    let e = err_text(
        x.reshape(&[6, 5, 5])
            .unwrap()
            .max_pool2d((2, 2), (2, 2), (0, 0)),
    );
    assert!(e.contains("(N, C, H, W)") && e.contains("[6, 5, 5]"), "{e}");
    let e = err_text(x.adaptive_avg_pool2d((0, 3)));
    assert!(e.contains("adaptive_avg_pool2d"), "{e}");
    let xi = x.to_dtype(DType::I32).unwrap();
    assert!(err_text(xi.max_pool2d((2, 2), (2, 2), (0, 0))).contains("f32"));
}

// ---------------------------------------------------------------------------------------------
// BatchNorm2d

#[test]
fn pooling_layers_and_flatten() {
    let xs = rand_vec(3 * 5 * 7 * 13, seed("layers"), -1.0, 1.0);
    let x = tensor(&xs, &[3, 5, 7, 13]);
    let mp = MaxPool2d::new(2);
    assert!(mp.named_parameters().is_empty());
    assert_eq!(
        f32s(&mp.forward(&x).unwrap()),
        f32s(&x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap())
    );
    let mp = MaxPool2d::with_window((3, 2), (2, 1), (1, 1));
    assert_eq!(
        f32s(&mp.forward(&x).unwrap()),
        f32s(&x.max_pool2d((3, 2), (2, 1), (1, 1)).unwrap())
    );
    let ap = AvgPool2d::with_window((3, 3), (2, 2), (1, 1));
    assert_eq!(
        f32s(&ap.forward(&x).unwrap()),
        f32s(&x.avg_pool2d((3, 3), (2, 2), (1, 1)).unwrap())
    );
    assert_eq!(AvgPool2d::new(3).forward(&x).unwrap().shape(), [3, 5, 2, 4]);
    let gap = AdaptiveAvgPool2d::new((1, 1)).forward(&x).unwrap();
    assert_eq!(gap.shape(), [3, 5, 1, 1]);
    let mean = x.mean_dims(&[2, 3], true).unwrap();
    Tolerance::F32_REDUCTION.assert_close("global avg pool", &f32s(&gap), &f32s(&mean));

    let f = Flatten::default();
    assert_eq!((f.start_dim, f.end_dim), (1, -1));
    let flat = f.forward(&gap).unwrap();
    assert_eq!(flat.shape(), [3, 5]);
    assert_eq!(f32s(&flat), f32s(&gap));
    assert_eq!(Flatten::new(0, 1).forward(&x).unwrap().shape(), [15, 7, 13]);
    assert_eq!(
        Flatten::new(-2, -1).forward(&x).unwrap().shape(),
        [3, 5, 91]
    );
    assert!(f.named_parameters().is_empty());
    let e = err_text(Flatten::default().forward(&tensor(&[1.0, 2.0], &[2])));
    assert!(e.contains("flatten"), "{e}");

    // A small CNN head trains end to end: gradients reach the input through every layer.
    let xr = x.requires_grad();
    let bn = BatchNorm2d::new(5).unwrap();
    let h = bn.forward(&xr).unwrap();
    let h = MaxPool2d::new(2).forward(&h).unwrap();
    let h = AdaptiveAvgPool2d::new((2, 2)).forward(&h).unwrap();
    let out = Flatten::default().forward(&h).unwrap();
    assert_eq!(out.shape(), [3, 20]);
    out.square().unwrap().sum().unwrap().backward().unwrap();
    let gx = f32s(&xr.grad().unwrap());
    assert!(gx.iter().all(|v| v.is_finite()) && gx.iter().any(|&v| v != 0.0));
}
