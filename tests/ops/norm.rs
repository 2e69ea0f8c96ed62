//! LayerNorm / RMSNorm ops: the fused ops against the composed versions, finite-difference
//! gradient checks, a strided input, rows past llvmpipe's loop limit (the weight-gradient column
//! sums, and the composed path for long rows), and the modules. The `norm.wgsl` launchers against
//! the f64 CPU twin at awkward sizes are kiln-kernels' tests (`kernels/tests/kernels/norm.rs`).

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::{LayerNorm, Module, RmsNorm};
use kiln::ops::norm;
use kiln_kernels::launch::norm::NormKind;
use kiln_kernels::reference::norm as cpu;

/// f32 row sums (mean, variance, dot products over D <= 257) in another order than f64.
const TOL: Tolerance = Tolerance::new(
    2e-4,
    2e-5,
    "f32 two-pass row statistics over D <= 257 vs f64",
);

/// Fused vs composed: forward and the three gradients, on a 3-D input.
#[test]
fn fused_matches_composed() {
    let (shape, d) = ([3usize, 5, 17], 17usize);
    let n: usize = shape.iter().product();
    let s = seed("fused_vs_composed");
    let x = rand_vec(n, s, -2.0, 2.0);
    let w = rand_vec(d, s + 1, 0.5, 1.5);
    let b = rand_vec(d, s + 2, -0.5, 0.5);
    let g = tensor(&rand_vec(n, s + 3, -1.0, 1.0), &shape);
    for rms in [false, true] {
        let mut res = Vec::new();
        for fused in [true, false] {
            let xt = tensor(&x, &shape).requires_grad();
            let wt = tensor(&w, &[d]).requires_grad();
            let bt = tensor(&b, &[d]).requires_grad();
            let y = match (rms, fused) {
                (false, true) => norm::layer_norm(&xt, Some(&wt), Some(&bt), 1e-5),
                (false, false) => norm::layer_norm_composed(&xt, Some(&wt), Some(&bt), 1e-5),
                (true, true) => norm::rms_norm(&xt, Some(&wt), 1e-5),
                (true, false) => norm::rms_norm_composed(&xt, Some(&wt), 1e-5),
            }
            .unwrap();
            y.mul(&g).unwrap().sum().unwrap().backward().unwrap();
            let mut v = vec![y.to_vec::<f32>().unwrap()];
            v.push(xt.grad().unwrap().to_vec::<f32>().unwrap());
            v.push(wt.grad().unwrap().to_vec::<f32>().unwrap());
            if !rms {
                v.push(bt.grad().unwrap().to_vec::<f32>().unwrap());
            }
            res.push(v);
        }
        for (k, (a, c)) in res[0].iter().zip(&res[1]).enumerate() {
            let want: Vec<f64> = c.iter().map(|&v| v as f64).collect();
            TOL.assert_close(&format!("rms={rms} output {k} fused vs composed"), a, &want);
        }
    }
}

/// Finite differences of the fused op on a (rows, d) input with affine params (seeded by `tag`).
fn norm_gradcheck(kind: NormKind, rows: usize, d: usize, tag: &str) {
    let s = seed(tag);
    let mut inputs = vec![
        Input::rand(&[rows, d], s, -2.0, 2.0),
        Input::rand(&[d], s + 1, 0.5, 1.5),
    ];
    if kind == NormKind::LayerNorm {
        inputs.push(Input::rand(&[d], s + 2, -0.5, 0.5));
    }
    let name = match kind {
        NormKind::LayerNorm => "layer_norm",
        NormKind::RmsNorm => "rms_norm",
    };
    gradcheck(
        name,
        &inputs,
        |t| match kind {
            NormKind::LayerNorm => norm::layer_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
            NormKind::RmsNorm => norm::rms_norm(&t[0], Some(&t[1]), 1e-5),
        },
        // RMSNorm ignores the bias argument of the twin.
        |x| cpu::norm_forward(kind, d, &x[0], &x[1], x.get(2).unwrap_or(&x[1]), 1e-5).0,
        GradTol::default(),
    );
}

#[test]
fn layer_norm_gradcheck() {
    norm_gradcheck(NormKind::LayerNorm, 3, 7, "ln_gradcheck");
}

#[test]
fn rms_norm_gradcheck() {
    norm_gradcheck(NormKind::RmsNorm, 4, 9, "rms_gradcheck");
}

#[test]
fn strided_input() {
    let (r, d) = (5usize, 7usize);
    let x = rand_vec(r * d, seed("strided"), -1.0, 1.0);
    // Stored as (d, r); its transpose is the (r, d) input.
    let xt = tensor(&x, &[d, r]).t().unwrap();
    let dense: Vec<f64> = (0..r)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| x[j * r + i] as f64)
        .collect();
    let y = norm::layer_norm(&xt, None, None, 1e-5).unwrap();
    let ones = vec![1.0; d];
    let zeros = vec![0.0; d];
    let (want, _) = cpu::norm_forward(NormKind::LayerNorm, d, &dense, &ones, &zeros, 1e-5);
    TOL.assert_close("strided layer_norm", &y.to_vec::<f32>().unwrap(), &want);
}

/// 70,000 rows: the weight and bias gradients sum columns longer than llvmpipe's 65,535-iteration
/// loop limit (a silent truncation would lose the tail rows).
#[test]
fn many_rows_weight_gradient() {
    let (rows, d) = (70_000usize, 3usize);
    let x = rand_vec(rows * d, seed("many_rows"), -1.0, 1.0);
    let xt = tensor(&x, &[rows, d]);
    let wt = tensor(&[1.0, 1.0, 1.0], &[d]).requires_grad();
    let bt = tensor(&[0.0, 0.0, 0.0], &[d]).requires_grad();
    let y = norm::layer_norm(&xt, Some(&wt), Some(&bt), 1e-5).unwrap();
    y.sum().unwrap().backward().unwrap();
    let (_, dw, db) = cpu::norm_backward(
        NormKind::LayerNorm,
        d,
        &f64s(&x),
        &[1.0; 3],
        &vec![1.0; rows * d],
        1e-5,
    );
    let tol = Tolerance::new(1e-4, 1e-2, "f32 sums of 70,000 terms");
    tol.assert_close("db", &bt.grad().unwrap().to_vec::<f32>().unwrap(), &db);
    tol.assert_close("dw", &wt.grad().unwrap().to_vec::<f32>().unwrap(), &dw);
    assert_eq!(db[0], rows as f64);
}

/// Rows longer than the fused kernel's loop budget (`MAX_D`) take the composed path and still
/// match the twin (the launcher's refusal is tested in kiln-kernels).
#[test]
fn rows_past_the_loop_limit() {
    let (rows, d) = (2usize, norm::MAX_D + 3);
    let x = rand_vec(rows * d, seed("long_rows"), -1.0, 1.0);
    let xt = tensor(&x, &[rows, d]);
    let ones = vec![1.0f64; d];
    for kind in [NormKind::LayerNorm, NormKind::RmsNorm] {
        let y = match kind {
            NormKind::LayerNorm => norm::layer_norm(&xt, None, None, 1e-5),
            NormKind::RmsNorm => norm::rms_norm(&xt, None, 1e-5),
        }
        .unwrap();
        let (want, _) = cpu::norm_forward(kind, d, &f64s(&x), &ones, &vec![0.0; d], 1e-5);
        Tolerance::new(1e-3, 1e-4, "f32 sums of 16,387 terms").assert_close(
            &format!("{kind:?} d = {d}"),
            &y.to_vec::<f32>().unwrap(),
            &want,
        );
    }
}

/// The modules use the fused ops and name their parameters like PyTorch.
#[test]
fn modules() {
    let ln = LayerNorm::new(17, 1e-5, true).unwrap();
    let rn = RmsNorm::new(17, 1e-6).unwrap();
    let names: Vec<String> = ln.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    let names: Vec<String> = rn.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
    let x = tensor(&rand_vec(2 * 17, seed("modules"), -1.0, 1.0), &[2, 17]);
    let a = ln.forward(&x).unwrap();
    assert_eq!(a.grad_fn(), Some("layer_norm"));
    assert_eq!(rn.forward(&x).unwrap().grad_fn(), Some("rms_norm"));
    assert!(ln.forward(&tensor(&[1.0; 4], &[1, 4])).is_err());
    assert!(norm::layer_norm(&x, Some(&tensor(&[1.0; 3], &[3])), None, 1e-5).is_err());
    let _ = Tensor::scalar(0.0);
}
