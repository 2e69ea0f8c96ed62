//! Indexing: the index.wgsl kernels (forward, both scatter strategies) against the CPU twin at
//! awkward sizes with strided sources and out-of-range indices, and why the twin's summation
//! order matters. The ops (gradient checks, views, errors) are the root crate's tests/ops/index.rs.

use crate::common::*;
use kiln_kernels::launch::index::{self as ik, IndexMode, IndexShape, ScatterStrategy, View3};
use kiln_kernels::reference::index as cpu;
use kiln_kernels::{Gpu, GpuBuffer, Operand};

/// (O, D, I, J) cases: every awkward size appears in every role.
const CASES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (7, 17, 1, 129),
    (1, 257, 7, 17),
    (17, 7, 17, 257),
    (129, 1, 7, 7),
    (1, 129, 257, 1),
    (257, 7, 1, 17),
    (7, 1, 129, 7),
];

const COPY: Tolerance = Tolerance::EXACT;
const IN_ORDER: Tolerance = Tolerance::new(
    0.0,
    0.0,
    "each gx element sums its terms in increasing j in f32, exactly as the CPU twin does",
);

/// `data` behind `pad` words of padding.
fn upload_padded<T: bytemuck::Pod>(g: &Gpu, data: &[T], pad: usize) -> GpuBuffer {
    let bytes = (data.len() + pad).max(1) * 4;
    let buf = g.alloc(bytes as u64, "test").unwrap();
    g.upload(&buf, (pad * 4) as u64, bytemuck::cast_slice(data));
    buf
}

/// Store logical (A, B, C) data either row-major or in (C, B, A) order behind a 3-element pad;
/// returns the stored words and the view's offset and strides.
fn layout<T: Copy + Default>(
    data: &[T],
    a: usize,
    b: usize,
    c: usize,
    permuted: bool,
) -> (Vec<T>, usize, [usize; 3]) {
    if !permuted {
        return (data.to_vec(), 0, [b * c, c, 1]);
    }
    let pad = 3;
    let strides = [1, a, a * b];
    let mut v = vec![T::default(); pad + data.len()];
    for x in 0..a {
        for y in 0..b {
            for z in 0..c {
                v[pad + x * strides[0] + y * strides[1] + z * strides[2]] =
                    data[(x * b + y) * c + z];
            }
        }
    }
    (v, pad, strides)
}

fn indices(mode: IndexMode, s: IndexShape, seed: u64, bound: usize) -> Vec<u32> {
    let n = match mode {
        IndexMode::Select => s.j,
        IndexMode::Gather => s.outer * s.j * s.inner,
    };
    let mut v = rand_indices(n, seed, bound.max(1) as u32);
    v[0] = 0; // at least one in-range index, so no output is all zeros
    v
}

/// Every case, in both modes.
fn shapes_and_modes() -> impl Iterator<Item = (IndexShape, IndexMode)> {
    let shapes = CASES
        .iter()
        .map(|&(outer, d, inner, j)| IndexShape { outer, d, inner, j });
    shapes.flat_map(|s| [IndexMode::Select, IndexMode::Gather].map(|m| (s, m)))
}

#[test]
fn forward_kernel_matches_twin_on_strided_sources() {
    let g = gpu();
    for (s, mode) in shapes_and_modes() {
        let IndexShape { outer, d, inner, j } = s;
        for permuted in [false, true] {
            let tag = format!("{s:?} {mode:?} permuted={permuted}");
            let x = rand_vec(outer * d * inner, seed(&tag), -3.0, 3.0);
            // Up to D + 1: some indices are out of range and must read as 0.
            let idx = indices(mode, s, seed(&tag) ^ 1, d + 2);
            let (stored, offset, strides) = layout(&x, outer, d, inner, permuted);
            let xb = upload_padded(&g, &stored, 0);
            let ib = upload_padded(&g, &idx, 2);
            let n = outer * j * inner;
            let ob = g.alloc((n * 4 + 20) as u64, "out").unwrap();
            ik::index_forward(
                &g,
                mode,
                s,
                View3 {
                    buf: &xb,
                    offset,
                    strides,
                },
                Operand {
                    buf: &ib,
                    offset: 2,
                },
                Operand {
                    buf: &ob,
                    offset: 5,
                },
            )
            .unwrap();
            let got: Vec<f32> = read_at(&g, &ob, 5, n);
            COPY.assert_close(&tag, &got, &cpu::index_forward(mode, s, &x, &idx));
            assert!(got.iter().any(|&v| v != 0.0), "{tag}: all zeros");
        }
    }
}

#[test]
fn forward_kernel_copies_integer_words() {
    let g = gpu();
    let s = IndexShape {
        outer: 7,
        d: 17,
        inner: 129,
        j: 17,
    };
    let x: Vec<u32> = rand_indices(7 * 17 * 129, seed("int words"), u32::MAX);
    let idx = rand_indices(17, seed("int idx"), 17);
    let xb = upload_padded(&g, &x, 0);
    let ib = upload_padded(&g, &idx, 0);
    let ob = g.alloc((7 * 17 * 129 * 4) as u64, "out").unwrap();
    ik::index_forward(
        &g,
        IndexMode::Select,
        s,
        View3::contiguous(&xb, 0, 17, 129),
        Operand::whole(&ib),
        Operand::whole(&ob),
    )
    .unwrap();
    let got: Vec<u32> = read_at(&g, &ob, 0, 7 * 17 * 129);
    assert_eq!(got, cpu::index_forward(IndexMode::Select, s, &x, &idx));
}

#[test]
fn scatter_kernels_match_twin_bit_for_bit() {
    let g = gpu();
    for (s, mode) in shapes_and_modes() {
        let IndexShape { outer, d, inner, j } = s;
        // A small bound repeats indices (so sums really accumulate); D + 2 adds out-of-range ones.
        for bound in [d.min(3), d + 2] {
            let tag = format!("{s:?} {mode:?} bound {bound}");
            let gv = rand_vec(outer * j * inner, seed(&tag), -2.0, 2.0);
            let idx = indices(mode, s, seed(&tag) ^ 7, bound);
            let start = rand_vec(outer * d * inner, seed(&tag) ^ 9, -1.0, 1.0);
            let mut want = start.clone();
            cpu::scatter_add(mode, s, &gv, &idx, &mut want);
            let (stored, offset, strides) = layout(&gv, outer, j, inner, bound > d);
            let gb = upload_padded(&g, &stored, 0);
            let ib = upload_padded(&g, &idx, 0);
            let mut results = Vec::new();
            for strategy in [ScatterStrategy::Column, ScatterStrategy::Pull] {
                let gxb = upload_padded(&g, &start, 1);
                ik::scatter_add(
                    &g,
                    mode,
                    strategy,
                    s,
                    View3 {
                        buf: &gb,
                        offset,
                        strides,
                    },
                    Operand::whole(&ib),
                    Operand {
                        buf: &gxb,
                        offset: 1,
                    },
                )
                .unwrap();
                let got: Vec<f32> = read_at(&g, &gxb, 1, start.len());
                IN_ORDER.assert_close(&format!("{tag} {strategy:?}"), &got, &want);
                results.push(got);
            }
            assert!(
                results[0]
                    .iter()
                    .zip(&results[1])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{tag}: column and pull differ in bits"
            );
        }
    }
}

#[test]
fn scatter_twin_order_matters() {
    // Guards the determinism tests: summing the same terms in another order changes the bits, so
    // a kernel that summed out of order (or raced) would not match the twin exactly.
    let n = 4000;
    let terms: Vec<f32> = rand_vec(n, seed("order"), -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(k, v)| v * 10f32.powi((k % 7) as i32 - 3))
        .collect();
    let s = IndexShape {
        outer: 1,
        d: 1,
        inner: 1,
        j: n,
    };
    let mut fwd = vec![0.0f32];
    cpu::scatter_add(IndexMode::Select, s, &terms, &vec![0; n], &mut fwd);
    let rev: f32 = terms.iter().rev().fold(0.0, |a, &b| a + b);
    assert_ne!(
        fwd[0].to_bits(),
        rev.to_bits(),
        "reordering did not change the sum"
    );
}
