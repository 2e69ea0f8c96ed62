//! `kiln finetune`, `kiln generate --adapter` and `kiln chat` through the binary: a tiny GPT base
//! trained by the CLI, LoRA fine-tunes on small chat files written here (the masked loss falls,
//! PEFT files with the right keys and shapes, trainable < total), a QLoRA run, resume, replies
//! that stop at the end-of-turn marker, deterministic sampling with a seed, piped stdin, and
//! one-paragraph errors (bad JSONL lines by number, bad --target-modules, rank 0, a non-GPT
//! base). Sizes are tiny so that lavapipe runs each command in seconds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::cli_util;
use crate::common::assert_mentions;
use cli_util::{TINY_GPT, assert_files, clean_error, fails, json, kiln, lcg_words, s, write_tiny};

fn scratch(name: &str) -> PathBuf {
    cli_util::scratch_in("finetune", name)
}

/// `kiln finetune --base <the shared base> --data <data> extra...`: (success, stdout, stderr).
pub(crate) fn finetune(data: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["finetune", "--base", s(base()), "--data", s(data)];
    args.extend_from_slice(extra);
    kiln(&args)
}

/// `kiln finetune` of the shared base on [`small_chat`] in a fresh scratch folder `name`, with
/// `extra` flags and `--out <that folder>/ft`: (the out dir, success, stdout, stderr).
fn small_finetune(name: &str, extra: &[&str]) -> (PathBuf, bool, String, String) {
    let d = scratch(name);
    let data = small_chat(&d);
    let out = d.join("ft");
    let mut args = extra.to_vec();
    args.extend(["--out", s(&out)]);
    let (ok, stdout, err) = finetune(&data, &args);
    (out, ok, stdout, err)
}

/// The arguments `<cmd> --checkpoint <the shared base> [--adapter <adapter>] extra...`.
fn on_base<'a>(cmd: &'a str, adapter: Option<&'a Path>, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![cmd, "--checkpoint", s(base())];
    if let Some(a) = adapter {
        args.extend(["--adapter", s(a)]);
    }
    args.extend_from_slice(extra);
    args
}

/// Run `kiln args...` with `input` on stdin: (success, stdout, stderr).
fn kiln_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A chat JSONL line: optional system message, then (user, assistant) pairs.
fn conv(system: Option<&str>, turns: &[(&str, &str)]) -> String {
    let mut m = Vec::new();
    if let Some(s) = system {
        m.push(serde_json::json!({"role": "system", "content": s}));
    }
    for (u, a) in turns {
        m.push(serde_json::json!({"role": "user", "content": u}));
        m.push(serde_json::json!({"role": "assistant", "content": a}));
    }
    serde_json::json!({ "messages": m }).to_string()
}

/// The tiny GPT base: 1 block, width 16, context 64, trained one epoch on words that the chat
/// files use (a character tokenizer; the template's `<`, `|`, `>` are `<unk>` to it).
pub(crate) fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let d = scratch("base");
        let words = [
            "the", "cat", "sat", "on", "a", "mat", "hi", "hello", "there", "how", "are", "you",
            "fine", "thanks", "be", "nice",
        ];
        let p = write_tiny(&d, &lcg_words(&words, 7, 120, None));
        let out = d.join("run");
        // The tiny GPT with a context of 64: chat exchanges need a few hundred characters.
        let mut args = vec!["train", "--model", "gpt", "--text", s(&p)];
        for pair in TINY_GPT.chunks(2) {
            args.extend(match pair {
                ["--context", _] => ["--context", "64"],
                [flag, value] => [*flag, *value],
                _ => unreachable!("TINY_GPT is flag, value pairs"),
            });
        }
        args.extend(["--epochs", "1", "--lr", "0.01", "--seed", "1"]);
        args.extend(["--out", s(&out), "-q"]);
        let (ok, _, err) = kiln(&args);
        assert!(ok, "{err}");
        out
    })
}

const ALL_LINEAR: &str = "q_proj,k_proj,v_proj,o_proj,fc1,fc2,lm_head";

/// A LoRA adapter trained until it answers `hi` with `hello there` (100 steps on one repeated
/// conversation): (adapter dir, stdout). The learning rate is 0.01: at 0.02 Adam's loss curve
/// spiked (0.05 -> 0.33 -> 0.02), so where it ended depended on the last float bits of the
/// attention kernels; at 0.01 it falls smoothly to ~0.012 whichever rung runs.
fn learned() -> &'static (PathBuf, String) {
    static RUN: OnceLock<(PathBuf, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = scratch("learned");
        let data = d.join("rep.jsonl");
        let line = conv(None, &[("hi", "hello there")]);
        std::fs::write(&data, format!("{line}\n").repeat(8)).unwrap();
        let out = d.join("adapter");
        let (ok, stdout, err) = finetune(
            &data,
            &[
                "--lora-rank",
                "8",
                "--lora-dropout",
                "0",
                "--target-modules",
                ALL_LINEAR,
                "--epochs",
                "100",
                "--batch-size",
                "8",
                "--lr",
                "0.01",
                "--val-fraction",
                "0",
                "--out",
                s(&out),
            ],
        );
        assert!(ok, "{err}");
        (out, stdout)
    })
}

/// `train_loss` by epoch from a run's metrics.csv.
fn train_losses(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn finetune_learns_a_repeated_conversation_and_writes_a_peft_adapter() {
    let (dir, stdout) = learned();
    let losses = train_losses(dir);
    assert_eq!(losses.len(), 100);
    assert!(
        losses[0] > 1.0 && losses[99] < 0.05 && losses[99] < losses[0] / 20.0,
        "masked loss should fall: first {} last {}",
        losses[0],
        losses[99]
    );
    // Trainable vs total, PEFT's line: 2 * 8 * (16 + 16) * 4 + (8*16 + 64*8) + (8*64 + 16*8)
    // + lm_head (8*16 + V*8).
    let summary = json(&dir.join("summary.json"));
    let trainable = summary["trainable_parameters"].as_u64().unwrap();
    let total = summary["total_parameters"].as_u64().unwrap();
    assert!(trainable > 0 && trainable < total, "{summary}");
    assert_mentions(stdout, &["trainable params: ", "|| all params: "]);
    assert!(stdout.contains("peak GPU memory"), "{stdout}");
    assert!(summary["peak_gpu_bytes"].as_u64().unwrap() > 0);
    // The PEFT files: keys, shapes, config.
    let cfg = json(&dir.join("adapter_config.json"));
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["lora_alpha"], 16.0);
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
    let w = kiln::io::safetensors::read_weights(&dir.join("adapter_model.safetensors")).unwrap();
    assert_eq!(w.len(), 14, "{:?}", w.keys().collect::<Vec<_>>());
    let p = "base_model.model.blocks.0";
    let shape = |k: &str| w[k].shape.clone();
    assert_eq!(shape(&format!("{p}.attn.q_proj.lora_A.weight")), [8, 16]);
    assert_eq!(shape(&format!("{p}.attn.q_proj.lora_B.weight")), [16, 8]);
    assert_eq!(shape(&format!("{p}.mlp.fc1.lora_B.weight")), [64, 8]);
    assert_eq!(shape(&format!("{p}.mlp.fc2.lora_A.weight")), [8, 64]);
    assert!(w.contains_key("base_model.model.lm_head.lora_B.weight"));
    assert_eq!(json(&dir.join("kiln_finetune.json"))["qlora"], false);
    // Resume state is there too.
    assert!(dir.join("checkpoint.safetensors").is_file());
}

#[test]
fn chat_over_piped_stdin_stops_at_the_end_marker() {
    let (dir, _) = learned();
    let args = on_base(
        "chat",
        Some(dir),
        &["--temperature", "0", "--max-tokens", "40"],
    );
    let (ok, out, err) = kiln_stdin(&args, "hi\nhi\n");
    assert!(ok, "{err}");
    // Each reply ends at <|end|> (not printed), well before 40 tokens.
    assert_eq!(out, "hello there\nhello there\n");
    // `/quit` ends the session: the line after it is never answered.
    let (ok, out, err) = kiln_stdin(&args, "hi\n/quit\nhi\n");
    assert!(ok, "{err}");
    assert_eq!(out, "hello there\n");
    // Sampling with a seed: the same session twice gives the same replies.
    let mut sampled = args.clone();
    sampled[6] = "1.5"; // --temperature
    sampled.extend(["--seed", "9", "--system", "be nice"]);
    let a = kiln_stdin(&sampled, "how are you\nhi\n");
    let b = kiln_stdin(&sampled, "how are you\nhi\n");
    assert!(a.0, "{}", a.2);
    assert_eq!(a.1, b.1);
    assert!(!a.1.trim().is_empty());
}

#[test]
fn generate_with_adapter_and_chat_template() {
    let (dir, _) = learned();
    // A greedy chat reply to "hi" of at most `max` tokens.
    let greedy_hi = |max| {
        [
            "--chat",
            "--prompt",
            "hi",
            "--temperature",
            "0",
            "--max-tokens",
            max,
        ]
    };
    let chat = on_base("generate", Some(dir), &greedy_hi("40"));
    let (ok, out, err) = kiln(&chat);
    assert!(ok, "{err}");
    assert_eq!(out, "hello there\n");
    assert!(!err.contains("warning"), "{err}");
    // On another base than kiln_finetune.json records: a warning naming both.
    let other = scratch("other-base");
    for e in std::fs::read_dir(base()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, other.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut elsewhere = chat;
    elsewhere[2] = s(&other);
    let (ok, _, err) = kiln(&elsewhere);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("was trained on base") && err.contains(s(&other)),
        "{err}"
    );
    // Without the adapter the base knows nothing of the template.
    let (ok, plain, err) = kiln(&on_base("generate", None, &greedy_hi("12")));
    assert!(ok, "{err}");
    assert_ne!(plain, "hello there\n");
    // Plain continuation with the adapter, sampled: reproducible with a seed.
    let cont = on_base(
        "generate",
        Some(dir),
        &["--prompt", "the cat", "--max-tokens", "20", "--seed", "4"],
    );
    let (ok, a, err) = kiln(&cont);
    assert!(ok, "{err}");
    assert_eq!(a, kiln(&cont).1);
    assert!(
        a.starts_with("the cat") && a.len() > "the cat\n".len(),
        "{a:?}"
    );
}

/// Twelve small conversations (one goes to validation).
pub(crate) fn small_chat(dir: &Path) -> PathBuf {
    let p = dir.join("chat.jsonl");
    let a = conv(None, &[("hi", "hello there")]);
    let b = conv(Some("be nice"), &[("how are you", "fine thanks")]);
    std::fs::write(&p, format!("{a}\n{b}\n").repeat(6)).unwrap();
    p
}

#[test]
fn validation_loss_falls_and_a_run_resumes() {
    let d = scratch("resume");
    let data = small_chat(&d);
    let out = d.join("ft");
    let first = [
        "finetune",
        "--base",
        s(base()),
        "--data",
        s(&data),
        "--lora-rank",
        "4",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--max-steps",
        "3",
        "--out",
        s(&out),
    ];
    let (ok, stdout, err) = kiln(&first);
    assert!(ok, "{err}");
    let before: f64 = stdout
        .split("before: val loss ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `before: val loss` in {stdout}"));
    assert!(stdout.contains("(step/time budget reached)"), "{stdout}");
    assert!(
        stdout.contains("12 conversations (11 train / 1 val)"),
        "{stdout}"
    );
    // The same --out again without --resume is refused.
    let err = fails(&first);
    assert!(err.contains("--resume"), "{err}");
    let (ok, stdout, err) = kiln(&[
        "finetune",
        "--resume",
        "--out",
        s(&out),
        "--max-steps",
        "100",
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("resumed after epoch 1 (step 3)"),
        "{stdout}"
    );
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["epochs_run"], 3);
    let best = summary["best_val_loss"].as_f64().unwrap();
    let first_losses = train_losses(&out);
    assert_eq!(first_losses.len(), 3);
    assert!(first_losses[2] < first_losses[0], "{first_losses:?}");
    // The masked validation loss fell from before fine-tuning to the best epoch.
    assert!(best < before, "before {before}, best {best}");
}

#[test]
fn qlora_finetune_holds_the_bases_in_nf4() {
    let (out, ok, stdout, err) = small_finetune(
        "qlora",
        &[
            "--qlora",
            "--target-modules",
            "q_proj,v_proj,fc1,fc2",
            "--epochs",
            "1",
            "--batch-size",
            "4",
        ],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("layers in NF4"), "{stdout}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["qlora"], true);
    let (q, f) = (
        summary["base_weight_bytes"].as_u64().unwrap(),
        summary["base_weight_bytes_f32"].as_u64().unwrap(),
    );
    assert!(q < f, "{summary}");
    assert_eq!(json(&out.join("kiln_finetune.json"))["qlora"], true);
    // generate picks up the NF4 bases from the adapter's note; seeded sampling repeats.
    let flags = [
        "--chat",
        "--prompt",
        "hi",
        "--max-tokens",
        "10",
        "--seed",
        "2",
    ];
    let g = on_base("generate", Some(&out), &flags);
    let (ok, a, err) = kiln(&g);
    assert!(ok, "{err}");
    assert_eq!(a, kiln(&g).1);
}

#[test]
fn bad_input_gives_one_paragraph_errors() {
    let d = scratch("errors");
    let good = conv(None, &[("hi", "yo")]);
    let bad = d.join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{good}\nnot json\n{{\"messages\":[{{\"role\":\"bot\",\"content\":\"x\"}}]}}\n\n\
             {{\"messages\":[]}}\n{{\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}\n"
        ),
    )
    .unwrap();
    let out = d.join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["finetune", "--base", s(base()), "--out", s(&out)];
        args.extend_from_slice(extra);
        let (ok, _, err) = kiln(&args);
        assert!(!ok, "{extra:?} should fail");
        clean_error(&err);
        err
    };
    let err = run(&["--data", s(&bad)]);
    for want in [
        "4 bad line(s)",
        "line 2: bad JSON",
        "line 3:",
        "unknown role \"bot\"",
        "line 5:",
        "line 6:",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("line 1:"), "{err}");
    let chat = small_chat(&d);
    let err = run(&["--data", s(&chat), "--target-modules", "q_proj,c_attn"]);
    assert!(err.contains("`c_attn` matches no Linear layer"), "{err}");
    assert_mentions(&err, &["q_proj", "fc1", "lm_head"]);
    let err = run(&["--data", s(&chat), "--lora-rank", "0"]);
    assert!(err.contains("--lora-rank 0"), "{err}");
    // Absurd ranks are refused before any adapter is allocated, naming the flag.
    for rank in ["18446744073709551615", "100000000"] {
        let t = std::time::Instant::now();
        let err = run(&["--data", s(&chat), "--lora-rank", rank]);
        assert!(err.contains(&format!("--lora-rank {rank}")), "{err}");
        assert!(t.elapsed().as_secs() < 20, "{rank} took {:?}", t.elapsed());
    }
    let err = run(&["--data", s(&d.join("missing.jsonl"))]);
    assert!(err.contains("no such file"), "{err}");
    // A base that is not a GPT.
    let mlp = d.join("mlp");
    let (ok, _, err) = kiln(&[
        "train",
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--out",
        s(&mlp),
        "-q",
    ]);
    assert!(ok, "{err}");
    let err = fails(&[
        "finetune",
        "--base",
        s(&mlp),
        "--data",
        s(&chat),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("not a GPT"), "{err}");
    // An adapter directory that is not there.
    let nope = d.join("nope");
    let err = fails(&on_base("generate", Some(&nope), &["--prompt", "hi"]));
    assert!(err.contains("--adapter"), "{err}");
}

/// A fine-tune stopped inside its first epoch (`--max-steps`) still leaves a PEFT adapter in
/// `--out` (its partial epoch validated), and reports the validation loss it reached.
#[test]
fn a_run_stopped_inside_an_epoch_writes_its_adapter() {
    let (out, ok, stdout, err) = small_finetune(
        "partial",
        &["--lora-rank", "2", "--batch-size", "1", "--max-steps", "2"],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("0 epochs + 2 batches"), "{stdout}");
    assert_mentions(&stdout, &["val loss", " -> "]);
    assert_files(
        &out,
        &[
            "adapter_model.safetensors",
            "adapter_config.json",
            "kiln_finetune.json",
        ],
    );
}
