//! Convolution ops: gradient checks of `Tensor::conv2d` / `conv1d` in f64 on every rung, views,
//! the layers, and the errors. The conv ladder against its CPU twin is kiln-kernels'
//! tests/kernels/conv.rs.

use crate::common;

use common::{GradTol, Input, Tolerance, f64s, gpu, gradcheck, rand_vec, seed, tensor};
use kiln::Tensor;
use kiln::nn::{Conv1d, Conv2d, Module};
use kiln::ops::{Conv1dOptions, Conv2dOptions};
use kiln_kernels::launch::conv::{Conv2dShape, ConvVariant};
use kiln_kernels::reference::conv as cpu;

/// `((N, C_in, (H, W), C_out, (KH, KW)), (stride, padding, dilation, groups))`, the first three
/// square.
type ShapeArgs = (
    (usize, usize, (usize, usize), usize, (usize, usize)),
    (usize, usize, usize, usize),
);

fn shape(((n, c_in, hw, c_out, k), (st, p, d, groups)): ShapeArgs) -> Conv2dShape {
    let (stride, padding, dilation) = ((st, st), (p, p), (d, d));
    Conv2dShape {
        stride,
        padding,
        dilation,
        groups,
        ..Conv2dShape::new(n, c_in, c_out, hw, k)
    }
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
        (
            shape(((2, 2, (5, 4), 3, (3, 3)), (2, 1, 1, 1))),
            "strided padded",
        ),
        (
            shape(((1, 4, (5, 6), 2, (2, 3)), (1, 2, 2, 2))),
            "grouped dilated",
        ),
        (
            shape(((2, 3, (4, 5), 3, (3, 3)), (1, 1, 1, 3))),
            "depthwise",
        ),
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
        ..shape(((2, 4, (1, 11), 6, (1, 3)), (1, 0, 1, 2)))
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
    let s = shape(((2, 3, (5, 6), 4, (3, 3)), (1, 1, 1, 1)));
    let sd = seed("views");
    let raw = rand_vec(2 * 5 * 3 * 6, sd, -1.0, 1.0);
    let xv = tensor(&raw, &[2, 5, 3, 6]).transpose(1, 2).unwrap();
    let x_nchw = xv.contiguous().unwrap().to_vec::<f32>().unwrap();
    let w = rand_vec(4 * 3 * 9, sd ^ 1, -1.0, 1.0);
    let wt = tensor(&w, &[4, 3, 3, 3]).requires_grad();
    let y = xv.conv2d(&wt, None, opts(1, 1, 1, 1)).unwrap();
    let want = cpu::conv2d_forward(&s, &f64s(&x_nchw), &f64s(&w), None);
    Tolerance::f32_dot(27).assert_close("view input", &y.to_vec::<f32>().unwrap(), &want);
    y.sum().unwrap().backward().unwrap();
    let ones = vec![1.0; want.len()];
    Tolerance::f32_dot(60).assert_close(
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
    let ones = |shape: &[usize]| Tensor::ones_on(&g, shape).unwrap();
    let x = ones(&[2, 3, 8, 8]);
    let w = ones(&[16, 4, 3, 3]);
    let msg = |r: kiln::Result<Tensor>| r.expect_err("should fail").to_string();
    let d = Conv2dOptions::default();
    assert_eq!(
        msg(x.conv2d(&w, None, d)),
        "conv2d: input channels 3 do not match weight (16, 4, 3, 3) x groups 1"
    );
    let w3 = ones(&[16, 3, 3, 3]);
    let e = msg(x.conv2d(&ones(&[16, 3, 3]), None, d));
    assert!(e.contains("conv2d") && e.contains("(16, 3, 3)"), "{e}");
    let e = msg(x.conv2d(&w3, Some(&ones(&[15])), d));
    assert!(e.contains("bias (15,)"), "{e}");
    let e = msg(x.conv2d(&ones(&[5, 1, 3, 3]), None, opts(1, 0, 1, 3)));
    assert!(e.contains("not a multiple of groups 3"), "{e}");
    let e = msg(x.conv2d(&w3, None, opts(0, 0, 1, 1)));
    assert!(e.contains("at least 1"), "{e}");
    let e = msg(x.conv2d(&ones(&[2, 3, 9, 9]), None, d));
    assert!(e.contains("more than the padded input"), "{e}");
    let e = msg(x.conv2d(&ones(&[2, 3, 5, 5]), None, opts(1, 0, 2, 1)));
    assert!(e.contains("dilation"), "{e}");
    let xi = Tensor::from_slice_on(&g, &[1i32; 4], &[1, 1, 2, 2]).unwrap();
    assert!(msg(xi.conv2d(&ones(&[1, 1, 1, 1]), None, d)).contains("f32"));
    let x1 = ones(&[2, 3, 8]);
    let e = msg(x1.conv1d(&ones(&[4, 2, 3]), None, Conv1dOptions::default()));
    assert_eq!(
        e,
        "conv1d: input channels 3 do not match weight (4, 2, 3) x groups 1"
    );
    assert!(Conv2d::new_on(&g, 3, 4, (3, 3), opts(1, 0, 1, 2)).is_err());
    assert!(Conv1d::new_on(&g, 3, 4, 0, Conv1dOptions::default()).is_err());
    // Loop nests longer than lavapipe runs are refused, not silently truncated (a 1x1 kernel
    // over 25,000 channels was measured to return 44% of the sum).
    let wide = ones(&[1, 25_000, 1, 1]);
    let e = msg(wide.conv2d(&wide, None, d));
    assert!(e.contains("silently stops"), "{e}");
}
