//! The diagnostics hook against host references: one SGD step of a small ReLU MLP on random
//! data at awkward sizes (13 examples, 5 -> 7 -> 3), measured at full level. With plain SGD
//! (no momentum or decay) the update is `-lr g`, so the host sees the gradient norm in the
//! weights before and after the step; the first ReLU's output is recomputed on the host from
//! the initial weights. Then `kiln diagnose`'s rules on hand-written run files.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use kiln::data::{Dataset, InMemoryDataset, Targets};
use kiln::nn::{Linear, Module, ReLU, Sequential};
use kiln::optim::{Sgd, SgdConfig};
use kiln::train::diagnose::diagnose;
use kiln::train::diagnostics::{Diagnostics, Level, read_records};
use kiln::train::{Progress, Supervised, Task, TrainConfig, Trainer};

const N: usize = 13;
const IN: usize = 5;
const HIDDEN: usize = 7;
const CLASSES: usize = 3;
const LR: f32 = 0.1;

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: not recorded"));
    let tol = 1e-4 + 1e-3 * want.abs();
    assert!((got - want).abs() <= tol, "{what}: {got} vs host {want}");
}

#[test]
fn gradient_norms_update_ratios_and_activations_match_the_host() {
    kiln::nn::manual_seed(11);
    let x = rand_vec(N * IN, seed("diag-x"), -2.0, 2.0);
    let labels: Vec<u32> = (0..N as u32)
        .map(|i| (i * 7 + 2) % CLASSES as u32)
        .collect();
    let y = Targets::Classes {
        labels,
        num_classes: CLASSES,
    };
    let data: Arc<dyn Dataset> = Arc::new(InMemoryDataset::new(x.clone(), vec![IN], y).unwrap());
    let mut model = Sequential::new()
        .with(Linear::new(IN, HIDDEN, true).unwrap())
        .with(ReLU)
        .with(Linear::new(HIDDEN, CLASSES, true).unwrap());
    // Two hidden units whose bias keeps them below zero on every example: dead from the start.
    let bias = model.named_parameters().swap_remove(1).1;
    let b0 = [-50.0f32, 0.1, -50.0, 0.2, 0.0, 0.3, -0.1];
    bias.copy_from(&kiln::Tensor::from_slice(&b0, &[HIDDEN]).unwrap())
        .unwrap();
    let before: Vec<Vec<f32>> = model
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let mut opt = Sgd::new(model.named_parameters(), SgdConfig::new(LR)).unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-diag-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hook = Diagnostics::new(Level::Full, 1, &dir, &model, 0).unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: N,
        optimizer: "sgd".into(),
        lr: LR,
        quiet: true,
        ..Default::default()
    };
    let task = Task::Classification {
        class_names: (0..CLASSES).map(|c| c.to_string()).collect(),
    };
    let mut objective = Supervised::new(&gpu(), task);
    let mut t = Trainer::new(&gpu(), config, data, &dir).hook(hook);
    t.fit(&mut model, &mut opt, &mut objective, Progress::default())
        .unwrap();
    let records = read_records(&dir).unwrap();
    assert_eq!(records.len(), 1, "one step, measured");
    let r = &records[0];
    assert_eq!((r.epoch, r.step), (1, 1));
    assert!(r.loss.is_some_and(|l| l > 0.0));
    let names = ["0.weight", "0.bias", "2.weight", "2.bias"];
    for (k, p) in model.parameters().iter().enumerate() {
        let after: Vec<f32> = p.to_vec().unwrap();
        let delta: Vec<f32> = after.iter().zip(&before[k]).map(|(a, b)| a - b).collect();
        let l = &r.layers[k];
        assert_eq!(l.name, names[k]);
        close(
            l.grad_norm,
            norm(&delta) / LR as f64,
            &format!("{} grad norm", l.name),
        );
        close(
            l.weight_norm,
            norm(&after),
            &format!("{} weight norm", l.name),
        );
        let ratio = norm(&delta) / norm(&after);
        close(l.update_ratio, ratio, &format!("{} update ratio", l.name));
    }
    // The first ReLU's output h = relu(x W0^T + b0) with the weights before the step.
    let (w, b) = (&before[0], &before[1]);
    let mut h = vec![0f64; N * HIDDEN];
    for i in 0..N {
        for u in 0..HIDDEN {
            let dot: f64 = (0..IN)
                .map(|j| (x[i * IN + j] * w[u * IN + j]) as f64)
                .sum();
            h[i * HIDDEN + u] = (dot + b[u] as f64).max(0.0);
        }
    }
    let mean = h.iter().sum::<f64>() / h.len() as f64;
    let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h.len() as f64;
    let dead = (0..HIDDEN)
        .filter(|&u| (0..N).all(|i| h[i * HIDDEN + u] <= 0.0))
        .count() as f64
        / HIDDEN as f64;
    assert_eq!(
        dead,
        2.0 / HIDDEN as f64,
        "the host sees the two dead units"
    );
    assert_eq!(r.activations.len(), 1, "{:?}", r.activations);
    let a = &r.activations[0];
    assert_eq!(a.name, "ReLU 1");
    close(a.mean, mean, "ReLU 1 mean");
    close(a.std, var.sqrt(), "ReLU 1 std");
    close(a.dead_fraction, dead, "ReLU 1 dead fraction");
}

/// A run directory holding `epochs` as metrics.jsonl and `steps` as diagnostics.jsonl.
fn synthetic_run(name: &str, epochs: &[serde_json::Value], steps: &[serde_json::Value]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-diag-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lines = |v: &[serde_json::Value]| v.iter().map(|r| format!("{r}\n")).collect::<String>();
    std::fs::write(dir.join("metrics.jsonl"), lines(epochs)).unwrap();
    std::fs::write(dir.join("diagnostics.jsonl"), lines(steps)).unwrap();
    dir
}

/// An epoch record: train loss, val loss, train and val accuracy.
fn epoch(e: usize, train: f64, val: f64, acc: (f64, f64)) -> serde_json::Value {
    serde_json::json!({"epoch": e, "train_loss": train, "val_loss": val, "val_accuracy": acc.1,
        "val_macro_f1": null, "val_r2": null, "lr": 0.001, "seconds": 1.0,
        "samples_per_sec": 1.0, "train_accuracy": acc.0})
}

/// A measured step: loss, per-tensor gradient norms, per-ReLU dead fractions.
fn step(s: u64, loss: f64, grads: &[f64], dead: &[f64]) -> serde_json::Value {
    let layers: Vec<_> = grads
        .iter()
        .enumerate()
        .map(|(k, g)| {
            serde_json::json!({"name": format!("{k}.weight"), "grad_norm": g,
            "weight_norm": 1.0, "update_ratio": 1e-3})
        })
        .collect();
    let acts: Vec<_> = dead
        .iter()
        .enumerate()
        .map(|(k, d)| {
            serde_json::json!({"name": format!("ReLU {}", k + 1), "mean": 0.1,
            "std": 0.1, "dead_fraction": d})
        })
        .collect();
    serde_json::json!({"epoch": 1, "step": s, "loss": loss, "layers": layers, "activations": acts})
}

fn kinds_of(dir: &std::path::Path) -> Vec<String> {
    let d = diagnose(dir).unwrap();
    let kind = |f: &kiln::train::diagnose::Finding| serde_json::to_value(f.kind).unwrap();
    d.findings
        .iter()
        .map(|f| kind(f).as_str().unwrap().to_string())
        .collect()
}

#[test]
fn diagnose_rules_on_synthetic_runs() {
    let healthy = [
        epoch(1, 1.0, 0.9, (0.8, 0.8)),
        epoch(2, 0.6, 0.6, (0.9, 0.88)),
    ];
    // Healthy losses; the first tensor's gradient 1e-6 of the largest one: vanishing.
    let steps = [
        step(1, 2.0, &[1e-7, 0.5], &[0.1]),
        step(10, 1.5, &[2e-7, 0.4], &[0.1]),
        step(20, 1.0, &[1e-7, 0.3], &[0.1]),
    ];
    let d = synthetic_run("vanish", &healthy, &steps);
    assert_eq!(kinds_of(&d), ["vanishing-gradients"]);
    // Most of the second ReLU's units dead at the last measured step.
    let steps = [
        step(1, 2.0, &[0.5, 0.5], &[0.0, 0.1]),
        step(10, 1.5, &[0.5, 0.5], &[0.0, 0.8]),
    ];
    let d = synthetic_run("dead", &healthy, &steps);
    assert_eq!(kinds_of(&d), ["dead-units"]);
    let r = diagnose(&d).unwrap();
    assert!(
        r.findings[0].evidence[0].starts_with("ReLU 2: 80 %"),
        "{:?}",
        r.findings
    );
    // Steadily falling but low train accuracy: underfitting.
    let low = [
        epoch(1, 2.0, 2.0, (0.3, 0.3)),
        epoch(2, 1.6, 1.6, (0.4, 0.4)),
    ];
    let steps = [step(1, 2.2, &[0.5], &[])];
    assert_eq!(
        kinds_of(&synthetic_run("under", &low, &steps)),
        ["underfitting"]
    );
    // A gradient norm 1e4 x its first: exploding (the loss itself stays calm).
    let steps = [
        step(1, 2.0, &[0.1, 0.2], &[]),
        step(10, 1.5, &[1e3, 0.2], &[]),
    ];
    assert_eq!(
        kinds_of(&synthetic_run("explode", &healthy, &steps)),
        ["exploding-gradients"]
    );
    // No steps file: the epochs alone (the first epoch's loss as the start) still tell.
    let flat = [
        epoch(1, 2.30, 2.30, (0.1, 0.1)),
        epoch(2, 2.29, 2.30, (0.1, 0.1)),
    ];
    assert_eq!(kinds_of(&synthetic_run("flat", &flat, &[])), ["lr-too-low"]);
}
