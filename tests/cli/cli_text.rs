//! The language models through the `kiln` binary: `kiln train --model gpt|lstm|gru|rnn` on a
//! small `--text` file (run files, validation loss and perplexity, the unigram baseline, step
//! budgets), `kiln generate` (reproducible with a seed, greedy, streamed) and `kiln eval`, and
//! one-paragraph errors (non-zero exit, no panic) on bad input. Models and text are tiny so
//! that lavapipe runs them in seconds.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cli_util;
use crate::common::assert_mentions;
use cli_util::{
    RUN_FILES, assert_files, fails, json, kiln, s, text_train_fails, tiny_text, train_quiet,
    train_tiny_gpt,
};

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    cli_util::scratch_in("cli-text", name)
}

/// One tiny GPT run shared by the tests that only read it: (run dir, stdout).
fn gpt_run() -> &'static (PathBuf, String) {
    static RUN: OnceLock<(PathBuf, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = scratch("gpt");
        let text = tiny_text(&d);
        let out = d.join("run");
        let flags = ["--model", "gpt", "--epochs", "2", "--lr", "0.01"];
        let (ok, stdout, stderr) = train_tiny_gpt(&text, &out, &flags);
        assert!(ok, "{stderr}");
        (out, stdout)
    })
}

#[test]
fn gpt_trains_on_a_text_file_and_logs_perplexity() {
    let (dir, stdout) = gpt_run();
    assert_files(dir, RUN_FILES);
    assert_files(dir, &["tokenizer.json"]);
    assert!(stdout.contains("char tokenizer"), "{stdout}");
    assert!(stdout.contains("baseline: unigram"), "{stdout}");
    assert_mentions(stdout, &["val ppl", "token acc"]);
    let records = cli_util::metrics(dir);
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        let loss = r["val_loss"].as_f64().unwrap();
        let ppl = r["val_perplexity"].as_f64().unwrap();
        assert!((ppl - loss.exp()).abs() < 1e-6 * ppl, "{r}");
        assert!(r["val_accuracy"].as_f64().is_some(), "{r}");
    }
    let summary = json(&dir.join("summary.json"));
    let test_loss = summary["test_loss"].as_f64().unwrap();
    let baseline = summary["unigram_baseline_loss"].as_f64().unwrap();
    // 15 letters, space, newline and <unk>: uniform guessing is ln(18) = 2.89; the unigram
    // baseline is below it, and two epochs learn at least the frequencies.
    assert!(baseline > 1.5 && baseline < 18f64.ln(), "{summary}");
    assert!(test_loss.is_finite() && test_loss < 18f64.ln(), "{summary}");
    assert!(
        (summary["test_perplexity"].as_f64().unwrap() - test_loss.exp()).abs() < 1e-3,
        "{summary}"
    );
    assert_eq!(summary["tokenizer"], "char");
    assert_eq!(summary["vocab_size"], 18);
    assert_eq!(summary["model"], "gpt");
    // `kiln eval` rebuilds the same test split with the saved tokenizer: the same loss.
    let (ok, out, err) = kiln(&["eval", s(dir), "--json"]);
    assert!(ok, "{err}");
    let ev: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        (ev["loss"].as_f64().unwrap() - test_loss).abs() < 1e-4,
        "{ev} vs {summary}"
    );
}

/// 40 tokens after "the cat" from the model in `dir`, with `extra` flags: stdout (the command
/// must succeed).
fn generate(dir: &Path, extra: &[&str]) -> String {
    let flags = [&["--max-tokens", "40"], extra].concat();
    let (ok, stdout, stderr) = cli_util::generate(dir, "the cat", &flags);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
}

#[test]
fn generation_with_a_fixed_seed_is_reproducible() {
    let (dir, _) = gpt_run();
    let a = generate(dir, &["--seed", "7", "--temperature", "1.0"]);
    let b = generate(dir, &["--seed", "7", "--temperature", "1.0"]);
    assert_eq!(a, b);
    assert!(a.starts_with("the cat"), "{a:?}");
    // 40 new characters, and the trailing newline.
    assert_eq!(a.chars().count(), "the cat".len() + 40 + 1, "{a:?}");
    let c = generate(dir, &["--seed", "8", "--temperature", "1.0"]);
    assert_ne!(a, c, "another seed should draw other characters");
    // top-k / top-p runs, reproducibly.
    let k = &["--seed", "3", "--top-k", "5", "--top-p", "0.9"];
    assert_eq!(generate(dir, k), generate(dir, k));
}

#[test]
fn greedy_generation_is_deterministic_whatever_the_seed() {
    let (dir, _) = gpt_run();
    let a = generate(dir, &["--top-k", "1", "--seed", "1"]);
    let b = generate(dir, &["--top-k", "1", "--seed", "2"]);
    let c = generate(dir, &["--temperature", "0"]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // Past the context of 16 the window slides; a long prompt is cut with a note.
    let (ok, out, err) = cli_util::generate(
        dir,
        "the cat sat on a mat and the dog ran to the log",
        &["--max-tokens", "30", "--top-k", "1"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("context is 16"), "{err}");
    assert!(out.starts_with("the cat sat on a mat"), "{out}");
}

fn train_rnn(cell: &str, epochs: &str) {
    let d = scratch(cell);
    let text = tiny_text(&d);
    let out = d.join("run");
    let (ok, stdout, stderr) = kiln(&[
        "train",
        "--model",
        cell,
        "--text",
        s(&text),
        "--epochs",
        epochs,
        "--width",
        "24",
        "--context",
        "12",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--out",
        s(&out),
    ]);
    assert!(ok, "{cell}: {stderr}");
    assert!(stdout.contains("val ppl"), "{stdout}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["model"], cell);
    assert!(summary["test_perplexity"].as_f64().unwrap().is_finite());
    let g = |seed: &str| {
        let (ok, stdout, stderr) =
            cli_util::generate(&out, "a dog", &["--max-tokens", "25", "--seed", seed]);
        assert!(ok, "{cell}: {stderr}");
        stdout
    };
    let a = g("5");
    assert_eq!(a, g("5"), "{cell}: same seed, same text");
    assert!(
        a.starts_with("a dog") && a.chars().count() == 5 + 25 + 1,
        "{a:?}"
    );
}

#[test]
fn lstm_trains_and_generates() {
    train_rnn("lstm", "2");
}

#[test]
fn gru_and_rnn_train_and_generate() {
    train_rnn("gru", "1");
    train_rnn("rnn", "1");
}

#[test]
fn max_steps_ends_a_run_inside_an_epoch() {
    let d = scratch("steps");
    let text = tiny_text(&d);
    let out = d.join("run");
    let flags = ["--epochs", "5", "--max-steps", "3", "--quiet"];
    let (ok, stdout, stderr) = train_tiny_gpt(&text, &out, &flags);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("budget reached"), "{stdout}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["model"], "gpt", "--text alone trains a gpt");
    assert_eq!(summary["epochs_run"], 0, "no epoch completed");
    assert_eq!(summary["batches_into_next_epoch"], 3);
    assert_eq!(summary["budget_reached"], true);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("max_steps = 3"), "{config}");
}

/// `--tokenizer bpe` (trained on the corpus) and `gpt2` (the embedded GPT-2 vocabulary) train,
/// save their tokenizer with the run, and generate text that starts with the prompt.
#[test]
fn bpe_and_gpt2_tokenizers_train_and_generate() {
    for (name, extra) in [("bpe", &["--bpe-vocab", "300"][..]), ("gpt2", &[][..])] {
        let d = scratch(&format!("tok-{name}"));
        let text = tiny_text(&d);
        let out = d.join("run");
        let mut flags = vec!["--tokenizer", name, "--max-steps", "2", "--quiet"];
        flags.extend_from_slice(extra);
        let (ok, _, stderr) = train_tiny_gpt(&text, &out, &flags);
        assert!(ok, "{name}: {stderr}");
        let summary = json(&out.join("summary.json"));
        // Both are byte-level BPE tokenizers; GPT-2's is told apart by its vocabulary.
        assert_eq!(summary["tokenizer"], "bpe", "{summary}");
        let vocab = summary["vocab_size"].as_u64().unwrap();
        if name == "gpt2" {
            assert_eq!(vocab, 50257);
        } else {
            assert!((257..=300).contains(&vocab), "bpe vocab {vocab}");
        }
        assert!(
            out.join("tokenizer.json").exists(),
            "{name}: tokenizer.json saved"
        );
        let got = generate(&out, &["--top-k", "1"]);
        assert!(got.starts_with("the cat"), "{name}: {got:?}");
    }
}

#[test]
fn bad_text_input_fails_with_one_clear_paragraph() {
    let d = scratch("errors");
    let text = tiny_text(&d);
    let missing = d.join("nope.txt");
    let err = text_train_fails("gpt", &missing, &[]);
    assert_mentions(&err, &["nope.txt", "cannot read"]);

    let empty = d.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let err = text_train_fails("lstm", &empty, &[]);
    assert_mentions(&err, &["empty.txt", "empty"]);

    let short = d.join("short.txt");
    std::fs::write(&short, "to be or not to be").unwrap();
    let err = fails(&["train", "--text", s(&short), "--context", "64"]);
    assert_mentions(&err, &["short.txt", "too few"]);

    let err = text_train_fails("mlp", &text, &[]);
    assert!(err.contains("does not train on text"), "{err}");

    let err = text_train_fails("gpt", &text, &["--heads", "3"]);
    assert!(err.contains("multiple of the heads"), "{err}");
}

#[test]
fn bad_generate_input_fails_with_one_clear_paragraph() {
    let (dir, _) = gpt_run();
    let err = fails(&["generate", "--checkpoint", "/no/such/run", "--prompt", "a"]);
    assert!(err.contains("/no/such/run"), "{err}");

    let err = fails(&["generate", "--checkpoint", s(dir), "--prompt", "Zebra!"]);
    assert_mentions(&err, &["never saw", "'Z'", "'!'"]);

    let err = fails(&["generate", "--checkpoint", s(dir), "--top-p", "1.5"]);
    assert!(err.contains("--top-p"), "{err}");

    // Absurd token counts are refused before anything is allocated.
    for n in ["18446744073709551615", "10000000000"] {
        let err = fails(&["generate", "--checkpoint", s(dir), "--max-tokens", n]);
        assert!(err.contains(&format!("--max-tokens {n}")), "{err}");
    }

    // A classifier checkpoint is not a language model.
    let run = scratch("linear").join("run");
    let (ok, _, err) = train_quiet(&["--model", "linear", "--epochs", "1"], &run);
    assert!(ok, "{err}");
    let err = fails(&["generate", "--checkpoint", s(&run), "--prompt", "a"]);
    assert!(err.contains("not a language model"), "{err}");
}
