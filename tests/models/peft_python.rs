//! PEFT adapter files open in Python and come back: kiln saves an adapter, Python's
//! `safetensors` (what Hugging Face PEFT reads adapters with) opens it, checks PEFT's key layout
//! and config, writes a copy with every `lora_B` doubled, and kiln loads that copy.
//!
//! Needs `python3` with `safetensors` and `numpy` (`.ci/run` installs them); without them the
//! test skips loudly (`kernels/tests/kernels/common/skip.rs`: a failure under CI).

use crate::common;

use std::process::Command;

use common::*;
use kiln::models::Gpt;
use kiln::nn::lora::{self, LoraConfig};
use kiln::nn::lora_io;

fn python_has_safetensors() -> bool {
    Command::new("python3")
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn adapter_opens_in_python_and_loads_back() {
    if !python_has_safetensors() {
        return skip(
            "PEFT adapter round trip through Python",
            "python3 with `safetensors` and `numpy` not found",
            "pip install safetensors numpy",
        );
    }
    let root = std::env::temp_dir().join(format!("kiln-peft-py-{}", std::process::id()));
    let (src, dst) = (root.join("kiln"), root.join("python"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&src).unwrap();

    let cfg_model = small_gpt_config(11);
    let base = Gpt::new_on(&gpu(), cfg_model).unwrap();
    let mut gpt = base.clone();
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    for (i, (_, t)) in lora::lora_parameters(&gpt).into_iter().enumerate() {
        let v = rand_signed_away_from_zero(t.numel(), seed("peft-py") + i as u64, 0.05, 0.5);
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
    lora_io::save_adapter(&gpt, &cfg, &src).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peft_roundtrip.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python refused kiln's adapter: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // Python saw every adapted module with PEFT's shapes: A (r, in), B (out, r).
    for i in 0..2 {
        for m in ["q_proj", "v_proj"] {
            let line = format!("blocks.{i}.attn.{m}: A (4, 8) B (8, 4)");
            assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
        }
    }
    assert_eq!(stdout.lines().count(), 4, "{stdout}");

    // Python's file loads into kiln: A unchanged, B doubled.
    let mut back = base.clone();
    let got = lora_io::load_adapter(&mut back, &dst).unwrap();
    assert_eq!(got, cfg);
    let saved = lora::lora_parameters(&gpt);
    let loaded = lora::lora_parameters(&back);
    assert_eq!(saved.len(), loaded.len());
    for ((n1, t1), (n2, t2)) in saved.iter().zip(&loaded) {
        assert_eq!(n1, n2);
        let (a, b) = (t1.to_vec::<f32>().unwrap(), t2.to_vec::<f32>().unwrap());
        let factor = if n1.ends_with("lora_B.weight") {
            2.0
        } else {
            1.0
        };
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x * factor, *y, "{n1}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
