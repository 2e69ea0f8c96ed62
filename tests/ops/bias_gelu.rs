//! The bias_gelu family (`src/ops/bias_gelu.rs`): the GELU forms against CPU twins in f64,
//! finite-difference gradient checks, and the fused bias + GELU against its composed version and
//! the kernels' CPU twin.

use crate::common;

use common::*;
use kiln::ops::bias_gelu::{GeluForm, bias_gelu, gelu};

fn gelu_tanh_cpu(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn gelu_tanh_and_bias_gelu_gradcheck() {
    let s = seed("gelu");
    gradcheck(
        "gelu_tanh",
        &[Input::rand(&[3, 7], s, -3.0, 3.0)],
        |x| gelu(&x[0], GeluForm::Tanh),
        |x| x[0].iter().map(|&v| gelu_tanh_cpu(v)).collect(),
        GradTol::default(),
    );
    gradcheck(
        "bias_gelu_tanh",
        &[
            Input::rand(&[3, 5], s + 1, -3.0, 3.0),
            Input::rand(&[5], s + 2, -1.0, 1.0),
        ],
        |x| bias_gelu(&x[0], &x[1], GeluForm::Tanh),
        |x| {
            let (a, b) = (&x[0], &x[1]);
            (0..a.len())
                .map(|i| gelu_tanh_cpu(a[i] + b[i % 5]))
                .collect()
        },
        GradTol::default(),
    );
    // The erf form is the fused unary kernel; tanh approximates it within ~1e-3.
    let x = tensor(&rand_vec(64, s + 3, -3.0, 3.0), &[64]);
    let e = gelu(&x, GeluForm::Erf).unwrap().to_vec::<f32>().unwrap();
    let t = gelu(&x, GeluForm::Tanh).unwrap().to_vec::<f32>().unwrap();
    for (a, b) in e.iter().zip(&t) {
        assert!((a - b).abs() < 2e-3, "erf {a} vs tanh {b}");
    }
}

/// Fused bias + GELU against its CPU twin at awkward sizes (both forms, forward and both
/// gradients), against the composed version, and an erf-form gradient check.
#[test]
fn bias_gelu_matches_twin_and_composed() {
    use kiln::ops::bias_gelu::bias_gelu_composed;
    use kiln_kernels::reference::bias_gelu as cpu;
    let tol = Tolerance::new(2e-4, 2e-5, "f32 erf/tanh (erf ~1e-6 abs) vs f64");
    for tanh in [false, true] {
        let form = if tanh { GeluForm::Tanh } else { GeluForm::Erf };
        for (r, n) in [(1usize, 1usize), (7, 17), (129, 7), (3, 257)] {
            let s = seed(&format!("bg{tanh}{r}{n}"));
            let x = rand_vec(r * n, s, -4.0, 4.0);
            let b = rand_vec(n, s + 1, -1.0, 1.0);
            let g = rand_vec(r * n, s + 2, -1.0, 1.0);
            let f = |v: &[f32]| -> Vec<f64> { v.iter().map(|&a| a as f64).collect() };
            let what = format!("bias_gelu tanh={tanh} ({r}, {n})");
            let mut outs = Vec::new();
            for fused in [true, false] {
                let xt = tensor(&x, &[r, n]).requires_grad();
                let bt = tensor(&b, &[n]).requires_grad();
                let y = if fused {
                    bias_gelu(&xt, &bt, form)
                } else {
                    bias_gelu_composed(&xt, &bt, form)
                }
                .unwrap();
                y.mul(&tensor(&g, &[r, n]))
                    .unwrap()
                    .sum()
                    .unwrap()
                    .backward()
                    .unwrap();
                outs.push([
                    y.to_vec::<f32>().unwrap(),
                    xt.grad().unwrap().to_vec::<f32>().unwrap(),
                    bt.grad().unwrap().to_vec::<f32>().unwrap(),
                ]);
            }
            let (dx, db) = cpu::backward(tanh, &f(&x), &f(&b), &f(&g));
            let want = [cpu::forward(tanh, &f(&x), &f(&b)), dx, db];
            for k in 0..3 {
                tol.assert_close(&format!("{what} fused out {k}"), &outs[0][k], &want[k]);
                tol.assert_close(
                    &format!("{what} fused vs composed {k}"),
                    &outs[0][k],
                    &f(&outs[1][k]),
                );
            }
        }
    }
    gradcheck(
        "bias_gelu_erf",
        &[
            Input::rand(&[3, 5], seed("bg_erf"), -3.0, 3.0),
            Input::rand(&[5], seed("bg_erf") + 1, -1.0, 1.0),
        ],
        |x| bias_gelu(&x[0], &x[1], GeluForm::Erf),
        |x| cpu::forward(false, &x[0], &x[1]),
        GradTol::default(),
    );
}
