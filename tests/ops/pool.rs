//! Pooling ops: padding and divisor rules through the ops, the global-pool fallback, strided
//! inputs, finite-difference gradient checks of every op, the layers, and error cases
//! (BatchNorm2d is in `batch_norm.rs`). The pool.wgsl kernels against their CPU twins are
//! kiln-kernels' tests (`kernels/tests/kernels/pool.rs`), whose cases are shared here.

use crate::common;

#[path = "../../kernels/tests/kernels/pool/cases.rs"]
mod cases;

use cases::*;
use common::*;
use kiln::DType;
use kiln::nn::{AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Flatten, MaxPool2d, Module};
use kiln_kernels::launch::pool::{PoolShape, Window};
use kiln_kernels::reference::pool as cpu;

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
fn avg_pool_counts_padding_in_the_divisor() {
    // 2x2 input, 2x2 window, padding 1: the corner window holds one real element of four.
    let x = tensor(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let y = x.avg_pool2d((2, 2), (1, 1), (1, 1)).unwrap();
    assert_eq!(y.shape(), [1, 1, 3, 3]);
    let want = [0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0];
    WINDOW_SUM.assert_close("count_include_pad", &f32s(&y), &want);
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
    for (k, case) in ADAPTIVE.iter().enumerate() {
        let s = adaptive_shape(case);
        let (n, c, h, w, out) = *case;
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
