//! Every loss against a CPU f64 reference and by finite differences, with all options and
//! reductions, plus misuse errors.

use super::*;

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

#[test]
fn cross_entropy_gradients_all_options() {
    let (n, c) = (5, 7);
    let targets = [3u32, 0, 6, 3, 1];
    let g = gpu();
    let t = Tensor::from_slice_on(&g, &targets, &[n]).unwrap();
    let wv = rand_vec(c, seed("cew"), 0.5, 2.0);
    let w = Tensor::from_slice_on(&g, &wv, &[c]).unwrap();
    let w64: Vec<f64> = wv.iter().map(|&v| v as f64).collect();
    for eps in [0.0f32, 0.1] {
        for weighted in [false, true] {
            for red in REDUCTIONS {
                let name = format!("cross_entropy eps {eps} weighted {weighted} {red:?}");
                let opts = CrossEntropyOptions {
                    label_smoothing: eps,
                    class_weights: weighted.then(|| w.clone()),
                    reduction: red,
                };
                gradcheck(
                    &name,
                    &[Input::rand(&[n, c], seed(&name), -2.0, 2.0)],
                    |ts| loss::cross_entropy(&ts[0], &t, &opts),
                    |xs| {
                        cross_entropy_cpu(
                            &xs[0],
                            c,
                            &targets,
                            weighted.then_some(w64.as_slice()),
                            eps as f64,
                            red,
                        )
                    },
                    GradTol::default(),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_fused_and_composed_paths_agree() {
    let (n, c) = (129, 17);
    let g = gpu();
    let xv = rand_vec(n * c, seed("cefc"), -3.0, 3.0);
    let tv = rand_indices(n, seed("cefct"), c as u32);
    let t = Tensor::from_slice_on(&g, &tv, &[n]).unwrap();
    // No options: the fused kernel itself.
    let x = tensor(&xv, &[n, c]).requires_grad();
    let fused = loss::cross_entropy(&x, &t, &CrossEntropyOptions::default()).unwrap();
    assert_eq!(fused.grad_fn(), Some("cross_entropy"));
    assert_eq!(
        fused.item().unwrap(),
        x.cross_entropy(&t).unwrap().item().unwrap()
    );
    fused.backward().unwrap();
    // Unit class weights take the composed path and must give the same loss and gradient.
    let x2 = tensor(&xv, &[n, c]).requires_grad();
    let opts = CrossEntropyOptions {
        class_weights: Some(Tensor::ones_on(&g, &[c]).unwrap()),
        ..Default::default()
    };
    let composed = loss::cross_entropy(&x2, &t, &opts).unwrap();
    assert_ne!(composed.grad_fn(), Some("cross_entropy"));
    let tol = Tolerance::new(3e-4, 1e-6, "log_softmax + gather vs the fused kernel, f32");
    tol.assert_close(
        "composed vs fused loss",
        &[composed.item().unwrap()],
        &[fused.item().unwrap()],
    );
    composed.backward().unwrap();
    tol.assert_close(
        "composed vs fused gradient",
        &f32s(&x2.grad().unwrap()),
        &f32s(&x.grad().unwrap()),
    );
    // A target >= C is NaN on both paths.
    let bad = Tensor::from_slice_on(&g, &[0u32, c as u32 + 2], &[2]).unwrap();
    let x3 = tensor(&xv[..2 * c], &[2, c]);
    let none = CrossEntropyOptions {
        reduction: Reduction::None,
        ..opts.clone()
    };
    let rows = f32s(&loss::cross_entropy(&x3, &bad, &none).unwrap());
    assert!(rows[0].is_finite() && rows[1].is_nan(), "rows {rows:?}");
    assert!(
        loss::cross_entropy(&x3, &bad, &opts)
            .unwrap()
            .item()
            .unwrap()
            .is_nan()
    );
}

#[test]
fn nll_loss_gradients() {
    let (n, c) = (6, 4);
    let targets = [1u32, 3, 0, 3, 2, 1];
    let g = gpu();
    let t = Tensor::from_slice_on(&g, &targets, &[n]).unwrap();
    let wv = [0.5f32, 2.0, 1.0, 1.5];
    let w = Tensor::from_slice_on(&g, &wv, &[c]).unwrap();
    for weighted in [false, true] {
        for red in REDUCTIONS {
            let name = format!("nll_loss weighted {weighted} {red:?}");
            gradcheck(
                &name,
                &[Input::rand(&[n, c], seed(&name), -3.0, -0.1)],
                |ts| loss::nll_loss(&ts[0], &t, weighted.then_some(&w), red),
                |xs| {
                    let wt = |i: usize| {
                        if weighted {
                            wv[targets[i] as usize] as f64
                        } else {
                            1.0
                        }
                    };
                    let rows: Vec<f64> = (0..n)
                        .map(|i| -wt(i) * xs[0][i * c + targets[i] as usize])
                        .collect();
                    match red {
                        Reduction::Mean => {
                            vec![rows.iter().sum::<f64>() / (0..n).map(wt).sum::<f64>()]
                        }
                        _ => reduce_cpu(rows, red),
                    }
                },
                GradTol::default(),
            );
        }
    }
}

#[test]
fn regression_losses_gradients() {
    let shape = [3usize, 7];
    let delta = 0.7;
    for red in REDUCTIONS {
        let inputs = |tag: &str| {
            [
                Input::rand(&shape, seed(&format!("{tag}{red:?}x")), -1.0, 1.0),
                Input::rand(&shape, seed(&format!("{tag}{red:?}y")), -1.0, 1.0),
            ]
        };
        let diff = |xs: &[Vec<f64>]| -> Vec<f64> {
            xs[0].iter().zip(&xs[1]).map(|(a, b)| a - b).collect()
        };
        gradcheck(
            &format!("mse {red:?}"),
            &inputs("mse"),
            |ts| loss::mse_loss(&ts[0], &ts[1], red),
            |xs| reduce_cpu(diff(xs).iter().map(|d| d * d).collect(), red),
            GradTol::default(),
        );
        gradcheck(
            &format!("l1 {red:?}"),
            &inputs("l1"),
            |ts| loss::l1_loss(&ts[0], &ts[1], red),
            |xs| reduce_cpu(diff(xs).iter().map(|d| d.abs()).collect(), red),
            GradTol::default(),
        );
        gradcheck(
            &format!("huber {red:?}"),
            &inputs("huber"),
            |ts| loss::huber_loss(&ts[0], &ts[1], delta as f32, red),
            |xs| {
                let h = |d: f64| {
                    if d.abs() < delta {
                        0.5 * d * d
                    } else {
                        delta * (d.abs() - 0.5 * delta)
                    }
                };
                reduce_cpu(diff(xs).into_iter().map(h).collect(), red)
            },
            GradTol::default(),
        );
    }
}

/// PyTorch's BCEWithLogits: -(p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), in f64.
fn bce_cpu(x: &[f64], y: &[f64], pw: Option<&[f64]>) -> Vec<f64> {
    let c = pw.map_or(1, |p| p.len());
    (0..x.len())
        .map(|i| {
            let p = pw.map_or(1.0, |p| p[i % c]);
            p * y[i] * softplus(-x[i]) + (1.0 - y[i]) * softplus(x[i])
        })
        .collect()
}

#[test]
fn bce_with_logits_gradients_and_stability() {
    let shape = [3usize, 7];
    let pwv = rand_vec(7, seed("pw"), 0.5, 3.0);
    let pw = tensor(&pwv, &[7]);
    let pw64: Vec<f64> = pwv.iter().map(|&v| v as f64).collect();
    for with_pw in [false, true] {
        for red in REDUCTIONS {
            let name = format!("bce_with_logits pos_weight {with_pw} {red:?}");
            gradcheck(
                &name,
                &[
                    Input::rand(&shape, seed(&name), -4.0, 4.0),
                    Input::rand(&shape, seed(&name) + 1, 0.0, 1.0),
                ],
                |ts| loss::bce_with_logits(&ts[0], &ts[1], with_pw.then_some(&pw), red),
                |xs| {
                    reduce_cpu(
                        bce_cpu(&xs[0], &xs[1], with_pw.then_some(pw64.as_slice())),
                        red,
                    )
                },
                GradTol::default(),
            );
        }
    }
    // Large logits neither overflow nor lose the loss; at x = 0 the gradient is sigmoid(0) - y.
    let xv = [-100.0f32, -30.0, 0.0, 30.0, 100.0];
    let yv = [0.0f32, 1.0, 0.25, 0.0, 1.0];
    let x = tensor(&xv, &[5]).requires_grad();
    let l = loss::bce_with_logits(&x, &tensor(&yv, &[5]), None, Reduction::None).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    Tolerance::new(1e-6, 1e-6, "exact up to f32 rounding").assert_close(
        "bce of large logits",
        &f32s(&l),
        &bce_cpu(&f64s(&xv), &f64s(&yv), None),
    );
    l.sum().unwrap().backward().unwrap();
    let gx = f32s(&x.grad().unwrap());
    assert_eq!(gx[2], 0.25, "d/dx at x = 0 must be sigmoid(0) - y");
    Tolerance::new(1e-6, 1e-6, "sigmoid(x) - y").assert_close(
        "bce gradient",
        &gx,
        &[0.0, -1.0, 0.25, 1.0, 0.0],
    );
}

// ---------------------------------------------------------------- Errors

#[test]
fn misuse_is_an_error_naming_the_problem() {
    let g = gpu();
    let x = tensor(&rand_vec(12, 1, -1.0, 1.0), &[3, 4]);
    let t = Tensor::from_slice_on(&g, &[0u32, 1, 2], &[3]).unwrap();
    let tf = tensor(&[0.0, 1.0, 2.0], &[3]);
    let ce =
        |x: &Tensor, t: &Tensor, o: &CrossEntropyOptions| err_text(loss::cross_entropy(x, t, o));
    let d = CrossEntropyOptions::default();
    assert!(ce(&x, &tf, &d).contains("u32"));
    let smoothed = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    assert!(ce(&x, &tf, &smoothed).contains("u32"));
    assert!(ce(&x, &t.narrow(0, 0, 2).unwrap(), &smoothed).contains("targets must have shape (3)"));
    assert!(ce(&x.reshape(&[3, 2, 2]).unwrap(), &t, &smoothed).contains("(N, C)"));
    let bad_smooth = CrossEntropyOptions {
        label_smoothing: 1.5,
        ..Default::default()
    };
    assert!(ce(&x, &t, &bad_smooth).contains("label_smoothing"));
    let bad_w = CrossEntropyOptions {
        class_weights: Some(tensor(&[1.0; 3], &[3])),
        ..Default::default()
    };
    assert!(ce(&x, &t, &bad_w).contains("class_weights must have shape (4)"));
    assert!(err_text(loss::nll_loss(&x, &tf, None, Reduction::Mean)).contains("u32"));
    let y = tensor(&[0.0; 4], &[4]);
    assert!(err_text(loss::mse_loss(&x, &y, Reduction::Mean)).contains("[3, 4]"));
    let (t_f32, x_i32) = (
        t.to_dtype(DType::F32).unwrap(),
        x.to_dtype(DType::I32).unwrap(),
    );
    let e = err_text(loss::l1_loss(&x, &t_f32, Reduction::Sum));
    assert!(e.contains("differ"), "{e}");
    assert!(err_text(loss::huber_loss(&x, &x, 0.0, Reduction::Mean)).contains("delta"));
    let w3 = tensor(&[1.0; 3], &[3]);
    let e = err_text(loss::bce_with_logits(&x, &x, Some(&w3), Reduction::Mean));
    assert!(e.contains("pos_weight"), "{e}");
    let e = err_text(loss::mse_loss(&x, &x_i32, Reduction::Mean));
    assert!(e.contains("f32 target"), "{e}");

    let lin = Linear::from_tensors(tensor(&[0.5; 6], &[2, 3]), None).unwrap();
    let e = err_text(lin.forward(&x));
    assert!(
        e.contains("Linear") && e.contains("[3, 4]") && e.contains("(..., 3)"),
        "{e}"
    );
    assert!(
        err_text(Linear::from_tensors(
            tensor(&[0.5; 6], &[2, 3]),
            Some(tensor(&[0.0; 3], &[3]))
        ))
        .contains("bias must have shape (2)")
    );
    assert!(err_text(LayerNorm::new(5, 1e-5, true).unwrap().forward(&x)).contains("(..., 5)"));
    let bn = BatchNorm1d::new(4).unwrap();
    assert!(
        err_text(bn.forward(&x.narrow(0, 0, 1).unwrap()))
            .contains("more than one value per channel")
    );
    assert!(err_text(BatchNorm1d::new(5).unwrap().forward(&x)).contains("(N, 5)"));
    let bad_bn = BatchNormOptions {
        momentum: 2.0,
        ..Default::default()
    };
    assert!(err_text(BatchNorm1d::with_options(3, bad_bn)).contains("momentum"));
    let emb = Embedding::from_weight(tensor(&[0.0; 6], &[3, 2])).unwrap();
    assert!(err_text(emb.forward(&tf)).contains("u32"));
    for p in [-0.1f32, 1.5, f32::NAN] {
        assert!(err_text(Dropout::new(p)).contains("[0, 1]"), "p = {p}");
    }
    assert!(
        err_text(init::kaiming_uniform(&[5], 1.0, init::FanMode::FanIn))
            .contains("at least 2 dims")
    );
    assert!(err_text(init::uniform(&[5], 1.0, -1.0)).contains("lo <= hi"));
    assert!(err_text(init::normal(&[5], 0.0, -1.0)).contains("std"));
    assert!(err_text(init::kaiming_normal(&[0, 4], 1.0, init::FanMode::FanOut)).contains("is 0"));
}
