//! kiln against Hugging Face transformers on Llama: Python builds tiny random
//! `LlamaForCausalLM`s (tied and untied, Llama 3 and linear RoPE scaling) and saves them; kiln
//! loads each and its logits on the same ids equal transformers' within 1e-4 (max abs). The
//! reverse: kiln writes a Llama directory and transformers' logits on it equal kiln's.
//!
//! Needs the Hugging Face stack of `common::python` (`scripts/hf_llama.py`); without it the
//! tests skip loudly (a failure under CI).

use crate::common;

use std::path::Path;

use common::*;
use kiln::Tensor;
use kiln::models::hf::llama;
use kiln::models::{Gpt, GptArch, GptConfig};
use kiln::nn::Module;
use kiln::ops::rope::RopeScaling;

const IDS: [u32; 9] = [1, 17, 100, 4, 4, 63, 0, 88, 29];

/// `scripts/hf_llama.py args...`'s stdout.
fn run(py: &Path, args: &[&str]) -> String {
    common::python::run_stdout(py, "hf_llama.py", args)
}

fn ids_arg() -> String {
    IDS.map(|i| i.to_string()).join(",")
}

/// The logits of `{"logits": [[...], ...]}`, flattened.
fn logits_of(json: &str) -> Vec<f32> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let rows = v["logits"].as_array().unwrap();
    rows.iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

fn kiln_logits(gpt: &Gpt) -> Vec<f32> {
    let ids = Tensor::from_slice_on(&gpu(), &IDS, &[1, IDS.len()]).unwrap();
    f32s(&gpt.forward(&ids).unwrap())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn kiln_loads_transformers_llama() {
    let Some(py) = common::python::hf_python("Llama logits against transformers") else {
        return;
    };
    let root = std::env::temp_dir().join(format!("kiln-llama-py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (tied, scaling) in [("untie", "llama3"), ("tie", "linear"), ("untie", "none")] {
        let dir = root.join(format!("{tied}-{scaling}"));
        run(
            &py,
            &["make", dir.to_str().unwrap(), tied, scaling, &ids_arg()],
        );
        let gpt = llama::load_dir_on(&gpu(), &dir).unwrap();
        assert_eq!(gpt.arch().tied_embeddings, tied == "tie");
        let want = logits_of(&std::fs::read_to_string(dir.join("logits.json")).unwrap());
        let d = max_diff(&kiln_logits(&gpt), &want);
        eprintln!("llama {tied} {scaling}: max |kiln - transformers| = {d:.2e}");
        assert!(d <= 1e-4, "{tied} {scaling}: logits differ by {d}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn transformers_loads_kiln_llama() {
    let Some(py) = common::python::hf_python("transformers loading kiln's Llama") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kiln-llama-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = GptConfig {
        vocab_size: 101,
        n_layer: 2,
        n_head: 4,
        n_kv_head: 2,
        d_model: 64,
        context: 64,
        dropout: 0.0,
        rope: true,
    };
    let mut arch = GptArch::llama(96, 1e-6, 20_000.0);
    arch.tied_embeddings = true;
    arch.rope_scaling = RopeScaling::Llama3 {
        factor: 4.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 32,
    };
    let mut gpt = Gpt::with_arch_on(&gpu(), cfg, arch).unwrap();
    gpt.set_training(false);
    for (i, (_, t)) in gpt.named_parameters().into_iter().enumerate() {
        let v = rand_vec(t.numel(), seed("llama-out") + i as u64, -0.3, 0.3);
        let v: Vec<f32> = if t.shape().len() == 1 {
            v.iter().map(|x| 1.0 + x).collect()
        } else {
            v
        };
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
    llama::save_dir(&gpt, &dir).unwrap();
    let want = logits_of(&run(&py, &["logits", dir.to_str().unwrap(), &ids_arg()]));
    let d = max_diff(&kiln_logits(&gpt), &want);
    eprintln!("kiln-written llama: max |kiln - transformers| = {d:.2e}");
    assert!(d <= 1e-4, "logits differ by {d}");
    assert!(Path::new(&dir.join("config.json")).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
