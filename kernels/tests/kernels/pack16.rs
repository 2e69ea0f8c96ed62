//! `pack16.wgsl` against its CPU twin (the `half` crate's conversions) for f16 and bf16: random
//! values over a wide exponent range (f16 overflow, normals, subnormals and underflow to zero)
//! and the edge values (±0, ±inf, NaN, 65504, 65519 / 65520 around f16's rounding to inf, the
//! ties 2^-25 and 3 * 2^-25, f32 subnormals, f32::MAX), at odd sizes so the last word is half
//! full, at non-zero offsets. The packed words must equal the twin's bit for bit (a NaN only
//! has to stay a NaN), and unpacking must give the twin's f32 exactly.

use crate::common::*;
use kiln_kernels::launch::pack16::{self as k, Half};
use kiln_kernels::reference::pack16 as twin;

/// `n` values `±m * 2^e` with e uniform in [-30, 20) (f16 covers about [-24, 16)), then the
/// edge values.
fn draws(n: usize, s: u64) -> Vec<f32> {
    let m = rand_vec(n, s, 1.0, 2.0);
    let e = rand_vec(n, s + 1, -30.0, 20.0);
    let sign = rand_vec(n, s + 2, -1.0, 1.0);
    let mut v: Vec<f32> = (0..n)
        .map(|i| m[i] * 2f32.powi(e[i].floor() as i32) * sign[i].signum())
        .collect();
    let edges = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65519.0,
        65520.0,
        -65520.0,
        2f32.powi(-25),
        3.0 * 2f32.powi(-25),
        2f32.powi(-24),
        2f32.powi(-14) * 1.5,
        f32::from_bits(1),
        f32::MAX,
        -f32::MAX,
        1.0 + 2f32.powi(-8), // bf16 tie (to even: 1.0)
        1.0 + 3.0 * 2f32.powi(-8),
    ];
    for (i, x) in edges.iter().enumerate() {
        if i < n {
            v[i] = *x;
        }
    }
    v
}

fn same(a: u32, b: u32, format: Half) -> bool {
    let nan = |h: u32| match format {
        Half::F16 => (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0,
        Half::Bf16 => (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0,
    };
    [0, 16].iter().all(|&sh| {
        let (x, y) = ((a >> sh) & 0xffff, (b >> sh) & 0xffff);
        x == y || (nan(x) && nan(y))
    })
}

#[test]
fn pack_and_unpack_match_twin_bit_for_bit() {
    let g = gpu();
    for format in [Half::F16, Half::Bf16] {
        for &n in &[1usize, 18, 257, 1031, 70_001] {
            let x = draws(n, seed(&format!("pack{n}{format:?}")));
            let words = k::words(n);
            let xs = Shifted::between(&g, &[7.0; 5], &x, &[]);
            let packed = upload_u32(&g, &vec![0xdead_beef; words + 3]);
            k::pack(
                &g,
                format,
                n,
                xs.operand(),
                kiln_kernels::Operand::new(&packed, 3),
            )
            .unwrap();
            let got = read_at::<u32>(&g, &packed, 0, words + 3);
            let want = twin::pack(format, &x);
            let what = format!("{format:?} n={n}");
            assert_eq!(
                &got[..3],
                &[0xdead_beef; 3],
                "{what}: words before the offset"
            );
            for (w, (&a, &b)) in got[3..].iter().zip(&want).enumerate() {
                assert!(
                    same(a, b, format),
                    "{what}: word {w} ({:?}, {:?}): got {a:#010x}, twin {b:#010x}",
                    x[2 * w],
                    x.get(2 * w + 1)
                );
            }
            let out = Shifted::between(&g, &[5.0; 2], &vec![0.0; n], &[]);
            k::unpack(
                &g,
                format,
                n,
                kiln_kernels::Operand::new(&packed, 3),
                out.operand(),
            )
            .unwrap();
            let back = out.read(&g);
            let want = twin::unpack(format, &want, n);
            for (i, (&a, &b)) in back.iter().zip(&want).enumerate() {
                let ok = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
                assert!(
                    ok,
                    "{what}: unpacked {i} (from {}): got {a:e}, twin {b:e}",
                    x[i]
                );
            }
        }
    }
}

#[test]
fn rounding_is_to_nearest_even_at_the_edges() {
    // The twin itself, on the values the shader's comments promise.
    let f = |x: f32| twin::value16(Half::F16, twin::bits16(Half::F16, x));
    assert_eq!(f(65519.0), 65504.0);
    assert_eq!(f(65520.0), f32::INFINITY);
    assert_eq!(f(2f32.powi(-25)), 0.0, "tie to even: 0");
    assert_eq!(
        f(3.0 * 2f32.powi(-25)),
        2f32.powi(-23),
        "tie to even: 2 * 2^-24"
    );
    let b = |x: f32| twin::value16(Half::Bf16, twin::bits16(Half::Bf16, x));
    assert_eq!(b(1.0 + 2f32.powi(-8)), 1.0);
    assert_eq!(b(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
    assert_eq!(b(f32::MAX), f32::INFINITY);
}

#[test]
fn launchers_refuse_short_buffers() {
    let g = gpu();
    // 4096 values need 2048 words; the pool may round 64 words up, but not that far.
    let x = upload(&g, &[1.0; 4096]);
    let w = upload_u32(&g, &[0; 64]);
    let (xo, wo) = (
        kiln_kernels::Operand::new(&x, 0),
        kiln_kernels::Operand::new(&w, 0),
    );
    let e = err_text(k::pack(&g, Half::Bf16, 4096, xo, wo));
    assert!(e.contains("out") && e.contains("overrun"), "{e}");
}
