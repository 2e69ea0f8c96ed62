//! The `kiln` binary end to end: training runs and their files, resume equivalence, eval,
//! predict, info, and one-paragraph errors (non-zero exit, no panic) on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli_util;
use crate::common::assert_mentions;
use crate::common::skip;
use cli_util::{RUN_FILES, assert_files, clean_error, fails, json, kiln, metrics, s, train_quiet};

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    cli_util::scratch_in("cli", name)
}

#[test]
fn train_writes_a_complete_run_directory() {
    let d = scratch("digits").join("run");
    let (ok, stdout, stderr) = kiln(&["train", "--epochs", "3", "--out", s(&d)]);
    assert!(ok, "{stderr}");
    assert_mentions(&stdout, &["test accuracy", "confusion matrix"]);
    assert_files(&d, RUN_FILES);
    let summary = json(&d.join("summary.json"));
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "3 epochs should beat chance by far: {acc}");
    assert_eq!(summary["epochs_run"], 3);
    assert!(summary["device"].as_str().is_some() && summary["wall_seconds"].as_f64().is_some());
    let csv = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + 3 epochs:\n{csv}");
    // A second run into the same directory is refused: nothing saved is overwritten.
    let (ok, _, stderr) = kiln(&["train", "--epochs", "1", "--out", s(&d)]);
    assert!(!ok);
    assert_mentions(&stderr, &["already holds a run", "--resume"]);
}

#[test]
fn resume_gives_the_same_losses_as_an_uninterrupted_run() {
    let root = scratch("resume");
    let (a, b) = (root.join("a"), root.join("b"));
    // The default MLP has dropout, so this also checks the RNG state round trip.
    let base = ["train", "--quiet", "--batch-size", "128"];
    let (ok, _, e) = kiln(&[&base[..], &["--epochs", "4", "--out", s(&a)]].concat());
    assert!(ok, "{e}");
    let (ok, _, e) = kiln(&[&base[..], &["--epochs", "2", "--out", s(&b)]].concat());
    assert!(ok, "{e}");
    let (ok, _, e) = kiln(&["train", "--resume", "--out", s(&b), "--epochs", "4"]);
    assert!(ok, "{e}");
    let read = |d: &Path| -> Vec<(f64, f64)> {
        let loss = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
        let epochs = metrics(d).into_iter();
        epochs
            .map(|v| (loss(&v, "train_loss"), loss(&v, "val_loss")))
            .collect()
    };
    let (la, lb) = (read(&a), read(&b));
    assert_eq!(la.len(), 4);
    assert_eq!(la, lb, "resumed losses differ from the uninterrupted run");
}

#[test]
fn penguins_csv_with_missing_values_reaches_95_percent() {
    let d = scratch("penguins").join("run");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/penguins.csv");
    let (ok, _, stderr) = train_quiet(
        &["--data", data, "--target", "species", "--epochs", "40"],
        &d,
    );
    assert!(ok, "{stderr}");
    let acc = json(&d.join("summary.json"))["test_accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc >= 0.95, "penguins test accuracy {acc}");

    // predict on rows of the same file without the target column's use; eval on the full file.
    let (ok, stdout, stderr) = kiln(&["predict", s(&d), "--input", data]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("row,prediction,probability"), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        345,
        "one line per penguin plus header"
    );
    assert!(stdout.contains("Gentoo") && stdout.contains("Adelie"));
    let (ok, stdout, stderr) = kiln(&["eval", s(&d), "--data", data, "--json"]);
    assert!(ok, "{stderr}");
    let ev: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        ev["classification"]["accuracy"].as_f64().unwrap() > 0.9,
        "{stdout}"
    );
}

#[test]
fn eval_info_and_predict_on_a_digits_run() {
    let d = scratch("digits-eval").join("run");
    let (ok, _, e) = train_quiet(&["--epochs", "2"], &d);
    assert!(ok, "{e}");
    let (ok, stdout, e) = kiln(&["eval", s(&d)]);
    assert!(ok, "{e}");
    assert_mentions(&stdout, &["accuracy", "test split"]);
    let (ok, stdout, e) = kiln(&["info", s(&d)]);
    assert!(ok, "{e}");
    assert_mentions(&stdout, &["model.layers.0.weight", "[256, 64]"]);
    assert_mentions(&stdout, &["parameters: 50,", "train_config"]);
    let rows = d.parent().unwrap().join("rows.csv");
    std::fs::write(&rows, "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0\n").unwrap();
    let out = d.parent().unwrap().join("pred.csv");
    let (ok, _, e) = kiln(&["predict", s(&d), "--input", s(&rows), "--output", s(&out)]);
    assert!(ok, "{e}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn config_file_sets_and_flags_override() {
    let d = scratch("config");
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        "model = \"linear\"\n[train]\nepochs = 2\nlr = 0.01\noptimizer = \"sgd\"\n",
    )
    .unwrap();
    let out = d.join("run");
    let (ok, _, e) = train_quiet(&["--config", s(&cfg), "--epochs", "1"], &out);
    assert!(ok, "{e}");
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert_mentions(
        &saved,
        &["model = \"linear\"", "epochs = 1", "optimizer = \"sgd\""],
    );
    std::fs::write(&cfg, "[train]\nepoch = 2\n").unwrap();
    let e = fails(&["train", "--config", s(&cfg), "--out", s(&d.join("x"))]);
    assert_mentions(&e, &["epoch", "run.toml"]);
}

#[test]
fn bad_input_gives_one_clear_error_and_non_zero_exit() {
    let d = scratch("bad");
    let cases: Vec<(Vec<String>, Vec<&str>)> = {
        let bad_csv = d.join("bad.csv");
        std::fs::write(&bad_csv, "a,b,label\n1,2,x\n3,4,y\n5,oops,x\n6,7,y\n8,9,x\n1,1,y\n2,2,x\n3,3,y\n4,4,x\n5,5,y\n6,6,x\n").unwrap();
        let o = |n: &str| s(&d.join(n)).to_string();
        vec![
            (
                vec!["train".into(), "--data".into(), "nope.csv".into()],
                vec!["nope.csv"],
            ),
            (
                vec![
                    "train".into(),
                    "--data".into(),
                    s(&bad_csv).into(),
                    "--target".into(),
                    "label".into(),
                    "--out".into(),
                    o("r1"),
                ],
                vec!["line 4", "column b", "oops"],
            ),
            (
                vec![
                    "train".into(),
                    "--data".into(),
                    s(&bad_csv).into(),
                    "--target".into(),
                    "colour".into(),
                    "--out".into(),
                    o("r2"),
                ],
                vec!["colour", "label"],
            ),
            (
                vec![
                    "train".into(),
                    "--data".into(),
                    s(&bad_csv).into(),
                    "--out".into(),
                    o("r3"),
                ],
                vec!["--target"],
            ),
            (
                vec![
                    "train".into(),
                    "--optimizer".into(),
                    "adagrad".into(),
                    "--out".into(),
                    o("r4"),
                ],
                vec!["adagrad"],
            ),
            (vec!["train".into(), "--lr=-1".into()], vec!["lr"]),
            (
                vec![
                    "train".into(),
                    "--model".into(),
                    "transformer9000".into(),
                    "--out".into(),
                    o("r5"),
                ],
                vec!["transformer9000", "mlp"],
            ),
            (vec!["eval".into(), o("missing-run")], vec!["missing-run"]),
            (
                vec![
                    "train".into(),
                    "--model".into(),
                    "lenet".into(),
                    "--data".into(),
                    concat!(env!("CARGO_MANIFEST_DIR"), "/data/penguins.csv").into(),
                    "--target".into(),
                    "species".into(),
                    "--out".into(),
                    o("r6"),
                ],
                vec!["lenet", "image data"],
            ),
            (
                vec![
                    "train".into(),
                    "--resume".into(),
                    "--out".into(),
                    o("not-a-run"),
                ],
                vec!["config.toml"],
            ),
        ]
    };
    for (args, needles) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = kiln(&a);
        assert!(!ok, "{a:?} should fail");
        clean_error(&stderr);
        for n in needles {
            assert!(stderr.contains(n), "{a:?}: error lacks {n:?}:\n{stderr}");
        }
    }
    // clap's own errors (unknown flag, bad number) also exit non-zero without a panic.
    let (ok, _, stderr) = kiln(&["train", "--epochs", "many"]);
    assert!(
        !ok && stderr.contains("many") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // Exit statuses as the README documents them: 2 for a usage error, 1 for bad input.
    let status = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(status(&["train", "--epochs", "many"]), Some(2));
    assert_eq!(status(&["eval", "/no/such/run"]), Some(1));
}

#[test]
fn corrupt_foreign_and_mismatched_checkpoints_are_reported() {
    let d = scratch("ckpt");
    let run = d.join("run");
    let (ok, _, e) = train_quiet(&["--epochs", "1"], &run);
    assert!(ok, "{e}");
    // Truncated.
    let bytes = std::fs::read(run.join("best.safetensors")).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["info", s(&cut)]);
    assert_mentions(&e, &["cut.safetensors", "truncated or corrupt"]);
    // Not a safetensors file at all.
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"hello").unwrap();
    fails(&["eval", s(&junk)]);
    // A checkpoint that does not fit the model: the run's config now names another model.
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        cfg.replace("model = \"mlp\"", "model = \"linear\""),
    )
    .unwrap();
    let e = fails(&["train", "--resume", "--out", s(&run), "--epochs", "2"]);
    assert_mentions(&e, &["unexpected: layers.3", "mis-shaped: layers.0.weight"]);
}

#[test]
fn divergence_stops_with_a_clear_message() {
    let d = scratch("diverge").join("run");
    let (ok, _, e) = train_quiet(&["--optimizer", "sgd", "--lr", "1e30", "--epochs", "3"], &d);
    assert!(!ok);
    clean_error(&e);
    assert_mentions(&e, &["loss became", "--lr"]);
}

#[test]
fn devices_lists_adapters() {
    let (ok, stdout, stderr) = kiln(&["devices"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("kiln uses:"), "{stdout}");
}

#[test]
fn bad_device_selector_is_a_clear_error() {
    let stderr = fails(&["train", "--device", "no-such-adapter", "--epochs", "1"]);
    assert_mentions(&stderr, &["no-such-adapter", "available adapters"]);
}

#[test]
fn trains_on_the_opengl_backend_when_present() {
    // KILN_BACKEND=gl selects wgpu's OpenGL backend (Mesa's llvmpipe on a machine without a GPU).
    let gl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_BACKEND", "gl")
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let devices = gl(&["devices"]);
    if !devices.status.success() {
        let e = String::from_utf8_lossy(&devices.stderr);
        assert!(e.contains("no GPU adapter found"), "{e}");
        return skip::skip(
            "training on the OpenGL backend",
            "no OpenGL adapter on this machine",
            "apt-get install -y libegl1 libgl1-mesa-dri (Mesa's OpenGL driver, llvmpipe)",
        );
    }
    let d = scratch("gl").join("run");
    let out = gl(&[
        "train",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--quiet",
        "--out",
        s(&d),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(json(&d.join("summary.json"))["backend"], "Gl");
}
