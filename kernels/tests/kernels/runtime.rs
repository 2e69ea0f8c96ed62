//! The runtime: buffer pool reuse and accounting, batched submission, the pipeline cache, 2-D
//! grids for large dispatches, adapter selection and the device's limits and features, all
//! through kiln-kernels' own API (buffers and launchers, no tensors).

use crate::common::*;
use kiln_kernels::launch::elementwise::{self as ek, Strided, UnaryOp};
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::{Gpu, GpuBuffer};

/// `out = alpha * x + beta` over `n` contiguous elements.
fn affine(g: &Gpu, n: usize, x: &GpuBuffer, out: &GpuBuffer, alpha: f32, beta: f32) {
    let (xs, os) = (Strided::contiguous(x, &[n]), Strided::contiguous(out, &[n]));
    ek::unary(g, UnaryOp::Affine, &[n], xs, os, alpha, beta).unwrap();
}

#[test]
fn pool_reuses_freed_buffers_and_counts_bytes() {
    let g = private_gpu();
    let (_, _, _, allocs0) = g.pool_stats();
    for _ in 0..20 {
        let b = g
            .alloc(1000 * 37 * 4, "same size class every time")
            .unwrap();
        drop(b);
    }
    let (_, _, cached, allocs1) = g.pool_stats();
    assert!(
        allocs1 - allocs0 <= 1,
        "20 same-size buffers made {} fresh buffers",
        allocs1 - allocs0
    );
    assert!(cached >= 148_000);
    let before = g.live_bytes();
    let b = g.alloc(256 * 256 * 4, "256 x 256").unwrap();
    assert!(g.live_bytes() >= before + 256 * 256 * 4);
    assert!(g.peak_bytes() >= g.live_bytes());
    drop(b);
    assert_eq!(g.live_bytes(), before);
}

#[test]
fn reused_buffer_uploads_do_not_overtake_pending_reads() {
    // A buffer freed while a recorded (unsubmitted) kernel still reads it, then reused for an
    // upload, must not have the upload land before that kernel runs.
    let g = gpu();
    for i in 0..20 {
        let a = upload(&g, &vec![i as f32; 4096]);
        let b = g.alloc(4096 * 4, "b").unwrap();
        affine(&g, 4096, &a, &b, 2.0, 0.0); // recorded, reads a
        drop(a); // a's buffer back in the pool
        let c = upload(&g, &vec![-1.0f32; 4096]); // may reuse it
        let bv = read(&g, &b, 4096);
        assert!(
            bv.iter().all(|&v| v == 2.0 * i as f32),
            "iteration {i}: got {}",
            bv[0]
        );
        assert_eq!(read(&g, &c, 1)[0], -1.0);
    }
}

#[test]
fn launches_are_batched_not_synced_per_op() {
    let g = private_gpu();
    g.sync().unwrap();
    let s0 = g.encoder_stats();
    let bufs = [upload(&g, &[1.0; 1024]), upload(&g, &[1.0; 1024])];
    for k in 0..200 {
        affine(&g, 1024, &bufs[k % 2], &bufs[(k + 1) % 2], 1.001, 0.0);
    }
    let s1 = g.encoder_stats();
    assert!(s1.total_dispatches - s0.total_dispatches >= 200);
    assert!(
        s1.submitted_batches - s0.submitted_batches <= 1,
        "200 launches caused {} submissions",
        s1.submitted_batches - s0.submitted_batches
    );
    let v = read(&g, &bufs[0], 1)[0];
    assert!((v - 1.001f32.powi(200)).abs() < 1e-3);
}

#[test]
fn pipelines_are_cached_by_specialisation() {
    let g = private_gpu();
    let (x, y) = (upload(&g, &[1.0; 7]), upload(&g, &[0.0; 7]));
    let run = |op| {
        let (xs, ys) = (Strided::contiguous(&x, &[7]), Strided::contiguous(&y, &[7]));
        ek::unary(&g, op, &[7], xs, ys, 0.0, 0.0).unwrap();
    };
    run(UnaryOp::Exp);
    run(UnaryOp::Tanh);
    let n = g.pipeline_count();
    for _ in 0..5 {
        run(UnaryOp::Exp);
        run(UnaryOp::Tanh);
    }
    assert_eq!(
        g.pipeline_count(),
        n,
        "repeat launches compiled new pipelines"
    );
}

#[test]
fn large_dispatch_uses_a_2d_grid() {
    // 20M elements -> 78,125 workgroups of 256: more than 65,535 in one dimension.
    let g = gpu();
    let n = 20_000_000;
    let x = g.alloc(4 * n as u64, "x").unwrap();
    ek::fill(&g, &[n], Strided::contiguous(&x, &[n]), 1.5).unwrap();
    let sum = g.alloc(4, "sum").unwrap();
    let rows = Rows::contiguous(&x, 1, n);
    rk::reduce_rows(&g, ReduceOp::Sum, ReduceStrategy::Auto, rows, &sum, 0, 1.0).unwrap();
    let s = read(&g, &sum, 1)[0];
    assert!(
        (s - 1.5 * n as f32).abs() / (1.5 * n as f32) < 1e-4,
        "sum {s}"
    );
    let y = g.alloc(4 * n as u64, "y").unwrap();
    affine(&g, n, &x, &y, 1.0, 1.0);
    assert_eq!(read_at::<f32>(&g, &y, n - 3, 3), vec![2.5, 2.5, 2.5]);
}

#[test]
fn adapter_listing_and_bad_selector() {
    let list = Gpu::adapters().unwrap();
    assert!(!list.is_empty());
    let e = Gpu::with_selector(Some("no-such-gpu-xyz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-such-gpu-xyz") && e.contains("available adapters"),
        "{e}"
    );
    let e = Gpu::with_selector(Some("99")).unwrap_err().to_string();
    assert!(e.contains("99"), "{e}");
    // Selecting by index 0 works.
    let g = Gpu::with_selector(Some("0")).unwrap();
    assert!(!g.info().name.is_empty());
}

#[test]
fn device_reports_real_limits_and_features() {
    let g = gpu();
    // Real adapter limits, not WebGPU's 128 MiB default binding size.
    let l = g.limits();
    assert!(l.max_storage_buffer_binding_size >= 128 << 20);
    assert_eq!(
        g.features() & !kiln_kernels::gpu::OPTIONAL_FEATURES,
        kiln_kernels::wgpu::Features::empty()
    );
}
