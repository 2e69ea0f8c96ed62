//! Python's Hugging Face stack for the tests that compare kiln with `transformers` and `peft`:
//! Debian's `/usr/bin/python3` with `python3-torch` and the pinned transformers / peft that
//! `.ci/run` installs (`scripts/hf_stack.py` checks them). Without it a test skips loudly
//! ([`super::skip`]: a failure under CI).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Names another interpreter than `/usr/bin/python3` (one with torch, transformers and peft).
pub const HF_PYTHON_ENV: &str = "KILN_HF_PYTHON";

/// A script under the project's `scripts/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// The interpreter with the Hugging Face stack, or `None` after [`super::skip`]ping `check`.
pub fn hf_python(check: &str) -> Option<PathBuf> {
    let py = std::env::var_os(HF_PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
    let out = Command::new(&py).arg(script("hf_stack.py")).output();
    match out {
        Ok(o) if o.status.success() => Some(py),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => format!("{}: {e}", py.display()),
            };
            super::skip(
                check,
                &format!("no usable Hugging Face stack ({why})"),
                "apt-get install python3-torch python3-pip && /usr/bin/python3 -m pip install \
                 --break-system-packages transformers==4.44.2 accelerate==0.33.0 \
                 tokenizers==0.19.1 Jinja2==3.1.6 && /usr/bin/python3 -m pip install --break-system-packages \
                 --no-deps peft==0.12.0 (as .ci/run does)",
            );
            None
        }
    }
}

/// Run `py scripts/<name> args...`; its stdout (panics with the script's stderr when it fails).
pub fn run_stdout(py: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg(script(name))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// [`run_stdout`], its last line parsed as JSON.
pub fn run_json(py: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let stdout = run_stdout(py, name, args);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {last}"))
}

/// The `logits` rows of a `{"ids": [...], "logits": [[...], ...]}` document.
pub fn logits_rows(doc: &serde_json::Value) -> Vec<Vec<f64>> {
    doc["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// The largest |a - b| over two equally shaped logits tables (panics when the shapes differ).
pub fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len(), "positions");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "vocabulary");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}
