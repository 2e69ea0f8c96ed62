//! Shared helpers for the tests that drive the `kiln` binary (tests/cli.rs, tests/cli_text.rs,
//! tests/images/cli.rs): run it, make scratch folders, check one-paragraph errors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `kiln args...`: (exit status success, stdout, stderr).
pub fn kiln(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run kiln");
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

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// About 3 KB of lowercase words, reproducible (a tiny LCG picks them).
pub fn tiny_text(dir: &Path) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "log", "bird", "sang",
    ];
    let mut state = 12345u64;
    let mut text = String::new();
    for line in 0..80 {
        for w in 0..8 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text += words[(state >> 33) as usize % words.len()];
            text.push(if w == 7 { '\n' } else { ' ' });
        }
        if line % 10 == 9 {
            text.push('\n');
        }
    }
    let p = dir.join("tiny.txt");
    std::fs::write(&p, text).unwrap();
    p
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
