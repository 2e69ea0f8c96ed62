//! The dropout op (`src/ops/dropout.rs`): the Philox kernel against its CPU twin bit for bit,
//! mask statistics, the forward and gradient against the twin's mask, edge probabilities and a
//! strided input. The layer's modes and key stream are tested in `tests/ops/nn/random.rs`.

use crate::common::*;
use kiln::Tensor;
use kiln::ops::dropout::{dropout_mask_on, dropout_with_key};
use kiln_kernels::launch::dropout::{self as rk, Stream};
use kiln_kernels::reference::dropout as cpu_rng;

fn gpu_bits(stream: Stream, n: usize) -> Vec<u32> {
    let g = gpu();
    let buf = g.alloc((n.max(1) * 4) as u64, "bits").unwrap();
    rk::bits(&g, stream, n, &buf).unwrap();
    bytemuck::pod_collect_to_vec(&g.read(&buf, 0, (n * 4) as u64).unwrap())
}

#[test]
fn philox_kernel_matches_cpu_twin_bit_for_bit() {
    // Random123's known answers, computed on the GPU.
    assert_eq!(
        gpu_bits(Stream::new(0), 4),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    let pi = Stream {
        key: 0x299f31d0_a4093822,
        counter: [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    };
    assert_eq!(
        gpu_bits(pi, 4),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
    let keys = [1u64, u64::MAX, 0xdead_beef_1234_5678];
    for (k, &n) in AWKWARD.iter().chain(&[100_003]).enumerate() {
        let stream = Stream {
            key: keys[k % keys.len()],
            counter: [u32::MAX - 5, k as u32, 0, 7], // ctr0 wraps inside the larger cases
        };
        assert_eq!(
            gpu_bits(stream, n),
            cpu_rng::bits(stream, n),
            "bits, n = {n}"
        );
        for p in [0.1f32, 0.5, 0.9] {
            let m = dropout_mask_on(&gpu(), &[n], p, stream.key).unwrap();
            let want: Vec<f32> = cpu_rng::dropout_mask(Stream::new(stream.key), p, n);
            Tolerance::EXACT.assert_close(&format!("dropout mask n {n} p {p}"), &f32s(&m), &want);
        }
    }
}

#[test]
fn dropout_statistics() {
    // n = 200,000 Bernoulli(p) draws: the dropped fraction has sd sqrt(p (1 - p) / n) <= 0.0012;
    // pairs (the same position under two keys, neighbours, a block apart) drop together with
    // probability p^2. Every bound is 6 sd.
    let n = 200_000usize;
    let x = Tensor::ones_on(&gpu(), &[n]).unwrap();
    for (k, p) in [0.1f32, 0.5, 0.8].into_iter().enumerate() {
        let m1 = f32s(&dropout_with_key(&x, p, 1000 + k as u64).unwrap());
        let m2 = f32s(&dropout_with_key(&x, p, 2000 + k as u64).unwrap());
        let scale = 1.0 / (1.0 - p);
        assert!(
            m1.iter().all(|&v| v == 0.0 || v == scale),
            "survivors must be 1 / (1 - p)"
        );
        let (p64, nf) = (p as f64, n as f64);
        let sd1 = (p64 * (1.0 - p64) / nf).sqrt();
        let frac = m1.iter().filter(|&&v| v == 0.0).count() as f64 / nf;
        assert!(
            (frac - p64).abs() < 6.0 * sd1,
            "p {p}: dropped fraction {frac}"
        );
        let p2 = p64 * p64;
        let sd2 = (p2 * (1.0 - p2) / nf).sqrt();
        let both = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .filter(|(u, v)| **u == 0.0 && **v == 0.0)
                .count() as f64
                / a.len() as f64
        };
        for (what, f) in [
            ("two keys", both(&m1, &m2)),
            ("neighbours", both(&m1[..n - 1], &m1[1..])),
            ("4 apart", both(&m1[..n - 4], &m1[4..])),
        ] {
            assert!(
                (f - p2).abs() < 6.0 * sd2,
                "p {p}: {what} dropped together {f}, want {p2}"
            );
        }
    }
}

#[test]
fn dropout_forward_gradient_and_edge_probabilities() {
    let n = 1000;
    let xv = rand_vec(n, seed("dropx"), -2.0, 2.0);
    let (p, key) = (0.3f32, 77u64);
    let x = tensor(&xv, &[n]).requires_grad();
    let y = dropout_with_key(&x, p, key).unwrap();
    let mask: Vec<f32> = cpu_rng::dropout_mask(Stream::new(key), p, n);
    let want: Vec<f32> = xv.iter().zip(&mask).map(|(a, m)| a * m).collect();
    Tolerance::EXACT.assert_close("dropout y = x * mask", &f32s(&y), &want);
    y.sum().unwrap().backward().unwrap();
    Tolerance::EXACT.assert_close(
        "dropout dx = mask / (1 - p)",
        &f32s(&x.grad().unwrap()),
        &mask,
    );
    // The same key gives the same mask; another key another.
    assert_eq!(f32s(&dropout_with_key(&x, p, key).unwrap()), f32s(&y));
    assert_ne!(f32s(&dropout_with_key(&x, p, key + 1).unwrap()), f32s(&y));
    // p = 0 is the identity, p = 1 zeros everything.
    assert!(dropout_with_key(&x, 0.0, key).unwrap().shares_storage(&x));
    assert!(
        f32s(&dropout_with_key(&x, 1.0, key).unwrap())
            .iter()
            .all(|&v| v == 0.0)
    );
    // A strided input.
    let xt = tensor(&xv[..40], &[8, 5]).t().unwrap();
    let yt = dropout_with_key(&xt, 0.5, 3).unwrap();
    let m: Vec<f32> = cpu_rng::dropout_mask(Stream::new(3), 0.5, 40);
    let xtv = f32s(&xt);
    let want: Vec<f32> = xtv.iter().zip(&m).map(|(a, b)| a * b).collect();
    Tolerance::EXACT.assert_close("dropout of a transpose", &f32s(&yt), &want);
}
