//! The memory ledger through the binary: `--memory` writes `memory.json` (per step and overall)
//! and `memory.png`; `--dry-run` predicts the same breakdown without allocating, within 10 % of
//! the measurement for an MLP, LeNet, a GPT (plain, checkpointed with offloaded Adam, with 8-bit
//! Adam), and the GPT fine-tuned with LoRA and QLoRA (MLP and LeNet with LoRA and QLoRA:
//! tests/models/ledger.rs);
//! `--max-memory` / `KILN_MAX_MEMORY` make a run over the cap fail with one clean error naming
//! the tensor, its size, the cap and what was live; absurd sizes are refused.

use std::path::Path;
use std::process::Command;

use crate::cli_util::{self, TINY_GPT, assert_files, clean_error, fails, json, kiln, s};

const KEYS: [&str; 6] = [
    "weights",
    "gradients",
    "optimizer_state",
    "activations_peak",
    "workspace",
    "peak_total",
];

/// Run `cmd` (`train` or `finetune` with its flags) twice: measured with `--memory` for 3 steps
/// and planned with `--dry-run`; every key of the plan within 10 % of the measured overall.
fn plan_matches_measurement(name: &str, cmd: &[&str]) {
    let d = cli_util::scratch_in("memory", name);
    let (run, plan) = (d.join("run"), d.join("plan"));
    let mut args = cmd.to_vec();
    args.extend(["--max-steps", "3", "--memory", "--quiet", "--out", s(&run)]);
    let (ok, out, err) = kiln(&args);
    assert!(ok, "{name}: {err}");
    assert!(out.contains("activations_peak"), "{name}: summary: {out}");
    assert_files(&run, &["memory.json", "memory.png"]);
    let measured = json(&run.join("memory.json"));
    assert_eq!(measured["steps"].as_array().unwrap().len(), 3, "{name}");
    let mut args = cmd.to_vec();
    args.extend(["--dry-run", "--out", s(&plan)]);
    let (ok, out, err) = kiln(&args);
    assert!(ok, "{name}: {err}");
    assert!(out.contains("memory plan"), "{name}: {out}");
    assert!(
        !plan.join("checkpoint.safetensors").exists(),
        "a dry run writes only its plan"
    );
    let predicted = json(&plan.join("memory_plan.json"));
    for key in KEYS {
        let m = measured["overall"][key].as_u64().unwrap() as f64;
        let p = predicted[key].as_u64().unwrap() as f64;
        for step in measured["steps"].as_array().unwrap() {
            assert!(step[key].as_u64().is_some(), "{name}: step row lacks {key}");
        }
        assert!(
            (p - m).abs() <= 0.10 * m.max(1.0),
            "{name}: {key} predicted {p} bytes, measured {m}"
        );
    }
    assert!(
        measured["overall"]["weights"].as_u64().unwrap() > 0,
        "{name}"
    );
}

#[test]
fn dry_run_predicts_mlp_lenet_and_gpt_within_ten_percent() {
    plan_matches_measurement("mlp", &["train", "--model", "mlp"]);
    plan_matches_measurement("sgd", &["train", "--model", "mlp", "--optimizer", "sgd"]);
    plan_matches_measurement(
        "lenet",
        &["train", "--model", "lenet", "--batch-size", "16"],
    );
    let d = cli_util::scratch_in("memory", "text");
    let text = cli_util::write_tiny(&d, &cli_util::lcg_words(&["a", "bc", "def"], 3, 200, None));
    let mut gpt = vec!["train", "--model", "gpt", "--text", s(&text)];
    gpt.extend_from_slice(TINY_GPT);
    plan_matches_measurement("gpt", &gpt);
    // The savers: checkpointed blocks with offloaded Adam, and 8-bit Adam.
    let mut savers = gpt.clone();
    savers.extend(["--grad-checkpoint", "--offload-optimizer"]);
    plan_matches_measurement("gpt-checkpoint-offload", &savers);
    gpt.extend(["--optimizer", "adam8bit"]);
    plan_matches_measurement("gpt-adam8bit", &gpt);
}

#[test]
fn dry_run_predicts_lora_and_qlora_fine_tunes_within_ten_percent() {
    let d = cli_util::scratch_in("memory", "chat");
    let data = crate::finetune::small_chat(&d);
    let base = crate::finetune::base();
    let ft = ["finetune", "--base", s(base), "--data", s(&data)];
    plan_matches_measurement("lora", &ft);
    let mut q = ft.to_vec();
    q.push("--qlora");
    plan_matches_measurement("qlora", &q);
}

/// The error of a run over the cap: clean, naming the tensor, its size, the cap and the live
/// bytes by category.
fn over_the_cap(err: &str) {
    clean_error(err);
    for says in [
        "out of memory under the cap",
        "tensor of shape",
        "needs",
        "cap are live",
        "weights",
        "activations",
    ] {
        assert!(err.contains(says), "the error should say {says:?}: {err}");
    }
}

/// `kiln train --model mlp` for 2 quiet steps into `out`, with `extra` flags and `env` set.
fn mlp_run(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(["train", "--model", "mlp", "--max-steps", "2", "--quiet"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_run_over_a_small_cap_fails_with_a_clear_error() {
    let d = cli_util::scratch_in("memory", "cap");
    let (ok, err) = mlp_run(&d.join("flag"), &["--max-memory", "600KiB"], &[]);
    assert!(!ok, "--max-memory 600KiB is too small");
    over_the_cap(&err);
    let (ok, err) = mlp_run(&d.join("env"), &[], &[("KILN_MAX_MEMORY", "1MiB")]);
    assert!(!ok, "KILN_MAX_MEMORY=1MiB is too small");
    over_the_cap(&err);
    // The same run fits under a sensible cap.
    let (ok, err) = mlp_run(&d.join("fits"), &["--max-memory", "64MiB"], &[]);
    assert!(ok, "{err}");
}

#[test]
fn absurd_caps_are_refused_by_name() {
    let out = Path::new("/nonexistent/kiln-memory-never-written");
    for (size, says) in [
        ("0", "below the smallest cap"),
        ("12 parsecs", "unknown unit"),
        ("-5GiB", "not a size"),
        ("3PiB", "no device has that much"),
    ] {
        let flag = format!("--max-memory={size}");
        let err = fails(&["train", "--model", "mlp", &flag, "--out", s(out)]);
        assert!(
            err.contains("--max-memory") && err.contains(says),
            "{size}: {err}"
        );
    }
}
