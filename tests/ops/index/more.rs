//! Index op tests, continued.

use super::*;

#[test]
fn embedding_backward_is_bit_reproducible() {
    let g = gpu();
    let (v, c, n) = (5usize, 17usize, 4000usize);
    // Terms of very different magnitudes, few rows: the sum of each row depends on the order.
    let wv = rand_vec(v * c, seed("det w"), -1.0, 1.0);
    let ids = rand_indices(n, seed("det ids"), v as u32);
    let up: Vec<f32> = rand_vec(n * c, seed("det g"), -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(k, x)| x * 10f32.powi((k % 7) as i32 - 3))
        .collect();
    let weight = tensor(&wv, &[v, c]).requires_grad();
    let idt = Tensor::from_slice_on(&g, &ids, &[n]).unwrap();
    let upt = tensor(&up, &[n, c]);
    let mut runs = Vec::new();
    for _ in 0..2 {
        weight.clear_grad();
        let e = weight.embedding(&idt).unwrap();
        e.mul(&upt).unwrap().sum().unwrap().backward().unwrap();
        runs.push(weight.grad().unwrap().to_vec::<f32>().unwrap());
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&runs[0]), bits(&runs[1]), "two backward passes differ");
    let mut want = vec![0.0f32; v * c];
    cpu::scatter_add(
        IndexMode::Select,
        IndexShape {
            outer: 1,
            d: v,
            inner: c,
            j: n,
        },
        &up,
        &ids,
        &mut want,
    );
    IN_ORDER.assert_close("embedding grad vs in-order f32 sum", &runs[0], &want);
}

// ---- joining ----

#[test]
fn concat_stack_split_chunk_values() {
    let g = gpu();
    let a = tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = tensor(&[5.0, 6.0], &[2, 1]);
    let c = Tensor::concat(&[&a, &b], 1).unwrap();
    assert_eq!(c.shape(), [2, 3]);
    assert_eq!(c.to_vec::<f32>().unwrap(), [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let c0 = Tensor::concat(&[&a, &a.t().unwrap()], 0).unwrap();
    assert_eq!(
        c0.to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0, 1.0, 3.0, 2.0, 4.0]
    );
    // Integer tensors and an empty piece.
    let u = Tensor::from_slice_on(&g, &[1u32, 2, 3], &[3]).unwrap();
    let e = Tensor::from_slice_on(&g, &[] as &[u32], &[0]).unwrap();
    let v = Tensor::from_slice_on(&g, &[4u32], &[1]).unwrap();
    let uv = Tensor::concat(&[&u, &e, &v], -1).unwrap();
    assert_eq!(uv.dtype(), DType::U32);
    assert_eq!(uv.to_vec::<u32>().unwrap(), [1, 2, 3, 4]);
    let i = Tensor::from_slice_on(&g, &[-1i32, 5], &[2]).unwrap();
    assert_eq!(
        Tensor::stack(&[&i, &i], 1)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [-1, -1, 5, 5]
    );
    // stack at each position, including a transposed input.
    let at = a.t().unwrap();
    let s0 = Tensor::stack(&[&a, &at], 0).unwrap();
    assert_eq!(s0.shape(), [2, 2, 2]);
    assert_eq!(
        s0.to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0, 1.0, 3.0, 2.0, 4.0]
    );
    let s2 = Tensor::stack(&[&a, &at], -1).unwrap();
    assert_eq!(
        s2.to_vec::<f32>().unwrap(),
        [1.0, 1.0, 2.0, 3.0, 3.0, 2.0, 4.0, 4.0]
    );
    // split / chunk are views.
    let x = tensor(&(0..10).map(|k| k as f32).collect::<Vec<_>>(), &[2, 5]);
    let parts = x.split(&[1, 0, 4], 1).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.shape()[1]).collect::<Vec<_>>(),
        [1, 0, 4]
    );
    assert!(parts.iter().all(|p| p.shares_storage(&x)));
    assert_eq!(
        parts[2].to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]
    );
    for (size, n, want) in [
        (5usize, 4usize, vec![2usize, 2, 1]),
        (6, 3, vec![2, 2, 2]),
        (7, 3, vec![3, 3, 1]),
        (2, 5, vec![1, 1]),
        (0, 3, vec![0, 0, 0]),
    ] {
        let t = Tensor::zeros_on(&g, &[3, size]).unwrap();
        let ch = t.chunk(n, 1).unwrap();
        assert_eq!(
            ch.iter().map(|p| p.shape()[1]).collect::<Vec<_>>(),
            want,
            "chunk {size} in {n}"
        );
        assert!(ch.iter().all(|p| p.shares_storage(&t)));
    }
    let ch = x.chunk(2, 0).unwrap();
    assert_eq!(ch[1].to_vec::<f32>().unwrap(), [5.0, 6.0, 7.0, 8.0, 9.0]);
}

/// Row-major concat of 2-D f64 blocks along dim 1.
fn cat_cols(blocks: &[(&[f64], usize)], rows: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for r in 0..rows {
        for (b, cols) in blocks {
            out.extend_from_slice(&b[r * cols..(r + 1) * cols]);
        }
    }
    out
}

#[test]
fn concat_gradcheck() {
    // a is given as (5, 2) and transposed to (2, 5) on the GPU.
    gradcheck(
        "concat",
        &[
            Input::rand(&[5, 2], seed("cat a"), -1.0, 1.0),
            Input::rand(&[2, 1], seed("cat b"), -1.0, 1.0),
            Input::rand(&[2, 3], seed("cat c"), -1.0, 1.0),
        ],
        |t| Tensor::concat(&[&t[0].t()?, &t[1], &t[2]], 1),
        |x| {
            let (at, _) = permuted(&x[0], &[5, 2], &[1, 0]);
            cat_cols(&[(&at, 5), (&x[1], 1), (&x[2], 3)], 2)
        },
        GradTol::default(),
    );
    gradcheck(
        "concat dim 0, input used twice",
        &[
            Input::rand(&[2, 3], seed("cat0 a"), -1.0, 1.0),
            Input::rand(&[1, 3], seed("cat0 b"), -1.0, 1.0),
        ],
        |t| Tensor::concat(&[&t[0], &t[1], &t[0]], 0),
        |x| [x[0].clone(), x[1].clone(), x[0].clone()].concat(),
        GradTol::default(),
    );
}

#[test]
fn stack_gradcheck() {
    for dim in [0isize, 1, -1] {
        gradcheck(
            &format!("stack dim {dim}"),
            &[
                Input::rand(&[3, 4], seed("stk a"), -1.0, 1.0),
                Input::rand(&[4, 3], seed("stk b"), -1.0, 1.0),
            ],
            move |t| Tensor::stack(&[&t[0], &t[1].t()?, &t[0]], dim),
            move |x| {
                let (bt, _) = permuted(&x[1], &[4, 3], &[1, 0]);
                let parts = [&x[0], &bt, &x[0]];
                // out[.., k, ..] = parts[k], k inserted at `dim` of (3, 4).
                let mut out = Vec::new();
                match dim {
                    0 => parts.iter().for_each(|p| out.extend_from_slice(p)),
                    1 => (0..3).for_each(|r| {
                        parts
                            .iter()
                            .for_each(|p| out.extend_from_slice(&p[r * 4..r * 4 + 4]))
                    }),
                    _ => (0..12).for_each(|e| parts.iter().for_each(|p| out.push(p[e]))),
                }
                out
            },
            GradTol::default(),
        );
    }
}

#[test]
fn split_and_chunk_gradcheck() {
    // x given as (6, 4), transposed to (4, 6), split along dim 1 into [2, 0, 3, 1].
    gradcheck(
        "split",
        &[Input::rand(&[6, 4], seed("split"), -1.0, 1.0)],
        |t| {
            let p = t[0].t()?.split(&[2, 0, 3, 1], 1)?;
            Tensor::concat(&[&p[3].mul_scalar(3.0)?, &p[1], &p[0], &p[2].square()?], 1)
        },
        |x| {
            let (xt, _) = permuted(&x[0], &[6, 4], &[1, 0]);
            let mut out = Vec::new();
            for r in 0..4 {
                let row = &xt[r * 6..r * 6 + 6];
                out.push(3.0 * row[5]);
                out.extend_from_slice(&row[0..2]);
                out.extend(row[2..5].iter().map(|v| v * v));
            }
            out
        },
        GradTol::default(),
    );
    gradcheck(
        "chunk",
        &[Input::rand(&[7, 5], seed("chunk"), -1.0, 1.0)],
        |t| {
            let c = t[0].chunk(3, 0)?; // rows 3, 3, 1
            Tensor::concat(&[&c[2], &c[0].neg()?, &c[1].square()?], 0)
        },
        |x| {
            let x = &x[0];
            let mut out = x[30..35].to_vec();
            out.extend(x[0..15].iter().map(|v| -v));
            out.extend(x[15..30].iter().map(|v| v * v));
            out
        },
        GradTol::default(),
    );
}

// ---- errors ----

#[test]
fn bad_inputs_return_errors() {
    let g = gpu();
    let x = tensor(&rand_vec(24, seed("err"), -1.0, 1.0), &[2, 3, 4]);
    let ids = Tensor::from_slice_on(&g, &[0u32, 1], &[2]).unwrap();
    let fids = tensor(&[0.0, 1.0], &[2]);
    let iids = Tensor::from_slice_on(&g, &[0i32, 1], &[2]).unwrap();
    let ids2d = Tensor::from_slice_on(&g, &[0u32, 1], &[1, 2]).unwrap();
    // index_select
    assert!(matches!(
        x.index_select(1, &fids),
        Err(kiln::Error::DType { .. })
    ));
    assert!(matches!(
        x.index_select(1, &iids),
        Err(kiln::Error::DType { .. })
    ));
    assert!(matches!(
        x.index_select(1, &ids2d),
        Err(kiln::Error::Shape { .. })
    ));
    assert!(x.index_select(3, &ids).is_err());
    assert!(x.index_select(-4, &ids).is_err());
    assert!(x.index_select(-3, &ids).is_ok());
    // gather
    let gi_bad = Tensor::from_slice_on(&g, &[0u32; 2 * 5 * 3], &[2, 5, 3]).unwrap();
    let err = x.gather(1, &gi_bad).unwrap_err().to_string();
    assert!(
        err.contains("[2, 5, 3]") && err.contains("[2, 3, 4]"),
        "{err}"
    );
    assert!(x.gather(1, &ids).is_err());
    assert!(x.gather(2, &fids.reshape(&[1, 1, 2]).unwrap()).is_err());
    let gi_ok = Tensor::from_slice_on(&g, &[0u32; 2 * 5 * 4], &[2, 5, 4]).unwrap();
    assert_eq!(x.gather(1, &gi_ok).unwrap().shape(), [2, 5, 4]);
    assert!(x.gather(5, &gi_ok).is_err());
    // embedding
    assert!(x.embedding(&ids).is_err());
    let w = tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    assert!(w.embedding(&fids).is_err());
    assert!(w.embedding(&iids).is_err());
    let wu = Tensor::from_slice_on(&g, &[1u32, 2, 3, 4], &[2, 2]).unwrap();
    assert!(wu.embedding(&ids).is_err());
    // concat / stack
    assert!(Tensor::concat(&[], 0).is_err());
    assert!(Tensor::stack(&[], 0).is_err());
    let y = tensor(&[0.0; 12], &[2, 2, 3]);
    let err = Tensor::concat(&[&x, &x, &y], 1).unwrap_err().to_string();
    assert!(
        err.contains("tensor 2") && err.contains("[2, 2, 3]") && err.contains("[2, 3, 4]"),
        "{err}"
    );
    assert!(Tensor::concat(&[&x, &x], 2).is_ok());
    assert!(Tensor::concat(&[&x, &x], 3).is_err());
    assert!(Tensor::concat(&[&x, &x.reshape(&[6, 4]).unwrap()], 0).is_err());
    let xi = x.to_dtype(DType::I32).unwrap();
    let err = Tensor::concat(&[&x, &xi], 0).unwrap_err().to_string();
    assert!(err.contains("tensor 1"), "{err}");
    let err = Tensor::stack(&[&x, &y], 0).unwrap_err().to_string();
    assert!(err.contains("tensor 1"), "{err}");
    assert!(Tensor::stack(&[&x, &x], 3).is_ok());
    assert!(Tensor::stack(&[&x, &x], 4).is_err());
    assert!(Tensor::stack(&[&x, &x], -5).is_err());
    // split / chunk
    assert!(matches!(
        x.split(&[1, 1], 1),
        Err(kiln::Error::Shape { .. })
    ));
    assert!(x.split(&[2, 2], 1).is_err());
    assert!(x.split(&[usize::MAX, 4], 1).is_err());
    assert!(x.split(&[3], 5).is_err());
    assert!(x.chunk(0, 0).is_err());
    assert!(x.chunk(2, -4).is_err());
    let s = Tensor::scalar(1.0).unwrap();
    assert!(Tensor::concat(&[&s, &s], 0).is_err());
    assert!(s.index_select(0, &ids).is_err());
}

#[test]
fn embedding_backward_covers_more_tokens_than_one_loop_can() {
    // 70,000 ids: more than llvmpipe's 65,535 loop iterations per invocation, so the scatter must
    // be split into chunks. Every id is counted once: with an all-ones gradient, row v of the
    // weight gradient equals the number of times v occurs.
    let g = common::gpu();
    let (v, c, n) = (5usize, 3usize, 70_000usize);
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7 + i / 3) % v as u32).collect();
    let w = kiln::Tensor::from_slice_on(&g, &vec![0.5f32; v * c], &[v, c])
        .unwrap()
        .requires_grad();
    let idt = kiln::Tensor::from_slice_on(&g, &ids, &[n]).unwrap();
    w.embedding(&idt)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    let got = w.grad().unwrap().to_vec::<f32>().unwrap();
    let mut want = vec![0f32; v * c];
    for &id in &ids {
        for k in 0..c {
            want[id as usize * c + k] += 1.0;
        }
    }
    assert_eq!(got, want);
}
