//! RoPE, GELU forms, multi-head / grouped-query attention, the KV cache, sampling, the GPT decoder
//! and the BERT encoder: CPU twins in f64, finite-difference gradient checks, cache-vs-recompute
//! equality, reproducible generation, Hugging Face parameter names, and a tiny GPT that overfits.

mod common;

use common::*;
use kiln::Tensor;
use kiln::models::bert::{BertConfig, BertEncoder, l2_normalize, mean_pool};
use kiln::models::{Gpt, GptConfig, Sampler, Sampling};
use kiln::nn::attention::repeat_kv;
use kiln::nn::{AttentionConfig, KvCache, Linear, Module, MultiHeadAttention};
use kiln::ops::gelu::{GeluForm, bias_gelu, gelu};
use kiln::ops::rope::rope;
use kiln::optim::{Adam, AdamConfig, Optimizer};

/// f32 forward of a few matmuls and a softmax against f64.
const TOL: Tolerance = Tolerance::new(1e-4, 2e-5, "f32 matmul/softmax chain vs f64");

/// CPU twin of RoPE on row-major (B, H, T, D).
fn rope_cpu(x: &[f64], t: usize, d: usize, offset: usize, base: f64) -> Vec<f64> {
    let half = d / 2;
    let mut y = x.to_vec();
    for (r, row) in x.chunks(d).enumerate() {
        let p = (offset + r % t) as f64;
        for i in 0..half {
            let a = p * base.powf(-2.0 * i as f64 / d as f64);
            let (c, s) = (a.cos(), a.sin());
            y[r * d + i] = row[i] * c - row[i + half] * s;
            y[r * d + i + half] = row[i + half] * c + row[i] * s;
        }
    }
    y
}

#[test]
fn rope_matches_twin() {
    for (b, h, t, d, off) in [(1, 1, 1, 2, 0), (2, 3, 7, 8, 5), (1, 2, 17, 6, 129)] {
        let n = b * h * t * d;
        let x = rand_vec(n, seed(&format!("rope{t}")), -1.0, 1.0);
        let y = rope(&tensor(&x, &[b, h, t, d]), off, 10_000.0).unwrap();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        // Angles up to ~150 rad computed in f64 then rounded to f32 tables.
        Tolerance::new(1e-4, 1e-5, "f32 tables of f64 angles").assert_close(
            &format!("rope ({b}, {h}, {t}, {d}) offset {off}"),
            &y.to_vec::<f32>().unwrap(),
            &rope_cpu(&x64, t, d, off, 10_000.0),
        );
    }
    assert!(rope(&tensor(&[1.0; 3], &[1, 1, 1, 3]), 0, 1e4).is_err());
}

/// The gradient of RoPE is the inverse rotation.
#[test]
fn rope_gradcheck() {
    let (t, d) = (5, 4);
    gradcheck(
        "rope",
        &[Input::rand(&[1, 2, t, d], seed("rope_gc"), -1.0, 1.0)],
        |x| rope(&x[0], 3, 100.0),
        |x| rope_cpu(&x[0], t, d, 3, 100.0),
        GradTol::default(),
    );
}

fn gelu_tanh_cpu(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn gelu_tanh_and_bias_gelu_gradcheck() {
    let s = seed("gelu");
    gradcheck(
        "gelu_tanh",
        &[Input::rand(&[3, 7], s, -3.0, 3.0)],
        |x| gelu(&x[0], GeluForm::Tanh),
        |x| x[0].iter().map(|&v| gelu_tanh_cpu(v)).collect(),
        GradTol::default(),
    );
    gradcheck(
        "bias_gelu_tanh",
        &[
            Input::rand(&[3, 5], s + 1, -3.0, 3.0),
            Input::rand(&[5], s + 2, -1.0, 1.0),
        ],
        |x| bias_gelu(&x[0], &x[1], GeluForm::Tanh),
        |x| {
            let (a, b) = (&x[0], &x[1]);
            (0..a.len())
                .map(|i| gelu_tanh_cpu(a[i] + b[i % 5]))
                .collect()
        },
        GradTol::default(),
    );
    // The erf form is the fused unary kernel; tanh approximates it within ~1e-3.
    let x = tensor(&rand_vec(64, s + 3, -3.0, 3.0), &[64]);
    let e = gelu(&x, GeluForm::Erf).unwrap().to_vec::<f32>().unwrap();
    let t = gelu(&x, GeluForm::Tanh).unwrap().to_vec::<f32>().unwrap();
    for (a, b) in e.iter().zip(&t) {
        assert!((a - b).abs() < 2e-3, "erf {a} vs tanh {b}");
    }
}

/// Fused bias + GELU against its CPU twin at awkward sizes (both forms, forward and both
/// gradients), against the composed version, and an erf-form gradient check.
#[test]
fn bias_gelu_matches_twin_and_composed() {
    use kiln::ops::gelu::bias_gelu_composed;
    use kiln_kernels::reference::bias_gelu as cpu;
    let tol = Tolerance::new(2e-4, 2e-5, "f32 erf/tanh (erf ~1e-6 abs) vs f64");
    for tanh in [false, true] {
        let form = if tanh { GeluForm::Tanh } else { GeluForm::Erf };
        for (r, n) in [(1usize, 1usize), (7, 17), (129, 7), (3, 257)] {
            let s = seed(&format!("bg{tanh}{r}{n}"));
            let x = rand_vec(r * n, s, -4.0, 4.0);
            let b = rand_vec(n, s + 1, -1.0, 1.0);
            let g = rand_vec(r * n, s + 2, -1.0, 1.0);
            let f = |v: &[f32]| -> Vec<f64> { v.iter().map(|&a| a as f64).collect() };
            let what = format!("bias_gelu tanh={tanh} ({r}, {n})");
            let mut outs = Vec::new();
            for fused in [true, false] {
                let xt = tensor(&x, &[r, n]).requires_grad();
                let bt = tensor(&b, &[n]).requires_grad();
                let y = if fused {
                    bias_gelu(&xt, &bt, form)
                } else {
                    bias_gelu_composed(&xt, &bt, form)
                }
                .unwrap();
                y.mul(&tensor(&g, &[r, n]))
                    .unwrap()
                    .sum()
                    .unwrap()
                    .backward()
                    .unwrap();
                outs.push([
                    y.to_vec::<f32>().unwrap(),
                    xt.grad().unwrap().to_vec::<f32>().unwrap(),
                    bt.grad().unwrap().to_vec::<f32>().unwrap(),
                ]);
            }
            let (dx, db) = cpu::backward(tanh, &f(&x), &f(&b), &f(&g));
            let want = [cpu::forward(tanh, &f(&x), &f(&b)), dx, db];
            for k in 0..3 {
                tol.assert_close(&format!("{what} fused out {k}"), &outs[0][k], &want[k]);
                tol.assert_close(
                    &format!("{what} fused vs composed {k}"),
                    &outs[0][k],
                    &f(&outs[1][k]),
                );
            }
        }
    }
    gradcheck(
        "bias_gelu_erf",
        &[
            Input::rand(&[3, 5], seed("bg_erf"), -3.0, 3.0),
            Input::rand(&[5], seed("bg_erf") + 1, -1.0, 1.0),
        ],
        |x| bias_gelu(&x[0], &x[1], GeluForm::Erf),
        |x| cpu::forward(false, &x[0], &x[1]),
        GradTol::default(),
    );
}

/// f64 causal self-attention without biases: x (T, C), weights row-major (out, in); query head h
/// reads kv head h / (H / Hkv).
fn mha_cpu(x: &[f64], w: [&[f64]; 4], t: usize, c: usize, h: usize, hkv: usize) -> Vec<f64> {
    let dh = c / h;
    let lin = |a: &[f64], wt: &[f64], out: usize| -> Vec<f64> {
        let inn = a.len() / t;
        (0..t * out)
            .map(|k| {
                let (i, o) = (k / out, k % out);
                (0..inn).map(|j| a[i * inn + j] * wt[o * inn + j]).sum()
            })
            .collect()
    };
    let q = lin(x, w[0], c);
    let k = lin(x, w[1], hkv * dh);
    let v = lin(x, w[2], hkv * dh);
    let mut o = vec![0.0; t * c];
    for hh in 0..h {
        let g = hh / (h / hkv);
        for i in 0..t {
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..dh)
                        .map(|e| q[i * c + hh * dh + e] * k[j * hkv * dh + g * dh + e])
                        .sum::<f64>()
                        / (dh as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            for (j, sj) in s.iter().enumerate() {
                let p = (sj - m).exp() / z;
                for e in 0..dh {
                    o[i * c + hh * dh + e] += p * v[j * hkv * dh + g * dh + e];
                }
            }
        }
    }
    lin(&o, w[3], c)
}

fn mha_from(ws: &[Tensor], h: usize, hkv: usize, c: usize) -> MultiHeadAttention {
    let cfg = AttentionConfig {
        d_model: c,
        n_heads: h,
        n_kv_heads: hkv,
        causal: true,
        rope_base: None,
        bias: false,
    };
    let l = |i: usize| Linear::from_tensors(ws[i].clone(), None).unwrap();
    MultiHeadAttention::from_parts(cfg, l(0), l(1), l(2), l(3)).unwrap()
}

/// Gradients of every projection and the input through grouped-query causal attention.
#[test]
fn mha_gqa_gradcheck() {
    let (t, c, h, hkv) = (3usize, 4usize, 2usize, 1usize);
    let kv = hkv * c / h;
    let s = seed("mha_gc");
    gradcheck(
        "mha",
        &[
            Input::rand(&[1, t, c], s, -1.0, 1.0),
            Input::rand(&[c, c], s + 1, -0.7, 0.7),
            Input::rand(&[kv, c], s + 2, -0.7, 0.7),
            Input::rand(&[kv, c], s + 3, -0.7, 0.7),
            Input::rand(&[c, c], s + 4, -0.7, 0.7),
        ],
        |x| mha_from(&x[1..], h, hkv, c).forward(&x[0]),
        |x| mha_cpu(&x[0], [&x[1], &x[2], &x[3], &x[4]], t, c, h, hkv),
        GradTol::default(),
    );
}

/// GQA (Hkv = 2 of H = 4) equals plain MHA whose k/v weights repeat each kv head's rows.
#[test]
fn gqa_equals_mha_with_repeated_kv_weights() {
    let (b, t, c, h, hkv) = (2usize, 7usize, 16usize, 4usize, 2usize);
    let dh = c / h;
    let s = seed("gqa");
    let wq = rand_vec(c * c, s, -0.5, 0.5);
    let wk = rand_vec(hkv * dh * c, s + 1, -0.5, 0.5);
    let wv = rand_vec(hkv * dh * c, s + 2, -0.5, 0.5);
    let wo = rand_vec(c * c, s + 3, -0.5, 0.5);
    let rep = |w: &[f32]| -> Vec<f32> {
        (0..h)
            .flat_map(|hh| {
                let g = hh / (h / hkv);
                w[g * dh * c..(g + 1) * dh * c].to_vec()
            })
            .collect()
    };
    let gqa = mha_from(
        &[
            tensor(&wq, &[c, c]),
            tensor(&wk, &[hkv * dh, c]),
            tensor(&wv, &[hkv * dh, c]),
            tensor(&wo, &[c, c]),
        ],
        h,
        hkv,
        c,
    );
    let mha = mha_from(
        &[
            tensor(&wq, &[c, c]),
            tensor(&rep(&wk), &[c, c]),
            tensor(&rep(&wv), &[c, c]),
            tensor(&wo, &[c, c]),
        ],
        h,
        h,
        c,
    );
    let x = tensor(&rand_vec(b * t * c, s + 4, -1.0, 1.0), &[b, t, c]);
    let a = gqa.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let m = mha.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let m64: Vec<f64> = m.iter().map(|&v| v as f64).collect();
    Tolerance::new(1e-5, 1e-6, "same f32 arithmetic on repeated heads").assert_close(
        "gqa vs mha",
        &a,
        &m64,
    );
    // repeat_kv: head h reads kv head h / rep.
    let kv = tensor(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]);
    let r = repeat_kv(&kv, 2).unwrap();
    assert_eq!(r.shape(), [1, 4, 1, 2]);
    assert_eq!(
        r.to_vec::<f32>().unwrap(),
        [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
    );
}

fn tiny_gpt(rope: bool, seed: u64) -> Gpt {
    kiln::nn::manual_seed(seed);
    let mut m = Gpt::new_on(
        &gpu(),
        GptConfig {
            vocab_size: 11,
            n_layer: 2,
            n_head: 4,
            n_kv_head: 2,
            d_model: 16,
            context: 12,
            dropout: 0.0,
            rope,
        },
    )
    .unwrap();
    m.set_training(false);
    m
}

fn ids(v: &[u32]) -> Tensor {
    Tensor::from_slice_on(&gpu(), v, &[1, v.len()]).unwrap()
}

/// Prefill of 4 tokens then one token per step through the cache gives the logits of a full
/// recompute at every position (learned positions and RoPE).
#[test]
fn kv_cache_matches_full_recompute() {
    let seq: Vec<u32> = vec![3, 1, 4, 1, 5, 9, 2, 6, 5];
    for rope in [false, true] {
        let m = tiny_gpt(rope, 7);
        let _g = kiln::no_grad();
        let full = m.forward(&ids(&seq)).unwrap().to_vec::<f32>().unwrap();
        // i32 ids mean the same tokens.
        let seq_i32: Vec<i32> = seq.iter().map(|&t| t as i32).collect();
        let ids_i32 = Tensor::from_slice_on(&gpu(), &seq_i32, &[1, seq.len()]).unwrap();
        assert_eq!(m.forward(&ids_i32).unwrap().to_vec::<f32>().unwrap(), full);
        let v = 11;
        let mut cache = KvCache::new(2);
        let mut got = m
            .forward_cached(&ids(&seq[..4]), &mut cache)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        for &tok in &seq[4..] {
            got.extend(
                m.forward_cached(&ids(&[tok]), &mut cache)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
        assert_eq!(cache.len(), seq.len());
        assert_eq!(got.len(), seq.len() * v);
        let full64: Vec<f64> = full.iter().map(|&x| x as f64).collect();
        Tolerance::new(1e-4, 1e-5, "same f32 ops, attention over a cache").assert_close(
            &format!("cached vs full logits (rope {rope})"),
            &got,
            &full64,
        );
        // Past the context is an error, not a silent wrap.
        assert!(m.forward_cached(&ids(&[1, 2, 3, 4]), &mut cache).is_err());
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn generate_is_reproducible_and_greedy_matches_recompute() {
    let m = tiny_gpt(true, 11);
    let prompt = [1u32, 2, 3];
    let s = Sampling {
        temperature: 1.5,
        top_k: Some(8),
        top_p: Some(0.95),
        seed: 42,
    };
    let a = m.generate(&prompt, 8, s).unwrap();
    let b = m.generate(&prompt, 8, s).unwrap();
    assert_eq!(a, b, "same seed, same tokens");
    let c = m.generate(&prompt, 8, Sampling { seed: 43, ..s }).unwrap();
    assert_ne!(
        a, c,
        "another seed gives another sample (fixed seeds: deterministic)"
    );
    assert!(a.iter().all(|&t| t < 11));

    let greedy = m
        .generate(
            &prompt,
            6,
            Sampling {
                temperature: 0.0,
                ..s
            },
        )
        .unwrap();
    let top1 = m
        .generate(
            &prompt,
            6,
            Sampling {
                top_k: Some(1),
                top_p: None,
                ..s
            },
        )
        .unwrap();
    assert_eq!(greedy, top1, "top-k = 1 is greedy");
    // Greedy through the cache == argmax of a full recompute at each step.
    let mut seq = prompt.to_vec();
    let _g = kiln::no_grad();
    for &tok in &greedy {
        let l = m.forward(&ids(&seq)).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(argmax(&l[(seq.len() - 1) * 11..]), tok);
        seq.push(tok);
    }
    // Running past the context rebuilds the cache instead of failing.
    let long = m.generate(&prompt, 20, s).unwrap();
    assert_eq!(long.len(), 20);
}

#[test]
fn sampler_truncation() {
    let logits = [0.0f32, 5.0, 4.9, -3.0];
    let mut s = Sampler::new(Sampling {
        temperature: 1.0,
        top_k: Some(2),
        top_p: None,
        seed: 1,
    });
    for _ in 0..50 {
        let t = s.sample(&logits).unwrap();
        assert!(t == 1 || t == 2, "top-2 drew {t}");
    }
    // top_p = 0.5 keeps only the most likely token here (p(1) ~ 0.52).
    let mut s = Sampler::new(Sampling {
        temperature: 1.0,
        top_k: None,
        top_p: Some(0.5),
        seed: 3,
    });
    for _ in 0..20 {
        assert_eq!(s.sample(&logits).unwrap(), 1);
    }
    assert!(Sampler::new(Sampling::default()).sample(&[]).is_err());
}

fn tiny_bert() -> BertEncoder {
    kiln::nn::manual_seed(5);
    let mut m = BertEncoder::new_on(
        &gpu(),
        BertConfig {
            vocab_size: 30,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 32,
            max_position_embeddings: 10,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
        },
    )
    .unwrap();
    m.set_training(false);
    m
}

#[test]
fn bert_names_shapes_and_padding() {
    let m = tiny_bert();
    let mut want = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![30, 16],
        ),
        ("embeddings.position_embeddings.weight".into(), vec![10, 16]),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, 16],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![16]),
        ("embeddings.LayerNorm.bias".into(), vec![16]),
    ];
    for l in 0..2 {
        let p = format!("encoder.layer.{l}");
        for (n, o, i) in [
            ("attention.self.query", 16, 16),
            ("attention.self.key", 16, 16),
            ("attention.self.value", 16, 16),
            ("attention.output.dense", 16, 16),
        ] {
            want.push((format!("{p}.{n}.weight"), vec![o, i]));
            want.push((format!("{p}.{n}.bias"), vec![o]));
        }
        want.push((format!("{p}.attention.output.LayerNorm.weight"), vec![16]));
        want.push((format!("{p}.attention.output.LayerNorm.bias"), vec![16]));
        want.push((format!("{p}.intermediate.dense.weight"), vec![32, 16]));
        want.push((format!("{p}.intermediate.dense.bias"), vec![32]));
        want.push((format!("{p}.output.dense.weight"), vec![16, 32]));
        want.push((format!("{p}.output.dense.bias"), vec![16]));
        want.push((format!("{p}.output.LayerNorm.weight"), vec![16]));
        want.push((format!("{p}.output.LayerNorm.bias"), vec![16]));
    }
    let got: Vec<(String, Vec<usize>)> = m
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    assert_eq!(got, want);

    // Batch of two: row 1 has 3 tokens and 2 padding positions.
    let toks = [5u32, 6, 7, 8, 9, 11, 12, 13, 0, 0];
    let mask = [1u32, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    let x = Tensor::from_slice_on(&gpu(), &toks, &[2, 5]).unwrap();
    let mk = Tensor::from_slice_on(&gpu(), &mask, &[2, 5]).unwrap();
    let _g = kiln::no_grad();
    let hid = m.forward_with(&x, None, Some(&mk)).unwrap();
    assert_eq!(hid.shape(), [2, 5, 16]);
    // Real tokens of the padded row see only real keys: equal to running them alone.
    let alone = m.forward(&ids(&[11, 12, 13])).unwrap();
    let row1 = hid.narrow(0, 1, 1).unwrap().narrow(1, 0, 3).unwrap();
    let want: Vec<f64> = alone
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    TOL.assert_close(
        "padded row vs alone",
        &row1.contiguous().unwrap().to_vec::<f32>().unwrap(),
        &want,
    );
    // Mean pooling over the 3 real tokens, then unit length.
    let pooled = mean_pool(&hid, &mk).unwrap();
    assert_eq!(pooled.shape(), [2, 16]);
    let p1 = pooled.narrow(0, 1, 1).unwrap().to_vec::<f32>().unwrap();
    let mean: Vec<f64> = (0..16)
        .map(|c| (0..3).map(|t| want[t * 16 + c]).sum::<f64>() / 3.0)
        .collect();
    TOL.assert_close("mean_pool", &p1, &mean);
    let e = l2_normalize(&pooled).unwrap().to_vec::<f32>().unwrap();
    for row in e.chunks(16) {
        let n: f32 = row.iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-5, "norm^2 {n}");
    }
}

/// A 2-layer GPT memorises one sequence of 9 tokens.
#[test]
fn tiny_gpt_overfits() {
    kiln::nn::manual_seed(3);
    let m = Gpt::new_on(
        &gpu(),
        GptConfig {
            vocab_size: 8,
            n_layer: 2,
            n_head: 2,
            n_kv_head: 2,
            d_model: 16,
            context: 8,
            dropout: 0.0,
            rope: false,
        },
    )
    .unwrap();
    let seq = [0u32, 5, 2, 7, 1, 1, 6, 3, 4];
    let x = ids(&seq[..8]);
    let y = Tensor::from_slice_on(&gpu(), &seq[1..], &[8]).unwrap();
    let mut opt = Adam::new(m.named_parameters(), AdamConfig::adam(1e-2)).unwrap();
    let mut first = 0.0;
    let mut last = 0.0;
    for step in 0..120 {
        let loss = m
            .forward(&x)
            .unwrap()
            .reshape(&[8, 8])
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        opt.zero_grad().unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        if step == 0 {
            first = loss.item().unwrap();
        }
        last = loss.item().unwrap();
    }
    eprintln!("tiny gpt: loss {first:.3} -> {last:.4}");
    assert!(first > 1.5, "starts near ln 8 = 2.08, got {first}");
    assert!(last < 0.05, "did not overfit: loss {last}");
    // Greedy generation from the first token replays the sequence.
    let mut m = m;
    m.set_training(false);
    let out = m
        .generate(
            &seq[..1],
            7,
            Sampling {
                temperature: 0.0,
                ..Sampling::default()
            },
        )
        .unwrap();
    assert_eq!(out, seq[1..8]);
}

/// Time of fused `bias_gelu` against the composed add + GELU and each pass alone. Run with
/// `cargo test --test transformer bench_bias_gelu -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_bias_gelu() {
    use kiln::ops::gelu::bias_gelu_composed;
    let g = gpu();
    let (rows, n) = (512usize, 3072usize);
    let x = tensor(&rand_vec(rows * n, 1, -3.0, 3.0), &[rows, n]);
    let b = tensor(&rand_vec(n, 2, -1.0, 1.0), &[n]);
    let _ng = kiln::no_grad();
    let time = |name: &str, f: &dyn Fn() -> Tensor| {
        let _ = f();
        g.sync().unwrap();
        let reps = 20;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            let _ = f();
        }
        g.sync().unwrap();
        let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let gbs = 2.0 * (rows * n * 4) as f64 / (ms * 1e-3) / 1e9;
        eprintln!("{name:>26}: {ms:8.3} ms  ({rows} x {n} f32; {gbs:.2} GB/s at 1 read + 1 write)");
    };
    time("add bias", &|| x.add(&b).unwrap());
    time("gelu erf (unary)", &|| x.gelu().unwrap());
    for form in [GeluForm::Erf, GeluForm::Tanh] {
        time(&format!("composed bias+gelu {form:?}"), &|| {
            bias_gelu_composed(&x, &b, form).unwrap()
        });
        time(&format!("fused bias+gelu {form:?}"), &|| {
            bias_gelu(&x, &b, form).unwrap()
        });
    }
}
