//! Transformer layers: RoPE and GELU forms (CPU twins in f64, finite-difference gradient checks,
//! fused bias + GELU against the composed version), multi-head / grouped-query attention and its
//! equality with plain MHA on repeated kv weights. Whole models are in tests/models/transformer_models.rs.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::nn::attention::repeat_kv;
use kiln::nn::{AttentionConfig, Linear, Module, MultiHeadAttention};
use kiln::ops::bias_gelu::{GeluForm, bias_gelu, gelu};
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
    use kiln::ops::bias_gelu::bias_gelu_composed;
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
