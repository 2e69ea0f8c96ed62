//! `kiln train --devices LIST [--zero 1|2]` end to end: a two-device run writes one run
//! directory (rank 0's) and prints its traffic; bad lists and settings are clean errors.

use crate::cli_util::*;

#[test]
fn two_devices_train_and_rank_0_writes_the_run() {
    let dir = scratch_in("dist", "cli-two");
    let out = dir.join("run");
    let args = ["train", "--devices", "0,0", "--zero", "2", "--epochs", "1"];
    let (ok, stdout, stderr) = kiln(&[&args[..], &["--max-steps", "4", "--out", s(&out)]].concat());
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("data parallel: 2 devices (Vulkan, Vulkan), zero 2"),
        "{stdout}"
    );
    assert_files(
        &out,
        &["metrics.jsonl", "checkpoint.safetensors", "summary.json"],
    );
}

#[test]
fn bad_device_lists_and_settings_are_clean_errors() {
    let dir = scratch_in("dist", "cli-errors");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--devices", "nonesuch"],
            "--devices=\"nonesuch\" matches no adapter",
        ),
        (&["--devices", "0,9"], "\"9\""),
        (&["--devices", "0,0", "--zero", "3"], "expected 0, 1 or 2"),
        (&["--zero", "1"], "--devices"),
        (
            &["--devices", "0,0", "--batch-size", "1"],
            "at least one row per device",
        ),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let out = dir.join(format!("run{i}"));
        let err = fails(&[&["train", "--out", s(&out)], *args].concat());
        assert!(
            err.contains(want),
            "{args:?} should fail with {want}: {err}"
        );
    }
}
