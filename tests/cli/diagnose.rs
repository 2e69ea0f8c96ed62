//! Training diagnostics, `kiln diagnose` and `kiln lr-find` end to end: runs made to fail on
//! purpose (lr 10, lr 1e-7, a tiny training set with a big model, a constant feature, one class
//! only) are each named for what they are, and a healthy run gets no finding.

use std::path::{Path, PathBuf};

use crate::cli_util;
use crate::common::assert_mentions;
use cli_util::{fails, json, kiln, metrics, s};

fn scratch(name: &str) -> PathBuf {
    cli_util::scratch_in("diagnose", name)
}

/// Train with `flags` into `dir` (quiet; it must succeed).
fn train(dir: &Path, flags: &[&str]) {
    let (ok, _, err) = kiln(&[&["train", "-q", "--out", s(dir)], flags].concat());
    assert!(ok, "{flags:?}: {err}");
}

/// The finding kinds `kiln diagnose --json` names for `dir`.
fn kinds(dir: &Path) -> Vec<String> {
    let (ok, out, err) = kiln(&["diagnose", "--json", s(dir)]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds = v["findings"].as_array().unwrap().iter();
    kinds
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Uniform numbers in [0, 1) from a 64-bit LCG: reproducible test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f64 / (1u64 << 24) as f64
    }
}

/// A CSV with features `a`, `b`, the columns `extra` gives for a row (headed `extra_header`)
/// and a `label` column: yes when a + b > 1, or a coin flip (`noise`).
fn csv(
    path: &Path,
    rows: usize,
    extra_header: &str,
    extra: &dyn Fn(&mut Lcg) -> String,
    noise: bool,
) {
    let mut text = format!("a,b,{extra_header},label\n");
    let mut r = Lcg(7);
    for _ in 0..rows {
        let (a, b) = (r.next(), r.next());
        let cols = extra(&mut r);
        let yes = if noise { r.next() < 0.5 } else { a + b > 1.0 };
        text += &format!("{a:.3},{b:.3},{cols},{}\n", if yes { "yes" } else { "no" });
    }
    std::fs::write(path, text).unwrap();
}

/// Train the digits MLP with `flags` in a fresh `name` directory: the run and its findings.
fn diagnosed(name: &str, flags: &[&str]) -> (PathBuf, Vec<String>) {
    let d = scratch(name).join("run");
    train(&d, flags);
    let k = kinds(&d);
    (d, k)
}

#[test]
fn lr_10_is_named_too_high() {
    let (d, k) = diagnosed("lr10", &["--lr", "10", "--epochs", "2"]);
    assert!(k.contains(&"lr-too-high".into()), "{k:?}");
    // The text form gives the evidence: the step and the loss.
    let (ok, out, _) = kiln(&["diagnose", s(&d)]);
    assert!(ok);
    assert_mentions(
        &out,
        &["learning rate is too high", "lr 1e1", "step 10: loss"],
    );
}

#[test]
fn lr_1e_7_is_named_too_low() {
    let (_, k) = diagnosed("lr1e-7", &["--lr", "1e-7", "--epochs", "2"]);
    assert!(k.contains(&"lr-too-low".into()), "{k:?}");
    assert!(!k.contains(&"lr-too-high".into()), "{k:?}");
}

#[test]
fn a_tiny_training_set_with_a_big_model_overfits() {
    let root = scratch("overfit");
    // 100 rows of noise features with coin-flip labels: a 34k-parameter MLP memorises the 60
    // training rows while the validation loss climbs.
    // 100 rows of 20 noise features with coin-flip labels: a 34k-parameter MLP memorises
    // the 60 training rows while the validation loss climbs.
    let data = root.join("noise.csv");
    let header: Vec<String> = (0..18).map(|j| format!("x{j}")).collect();
    let noise = |r: &mut Lcg| {
        (0..18)
            .map(|_| format!("{:.3}", r.next()))
            .collect::<Vec<_>>()
            .join(",")
    };
    csv(&data, 100, &header.join(","), &noise, true);
    let d = root.join("run");
    let flags = [
        "--data",
        s(&data),
        "--target",
        "label",
        "--val-fraction",
        "0.3",
    ];
    train(&d, &[&flags[..], &["--epochs", "25"]].concat());
    let k = kinds(&d);
    assert!(k.contains(&"overfitting".into()), "{k:?}");
    // The train accuracy sits beside the validation accuracy in every epoch's record.
    let last = metrics(&d).pop().unwrap();
    assert!(last["train_accuracy"].as_f64().unwrap() > 0.9, "{last}");
}

#[test]
fn a_constant_feature_is_found_at_preparation() {
    let root = scratch("constant");
    let data = root.join("const.csv");
    csv(&data, 300, "c", &|_| "5".into(), false);
    let d = root.join("run");
    train(
        &d,
        &["--data", s(&data), "--target", "label", "--epochs", "2"],
    );
    let k = kinds(&d);
    assert!(k.contains(&"constant-feature".into()), "{k:?}");
    let (_, out, _) = kiln(&["diagnose", s(&d)]);
    assert_mentions(&out, &["c: one value in every training row"]);
}

#[test]
fn all_labels_one_class_is_named_after_the_failed_run() {
    let root = scratch("one-class");
    let data = root.join("one.csv");
    let text: String = std::iter::once("a,b,label\n".to_string())
        .chain((0..50).map(|i| format!("{},{},yes\n", i % 7, i % 5)))
        .collect();
    std::fs::write(&data, text).unwrap();
    let d = root.join("run");
    let err = fails(&[
        "train",
        "--data",
        s(&data),
        "--target",
        "label",
        "--out",
        s(&d),
    ]);
    assert_mentions(&err, &["one value only"]);
    assert_eq!(kinds(&d), ["single-class"]);
}

#[test]
fn a_healthy_run_gets_no_false_alarm_and_full_diagnostics_are_written() {
    let (d, k) = diagnosed("healthy", &["--epochs", "3", "--diagnostics", "full"]);
    assert_eq!(k, Vec::<String>::new());
    let (_, out, _) = kiln(&["diagnose", s(&d)]);
    assert_mentions(&out, &["no problems found"]);
    assert!(d.join("diagnostics.png").is_file());
    let log = std::fs::read_to_string(d.join("diagnostics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 1, "the first step is measured");
    // The default MLP: three linear layers (weight and bias each), two ReLUs.
    assert_eq!(first["layers"].as_array().unwrap().len(), 6, "{first}");
    let acts = first["activations"].as_array().unwrap();
    assert_eq!(acts.len(), 2, "{first}");
    for a in acts {
        let dead = a["dead_fraction"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&dead) && a["std"].as_f64().unwrap() > 0.0,
            "{a}"
        );
    }
    // 3 epochs of 20 steps: steps 1, 10, 20, ..., 60.
    assert_eq!(log.lines().count(), 7);
    let summary = json(&d.join("summary.json"));
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.5);
}

#[test]
fn bad_diagnose_input_is_one_clean_error() {
    let d = scratch("bad");
    assert_mentions(
        &fails(&["train", "--diagnostics", "loud"]),
        &["--diagnostics", "loud"],
    );
    assert_mentions(
        &fails(&["diagnose", s(&d.join("nope"))]),
        &["not a directory"],
    );
    assert_mentions(
        &fails(&["diagnose", s(&d)]),
        &["is it a kiln run directory"],
    );
}

#[test]
fn lr_find_suggests_a_sane_rate_on_the_digits_mlp() {
    let d = scratch("lr-find").join("run");
    let (ok, out, err) = kiln(&["lr-find", "--out", s(&d)]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("suggested lr: "))
        .unwrap();
    let lr: f64 = line["suggested lr: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1e-4..=1e-1).contains(&lr), "{out}");
    assert!(d.join("lr_find.png").is_file());
    let csv = std::fs::read_to_string(d.join("lr_find.csv")).unwrap();
    assert!(csv.lines().count() > 30, "{csv}");
}
