//! The dropout layer's modes and key stream, initialiser statistics and reproducibility from
//! `manual_seed`. (The dropout op and its kernel: `tests/ops/dropout.rs`.)

use super::*;

#[test]
fn dropout_layer_modes_and_reproducibility() {
    let _l = rng_lock();
    let x = tensor(&rand_vec(513, seed("dl"), -1.0, 1.0), &[513]);
    let mut d = Dropout::new(0.4).unwrap();
    rng::manual_seed(5);
    let (a1, a2) = (f32s(&d.forward(&x).unwrap()), f32s(&d.forward(&x).unwrap()));
    assert_ne!(a1, a2, "consecutive calls must draw new masks");
    assert_eq!(
        rng::rng_state(),
        rng::RngState {
            seed: 5,
            counter: 2
        }
    );
    rng::manual_seed(5);
    assert_eq!(f32s(&d.forward(&x).unwrap()), a1);
    let saved = rng::rng_state();
    let b = f32s(&d.forward(&x).unwrap());
    assert_eq!(b, a2);
    rng::set_rng_state(saved);
    assert_eq!(
        f32s(&d.forward(&x).unwrap()),
        a2,
        "restored state must replay the mask"
    );
    // The saved state round-trips through serde (the trainer writes it to checkpoints).
    let json = serde_json::to_string(&saved).unwrap();
    assert_eq!(serde_json::from_str::<rng::RngState>(&json).unwrap(), saved);

    d.set_training(false);
    let before = rng::rng_state();
    let y = d.forward(&x).unwrap();
    assert!(y.shares_storage(&x), "eval dropout must be the identity");
    assert_eq!(rng::rng_state(), before, "eval dropout drew a key");
}

// ---------------------------------------------------------------- Initialisation

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Mean within 6 sd of the sample mean; std within `rel` (6+ sd of the sample std).
#[track_caller]
fn assert_stats(what: &str, v: &[f32], mean: f64, std: f64, rel: f64) {
    let (m, s) = mean_std(v);
    assert!(
        (m - mean).abs() < 6.0 * std / (v.len() as f64).sqrt(),
        "{what}: mean {m}, want {mean}"
    );
    assert!((s - std).abs() < rel * std, "{what}: std {s}, want {std}");
}

/// Every value in [-b, b] and the extremes near the bounds.
#[track_caller]
fn assert_uniform_bound(what: &str, v: &[f32], b: f64) {
    let max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    assert!(
        max <= b * (1.0 + 1e-6) && max > 0.95 * b,
        "{what}: max |v| {max}, bound {b}"
    );
}

#[test]
fn initialiser_statistics() {
    // 256 x 384 = 98,304 samples: the sample std's sd is 0.15% (uniform) to 0.23% (normal) of the
    // std, so 1.5% is over 6 sd.
    let shape = [256usize, 384];
    let (fan_in, fan_out) = (384.0f64, 256.0f64);
    let _l = rng_lock();
    let gain = 2f32.sqrt();
    let v = f32s(&init::kaiming_uniform(&shape, gain, init::FanMode::FanIn).unwrap());
    let b = gain as f64 * (3.0 / fan_in).sqrt();
    assert_uniform_bound("kaiming_uniform", &v, b);
    assert_stats("kaiming_uniform", &v, 0.0, b / 3f64.sqrt(), 0.015);
    let v = f32s(&init::kaiming_normal(&shape, 1.0, init::FanMode::FanOut).unwrap());
    assert_stats(
        "kaiming_normal fan_out",
        &v,
        0.0,
        1.0 / fan_out.sqrt(),
        0.015,
    );
    let v = f32s(&init::xavier_uniform(&shape, 1.0).unwrap());
    let b = (6.0 / (fan_in + fan_out)).sqrt();
    assert_uniform_bound("xavier_uniform", &v, b);
    assert_stats("xavier_uniform", &v, 0.0, b / 3f64.sqrt(), 0.015);
    let v = f32s(&init::xavier_normal(&shape, 5.0 / 3.0).unwrap());
    assert_stats(
        "xavier_normal",
        &v,
        0.0,
        5.0 / 3.0 * (2.0 / (fan_in + fan_out)).sqrt(),
        0.015,
    );
    let v = f32s(&init::uniform(&shape, -0.3, 0.7).unwrap());
    assert!(v.iter().all(|&x| (-0.3..=0.7).contains(&x)));
    assert_stats("uniform", &v, 0.2, 1.0 / 12f64.sqrt(), 0.015);
    let v = f32s(&init::normal(&shape, 2.0, 0.5).unwrap());
    assert_stats("normal", &v, 2.0, 0.5, 0.015);
    assert!(f32s(&init::zeros(&[7]).unwrap()).iter().all(|&x| x == 0.0));
    assert!(
        f32s(&init::constant(&[7], 2.5).unwrap())
            .iter()
            .all(|&x| x == 2.5)
    );

    // Layer defaults (PyTorch's).
    let lin = Linear::new(100, 300, true).unwrap();
    assert_uniform_bound("Linear weight", &f32s(&lin.weight), 0.1);
    assert_stats(
        "Linear weight",
        &f32s(&lin.weight),
        0.0,
        0.1 / 3f64.sqrt(),
        0.015,
    );
    let bias = f32s(lin.bias.as_ref().unwrap());
    assert!(bias.iter().all(|&x| x.abs() <= 0.1) && bias.iter().any(|&x| x.abs() > 0.09));
    assert!(lin.weight.requires_grad_flag() && lin.bias.as_ref().unwrap().requires_grad_flag());
    let emb = Embedding::new(300, 100).unwrap();
    // 30,000 samples: the sample std's sd is 0.41%; 2.5% is 6 sd.
    assert_stats("Embedding weight", &f32s(&emb.weight), 0.0, 1.0, 0.025);
    let ln = LayerNorm::new(7, 1e-5, true).unwrap();
    assert_eq!(f32s(ln.weight.as_ref().unwrap()), vec![1.0; 7]);
    assert_eq!(f32s(ln.bias.as_ref().unwrap()), vec![0.0; 7]);
    assert!(
        LayerNorm::new(7, 1e-5, false)
            .unwrap()
            .named_parameters()
            .is_empty()
    );
    let bn = BatchNorm1d::new(3).unwrap();
    assert_eq!(f32s(&bn.running_var), vec![1.0; 3]);
    assert_eq!(f32s(bn.weight.as_ref().unwrap()), vec![1.0; 3]);

    assert_eq!(init::fan_in_and_fan_out(&[4, 3, 5]).unwrap(), (15, 20));
    assert!((init::calculate_gain(init::Nonlinearity::Tanh) - 5.0 / 3.0).abs() < 1e-7);
    assert!((init::linear_default_gain() - (1.0f32 / 3.0).sqrt()).abs() < 1e-7);
}

#[test]
fn initialisation_is_reproducible_from_manual_seed() {
    let _l = rng_lock();
    rng::manual_seed(7);
    let a = Linear::new(17, 7, true).unwrap();
    assert_eq!(rng::rng_state().counter, 2, "one key per random tensor");
    let c = Linear::new(17, 7, true).unwrap();
    rng::manual_seed(7);
    let b = Linear::new(17, 7, true).unwrap();
    assert_eq!(f32s(&a.weight), f32s(&b.weight));
    assert_eq!(
        f32s(a.bias.as_ref().unwrap()),
        f32s(b.bias.as_ref().unwrap())
    );
    assert_ne!(f32s(&a.weight), f32s(&c.weight));
    // Constants draw nothing.
    let s = rng::rng_state();
    let _ = (
        LayerNorm::new(5, 1e-5, true).unwrap(),
        init::zeros(&[3]).unwrap(),
    );
    assert_eq!(rng::rng_state(), s);
    // A different seed, different weights.
    rng::manual_seed(8);
    assert_ne!(
        f32s(&Linear::new(17, 7, true).unwrap().weight),
        f32s(&a.weight)
    );
}

// ---------------------------------------------------------------- Losses
