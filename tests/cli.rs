//! The `kiln` binary: exit codes and messages on good and bad input.

use std::process::Command;

fn kiln(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("run kiln");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn train_demo_runs_and_reports() {
    let (ok, stdout, stderr) = kiln(&["train", "--steps", "60", "--points", "256", "--quiet"]);
    assert!(ok, "kiln train failed: {stderr}");
    assert!(stdout.contains("train accuracy"), "{stdout}");
}

#[test]
fn bad_flags_exit_non_zero_without_backtrace() {
    let (ok, _, stderr) = kiln(&["train", "--lr=-1"]);
    assert!(!ok);
    assert!(stderr.contains("--lr"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");

    let (ok, _, stderr) = kiln(&["train", "--steps", "many"]);
    assert!(!ok);
    assert!(stderr.contains("--steps") && stderr.contains("many"), "{stderr}");

    let (ok, _, stderr) = kiln(&["frobnicate"]);
    assert!(!ok);
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

#[test]
fn bad_device_selector_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--steps", "1", "--quiet"])
        .env("KILN_DEVICE", "no-such-adapter")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-adapter") && stderr.contains("available adapters"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn devices_lists_adapters() {
    let (ok, stdout, stderr) = kiln(&["devices"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("kiln uses:"), "{stdout}");
}
