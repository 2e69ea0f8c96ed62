//! `Tensor::matmul` against an f64 `torch.matmul` model (all rank cases, broadcasting, views,
//! errors, gradients). The kernel ladder against its CPU twin is kiln-kernels'
//! tests/kernels/matmul.

use crate::common;

use common::{GradTol, Input, Tolerance, bcast, gpu, gradcheck, rand_vec, seed, tensor};
use kiln::{DType, Tensor};
use kiln_kernels::launch::matmul::{MatLayout, MatmulDims, MatmulVariant};
use kiln_kernels::reference::matmul as cpu;

fn dims(batch: usize, m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims { batch, m, n, k }
}

// ---------------------------------------------------------------------------------------------
// Tensor::matmul

/// `torch.matmul` in f64 on row-major data: returns (data, shape).
fn matmul_model(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let am: Vec<usize> = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.to_vec()
    };
    let bm: Vec<usize> = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.to_vec()
    };
    let (ra, rb) = (am.len(), bm.len());
    let (m, k, n) = (am[ra - 2], am[ra - 1], bm[rb - 1]);
    assert_eq!(k, bm[rb - 2], "model: inner dims");
    let (ba, bb) = (&am[..ra - 2], &bm[..rb - 2]);
    let r = ba.len().max(bb.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    let batch: Vec<usize> = (0..r).map(|i| dim(ba, i).max(dim(bb, i))).collect();
    let full = |mk: [usize; 2]| [&batch[..], &mk].concat();
    let a_full = bcast(a, &am, &full([m, k]));
    let b_full = bcast(b, &bm, &full([k, n]));
    let nb: usize = batch.iter().product();
    let c = cpu::matmul(
        &a_full,
        MatLayout::contiguous(m, k),
        &b_full,
        MatLayout::contiguous(k, n),
        dims(nb, m, n, k),
    );
    let mut shape = batch.clone();
    if sa.len() > 1 {
        shape.push(m);
    }
    if sb.len() > 1 {
        shape.push(n);
    }
    (c, shape)
}

fn check_op(sa: &[usize], sb: &[usize], variant: MatmulVariant) {
    let tag = format!("{sa:?} @ {sb:?} ({})", variant.name());
    let a = rand_vec(sa.iter().product(), seed(&tag), -1.0, 1.0);
    let b = rand_vec(sb.iter().product(), seed(&tag) ^ 1, -1.0, 1.0);
    let out = tensor(&a, sa)
        .matmul_variant(&tensor(&b, sb), variant)
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let (want, shape) = matmul_model(&f(&a), sa, &f(&b), sb);
    assert_eq!(out.shape(), &shape[..], "{tag}: shape");
    let k = *sa.last().unwrap();
    Tolerance::f32_dot(k).assert_close(&tag, &out.to_vec::<f32>().unwrap(), &want);
}

#[test]
fn matmul_follows_torch_rank_rules() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[7], &[7]),                  // dot -> ()
        (&[17], &[17, 5]),             // vector @ matrix -> (5)
        (&[9, 17], &[17]),             // matrix @ vector -> (9)
        (&[7, 17], &[17, 129]),        // matrix @ matrix
        (&[3, 7, 17], &[3, 17, 5]),    // batched
        (&[17], &[2, 17, 5]),          // vector @ batch -> (2, 5)
        (&[2, 3, 7, 17], &[17]),       // batch @ vector -> (2, 3, 7)
        (&[4, 7, 17], &[17, 5]),       // batch @ matrix (B broadcast, stride 0)
        (&[7, 17], &[4, 17, 5]),       // matrix @ batch (A broadcast)
        (&[2, 1, 7, 17], &[3, 17, 5]), // (2,1) x (3) -> (2, 3): not collapsible, materialised
        (&[2, 3, 7, 17], &[1, 3, 17, 5]),
        (&[2, 1, 3, 5, 6], &[4, 1, 6, 2]),
        (&[1, 1, 7, 17], &[1, 17, 5]),
    ];
    for (sa, sb) in cases {
        check_op(sa, sb, MatmulVariant::default());
    }
    for v in MatmulVariant::ALL {
        check_op(&[2, 1, 33, 17], &[3, 17, 65], v);
        check_op(&[65], &[65, 3], v);
    }
}

#[test]
fn matmul_reads_views_without_copying_them_first() {
    let g = gpu();
    let (m, k, n) = (17, 33, 7);
    // x stored (K, M): x.t() is an (M, K) view with strides (1, M).
    let xs = rand_vec(k * m, seed("xt"), -1.0, 1.0);
    let ys = rand_vec(k * (n + 4), seed("yn"), -1.0, 1.0);
    let x = Tensor::from_slice_on(&g, &xs, &[k, m]).unwrap();
    let y = Tensor::from_slice_on(&g, &ys, &[k, n + 4]).unwrap();
    let xt = x.t().unwrap();
    let yn = y.narrow(1, 3, n).unwrap();
    assert!(!xt.is_contiguous() && !yn.is_contiguous());
    let out = xt.matmul(&yn).unwrap();
    let want = cpu::matmul(
        &xs.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        MatLayout::transposed(m, k),
        &ys.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        MatLayout::contiguous(k, n + 4).at(3),
        dims(1, m, n, k),
    );
    assert_eq!(out.shape(), &[m, n]);
    Tolerance::f32_dot(k).assert_close("x.t() @ y.narrow", &out.to_vec::<f32>().unwrap(), &want);
    // An expanded (stride-0) batch of a transposed matrix.
    let xe = xt.unsqueeze(0).unwrap().expand(&[3, m, k]).unwrap();
    let out = xe.matmul(&yn).unwrap();
    assert_eq!(out.shape(), &[3, m, n]);
    let got = out.to_vec::<f32>().unwrap();
    Tolerance::f32_dot(k).assert_close("expanded batch", &got[2 * m * n..], &want);
}

#[test]
fn matmul_empty_and_zero_inner_dim() {
    let g = gpu();
    let e = Tensor::zeros_on(&g, &[0, 3]).unwrap();
    let b = tensor(&[1.0; 12], &[3, 4]);
    assert_eq!(e.matmul(&b).unwrap().shape(), &[0, 4]);
    // K = 0: a sum of no terms is 0, as in torch.
    let a0 = Tensor::zeros_on(&g, &[2, 0]).unwrap();
    let b0 = Tensor::zeros_on(&g, &[0, 3]).unwrap();
    let c = a0.matmul(&b0).unwrap();
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![0.0; 6]);
}

#[test]
fn matmul_shape_errors_name_both_shapes() {
    let a = tensor(&[1.0; 6], &[2, 3]);
    let b = tensor(&[1.0; 20], &[4, 5]);
    let e = a.matmul(&b).expect_err("inner dims differ");
    assert_eq!(
        e.to_string(),
        "matmul: cannot multiply (2, 3) by (4, 5): inner dims 3 and 4 differ"
    );
    let v = tensor(&[1.0; 4], &[4]);
    let e = a.matmul(&v).expect_err("vector length differs");
    assert!(e.to_string().contains("(2, 3) by (4,)"), "{e}");
    let x = tensor(&[1.0; 2 * 6], &[2, 2, 3]);
    let y = tensor(&[1.0; 3 * 3 * 2], &[3, 3, 2]);
    let e = x.matmul(&y).expect_err("batch dims do not broadcast");
    assert!(e.to_string().contains("batch dims (2,) and (3,)"), "{e}");
    let s = Tensor::scalar(2.0).unwrap();
    assert!(s.matmul(&a).is_err() && a.matmul(&s).is_err());
    let i = a.to_dtype(DType::I32).unwrap();
    assert!(i.matmul(&tensor(&[1.0; 3], &[3])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Gradients

/// cpu_fn for gradcheck: the model with inputs stored row-major in `shapes`.
fn model(shapes: [&'static [usize]; 2]) -> impl Fn(&[Vec<f64>]) -> Vec<f64> {
    move |x: &[Vec<f64>]| matmul_model(&x[0], shapes[0], &x[1], shapes[1]).0
}

fn inputs(tag: &str, shapes: [&[usize]; 2]) -> Vec<Input> {
    vec![
        Input::rand(shapes[0], seed(tag), -1.0, 1.0),
        Input::rand(shapes[1], seed(tag) ^ 7, -1.0, 1.0),
    ]
}

#[test]
fn gradcheck_matmul_2d_and_vectors() {
    let cases: &[[&'static [usize]; 2]] = &[
        [&[7, 5], &[5, 3]],
        [&[6], &[6]],
        [&[6], &[6, 4]],
        [&[3, 6], &[6]],
        [&[5], &[2, 5, 3]],
        [&[2, 3, 5], &[5]],
    ];
    for &shapes in cases {
        let tag = format!("matmul {shapes:?}");
        gradcheck(
            &tag,
            &inputs(&tag, shapes),
            |t| t[0].matmul(&t[1]),
            model(shapes),
            GradTol::default(),
        );
    }
}

#[test]
fn gradcheck_matmul_broadcast_batches_every_rung() {
    let shapes: [&'static [usize]; 2] = [&[2, 1, 5, 4], &[3, 4, 6]];
    for v in MatmulVariant::ALL {
        let tag = format!("matmul bcast {}", v.name());
        gradcheck(
            &tag,
            &inputs(&tag, shapes),
            |t| t[0].matmul_variant(&t[1], v),
            model(shapes),
            GradTol::default(),
        );
    }
    let shapes: [&'static [usize]; 2] = [&[4, 3, 5], &[5, 2]];
    gradcheck(
        "matmul batch @ matrix",
        &inputs("bm", shapes),
        |t| t[0].matmul(&t[1]),
        model(shapes),
        GradTol::default(),
    );
}

#[test]
fn gradcheck_matmul_transposed_and_narrowed_views() {
    // Inputs stored (K, M) and (N, K + 2); the op sees x.t() (M, K) and y.narrow(1, 1, K).t().
    let (m, k, n) = (4, 5, 3);
    let ins = vec![
        Input::rand(&[k, m], seed("tv0"), -1.0, 1.0),
        Input::rand(&[n, k + 2], seed("tv1"), -1.0, 1.0),
    ];
    gradcheck(
        "x.t() @ y.narrow().t()",
        &ins,
        |t| t[0].t()?.matmul(&t[1].narrow(1, 1, k)?.t()?),
        |x| {
            let xt: Vec<f64> = (0..m * k).map(|e| x[0][(e % k) * m + e / k]).collect();
            let yv: Vec<f64> = (0..k * n)
                .map(|e| x[1][(e % n) * (k + 2) + 1 + e / n])
                .collect();
            matmul_model(&xt, &[m, k], &yv, &[k, n]).0
        },
        GradTol::default(),
    );
}

// ---------------------------------------------------------------------------------------------
// f16 tensors

#[test]
fn f16_and_f32_tensors_refuse_each_others_rungs() {
    let g = gpu();
    // An f32 tensor cannot run an f16 rung, and an f16 tensor cannot run an f32 rung.
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let err = a.matmul_variant(&a, MatmulVariant::F16).unwrap_err();
    assert!(err.to_string().contains("f16"), "{err}");
    if g.has_f16() {
        let h = a.to_dtype(DType::F16).unwrap();
        let err = h.matmul_variant(&h, MatmulVariant::Vec4).unwrap_err();
        assert!(err.to_string().contains("f32"), "{err}");
    }
}

#[test]
fn tensor_matmul_of_f16_tensors_runs_the_f16_rung() {
    if let Err(why) = MatmulVariant::F16.available(&gpu()) {
        return common::skip::skip(
            "f16 matmul rung through Tensor::matmul",
            &why.to_string(),
            "an adapter with SHADER_F16 (lavapipe has it: apt-get install -y mesa-vulkan-drivers)",
        );
    }
    let (m, k, n) = (17, 129, 7);
    let a = rand_vec(m * k, seed("t16 a"), -1.0, 1.0);
    let b = rand_vec(k * n, seed("t16 b"), -1.0, 1.0);
    let ta = Tensor::from_slice(&a, &[m, k]).unwrap();
    let tb = Tensor::from_slice(&b, &[k, n]).unwrap();
    let (ha, hb) = (
        ta.to_dtype(DType::F16).unwrap().requires_grad(),
        tb.to_dtype(DType::F16).unwrap(),
    );
    let c = ha.matmul(&hb).unwrap();
    assert_eq!(c.dtype(), DType::F16);
    assert_eq!(c.shape(), &[m, n]);
    let got: Vec<f32> = c.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
    // The oracle on the f16-rounded inputs; the output is rounded to f16 once more.
    let r =
        |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| half::f16::from_f32(x).to_f64()).collect() };
    let want = cpu::matmul(
        &r(&a),
        MatLayout::contiguous(m, k),
        &r(&b),
        MatLayout::contiguous(k, n),
        dims(1, m, n, k),
    );
    Tolerance::new(1e-3, 1e-3, "f32 sums rounded to f16 (2^-11 relative)").assert_close(
        "f16 Tensor::matmul",
        &got,
        &want,
    );
    // Transposed f16 view, batch broadcast: same as the f32 product of the rounded values.
    let bt = hb.t().unwrap();
    let c2 = bt.matmul(&ha.detach().t().unwrap()).unwrap();
    assert_eq!(c2.shape(), &[n, m]);
    // The gradient flows back in f16.
    let ones = Tensor::from_slice(&vec![1.0f32; m * n], &[m, n])
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap();
    c.backward_with(&ones).unwrap();
    let grad = ha.grad().expect("f16 input gets a gradient");
    assert_eq!(grad.dtype(), DType::F16);
    assert_eq!(grad.shape(), &[m, k]);
    // dA = ones @ B^T: row sums of B (rounded to f16), the same for every row of A.
    let got: Vec<f32> = grad.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
    let rb = r(&b);
    let want: Vec<f64> = (0..m * k)
        .map(|e| (0..n).map(|j| rb[(e % k) * n + j]).sum())
        .collect();
    Tolerance::new(
        2e-3,
        2e-3,
        "f16 gradient: f32 sums of f16 values, rounded to f16",
    )
    .assert_close("f16 matmul dA", &got, &want);
}
