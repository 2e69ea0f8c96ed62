//! The cost model of `kiln explain` (`kernels/src/launch/cost.rs`) for the families beyond
//! matmul, conv and attention's full forward (those are in `capture.rs`): each launcher runs
//! under a capture at awkward sizes and the FLOPs and bytes of its records must equal the
//! formula of the module notes, written out here from the shapes the test chose. Causal
//! attention counts only the visible pairs, `T (T + 1) / 2` per head for self-attention.

use crate::capture::captured;
use crate::common::*;
use kiln_kernels::capture::Cost;
use kiln_kernels::launch::attention::{self as ak, AttnConfig, AttnInputs, AttnShape, AttnVariant};
use kiln_kernels::launch::index::{self as ix, IndexMode, IndexShape, ScatterStrategy, View3};
use kiln_kernels::launch::norm::{self as nk, NormKind, RowNorm};
use kiln_kernels::launch::pool::{self as pk, PoolShape, Window};
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode, Vector};
use kiln_kernels::launch::{batch_norm as bk, bias_gelu as gk, cross_entropy as ck};
use kiln_kernels::launch::{dropout as dk, optim as ok};
use kiln_kernels::{Gpu, GpuBuffer, Operand};

/// Random f32 data of `n` values in a fresh buffer.
fn rnd(g: &Gpu, n: usize, tag: &str) -> GpuBuffer {
    upload(g, &rand_vec(n, seed(tag), -1.0, 1.0))
}

/// The cost of each dispatch `work` records, as (entry, cost).
fn costs(g: &Gpu, work: impl FnOnce()) -> Vec<(&'static str, Cost)> {
    let cap = captured(g, work);
    cap.dispatches
        .iter()
        .map(|r| {
            (
                r.entry,
                r.cost.unwrap_or_else(|| panic!("{}: no cost", r.label)),
            )
        })
        .collect()
}

/// (FLOPs, bytes) of `flops` and `elems` f32 elements.
fn f32s(flops: usize, elems: usize) -> Cost {
    Cost {
        flops: flops as u64,
        bytes: 4 * elems as u64,
    }
}

#[test]
fn rows_reduce_softmax_and_cross_entropy_follow_their_formulas() {
    let g = private_gpu();
    let (r, l) = (37, 29);
    let x = rnd(&g, r * l, "cost rows");
    let out = g.alloc(4 * (r * l) as u64, "out").unwrap();
    let rows = Rows::contiguous(&x, r, l);
    let got = costs(&g, || {
        rk::reduce_rows(&g, ReduceOp::Max, ReduceStrategy::Auto, rows, &out, 0, 1.0).unwrap();
        rk::arg_rows(&g, true, ReduceStrategy::Workgroup, rows, &out, 0).unwrap();
        sk::softmax_rows(
            &g,
            SoftmaxMode::LogSoftmax,
            ReduceStrategy::Auto,
            rows,
            &out,
            0,
        )
        .unwrap();
        sk::softmax_rows(
            &g,
            SoftmaxMode::LogSumExp,
            ReduceStrategy::Auto,
            rows,
            &out,
            0,
        )
        .unwrap();
    });
    let e = r * l;
    let want = [
        f32s(e, e + r),
        f32s(e, e + r),
        f32s(5 * e, 2 * e),
        f32s(4 * e, e + r),
    ];
    assert_eq!(got.iter().map(|c| c.1).collect::<Vec<_>>(), want);

    let t = upload_u32(&g, &rand_indices(r, seed("cost t"), l as u32));
    let (loss, lse) = (
        g.alloc(4 * r as u64, "loss").unwrap(),
        g.alloc(4 * r as u64, "lse").unwrap(),
    );
    let one = upload(&g, &[1.0]);
    let tv = Vector {
        buf: &t,
        offset: 0,
        stride: 1,
    };
    let gv = Vector {
        buf: &one,
        offset: 0,
        stride: 0,
    };
    let got = costs(&g, || {
        ck::cross_entropy_forward(&g, ReduceStrategy::Auto, rows, tv, &loss, &lse).unwrap();
        ck::cross_entropy_backward(&g, rows, tv, &lse, gv, 1.0 / r as f32, &out).unwrap();
    });
    let want = [f32s(4 * e + r, e + 3 * r), f32s(4 * e, 2 * e + 2 * r + 1)];
    assert_eq!(got.iter().map(|c| c.1).collect::<Vec<_>>(), want);
}

#[test]
fn norms_bias_gelu_and_dropout_follow_their_formulas() {
    let g = private_gpu();
    let (r, d) = (23, 19);
    let e = r * d;
    let (x, gr, w, b) = (
        rnd(&g, e, "n x"),
        rnd(&g, e, "n g"),
        rnd(&g, d, "n w"),
        rnd(&g, d, "n b"),
    );
    let (y, dx, gxh) = (
        g.alloc(4 * e as u64, "y").unwrap(),
        g.alloc(4 * e as u64, "dx").unwrap(),
        g.alloc(4 * e as u64, "gxh").unwrap(),
    );
    let stats = g.alloc(8 * r as u64, "stats").unwrap();
    for (kind, fwd, bwd, extra) in [
        (NormKind::LayerNorm, 8, 11, d),
        (NormKind::RmsNorm, 4, 8, 0),
    ] {
        let s = RowNorm {
            kind,
            rows: r,
            d,
            eps: 1e-5,
        };
        let got = costs(&g, || {
            nk::forward(&g, s, Operand::whole(&x), &w, &b, &y, &stats).unwrap();
            nk::backward(
                &g,
                s,
                Operand::whole(&x),
                &w,
                Operand::whole(&gr),
                &stats,
                &dx,
                &gxh,
            )
            .unwrap();
        });
        let want = [
            f32s(fwd * e, 2 * e + d + extra + 2 * r),
            f32s(bwd * e, 4 * e + d + 2 * r),
        ];
        assert_eq!(
            got.iter().map(|c| c.1).collect::<Vec<_>>(),
            want,
            "{kind:?}"
        );
    }
    for tanh in [false, true] {
        let s = gk::BiasGelu { tanh, len: e, n: d };
        let got = costs(&g, || {
            gk::forward(&g, s, Operand::whole(&x), &b, &y).unwrap();
            gk::backward(&g, s, Operand::whole(&x), &b, Operand::whole(&gr), &dx).unwrap();
        });
        let want = [f32s(8 * e, 2 * e + d), f32s(16 * e, 3 * e + d)];
        assert_eq!(got.iter().map(|c| c.1).collect::<Vec<_>>(), want);
    }
    let got = costs(&g, || {
        dk::dropout_mask(&g, dk::Stream::new(7), 0.3, e, &y).unwrap();
        dk::bits(&g, dk::Stream::new(8), e - 3, &y).unwrap();
    });
    assert_eq!(
        got.iter().map(|c| c.1).collect::<Vec<_>>(),
        [f32s(0, e), f32s(0, e - 3)]
    );
}

#[test]
fn batch_norm_passes_follow_their_formulas() {
    let g = private_gpu();
    let s = bk::NormShape {
        n: 3,
        c: 5,
        hw: 7 * 11,
    };
    let (e, c) = (s.len(), s.c);
    let (x, gr) = (rnd(&g, e, "bn x"), rnd(&g, e, "bn g"));
    let ch = upload(&g, &rand_vec(7 * c, seed("bn ch"), 0.5, 1.5));
    let out = g.alloc(4 * e as u64, "out").unwrap();
    let got = costs(&g, || {
        bk::invstd(&g, c, 1e-5, &ch).unwrap();
        bk::forward(&g, s, Operand::whole(&x), &ch, &out).unwrap();
        bk::backward_dx(
            &g,
            s,
            true,
            Operand::whole(&x),
            Operand::whole(&gr),
            &ch,
            &out,
        )
        .unwrap();
        bk::backward_dx(
            &g,
            s,
            false,
            Operand::whole(&x),
            Operand::whole(&gr),
            &ch,
            &out,
        )
        .unwrap();
    });
    let want = [
        ("stats", f32s(2 * c, 2 * c)),
        ("forward", f32s(4 * e, 2 * e + 4 * c)),
        ("backward_dx", f32s(7 * e, 3 * e + 5 * c)),
        ("backward_dx", f32s(2 * e, 2 * e + 2 * c)),
    ];
    assert_eq!(got, want);
}

#[test]
fn pools_count_their_windows() {
    let g = private_gpu();
    let (n, c, h, w) = (2, 3, 13, 11);
    let planes = n * c;
    let x = rnd(&g, planes * h * w, "pool x");
    let buf = |len: usize| g.alloc(4 * len as u64, "pool").unwrap();
    // A 3x2 window, stride 2, padding 1 (generic kernels), and 2x2 tiles where they apply.
    let win = Window {
        kernel: (3, 2),
        stride: (2, 2),
        padding: (1, 1),
    };
    let s = win.shape(n, c, h, w).unwrap();
    let (xl, yl) = (s.input_len(), s.output_len());
    let (y, arg, gx) = (buf(yl), buf(yl), buf(xl));
    let gy = rnd(&g, yl, "pool g");
    let got = costs(&g, || {
        pk::max_pool2d(&g, s, win, Operand::whole(&x), &y, &arg).unwrap();
        pk::max_pool2d_backward(&g, s, win, Operand::whole(&gy), &arg, &gx).unwrap();
        pk::avg_pool2d(&g, s, win, Operand::whole(&x), &y).unwrap();
        pk::avg_pool2d_backward(&g, s, win, Operand::whole(&gy), &gx).unwrap();
    });
    let want = [
        f32s(yl * 6, xl + 2 * yl),
        f32s(yl, xl + 2 * yl),
        f32s(yl * 7, xl + yl),
        f32s(yl * 6, xl + yl),
    ];
    assert_eq!(got.iter().map(|c| c.1).collect::<Vec<_>>(), want);
    // Adaptive to (4, 3): rows [0,4) [3,7) [6,10) [9,13) (4 each), cols [0,4) [3,8) [7,11).
    let a = PoolShape {
        n,
        c,
        h,
        w,
        oh: 4,
        ow: 3,
    };
    let area = (4 * 4) * (4 + 5 + 4);
    let got = costs(&g, || {
        pk::adaptive_avg_pool2d(&g, a, Operand::whole(&x), &y).unwrap();
        pk::adaptive_avg_pool2d_backward(&g, a, Operand::whole(&gy), &gx).unwrap();
    });
    let yl = planes * 12;
    let want = [
        f32s(planes * area + yl, xl + yl),
        f32s(planes * area, xl + yl),
    ];
    assert_eq!(got.iter().map(|c| c.1).collect::<Vec<_>>(), want);
}

#[test]
fn index_gathers_copy_and_scatters_add() {
    let g = private_gpu();
    let sh = IndexShape {
        outer: 3,
        d: 17,
        inner: 5,
        j: 11,
    };
    let (o, d, i, j) = (sh.outer, sh.d, sh.inner, sh.j);
    let x = rnd(&g, o * d * i, "ix x");
    let idx = upload_u32(&g, &rand_indices(j, seed("ix idx"), d as u32));
    let gy = rnd(&g, o * j * i, "ix g");
    let (out, gx) = (
        g.alloc(4 * (o * j * i) as u64, "out").unwrap(),
        g.alloc(4 * (o * d * i) as u64, "gx").unwrap(),
    );
    let got = costs(&g, || {
        let xv = View3::contiguous(&x, 0, d, i);
        ix::index_forward(
            &g,
            IndexMode::Select,
            sh,
            xv,
            Operand::whole(&idx),
            Operand::whole(&out),
        )
        .unwrap();
        let gv = View3::contiguous(&gy, 0, j, i);
        for strategy in [ScatterStrategy::Column, ScatterStrategy::Pull] {
            ix::scatter_add(
                &g,
                IndexMode::Select,
                strategy,
                sh,
                gv,
                Operand::whole(&idx),
                Operand::whole(&gx),
            )
            .unwrap();
        }
    });
    let t = o * j * i;
    let want = [
        ("forward", f32s(0, 2 * t + j)),
        ("scatter_column", f32s(t, 3 * t + j)),
        ("scatter_pull", f32s(t, 2 * o * d * j * i + 2 * o * d * i)),
    ];
    assert_eq!(got, want);
}

#[test]
fn eight_bit_adam_counts_its_codes_and_scales() {
    let g = private_gpu();
    let n = 5000;
    let (p, gr) = (rnd(&g, n, "q8 p"), rnd(&g, n, "q8 g"));
    let (words, blocks) = (ok::q8_words(n), ok::q8_blocks(n));
    let mq = upload_u32(&g, &vec![0x7f7f_7f7f; words]);
    let vq = upload_u32(&g, &vec![0; words]);
    let scales = upload(&g, &vec![0.0; 2 * blocks]);
    let code = upload(&g, &kiln_kernels::reference::optim::q8_code());
    let (bc1, bc2) = ok::AdamStep::bias_corrections(0.9, 0.999, 1);
    let h = ok::AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: true,
        bc1,
        bc2,
    };
    let st = ok::Q8State {
        mq: Operand::whole(&mq),
        vq: Operand::whole(&vq),
        scales: Operand::whole(&scales),
    };
    let got = costs(&g, || {
        ok::adam8bit(
            &g,
            &h,
            n,
            Operand::whole(&p),
            Operand::whole(&gr),
            st,
            &code,
        )
        .unwrap();
    });
    let bytes = (16 * n + 16 * blocks + 4 * 512) as u64;
    assert_eq!(
        got,
        [(
            "adam8bit",
            Cost {
                flops: 18 * n as u64,
                bytes
            }
        )]
    );
}

#[test]
fn causal_attention_counts_the_visible_pairs() {
    let g = private_gpu();
    // Tq < Tk (end-aligned: query i sees keys j <= i + Tk - Tq) and self-attention.
    for (tq, tk) in [(13, 21), (19, 19)] {
        let s = AttnShape {
            batch: 2,
            heads: 3,
            tq,
            tk,
            d: 8,
            scale: 0.35,
            causal: true,
        };
        let (bh, d) = ((s.batch * s.heads) as u64, s.d as u64);
        let (rows, krows) = (s.batch * s.heads * tq, s.batch * s.heads * tk);
        let (q, k, v) = (
            rnd(&g, rows * s.d, "ca q"),
            rnd(&g, krows * s.d, "ca k"),
            rnd(&g, krows * s.d, "ca v"),
        );
        let o = g.alloc(4 * (rows * s.d) as u64, "o").unwrap();
        let lse = g.alloc(4 * rows as u64, "lse").unwrap();
        let visible: u64 = (0..tq).map(|i| (i + tk - tq + 1) as u64).sum();
        for (variant, chunk) in [(AttnVariant::Row, 5), (AttnVariant::Panel, 0)] {
            let cfg = AttnConfig::of(variant);
            let got = costs(&g, || {
                let [q, k, v] = [&q, &k, &v].map(Operand::whole);
                let x = AttnInputs {
                    q,
                    k,
                    v,
                    keep: None,
                };
                ak::forward(&g, &s, cfg, x, (&o, &lse), chunk).unwrap();
            });
            let flops: u64 = got.iter().map(|c| c.1.flops).sum();
            assert_eq!(flops, 4 * bh * visible * d, "{variant:?} {tq}x{tk}");
        }
        if tq == tk {
            assert_eq!(visible, (tq * (tq + 1) / 2) as u64);
        }
    }
}
