//! Loud skips: one way for a test to say that its check cannot run on this machine.
//!
//! Under CI (`CI=true`, which GitHub Actions, GitLab and `.ci/run` set) a check that cannot run
//! is a failure whose message names what to install: `.ci/run` installs everything the suites
//! need, so a skip there means a broken set-up, not a pass. Locally the skip is printed and
//! appended to `target/kiln-skips.txt`; `scripts/test.sh` runs the suites and prints those lines
//! as one summary (libtest itself hides the output of passing tests).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The file each local skip appends one line to: `target/kiln-skips.txt`.
pub fn skips_file() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `target/tmp` of the workspace, for every integration-test crate.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), |p| p.to_path_buf())
        .join("kiln-skips.txt")
}

/// True when the environment variable `CI` is `true`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The check `check` cannot run because `why`; `install` says what makes it run (a command).
/// Under CI this panics with that message; locally it prints it and records it in
/// [`skips_file`]. The caller returns after it (there is nothing left to check).
pub fn skip(check: &str, why: &str, install: &str) {
    let line = format!("{check}: {why}; to run it: {install}");
    if under_ci() {
        panic!("check cannot run under CI (CI=true): {line}");
    }
    eprintln!("SKIPPED {line}");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skips_file());
    // A read-only target/ loses only the summary line; the message above still went out.
    if let Ok(mut f) = f {
        let _ = writeln!(f, "{line}");
    }
}

/// Whether `gpu` has f16 storage (`SHADER_F16`); when not, the check `check` is skipped loudly
/// ([`skip`]) and the caller returns.
pub fn has_f16(gpu: &kiln_kernels::Gpu, check: &str) -> bool {
    if gpu.has_f16() {
        return true;
    }
    let why = format!("adapter {:?} has no SHADER_F16", gpu.info().name);
    let install =
        "an adapter with SHADER_F16 (lavapipe has it: apt-get install -y mesa-vulkan-drivers)";
    skip(check, &why, install);
    false
}
