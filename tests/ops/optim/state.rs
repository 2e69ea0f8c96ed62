//! Optimizer state: `state()` / `load_state()` round trips (in memory and through the host),
//! load errors, frozen and gradless parameters, `zero_grad`.

use super::*;
use kiln::optim::OptimizerState;

/// Apply the same fresh gradients to two parameter sets (one per optimizer).
pub(super) fn step_both(
    a: &mut dyn Optimizer,
    pa: &[Tensor],
    b: &mut dyn Optimizer,
    pb: &[Tensor],
    tag: u64,
) {
    for (i, (x, y)) in pa.iter().zip(pb).enumerate() {
        let g = rand_signed_away_from_zero(x.numel(), tag * 31 + i as u64, 0.05, 1.0);
        x.set_grad(Some(tensor(&g, x.shape())));
        y.set_grad(Some(tensor(&g, y.shape())));
    }
    a.step().unwrap();
    b.step().unwrap();
}

/// The state with every tensor copied to the host and back, as a checkpoint does.
fn through_host(st: &OptimizerState) -> OptimizerState {
    OptimizerState {
        step: st.step,
        tensors: st
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), tensor(&read(t), t.shape())))
            .collect(),
    }
}

#[test]
fn state_round_trip_continues_identically() {
    type Make = fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>;
    let makers: [(&str, Make); 3] = [
        ("sgd nesterov", |p| {
            let cfg = SgdConfig {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.01,
                ..SgdConfig::new(0.05)
            };
            Box::new(Sgd::new(p, cfg).unwrap())
        }),
        ("adam", |p| {
            Box::new(Adam::new(p, AdamConfig::adam(0.01)).unwrap())
        }),
        ("adamw", |p| {
            Box::new(Adam::new(p, AdamConfig::adamw(0.01)).unwrap())
        }),
    ];
    let shapes: [&[usize]; 2] = [&[7, 17], &[129]];
    for (label, make) in makers {
        for host in [false, true] {
            let s = seed(label);
            let data: Vec<Vec<f32>> = shapes
                .iter()
                .map(|sh| rand_vec(sh.iter().product(), s, -1.0, 1.0))
                .collect();
            let params = || -> Vec<Tensor> {
                let each = shapes.iter().zip(&data);
                each.map(|(sh, d)| param(d, sh)).collect()
            };
            let pa = params();
            let mut a = make(named(&pa));
            // A throwaway partner for the first three steps.
            let scratch = params();
            let mut sa = make(named(&scratch));
            for t in 0..3 {
                step_both(a.as_mut(), &pa, sa.as_mut(), &scratch, t);
            }
            // Resume: same weights, loaded state.
            let pb: Vec<Tensor> = pa.iter().map(|p| param(&read(p), p.shape())).collect();
            let mut b = make(named(&pb));
            let st = a.state();
            assert_eq!(st.step, 3);
            let names: Vec<&str> = st.tensors.iter().map(|(n, _)| n.as_str()).collect();
            let want: &[&str] = if label.starts_with("sgd") {
                &[
                    "momentum_buffer.layer.0.weight",
                    "momentum_buffer.layer.1.weight",
                ]
            } else {
                &[
                    "exp_avg.layer.0.weight",
                    "exp_avg_sq.layer.0.weight",
                    "step.layer.0.weight",
                ]
            };
            for w in want {
                assert!(names.contains(w), "{label}: state names {names:?} lack {w}");
            }
            let st = if host { through_host(&st) } else { st };
            b.load_state(&st).unwrap();
            // Identical continued updates; if b had aliased a's buffers, the shared buffers would
            // be updated twice per step and this would fail.
            for t in 3..5 {
                step_both(a.as_mut(), &pa, b.as_mut(), &pb, t);
            }
            for (i, (x, y)) in pa.iter().zip(&pb).enumerate() {
                assert_eq!(
                    read(x),
                    read(y),
                    "{label} (via host: {host}): param {i} after resume"
                );
            }
            assert_eq!(b.state().step, 5);
        }
    }
}

#[test]
fn load_state_rejects_bad_names_and_shapes() {
    let ps = vec![param(&rand_vec(21, 3, -1.0, 1.0), &[3, 7])];
    let t = |shape: &[usize]| tensor(&rand_vec(shape.iter().product(), 4, 0.0, 1.0), shape);
    let st = |tensors: Vec<(&str, Tensor)>| OptimizerState {
        step: 3,
        tensors: tensors
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
    };
    let mut adam = Adam::new(named(&ps), AdamConfig::adam(0.01)).unwrap();
    let good = || {
        vec![
            ("exp_avg.layer.0.weight", t(&[3, 7])),
            ("exp_avg_sq.layer.0.weight", t(&[3, 7])),
        ]
    };
    adam.load_state(&st(good())).unwrap();
    type Case<'a> = (Vec<(&'a str, Tensor)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![("exp_avg.layer.9.weight", t(&[3, 7]))],
            &["exp_avg.layer.9.weight", "layer.9.weight"],
        ),
        (
            vec![("velocity.layer.0.weight", t(&[3, 7]))],
            &["velocity", "exp_avg"],
        ),
        (vec![("nodot", t(&[3, 7]))], &["nodot"]),
        (
            vec![
                ("exp_avg.layer.0.weight", t(&[7, 3])),
                ("exp_avg_sq.layer.0.weight", t(&[3, 7])),
            ],
            &["exp_avg.layer.0.weight", "[7, 3]", "[3, 7]"],
        ),
        (
            vec![("exp_avg.layer.0.weight", t(&[3, 7]))],
            &["missing", "exp_avg_sq.layer.0.weight"],
        ),
        (
            [good(), vec![("exp_avg.layer.0.weight", t(&[3, 7]))]].concat(),
            &["given twice", "exp_avg.layer.0.weight"],
        ),
        (
            [good(), vec![("step.layer.0.weight", t(&[2]))]].concat(),
            &["step.layer.0.weight"],
        ),
    ];
    for (tensors, needles) in cases {
        assert_err_contains(adam.load_state(&st(tensors)), needles);
    }
    let mut sgd = Sgd::new(named(&ps), SgdConfig::new(0.1)).unwrap();
    assert_err_contains(
        sgd.load_state(&st(vec![("momentum_buffer.layer.0.weight", t(&[3, 7]))])),
        &["momentum 0", "momentum_buffer.layer.0.weight"],
    );
    let mut sgdm = Sgd::new(
        named(&ps),
        SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        },
    )
    .unwrap();
    assert_err_contains(
        sgdm.load_state(&st(vec![("momentum_buffer.layer.0.weight", t(&[21]))])),
        &["momentum_buffer.layer.0.weight", "[21]"],
    );
    assert_err_contains(
        sgdm.load_state(&st(vec![("exp_avg.layer.0.weight", t(&[3, 7]))])),
        &["exp_avg"],
    );
    // A failed load changes nothing: the good state loaded above is still in place.
    assert_eq!(adam.state().tensors.len(), 3);
}

#[test]
fn frozen_and_gradless_parameters_are_untouched_and_stateless() {
    let a0 = rand_vec(17, 11, -1.0, 1.0);
    let b0 = rand_vec(7, 12, -1.0, 1.0);
    let c0 = rand_vec(129, 13, -1.0, 1.0);
    type Make = fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>;
    let makers: [Make; 2] = [
        |p| {
            Box::new(
                Sgd::new(
                    p,
                    SgdConfig {
                        momentum: 0.9,
                        ..SgdConfig::new(0.1)
                    },
                )
                .unwrap(),
            )
        },
        |p| Box::new(Adam::new(p, AdamConfig::adamw(0.1)).unwrap()),
    ];
    for make in makers {
        let (a, b, c) = (param(&a0, &[17]), param(&b0, &[7]), param(&c0, &[129]));
        // b is frozen but holds a stale gradient; c is trainable but receives none.
        b.set_grad(Some(tensor(&rand_vec(7, 14, -1.0, 1.0), &[7])));
        b.set_requires_grad(false).unwrap();
        let mut opt = make(vec![
            ("a".into(), a.clone()),
            ("b".into(), b.clone()),
            ("c".into(), c.clone()),
        ]);
        for t in 0..3 {
            a.set_grad(Some(tensor(&rand_vec(17, 15 + t, -1.0, 1.0), &[17])));
            opt.step().unwrap();
        }
        assert_ne!(read(&a), a0, "the trainable parameter moved");
        assert_eq!(read(&b), b0, "frozen parameter changed");
        assert_eq!(read(&c), c0, "parameter without gradient changed");
        let st = opt.state();
        assert!(!st.tensors.is_empty());
        for (n, _) in &st.tensors {
            assert!(
                n.ends_with(".a"),
                "state {n} for a frozen or gradless parameter"
            );
        }
    }
}

#[test]
fn zero_grad_zeroes_in_place() {
    let w = param(&rand_vec(129, 21, -1.0, 1.0), &[129]);
    let opt = Sgd::new(vec![("w".into(), w.clone())], SgdConfig::new(0.1)).unwrap();
    w.square().unwrap().sum().unwrap().backward().unwrap();
    let g = w.grad().unwrap();
    assert!(read(&g).iter().any(|&v| v != 0.0));
    opt.zero_grad().unwrap();
    let g2 = w.grad().unwrap();
    assert!(g2.shares_storage(&g), "zero_grad keeps the gradient buffer");
    assert!(read(&g2).iter().all(|&v| v == 0.0));
}
