//! NF4 (QLoRA) weights: the code book, the quantiser's error bound, packing, the fused
//! dequantising matmul and its input gradient against the CPU twin (dequantise, then matmul in
//! f64), the f16 variant, memory, and K past lavapipe's loop limit. Every kernel configuration
//! on its own: kiln-kernels' tests/kernels/nf4.rs; speed: `cargo bench -p kiln-kernels --bench nf4`.

use crate::common;

use common::{GradTol, Input, f64s, gpu, gradcheck, rand_vec, seed, skip};
use kiln::Tensor;
use kiln::nn::{Linear, Module};
use kiln::ops::nf4::{Nf4Compute, Nf4Weight, nf4_linear, nf4_linear_with};
use kiln_kernels::reference::Tolerance;
use kiln_kernels::reference::nf4::{self as cpu, BLOCK, GROUP, NF4_CODE};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Awkward weight shapes (out, in): 1, primes, one past powers of two, several groups of 256.
const SHAPES: &[(usize, usize)] = &[(1, 1), (7, 17), (129, 65), (257, 130)];

/// `n` values from N(0, sd).
fn normal_vec(n: usize, seed: u64, sd: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, sd).unwrap();
    (0..n).map(|_| d.sample(&mut rng)).collect()
}

/// f32 compute: the kernel sums in f32 in a different order from the f64 twin.
const F32_TOL: Tolerance = Tolerance::new(2e-5, 2e-5, "f32 fused NF4 matmul vs f64 twin");

#[test]
#[allow(clippy::excessive_precision)] // the published digits
fn code_book_is_the_published_one() {
    // QLoRA appendix E / bitsandbytes `nf4_dequantization_lut`.
    let published = [
        -1.0f32,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236328,
        1.0,
    ];
    assert_eq!(NF4_CODE, published);
    assert!(NF4_CODE.windows(2).all(|w| w[0] < w[1]));
    assert!((cpu::max_code_gap() - (1.0 - 0.6961928)).abs() < 1e-6);
    assert_eq!(cpu::nearest_code(0.0), cpu::ZERO_CODE);
    assert_eq!(cpu::nearest_code(-5.0), 0);
    assert_eq!(cpu::nearest_code(0.99), 15);
}

#[test]
fn round_trip_within_half_gap_times_absmax() {
    let half_gap = cpu::max_code_gap() as f64 / 2.0;
    for &(o, i) in SHAPES {
        let n = o * i;
        for (kind, w) in [
            ("normal", normal_vec(n, seed("rt-n") ^ n as u64, 0.02)),
            ("uniform", rand_vec(n, seed("rt-u") ^ n as u64, -1.0, 3.0)),
        ] {
            let q = cpu::quantize(&w, o, i);
            assert_eq!(q.codes.len(), n.div_ceil(8));
            assert_eq!(q.scales.len(), n.div_ceil(BLOCK));
            assert_eq!(q.stats.len(), 1 + n.div_ceil(BLOCK).div_ceil(GROUP));
            let d = cpu::dequantize::<f64>(&q);
            for b in 0..q.blocks() {
                // Second level: within half a group step of the exact absmax.
                let c = q.absmax[b] as f64;
                let c2 = q.block_absmax(b) as f64;
                let s = q.stats[1 + b / GROUP] as f64;
                assert!(
                    (c - c2).abs() <= s / 2.0 + 1e-6 * c,
                    "{kind} {o}x{i} block {b}"
                );
                for e in b * BLOCK..((b + 1) * BLOCK).min(n) {
                    let bound = half_gap * c + (c - c2).abs() + 1e-6 * c;
                    let err = (w[e] as f64 - d[e]).abs();
                    assert!(
                        err <= bound,
                        "{kind} {o}x{i}: value {e} = {} decodes to {} (err {err:e} > {bound:e})",
                        w[e],
                        d[e]
                    );
                }
            }
            // The GPU dequantiser gives the same values.
            let g = gpu();
            let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
            let got = gw.dequantize().unwrap().to_vec::<f32>().unwrap();
            Tolerance::new(1e-6, 1e-9, "one f32 multiply-add per value").assert_close(
                &format!("dequantize {kind} {o}x{i}"),
                &got,
                &d,
            );
        }
    }
}

#[test]
fn packing_at_lengths_off_the_word_block_and_group() {
    for n in [1usize, 7, 9, 63, 65, 255, 257, 1000, 16_385] {
        let codes: Vec<u8> = (0..n).map(|e| ((e * 11 + 3) % 16) as u8).collect();
        let words = cpu::pack_codes(&codes);
        assert_eq!(words.len(), n.div_ceil(8));
        assert_eq!(cpu::unpack_codes(&words, n), codes, "codes n = {n}");
        // Padding nibbles hold the zero code.
        if n % 8 != 0 {
            let last = words[n / 8] >> (4 * (n % 8));
            assert_eq!(last & 15, cpu::ZERO_CODE, "padding n = {n}");
        }
        let s: Vec<i8> = (0..n).map(|b| ((b * 37) % 255) as i32 as i8).collect();
        let sw = cpu::pack_i8(&s);
        assert_eq!(sw.len(), n.div_ceil(4));
        assert_eq!(cpu::unpack_i8(&sw, n), s, "scales n = {n}");
    }
    // Documented order: value e in nibble e % 8 of word e / 8; block b in byte b % 4 of word b / 4.
    assert_eq!(cpu::pack_codes(&[1, 2, 3])[0], 0x7777_7321);
    assert_eq!(cpu::pack_i8(&[-1, 2])[0], 0x0000_02ff);
}

/// GPU forward (f32) against the f64 twin, with and without a bias.
fn check_forward(m: usize, o: usize, i: usize, with_bias: bool) {
    let g = gpu();
    let w = normal_vec(o * i, seed("fw-w") ^ (o * 1000 + i) as u64, 0.1);
    let x = rand_vec(m * i, seed("fw-x") ^ (m * 31 + i) as u64, -1.0, 1.0);
    let b = rand_vec(o, seed("fw-b") ^ o as u64, -0.5, 0.5);
    let q = cpu::quantize(&w, o, i);
    let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
    let xt = Tensor::from_slice_on(&g, &x, &[m, i]).unwrap();
    let bt = Tensor::from_slice_on(&g, &b, &[o]).unwrap();
    let y = nf4_linear_with(&xt, &gw, with_bias.then_some(&bt), Nf4Compute::F32).unwrap();
    assert_eq!(y.shape(), [m, o]);
    let b64 = f64s(&b);
    let want = cpu::matmul_nf4(&f64s(&x), m, &q, with_bias.then_some(&b64[..]));
    F32_TOL.assert_close(
        &format!("matmul_nf4 M={m} out={o} in={i} bias={with_bias}"),
        &y.to_vec::<f32>().unwrap(),
        &want,
    );
}

#[test]
fn fused_forward_matches_dequantise_then_matmul() {
    for m in [1, 7, 129] {
        // in 17, 130: value-by-value path; 64, 136: whole-word path.
        for &(o, i) in &[(7, 17), (33, 64), (129, 130), (5, 136)] {
            check_forward(m, o, i, m != 7);
        }
    }
}

#[test]
fn fused_grad_input_matches_cpu() {
    let g = gpu();
    for m in [1, 7, 129] {
        for &(o, i) in &[(7, 17), (33, 64), (129, 130), (65, 8)] {
            let w = normal_vec(o * i, seed("gi-w") ^ (o * 1000 + i) as u64, 0.1);
            let x = rand_vec(m * i, seed("gi-x") ^ m as u64, -1.0, 1.0);
            let dy = rand_vec(m * o, seed("gi-dy") ^ (m + o) as u64, -1.0, 1.0);
            let q = cpu::quantize(&w, o, i);
            let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
            let xt = Tensor::from_slice_on(&g, &x, &[m, i])
                .unwrap()
                .requires_grad();
            let dyt = Tensor::from_slice_on(&g, &dy, &[m, o]).unwrap();
            let y = nf4_linear_with(&xt, &gw, None, Nf4Compute::F32).unwrap();
            y.mul(&dyt).unwrap().sum().unwrap().backward().unwrap();
            let want = cpu::matmul_nf4_grad_input(&f64s(&dy), m, &q);
            F32_TOL.assert_close(
                &format!("matmul_nf4_grad_input M={m} out={o} in={i}"),
                &xt.grad().unwrap().to_vec::<f32>().unwrap(),
                &want,
            );
        }
    }
}

#[test]
fn gradcheck_x_and_bias() {
    let g = gpu();
    for &(m, o, i) in &[(3, 7, 17), (2, 5, 16)] {
        let w = normal_vec(o * i, seed("gc-w") ^ i as u64, 0.3);
        let q = cpu::quantize(&w, o, i);
        let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
        let inputs = [
            Input::rand(&[m, i], seed("gc-x") ^ i as u64, -1.0, 1.0),
            Input::rand(&[o], seed("gc-b") ^ i as u64, -1.0, 1.0),
        ];
        gradcheck(
            &format!("nf4_linear {m}x{i} -> {o}"),
            &inputs,
            |t| nf4_linear_with(&t[0], &gw, Some(&t[1]), Nf4Compute::F32),
            |xs| cpu::matmul_nf4(&xs[0], m, &q, Some(&xs[1])),
            GradTol::default(),
        );
    }
}

#[test]
fn leading_dims_and_views() {
    // x (2, 3, in) as a transposed (non-contiguous) view; y keeps the leading dims.
    let g = gpu();
    let (o, i) = (9, 24);
    let w = normal_vec(o * i, seed("ld-w"), 0.2);
    let q = cpu::quantize(&w, o, i);
    let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
    let x = rand_vec(2 * i * 3, seed("ld-x"), -1.0, 1.0);
    let xt = Tensor::from_slice_on(&g, &x, &[2, i, 3]).unwrap();
    let xv = xt.transpose(1, 2).unwrap(); // (2, 3, in)
    let y = nf4_linear_with(&xv, &gw, None, Nf4Compute::F32).unwrap();
    assert_eq!(y.shape(), [2, 3, o]);
    let xc = xv.contiguous().unwrap().to_vec::<f32>().unwrap();
    let want = cpu::matmul_nf4(&f64s(&xc), 6, &q, None);
    F32_TOL.assert_close("nf4_linear on a view", &y.to_vec::<f32>().unwrap(), &want);
    // Wrong widths are errors, not panics.
    assert!(
        nf4_linear(
            &Tensor::from_slice_on(&g, &[1.0f32; 5], &[5]).unwrap(),
            &gw,
            None
        )
        .is_err()
    );
    assert!(Nf4Weight::quantize_slice(&g, &[1.0, 2.0], &[3]).is_err());
}

/// Checks an f16 product `got` (rows, `cols`) against `want`, each output within
/// `2e-3 * mag + 1e-5` where `mag = sum_k |a[r, k] w(col, k)|` over the inner dimension of `a`
/// (rows, K); returns the worst `err / mag`.
fn check_f16(
    what: &str,
    got: &[f32],
    want: &[f64],
    a: &[f32],
    cols: usize,
    w: impl Fn(usize, usize) -> f64,
) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let inner = a.len() / (got.len() / cols);
    let mut worst = 0.0f64;
    for (j, (&g, &wv)) in got.iter().zip(want).enumerate() {
        let (r, col) = (j / cols, j % cols);
        let mag: f64 = (0..inner)
            .map(|k| (a[r * inner + k] as f64 * w(col, k)).abs())
            .sum();
        let err = (g as f64 - wv).abs();
        worst = worst.max(err / (mag + 1e-6));
        assert!(
            err <= 2e-3 * mag + 1e-5,
            "{what} [{r}, {col}]: err {err:e}, mag {mag:e}"
        );
    }
    worst
}

#[test]
fn f16_variant_matches_cpu_within_its_tolerance() {
    let g = gpu();
    if !g.has_f16() {
        return skip(
            "the f16 NF4 kernel",
            &format!("{} lacks SHADER_F16", g.info().name),
            "an adapter with SHADER_F16 (lavapipe has it: apt-get install -y mesa-vulkan-drivers)",
        );
    }
    // Bound per output: 2e-3 * sum_p |x_p w_p| (x and W' rounded to f16, rel 2^-11 each, products
    // and partial dot products of up to 8 terms in f16) plus a small floor.
    let mut worst = 0.0f64;
    for &(m, o, i) in &[(7, 7, 17), (129, 33, 64), (1, 129, 130)] {
        let w = normal_vec(o * i, seed("h-w") ^ i as u64, 0.1);
        let x = rand_vec(m * i, seed("h-x") ^ i as u64, -1.0, 1.0);
        let dy = rand_vec(m * o, seed("h-dy") ^ i as u64, -1.0, 1.0);
        let q = cpu::quantize(&w, o, i);
        let wd = cpu::dequantize::<f64>(&q);
        let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
        let xt = Tensor::from_slice_on(&g, &x, &[m, i])
            .unwrap()
            .requires_grad();
        let y = nf4_linear_with(&xt, &gw, None, Nf4Compute::F16).unwrap();
        let dyt = Tensor::from_slice_on(&g, &dy, &[m, o]).unwrap();
        y.mul(&dyt).unwrap().sum().unwrap().backward().unwrap();
        let got = y.to_vec::<f32>().unwrap();
        let want = cpu::matmul_nf4(&f64s(&x), m, &q, None);
        let fwd = check_f16("f16 forward", &got, &want, &x, o, |c, p| wd[c * i + p]);
        let gx = xt.grad().unwrap().to_vec::<f32>().unwrap();
        let want = cpu::matmul_nf4_grad_input(&f64s(&dy), m, &q);
        let bwd = check_f16("f16 grad-input", &gx, &want, &dy, i, |p, c| wd[c * i + p]);
        worst = worst.max(fwd).max(bwd);
    }
    eprintln!("f16 NF4: worst |err| / sum|x w| = {worst:e}");
}

#[test]
fn base_weight_gets_no_gradient() {
    let g = gpu();
    let lin = Linear::new_on(&g, 17, 5, true).unwrap();
    let mut q = lin.clone();
    q.quantize_base_with(Nf4Compute::F32).unwrap();
    let names: Vec<String> = q.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bias"], "the NF4 base weight is no parameter");
    assert_eq!((q.in_features(), q.out_features()), (17, 5));
    let x = Tensor::from_slice_on(&g, &rand_vec(3 * 17, seed("ng"), -1.0, 1.0), &[3, 17])
        .unwrap()
        .requires_grad();
    q.forward(&x).unwrap().sum().unwrap().backward().unwrap();
    assert!(x.grad().is_some());
    assert!(lin.weight.grad().is_none());
    // The dequantised layer is the layer: same outputs as the fused forward.
    let y = q.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let yl = Linear::from_tensors(q.base_weight_f32().unwrap(), lin.bias.clone())
        .unwrap()
        .forward(&x)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    F32_TOL.assert_close("quantised Linear vs its dequantised twin", &y, &yl);
}

#[test]
fn memory_is_under_0_14_of_f32() {
    let g = gpu();
    let w = normal_vec(1024 * 1024, seed("mem"), 0.02);
    let q = Nf4Weight::quantize_slice(&g, &w, &[1024, 1024]).unwrap();
    let ratio = q.bytes() as f64 / q.f32_bytes() as f64;
    // 4 + 8/64 + 32/16384 bits (+ one f32): 0.1290.
    assert!(ratio <= 0.14, "NF4 bytes {} = {ratio} x f32", q.bytes());
    assert!((ratio - 0.12897).abs() < 1e-4, "ratio {ratio}");
    let e = q.error();
    assert!(e.rel_frobenius > 0.0 && e.rel_frobenius < 0.12, "{e:?}");
}

#[test]
fn reduction_past_lavapipe_loop_limit() {
    // in = 66,001 (value-by-value path, one iteration per k) and out = 66,001 for the input
    // gradient: both must be chunked, or lavapipe silently drops the tail.
    let g = gpu();
    let big = 66_001;
    let (o, i) = (2, big);
    let w = normal_vec(o * i, seed("big-w"), 0.1);
    let x = rand_vec(i, seed("big-x"), 0.5, 1.0);
    let q = cpu::quantize(&w, o, i);
    let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
    let xt = Tensor::from_slice_on(&g, &x, &[1, i]).unwrap();
    let y = nf4_linear_with(&xt, &gw, None, Nf4Compute::F32).unwrap();
    let want = cpu::matmul_nf4(&f64s(&x), 1, &q, None);
    Tolerance::new(1e-4, 1e-3, "f32 sums of 66k terms").assert_close(
        "matmul_nf4 in=66001",
        &y.to_vec::<f32>().unwrap(),
        &want,
    );

    let (o, i) = (big, 3);
    let w = normal_vec(o * i, seed("big-w2"), 0.1);
    let q = cpu::quantize(&w, o, i);
    let gw = Nf4Weight::quantize_slice(&g, &w, &[o, i]).unwrap();
    let xt = Tensor::from_slice_on(&g, &[0.3f32, -0.2, 0.1], &[1, i])
        .unwrap()
        .requires_grad();
    let dy = rand_vec(o, seed("big-dy"), 0.5, 1.0);
    let dyt = Tensor::from_slice_on(&g, &dy, &[1, o]).unwrap();
    let y = nf4_linear_with(&xt, &gw, None, Nf4Compute::F32).unwrap();
    y.mul(&dyt).unwrap().sum().unwrap().backward().unwrap();
    let want = cpu::matmul_nf4_grad_input(&f64s(&dy), 1, &q);
    Tolerance::new(1e-4, 1e-3, "f32 sums of 66k terms").assert_close(
        "matmul_nf4_grad_input out=66001",
        &xt.grad().unwrap().to_vec::<f32>().unwrap(),
        &want,
    );
}
