//! Dynamic loss scaling in the loop (`optim::GradScaler` as a hook, `optim::Scaled` around the
//! optimizer): an overflow forced by a huge scale skips the step on the device (weights and
//! Adam's moments unchanged), halves the scale and is counted in the epoch's record and
//! metrics.jsonl; without overflow the scale grows every `growth_interval` steps and the
//! weights equal an unscaled run's (scaling by powers of two is exact); a resumed run goes on
//! with the saved scale.

use crate::common;

use std::sync::Arc;

use common::*;
use kiln::data::{Dataset, InMemoryDataset, Targets};
use kiln::models::ModelSpec;
use kiln::nn::Module;
use kiln::optim::{Adam, AdamConfig, GradScaler, Optimizer, Scaled, ScalerConfig};
use kiln::train::{Progress, Supervised, Task, TrainConfig, Trainer};

/// Two features, the class is whether x0 + x1 > 0.
fn toy(n: usize, tag: &str) -> Arc<dyn Dataset> {
    let x = rand_vec(2 * n, seed(tag), -1.0, 1.0);
    let labels: Vec<u32> = x.chunks(2).map(|p| (p[0] + p[1] > 0.0) as u32).collect();
    let t = Targets::Classes {
        labels,
        num_classes: 2,
    };
    Arc::new(InMemoryDataset::new(x, vec![2], t).unwrap())
}

fn run_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-scaler-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn objective() -> Supervised {
    let task = Task::Classification {
        class_names: vec!["no".into(), "yes".into()],
    };
    Supervised::new(&gpu(), task)
}

/// A linear model (seeded) and Adam over it.
fn model_and_adam() -> (Box<dyn Module>, Box<dyn Optimizer>) {
    kiln::nn::manual_seed(11);
    let m = ModelSpec::Linear {
        input: 2,
        output: 2,
    }
    .build(&gpu())
    .unwrap();
    let opt = Adam::new(m.named_parameters(), AdamConfig::adam(0.05)).unwrap();
    (m, Box::new(opt))
}

fn weights(m: &dyn Module) -> Vec<f32> {
    let ps = m.named_parameters();
    ps.iter()
        .flat_map(|(_, p)| p.to_vec::<f32>().unwrap())
        .collect()
}

fn config(batch_size: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        quiet: true,
        batch_size,
        optimizer: "adam".into(),
        lr: 0.05,
        ..Default::default()
    }
}

#[test]
fn forced_overflow_skips_the_step_halves_the_scale_and_is_logged() {
    // 2^126 times a loss scaled by 64 overflows f32 in backward: every step of the epoch (3
    // batches of 32) while the scale stays >= 2^122.
    let sc = ScalerConfig {
        init_scale: 2f32.powi(126),
        ..Default::default()
    };
    let scaler = GradScaler::new(&gpu(), sc).unwrap();
    let (mut m, opt) = model_and_adam();
    let before = weights(m.as_ref());
    let mut opt = Scaled::new(opt, scaler.clone()).unwrap();
    let dir = run_dir("overflow");
    let mut t = Trainer::new(&gpu(), config(32), toy(96, "sc-train"), &dir).hook(scaler.clone());
    let mut sup = objective();
    let mut times64 = |m: &dyn Module, b: &kiln::data::Batch| {
        let (l, w) = kiln::train::Objective::loss(&mut sup, m, b)?;
        Ok((l.mul_scalar(64.0)?, w))
    };
    let r = t
        .fit(m.as_mut(), &mut opt, &mut times64, Progress::default())
        .unwrap();
    assert_eq!(
        weights(m.as_ref()),
        before,
        "skipped steps left the weights bit for bit"
    );
    let st = opt.state();
    for (name, t) in &st.tensors {
        if name.starts_with("exp_avg") {
            let v = t.to_vec::<f32>().unwrap();
            assert!(
                v.iter().all(|&x| x == 0.0),
                "{name} moved on a skipped step: {v:?}"
            );
        }
    }
    let s = scaler.stats().unwrap();
    assert_eq!((s.scale, s.skipped, s.good_steps), (2f32.powi(123), 3, 0));
    let rec = &r.records[0];
    assert_eq!(rec.overflow_skips, Some(3));
    assert_eq!(rec.loss_scale, Some(2f64.powi(123)));
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_mentions(&log, &["\"overflow_skips\":3", "\"loss_scale\":"]);

    // Resume from the checkpoint into a fresh scaler: it continues at the saved scale.
    let fresh = GradScaler::new(&gpu(), ScalerConfig::default()).unwrap();
    let (mut m2, opt2) = model_and_adam();
    let mut opt2 = Scaled::new(opt2, fresh.clone()).unwrap();
    let t2 = Trainer::new(&gpu(), config(32), toy(96, "sc-train"), &dir);
    t2.resume(&dir.join("checkpoint.safetensors"), m2.as_mut(), &mut opt2)
        .unwrap();
    let s2 = fresh.stats().unwrap();
    assert_eq!((s2.scale, s2.skipped), (2f32.powi(123), 3), "resumed scale");
}

#[test]
fn without_overflow_the_scale_grows_and_the_update_is_the_unscaled_one() {
    // 96 examples in batches of 16: 6 good steps, growth every 2 -> 2^16 * 2^3.
    let sc = ScalerConfig {
        growth_interval: 2,
        ..Default::default()
    };
    let scaler = GradScaler::new(&gpu(), sc).unwrap();
    let (mut m, opt) = model_and_adam();
    let mut opt = Scaled::new(opt, scaler.clone()).unwrap();
    let mut t =
        Trainer::new(&gpu(), config(16), toy(96, "sc-train"), run_dir("grow")).hook(scaler.clone());
    let r = t
        .fit(m.as_mut(), &mut opt, &mut objective(), Progress::default())
        .unwrap();
    let s = scaler.stats().unwrap();
    assert_eq!((s.scale, s.skipped, s.good_steps), (2f32.powi(19), 0, 0));
    assert_eq!(r.records[0].overflow_skips, Some(0));

    let (mut plain, mut popt) = model_and_adam();
    let mut t = Trainer::new(&gpu(), config(16), toy(96, "sc-train"), run_dir("plain"));
    t.fit(
        plain.as_mut(),
        popt.as_mut(),
        &mut objective(),
        Progress::default(),
    )
    .unwrap();
    let tol = Tolerance::new(
        1e-6,
        1e-7,
        "scaling by 2^k is exact; the same kernels otherwise",
    );
    tol.assert_close(
        "scaled vs plain",
        &weights(m.as_ref()),
        &f64s(&weights(plain.as_ref())),
    );
}

#[test]
fn optimizers_that_cannot_skip_on_the_device_are_refused() {
    let scaler = GradScaler::new(&gpu(), ScalerConfig::default()).unwrap();
    let m = ModelSpec::Linear {
        input: 2,
        output: 2,
    }
    .build(&gpu())
    .unwrap();
    let q8 = kiln::optim::Adam8bit::new(m.named_parameters(), AdamConfig::adam(0.1)).unwrap();
    let e = Scaled::new(Box::new(q8), scaler).err().unwrap().to_string();
    assert_mentions(&e, &["cannot skip a step on the device"]);
    let bad = ScalerConfig {
        backoff_factor: 1.5,
        ..Default::default()
    };
    let e = GradScaler::new(&gpu(), bad).err().unwrap().to_string();
    assert_mentions(&e, &["backoff_factor", "1.5"]);
}
