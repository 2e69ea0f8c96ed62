//! `kiln sweep`: grid, random and successive-halving searches over `kiln train` runs on the
//! embedded digits, the results they write, a sweep killed with SIGKILL mid-trial and resumed
//! (no finished trial reruns; the same table as an uninterrupted sweep), and bad sweep files.

use crate::cli_util as cli;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::{clean_error, fails, kiln, s, scratch_in};

fn scratch(name: &str) -> PathBuf {
    scratch_in("sweep", name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Run `kiln sweep` on the config `toml`, written to a fresh scratch folder `name`, with `extra`
/// flags; it must succeed: (the folder, the sweep's output directory in it, stdout).
fn sweep_ok(name: &str, toml: &str, extra: &[&str]) -> (PathBuf, PathBuf, String) {
    let d = scratch(name);
    let cfg = write(&d, &format!("{name}.toml"), toml);
    let out = d.join("out");
    let args = [&["sweep", "--config", s(&cfg), "--out", s(&out)], extra].concat();
    let (ok, stdout, e) = kiln(&args);
    assert!(ok, "{e}");
    (d, out, stdout)
}

/// trials.csv without its seconds column (the only thing that differs between runs).
fn table(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("trials.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(4);
            f.join(",")
        })
        .collect()
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_grid_sweep_runs_every_point_and_reports() {
    let (d, out, stdout) = sweep_ok(
        "grid",
        "[train]\nepochs = 1\n[sweep]\nmethod = \"grid\"\nmetric = \"val_accuracy\"\n\
         [sweep.space]\nlr = [0.01, 0.0001]\n",
        &[],
    );
    assert!(stdout.contains("best val_accuracy"), "{stdout}");
    let t = table(&out);
    assert_eq!(t[0], "trial,state,val_accuracy,epochs,lr");
    assert_eq!(t.len(), 3, "{t:?}");
    // Sorted best first: lr 0.01 learns far more in one epoch than 0.0001.
    assert!(
        t[1].ends_with(",0.010000") && t[1].contains(",complete,"),
        "{t:?}"
    );
    let best = std::fs::read_to_string(out.join("best.toml")).unwrap();
    assert!(best.contains("lr = 0.01"), "{best}");
    let summary = cli::json(&out.join("summary.json"));
    assert_eq!(summary["best_trial"], 0);
    assert!(
        summary["best_test"]["classification"]["accuracy"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    for f in ["sweep_params.png", "sweep_curves.png", "sweep_best.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // The trials never evaluated their test split: only the sweep did, once, for the best.
    let trial: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("trials/0001/summary.json")).unwrap(),
    )
    .unwrap();
    assert!(trial.get("test_loss").is_none(), "{trial}");
    // best.toml is a ready config for kiln train.
    let (ok, _, e) = cli::train_quiet(&["--config", s(&out.join("best.toml"))], &d.join("again"));
    assert!(ok, "{e}");
}

#[test]
fn successive_halving_prunes_and_uses_fewer_epochs() {
    let (d, out, _) = sweep_ok(
        "asha",
        "[train]\nepochs = 4\n[sweep]\nmethod = \"asha\"\ntrials = 4\nseed = 2\n\
         min_epochs = 1\nreduction = 2\n[sweep.space]\n\
         lr = { log-uniform = [1e-5, 3e-2] }\n",
        &["--quiet"],
    );
    let summary = cli::json(&out.join("summary.json"));
    assert!(summary["pruned"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["epochs_total"].as_u64().unwrap() < 16, "{summary}");
    assert!(summary["complete"].as_u64().unwrap() >= 1, "{summary}");
    // Every pruned trial stopped at a rung below the last.
    for l in table(&out).iter().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        if f[1] == "pruned" {
            assert!(["1", "2"].contains(&f[3]), "{l}");
        }
    }
    // Decisions follow trial ids, not finishing order: two at a time, the same sweep.
    let (two, cfg) = (d.join("two"), d.join("asha.toml"));
    let (ok, _, e) = kiln(&[
        "sweep",
        "--config",
        s(&cfg),
        "--out",
        s(&two),
        "--quiet",
        "--parallel",
        "2",
    ]);
    assert!(ok, "{e}");
    assert_eq!(table(&out), table(&two), "--parallel 2 changed the sweep");
}

#[test]
fn a_killed_sweep_resumes_without_rerunning_a_trial() {
    let d = scratch("kill");
    let text = "[train]\nepochs = 2\n[sweep]\nmethod = \"asha\"\ntrials = 3\nseed = 5\n\
                min_epochs = 1\nreduction = 2\n[sweep.space]\n\
                lr = { log-uniform = [1e-4, 3e-2] }\nbatch_size = [64, 128]\n";
    let cfg = write(&d, "s.toml", text);
    let (a, b) = (d.join("a"), d.join("b"));
    let (ok, _, e) = kiln(&["sweep", "--config", s(&cfg), "--out", s(&a), "--quiet"]);
    assert!(ok, "{e}");
    let mut child = cli::spawn_kiln(&["sweep", "--config", s(&cfg), "--out", s(&b), "--quiet"]);
    // Kill once a trial has ended and another has started (so one is mid-way).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(300) {
        let ev = events(&b);
        let ended = ev.iter().filter(|e| e["event"] == "end").count();
        let started = ev.iter().filter(|e| e["event"] == "start").count();
        if ended >= 1 && started > ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = events(&b).len();
    assert!(
        before > 0 && !b.join("trials.csv").exists(),
        "killed mid-sweep"
    );
    let (ok, _, e) = kiln(&["sweep", "--resume", s(&b), "--quiet"]);
    assert!(ok, "{e}");
    let ev = events(&b);
    for trial in 0..3 {
        let count = |what: &str| {
            ev.iter()
                .filter(|e| e["event"] == what && e["trial"] == trial)
                .count()
        };
        assert_eq!(count("start"), 1, "trial {trial} started twice: {ev:?}");
        assert_eq!(
            count("end"),
            1,
            "trial {trial} ended {} times",
            count("end")
        );
    }
    assert_eq!(table(&a), table(&b), "the resumed sweep's table differs");
}

#[test]
fn bad_sweep_files_name_the_key() {
    let d = scratch("bad");
    let cases = [
        (
            "[sweep]\nmethod = \"grid\"\n[sweep.space]\nfoo = [1, 2]\n",
            "sweep.space.foo",
        ),
        (
            "[sweep]\nmethod = \"grid\"\n[sweep.space]\nlr = []\n",
            "empty list",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 2\n[sweep.space]\nlr = { log-uniform = [0.0, 0.1] }\n",
            "log-uniform bounds must be > 0",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 2\nmetric = \"val_auc\"\n[sweep.space]\nlr = [0.1]\n",
            "sweep.metric",
        ),
        (
            "[sweep]\nmethod = \"random\"\n[sweep.space]\nlr = [0.1]\n",
            "sweep.trials",
        ),
        (
            "[sweep]\nmethod = \"grid\"\n[sweep.space]\nlr = { uniform = [0.1, 0.2] }\n",
            "a grid search needs a list",
        ),
        ("[train]\nepochs = 1\n", "no [sweep] section"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let f = write(&d, &format!("c{i}.toml"), text);
        let (ok, _, e) = kiln(&[
            "sweep",
            "--config",
            s(&f),
            "--out",
            s(&d.join(format!("o{i}"))),
        ]);
        assert!(!ok, "{text}");
        clean_error(&e);
        assert!(e.contains(needle), "{text}: {e}");
    }
    // A metric the task does not produce: found after the first trial, named.
    let f = write(
        &d,
        "r2.toml",
        "[train]\nepochs = 1\n[sweep]\nmethod = \"grid\"\nmetric = \"val_r2\"\n\
         [sweep.space]\nlr = [0.01]\n",
    );
    let e = fails(&["sweep", "--config", s(&f), "--out", s(&d.join("r2"))]);
    assert!(e.contains("sweep.metric = \"val_r2\""), "{e}");
}
