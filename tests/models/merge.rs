//! `kiln merge` through the binary: a QLoRA adapter folded into its base GPT gives the same
//! logits as base + adapter, and adapters that do not fit the base are refused by name.

use crate::cli_util;
use crate::common;

use std::path::{Path, PathBuf};

use cli_util::{clean_error, kiln, lcg_words, s, train_tiny_gpt, write_tiny};
use common::*;
use kiln::models::{Gpt, GptConfig, ModelSpec};
use kiln::nn::lora::{self, LoraConfig};
use kiln::nn::{Module, lora_io};
use kiln::train::checkpoint;

use crate::qlora::{MERGE, gpt_cfg, ids, randomise_lora, vals};

fn scratch(name: &str) -> PathBuf {
    cli_util::scratch_in("qlora", name)
}

/// A tiny GPT run: `kiln train --model gpt` on 2 KB of words. Returns the run directory.
fn tiny_gpt_run(d: &Path) -> PathBuf {
    let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"];
    let tp = write_tiny(d, &lcg_words(&words, 7, 50, None));
    let out = d.join("run");
    let flags = ["--model", "gpt", "--epochs", "1", "--lr", "0.01"];
    let (ok, _, err) = train_tiny_gpt(&tp, &out, &flags);
    assert!(ok, "{err}");
    out
}

/// The run's language model with its weights, built from the checkpoint's model spec.
fn load_lm(ckpt: &Path) -> (kiln::models::LanguageModel, u32) {
    let ck = checkpoint::load(ckpt).unwrap();
    let spec: ModelSpec = serde_json::from_str(ck.meta("model_spec").unwrap()).unwrap();
    let lm = spec.build_lm(&gpu()).unwrap();
    ck.restore_into("model", &lm.named_parameters()).unwrap();
    let vocab = match spec {
        ModelSpec::Gpt { vocab_size, .. } => vocab_size as u32,
        _ => panic!("not a gpt"),
    };
    (lm, vocab)
}

fn ckpt_file(run: &Path) -> PathBuf {
    ["best.safetensors", "checkpoint.safetensors"]
        .iter()
        .map(|n| run.join(n))
        .find(|p| p.exists())
        .unwrap()
}

/// Runs `kiln merge --base B --adapter A --out O`, which must fail with one clean paragraph;
/// returns its stderr.
fn merge_fails(base: &str, adapter: &str, out: &str) -> String {
    let (ok, _, err) = kiln(&["merge", "--base", base, "--adapter", adapter, "--out", out]);
    assert!(!ok, "kiln merge should have failed:\n{err}");
    clean_error(&err);
    err
}

#[test]
fn kiln_merge_round_trip_on_a_tiny_gpt() {
    let d = scratch("merge");
    let run = tiny_gpt_run(&d);
    let cfg = LoraConfig::new(2, 4.0, &["q_proj", "v_proj", "fc1"]);
    // An adapter with random non-zero A and B, in the PEFT layout.
    let (mut lm, vocab) = load_lm(&ckpt_file(&run));
    lora::apply_lora(&mut lm, &cfg).unwrap();
    randomise_lora(&lm, "cli-merge");
    lm.set_training(false);
    let adapter = d.join("adapter");
    lora_io::save_adapter(&lm, &cfg, &adapter).unwrap();
    let x = ids(2, 16, "cli-ids", vocab);
    let want = vals(&lm.forward(&x).unwrap());

    // `kiln merge` of the run and the adapter into `out`, plus `extra` flags.
    let merge = |out: &Path, extra: &[&str]| {
        let mut args = vec!["merge", "--base", s(&run), "--adapter", s(&adapter)];
        args.extend(["--out", s(out)]);
        args.extend_from_slice(extra);
        kiln(&args)
    };
    let out = d.join("merged");
    let (ok, stdout, err) = merge(&out, &[]);
    assert!(ok, "{err}");
    assert!(stdout.contains("merged 3 adapted layers"), "{stdout}");
    let merged_file = out.join("best.safetensors");
    let ck = checkpoint::load(&merged_file).unwrap();
    assert!(ck.tensors.keys().all(|k| !k.contains("lora_")));
    assert!(ck.tensors.keys().all(|k| !k.starts_with("optim.")));
    assert!(ck.metadata["lora_merged"].contains("\"r\":2"));
    let (mut merged, _) = load_lm(&merged_file);
    merged.set_training(false);
    MERGE.assert_close(
        "kiln merge",
        &vals(&merged.forward(&x).unwrap()),
        &f64s(&want),
    );
    // `kiln generate` reads it.
    let (ok, stdout, err) = cli_util::generate(
        &out,
        "the cat",
        &["--max-tokens", "5", "--temperature", "0"],
    );
    assert!(ok, "{err}");
    assert!(stdout.starts_with("the cat"), "{stdout}");

    // --qlora: the merge uses the NF4-dequantised bases the adapter was trained on.
    let (mut q, _) = load_lm(&ckpt_file(&run));
    lora::quantize_bases(&mut q, &cfg).unwrap();
    lora_io::load_adapter(&mut q, &adapter).unwrap();
    q.set_training(false);
    let want_q = vals(&q.forward(&x).unwrap());
    let out_q = d.join("merged-q");
    let (ok, _, err) = merge(&out_q, &["--qlora"]);
    assert!(ok, "{err}");
    let (mut mq, _) = load_lm(&out_q.join("best.safetensors"));
    mq.set_training(false);
    // The fused kernel may compute in f16 (Auto): a looser bound than the f32 merge.
    Tolerance::new(2e-2, 2e-2, "merged NF4 bases vs QLoRA forward (maybe f16)").assert_close(
        "kiln merge --qlora",
        &vals(&mq.forward(&x).unwrap()),
        &f64s(&want_q),
    );

    // Errors: one paragraph, non-zero exit.
    let err = merge_fails(s(&run), s(&adapter), s(&out));
    assert!(err.contains("already holds"), "{err}");
    let err = merge_fails(s(&run), s(&d.join("none")), s(&d.join("o1")));
    assert!(err.contains("no such directory"), "{err}");
    let err = merge_fails(s(&d.join("nope")), s(&adapter), s(&d.join("o2")));
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn kiln_merge_refuses_an_adapter_that_does_not_fit() {
    let d = scratch("bad-adapter");
    let run = tiny_gpt_run(&d);
    // Made for a wider GPT: every tensor is mis-shaped for the run's width-16 model.
    let mut wide = Gpt::new(GptConfig {
        vocab_size: 13,
        n_layer: 1,
        n_head: 2,
        n_kv_head: 2,
        d_model: 24,
        context: 16,
        dropout: 0.0,
        rope: false,
    })
    .unwrap();
    let cfg = LoraConfig::new(2, 4.0, &["q_proj"]);
    lora::apply_lora(&mut wide, &cfg).unwrap();
    let bad = d.join("wide-adapter");
    lora_io::save_adapter(&wide, &cfg, &bad).unwrap();
    let out = d.join("out");
    let err = merge_fails(s(&run), s(&bad), s(&out));
    assert_mentions(&err, &["mis-shaped", "q_proj.lora_A.weight"]);
    assert!(!out.join("best.safetensors").exists());
    // Targets the model does not have.
    let cfg2 = LoraConfig::new(2, 4.0, &["query"]);
    let mut other = Gpt::new(gpt_cfg(16)).unwrap();
    lora::apply_lora(&mut other, &LoraConfig::new(2, 4.0, &["q_proj"])).unwrap();
    let bad2 = d.join("bad-targets");
    lora_io::save_adapter(&other, &cfg2, &bad2).unwrap();
    let err = merge_fails(s(&run), s(&bad2), s(&out));
    assert!(err.contains("query"), "{err}");
    // The adapter directory without its weights file.
    std::fs::remove_file(bad2.join(lora_io::ADAPTER_WEIGHTS)).unwrap();
    let err = merge_fails(s(&run), s(&bad2), s(&out));
    assert!(err.contains(lora_io::ADAPTER_WEIGHTS), "{err}");
}
