//! The dispatch recorder (`Gpu::start_capture` / `finish_capture`, `kernels/src/capture.rs`):
//! one record per dispatch the encoder counted, GPU times where the adapter has timestamps,
//! the caller's scope, and FLOP counts against the formulas of matmul (2 M N K), conv
//! (`Conv2dShape::flops` per pass) and attention (4 B H Tq Tk D forward).

use crate::common::*;
use kiln_kernels::capture::{self, Capture, TimeKind};
use kiln_kernels::launch::attention::{self as ak, AttnConfig, AttnInputs, AttnShape, AttnVariant};
use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvVariant};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulDims, MatmulVariant};
use kiln_kernels::{Gpu, Operand};

/// Run `work` on `g` under a capture; check one record per counted dispatch, and times.
pub fn captured(g: &Gpu, work: impl FnOnce()) -> Capture {
    captured_with(g, true, work)
}

/// [`captured`] with GPU timestamps (where the adapter has them) or wall-time estimates.
fn captured_with(g: &Gpu, timestamps: bool, work: impl FnOnce()) -> Capture {
    let before = g.encoder_stats().total_dispatches;
    g.start_capture_with(timestamps);
    assert!(g.capturing());
    work();
    let c = g.finish_capture().expect("a capture ran");
    assert!(!g.capturing());
    let counted = g.encoder_stats().total_dispatches - before;
    assert_eq!(
        c.dispatches.len() as u64,
        counted,
        "one record per dispatch"
    );
    let ts = timestamps && g.has_timestamps();
    assert_eq!(c.gpu_timestamps, ts);
    for r in &c.dispatches {
        let (a, b) = r.gpu_ns.unwrap_or_else(|| panic!("{}: no time", r.label));
        assert!(b >= a, "{}: ends before it starts", r.label);
        let kind = if ts {
            TimeKind::Gpu
        } else {
            TimeKind::Estimated
        };
        assert_eq!(r.time, kind);
    }
    c
}

#[test]
fn matmul_records_its_key_line_and_2mnk() {
    let g = private_gpu();
    let (batch, m, n, k) = (3, 37, 29, 53);
    let a = upload(&g, &rand_vec(batch * m * k, seed("cap a"), -1.0, 1.0));
    let b = upload(&g, &rand_vec(batch * k * n, seed("cap b"), -1.0, 1.0));
    let c = g.alloc(4 * (batch * m * n) as u64, "c").unwrap();
    let dims = MatmulDims { batch, m, n, k };
    let (la, lb) = (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n));
    let cap = captured(&g, || {
        let _scope = capture::op_scope("matmul", || "[3, 37, 53] @ [3, 53, 29]".into());
        capture::set_phase("forward");
        let (ra, rb) = (MatRef::new(&a, la), MatRef::new(&b, lb));
        mk::matmul(&g, MatmulVariant::Tiled, ra, rb, &c, 0, dims).unwrap();
    });
    assert_eq!(cap.dispatches.len(), 1);
    let r = &cap.dispatches[0];
    assert_eq!((r.shader, r.entry), ("matmul/tiled.wgsl", "main"));
    assert_eq!((r.phase.as_str(), r.op.as_str()), ("forward", "matmul"));
    assert_eq!(r.shapes, "[3, 37, 53] @ [3, 53, 29]");
    let cost = r.cost.expect("matmul has a cost model");
    assert_eq!(cost.flops, 2 * (batch * m * n * k) as u64);
    assert_eq!(cost.bytes, 4 * (batch * (m * k + k * n + m * n)) as u64);
    let line = capture::entry_line(r.shader, r.entry).expect("fn main( in tiled.wgsl");
    let src = kiln_kernels::shaders::raw(r.shader).unwrap();
    assert!(src.lines().nth(line - 1).unwrap().contains("fn main("));
    // Off again: nothing is recorded and there is no capture to finish.
    mk::matmul(
        &g,
        MatmulVariant::Tiled,
        MatRef::new(&a, la),
        MatRef::new(&b, lb),
        &c,
        0,
        dims,
    )
    .unwrap();
    assert!(g.finish_capture().is_none());
}

#[test]
fn conv_passes_count_the_shape_flops() {
    let g = private_gpu();
    let s = Conv2dShape::new(2, 3, 5, (11, 9), (3, 3)).padded((1, 1));
    let rnd = |n: usize, tag: &str| upload(&g, &rand_vec(n, seed(tag), -1.0, 1.0));
    let count = |sh: [usize; 4]| sh.iter().product::<usize>();
    let x = rnd(count(s.input_shape()), "cap x");
    let w = rnd(count(s.weight_shape()), "cap w");
    let dy = rnd(count(s.output_shape()), "cap dy");
    let out = g.alloc(4 * count(s.output_shape()) as u64, "y").unwrap();
    let dx = g.alloc(4 * count(s.input_shape()) as u64, "dx").unwrap();
    let dw = g.alloc(4 * count(s.weight_shape()) as u64, "dw").unwrap();
    for variant in [ConvVariant::Direct, ConvVariant::ImplicitGemm] {
        let cap = captured(&g, || {
            ck::conv2d_forward(&g, variant, &s, &x, &w, None, &out).unwrap();
            ck::conv2d_grad_input(&g, variant, &s, &w, &dy, &dx).unwrap();
            ck::conv2d_grad_weight(&g, variant, &s, &x, &dy, &dw).unwrap();
        });
        for entry in ["forward", "grad_input", "grad_weight"] {
            let flops: u64 = cap
                .dispatches
                .iter()
                .filter(|r| r.entry == entry)
                .filter_map(|r| r.cost.map(|c| c.flops))
                .sum();
            assert_eq!(flops, s.flops(), "{variant:?} {entry}");
        }
    }
}

#[test]
fn attention_forward_chunks_sum_to_4bhtqtkd() {
    let g = private_gpu();
    let s = AttnShape {
        batch: 2,
        heads: 3,
        tq: 17,
        tk: 29,
        d: 8,
        scale: 0.35,
        causal: false,
    };
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    let q = upload(&g, &rand_vec(rows * s.d, seed("cap q"), -1.0, 1.0));
    let k = upload(&g, &rand_vec(krows * s.d, seed("cap k"), -1.0, 1.0));
    let v = upload(&g, &rand_vec(krows * s.d, seed("cap v"), -1.0, 1.0));
    let o = g.alloc(4 * (rows * s.d) as u64, "o").unwrap();
    let lse = g.alloc(4 * rows as u64, "lse").unwrap();
    let [q, k, v] = [&q, &k, &v].map(Operand::whole);
    let x = AttnInputs {
        q,
        k,
        v,
        keep: None,
    };
    for (variant, chunk) in [(AttnVariant::Row, 5), (AttnVariant::Panel, 0)] {
        let cfg = AttnConfig::of(variant);
        let cap = captured(&g, || {
            ak::forward(&g, &s, cfg, x, (&o, &lse), chunk).unwrap();
        });
        if chunk > 0 {
            assert!(
                cap.dispatches.len() > 1,
                "{variant:?}: chunks of {chunk} keys"
            );
        }
        let flops: u64 = cap.dispatches.iter().map(|r| r.cost.unwrap().flops).sum();
        let want = 4 * (s.batch * s.heads * s.tq * s.tk * s.d) as u64;
        assert_eq!(flops, want, "{variant:?} chunk {chunk}");
    }
}

#[test]
fn claims_name_the_forward_ops_that_ran_before_them() {
    let g = private_gpu();
    let x = upload(&g, &rand_vec(100, seed("cap claims"), -1.0, 1.0));
    let y = g.alloc(400, "y").unwrap();
    let strided = |b| kiln_kernels::launch::elementwise::Strided::contiguous(b, &[100]);
    let relu = || {
        use kiln_kernels::launch::elementwise::{UnaryOp, unary};
        unary(
            &g,
            UnaryOp::Relu,
            &[100],
            strided(&x),
            strided(&y),
            0.0,
            0.0,
        )
        .unwrap();
    };
    let cap = captured(&g, || {
        relu();
        relu();
        capture::claim("relu twice", || "[100]".into());
        {
            let _s = capture::op_scope("inside", String::new);
            relu();
        }
        relu();
        capture::claim("last", String::new);
    });
    let ops: Vec<&str> = cap.dispatches.iter().map(|r| r.op.as_str()).collect();
    assert_eq!(ops, ["relu twice", "relu twice", "inside", "last"]);
    assert_eq!(cap.dispatches[0].shapes, "[100]");
    let cost = cap.dispatches[0].cost.unwrap();
    assert_eq!((cost.flops, cost.bytes), (100, 800));
}

#[test]
fn without_timestamps_each_submission_is_timed_and_split() {
    let g = private_gpu();
    let n = 1 << 16;
    let x = upload(&g, &rand_vec(n, seed("cap wall"), -1.0, 1.0));
    let y = g.alloc(4 * n as u64, "y").unwrap();
    let strided = |b| kiln_kernels::launch::elementwise::Strided::contiguous(b, &[n]);
    let t0 = std::time::Instant::now();
    let cap = captured_with(&g, false, || {
        use kiln_kernels::launch::elementwise::{UnaryOp, unary};
        for _ in 0..3 {
            unary(&g, UnaryOp::Exp, &[n], strided(&x), strided(&y), 0.0, 0.0).unwrap();
        }
        g.flush(); // a second submission
        unary(&g, UnaryOp::Relu, &[n], strided(&y), strided(&x), 0.0, 0.0).unwrap();
    });
    let wall = t0.elapsed().as_nanos() as u64;
    assert_eq!(cap.dispatches.len(), 4);
    let ds = &cap.dispatches;
    // Equal bytes bound: the first submission's time is split in three equal, adjacent parts.
    let d: Vec<u64> = ds.iter().map(|r| r.duration_ns()).collect();
    assert!(
        d[0].abs_diff(d[1]) <= 2 && d[1].abs_diff(d[2]) <= 2,
        "{d:?}"
    );
    assert!(ds[0].gpu_ns.unwrap().1.abs_diff(ds[1].gpu_ns.unwrap().0) <= 1);
    assert!(
        ds[3].gpu_ns.unwrap().0 >= ds[2].gpu_ns.unwrap().1,
        "submissions in order"
    );
    assert!(d.iter().sum::<u64>() <= wall);
}
