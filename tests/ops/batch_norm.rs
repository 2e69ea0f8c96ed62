//! BatchNorm2d (the batch_norm kernel family): the kernels against their CPU twin, gradient checks,
//! running statistics, eval mode and agreement with the composed BatchNorm1d.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::{BatchNorm1d, BatchNorm2d, BatchNormOptions, Module, batch_norm2d};

use kiln_kernels::launch::batch_norm::NormShape;
use kiln_kernels::reference::batch_norm as cpu_norm;

const BN: Tolerance = Tolerance::new(3e-4, 3e-5, "f32 batch statistics (two-pass) vs f64");

fn bn_shape(shape: &[usize]) -> NormShape {
    NormShape {
        n: shape[0],
        c: shape[1],
        hw: shape[2] * shape[3],
    }
}

/// The gradients of `x` and of `bn`'s weight and bias against the CPU twin's `(dx, dw, db)`.
fn assert_grads(
    tol: &Tolerance,
    what: &str,
    x: &Tensor,
    bn: &BatchNorm2d,
    (dx, dw, db): (Vec<f64>, Vec<f64>, Vec<f64>),
) {
    let grad = |t: &Tensor| f32s(&t.grad().unwrap());
    tol.assert_close(&format!("{what} dx"), &grad(x), &dx);
    tol.assert_close(
        &format!("{what} dw"),
        &grad(bn.weight.as_ref().unwrap()),
        &dw,
    );
    tol.assert_close(&format!("{what} db"), &grad(bn.bias.as_ref().unwrap()), &db);
}

const BN_SHAPES: &[[usize; 4]] = &[[3, 5, 7, 13], [1, 1, 17, 17], [3, 5, 1, 1], [1, 7, 1, 7]];

#[test]
fn batch_norm2d_training_matches_cpu_twin() {
    for (k, shape) in BN_SHAPES.iter().enumerate() {
        let s = bn_shape(shape);
        let mut bn = BatchNorm2d::new(s.c).unwrap();
        let w = rand_vec(s.c, seed("bn w") + k as u64, 0.5, 1.5);
        let b = rand_vec(s.c, seed("bn b") + k as u64, -0.5, 0.5);
        bn.weight = Some(tensor(&w, &[s.c]).requires_grad());
        bn.bias = Some(tensor(&b, &[s.c]).requires_grad());
        let xs = rand_vec(s.len(), seed("bn x") + k as u64, -1.0, 3.0);
        let x = at_offset(&xs, shape).requires_grad();
        let y = bn.forward(&x).unwrap();
        let (x64, w64, b64) = (f64s(&xs), f64s(&w), f64s(&b));
        let (want, mean, var) = cpu_norm::batch_norm_train(s, &x64, &w64, &b64, 1e-5);
        BN.assert_close(&format!("bn2d forward {shape:?}"), &f32s(&y), &want);

        // Running statistics: momentum 0.1 from (0, 1), unbiased variance.
        let m = s.per_channel() as f64;
        let rm: Vec<f64> = mean.iter().map(|v| 0.1 * v).collect();
        let rv: Vec<f64> = var.iter().map(|v| 0.9 + 0.1 * v * m / (m - 1.0)).collect();
        BN.assert_close("running_mean", &f32s(&bn.running_mean), &rm);
        BN.assert_close("running_var", &f32s(&bn.running_var), &rv);
        assert_eq!(bn.num_batches_tracked.item().unwrap(), 1.0);

        let gs = rand_vec(s.len(), seed("bn g") + k as u64, -1.0, 1.0);
        y.backward_with(&tensor(&gs, shape)).unwrap();
        let (dx, dw, db) =
            cpu_norm::batch_norm_backward(s, true, &f64s(&gs), &x64, &mean, &var, &w64, 1e-5);
        let tol = Tolerance::new(1e-3, 1e-4, "f32 fused backward through batch statistics");
        assert_grads(&tol, "bn2d", &x, &bn, (dx, dw, db));

        bn.forward(&x).unwrap();
        assert_eq!(bn.num_batches_tracked.item().unwrap(), 2.0);
        bn.set_training(false);
        bn.forward(&x).unwrap();
        assert_eq!(
            bn.num_batches_tracked.item().unwrap(),
            2.0,
            "eval must not count"
        );
    }
}

#[test]
fn batch_norm2d_statistics_over_long_channels() {
    // 2 * 230 * 230 = 105,800 values per channel: beyond one invocation's 65,535 loop iterations.
    let shape = [2, 3, 230, 230];
    let s = bn_shape(&shape);
    let xs = rand_vec(s.len(), seed("bn long"), 1.0, 5.0);
    let bn = BatchNorm2d::new(3).unwrap();
    let y = bn.forward(&tensor(&xs, &shape)).unwrap();
    let x64 = f64s(&xs);
    let (want, mean, _) = cpu_norm::batch_norm_train(s, &x64, &[1.0; 3], &[0.0; 3], 1e-5);
    Tolerance::new(1e-3, 1e-3, "f32 sums of 1e5 terms").assert_close("long bn", &f32s(&y), &want);
    let rm: Vec<f64> = mean.iter().map(|v| 0.1 * v).collect();
    BN.assert_close("long running_mean", &f32s(&bn.running_mean), &rm);
}

#[test]
fn batch_norm2d_gradcheck_training_and_eval() {
    let shape = [3, 2, 5, 7];
    let s = bn_shape(&shape);
    let tol = GradTol {
        forward: BN,
        grad: Tolerance::new(1e-3, 1e-4, "f32 fused backward through batch statistics"),
    };
    let inputs = [
        Input::rand(&shape, seed("gc x"), -1.0, 2.0),
        Input::rand(&[2], seed("gc w"), 0.5, 1.5),
        Input::rand(&[2], seed("gc b"), -0.5, 0.5),
    ];
    gradcheck(
        "batch_norm2d training",
        &inputs,
        |t| batch_norm2d(&t[0], None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5),
        |x| cpu_norm::batch_norm_train(s, &x[0], &x[1], &x[2], 1e-5).0,
        tol,
    );
    let rm = [0.3f32, -0.2];
    let rv = [0.8f32, 1.7];
    gradcheck(
        "batch_norm2d eval",
        &inputs,
        |t| {
            let (m, v) = (tensor(&rm, &[2]), tensor(&rv, &[2]));
            batch_norm2d(
                &t[0],
                Some((&m, &v)),
                Some(&t[1]),
                Some(&t[2]),
                false,
                0.1,
                1e-5,
            )
        },
        |x| cpu_norm::normalize(s, &x[0], &f64s(&rm), &f64s(&rv), &x[1], &x[2], 1e-5),
        tol,
    );
}

#[test]
fn batch_norm2d_updates_running_stats_that_share_storage() {
    // Running statistics as two rows of one tensor: the fused kernel needs distinct buffers, so
    // the update goes through a copy and must land back in the caller's view.
    let shape = [3, 4, 1, 5];
    let s = bn_shape(&shape);
    let xs = rand_vec(s.len(), seed("run x"), -1.0, 3.0);
    let x = tensor(&xs, &shape);
    let (mean, var) = cpu_norm::batch_stats(s, &f64s(&xs));
    let init = rand_vec(8, seed("run init"), 0.5, 1.5);
    let both = tensor(&init, &[2, 4]);
    let rm = both.narrow(0, 0, 1).unwrap().reshape(&[4]).unwrap();
    let rv = both.narrow(0, 1, 1).unwrap().reshape(&[4]).unwrap();
    assert!(rm.shares_storage(&rv) && rm.shares_storage(&both));
    let (mut want_m, mut want_v) = (f64s(&init[..4]), f64s(&init[4..]));
    cpu_norm::update_running(s, 0.3, &mean, &var, &mut want_m, &mut want_v);
    batch_norm2d(&x, Some((&rm, &rv)), None, None, true, 0.3, 1e-5).unwrap();
    let all = f32s(&both);
    BN.assert_close("shared running_mean", &all[..4], &want_m);
    BN.assert_close("shared running_var", &all[4..], &want_v);
}

#[test]
fn batch_norm2d_eval_uses_running_stats() {
    let shape = [3, 5, 7, 7];
    let s = bn_shape(&shape);
    let mut bn = BatchNorm2d::new(5).unwrap();
    let rm = rand_vec(5, seed("rm"), -1.0, 1.0);
    let rv = rand_vec(5, seed("rv"), 0.5, 2.0);
    bn.running_mean.copy_from(&tensor(&rm, &[5])).unwrap();
    bn.running_var.copy_from(&tensor(&rv, &[5])).unwrap();
    bn.set_training(false);
    assert!(!bn.is_training());
    let xs = rand_vec(s.len(), seed("eval x"), -2.0, 2.0);
    let x = tensor(&xs, &shape).requires_grad();
    let frozen = bn.forward(&tensor(&xs, &shape)).unwrap();
    frozen.sum().unwrap().backward().unwrap();
    let w_grad_once = f32s(&bn.weight.as_ref().unwrap().grad().unwrap());
    bn.weight.as_ref().unwrap().clear_grad();
    bn.bias.as_ref().unwrap().clear_grad();
    let y = bn.forward(&x).unwrap();
    let (ones, zeros) = (vec![1.0; 5], vec![0.0; 5]);
    let want = cpu_norm::normalize(s, &f64s(&xs), &f64s(&rm), &f64s(&rv), &ones, &zeros, 1e-5);
    BN.assert_close("eval forward", &f32s(&y), &want);
    assert_eq!(
        f32s(&bn.running_mean),
        rm,
        "eval must not touch the running mean"
    );
    let gs = rand_vec(s.len(), seed("eval g"), -1.0, 1.0);
    y.backward_with(&tensor(&gs, &shape)).unwrap();
    let (dx, dw, db) = cpu_norm::batch_norm_backward(
        s,
        false,
        &f64s(&gs),
        &f64s(&xs),
        &f64s(&rm),
        &f64s(&rv),
        &ones,
        1e-5,
    );
    assert_grads(&BN, "eval", &x, &bn, (dx, dw, db));
    // An input without grad (a first layer) still trains the weight: dw = sum xhat for g = 1.
    let xhat = cpu_norm::normalize(s, &f64s(&xs), &f64s(&rm), &f64s(&rv), &ones, &zeros, 1e-5);
    let want: Vec<f64> = (0..5)
        .map(|c| {
            (0..xs.len())
                .filter(|i| (i / 49) % 5 == c)
                .map(|i| xhat[i])
                .sum()
        })
        .collect();
    BN.assert_close("frozen-input dw", &w_grad_once, &want);
}

#[test]
fn batch_norm2d_matches_composed_batch_norm1d() {
    // BatchNorm1d on (N, C, H*W) is the same function, composed from primitive ops.
    let shape = [3, 5, 7, 13];
    let xs = rand_vec(3 * 5 * 7 * 13, seed("compose"), -2.0, 2.0);
    let gs = rand_vec(xs.len(), seed("compose g"), -1.0, 1.0);
    let bn2 = BatchNorm2d::new(5).unwrap();
    let bn1 = BatchNorm1d::new(5).unwrap();
    let x2 = tensor(&xs, &shape).requires_grad();
    let x1 = tensor(&xs, &[3, 5, 91]).requires_grad();
    let y2 = bn2.forward(&x2).unwrap();
    let y1 = bn1.forward(&x1).unwrap();
    BN.assert_close("fused vs composed", &f32s(&y2), &f32s(&y1));
    y2.backward_with(&tensor(&gs, &shape)).unwrap();
    y1.backward_with(&tensor(&gs, &[3, 5, 91])).unwrap();
    let tol = Tolerance::new(1e-3, 1e-4, "fused vs composed f32 backward");
    tol.assert_close("dx", &f32s(&x2.grad().unwrap()), &f32s(&x1.grad().unwrap()));
    for ((n2, p2), (n1, p1)) in bn2.named_parameters().iter().zip(bn1.named_parameters()) {
        assert_eq!(n2, &n1);
        tol.assert_close(n2, &f32s(&p2.grad().unwrap()), &f32s(&p1.grad().unwrap()));
    }
    for ((n2, b2), (n1, b1)) in bn2.named_buffers().iter().zip(bn1.named_buffers()) {
        assert_eq!(n2, &n1);
        BN.assert_close(n2, &f32s(b2), &f32s(&b1));
    }
}

#[test]
fn batch_norm2d_names_options_and_errors() {
    let bn = BatchNorm2d::new(4).unwrap();
    let names: Vec<String> = bn.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    let bufs: Vec<String> = bn.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(bufs, ["running_mean", "running_var", "num_batches_tracked"]);
    assert_eq!(bn.num_parameters(), 8);
    assert_eq!(f32s(&bn.running_var), [1.0; 4]);

    let opts = BatchNormOptions {
        affine: false,
        eps: 1e-3,
        momentum: 0.5,
    };
    let plain = BatchNorm2d::with_options(2, opts).unwrap();
    assert!(plain.named_parameters().is_empty());
    let xs = rand_vec(3 * 2 * 2 * 3, seed("plain"), -1.0, 1.0);
    let s = NormShape { n: 3, c: 2, hw: 6 };
    let y = plain.forward(&tensor(&xs, &[3, 2, 2, 3])).unwrap();
    let (want, mean, _) = cpu_norm::batch_norm_train(s, &f64s(&xs), &[1.0; 2], &[0.0; 2], 1e-3);
    BN.assert_close("affine = false", &f32s(&y), &want);
    let rm: Vec<f64> = mean.iter().map(|v| 0.5 * v).collect();
    BN.assert_close("momentum 0.5", &f32s(&plain.running_mean), &rm);

    let x = tensor(&rand_vec(2 * 4 * 3 * 3, 2, -1.0, 1.0), &[2, 4, 3, 3]);
    let e = err_text(BatchNorm2d::new(3).unwrap().forward(&x));
    assert!(
        e.contains("BatchNorm2d") && e.contains("(N, 3, H, W)") && e.contains("[2, 4, 3, 3]"),
        "{e}"
    );
    let e = err_text(bn.forward(&x.reshape(&[2, 4, 9]).unwrap()));
    assert!(e.contains("[2, 4, 9]"), "{e}");
    let one = tensor(&[1.0, 2.0, 3.0, 4.0], &[1, 4, 1, 1]);
    let e = err_text(bn.forward(&one));
    assert!(e.contains("more than one value per channel"), "{e}");
    assert!(err_text(BatchNorm2d::new(0)).contains("num_features"));
    let bad = BatchNormOptions {
        momentum: 1.5,
        ..Default::default()
    };
    assert!(err_text(BatchNorm2d::with_options(2, bad)).contains("momentum"));
    let w = tensor(&[1.0, 2.0], &[2]);
    let e = err_text(batch_norm2d(&x, None, Some(&w), None, true, 0.1, 1e-5));
    assert!(e.contains("weight must have shape (4)"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Layers
