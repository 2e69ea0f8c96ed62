//! Matmul: every rung of the kernel ladder against the CPU twin (awkward sizes, transposed and
//! padded operands, broadcast batches, split grids); the feature rungs (subgroup, f16, coop) and
//! every tile configuration in [`rungs`]. `Tensor::matmul` against an f64 `torch.matmul` model
//! (rank cases, broadcasting, errors, gradients) is the root crate's tests/ops/matmul.rs.

mod rungs;

use crate::common::{Tolerance, f64s, gpu, private_gpu, rand_vec, read, seed, upload};
use kiln_kernels::launch::matmul::{
    self as mk, K_CHUNK, MatLayout, MatRef, MatmulConfig, MatmulDims, MatmulVariant,
};
use kiln_kernels::reference::matmul as cpu;
use kiln_kernels::{Gpu, GpuBuffer};

const SENTINEL: f32 = 12345.0;

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

/// Upload `v` as f32, or rounded to f16 for the f16 rungs; returns the buffer and the values the
/// GPU sees, in f64.
fn upload_as(g: &Gpu, v: &[f32], f16: bool) -> (GpuBuffer, Vec<f64>) {
    if !f16 {
        return (upload(g, v), f64s(v));
    }
    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
    let buf = g
        .alloc((2 * h.len() as u64).next_multiple_of(4), "test f16")
        .unwrap();
    let mut bytes = bytemuck::cast_slice::<half::f16, u8>(&h).to_vec();
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    g.upload(&buf, 0, &bytes);
    (buf, h.iter().map(|x| x.to_f64()).collect())
}

/// Run `cfg` on random operands laid out by `la` / `lb` and compare with the CPU twin on the
/// values the GPU saw. The output starts at an odd offset inside a buffer of sentinels, and
/// everything outside the product must still be a sentinel afterwards.
fn check(cfg: MatmulConfig, dims: MatmulDims, la: MatLayout, lb: MatLayout, tag: &str) {
    let g = gpu();
    let MatmulDims { batch, m, n, k } = dims;
    let f16 = cfg.variant.f16_operands();
    let s = seed(tag);
    let a = operand(
        la.last_index(batch, m, k).unwrap() + 1,
        la,
        (batch, m, k),
        s,
    );
    let b = operand(
        lb.last_index(batch, k, n).unwrap() + 1,
        lb,
        (batch, k, n),
        s ^ 0xb,
    );
    let ((ga, a64), (gb, b64)) = (upload_as(&g, &a, f16), upload_as(&g, &b, f16));
    let (off, len) = (3, batch * m * n);
    let total = off + len + 5;
    let gc = upload(&g, &vec![SENTINEL; total]);
    let (ra, rb) = (MatRef::new(&ga, la), MatRef::new(&gb, lb));
    mk::matmul(&g, cfg, ra, rb, &gc, off, dims)
        .unwrap_or_else(|e| panic!("{tag} {}: launch failed: {e}", cfg.label()));
    let got = read(&g, &gc, total);
    let want = cpu::matmul(&a64, la, &b64, lb, dims);
    let what = format!("{} {tag} {dims:?} A {la:?} B {lb:?}", cfg.label());
    Tolerance::f32_dot(k).assert_close(&what, &got[off..off + len], &want);
    let outside: Vec<f32> = got[..off]
        .iter()
        .chain(&got[off + len..])
        .copied()
        .collect();
    Tolerance::EXACT.assert_close(
        &format!("{what}: elements outside C"),
        &outside,
        &vec![SENTINEL; outside.len()],
    );
}

/// [`check`] with the rung's default configuration.
fn check_rung(variant: MatmulVariant, dims: MatmulDims, la: MatLayout, lb: MatLayout, tag: &str) {
    check(MatmulConfig::default_for(variant), dims, la, lb, tag);
}

fn dims(batch: usize, m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims { batch, m, n, k }
}

/// Contiguous A (M, K) and B (K, N).
fn plain(m: usize, n: usize, k: usize) -> (MatLayout, MatLayout) {
    (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n))
}

/// A layout from its four numbers.
fn layout(offset: usize, batch_stride: usize, row_stride: usize, col_stride: usize) -> MatLayout {
    MatLayout {
        offset,
        batch_stride,
        row_stride,
        col_stride,
    }
}

/// Every (M, N, K) from sizes that are not multiples of any tile (4, 16, 64).
fn awkward_sizes() -> Vec<(usize, usize, usize)> {
    let sizes = [1, 7, 17, 129];
    let pairs = sizes.iter().flat_map(|&m| sizes.map(|n| (m, n)));
    pairs.flat_map(|(m, n)| sizes.map(|k| (m, n, k))).collect()
}

/// Transposed and padded operands for (M, N, K): A^T, B^T, both (batch 2), and narrowed views
/// (batch 3, offsets and row strides wider than the rows; the padding is random data the kernel
/// must skip). Each as (dims, A layout, B layout, tag).
fn layout_cases(m: usize, n: usize, k: usize) -> Vec<(MatmulDims, MatLayout, MatLayout, String)> {
    let t = format!("{m}x{n}x{k}");
    let (at, bt) = (MatLayout::transposed(m, k), MatLayout::transposed(k, n));
    let (ac, bc) = plain(m, n, k);
    let (ap, bp) = (
        layout(5, m * (k + 3) + 2, k + 3, 1),
        layout(11, 0, 2, 2 * k + 1),
    );
    vec![
        (dims(1, m, n, k), at, bc, format!("A^T {t}")),
        (dims(1, m, n, k), ac, bt, format!("B^T {t}")),
        (dims(2, m, n, k), at, bt, format!("A^T B^T {t}")),
        (dims(3, m, n, k), ap, bp, format!("padded {t}")),
    ]
}

#[test]
fn every_rung_matches_cpu_twin_at_awkward_sizes() {
    // The awkward sizes, plus 257s.
    let mut cases = awkward_sizes();
    cases.extend([(257, 129, 65), (33, 257, 257), (257, 3, 100)]);
    for v in MatmulVariant::ALL {
        for &(m, n, k) in &cases {
            let (a, b) = plain(m, n, k);
            check_rung(v, dims(1, m, n, k), a, b, &format!("plain {m}x{n}x{k}"));
        }
    }
}

#[test]
fn every_rung_reads_transposed_and_padded_operands() {
    for v in MatmulVariant::ALL {
        for (m, n, k) in [(7, 17, 129), (129, 7, 17), (17, 129, 7), (65, 66, 67)] {
            for (d, la, lb, tag) in layout_cases(m, n, k) {
                check_rung(v, d, la, lb, &tag);
            }
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
            layout(4, m * (up4(k) + 4) + 4, up4(k) + 4, 1),
            // vec4 along M (A stored transposed)
            layout(8, k * (up4(m) + 4) + 4, 1, up4(m) + 4),
            // element loads: misaligned offset
            MatLayout::contiguous(m, k).at(3),
        ];
        let b_modes = [
            layout(12, k * (up4(n) + 4) + 8, up4(n) + 4, 1),
            layout(4, n * (up4(k) + 8) + 4, 1, up4(k) + 8),
            layout(0, 0, 2 * n + 1, 2),
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
    let g = private_gpu();
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
        let cfg = MatmulConfig::default_for(v);
        mk::matmul_with(&g, cfg, ra, rb, None, &gc, 0, d, 2).unwrap();
        assert_eq!(
            g.encoder_stats().total_dispatches - before,
            12,
            "{}",
            v.name()
        );
        let f = |x: &[f32]| x.iter().map(|&e| e as f64).collect::<Vec<_>>();
        let want = cpu::matmul(&f(&a), la, &f(&b), lb, d);
        let what = format!("{} split grid {d:?}", v.name());
        Tolerance::f32_dot(d.k).assert_close(&what, &read(&g, &gc, len), &want);
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

/// The vec4 rung's bias epilogue (`BIAS`) against the CPU twin: uneven tiles, two chunks of K
/// (the bias is added once), column chunks of the grid split (the bias index starts past 0), a
/// C offset, and a refused non-vec4 rung.
#[test]
fn bias_epilogue_matches_cpu_twin() {
    let g = gpu();
    let cases = [
        // (m, k, n, max_groups, C offset in rows)
        (1, 1, 1, 65_535, 0),
        (7, 17, 129, 65_535, 2),
        (17, 7, 257, 1, 0),
        (129, 20, 33, 2, 1),
        (3, K_CHUNK + 5, 5, 65_535, 0),
    ];
    for (m, k, n, max_groups, c_rows) in cases {
        let s = seed(&format!("bias {m} {k} {n}"));
        let (x, w, b) = (
            rand_vec(m * k, s, -1.0, 1.0),
            rand_vec(n * k, s + 1, -1.0, 1.0),
            rand_vec(n, s + 2, -1.0, 1.0),
        );
        let (xt, wt, bt) = (upload(&g, &x), upload(&g, &w), upload(&g, &b));
        let off = c_rows * n;
        let out = upload(&g, &vec![0.0; off + m * n]);
        let cfg = MatmulConfig::default_for(MatmulVariant::Vec4);
        let dims = MatmulDims { batch: 1, m, n, k };
        let la = MatLayout::contiguous(m, k);
        let lb = MatLayout::transposed(k, n);
        let (ra, rb) = (MatRef::new(&xt, la), MatRef::new(&wt, lb));
        mk::matmul_with(&g, cfg, ra, rb, Some(&bt), &out, off, dims, max_groups).unwrap();
        // x W^T + b in f64.
        let mut want = cpu::matmul(&f64s(&x), la, &f64s(&w), lb, dims);
        want.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v += b[i % n] as f64);
        let got = read(&g, &out, off + m * n);
        assert!(got[..off].iter().all(|&v| v == 0.0), "nothing before C");
        let tol = Tolerance::new(
            1e-4,
            1e-5 * (k as f64).sqrt(),
            "f32 dot products of length k",
        );
        tol.assert_close(&format!("bias epilogue {m}x{k}x{n}"), &got[off..], &want);
        // Other rungs have no epilogue: refused, not silently wrong.
        let reg = MatmulConfig::default_for(MatmulVariant::RegBlock);
        let e = mk::matmul_bias(
            &g,
            reg,
            MatRef::new(&xt, la),
            MatRef::new(&wt, lb),
            &bt,
            &out,
            0,
            dims,
        );
        assert!(e.unwrap_err().to_string().contains("vec4"));
    }
}
