//! Transformer layers: RoPE (CPU twin in f64, finite-difference gradient check), multi-head /
//! grouped-query attention and its equality with plain MHA on repeated kv weights. The GELU forms
//! and fused bias + GELU are in `bias_gelu.rs`; whole models in tests/models/transformer_models.rs.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::attention::repeat_kv;
use kiln::nn::{AttentionConfig, Linear, Module, MultiHeadAttention};
use kiln::ops::rope::rope;

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
