//! `kiln train --semi` end to end: digits with 50 labels (pseudo-labelling and label
//! spreading), a CSV whose empty targets are the unlabelled rows, `--unlabeled FILE`, and bad
//! flags as clean errors.

use std::path::{Path, PathBuf};

use crate::cli_util::{clean_error, json, kiln, s, scratch_in};

const IRIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/iris.csv");

/// `kiln train ARGS --out DIR --quiet` in a fresh scratch folder; it must succeed.
fn train(name: &str, args: &[&str]) -> (PathBuf, String) {
    let dir = scratch_in("semi", name);
    let mut all = vec!["train", "--quiet", "--out", s(&dir)];
    all.extend(args);
    let (ok, out, err) = kiln(&all);
    assert!(ok, "{args:?}: {out}{err}");
    (dir, out)
}

#[test]
fn digits_with_50_labels_spread_and_pseudo_label() {
    let (dir, out) = train("spread", &["--labeled", "50", "--semi", "spread"]);
    let sum = json(&dir.join("summary.json"));
    let acc = sum["test_accuracy"].as_f64().unwrap();
    // Published anchor: label spreading on digits with 40 labels reaches about 0.87.
    assert!(acc > 0.85, "label spreading test accuracy {acc}: {out}");
    assert_eq!(sum["semi"]["labelled"], 50);
    assert_eq!(sum["semi"]["unlabelled"], 1208);
    assert!(sum["semi"]["unlabelled_accuracy"].as_f64().unwrap() > 0.8);
    assert!(out.contains("label spreading (7 neighbours"), "{out}");
    assert!(dir.join("config.toml").exists() && !dir.join("checkpoint.safetensors").exists());

    let (dir, _) = train(
        "pseudo",
        &["--labeled", "50", "--semi", "pseudo", "--epochs", "4"],
    );
    let sum = json(&dir.join("summary.json"));
    let semi = &sum["semi"];
    assert_eq!(semi["method"], "pseudo");
    assert_eq!(semi["examples"], 1208);
    let confident = semi["confident"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&confident), "{semi}");
    assert!(semi["accuracy"].as_f64().unwrap() > 0.3, "{semi}");
    // Epochs cover the unlabelled set: ceil(1208 / 7) = 173 labelled rows = 3 batches of 64.
    assert_eq!(sum["steps"], 12);
    let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        cfg.contains("[semi]") && cfg.contains("method = \"pseudo\""),
        "{cfg}"
    );
}

/// iris with the species of every third row removed, and those rows again as a file of
/// their own without the target column.
fn iris_without_some_targets(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(IRIS).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut with_gaps, mut extra) = (vec![header.to_string()], vec![]);
    let features = header.rsplit_once(',').unwrap().0.to_string();
    extra.push(features);
    for (i, l) in lines.enumerate() {
        let (x, _) = l.rsplit_once(',').unwrap();
        if i % 3 == 0 {
            with_gaps.push(format!("{x},"));
            extra.push(x.to_string());
        } else {
            with_gaps.push(l.to_string());
        }
    }
    let (a, b) = (dir.join("gaps.csv"), dir.join("extra.csv"));
    std::fs::write(&a, with_gaps.join("\n")).unwrap();
    std::fs::write(&b, extra.join("\n")).unwrap();
    (a, b)
}

#[test]
fn csv_rows_without_a_target_are_the_unlabelled_ones() {
    let tmp = scratch_in("semi", "csv-data");
    std::fs::create_dir_all(&tmp).unwrap();
    let (gaps, extra) = iris_without_some_targets(&tmp);
    let base = ["--data", s(&gaps), "--target", "species", "--epochs", "3"];
    let (dir, _) = train("csv", &[&base[..], &["--semi", "pseudo"]].concat());
    assert_eq!(json(&dir.join("summary.json"))["semi"]["examples"], 50);
    let args = [&base[..], &["--semi", "pseudo", "--unlabeled", s(&extra)]].concat();
    let (dir, _) = train("csv-extra", &args);
    assert_eq!(json(&dir.join("summary.json"))["semi"]["examples"], 100);
    // Without --semi the rows without a target are dropped, as before.
    let (dir, _) = train("csv-plain", &base);
    assert!(json(&dir.join("summary.json"))["semi"].is_null());
}

#[test]
fn bad_semi_flags_are_clean_errors() {
    let tmp = scratch_in("semi", "bad-data");
    std::fs::create_dir_all(&tmp).unwrap();
    let (gaps, _) = iris_without_some_targets(&tmp);
    let csv = ["--data", s(&gaps), "--target", "species"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--semi", "magic", "--labeled", "50"],
            "--semi \"magic\"",
        ),
        (vec!["--semi", "pseudo"], "no unlabelled examples"),
        (vec!["--semi", "pseudo", "--labeled", "5"], "--labeled 5"),
        (
            vec!["--semi", "pseudo", "--labeled", "99999"],
            "--labeled 99999",
        ),
        (
            vec!["--semi", "pseudo", "--labeled", "50", "--threshold", "1.5"],
            "semi.threshold",
        ),
        (
            vec![
                "--semi",
                "pseudo",
                "--labeled",
                "50",
                "--unlabeled-ratio",
                "0",
            ],
            "semi.ratio",
        ),
        (
            vec!["--semi", "spread", "--labeled", "50", "--neighbours", "0"],
            "--neighbours 0",
        ),
        (vec!["--unlabeled", IRIS], "--unlabeled goes with --semi"),
        (
            vec!["--semi", "pseudo", "--unlabeled", IRIS],
            "not a CSV file",
        ),
        (
            [&csv[..], &["--semi", "fixmatch"]].concat(),
            "augments images",
        ),
        (
            [&csv[..], &["--semi", "pseudo", "--labeled", "20"]].concat(),
            "use one or the other",
        ),
    ];
    for (args, want) in cases {
        let dir = scratch_in("semi", "bad");
        let mut all = vec!["train", "--epochs", "1", "--out", s(&dir)];
        all.extend(&args);
        let (ok, out, err) = kiln(&all);
        assert!(!ok, "{args:?} should fail: {out}");
        clean_error(&err);
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
    }
}
