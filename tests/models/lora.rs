//! LoRA: forward against an f64 CPU twin at awkward sizes, finite-difference gradients of A, B
//! and the input (the base frozen), merge / unmerge, adapters on every zoo model by name,
//! PEFT-layout save / load (exact key names and config fields) and its errors, the optimizer
//! holding state only for A and B, and a tiny training run that leaves the base bit-identical.

use crate::common;

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

fn gpt_cfg() -> GptConfig {
    small_gpt_config(13)
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
    assert_mentions(
        &e,
        &["`qproj` matches no Linear layer", "blocks.0.attn.q_proj"],
    );
    let adapted = lora::adapted_layers(&mut fresh);
    assert!(adapted.is_empty(), "a failed apply changes nothing");
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
    assert_mentions(&e, &["selects `features.0`", "not a Linear layer"]);
    let adapted =
        lora::apply_lora(&mut lenet, &LoraConfig::new(2, 2.0, &["classifier.4"])).unwrap();
    assert_eq!(adapted, ["classifier.4"]);
}

mod more;
