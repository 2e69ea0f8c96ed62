//! The Llama pieces of the transformer: the SwiGLU MLP (composed from Linear, silu and mul)
//! against an f64 twin with a finite-difference gradient check, and RoPE with scaled
//! frequencies (linear, Llama 3) against a twin whose frequencies are computed here.

use crate::common;

use common::*;
use kiln::nn::{Linear, Module, SwiGlu};
use kiln::ops::rope::{RopeScaling, rope_scaled};

/// `a (rows, inn) W^T`, W (out, inn) row-major, in f64.
fn lin(a: &[f64], w: &[f64], inn: usize, out: usize) -> Vec<f64> {
    let rows = a.len() / inn;
    (0..rows * out)
        .map(|k| {
            let (i, o) = (k / out, k % out);
            (0..inn).map(|j| a[i * inn + j] * w[o * inn + j]).sum()
        })
        .collect()
}

/// f64 SwiGLU: down(silu(x Wg^T) * (x Wu^T)).
fn swiglu_cpu(x: &[f64], wg: &[f64], wu: &[f64], wd: &[f64], c: usize, h: usize) -> Vec<f64> {
    let g = lin(x, wg, c, h);
    let u = lin(x, wu, c, h);
    let m: Vec<f64> = g
        .iter()
        .zip(&u)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    lin(&m, wd, h, c)
}

#[test]
fn swiglu_gradcheck() {
    let (t, c, h) = (3usize, 5usize, 7usize);
    let s = seed("swiglu_gc");
    gradcheck(
        "swiglu",
        &[
            Input::rand(&[2, t, c], s, -1.0, 1.0),
            Input::rand(&[h, c], s + 1, -0.8, 0.8),
            Input::rand(&[h, c], s + 2, -0.8, 0.8),
            Input::rand(&[c, h], s + 3, -0.8, 0.8),
        ],
        |x| {
            let l = |i: usize| Linear::from_tensors(x[i].clone(), None).unwrap();
            let m = SwiGlu {
                gate_proj: l(1),
                up_proj: l(2),
                down_proj: l(3),
            };
            m.forward(&x[0])
        },
        |x| swiglu_cpu(&x[0], &x[1], &x[2], &x[3], c, h),
        GradTol::default(),
    );
}

/// Frequencies of head dim `d`, written out from the scaling rules (module notes of ops::rope).
fn freqs(d: usize, base: f64, s: RopeScaling) -> Vec<f64> {
    (0..d / 2)
        .map(|i| {
            let f = base.powf(-2.0 * i as f64 / d as f64);
            match s {
                RopeScaling::None => f,
                RopeScaling::Linear { factor } => f / factor as f64,
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor: lo,
                    high_freq_factor: hi,
                    original_max_position_embeddings: n,
                } => {
                    let (k, lo, hi, n) = (factor as f64, lo as f64, hi as f64, n as f64);
                    let wl = 2.0 * std::f64::consts::PI / f;
                    let smooth = ((n / wl - lo) / (hi - lo)).clamp(0.0, 1.0);
                    (1.0 - smooth) * f / k + smooth * f
                }
            }
        })
        .collect()
}

fn rope_cpu(x: &[f64], t: usize, d: usize, offset: usize, f: &[f64]) -> Vec<f64> {
    let half = d / 2;
    let mut y = x.to_vec();
    for (r, row) in x.chunks(d).enumerate() {
        let p = (offset + r % t) as f64;
        for i in 0..half {
            let (c, s) = ((p * f[i]).cos(), (p * f[i]).sin());
            y[r * d + i] = row[i] * c - row[i + half] * s;
            y[r * d + i + half] = row[i + half] * c + row[i] * s;
        }
    }
    y
}

const LLAMA3: RopeScaling = RopeScaling::Llama3 {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 64,
};

#[test]
fn scaled_rope_matches_twin_and_gradcheck() {
    let (b, h, t, d, off) = (2, 3, 7, 16, 5);
    for s in [RopeScaling::Linear { factor: 2.5 }, LLAMA3] {
        let f = freqs(d, 5000.0, s);
        let x = rand_vec(b * h * t * d, seed("rope_scaled"), -1.0, 1.0);
        let y = rope_scaled(&tensor(&x, &[b, h, t, d]), off, 5000.0, s).unwrap();
        Tolerance::new(1e-5, 1e-5, "f32 tables of f64 angles").assert_close(
            &format!("rope {s:?}"),
            &f32s(&y),
            &rope_cpu(&f64s(&x), t, d, off, &f),
        );
        gradcheck(
            "rope_scaled",
            &[Input::rand(
                &[1, 2, 4, d],
                seed("rope_scaled_gc"),
                -1.0,
                1.0,
            )],
            |x| rope_scaled(&x[0], 3, 5000.0, s),
            |x| rope_cpu(&x[0], 4, d, 3, &f),
            GradTol::default(),
        );
    }
    // The Llama 3 rule keeps high frequencies, divides low ones and blends in between.
    let (plain, l3) = (
        freqs(d, 5000.0, RopeScaling::None),
        freqs(d, 5000.0, LLAMA3),
    );
    assert_eq!(plain[0], l3[0]);
    assert!((l3[d / 2 - 1] - plain[d / 2 - 1] / 8.0).abs() < 1e-15);
    assert!(plain.iter().zip(&l3).any(|(p, q)| q < p && *q > p / 8.0));
    let bad = rope_scaled(
        &tensor(&x4(), &[1, 1, 1, 4]),
        0,
        1e4,
        RopeScaling::Linear { factor: 0.0 },
    );
    assert!(err_text(bad).contains("rope scaling"));
}

fn x4() -> Vec<f32> {
    vec![0.5, -0.25, 1.0, 2.0]
}
