//! `kiln bench` end to end on small filters: JSON lines with the required keys and sane values,
//! the aligned table, the roofline PNG, and a clean error for a bad device.

use crate::cli_util;
use cli_util::kiln;

fn rows(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn num(row: &serde_json::Value, key: &str) -> Option<f64> {
    row.get(key).and_then(|v| v.as_f64())
}

#[test]
fn json_lines_have_required_keys_and_sane_values() {
    let (ok, stdout, stderr) = kiln(&["bench", "--quick", "--json", "--filter", "add 1024"]);
    assert!(ok, "{stderr}");
    let rows = rows(&stdout);
    for r in &rows {
        for key in [
            "op", "shape", "dtype", "variant", "adapter", "backend", "timer",
        ] {
            let v = r[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing: {r}"));
            assert!(!v.is_empty(), "{key} empty: {r}");
        }
        assert_eq!(r["dtype"], "f32");
        let ms = num(r, "ms_median").unwrap_or_else(|| panic!("ms_median missing: {r}"));
        assert!(ms.is_finite() && ms > 0.0, "{r}");
        assert!(num(r, "ms_min").unwrap() <= ms + 1e-12, "{r}");
        let rate = num(r, "gflops").or(num(r, "gbps"));
        assert!(rate.is_some_and(|g| g.is_finite() && g > 0.0), "{r}");
        assert!(r["samples"].as_u64().unwrap() >= 1, "{r}");
    }
    // Ceilings first (both), then exactly the filtered rows, each beside its baseline.
    let ops: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["op"].as_str().unwrap(), r["variant"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("ceiling", "fma"),
            ("ceiling", "copy"),
            ("add", "b_transposed"),
            ("add", "contiguous"),
        ],
        "{stdout}"
    );
    let (fma, copy) = (&rows[0], &rows[1]);
    assert!(num(fma, "gflops").unwrap() > 0.0 && num(fma, "pct_peak") == Some(100.0));
    assert!(num(copy, "gbps").unwrap() > 0.0 && num(copy, "pct_peak") == Some(100.0));
    let (base, fast) = (&rows[2], &rows[3]);
    assert_eq!(num(base, "speedup"), Some(1.0));
    let speedup = num(fast, "speedup").unwrap();
    let ratio = num(base, "ms_median").unwrap() / num(fast, "ms_median").unwrap();
    assert!((speedup - ratio).abs() < 1e-9, "{fast}");
    // An add moves 12 bytes per element and cannot beat the measured copy by much.
    let gbps = num(fast, "gbps").unwrap();
    let elems = 1024.0 * 1024.0;
    let want = 12.0 * elems / (num(fast, "ms_median").unwrap() * 1e6);
    assert!((gbps - want).abs() < 1e-6 * want, "{fast}");
    assert!(num(fast, "pct_peak").unwrap() < 300.0, "{fast}");
}

#[test]
fn unsupervised_rows_sit_beside_their_cpu_twins() {
    let (ok, stdout, stderr) = kiln(&["bench", "--quick", "--json", "--filter", "kmeans step"]);
    assert!(ok, "{stderr}");
    let rows = rows(&stdout);
    let ops: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["op"].as_str().unwrap(), r["variant"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops[2..],
        [("kmeans step", "cpu twin"), ("kmeans step", "gpu")],
        "{stdout}"
    );
    let (cpu, gpu) = (&rows[2], &rows[3]);
    assert_eq!(num(cpu, "speedup"), Some(1.0));
    let ratio = num(cpu, "ms_median").unwrap() / num(gpu, "ms_median").unwrap();
    assert!((num(gpu, "speedup").unwrap() - ratio).abs() < 1e-9, "{gpu}");
    // --quick: 20,000 x 64 points, k = 20; the distance GEMM is 2 N K D FLOPs.
    let want = 2.0 * 20_000.0 * 20.0 * 64.0 / (num(gpu, "ms_median").unwrap() * 1e6);
    let got = num(gpu, "gflops").unwrap();
    assert!((got - want).abs() < 1e-6 * want, "{gpu}");
    assert!(num(gpu, "pct_peak").is_some_and(|p| p > 0.0), "{gpu}");
}

#[test]
fn table_and_roofline_png() {
    let png = std::env::temp_dir().join(format!("kiln-bench-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&png);
    let (ok, stdout, stderr) = kiln(&[
        "bench",
        "--quick",
        "--filter",
        "relu",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("measured ceilings: compute "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("op ") && lines[1].contains("GFLOP/s"),
        "{stdout}"
    );
    // Columns are aligned: every row starts its "shape" column where the header does.
    let col = lines[1].find("shape").unwrap();
    for l in &lines[2..] {
        assert!(l.len() > col && l.as_bytes()[col - 1] == b' ', "{stdout}");
    }
    assert!(lines.iter().any(|l| l.starts_with("relu ")), "{stdout}");
    let bytes = std::fs::read(&png).expect("the roofline PNG is written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    let _ = std::fs::remove_file(&png);
}

#[test]
fn bad_device_is_a_clean_error() {
    let (ok, _, stderr) = kiln(&["bench", "--quick", "--device", "no-such-adapter-xyz"]);
    assert!(!ok);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("no-such-adapter-xyz"), "{stderr}");
}

/// `--plot` names a user's path: a symlink is followed (the link stays a link), a character
/// device or FIFO is written directly, a directory is refused.
#[cfg(unix)]
#[test]
fn plot_path_is_written_like_any_user_named_output() {
    let d = std::env::temp_dir().join(format!("kiln-bench-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let bench = |plot: &std::path::Path| {
        kiln(&[
            "bench",
            "--quick",
            "--filter",
            "relu",
            "--plot",
            plot.to_str().unwrap(),
        ])
    };
    // Through a symlink: the target gets the PNG, the link is kept.
    let target = d.join("target.png");
    let link = d.join("link.png");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (ok, _, err) = bench(&link);
    assert!(ok, "{err}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read(&target).unwrap().starts_with(b"\x89PNG"));
    // A FIFO is written to, not replaced by a file.
    let png = cli_util::through_fifo(&d.join("fifo"), bench);
    assert!(png.starts_with(b"\x89PNG"));
    // A directory is refused with the flag named.
    let (ok, _, err) = bench(&d);
    assert!(
        !ok && err.contains("--plot") && err.contains("directory"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
