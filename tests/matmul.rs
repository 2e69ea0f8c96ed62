//! Matmul: every rung of the kernel ladder against the CPU twin (awkward sizes, transposed and
//! padded operands, broadcast batches, split grids), and `Tensor::matmul` against an f64
//! `torch.matmul` model (all rank cases, broadcasting, errors, gradients).

mod common;

use common::{GradTol, Input, Tolerance, bcast, gpu, gradcheck, rand_vec, seed, tensor};
use kiln::{DType, Tensor};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulDims, MatmulVariant};
use kiln_kernels::reference::matmul as cpu;
use kiln_kernels::{Gpu, GpuBuffer};

/// f32 dot products of K terms in [-1, 1) against an f64 oracle: the rounding error grows with
/// K (at worst ~K ulp of the sum of |terms|), and a sum that cancels to ~0 has no relative
/// accuracy, hence an absolute floor proportional to K.
fn dot_tolerance(k: usize) -> Tolerance {
    Tolerance::new(
        1e-4,
        2e-6 * k as f64,
        "f32 K-term dot products (different summation order, fma) vs f64; abs floor 2e-6 * K",
    )
}

const SENTINEL: f32 = 12345.0;

fn upload(gpu: &Gpu, data: &[f32]) -> GpuBuffer {
    let buf = gpu.alloc(4 * data.len() as u64, "test input").unwrap();
    gpu.upload(&buf, 0, bytemuck::cast_slice(data));
    buf
}

fn read(gpu: &Gpu, buf: &GpuBuffer, len: usize) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&gpu.read(buf, 0, 4 * len as u64).unwrap())
}

/// Storage of `len` elements holding a random (batch, rows, cols) matrix stack at the positions
/// `l` addresses and NaN everywhere else: any element a kernel reads outside the view and lets
/// into a stored output turns it into NaN.
fn operand(
    len: usize,
    l: MatLayout,
    (batch, rows, cols): (usize, usize, usize),
    s: u64,
) -> Vec<f32> {
    let vals = rand_vec(batch * rows * cols, s, -1.0, 1.0);
    let mut data = vec![f32::NAN; len];
    let mut it = vals.into_iter();
    for z in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                let at = l.offset + z * l.batch_stride + r * l.row_stride + c * l.col_stride;
                data[at] = it.next().unwrap();
            }
        }
    }
    data
}

/// Run one rung on random operands laid out by `la` / `lb` and compare with the CPU twin.
/// The output starts at an odd offset inside a buffer of sentinels, and everything outside
/// the product must still be a sentinel afterwards.
fn check_rung(variant: MatmulVariant, dims: MatmulDims, la: MatLayout, lb: MatLayout, tag: &str) {
    let g = gpu();
    let MatmulDims { batch, m, n, k } = dims;
    let a_len = la.last_index(batch, m, k).unwrap() + 1;
    let b_len = lb.last_index(batch, k, n).unwrap() + 1;
    let s = seed(tag);
    let a = operand(a_len, la, (batch, m, k), s);
    let b = operand(b_len, lb, (batch, k, n), s ^ 0xb);
    let (ga, gb) = (upload(&g, &a), upload(&g, &b));
    let out_off = 3;
    let c_len = batch * m * n;
    let total = out_off + c_len + 5;
    let gc = upload(&g, &vec![SENTINEL; total]);
    mk::matmul(
        &g,
        variant,
        MatRef::new(&ga, la),
        MatRef::new(&gb, lb),
        &gc,
        out_off,
        dims,
    )
    .unwrap_or_else(|e| panic!("{tag}: launch failed: {e}"));
    let got = read(&g, &gc, total);
    let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let want = cpu::matmul(&a64, la, &b64, lb, dims);
    let what = format!("{} {tag} {dims:?} A {la:?} B {lb:?}", variant.name());
    dot_tolerance(k).assert_close(&what, &got[out_off..out_off + c_len], &want);
    let outside: Vec<f32> = got[..out_off]
        .iter()
        .chain(&got[out_off + c_len..])
        .copied()
        .collect();
    Tolerance::EXACT.assert_close(
        &format!("{what}: elements outside C"),
        &outside,
        &vec![SENTINEL; outside.len()],
    );
}

fn dims(batch: usize, m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims { batch, m, n, k }
}

#[test]
fn every_rung_matches_cpu_twin_at_awkward_sizes() {
    // Every (M, N, K) from sizes that are not multiples of any tile (4, 16, 64), plus 257s.
    let sizes = [1, 7, 17, 129];
    let mut cases: Vec<(usize, usize, usize)> = Vec::new();
    for &m in &sizes {
        for &n in &sizes {
            for &k in &sizes {
                cases.push((m, n, k));
            }
        }
    }
    cases.extend([(257, 129, 65), (33, 257, 257), (257, 3, 100)]);
    for v in MatmulVariant::ALL {
        for &(m, n, k) in &cases {
            let l = (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n));
            check_rung(v, dims(1, m, n, k), l.0, l.1, &format!("plain {m}x{n}x{k}"));
        }
    }
}

#[test]
fn every_rung_reads_transposed_and_padded_operands() {
    for v in MatmulVariant::ALL {
        for (m, n, k) in [(7, 17, 129), (129, 7, 17), (17, 129, 7), (65, 66, 67)] {
            let t = format!("{m}x{n}x{k}");
            // A stored as (K, M) and read transposed; B contiguous.
            let (at, bt) = (MatLayout::transposed(m, k), MatLayout::transposed(k, n));
            let (ac, bc) = (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n));
            check_rung(v, dims(1, m, n, k), at, bc, &format!("A^T {t}"));
            check_rung(v, dims(1, m, n, k), ac, bt, &format!("B^T {t}"));
            check_rung(v, dims(2, m, n, k), at, bt, &format!("A^T B^T {t}"));
            // Narrowed views: offsets and row strides wider than the rows (padding is random
            // data the kernel must skip).
            let ap = MatLayout {
                offset: 5,
                batch_stride: m * (k + 3) + 2,
                row_stride: k + 3,
                col_stride: 1,
            };
            let bp = MatLayout {
                offset: 11,
                batch_stride: 0,
                row_stride: 2,
                col_stride: 2 * k + 1,
            };
            check_rung(v, dims(3, m, n, k), ap, bp, &format!("padded {t}"));
        }
    }
}

#[test]
fn every_rung_broadcasts_batch_with_stride_zero() {
    for v in MatmulVariant::ALL {
        for (batch, m, n, k) in [(3, 17, 7, 129), (5, 1, 33, 17), (2, 129, 130, 7)] {
            let (a, b) = (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n));
            let t = format!("{batch}x{m}x{n}x{k}");
            check_rung(v, dims(batch, m, n, k), a, b, &format!("batched {t}"));
            check_rung(
                v,
                dims(batch, m, n, k),
                a.broadcast(),
                b,
                &format!("A bcast {t}"),
            );
            check_rung(
                v,
                dims(batch, m, n, k),
                a,
                b.broadcast(),
                &format!("B bcast {t}"),
            );
            check_rung(
                v,
                dims(batch, m, n, k),
                a.broadcast(),
                MatLayout::transposed(k, n).broadcast(),
                &format!("both bcast, B^T {t}"),
            );
        }
    }
}

/// Round up to a multiple of 4 (a 16-byte row).
fn up4(x: usize) -> usize {
    x.div_ceil(4) * 4
}

#[test]
fn vec4_rung_reads_every_operand_mode() {
    // Padded, 16-byte aligned layouts that put each operand in each vec4 mode, plus one that
    // forces element loads; sizes leave remainders against 4 (vec4, K steps), 16 (the block)
    // and 64 / 128 (the workgroup tile).
    for (batch, m, n, k) in [
        (1, 1, 1, 1),
        (2, 7, 17, 129),
        (1, 129, 7, 17),
        (2, 17, 129, 7),
        (1, 33, 65, 3),
        (1, 130, 20, 257),
        (3, 5, 6, 8),
    ] {
        let d = dims(batch, m, n, k);
        let a_modes = [
            // vec4 along K
            MatLayout {
                offset: 4,
                batch_stride: m * (up4(k) + 4) + 4,
                row_stride: up4(k) + 4,
                col_stride: 1,
            },
            // vec4 along M (A stored transposed)
            MatLayout {
                offset: 8,
                batch_stride: k * (up4(m) + 4) + 4,
                row_stride: 1,
                col_stride: up4(m) + 4,
            },
            // element loads: misaligned offset
            MatLayout::contiguous(m, k).at(3),
        ];
        let b_modes = [
            MatLayout {
                offset: 12,
                batch_stride: k * (up4(n) + 4) + 8,
                row_stride: up4(n) + 4,
                col_stride: 1,
            },
            MatLayout {
                offset: 4,
                batch_stride: n * (up4(k) + 8) + 4,
                row_stride: 1,
                col_stride: up4(k) + 8,
            },
            MatLayout {
                offset: 0,
                batch_stride: 0,
                row_stride: 2 * n + 1,
                col_stride: 2,
            },
        ];
        for (ia, &la) in a_modes.iter().enumerate() {
            for (ib, &lb) in b_modes.iter().enumerate() {
                let (ma, mb) = mk::vec4_modes(la, lb, d);
                let want = |i: usize, size_ok: bool| match i {
                    0 | 1 if size_ok => i as u32 + 1,
                    _ => 0,
                };
                // A 1 x 1 operand has no contiguous dim to speak of; skip the mode check there.
                if m * k > 1 {
                    assert_eq!(ma, want(ia, true), "A mode for {d:?} {la:?}");
                }
                if k * n > 1 {
                    assert_eq!(mb, want(ib, true), "B mode for {d:?} {lb:?}");
                }
                let tag = format!("vec4 modes ({ma}, {mb}) {batch}x{m}x{n}x{k}");
                check_rung(MatmulVariant::Vec4, d, la, lb, &tag);
            }
        }
    }
}

#[test]
fn grids_are_split_into_several_dispatches() {
    // With at most 2 workgroups per grid dimension, every rung needs 3 dispatches along the
    // batch, 2 along M and 2 along N (12 in all), each with its own offsets. A device of its own,
    // so that the dispatch count is not disturbed by tests running alongside.
    let g = Gpu::new().expect("a second device on the test adapter");
    for v in MatmulVariant::ALL {
        let (tr, tc) = v.workgroup_tile();
        let d = dims(5, 2 * tr + 3, 2 * tc + 5, 7);
        let (la, lb) = (
            MatLayout::transposed(d.m, d.k),
            MatLayout::contiguous(d.k, d.n),
        );
        let a = rand_vec(
            la.last_index(5, d.m, d.k).unwrap() + 1,
            seed("split a"),
            -1.0,
            1.0,
        );
        let b = rand_vec(
            lb.last_index(5, d.k, d.n).unwrap() + 1,
            seed("split b"),
            -1.0,
            1.0,
        );
        let (ga, gb) = (upload(&g, &a), upload(&g, &b));
        let len = 5 * d.m * d.n;
        let gc = upload(&g, &vec![SENTINEL; len]);
        let before = g.encoder_stats().total_dispatches;
        let (ra, rb) = (MatRef::new(&ga, la), MatRef::new(&gb, lb));
        mk::matmul_with_grid_limit(&g, v, ra, rb, &gc, 0, d, 2).unwrap();
        assert_eq!(
            g.encoder_stats().total_dispatches - before,
            12,
            "{}",
            v.name()
        );
        let f = |x: &[f32]| x.iter().map(|&e| e as f64).collect::<Vec<_>>();
        let want = cpu::matmul(&f(&a), la, &f(&b), lb, d);
        let what = format!("{} split grid {d:?}", v.name());
        dot_tolerance(d.k).assert_close(&what, &read(&g, &gc, len), &want);
    }
    // The real limit: 65,537 products of 1x3 @ 3x2 need a second dispatch along z.
    let (a, b) = (MatLayout::contiguous(1, 3), MatLayout::contiguous(3, 2));
    check_rung(
        MatmulVariant::default(),
        dims(65_537, 1, 2, 3),
        a,
        b,
        "long batch",
    );
}

#[test]
fn long_inner_dims_are_exact_on_every_rung() {
    // lavapipe ends an invocation's loops after 65,535 iterations in total, so a K-long loop
    // must be split into chunks that add into C.
    for v in MatmulVariant::ALL {
        let k = 70_001;
        let (a, b) = (MatLayout::contiguous(3, k), MatLayout::contiguous(k, 2));
        check_rung(v, dims(1, 3, 2, k), a, b, "long K");
        let (a, b) = (MatLayout::transposed(3, k), MatLayout::transposed(k, 2));
        check_rung(v, dims(2, 3, 2, k), a.broadcast(), b, "long K transposed");
    }
}

#[test]
fn launcher_rejects_empty_dims_and_out_of_range_views() {
    let g = gpu();
    let buf = upload(&g, &[1.0; 64]);
    let out = upload(&g, &[0.0; 64]);
    let c = MatLayout::contiguous(4, 4);
    let run = |d: MatmulDims, la: MatLayout| {
        mk::matmul(
            &g,
            MatmulVariant::default(),
            MatRef::new(&buf, la),
            MatRef::new(&buf, c),
            &out,
            0,
            d,
        )
    };
    for d in [
        dims(0, 4, 4, 4),
        dims(1, 0, 4, 4),
        dims(1, 4, 0, 4),
        dims(1, 4, 4, 0),
    ] {
        let e = run(d, c).expect_err("empty dims must be rejected");
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
    // A reaching past the end of its buffer.
    let e = run(dims(1, 4, 4, 4), c.at(1 << 20)).expect_err("out of range");
    assert!(e.to_string().contains("reaches element"), "{e}");
    assert!(run(dims(1, 4, 4, 4), c).is_ok());
    assert_eq!(read(&g, &out, 16), vec![4.0; 16]);
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
    dot_tolerance(k).assert_close(&tag, &out.to_vec::<f32>().unwrap(), &want);
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
    dot_tolerance(k).assert_close("x.t() @ y.narrow", &out.to_vec::<f32>().unwrap(), &want);
    // An expanded (stride-0) batch of a transposed matrix.
    let xe = xt.unsqueeze(0).unwrap().expand(&[3, m, k]).unwrap();
    let out = xe.matmul(&yn).unwrap();
    assert_eq!(out.shape(), &[3, m, n]);
    let got = out.to_vec::<f32>().unwrap();
    dot_tolerance(k).assert_close("expanded batch", &got[2 * m * n..], &want);
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
