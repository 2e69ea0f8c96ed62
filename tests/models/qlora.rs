//! QLoRA inside the models' own Linear layers: `Linear::quantize_base` (forward against the CPU
//! twin "dequantise, then matmul" plus the LoRA path at awkward sizes, finite-difference
//! gradients of x, A and B through an NF4 base, no gradient for the base, the f32 buffer really
//! freed), `lora::quantize_bases` selecting exactly the targeted layers of a GPT, merging a
//! quantised layer, and full / merged checkpoints of a QLoRA model (`kiln merge` through the
//! binary is in `merge.rs`).

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::models::{Gpt, GptConfig};
use kiln::nn::lora::{self, FrozenBase, LoraAdapter, LoraConfig};
use kiln::nn::{Linear, Module};
use kiln::ops::nf4::Nf4Compute;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::reference::nf4 as cpu;

/// f32 fused NF4 matmul and f32 LoRA matmuls against the f64 twin.
const FWD: Tolerance = Tolerance::new(1e-4, 1e-5, "f32 NF4 + LoRA matmuls vs f64 twin");
/// A merged layer against the unmerged one: W' + s B A rounded to f32 once, sums reordered.
pub(crate) const MERGE: Tolerance = Tolerance::new(1e-4, 1e-5, "merged (W' + sBA) vs unmerged f32");

/// `dequant(q) x + b + s (x A^T) B^T` in f64; x (rows, in), A (r, in), B (out, r).
#[allow(clippy::too_many_arguments)]
fn qlora_cpu(
    x: &[f64],
    q: &cpu::Nf4Quantized,
    bias: Option<&[f64]>,
    a: &[f64],
    bm: &[f64],
    s: f64,
    rows: usize,
    r: usize,
) -> Vec<f64> {
    let (fout, fin) = (q.out_features, q.in_features);
    let mut y = cpu::matmul_nf4(x, rows, q, bias);
    for i in 0..rows {
        let xr = &x[i * fin..(i + 1) * fin];
        let xa: Vec<f64> = (0..r)
            .map(|k| (0..fin).map(|j| xr[j] * a[k * fin + j]).sum())
            .collect();
        for o in 0..fout {
            y[i * fout + o] += s * (0..r).map(|k| xa[k] * bm[o * r + k]).sum::<f64>();
        }
    }
    y
}

pub(crate) fn gpt_cfg(d_model: usize) -> GptConfig {
    GptConfig {
        vocab_size: 13,
        n_layer: 2,
        n_head: 2,
        n_kv_head: 2,
        d_model,
        context: 8,
        dropout: 0.0,
        rope: false,
    }
}

pub(crate) fn ids(b: usize, t: usize, tag: &str, vocab: u32) -> Tensor {
    let v = rand_indices(b * t, seed(tag), vocab);
    Tensor::from_slice_on(&gpu(), &v, &[b, t]).unwrap()
}

/// Give every LoRA tensor random non-zero values (a fresh B is zero, which hides mistakes).
pub(crate) fn randomise_lora(model: &dyn Module, tag: &str) {
    for (i, (_, t)) in lora::lora_parameters(model).into_iter().enumerate() {
        let v = rand_signed_away_from_zero(t.numel(), seed(tag) + i as u64, 0.05, 0.5);
        t.copy_from(&tensor(&v, t.shape())).unwrap();
    }
}

pub(crate) fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// A Linear (out, in) with random W, optional bias, and (when r > 0) a random adapter.
fn layer(fout: usize, fin: usize, r: usize, bias: bool, tag: &str) -> (Linear, Vec<f32>) {
    let w = rand_vec(fout * fin, seed(tag), -0.5, 0.5);
    let b = bias.then(|| tensor(&rand_vec(fout, seed(tag) ^ 1, -0.5, 0.5), &[fout]));
    let mut lin = Linear::from_tensors(tensor(&w, &[fout, fin]), b).unwrap();
    if r > 0 {
        let a = rand_signed_away_from_zero(r * fin, seed(tag) ^ 2, 0.05, 0.5);
        let bm = rand_signed_away_from_zero(fout * r, seed(tag) ^ 3, 0.05, 0.5);
        lin.lora = Some(
            LoraAdapter::from_tensors(tensor(&a, &[r, fin]), tensor(&bm, &[fout, r]), 3.0, 0.0)
                .unwrap(),
        );
    }
    (lin, w)
}

#[test]
fn quantized_linear_forward_matches_cpu_at_awkward_sizes() {
    // (rows, out, in, r, bias)
    for &(rows, fout, fin, r, bias) in &[
        (1, 1, 1, 0, true),
        (7, 7, 17, 3, false),
        (17, 17, 129, 8, true),
        (3, 129, 65, 1, true),
        (129, 7, 257, 0, false),
    ] {
        let name = format!("rows={rows} out={fout} in={fin} r={r} bias={bias}");
        let (mut lin, w) = layer(fout, fin, r, bias, &name);
        lin.quantize_base_with(Nf4Compute::F32).unwrap();
        assert!(lin.is_quantized());
        assert_eq!(
            lin.weight.shape(),
            [fout, fin],
            "the placeholder keeps the shape"
        );
        assert_eq!((lin.in_features(), lin.out_features()), (fin, fout));
        let x = rand_vec(rows * fin, seed(&name) ^ 9, -1.0, 1.0);
        let y = lin.forward(&tensor(&x, &[rows, fin])).unwrap();
        assert_eq!(y.shape(), [rows, fout]);
        let q = cpu::quantize(&w, fout, fin);
        let b64 = lin.bias.as_ref().map(|b| f64s(&vals(b)));
        let (a64, bm64, s) = match &lin.lora {
            Some(l) => (f64s(&vals(&l.a)), f64s(&vals(&l.b)), l.scale() as f64),
            None => (vec![], vec![], 0.0),
        };
        let want = qlora_cpu(&f64s(&x), &q, b64.as_deref(), &a64, &bm64, s, rows, r);
        FWD.assert_close(&name, &vals(&y), &want);
        // The base alone, and `forward_no_bias` (used by fused bias + GELU callers).
        let want_base = cpu::matmul_nf4(&f64s(&x), rows, &q, b64.as_deref());
        let base = lin.forward_base(&tensor(&x, &[rows, fin])).unwrap();
        FWD.assert_close(&format!("{name} base"), &vals(&base), &want_base);
        let nb = lin.forward_no_bias(&tensor(&x, &[rows, fin])).unwrap();
        let want_nb = qlora_cpu(&f64s(&x), &q, None, &a64, &bm64, s, rows, r);
        FWD.assert_close(&format!("{name} no bias"), &vals(&nb), &want_nb);
        // 3-d input: leading dims are flattened.
        if rows > 1 {
            let y3 = lin.forward(&tensor(&x, &[1, rows, fin])).unwrap();
            assert_eq!(y3.shape(), [1, rows, fout]);
            FWD.assert_close(&format!("{name} 3-d"), &vals(&y3), &want);
        }
    }
}

#[test]
fn auto_compute_is_close_to_the_exact_twin() {
    // Auto takes f16 where the adapter has SHADER_F16: inputs and W' rounded to f16 (rel 2^-11),
    // f32 accumulation; over in = 129 terms of |x w| <= 0.5 the error stays well under 2e-2.
    let (mut lin, w) = layer(17, 129, 0, true, "auto");
    lin.quantize_base().unwrap();
    let x = rand_vec(7 * 129, seed("auto-x"), -1.0, 1.0);
    let y = vals(&lin.forward(&tensor(&x, &[7, 129])).unwrap());
    let q = cpu::quantize(&w, 17, 129);
    let b = f64s(&vals(lin.bias.as_ref().unwrap()));
    let want = cpu::matmul_nf4(&f64s(&x), 7, &q, Some(&b));
    Tolerance::new(2e-2, 2e-2, "Auto (maybe f16) NF4 vs f64 twin").assert_close("auto", &y, &want);
}

#[test]
fn quantized_layer_rejects_bad_input_and_double_quantisation() {
    let (mut lin, _) = layer(7, 17, 2, true, "bad");
    lin.quantize_base().unwrap();
    let e = lin
        .forward(&tensor(&[1.0; 16], &[1, 16]))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["17", "16"]);
    let e = lin.quantize_base().unwrap_err().to_string();
    assert!(e.contains("already NF4"), "{e}");
    // A merged adapter must not be quantised into the base.
    let (mut lin2, _) = layer(7, 17, 2, false, "bad2");
    let mut a = lin2.lora.take().unwrap();
    a.merge(&lin2).unwrap();
    lin2.lora = Some(a);
    let e = lin2.quantize_base().unwrap_err().to_string();
    assert!(e.contains("unmerge"), "{e}");
    // In-place merge into NF4 is refused with the way out named.
    let e = lin.add_to_weight(1.0, &tensor(&[0.0; 7 * 17], &[7, 17]));
    assert!(e.unwrap_err().to_string().contains("dequantize_base"));
}

#[test]
fn gradients_of_x_a_b_through_a_quantized_base() {
    for &(rows, fout, fin, r, bias) in &[
        (1, 1, 1, 1, false),
        (3, 7, 17, 3, true),
        (2, 17, 65, 2, false),
    ] {
        let name = format!("qlora grad rows={rows} out={fout} in={fin} r={r}");
        let w = rand_vec(fout * fin, seed(&name), -0.5, 0.5);
        let b = rand_vec(fout, seed(&name) ^ 1, -0.5, 0.5);
        let q = cpu::quantize(&w, fout, fin);
        let s = 2.0 / r as f64;
        let b64 = f64s(&b);
        gradcheck(
            &name,
            &[
                Input::rand(&[rows, fin], seed(&name) ^ 2, -1.0, 1.0),
                Input::new(
                    rand_signed_away_from_zero(r * fin, seed(&name) ^ 3, 0.1, 0.6),
                    &[r, fin],
                ),
                Input::new(
                    rand_signed_away_from_zero(fout * r, seed(&name) ^ 4, 0.1, 0.6),
                    &[fout, r],
                ),
            ],
            |t| {
                let bt = bias.then(|| tensor(&b, &[fout]));
                let mut lin = Linear::from_tensors(tensor(&w, &[fout, fin]), bt)?;
                lin.quantize_base_with(Nf4Compute::F32)?;
                lin.lora = Some(LoraAdapter::from_tensors(
                    t[1].clone(),
                    t[2].clone(),
                    2.0,
                    0.0,
                )?);
                lin.forward(&t[0])
            },
            |x| {
                qlora_cpu(
                    &x[0],
                    &q,
                    bias.then_some(&b64[..]),
                    &x[1],
                    &x[2],
                    s,
                    rows,
                    r,
                )
            },
            GradTol::default(),
        );
    }
}

#[test]
fn base_gets_no_grad_and_the_optimizer_sees_only_lora() {
    let mut gpt = Gpt::new(gpt_cfg(16)).unwrap();
    let cfg = LoraConfig::new(2, 4.0, &["q_proj", "v_proj", "fc1"]);
    let report = lora::quantize_bases(&mut gpt, &cfg).unwrap();
    assert_eq!(report.layers.len(), 6);
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    randomise_lora(&gpt, "opt");
    let trainable: Vec<String> = gpt
        .named_parameters()
        .into_iter()
        .filter(|(_, t)| t.requires_grad_flag())
        .map(|(n, _)| n)
        .collect();
    let lora_names: Vec<String> = lora::lora_parameters(&gpt)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(trainable, lora_names);
    assert_eq!(lora_names.len(), 12);
    let names: Vec<String> = gpt.named_parameters().into_iter().map(|(n, _)| n).collect();
    for l in &report.layers {
        assert!(
            !names.contains(&format!("{}.weight", l.name)),
            "{} weight listed",
            l.name
        );
        assert!(
            names.contains(&format!("{}.bias", l.name)),
            "{} bias kept",
            l.name
        );
    }
    let before = lora::dense_state(&mut gpt).unwrap();
    let before: Vec<(String, Vec<f32>)> = before
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .map(|(n, t)| (n, vals(&t)))
        .collect();
    let mut opt = Adam::new(lora::lora_parameters(&gpt), AdamConfig::adam(1e-2)).unwrap();
    let x = ids(2, 8, "opt-ids", 13);
    for _ in 0..2 {
        opt.zero_grad().unwrap();
        let logits = gpt.forward(&x).unwrap();
        logits.square().unwrap().mean().unwrap().backward().unwrap();
        for (n, t) in gpt.named_parameters() {
            assert_eq!(t.grad().is_some(), lora::is_lora_name(&n), "{n}");
        }
        gpt.visit_linears_mut("", &mut |n, lin| {
            if lin.is_quantized() {
                assert!(
                    lin.weight.grad().is_none(),
                    "{n}: NF4 placeholder got a grad"
                );
            }
        });
        opt.step().unwrap();
    }
    let after = lora::dense_state(&mut gpt).unwrap();
    for ((n, b), (n2, a)) in before
        .iter()
        .zip(after.iter().filter(|(n, _)| !lora::is_lora_name(n)))
    {
        assert_eq!(n, n2);
        assert_eq!(b, &vals(a), "{n} changed while only LoRA trains");
    }
}

#[test]
fn input_still_gets_its_gradient_through_a_frozen_quantized_layer() {
    let (mut lin, _) = layer(7, 17, 0, true, "dx");
    lin.quantize_base_with(Nf4Compute::F32).unwrap();
    let x = tensor(&rand_vec(3 * 17, seed("dx-x"), -1.0, 1.0), &[3, 17]).requires_grad();
    lin.forward(&x).unwrap().sum().unwrap().backward().unwrap();
    let g = vals(&x.grad().expect("x gets a gradient"));
    assert!(g.iter().any(|v| *v != 0.0));
}

#[test]
fn quantize_bases_selects_exactly_the_targets_and_frees_f32() {
    let gpu = private_gpu();
    let mut gpt = Gpt::new_on(&gpu, gpt_cfg(64)).unwrap();
    let total_before = gpt.num_parameters();
    let live_before = gpu.live_bytes();
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    let report = lora::quantize_bases(&mut gpt, &cfg).unwrap();
    let names: Vec<&str> = report.layers.iter().map(|l| l.name.as_str()).collect();
    let want = [
        "blocks.0.attn.q_proj",
        "blocks.0.attn.v_proj",
        "blocks.1.attn.q_proj",
        "blocks.1.attn.v_proj",
    ];
    assert_eq!(names, want);
    assert_eq!(lora::quantized_layers(&mut gpt), want);
    for l in &report.layers {
        assert_eq!(l.shape, [64, 64]);
        assert_eq!(l.f32_bytes, 4 * 64 * 64);
        assert!(
            l.error.rel_frobenius > 0.0 && l.error.rel_frobenius < 0.15,
            "{l:?}"
        );
    }
    assert!(report.ratio() <= 0.14, "ratio {}", report.ratio());
    assert!(report.to_string().contains("blocks.1.attn.v_proj"));
    // The f32 weights are gone: from the parameter list and from GPU memory.
    assert_eq!(lora::quantized_numel(&mut gpt), 4 * 64 * 64);
    assert_eq!(gpt.num_parameters(), total_before - 4 * 64 * 64);
    let freed = live_before as i64 - gpu.live_bytes() as i64;
    assert!(
        freed as usize >= report.f32_bytes() - report.nf4_bytes() - 4096,
        "freed {freed} bytes, f32 {} nf4 {}",
        report.f32_bytes(),
        report.nf4_bytes()
    );
    // Quantising again, or a target that selects nothing, is an error that changes nothing.
    let e = lora::quantize_bases(&mut gpt, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already quantised"), "{e}");
    let e = lora::quantize_bases(&mut gpt, &LoraConfig::new(4, 8.0, &["k_proj", "nope"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    assert_eq!(lora::quantized_layers(&mut gpt).len(), 4);
    // A glob selects the Linear layers among what it matches.
    let r = lora::quantize_bases(&mut gpt, &LoraConfig::new(4, 8.0, &["blocks.0.mlp.*"])).unwrap();
    assert_eq!(r.layers.len(), 2, "{r}");
    assert!(r.layers.iter().all(|l| l.name.starts_with("blocks.0.mlp.")));
}

#[test]
fn merging_a_quantized_layer_equals_its_unmerged_forward() {
    let (mut lin, _) = layer(17, 65, 3, true, "merge");
    lin.quantize_base_with(Nf4Compute::F32).unwrap();
    let x = tensor(&rand_vec(7 * 65, seed("merge-x"), -1.0, 1.0), &[7, 65]);
    let unmerged = vals(&lin.forward(&x).unwrap());
    let base = vals(&lin.forward_base(&x).unwrap());
    assert_eq!(lora::merge(&mut lin).unwrap(), 1);
    assert!(!lin.is_quantized(), "merge dequantises the layer");
    assert!(lin.lora.as_ref().unwrap().is_merged());
    let merged = vals(&lin.forward(&x).unwrap());
    MERGE.assert_close("merged vs unmerged", &merged, &f64s(&unmerged));
    assert_eq!(lora::unmerge(&mut lin).unwrap(), 1);
    let back = vals(&lin.forward_base(&x).unwrap());
    MERGE.assert_close("unmerged base vs NF4 base", &back, &f64s(&base));
}

#[test]
fn merged_and_dense_states_of_a_qlora_gpt_load_into_plain_models() {
    let cfg = LoraConfig::new(2, 4.0, &["q_proj", "o_proj", "fc2"]);
    let mut q = Gpt::new(gpt_cfg(16)).unwrap();
    let plain_state: Vec<(String, Tensor)> = q.named_parameters();
    let plain_vals: Vec<Vec<f32>> = plain_state.iter().map(|(_, t)| vals(t)).collect();
    lora::quantize_bases(&mut q, &cfg).unwrap();
    lora::apply_lora(&mut q, &cfg).unwrap();
    randomise_lora(&q, "states");
    q.set_training(false);
    let x = ids(2, 8, "states-ids", 13);
    let want = vals(&q.forward(&x).unwrap());

    // Merged: a plain model without adapters.
    let merged = lora::merged_state(&mut q).unwrap();
    assert!(merged.iter().all(|(n, _)| !lora::is_lora_name(n)));
    let mut plain = Gpt::new(gpt_cfg(16)).unwrap();
    plain.set_training(false);
    let pnames: Vec<String> = plain
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mnames: Vec<String> = merged.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(pnames, mnames, "same names in the same order");
    for ((_, dst), (_, src)) in plain.named_parameters().iter().zip(&merged) {
        dst.copy_from(src).unwrap();
    }
    MERGE.assert_close(
        "merged_state model",
        &vals(&plain.forward(&x).unwrap()),
        &f64s(&want),
    );
    let mut untouched = true;
    q.visit_linears_mut("", &mut |_, lin| {
        if let Some(a) = &lin.lora {
            untouched &= !a.is_merged() && lin.is_quantized();
        }
    });
    assert!(untouched, "merged_state leaves the model as it was");

    // Dense: f32 bases plus the adapters; re-quantising gives the same model.
    let dense = lora::dense_state(&mut q).unwrap();
    let mut f = Gpt::new(gpt_cfg(16)).unwrap();
    lora::apply_lora(&mut f, &cfg).unwrap();
    f.set_training(false);
    let fnames: Vec<String> = f.named_parameters().into_iter().map(|(n, _)| n).collect();
    let dnames: Vec<String> = dense.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(fnames, dnames);
    for ((_, dst), (_, src)) in f.named_parameters().iter().zip(&dense) {
        dst.copy_from(src).unwrap();
    }
    MERGE.assert_close(
        "dense_state model",
        &vals(&f.forward(&x).unwrap()),
        &f64s(&want),
    );
    // Untargeted tensors are the original ones, bit for bit.
    for ((n, _), v) in plain_state.iter().zip(&plain_vals) {
        if !["q_proj.weight", "o_proj.weight", "fc2.weight"]
            .iter()
            .any(|t| n.ends_with(t))
        {
            let d = &dense.iter().find(|(m, _)| m == n).unwrap().1;
            assert_eq!(&vals(d), v, "{n}");
        }
    }
}

#[test]
fn fused_lora_linear_gradients_with_trainable_w_and_b() {
    // The one-node LoRA linear (f32 base) also sends gradients to W and b when they require
    // grad, and `forward_no_bias` (3-d input) to x, A and B.
    let (rows, fout, fin, r) = (3, 7, 17, 2);
    let s = 4.0 / r as f64;
    let cpu_lin = |x: &[f64], a: &[f64], bm: &[f64], w: &[f64], b: Option<&[f64]>| {
        let mut y = vec![0.0; rows * fout];
        for i in 0..rows {
            for o in 0..fout {
                let base: f64 = (0..fin).map(|j| x[i * fin + j] * w[o * fin + j]).sum();
                let lo: f64 = (0..r)
                    .map(|k| {
                        bm[o * r + k]
                            * (0..fin)
                                .map(|j| x[i * fin + j] * a[k * fin + j])
                                .sum::<f64>()
                    })
                    .sum();
                y[i * fout + o] = base + b.map_or(0.0, |b| b[o]) + s * lo;
            }
        }
        y
    };
    let inputs = [
        Input::rand(&[rows, fin], seed("fused-x"), -1.0, 1.0),
        Input::new(
            rand_signed_away_from_zero(r * fin, seed("fused-a"), 0.1, 0.6),
            &[r, fin],
        ),
        Input::new(
            rand_signed_away_from_zero(fout * r, seed("fused-b"), 0.1, 0.6),
            &[fout, r],
        ),
        Input::rand(&[fout, fin], seed("fused-w"), -0.5, 0.5),
        Input::rand(&[fout], seed("fused-bias"), -0.5, 0.5),
    ];
    gradcheck(
        "fused lora linear, W and b trainable",
        &inputs,
        |t| {
            let mut lin = Linear::from_tensors(t[3].clone(), Some(t[4].clone()))?;
            lin.lora = Some(LoraAdapter::from_tensors(
                t[1].clone(),
                t[2].clone(),
                4.0,
                0.0,
            )?);
            lin.forward(&t[0])
        },
        |x| cpu_lin(&x[0], &x[1], &x[2], &x[3], Some(&x[4])),
        GradTol::default(),
    );
    let w = inputs[3].data.clone();
    gradcheck(
        "fused lora linear, forward_no_bias, 3-d x",
        &[
            Input::new(inputs[0].data.clone(), &[1, rows, fin]),
            inputs[1].clone(),
            inputs[2].clone(),
        ],
        |t| {
            let mut lin = Linear::from_tensors(tensor(&w, &[fout, fin]), None)?;
            lin.lora = Some(LoraAdapter::from_tensors(
                t[1].clone(),
                t[2].clone(),
                4.0,
                0.0,
            )?);
            lin.forward_no_bias(&t[0])
        },
        |x| cpu_lin(&x[0], &x[1], &x[2], &f64s(&w), None),
        GradTol::default(),
    );
}
