//! LoRA: forward against an f64 CPU twin at awkward sizes, finite-difference gradients of A, B
//! and the input (the base frozen), merge / unmerge, adapters on every zoo model by name,
//! PEFT-layout save / load (exact key names and config fields) and its errors, the optimizer
//! holding state only for A and B, and a tiny training run that leaves the base bit-identical.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kiln::Tensor;
use kiln::io::safetensors::read_weights;
use kiln::models::{BertConfig, BertEncoder, Gpt, GptConfig, LeNet, Mlp, ResNet18};
use kiln::nn::freeze;
use kiln::nn::lora::{self, FrozenBase, LoraAdapter, LoraConfig};
use kiln::nn::lora_io::{self, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use kiln::nn::{Linear, Module, Reduction, loss};
use kiln::optim::{Adam, AdamConfig, Optimizer};

const FWD: Tolerance = Tolerance::new(1e-4, 1e-5, "f32 matmuls vs f64 reference");

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-lora-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// y = x W^T + b + s (x A^T) B^T in f64, x (rows, in), W (out, in), A (r, in), B (out, r).
#[allow(clippy::too_many_arguments)]
fn lora_cpu(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    a: &[f64],
    bm: &[f64],
    s: f64,
    (rows, fin, fout, r): (usize, usize, usize, usize),
) -> Vec<f64> {
    let mut y = vec![0.0; rows * fout];
    for i in 0..rows {
        let xr = &x[i * fin..(i + 1) * fin];
        let xa: Vec<f64> = (0..r)
            .map(|k| (0..fin).map(|j| xr[j] * a[k * fin + j]).sum())
            .collect();
        for o in 0..fout {
            let base: f64 = (0..fin).map(|j| xr[j] * w[o * fin + j]).sum();
            let lo: f64 = (0..r).map(|k| xa[k] * bm[o * r + k]).sum();
            y[i * fout + o] = base + b.map_or(0.0, |b| b[o]) + s * lo;
        }
    }
    y
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn gpt_cfg() -> GptConfig {
    GptConfig {
        vocab_size: 13,
        n_layer: 2,
        n_head: 2,
        n_kv_head: 2,
        d_model: 8,
        context: 8,
        dropout: 0.0,
        rope: false,
    }
}

fn ids(b: usize, t: usize, seed_tag: &str) -> Tensor {
    let v = rand_indices(b * t, seed(seed_tag), 13);
    Tensor::from_slice_on(&gpu(), &v, &[b, t]).unwrap()
}

/// Give every LoRA tensor random non-zero values (fresh B is zero, which hides mistakes).
fn randomise_lora(model: &dyn Module, tag: &str) {
    for (i, (n, t)) in lora::lora_parameters(model).into_iter().enumerate() {
        let v = rand_signed_away_from_zero(t.numel(), seed(tag) + i as u64, 0.05, 0.5);
        let _ = n;
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
}

fn values(model: &dyn Module) -> Vec<(String, Vec<f32>)> {
    model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec::<f32>().unwrap()))
        .collect()
}

#[test]
fn forward_matches_cpu_at_awkward_sizes() {
    // (rows, in, out, r, bias)
    for &(rows, fin, fout, r, bias) in &[
        (1, 1, 1, 1, true),
        (7, 17, 7, 3, false),
        (17, 129, 17, 8, true),
        (3, 7, 129, 1, true),
        (129, 17, 7, 4, false),
    ] {
        let tag = format!("fwd{rows}x{fin}x{fout}r{r}");
        let x = rand_vec(rows * fin, seed(&tag), -1.0, 1.0);
        let w = rand_vec(fout * fin, seed(&tag) + 1, -0.5, 0.5);
        let b = rand_vec(fout, seed(&tag) + 2, -0.5, 0.5);
        let a = rand_vec(r * fin, seed(&tag) + 3, -0.5, 0.5);
        let bm = rand_vec(fout * r, seed(&tag) + 4, -0.5, 0.5);
        let alpha = 1.5 * r as f32 + 0.5;
        let mut lin =
            Linear::from_tensors(tensor(&w, &[fout, fin]), bias.then(|| tensor(&b, &[fout])))
                .unwrap();
        lin.lora = Some(
            LoraAdapter::from_tensors(tensor(&a, &[r, fin]), tensor(&bm, &[fout, r]), alpha, 0.0)
                .unwrap(),
        );
        let got = lin
            .forward(&tensor(&x, &[rows, fin]))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let bb = f64s(&b);
        let want = lora_cpu(
            &f64s(&x),
            &f64s(&w),
            bias.then_some(&bb[..]),
            &f64s(&a),
            &f64s(&bm),
            alpha as f64 / r as f64,
            (rows, fin, fout, r),
        );
        FWD.assert_close(&format!("LoRA forward {tag}"), &got, &want);
        // Leading dims: (2, rows, in) gives the same rows twice.
        let x3: Vec<f32> = x.iter().chain(&x).copied().collect();
        let got3 = lin
            .forward(&tensor(&x3, &[2, rows, fin]))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want3: Vec<f64> = want.iter().chain(&want).copied().collect();
        FWD.assert_close(&format!("LoRA forward 3-D {tag}"), &got3, &want3);
    }
}

#[test]
fn fresh_adapter_leaves_output_unchanged() {
    let g = gpu();
    for &(fin, fout, r) in &[(7, 17, 4), (129, 7, 8)] {
        let mut lin = Linear::new_on(&g, fin, fout, true).unwrap();
        let x = tensor(&rand_vec(5 * fin, seed("fresh"), -1.0, 1.0), &[5, fin]);
        let base = lin.forward(&x).unwrap().to_vec::<f32>().unwrap();
        lin.lora = Some(LoraAdapter::new_on(&g, fin, fout, r, 16.0, 0.0).unwrap());
        let with = lin.forward(&x).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(base, with, "B = 0 must leave the output bit-identical");
        let ad = lin.lora.as_ref().unwrap();
        assert!(ad.b.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
        let bound = 1.0 / (fin as f32).sqrt();
        let av = ad.a.to_vec::<f32>().unwrap();
        assert!(
            av.iter().all(|v| v.abs() <= bound),
            "A outside U(-1/sqrt(in), ..)"
        );
        assert!(av.iter().any(|&v| v != 0.0));
        assert_eq!(ad.scale(), 16.0 / r as f32);
        let names: Vec<String> = lin.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias", "lora_A.weight", "lora_B.weight"]);
    }
}

#[test]
fn gradients_of_a_b_and_input_by_finite_differences() {
    let (rows, fin, fout, r) = (5, 7, 6, 3);
    let w = rand_vec(fout * fin, seed("gc-w"), -0.5, 0.5);
    let b = rand_vec(fout, seed("gc-b"), -0.5, 0.5);
    let alpha = 5.0f32;
    let s = alpha as f64 / r as f64;
    let (w2, b2) = (w.clone(), b.clone());
    gradcheck(
        "lora x, A, B",
        &[
            Input::rand(&[rows, fin], seed("gc-x"), -1.0, 1.0),
            Input::rand(&[r, fin], seed("gc-a"), -0.5, 0.5),
            Input::rand(&[fout, r], seed("gc-bm"), -0.5, 0.5),
        ],
        |t| {
            let mut lin =
                Linear::from_tensors(tensor(&w, &[fout, fin]), Some(tensor(&b, &[fout])))?;
            lin.lora = Some(LoraAdapter::from_tensors(
                t[1].clone(),
                t[2].clone(),
                alpha,
                0.0,
            )?);
            lin.forward(&t[0])
        },
        |x| {
            lora_cpu(
                &x[0],
                &f64s(&w2),
                Some(&f64s(&b2)),
                &x[1],
                &x[2],
                s,
                (rows, fin, fout, r),
            )
        },
        GradTol::default(),
    );
}

#[test]
fn frozen_base_gets_no_gradient() {
    let g = gpu();
    let mut mlp = Mlp::new_on(&g, 6, &[9], 4, "relu", 0.0).unwrap();
    lora::apply_lora(
        &mut mlp,
        &LoraConfig::new(2, 4.0, &["layers.0", "layers.2"]),
    )
    .unwrap();
    randomise_lora(&mlp, "frozen");
    let x = tensor(&rand_vec(3 * 6, seed("frozen-x"), -1.0, 1.0), &[3, 6]);
    mlp.forward(&x).unwrap().sum().unwrap().backward().unwrap();
    for (n, t) in mlp.named_parameters() {
        if lora::is_lora_name(&n) {
            assert!(t.requires_grad_flag(), "{n} must be trainable");
            assert!(t.grad().is_some(), "{n} got no gradient");
        } else {
            assert!(!t.requires_grad_flag(), "{n} must be frozen");
            assert!(t.grad().is_none(), "frozen {n} got a gradient");
        }
    }
}

#[test]
fn merge_equals_unmerged_forward_and_unmerge_restores_weights() {
    let mut gpt = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    // fc1 goes through the fused bias + GELU path, lm_head has no bias.
    let targets = ["q_proj", "v_proj", "fc1", "lm_head"];
    let adapted = lora::apply_lora(&mut gpt, &LoraConfig::new(3, 6.0, &targets)).unwrap();
    assert_eq!(adapted.len(), 2 * 3 + 1);
    randomise_lora(&gpt, "merge");
    let before = values(&gpt);
    let x = ids(2, 5, "merge-ids");
    let y0 = gpt.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(lora::merge(&mut gpt).unwrap(), 7);
    assert_eq!(
        lora::merge(&mut gpt).unwrap(),
        0,
        "merging twice must not add twice"
    );
    let changed = values(&gpt)
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.1 != b.1)
        .count();
    assert_eq!(changed, 7, "exactly the adapted weights change when merged");
    let y1 = gpt.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let tol = Tolerance::new(1e-4, 1e-5, "merged W + sBA vs two thin matmuls (f32)");
    tol.assert_close("merged forward", &y1, &y0);
    assert_eq!(lora::unmerge(&mut gpt).unwrap(), 7);
    for ((n, after), (_, orig)) in values(&gpt).iter().zip(&before) {
        Tolerance::new(0.0, 1e-6, "W + sBA - sBA in f32").assert_close(
            &format!("unmerged {n}"),
            after,
            orig,
        );
    }
    let y2 = gpt.forward(&x).unwrap().to_vec::<f32>().unwrap();
    tol.assert_close("unmerged forward", &y2, &y0);
}

#[test]
fn gpt_targets_select_exactly_the_named_projections() {
    let mut gpt = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let total = freeze::param_counts(&gpt).total;
    let cfg = LoraConfig::new(2, 4.0, &["q_proj", "v_proj"]);
    let adapted = lora::apply_lora(&mut gpt, &cfg).unwrap();
    assert_eq!(
        adapted,
        [
            "blocks.0.attn.q_proj",
            "blocks.0.attn.v_proj",
            "blocks.1.attn.q_proj",
            "blocks.1.attn.v_proj"
        ]
    );
    let names: Vec<String> = lora::lora_parameters(&gpt)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names[0], "blocks.0.attn.q_proj.lora_A.weight");
    assert_eq!(names[1], "blocks.0.attn.q_proj.lora_B.weight");
    assert_eq!(names.len(), 8);
    // Every non-LoRA parameter is frozen; counts: 4 layers x (A 2x8 + B 8x2).
    let c = freeze::param_counts(&gpt);
    assert_eq!(c.trainable, 4 * (2 * 8 + 8 * 2));
    assert_eq!(c.total, total + c.trainable);
    assert_eq!(c.trainable_tensors, 8);
    let line = lora::trainable_summary(&gpt);
    assert!(
        line.starts_with(&format!(
            "trainable params: {} || all params: ",
            c.trainable
        )),
        "{line}"
    );
    // Applying again, or a target that selects nothing, is an error naming the problem.
    let e = lora::apply_lora(&mut gpt, &cfg).unwrap_err().to_string();
    assert!(e.contains("already have adapters"), "{e}");
    let mut fresh = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let e = lora::apply_lora(&mut fresh, &LoraConfig::new(2, 4.0, &["qproj"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`qproj` matches no Linear layer") && e.contains("blocks.0.attn.q_proj"),
        "{e}"
    );
    assert!(
        lora::adapted_layers(&mut fresh).is_empty(),
        "a failed apply changes nothing"
    );
    assert!(
        fresh
            .named_parameters()
            .iter()
            .all(|(_, t)| t.requires_grad_flag())
    );
    // A glob over the whole path.
    let adapted = lora::apply_lora(&mut fresh, &LoraConfig::new(1, 1.0, &["blocks.1.*"])).unwrap();
    assert_eq!(
        adapted,
        [
            "blocks.1.attn.q_proj",
            "blocks.1.attn.k_proj",
            "blocks.1.attn.v_proj",
            "blocks.1.attn.o_proj",
            "blocks.1.mlp.fc1",
            "blocks.1.mlp.fc2"
        ]
    );
}

#[test]
fn every_zoo_model_exposes_its_linear_layers() {
    let g = gpu();
    let visit = |m: &mut dyn Module| {
        let mut v = Vec::new();
        m.visit_linears_mut("", &mut |n, _| v.push(n.to_string()));
        v
    };
    let mut mlp = Mlp::new_on(&g, 4, &[5, 6], 3, "relu", 0.1).unwrap();
    assert_eq!(visit(&mut mlp), ["layers.0", "layers.3", "layers.6"]);
    let mut lenet = LeNet::new_on(&g, (1, 8, 8), 5).unwrap();
    assert_eq!(
        visit(&mut lenet),
        ["classifier.0", "classifier.2", "classifier.4"]
    );
    let mut resnet = ResNet18::new_on(&g, (3, 8, 8), 4).unwrap();
    assert_eq!(visit(&mut resnet), ["fc"]);
    let bert_cfg = BertConfig {
        vocab_size: 20,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 10,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.0,
    };
    let mut bert = BertEncoder::new_on(&g, bert_cfg).unwrap();
    let adapted =
        lora::apply_lora(&mut bert, &LoraConfig::new(2, 2.0, &["query", "value"])).unwrap();
    assert_eq!(
        adapted,
        [
            "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.self.value"
        ]
    );
    // A matching layer that is not a Linear is an error, not a silent skip.
    let e = lora::apply_lora(
        &mut lenet,
        &LoraConfig::new(2, 2.0, &["features.0", "classifier.4"]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("selects `features.0`") && e.contains("not a Linear layer"),
        "{e}"
    );
    let adapted =
        lora::apply_lora(&mut lenet, &LoraConfig::new(2, 2.0, &["classifier.4"])).unwrap();
    assert_eq!(adapted, ["classifier.4"]);
}

#[test]
fn adapter_round_trip_in_peft_layout() {
    let dir = scratch_dir("roundtrip");
    let base = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let mut gpt = base.clone(); // shares the base weights
    let mut cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    cfg.dropout = 0.05;
    cfg.task_type = Some("CAUSAL_LM".into());
    cfg.base_model_name_or_path = Some("kiln-tiny-gpt".into());
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    randomise_lora(&gpt, "roundtrip");
    lora::set_training(&mut gpt, false);
    lora_io::save_adapter(&gpt, &cfg, &dir).unwrap();

    // Exact key names, shapes and the file's metadata.
    let w = read_weights(&dir.join(ADAPTER_WEIGHTS)).unwrap();
    let keys: Vec<&str> = w.keys().map(String::as_str).collect();
    let mut want = Vec::new();
    for i in 0..2 {
        for m in ["q_proj", "v_proj"] {
            for ab in ["A", "B"] {
                want.push(format!(
                    "base_model.model.blocks.{i}.attn.{m}.lora_{ab}.weight"
                ));
            }
        }
    }
    want.sort();
    assert_eq!(keys, want);
    let a = &w["base_model.model.blocks.0.attn.q_proj.lora_A.weight"];
    assert_eq!(a.shape, [4, 8]);
    let b = &w["base_model.model.blocks.1.attn.v_proj.lora_B.weight"];
    assert_eq!(b.shape, [8, 4]);
    let bytes = std::fs::read(dir.join(ADAPTER_WEIGHTS)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");

    // The config fields PEFT reads.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(j["peft_type"], "LORA");
    assert_eq!(j["r"], 4);
    assert_eq!(j["lora_alpha"], 8.0);
    assert!((j["lora_dropout"].as_f64().unwrap() - 0.05).abs() < 1e-7);
    assert_eq!(j["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    assert_eq!(j["bias"], "none");
    assert_eq!(j["task_type"], "CAUSAL_LM");
    assert_eq!(j["base_model_name_or_path"], "kiln-tiny-gpt");
    assert_eq!(j["fan_in_fan_out"], false);
    assert_eq!(j["inference_mode"], true);
    assert!(!dir.join(format!("{ADAPTER_WEIGHTS}.tmp")).exists());

    // Load into a model without adapters: they are created, filled, and the output matches.
    let mut other = base.clone();
    let got = lora_io::load_adapter(&mut other, &dir).unwrap();
    assert_eq!(got, cfg);
    lora::set_training(&mut other, false);
    let saved = lora::lora_parameters(&gpt);
    let loaded = lora::lora_parameters(&other);
    assert_eq!(saved.len(), loaded.len());
    for ((n1, t1), (n2, t2)) in saved.iter().zip(&loaded) {
        assert_eq!(n1, n2);
        assert_eq!(
            t1.to_vec::<f32>().unwrap(),
            t2.to_vec::<f32>().unwrap(),
            "{n1}"
        );
        assert!(!t1.shares_storage(t2));
    }
    let x = ids(2, 4, "rt-ids");
    assert_eq!(
        gpt.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        other.forward(&x).unwrap().to_vec::<f32>().unwrap()
    );
    // And into a model that already has matching adapters.
    let mut third = base.clone();
    lora::apply_lora(&mut third, &cfg).unwrap();
    lora_io::load_adapter(&mut third, &dir).unwrap();
    assert_eq!(
        lora::lora_parameters(&third)[1].1.to_vec::<f32>().unwrap(),
        saved[1].1.to_vec::<f32>().unwrap()
    );
}

/// Rewrite one field of the saved config.
fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join(ADAPTER_CONFIG);
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j[key] = value;
    std::fs::write(&p, serde_json::to_string(&j).unwrap()).unwrap();
}

#[test]
fn load_errors_are_clear_and_change_nothing() {
    let dir = scratch_dir("errors");
    let mut gpt = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    lora_io::save_adapter(&gpt, &cfg, &dir).unwrap();
    let fresh = || Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let load_err = |m: &mut Gpt| lora_io::load_adapter(m, &dir).unwrap_err().to_string();

    // No directory.
    let e = lora_io::load_adapter(&mut fresh(), &dir.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(ADAPTER_CONFIG), "{e}");

    // A missing tensor (the config names k_proj, the file has none).
    edit_config(
        &dir,
        "target_modules",
        serde_json::json!(["q_proj", "k_proj", "v_proj"]),
    );
    let mut m = fresh();
    let e = load_err(&mut m);
    assert!(
        e.contains("missing from the file (4)") && e.contains("blocks.0.attn.k_proj.lora_A.weight"),
        "{e}"
    );
    assert!(
        lora::adapted_layers(&mut m).is_empty(),
        "nothing changes on error"
    );

    // Unexpected tensors (the config names only q_proj).
    edit_config(&dir, "target_modules", serde_json::json!(["q_proj"]));
    let e = load_err(&mut fresh());
    assert!(
        e.contains("unexpected in the file (4)")
            && e.contains("base_model.model.blocks.1.attn.v_proj.lora_B.weight"),
        "{e}"
    );

    // Wrong r: mis-shaped for a fresh model, a clear mismatch for an adapted one.
    edit_config(
        &dir,
        "target_modules",
        serde_json::json!(["q_proj", "v_proj"]),
    );
    edit_config(&dir, "r", serde_json::json!(2));
    let e = load_err(&mut fresh());
    assert!(
        e.contains("mis-shaped (8)") && e.contains("file [4, 8] F32, model [2, 8]"),
        "{e}"
    );
    edit_config(&dir, "r", serde_json::json!(4));
    let mut adapted2 = fresh();
    lora::apply_lora(
        &mut adapted2,
        &LoraConfig::new(2, 8.0, &["q_proj", "v_proj"]),
    )
    .unwrap();
    let e = lora_io::load_adapter(&mut adapted2, &dir)
        .unwrap_err()
        .to_string();
    assert!(e.contains("r = 4") && e.contains("has r = 2"), "{e}");

    // Config options kiln does not support.
    for (key, value, says) in [
        ("peft_type", serde_json::json!("IA3"), "peft_type is `IA3`"),
        ("bias", serde_json::json!("all"), "bias `all`"),
        ("use_dora", serde_json::json!(true), "use_dora"),
        ("fan_in_fan_out", serde_json::json!(true), "fan_in_fan_out"),
    ] {
        let p = dir.join(ADAPTER_CONFIG);
        let keep = std::fs::read_to_string(&p).unwrap();
        edit_config(&dir, key, value);
        let e = load_err(&mut fresh());
        assert!(e.contains(says), "{key}: {e}");
        std::fs::write(&p, keep).unwrap();
    }
    lora_io::load_adapter(&mut fresh(), &dir).expect("the restored config loads");

    // A truncated weights file.
    let wp = dir.join(ADAPTER_WEIGHTS);
    let bytes = std::fs::read(&wp).unwrap();
    std::fs::write(&wp, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&mut fresh());
    assert!(e.contains("safetensors"), "{e}");
    // Saving a model without adapters.
    let e = lora_io::save_adapter(&fresh(), &cfg, &dir)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no LoRA adapter"), "{e}");
}

#[test]
fn training_moves_only_the_adapters_and_reduces_loss() {
    let g = gpu();
    kiln::nn::manual_seed(7);
    let (n, fin, fout) = (32, 6, 3);
    let mut mlp = Mlp::new_on(&g, fin, &[16], fout, "relu", 0.0).unwrap();
    let x = tensor(&rand_vec(n * fin, seed("train-x"), -1.0, 1.0), &[n, fin]);
    let y = tensor(&rand_vec(n * fout, seed("train-y"), -1.0, 1.0), &[n, fout]);
    let cfg = LoraConfig::new(4, 8.0, &["layers.0", "layers.2"]);
    lora::apply_lora(&mut mlp, &cfg).unwrap();
    let base_before: Vec<_> = values(&mlp)
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .collect();
    // Built over every parameter: frozen ones get no state.
    let mut opt = Adam::new(mlp.named_parameters(), AdamConfig::adam(0.02)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad().unwrap();
        let l = loss::mse_loss(&mlp.forward(&x).unwrap(), &y, Reduction::Mean).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
        losses.push(l.item().unwrap());
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("LoRA r=4 on a 6-16-3 MLP, 60 Adam steps: loss {first:.4} -> {last:.4}");
    eprintln!("{}", lora::trainable_summary(&mlp));
    assert!(
        last < 0.8 * first,
        "LoRA training did not reduce the loss: {losses:?}"
    );
    let base_after: Vec<_> = values(&mlp)
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .collect();
    assert_eq!(
        base_before, base_after,
        "the base weights must stay bit-identical"
    );
    let state = opt.state();
    // exp_avg, exp_avg_sq and step for each of the 4 LoRA tensors, nothing else.
    assert_eq!(
        state.tensors.len(),
        3 * 4,
        "Adam state for the 4 LoRA tensors only"
    );
    assert!(
        state.tensors.iter().all(|(n, _)| n.contains(".lora_")),
        "{:?}",
        state.tensors.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    // An optimizer over lora_parameters() alone holds the same.
    let opt2 = Adam::new(lora::lora_parameters(&mlp), AdamConfig::adam(0.02)).unwrap();
    assert_eq!(opt2.state().tensors.len(), 0);
}

#[test]
fn dropout_on_the_lora_path_only_in_training() {
    let g = gpu();
    let mut seq = kiln::nn::Sequential::new().with(Linear::new_on(&g, 17, 7, true).unwrap());
    let mut cfg = LoraConfig::new(2, 2.0, &["0"]);
    cfg.dropout = 0.5;
    lora::apply_lora(&mut seq, &cfg).unwrap();
    randomise_lora(&seq, "dropout");
    let x = tensor(&rand_vec(9 * 17, seed("dropout-x"), 0.5, 1.0), &[9, 17]);
    let t1 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let t2 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t1, t2, "dropout must draw fresh masks in training");
    lora::set_training(&mut seq, false);
    let e1 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let e2 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(e1, e2, "no dropout in evaluation");
    // Sequential passes the mode down to the Linear layer and its adapter.
    seq.set_training(true);
    let t3 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t3, e1);
    seq.set_training(false);
    assert_eq!(seq.forward(&x).unwrap().to_vec::<f32>().unwrap(), e1);

    // GPT's set_training reaches the adapters inside its blocks and the LM head too.
    let mut gpt = Gpt::new_on(&g, gpt_cfg()).unwrap();
    let mut cfg = LoraConfig::new(2, 2.0, &["q_proj", "fc1", "lm_head"]);
    cfg.dropout = 0.5;
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    randomise_lora(&gpt, "dropout-gpt");
    let tokens = ids(2, 5, "dropout-gpt-ids");
    gpt.set_training(true);
    let t1 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    let t2 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t1, t2, "GPT LoRA dropout in training");
    gpt.set_training(false);
    let e1 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    let e2 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(e1, e2, "GPT set_training(false) must turn LoRA dropout off");
}

/// A read-only base, standing in for a quantised one: forward 2 x W^T, no merging.
struct DoubledBase {
    w: Tensor,
}

impl FrozenBase for DoubledBase {
    fn in_features(&self) -> usize {
        self.w.shape()[1]
    }
    fn out_features(&self) -> usize {
        self.w.shape()[0]
    }
    fn base_forward(&self, x: &Tensor) -> kiln::Result<Tensor> {
        x.matmul(&self.w.t()?)?.mul_scalar(2.0)
    }
    fn add_to_weight(&self, _: f32, _: &Tensor) -> kiln::Result<()> {
        Err(kiln::Error::Arg {
            op: "DoubledBase",
            msg: "read-only base".into(),
        })
    }
}

#[test]
fn adapter_works_over_any_frozen_base() {
    let (rows, fin, fout, r) = (7, 17, 5, 2);
    let w = rand_vec(fout * fin, seed("any-w"), -0.5, 0.5);
    let a = rand_vec(r * fin, seed("any-a"), -0.5, 0.5);
    let bm = rand_vec(fout * r, seed("any-b"), -0.5, 0.5);
    let x = rand_vec(rows * fin, seed("any-x"), -1.0, 1.0);
    let base = DoubledBase {
        w: tensor(&w, &[fout, fin]),
    };
    let mut ad =
        LoraAdapter::from_tensors(tensor(&a, &[r, fin]), tensor(&bm, &[fout, r]), 4.0, 0.0)
            .unwrap();
    let got = ad
        .forward(&base, &tensor(&x, &[rows, fin]))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let w2: Vec<f64> = w.iter().map(|&v| 2.0 * v as f64).collect();
    let want = lora_cpu(
        &f64s(&x),
        &w2,
        None,
        &f64s(&a),
        &f64s(&bm),
        2.0,
        (rows, fin, fout, r),
    );
    FWD.assert_close("adapter over a custom base", &got, &want);
    let e = ad.merge(&base).unwrap_err().to_string();
    assert!(e.contains("read-only base"), "{e}");
    assert!(!ad.is_merged());
    // Shapes that do not fit the base are refused.
    let small = DoubledBase {
        w: tensor(&w[..fin], &[1, fin]),
    };
    assert!(ad.merge(&small).is_err());
}
