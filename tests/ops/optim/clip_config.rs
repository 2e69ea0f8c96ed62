//! Gradient clipping against the CPU; config validation; choosing optimizers by name.

use super::*;
use kiln::optim::{Adam8bit, OptimizerKind, build, clip_grad_norm, clip_grad_value};

#[test]
fn clip_grad_norm_scales_on_the_gpu() {
    // A private device: counting submitted batches shows that clipping never reads back.
    let dev = common::private_gpu();
    let shapes: [&[usize]; 3] = [&[7, 17], &[257], &[1]];
    let mk = |d: &[f32], sh: &[usize]| Tensor::from_slice_on(&dev, d, sh).unwrap().requires_grad();
    let grads: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, sh)| rand_vec(sh.iter().product(), seed("clip") + i as u64, -1.0, 1.0))
        .collect();
    let norm64 = grads
        .iter()
        .flatten()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt();
    for (max_norm, clipped) in [(norm64 as f32 * 0.25, true), (norm64 as f32 * 4.0, false)] {
        let ps: Vec<Tensor> = shapes
            .iter()
            .map(|sh| mk(&vec![0.5; sh.iter().product()], sh))
            .collect();
        for (p, g) in ps.iter().zip(&grads) {
            p.set_grad(Some(Tensor::from_slice_on(&dev, g, p.shape()).unwrap()));
        }
        let gradless = mk(&[1.0, 2.0], &[2]);
        let mut all = ps.clone();
        all.push(gradless.clone());
        dev.flush();
        let before = dev.encoder_stats().submitted_batches;
        let norm = clip_grad_norm(&all, max_norm).unwrap();
        assert_eq!(
            dev.encoder_stats().submitted_batches,
            before,
            "clip_grad_norm waited for the GPU"
        );
        assert_eq!(norm.shape(), &[] as &[usize]);
        Tolerance::F32_REDUCTION.assert_close("global norm", &[norm.item().unwrap()], &[norm64]);
        let scale = if clipped {
            max_norm as f64 / (norm64 + 1e-6)
        } else {
            1.0
        };
        for (i, (p, g)) in ps.iter().zip(&grads).enumerate() {
            let want: Vec<f64> = g.iter().map(|&v| v as f64 * scale).collect();
            let got = read(&p.grad().unwrap());
            if clipped {
                Tolerance::F32_REDUCTION.assert_close(&format!("clipped grad {i}"), &got, &want);
            } else {
                assert_eq!(got, *g, "grad {i} changed although under the limit");
            }
        }
        assert!(gradless.grad().is_none());
    }
    // Nothing to clip: a zero norm.
    let p = mk(&[1.0], &[1]);
    assert_eq!(clip_grad_norm(&[p], 1.0).unwrap().item().unwrap(), 0.0);
}

#[test]
fn clip_grad_value_clamps_in_place() {
    let clip = 0.3f32;
    let g0 = rand_vec(129, seed("clipv"), -1.0, 1.0);
    let p = param(&rand_vec(129, 5, -1.0, 1.0), &[129]);
    p.set_grad(Some(tensor(&g0, &[129])));
    let gradless = param(&[1.0], &[1]);
    clip_grad_value(&[p.clone(), gradless.clone()], clip).unwrap();
    let want: Vec<f32> = g0.iter().map(|v| v.clamp(-clip, clip)).collect();
    assert_eq!(read(&p.grad().unwrap()), want);
    assert!(want.contains(&clip) && want.iter().any(|&v| v.abs() < clip));
    assert!(gradless.grad().is_none());
}

// ---------------------------------------------------------------- configs and building

#[test]
fn configs_are_validated_with_the_field_named() {
    let ps = || named(&[param(&[1.0, 2.0], &[2])]);
    let sgd_bad = [
        (SgdConfig::new(0.0), "lr"),
        (SgdConfig::new(f32::NAN), "lr"),
        (tweak(SgdConfig::new(0.1), |c| c.momentum = 1.0), "momentum"),
        (
            tweak(SgdConfig::new(0.1), |c| c.momentum = -0.1),
            "momentum",
        ),
        (
            tweak(SgdConfig::new(0.1), |c| c.nesterov = true),
            "nesterov",
        ),
        (
            tweak(SgdConfig::new(0.1), |c| c.weight_decay = -1.0),
            "weight_decay",
        ),
    ];
    for (cfg, field) in sgd_bad {
        assert_err_contains(Sgd::new(ps(), cfg), &[field]);
    }
    let adam_bad = [
        (AdamConfig::adam(-1.0), "lr"),
        (
            tweak(AdamConfig::adam(0.1), |c| c.betas = (1.0, 0.999)),
            "beta1",
        ),
        (
            tweak(AdamConfig::adam(0.1), |c| c.betas = (0.9, -0.5)),
            "beta2",
        ),
        (tweak(AdamConfig::adam(0.1), |c| c.eps = 0.0), "eps"),
        (
            tweak(AdamConfig::adamw(0.1), |c| c.weight_decay = f32::INFINITY),
            "weight_decay",
        ),
    ];
    for (cfg, field) in adam_bad {
        assert_err_contains(Adam::new(ps(), cfg), &[field]);
    }
    let w = AdamConfig::adamw(1e-3);
    assert_eq!(
        (w.betas, w.eps, w.weight_decay, w.decoupled),
        ((0.9, 0.999), 1e-8, 0.01, true)
    );
    let a = AdamConfig::adam(1e-3);
    assert_eq!((a.weight_decay, a.decoupled), (0.0, false));

    // Parameters: duplicates, non-contiguous, wrong dtype.
    let p = param(&rand_vec(21, 1, -1.0, 1.0), &[3, 7]);
    let dup = vec![("w".to_string(), p.clone()), ("w".to_string(), p.clone())];
    assert_err_contains(Sgd::new(dup, SgdConfig::new(0.1)), &["`w`", "twice"]);
    let strided = vec![("wt".to_string(), p.t().unwrap())];
    assert_err_contains(
        Adam::new(strided, AdamConfig::adam(0.1)),
        &["`wt`", "contiguous"],
    );
    let ints = vec![(
        "idx".to_string(),
        Tensor::from_slice(&[1u32, 2], &[2]).unwrap(),
    )];
    assert_err_contains(Sgd::new(ints, SgdConfig::new(0.1)), &["`idx`", "U32"]);
    // A gradient of the wrong shape is caught at step time, naming the parameter.
    let q = param(&[1.0, 2.0, 3.0], &[3]);
    let mut opt = Sgd::new(vec![("q".into(), q.clone())], SgdConfig::new(0.1)).unwrap();
    q.set_grad(Some(tensor(&[1.0, 2.0], &[2])));
    assert_err_contains(opt.step(), &["`q`", "[2]", "[3]"]);
    // Clipping arguments.
    assert_err_contains(clip_grad_norm(std::slice::from_ref(&q), 0.0), &["max_norm"]);
    assert_err_contains(clip_grad_value(&[q], -1.0), &["clip"]);
}

#[test]
fn optimizer_kinds_parse_and_build() {
    for (name, kind) in [
        ("sgd", OptimizerKind::Sgd),
        ("Adam", OptimizerKind::Adam),
        ("adamw", OptimizerKind::AdamW),
        ("ADAM8BIT", OptimizerKind::Adam8bit),
        ("adamw8bit", OptimizerKind::AdamW8bit),
    ] {
        assert_eq!(name.parse::<OptimizerKind>().unwrap(), kind);
        assert_eq!(kind.to_string().parse::<OptimizerKind>().unwrap(), kind);
    }
    assert_err_contains("rmsprop".parse::<OptimizerKind>(), &["rmsprop", "adamw"]);
    assert_err_contains(
        build(OptimizerKind::Sgd, vec![], 0.1, 0.0, 1.5),
        &["momentum"],
    );
    // Each built optimizer takes one step the way its direct construction does.
    let g = rand_vec(17, 31, -1.0, 1.0);
    let p0 = rand_vec(17, 32, -1.0, 1.0);
    for kind in OptimizerKind::ALL {
        let (x, y) = (param(&p0, &[17]), param(&p0, &[17]));
        let mut built = build(kind, vec![("x".into(), x.clone())], 0.05, 0.01, 0.9).unwrap();
        let mut direct: Box<dyn Optimizer> = match kind {
            OptimizerKind::Sgd => Box::new(
                Sgd::new(
                    vec![("y".into(), y.clone())],
                    SgdConfig {
                        momentum: 0.9,
                        weight_decay: 0.01,
                        ..SgdConfig::new(0.05)
                    },
                )
                .unwrap(),
            ),
            OptimizerKind::Adam => Box::new(
                Adam::new(
                    vec![("y".into(), y.clone())],
                    AdamConfig {
                        weight_decay: 0.01,
                        ..AdamConfig::adam(0.05)
                    },
                )
                .unwrap(),
            ),
            OptimizerKind::AdamW => {
                Box::new(Adam::new(vec![("y".into(), y.clone())], AdamConfig::adamw(0.05)).unwrap())
            }
            // 17 values: below the 8-bit threshold, so f32 moments and Adam's exact update.
            OptimizerKind::Adam8bit | OptimizerKind::AdamW8bit => {
                let c = match kind {
                    OptimizerKind::AdamW8bit => AdamConfig::adamw(0.05),
                    _ => AdamConfig::adam(0.05),
                };
                let c = AdamConfig {
                    weight_decay: 0.01,
                    ..c
                };
                Box::new(Adam8bit::new(vec![("y".into(), y.clone())], c).unwrap())
            }
        };
        x.set_grad(Some(tensor(&g, &[17])));
        y.set_grad(Some(tensor(&g, &[17])));
        built.step().unwrap();
        direct.step().unwrap();
        assert_eq!(read(&x), read(&y), "{kind}");
        assert_ne!(read(&x), p0, "{kind} moved the parameter");
    }
}
