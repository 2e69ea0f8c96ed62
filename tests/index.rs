//! Indexing and joining: the index.wgsl kernels (forward, both scatter strategies) against the CPU
//! twin at awkward sizes with strided sources and out-of-range indices; gradient checks of
//! index_select, gather, embedding, concat, stack, split and chunk (with transposed inputs); the
//! bit-reproducibility of the scatter-add; and error cases.

mod common;

use common::*;
use kiln::{DType, Tensor};
use kiln_kernels::launch::index::{self as ik, IndexMode, IndexShape, ScatterStrategy, View3};
use kiln_kernels::reference::{gather_strided, index as cpu};
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

fn upload<T: bytemuck::Pod>(g: &Gpu, data: &[T], pad: usize) -> GpuBuffer {
    let bytes = (data.len() + pad).max(1) * 4;
    let buf = g.alloc(bytes as u64, "test").unwrap();
    g.upload(&buf, (pad * 4) as u64, bytemuck::cast_slice(data));
    buf
}

fn read<T: bytemuck::Pod>(g: &Gpu, buf: &GpuBuffer, offset: usize, n: usize) -> Vec<T> {
    bytemuck::pod_collect_to_vec(&g.read(buf, (offset * 4) as u64, (n * 4) as u64).unwrap())
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

#[test]
fn forward_kernel_matches_twin_on_strided_sources() {
    let g = gpu();
    for &(outer, d, inner, j) in CASES {
        let s = IndexShape { outer, d, inner, j };
        for mode in [IndexMode::Select, IndexMode::Gather] {
            for permuted in [false, true] {
                let tag = format!("{s:?} {mode:?} permuted={permuted}");
                let x = rand_vec(outer * d * inner, seed(&tag), -3.0, 3.0);
                // Up to D + 1: some indices are out of range and must read as 0.
                let idx = indices(mode, s, seed(&tag) ^ 1, d + 2);
                let (stored, offset, strides) = layout(&x, outer, d, inner, permuted);
                let xb = upload(&g, &stored, 0);
                let ib = upload(&g, &idx, 2);
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
                let got: Vec<f32> = read(&g, &ob, 5, n);
                COPY.assert_close(&tag, &got, &cpu::index_forward(mode, s, &x, &idx));
                assert!(got.iter().any(|&v| v != 0.0), "{tag}: all zeros");
            }
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
    let xb = upload(&g, &x, 0);
    let ib = upload(&g, &idx, 0);
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
    let got: Vec<u32> = read(&g, &ob, 0, 7 * 17 * 129);
    assert_eq!(got, cpu::index_forward(IndexMode::Select, s, &x, &idx));
}

#[test]
fn scatter_kernels_match_twin_bit_for_bit() {
    let g = gpu();
    for &(outer, d, inner, j) in CASES {
        let s = IndexShape { outer, d, inner, j };
        for mode in [IndexMode::Select, IndexMode::Gather] {
            // A small bound repeats indices (so sums really accumulate); D + 2 adds out-of-range ones.
            for bound in [d.min(3), d + 2] {
                let tag = format!("{s:?} {mode:?} bound {bound}");
                let gv = rand_vec(outer * j * inner, seed(&tag), -2.0, 2.0);
                let idx = indices(mode, s, seed(&tag) ^ 7, bound);
                let start = rand_vec(outer * d * inner, seed(&tag) ^ 9, -1.0, 1.0);
                let mut want = start.clone();
                cpu::scatter_add(mode, s, &gv, &idx, &mut want);
                let (stored, offset, strides) = layout(&gv, outer, j, inner, bound > d);
                let gb = upload(&g, &stored, 0);
                let ib = upload(&g, &idx, 0);
                let mut results = Vec::new();
                for strategy in [ScatterStrategy::Column, ScatterStrategy::Pull] {
                    let gxb = upload(&g, &start, 1);
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
                    let got: Vec<f32> = read(&g, &gxb, 1, start.len());
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

/// Row-major data of `x` (shape `shape`) viewed with dims permuted by `perm`.
fn permuted(x: &[f64], shape: &[usize], perm: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let strides = kiln_kernels::launch::elementwise::contiguous_strides(shape);
    let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let pstrides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    (gather_strided(x, 0, &pshape, &pstrides), pshape)
}

fn shape_around(shape: &[usize], d: usize, j: usize) -> IndexShape {
    IndexShape {
        outer: shape[..d].iter().product(),
        d: shape[d],
        inner: shape[d + 1..].iter().product(),
        j,
    }
}

#[test]
fn index_select_gradcheck() {
    let shape = [3usize, 7, 5];
    for (dim, perm) in [
        (0usize, [0usize, 1, 2]),
        (1, [0, 1, 2]),
        (2, [0, 1, 2]),
        (0, [2, 0, 1]),
        (2, [2, 0, 1]),
    ] {
        let tag = format!("index_select dim {dim} perm {perm:?}");
        let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let idx = rand_indices(9, seed(&tag), pshape[dim] as u32);
        let idx2 = idx.clone();
        gradcheck(
            &tag,
            &[Input::rand(&shape, seed(&tag) ^ 3, -2.0, 2.0)],
            move |t| {
                let ids = Tensor::from_slice_on(t[0].gpu(), &idx, &[9])?;
                t[0].permute(&perm)?.index_select(dim as isize - 3, &ids)
            },
            move |x| {
                let (xp, ps) = permuted(&x[0], &shape, &perm);
                cpu::index_forward(IndexMode::Select, shape_around(&ps, dim, 9), &xp, &idx2)
            },
            GradTol::default(),
        );
    }
}

#[test]
fn gather_gradcheck() {
    let shape = [4usize, 7, 3];
    for (dim, j, transposed) in [
        (1usize, 9usize, false),
        (0, 6, false),
        (2, 5, false),
        (1, 17, true),
    ] {
        let tag = format!("gather dim {dim} j {j} transposed {transposed}");
        let perm = if transposed {
            [2usize, 1, 0]
        } else {
            [0, 1, 2]
        };
        let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let mut ishape = pshape.clone();
        ishape[dim] = j;
        let idx = rand_indices(ishape.iter().product(), seed(&tag), pshape[dim] as u32);
        let idx2 = idx.clone();
        gradcheck(
            &tag,
            &[Input::rand(&shape, seed(&tag) ^ 3, -2.0, 2.0)],
            move |t| {
                let ids = Tensor::from_slice_on(t[0].gpu(), &idx, &ishape)?;
                t[0].permute(&perm)?.gather(dim as isize, &ids)
            },
            move |x| {
                let (xp, ps) = permuted(&x[0], &shape, &perm);
                cpu::index_forward(IndexMode::Gather, shape_around(&ps, dim, j), &xp, &idx2)
            },
            GradTol::default(),
        );
    }
}

#[test]
fn embedding_gradcheck() {
    let (v, c) = (11usize, 6usize);
    // 12 ids below 5: rows repeat (their gradients add) and rows 5.. get none.
    let ids = rand_indices(12, seed("emb ids"), 5);
    let ids2 = ids.clone();
    gradcheck(
        "embedding",
        &[Input::rand(&[v, c], seed("emb w"), -1.0, 1.0)],
        move |t| {
            let ids = Tensor::from_slice_on(t[0].gpu(), &ids, &[3, 4])?;
            let e = t[0].embedding(&ids)?;
            assert_eq!(e.shape(), [3, 4, c]);
            Ok(e)
        },
        move |x| {
            cpu::index_forward(
                IndexMode::Select,
                IndexShape {
                    outer: 1,
                    d: v,
                    inner: c,
                    j: 12,
                },
                &x[0],
                &ids2,
            )
        },
        GradTol::default(),
    );
}

#[test]
fn index_ops_on_views_and_integers() {
    let g = gpu();
    let x = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    // Out-of-range index 99 reads 0 and its gradient is dropped; the repeated 1 counts twice.
    let ids = Tensor::from_slice_on(&g, &[1u32, 99, 1], &[3]).unwrap();
    let xr = x.detach().requires_grad();
    let y = xr.index_select(1, &ids).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [2.0, 0.0, 2.0, 5.0, 0.0, 5.0]);
    y.sum().unwrap().backward().unwrap();
    assert_eq!(
        xr.grad().unwrap().to_vec::<f32>().unwrap(),
        [0.0, 2.0, 0.0, 0.0, 2.0, 0.0]
    );
    // Non-contiguous index tensor (a strided narrow of a 2-D one).
    let big = Tensor::from_slice_on(&g, &[2u32, 0, 1, 1, 0, 2], &[3, 2]).unwrap();
    let col = big.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
    assert_eq!(
        x.index_select(1, &col).unwrap().to_vec::<f32>().unwrap(),
        [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
    );
    // Integer sources.
    let xi = Tensor::from_slice_on(&g, &[10i32, -20, 30, -40], &[2, 2]).unwrap();
    let gi = Tensor::from_slice_on(&g, &[1u32, 0, 1, 1], &[2, 2]).unwrap();
    let r = xi.gather(1, &gi).unwrap();
    assert_eq!(r.dtype(), DType::I32);
    assert_eq!(r.to_vec::<i32>().unwrap(), [-20, 10, -40, -40]);
    let xu = Tensor::from_slice_on(&g, &[7u32, 8, 9], &[3]).unwrap();
    let iu = Tensor::from_slice_on(&g, &[2u32, 2, 0], &[3]).unwrap();
    assert_eq!(
        xu.index_select(0, &iu).unwrap().to_vec::<u32>().unwrap(),
        [9, 9, 7]
    );
    // Rank-0 ids give one row.
    let w = tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let one = Tensor::from_slice_on(&g, &[1u32], &[]).unwrap();
    let e = Tensor::embedding(&w, &one).unwrap();
    assert_eq!(e.shape(), [2]);
    assert_eq!(e.to_vec::<f32>().unwrap(), [3.0, 4.0]);
}

#[path = "index/more.rs"]
mod more;
