//! Hugging Face GPT-2 both ways against the real client, Python's `transformers`: a tiny GPT-2
//! that Python creates (random weights, a byte-level BPE tokenizer trained on a small corpus,
//! `save_pretrained`) gives the same logits in kiln (`kiln logits`) as in transformers, and the
//! same token ids; a GPT that kiln trained, exported with `kiln export --hf`, loads in
//! transformers (`from_pretrained`) with the same logits as kiln's. Tolerance 1e-4 max abs.
//!
//! Needs `/usr/bin/python3` with torch, transformers and peft (`.ci/run` installs them;
//! `tests/common/python.rs`); without them the tests skip loudly (a failure under CI).

use crate::cli_util::*;
use crate::common::python::{hf_python, logits_rows, max_abs_diff, run_json};

use std::path::PathBuf;

use kiln::models::hf;

/// Text with a run of spaces, a non-ASCII letter, an emoji and a special token.
const TEXT: &str = "Hello  wörld 🙂 over the lazy dog<|endoftext|> end\n\tdef f(x): return 3.14";

/// 11 ids: an awkward length under the context of 32.
const IDS: &str = "5,17,399,0,42,250,3,77,128,221,301";

const TOL: f64 = 1e-4;

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// `kiln logits --base base --ids ids --json`, parsed.
fn kiln_logits(base: &std::path::Path, ids: &str) -> serde_json::Value {
    let (ok, out, err) = kiln(&["logits", "--base", s(base), "--ids", ids, "--json"]);
    assert!(ok, "kiln logits failed: {err}");
    serde_json::from_str(out.trim()).expect("kiln logits --json")
}

/// The Python with the Hugging Face stack and a fresh scratch folder, or `None` after a loud
/// skip of `check`.
fn python_and_scratch(check: &str, name: &str) -> Option<(PathBuf, PathBuf)> {
    let py = hf_python(check)?;
    Some((py, scratch_in("hf", name)))
}

#[test]
fn gpt2_from_transformers_gives_its_logits_and_ids() {
    let check = "GPT-2 from transformers: kiln's logits and token ids against Python's";
    let Some((py, dir)) = python_and_scratch(check, "from-python") else {
        return;
    };
    let model = dir.join("tiny-gpt2");
    let made = run_json(&py, "hf_gpt2.py", &["make", s(&model), TEXT]);
    assert_eq!(made["vocab_size"], 400, "{made}");

    let m = hf::load(&model).unwrap();
    assert_eq!(m.architecture, "GPT2LMHeadModel");
    assert_eq!(m.gpt.config().n_layer, 2);
    assert_eq!(m.gpt.config().context, 32);
    let tok = m.tokenizer.as_ref().expect("tokenizer.json read");
    assert_eq!(
        tok.encode(TEXT),
        ids_of(&made),
        "token ids differ from Python's"
    );
    assert_eq!(
        m.tokenizer_config
            .special
            .get("eos_token")
            .map(String::as_str),
        Some("<|endoftext|>")
    );

    let ours = kiln_logits(&model, IDS);
    let theirs = run_json(&py, "hf_gpt2.py", &["logits", s(&model), IDS]);
    assert_eq!(ours["ids"], theirs["ids"]);
    let (a, b) = (logits_rows(&ours), logits_rows(&theirs));
    assert_eq!((a.len(), a[0].len()), (11, 400));
    let d = max_abs_diff(&a, &b);
    assert!(d < TOL, "kiln vs transformers logits: max abs {d:e}");
    // Not a vacuous match: the logits spread well beyond the tolerance.
    let spread = a[0].iter().cloned().fold(f64::MIN, f64::max)
        - a[0].iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.5, "logits too flat to compare: {spread}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kiln_gpt_exported_loads_in_transformers() {
    let check = "kiln export --hf: transformers loads the GPT-2 and its logits equal kiln's";
    let Some((py, dir)) = python_and_scratch(check, "to-python") else {
        return;
    };
    let (run, out) = (dir.join("run"), dir.join("exported"));
    let text = tiny_text(&dir);
    let (ok, _, err) = train_tiny_gpt(
        &text,
        &run,
        &[
            "--tokenizer",
            "bpe",
            "--bpe-vocab",
            "300",
            "--epochs",
            "1",
            "--lr",
            "0.01",
            "--quiet",
        ],
    );
    assert!(ok, "train: {err}");
    let (ok, stdout, err) = kiln(&["export", "--hf", s(&out), s(&run)]);
    assert!(ok, "export: {err}");
    assert!(stdout.contains("GPT2LMHeadModel"), "{stdout}");
    assert_files(
        &out,
        &[
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    );

    let ids = "3,14,15,9,2,6,5,35,8,9,7,9,3";
    let ours = kiln_logits(&run, ids);
    let theirs = run_json(&py, "hf_gpt2.py", &["logits", s(&out), ids]);
    let d = max_abs_diff(&logits_rows(&ours), &logits_rows(&theirs));
    assert!(d < TOL, "kiln vs transformers on the export: max abs {d:e}");
    // The exported directory reads back into kiln with the same logits.
    let back = kiln_logits(&out, ids);
    let d = max_abs_diff(&logits_rows(&ours), &logits_rows(&back));
    assert!(d < 1e-6, "kiln export -> kiln load: max abs {d:e}");
    // transformers' tokenizer of the export encodes as the run's does.
    let sample = "the cat  sat on a mat\nand dog ran";
    let py_ids = run_json(&py, "hf_gpt2.py", &["encode", s(&out), sample]);
    let m = hf::load(&out).unwrap();
    assert_eq!(m.tokenizer.unwrap().encode(sample), ids_of(&py_ids));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What [`peft_adapter_from_python_gives_its_logits`] checks.
const PEFT_CHECK: &str = "a PEFT LoRA of transformers' GPT-2 in kiln: logits against PeftModel's";

#[test]
fn peft_adapter_from_python_gives_its_logits() {
    let Some((py, dir)) = python_and_scratch(PEFT_CHECK, "peft") else {
        return;
    };
    let (model, adapter) = (dir.join("tiny-gpt2"), dir.join("lora"));
    run_json(&py, "hf_gpt2.py", &["make", s(&model), TEXT]);
    let theirs = run_json(&py, "hf_gpt2.py", &["peft", s(&model), s(&adapter), IDS]);
    let adapted = [
        "logits",
        "--base",
        s(&model),
        "--adapter",
        s(&adapter),
        "--ids",
    ];
    let (ok, out, err) = kiln(&[&adapted[..], &[IDS, "--json"]].concat());
    assert!(ok, "kiln logits --adapter failed: {err}");
    let ours: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let d = max_abs_diff(&logits_rows(&ours), &logits_rows(&theirs));
    assert!(d < TOL, "kiln vs PeftModel logits: max abs {d:e}");
    // The adapter changes the logits (so the match is not the base's).
    let base = kiln_logits(&model, IDS);
    let moved = max_abs_diff(&logits_rows(&ours), &logits_rows(&base));
    assert!(moved > 0.01, "the adapter changed nothing: {moved}");

    // An adapter_config.json whose r disagrees with the tensors: refused, naming both.
    let cfg = adapter.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["r"] = 8.into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let e = fails(&[&adapted[..], &["1"]].concat());
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("r = 8"),
        "{e}"
    );
    assert!(e.contains("lora_A.weight") && e.contains("[4, 64]"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
