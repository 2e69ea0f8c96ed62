//! Exact resume anywhere: a run stopped inside an epoch (by `--max-steps`, by `--time-limit`,
//! or killed with SIGKILL after a `--checkpoint-every` checkpoint) and continued with
//! `--resume` logs the same losses, bit for bit, as a run that never stopped; each way for the
//! MLP (with dropout: the RNG state; also with 8-bit Adam and with offloaded Adam), LeNet and a
//! GPT (with dropout). Also: what `--resume` may and may not change.

use crate::cli_util as cli;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::{TINY_GPT, fails, kiln, s, scratch_in};

fn scratch(name: &str) -> PathBuf {
    scratch_in("resume", name)
}

/// Every epoch's (train loss, val loss) from `metrics.jsonl`, with a partial epoch flagged.
fn losses(dir: &Path) -> Vec<(u64, f64, f64, bool)> {
    let epoch = |v: serde_json::Value| {
        let loss = |k: &str| v[k].as_f64().unwrap();
        let partial = v.get("partial_batches").is_some();
        let e = v["epoch"].as_u64().unwrap();
        (e, loss("train_loss"), loss("val_loss"), partial)
    };
    cli::metrics(dir).into_iter().map(epoch).collect()
}

/// The loader position saved in `dir`'s last checkpoint: (epochs done, batch in the next).
fn position(dir: &Path) -> (u64, u64) {
    let ck = kiln::train::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let p: serde_json::Value = serde_json::from_str(ck.meta("progress").unwrap()).unwrap();
    (p["epoch"].as_u64().unwrap(), p["batch"].as_u64().unwrap())
}

/// A 1-block GPT of width 16 on `text`, `batch` windows of 16 tokens, plus `extra` flags.
fn tiny_gpt<'a>(text: &'a Path, batch: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--text", s(text)];
    // TINY_GPT with its last flag, `--batch-size 16`, replaced by `batch`.
    v.extend_from_slice(&TINY_GPT[..TINY_GPT.len() - 1]);
    v.push(batch);
    v.extend_from_slice(extra);
    v
}

fn run_ok(args: &[&str]) -> String {
    let (ok, out, err) = kiln(args);
    assert!(ok, "{args:?}: {err}");
    out
}

/// Train `base` for `epochs` uninterrupted into `a`; into `b` with `stop` (which must end
/// inside an epoch), then `--resume`; the logs must be identical.
fn check_stop_and_resume(name: &str, base: &[&str], epochs: &str, stop: &[&str]) {
    let root = scratch(name);
    let (a, b) = (root.join("a"), root.join("b"));
    let with = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--quiet", "--epochs", epochs, "--out"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        v.push(s(out).into());
        v.extend(base.iter().chain(extra).map(|x| x.to_string()));
        v
    };
    let args = with(&a, &[]);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = with(&b, stop);
    let out = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("budget reached"), "{name}: {out}");
    let (_, batch) = position(&b);
    assert!(batch > 0, "{name}: the stop should fall inside an epoch");
    let partial = losses(&b);
    assert!(
        partial.last().unwrap().3,
        "{name}: the partial epoch is logged as such"
    );
    run_ok(&["train", "--quiet", "--resume", "--out", s(&b)]);
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), epochs.parse::<usize>().unwrap());
    assert_eq!(
        la, lb,
        "{name}: resumed losses differ from the uninterrupted run"
    );
}

#[test]
fn mlp_stopped_by_steps_resumes_exactly() {
    // The default MLP on digits: 1,257 training rows, batch 64 -> 20 batches an epoch; step 30
    // is inside epoch 2. The MLP has dropout, so the RNG state must round-trip too.
    check_stop_and_resume("mlp-steps", &["--seed", "3"], "3", &["--max-steps", "30"]);
}

#[test]
fn mlp_with_8bit_adam_or_offload_resumes_exactly() {
    // The MLP's two larger Linear weights (64 x 256, 256 x 128) take quantised moments; the
    // checkpoint must carry codes and scales bit for bit. Offloaded moments go through the
    // checkpoint as Adam's f32 tensors.
    let eight = ["--seed", "3", "--optimizer", "adamw8bit"];
    check_stop_and_resume("mlp-adam8bit", &eight, "2", &["--max-steps", "30"]);
    let offload = ["--seed", "3", "--optimizer", "adamw", "--offload-optimizer"];
    check_stop_and_resume("mlp-offload", &offload, "2", &["--max-steps", "30"]);
}

#[test]
fn lenet_stopped_by_steps_resumes_exactly() {
    check_stop_and_resume(
        "lenet-steps",
        &["--model", "lenet", "--batch-size", "128", "--seed", "4"],
        "2",
        &["--max-steps", "13"],
    );
}

#[test]
fn gpt_stopped_by_steps_resumes_exactly() {
    let root = scratch("gpt-text");
    let text = cli::tiny_text(&root);
    let base = tiny_gpt(&text, "16", &["--dropout", "0.1", "--seed", "5"]);
    check_stop_and_resume("gpt-steps", &base, "2", &["--max-steps", "5"]);
}

#[test]
fn semi_supervised_stopped_by_steps_resumes_exactly() {
    // 50 labels + 1,208 unlabelled digits: an epoch is ceil(1208 / 7) = 173 labelled rows, 3
    // batches of 64, so step 5 is inside epoch 2. FixMatch draws its unlabelled batches and
    // their augmentations from the place in the run; a low threshold keeps the term active.
    let semi = [
        "--labeled",
        "50",
        "--semi",
        "fixmatch",
        "--threshold",
        "0.3",
    ];
    check_stop_and_resume(
        "semi-steps",
        &[&semi[..], &["--seed", "8"]].concat(),
        "3",
        &["--max-steps", "5"],
    );
}

#[test]
fn mlp_stopped_by_time_resumes_exactly() {
    // 0.0001 minutes: the budget is spent after the first step, well inside epoch 1.
    check_stop_and_resume(
        "mlp-time",
        &["--seed", "6", "--batch-size", "32"],
        "2",
        &["--time-limit", "0.0001"],
    );
}

/// Train `args` uninterrupted into `a`; into `b` with `--checkpoint-every every`, killed with
/// SIGKILL as soon as a mid-epoch checkpoint exists, then `--resume`d: identical logs.
fn check_kill(name: &str, args: &[&str], every: &str) {
    let root = scratch(name);
    let (a, b) = (root.join("a"), root.join("b"));
    let base = [&["train", "--quiet"][..], args].concat();
    run_ok(&[&base[..], &["--out", s(&a)]].concat());
    let mut child =
        cli::spawn_kiln(&[&base[..], &["--checkpoint-every", every, "--out", s(&b)]].concat());
    // Kill as soon as a mid-epoch checkpoint exists (or give up waiting after 120 s).
    let t0 = Instant::now();
    let ck = b.join("checkpoint.safetensors");
    while t0.elapsed() < Duration::from_secs(120) {
        if ck.exists() && position(&b).1 > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (_, batch) = position(&b);
    assert!(batch > 0, "{name}: killed after a mid-epoch checkpoint");
    run_ok(&["train", "--quiet", "--resume", "--out", s(&b)]);
    assert_eq!(
        losses(&a),
        losses(&b),
        "{name}: resumed losses differ after SIGKILL"
    );
}

#[test]
fn mlp_killed_mid_epoch_resumes_exactly() {
    check_kill(
        "mlp-kill",
        &["--epochs", "4", "--seed", "7", "--batch-size", "32"],
        "7",
    );
}

#[test]
fn lenet_killed_mid_epoch_resumes_exactly() {
    let args = [
        "--model",
        "lenet",
        "--epochs",
        "2",
        "--seed",
        "8",
        "--batch-size",
        "64",
    ];
    check_kill("lenet-kill", &args, "5");
}

#[test]
fn gpt_killed_mid_epoch_resumes_exactly() {
    let root = scratch("gpt-kill-text");
    let text = cli::tiny_text(&root);
    let args = tiny_gpt(
        &text,
        "8",
        &["--dropout", "0.1", "--seed", "9", "--epochs", "2"],
    );
    check_kill("gpt-kill", &args, "3");
}

#[test]
fn lenet_and_gpt_stopped_by_time_resume_exactly() {
    let args = ["--model", "lenet", "--batch-size", "64", "--seed", "10"];
    check_stop_and_resume("lenet-time", &args, "2", &["--time-limit", "0.0001"]);
    let root = scratch("gpt-time-text");
    let text = cli::tiny_text(&root);
    let args = tiny_gpt(&text, "16", &["--seed", "11"]);
    check_stop_and_resume("gpt-time", &args, "2", &["--time-limit", "0.0001"]);
}

#[test]
fn resume_extends_epochs_and_refuses_fixed_flags() {
    let root = scratch("flags");
    let d = root.join("run");
    run_ok(&[
        "train",
        "--quiet",
        "--epochs",
        "1",
        "--max-steps",
        "5",
        "--out",
        s(&d),
    ]);
    // Settings that would change the run are refused, by name.
    let e = fails(&[
        "train",
        "--resume",
        "--out",
        s(&d),
        "--epochs",
        "6",
        "--lr",
        "1e6",
        "--batch-size",
        "7",
    ]);
    assert!(
        e.contains("lr (saved 0.001") && e.contains("batch_size (saved 64, given 7)"),
        "{e}"
    );
    // The budget of the first run (--max-steps 5) does not carry over; --epochs extends.
    run_ok(&[
        "train",
        "--quiet",
        "--resume",
        "--out",
        s(&d),
        "--epochs",
        "2",
    ]);
    let l = losses(&d);
    assert_eq!(l.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
    assert!(l.iter().all(|r| !r.3), "no partial epoch left: {l:?}");
    // A finished run asks for more epochs.
    let (ok, _, e) = kiln(&["train", "--resume", "--out", s(&d)]);
    assert!(!ok && e.contains("--epochs"), "{e}");
}

#[test]
fn a_second_writer_of_a_run_is_refused() {
    let d = scratch("lock").join("run");
    std::fs::create_dir_all(&d).unwrap();
    // A live process's lock (this test's pid) holds the directory.
    std::fs::write(d.join(".lock"), format!("{}\n", std::process::id())).unwrap();
    let e = fails(&["train", "--quiet", "--epochs", "1", "--out", s(&d)]);
    assert!(e.contains("in use by another kiln process"), "{e}");
    // A stale lock (no such process) is taken over.
    std::fs::write(d.join(".lock"), "4000000000\n").unwrap();
    run_ok(&["train", "--quiet", "--epochs", "1", "--out", s(&d)]);
    assert!(!d.join(".lock").exists(), "the lock is released at exit");
}

/// `--grad-checkpoint` (GPT blocks recomputed in backward) stopped by `--max-steps` and
/// resumed (the flag comes back from config.toml) logs the losses of a plain uninterrupted run,
/// within float rounding; on a model without blocks the flag is a clear error.
#[test]
fn gpt_with_grad_checkpoint_resumes_and_matches_the_plain_run() {
    let root = scratch("gpt-grad-checkpoint");
    let text = cli::tiny_text(&root);
    let (a, b) = (root.join("a"), root.join("b"));
    // TINY_GPT with 2 blocks.
    let mut base = vec!["--text", s(&text), "--layers", "2"];
    base.extend_from_slice(&TINY_GPT[2..]);
    base.extend([
        "--dropout",
        "0.1",
        "--seed",
        "5",
        "--epochs",
        "2",
        "--quiet",
    ]);
    let run = |out: &Path, extra: &[&str]| {
        let mut v = vec!["train", "--out", s(out)];
        v.extend_from_slice(&base);
        v.extend_from_slice(extra);
        run_ok(&v)
    };
    run(&a, &[]);
    let out = run(&b, &["--grad-checkpoint", "--max-steps", "5"]);
    assert!(out.contains("budget reached"), "{out}");
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("grad_checkpoint = 1"), "{config}");
    run_ok(&["train", "--quiet", "--resume", "--out", s(&b)]);
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!((x.0, x.3), (y.0, y.3));
        for (p, q) in [(x.1, y.1), (x.2, y.2)] {
            assert!((p - q).abs() <= 1e-4 * p.abs(), "epoch {}: {p} vs {q}", x.0);
        }
    }
    let c = root.join("c");
    let err = fails(&[
        "train",
        "--grad-checkpoint",
        "2",
        "--epochs",
        "1",
        "--out",
        s(&c),
    ]);
    assert!(
        err.contains("--grad-checkpoint 2: model mlp has no blocks to checkpoint"),
        "{err}"
    );
}
