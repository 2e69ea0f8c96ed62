//! A hostile user's inputs: absurd sizes, NaN weights, nonsense data and user-named outputs
//! that are symlinks, FIFOs or directories. Each must end in one clear error paragraph (or a
//! warning), never a panic, a hang or a destroyed file.

use crate::cli_util;
use crate::common::assert_mentions;
use cli_util::{clean_error, fails, kiln, s, scratch_in, text_train_fails, train_quiet};

use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    scratch_in("reliability", name)
}

#[test]
fn tune_kernels_refuses_absurd_sizes_naming_the_flag() {
    let err = fails(&["tune-kernels", "--model", "mlp", "--input", "1000000000"]);
    assert!(err.contains("--input 1000000000"), "{err}");
    let err = fails(&["tune-kernels", "--model", "mlp", "--batch-size", "0"]);
    assert!(err.contains("--batch-size 0"), "{err}");
    let err = fails(&[
        "tune-kernels",
        "--matmul",
        "100000000000x100000000000x1000000000",
    ]);
    assert!(err.contains("--matmul"), "{err}");
}

/// A one-epoch MLP run on the built-in digits (shared by the tests that tamper with it).
fn digits_run() -> &'static PathBuf {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let d = scratch("digits").join("run");
        let (ok, _, err) = train_quiet(&["--epochs", "1"], &d);
        assert!(ok, "{err}");
        d
    })
}

/// A copy of the digits run's directory in `name`, with `edit` applied to both checkpoints.
fn tampered(name: &str, edit: impl Fn(&mut kiln::io::safetensors::StFile)) -> PathBuf {
    let d = scratch(name).join("run");
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(digits_run()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in ["best.safetensors", "checkpoint.safetensors"] {
        let p = d.join(f);
        let mut st = kiln::io::safetensors::read(&p).unwrap();
        edit(&mut st);
        let tensors: Vec<_> = st.tensors.into_iter().collect();
        kiln::io::safetensors::write(&p, &tensors, &st.metadata).unwrap();
    }
    d
}

fn set_f32(st: &mut kiln::io::safetensors::StFile, name: &str, f: impl Fn(usize) -> f32) {
    let h = st.tensors.get_mut(name).unwrap();
    let n = h.bytes.len() / 4;
    let v: Vec<f32> = (0..n).map(f).collect();
    h.bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
}

#[test]
fn nan_weights_are_refused_naming_the_tensor() {
    let one_nan = tampered("nan", |st| {
        set_f32(st, "model.layers.0.weight", |i| {
            if i == 5 { f32::NAN } else { 0.1 }
        })
    });
    let err = fails(&["eval", s(&one_nan)]);
    assert_mentions(&err, &["layers.0.weight", "NaN"]);
    let err = fails(&["train", "--resume", "--out", s(&one_nan), "--epochs", "2"]);
    assert_mentions(&err, &["layers.0.weight", "NaN"]);
    let err = fails(&[
        "train",
        "--init-from",
        s(&one_nan),
        "--epochs",
        "1",
        "--out",
        s(&scratch("nan-init").join("run")),
    ]);
    assert_mentions(&err, &["layers.0.weight", "NaN"]);
    let all_nan = tampered("all-nan", |st| {
        set_f32(st, "model.layers.3.weight", |_| f32::INFINITY)
    });
    let err = fails(&["eval", s(&all_nan)]);
    assert!(err.contains("layers.3.weight"), "{err}");
}

#[test]
fn absurd_sizes_in_checkpoint_metadata_are_refused() {
    let huge = tampered("huge", |st| {
        let spec = st.metadata["model_spec"].replace("[256,128]", "[4000000000,128]");
        st.metadata.insert("model_spec".into(), spec);
    });
    let err = fails(&["eval", s(&huge)]);
    assert!(
        err.contains("too large") || err.contains("4000000000"),
        "{err}"
    );
}

#[test]
fn class_count_that_disagrees_with_the_model_is_refused() {
    let one = tampered("one-class", |st| {
        st.metadata.insert(
            "task".into(),
            r#"{"Classification":{"class_names":["0"]}}"#.into(),
        );
    });
    let err = fails(&["eval", s(&one)]);
    assert_mentions(&err, &["1 class", "10 outputs"]);
}

#[test]
fn a_model_too_large_for_memory_is_refused_before_it_is_built() {
    let d = scratch("huge-gpt");
    let text = d.join("t.txt");
    std::fs::write(&text, "the cat sat on the mat\n".repeat(400)).unwrap();
    let t = std::time::Instant::now();
    let err = text_train_fails(
        "gpt",
        &text,
        &["--layers", "1000000", "--out", s(&d.join("run"))],
    );
    assert_mentions(&err, &["too large", "parameters"]);
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    let run2 = d.join("run2");
    let huge = ["--width", "18446744073709551615", "--out", s(&run2)];
    let err = text_train_fails("lstm", &text, &huge);
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn a_csv_of_200k_columns_is_read_without_quadratic_lookups() {
    let d = scratch("wide");
    let n = 200_000;
    let mut text: String = (0..n).map(|i| format!("c{i},")).collect::<String>() + "y\n";
    for r in 0..4 {
        text += &(0..n)
            .map(|i| format!("{},", (i + r) % 7))
            .collect::<String>();
        text += &format!("{}\n", r % 2);
    }
    let csv = d.join("wide.csv");
    std::fs::write(&csv, text).unwrap();
    let t = std::time::Instant::now();
    let (ok, _, err) = train_quiet(
        &["--data", s(&csv), "--target", "y", "--epochs", "1"],
        &d.join("run"),
    );
    // Quadratic column lookups took minutes here; reading, preparing and (maybe) refusing the
    // model's size takes seconds.
    assert!(t.elapsed().as_secs() < 60, "took {:?}", t.elapsed());
    if !ok {
        clean_error(&err);
    }
}

#[test]
fn data_errors_name_the_file_and_clip_long_values() {
    let d = scratch("data-errors");
    let only = d.join("only_target_col.csv");
    std::fs::write(&only, "y\n1\n0\n1\n0\n1\n0\n1\n0\n1\n0\n").unwrap();
    let err = fails(&[
        "train",
        "--data",
        s(&only),
        "--target",
        "y",
        "--epochs",
        "1",
    ]);
    assert_mentions(&err, &["only_target_col.csv", "no feature columns"]);
    let mut rows: Vec<String> = std::iter::once("a,y".to_string())
        .chain((0..40).map(|i| format!("{i},{}", i % 2)))
        .collect();
    rows[5] = "9".repeat(5_000_000) + "x,1";
    let big = d.join("big.csv");
    std::fs::write(&big, rows.join("\n") + "\n").unwrap();
    let err = fails(&["train", "--data", s(&big), "--target", "y", "--epochs", "1"]);
    assert!(err.len() < 2000, "{} bytes of error", err.len());
    assert_mentions(&err, &["big.csv line 6", "5000001 characters"]);
}

#[test]
fn a_loss_that_explodes_without_nan_stops_the_run() {
    let d = scratch("explode").join("run");
    let err = fails(&[
        "train",
        "--lr",
        "1e6",
        "--epochs",
        "3",
        "--quiet",
        "--out",
        s(&d),
    ]);
    assert_mentions(&err, &["exploded", "--lr"]);
    // Stopped before any checkpoint of exploded weights was written.
    assert!(!d.join("best.safetensors").exists());
}

#[test]
fn resume_without_the_optimizer_state_is_refused() {
    let d = tampered("no-optim", |st| {
        st.tensors.retain(|k, _| !k.starts_with("optim."))
    });
    let err = fails(&["train", "--resume", "--out", s(&d), "--epochs", "2"]);
    assert!(err.contains("optim"), "{err}");
}

/// A CSV file in a scratch folder `name`, `rows` below the header `a,b,y`.
fn csv(name: &str, file: &str, text: String) -> PathBuf {
    let p = scratch(name).join(file);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn nonsense_tables_are_refused_or_warned_about() {
    let train = |p: &PathBuf, extra: &[&str]| {
        let mut args = vec!["train", "--data", s(p), "--target", "y", "--epochs", "1"];
        args.extend_from_slice(extra);
        args.push("--out");
        let out = p.with_extension("run");
        let out = out.to_str().unwrap().to_string();
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kiln(&args)
    };
    // One class only: nothing to learn (it would report 100 % and loss 0).
    let one = csv("one-class", "one.csv", {
        let rows: String = (0..60).map(|i| format!("{i},{},1\n", i * 2)).collect();
        format!("a,b,y\n{rows}")
    });
    let (ok, _, err) = train(&one, &[]);
    assert!(
        !ok && err.contains("one.csv") && err.contains("one value only"),
        "{err}"
    );
    // A column missing in every row.
    let empty_col = csv("all-missing", "empty_col.csv", {
        let rows: String = (0..60).map(|i| format!("{i},NA,{}\n", i % 2)).collect();
        format!("a,b,y\n{rows}")
    });
    let (ok, _, err) = train(&empty_col, &[]);
    assert!(
        !ok && err.contains("column \"b\" is missing in all 60 rows"),
        "{err}"
    );
    // Too few rows for a test split: refused, not reported as 0 % on 0 examples.
    let six = csv(
        "six",
        "six.csv",
        "a,b,y\n1,1,0\n2,2,1\n3,3,0\n4,4,1\n5,5,0\n6,6,1\n".into(),
    );
    let (ok, _, err) = train(&six, &[]);
    assert!(
        !ok && err.contains("--test-fraction") && err.contains("empty"),
        "{err}"
    );
    clean_error(&err);
    // --accumulate beyond the batches of an epoch.
    let err = fails(&["train", "--accumulate", "1000000000", "--epochs", "1"]);
    assert!(err.contains("--accumulate 1000000000"), "{err}");
}

#[test]
fn a_category_never_seen_in_training_is_warned_about_at_predict() {
    let rows: String = (0..60)
        .map(|i| {
            format!(
                "{i},{},{}\n",
                if i % 2 == 1 { "red" } else { "blue" },
                i % 2
            )
        })
        .collect();
    let data = csv("unseen", "colors.csv", format!("a,c,y\n{rows}"));
    let run = data.with_extension("run");
    let (ok, _, err) = train_quiet(
        &["--data", s(&data), "--target", "y", "--epochs", "1"],
        &run,
    );
    assert!(ok, "{err}");
    let new = csv("unseen-rows", "new.csv", "a,c\n1,green\n2,red\n".into());
    let (ok, out, err) = kiln(&["predict", s(&run), "--input", s(&new)]);
    assert!(ok, "{err}");
    assert!(out.starts_with("row,prediction"), "{out}");
    assert_mentions(&err, &["warning", "\"green\"", "line 2"]);
}

#[test]
fn os_errors_name_the_flag_whose_file_it_was() {
    let d = scratch("os-errors");
    let missing = d.join("nope.csv");
    let err = fails(&["predict", s(digits_run()), "--input", s(&missing)]);
    assert!(err.contains(&format!("--input {}", s(&missing))), "{err}");
    let err = fails(&["train", "--config", s(&d.join("nope.toml"))]);
    assert_mentions(&err, &["--config", "nope.toml"]);
    let file = d.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(&["train", "--epochs", "1", "--out", s(&file.join("run"))]);
    assert!(err.contains("cannot create the run directory"), "{err}");
}

/// A row of the digits' 64 pixel values (predict's input for the digits run).
const DIGIT_ROW: &str = "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0\n";

#[test]
fn predict_output_keeps_symlinks_devices_and_fifos() {
    let d = scratch("outputs");
    let rows = d.join("rows.csv");
    std::fs::write(&rows, DIGIT_ROW).unwrap();
    let predict = |out: &std::path::Path| {
        kiln(&[
            "predict",
            s(digits_run()),
            "--input",
            s(&rows),
            "--output",
            s(out),
        ])
    };
    // A symlink: the file it points to gets the predictions, the link stays a link.
    let target = d.join("target.csv");
    std::fs::write(&target, "old\n").unwrap();
    let link = d.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (ok, _, err) = predict(&link);
    assert!(ok, "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .starts_with("row,prediction")
    );
    // A character device is written, never replaced by a file: /dev/null takes it, /dev/full
    // fails cleanly and stays a device.
    let (ok, _, err) = predict(std::path::Path::new("/dev/null"));
    assert!(ok, "{err}");
    let (ok, _, err) = predict(std::path::Path::new("/dev/full"));
    assert!(!ok && err.contains("--output"), "{err}");
    clean_error(&err);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(!std::path::Path::new("/dev/full.tmp").exists());
    // A FIFO is written through (a reader drains it) and stays a FIFO.
    let text = cli_util::through_fifo(&d.join("fifo"), predict);
    assert!(text.starts_with(b"row,prediction"));
    // A directory is refused by name.
    let (ok, _, err) = predict(&d);
    assert!(!ok && err.contains("is a directory"), "{err}");
    clean_error(&err);
}

#[test]
fn empty_splits_are_reported_as_such_or_refused() {
    let d = scratch("splits");
    // --test-fraction 0: no test split, said so; no "0 %" on 0 examples.
    let run = d.join("no-test");
    let r = s(&run);
    let (ok, out, err) = kiln(&["train", "--epochs", "1", "--test-fraction", "0", "--out", r]);
    assert!(ok, "{err}");
    assert!(
        out.contains("--test-fraction 0 left no test split") && !out.contains("(0 examples)"),
        "{out}"
    );
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    assert!(
        summary.contains("no test split") && !summary.contains("test_loss"),
        "{summary}"
    );
    // --val-fraction 0: refused (best epoch and early stopping read the validation loss).
    let err = fails(&["train", "--epochs", "1", "--val-fraction", "0"]);
    assert!(err.contains("--val-fraction 0"), "{err}");
}

#[test]
fn resume_of_a_run_killed_before_its_first_checkpoint_starts_over() {
    let d = scratch("no-checkpoint").join("run");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["config.toml", "best.safetensors"] {
        std::fs::copy(digits_run().join(f), d.join(f)).unwrap();
    }
    // A checkpoint write cut short, as a kill or a full disk leaves it.
    std::fs::write(d.join("checkpoint.safetensors.tmp"), b"half a file").unwrap();
    let (ok, out, err) = train_quiet(&["--resume"], &d);
    assert!(ok, "{err}");
    assert!(out.contains("has no checkpoint yet"), "{out}");
    assert!(!d.join("checkpoint.safetensors.tmp").exists());
    assert!(d.join("checkpoint.safetensors").exists());
}

#[test]
fn resume_of_a_run_killed_before_its_summary_finishes_it() {
    let d = scratch("no-summary").join("run");
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(digits_run()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && !p.ends_with("summary.json") {
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    // Trained to its end, killed before the test evaluation: --resume evaluates it.
    let (ok, out, err) = kiln(&["train", "--resume", "--out", s(&d)]);
    assert!(ok, "{err}");
    assert!(out.contains("stopped before its test evaluation"), "{out}");
    assert!(d.join("summary.json").exists());
    // Now complete: a further --resume asks for more epochs.
    let err = fails(&["train", "--resume", "--out", s(&d)]);
    assert!(err.contains("--epochs"), "{err}");
}
