//! Indexing and joining ops: gradient checks of index_select, gather, embedding, concat, stack,
//! split and chunk (with transposed inputs); the bit-reproducibility of the embedding's
//! scatter-add; and error cases. The index.wgsl kernels against their CPU twin are kiln-kernels'
//! tests/kernels/index.rs.

use crate::common;

use common::*;
use kiln::{DType, Tensor};
use kiln_kernels::launch::index::{IndexMode, IndexShape};
use kiln_kernels::reference::{gather_strided, index as cpu};

/// Each gradient element sums its terms in increasing j in f32, as the CPU twin does.
const IN_ORDER: Tolerance = Tolerance::new(0.0, 0.0, "f32 sums in increasing j, as the twin");

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

mod more;
