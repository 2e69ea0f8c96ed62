//! Shared helpers for the tests that drive the `kiln` binary (tests/cli/, tests/data/images.rs,
//! tests/data/images/cli.rs): run it, make scratch folders, check one-paragraph errors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `kiln args...`: (exit status success, stdout, stderr).
pub fn kiln(args: &[&str]) -> (bool, String, String) {
    kiln_in(None, args)
}

/// [`kiln`] in the working directory `dir` (this process's when `None`).
pub fn kiln_in(dir: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run kiln");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory `kiln-<suite>-<pid>-<name>` under the system temp dir.
pub fn scratch_in(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A user error: one `error: ...` paragraph, no panic and no backtrace hint.
pub fn clean_error(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") || stderr.contains("\nerror: "),
        "{stderr}"
    );
}

/// `kiln args...` must fail with one clean error paragraph ([`clean_error`]); returns stderr.
pub fn fails(args: &[&str]) -> String {
    let (ok, _, err) = kiln(args);
    assert!(!ok, "{args:?} should fail");
    clean_error(&err);
    err
}

/// `kiln train --model MODEL --text TEXT extra...` must fail with one clean error paragraph
/// ([`fails`]); returns stderr.
pub fn text_train_fails(model: &str, text: &Path, extra: &[&str]) -> String {
    fails(&[&["train", "--model", model, "--text", s(text)], extra].concat())
}

/// Each `(args, want)`, followed by `extra`, must fail with one clean error paragraph
/// ([`fails`]) that mentions `want`.
pub fn each_fails(cases: &[(&[&str], &str)], extra: &[&str]) {
    for (args, want) in cases {
        let err = fails(&[*args, extra].concat());
        assert!(
            err.contains(want),
            "{args:?} should fail with {want}: {err}"
        );
    }
}

/// A fresh scratch directory ([`scratch_in`]) holding one file `name` with `text` (bad data for
/// an error test): (the directory, the file).
pub fn scratch_file(suite: &str, dir: &str, name: &str, text: &str) -> (PathBuf, PathBuf) {
    let d = scratch_in(suite, dir);
    let f = d.join(name);
    std::fs::write(&f, text).unwrap();
    (d, f)
}

/// The files every `kiln train` run directory holds.
pub const RUN_FILES: &[&str] = &[
    "config.toml",
    "metrics.jsonl",
    "metrics.csv",
    "curves.png",
    "checkpoint.safetensors",
    "best.safetensors",
    "summary.json",
];

/// Assert that each of `files` is a file in `dir`.
pub fn assert_files(dir: &Path, files: &[&str]) {
    for f in files {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
}

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The records of a run's `metrics.jsonl`, one an epoch, parsed.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `lines` lines of 8 of `words`, picked by a 64-bit LCG from `seed`; a blank line after every
/// `paragraph` lines when given. Reproducible text for the language-model tests.
pub fn lcg_words(words: &[&str], seed: u64, lines: usize, paragraph: Option<usize>) -> String {
    let mut state = seed;
    let mut text = String::new();
    for line in 0..lines {
        for w in 0..8 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text += words[(state >> 33) as usize % words.len()];
            text.push(if w == 7 { '\n' } else { ' ' });
        }
        if paragraph.is_some_and(|p| line % p == p - 1) {
            text.push('\n');
        }
    }
    text
}

/// `text` written to `dir/tiny.txt`; its path.
pub fn write_tiny(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("tiny.txt");
    std::fs::write(&p, text).unwrap();
    p
}

/// About 3 KB of lowercase words, reproducible (a tiny LCG picks them).
pub fn tiny_text(dir: &Path) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "log", "bird", "sang",
    ];
    write_tiny(dir, &lcg_words(&words, 12345, 80, Some(10)))
}

/// The flags of the tiny GPT the CLI tests train: 1 block of width 16, 2 heads, windows of 16
/// tokens, batches of 16.
pub const TINY_GPT: &[&str] = &[
    "--layers",
    "1",
    "--heads",
    "2",
    "--width",
    "16",
    "--context",
    "16",
    "--batch-size",
    "16",
];

/// `kiln train --text <text> flags... --out <out>` with the [`TINY_GPT`] flags:
/// (success, stdout, stderr).
pub fn train_tiny_gpt(text: &Path, out: &Path, flags: &[&str]) -> (bool, String, String) {
    let mut args = vec!["train", "--text", s(text)];
    args.extend_from_slice(flags);
    args.extend(["--out", s(out)]);
    args.extend_from_slice(TINY_GPT);
    kiln(&args)
}

/// `kiln train flags... --quiet --out <out>`: (success, stdout, stderr).
pub fn train_quiet(flags: &[&str], out: &Path) -> (bool, String, String) {
    let mut args = vec!["train"];
    args.extend_from_slice(flags);
    args.extend(["--quiet", "--out", s(out)]);
    kiln(&args)
}

/// `kiln generate --checkpoint <checkpoint> --prompt <prompt> flags...`: (success, stdout,
/// stderr).
pub fn generate(checkpoint: &Path, prompt: &str, flags: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "generate",
        "--checkpoint",
        s(checkpoint),
        "--prompt",
        prompt,
    ];
    args.extend_from_slice(flags);
    kiln(&args)
}

/// Start `kiln args...` in the background, output discarded (for tests that kill it).
pub fn spawn_kiln(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kiln")
}

/// Make a FIFO at `path`, run `write` (a `kiln` command told to write there) while a thread
/// reads it, and check the command succeeded and the FIFO is still one: what was read.
#[cfg(unix)]
pub fn through_fifo(path: &Path, write: impl FnOnce(&Path) -> (bool, String, String)) -> Vec<u8> {
    use std::os::unix::fs::FileTypeExt;
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
    let reader = {
        let path = path.to_path_buf();
        std::thread::spawn(move || std::fs::read(path).unwrap())
    };
    let (ok, _, err) = write(path);
    assert!(ok, "{err}");
    assert!(std::fs::metadata(path).unwrap().file_type().is_fifo());
    reader.join().unwrap()
}
