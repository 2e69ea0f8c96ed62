//! bf16 storage (`DType::BF16`, packed two to a u32 word by `pack16.wgsl`) through the tensor
//! API on the test adapter, with or without `SHADER_F16`: f32 -> bf16 gives the `half` crate's
//! round-to-nearest-even bits at odd sizes, bf16 -> f32 is exact, other dtypes go through f32,
//! host and checkpoint round trips keep the bits, and a strided view is refused by name.

use crate::common::*;
use half::bf16;
use kiln::{DType, Tensor};

/// Values `±m * 2^e`, e in [-130, 128): bf16 normals, subnormals and values that round to inf.
fn wide(n: usize, s: u64) -> Vec<f32> {
    let m = rand_vec(n, s, 1.0, 2.0);
    let e = rand_vec(n, s + 1, -130.0, 128.0);
    (0..n)
        .map(|i| {
            let v = m[i] * 2f32.powi(e[i].floor() as i32);
            if i % 3 == 0 { -v } else { v }
        })
        .collect()
}

#[test]
fn f32_to_bf16_rounds_like_half_and_back_is_exact() {
    let g = gpu();
    for &n in &[1usize, 7, 1031, 4099] {
        let x = wide(n, seed(&format!("bf16{n}")));
        let t = Tensor::from_slice_on(&g, &x, &[n]).unwrap();
        let b = t.to_dtype(DType::BF16).unwrap();
        assert_eq!((b.dtype(), b.shape()), (DType::BF16, &[n][..]));
        let got: Vec<u16> = b
            .to_vec::<bf16>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let want: Vec<u16> = x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
        assert_eq!(got, want, "n={n}: bf16 bits");
        let back = b.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
        let exact: Vec<f32> = want.iter().map(|&h| bf16::from_bits(h).to_f32()).collect();
        assert_eq!(back, exact, "n={n}: bf16 -> f32 is exact");
    }
}

#[test]
fn bf16_round_trips_through_host_and_other_dtypes() {
    let g = gpu();
    let x: Vec<f32> = (0..15).map(|i| i as f32 * 1.5 - 4.0).collect();
    let b = Tensor::from_slice_on(&g, &x, &[3, 5])
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let h = b.to_host().unwrap();
    assert_eq!((h.dtype, h.bytes.len()), (DType::BF16, 30));
    let again = Tensor::from_host_on(&g, &h).unwrap();
    assert_eq!(
        again.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        x
    );
    let ints = b.to_dtype(DType::I32).unwrap().to_vec::<i32>().unwrap();
    assert_eq!(ints, x.iter().map(|&v| v as i32).collect::<Vec<_>>());
    let view = b.t().unwrap();
    let e = view.to_dtype(DType::F32).unwrap_err().to_string();
    assert_mentions(&e, &["bf16", "packed storage", "view"]);
}
