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
