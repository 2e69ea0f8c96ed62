//! The runtime: buffer pool reuse and accounting, batched submission, pipeline cache, adapters.

use crate::common;

use common::*;
use kiln::Tensor;

#[test]
fn pool_reuses_freed_buffers_and_counts_bytes() {
    let g = private_gpu();
    let (_, _, _, allocs0) = g.pool_stats();
    for _ in 0..20 {
        let t = Tensor::zeros_on(&g, &[1000, 37]).unwrap(); // same size class every time
        drop(t);
    }
    let (_, _, cached, allocs1) = g.pool_stats();
    assert!(
        allocs1 - allocs0 <= 1,
        "20 same-size tensors made {} fresh buffers",
        allocs1 - allocs0
    );
    assert!(cached >= 148_000);
    let before = g.live_bytes();
    let t = Tensor::zeros_on(&g, &[256, 256]).unwrap();
    assert!(g.live_bytes() >= before + 256 * 256 * 4);
    assert!(g.peak_bytes() >= g.live_bytes());
    drop(t);
    assert_eq!(g.live_bytes(), before);
}

#[test]
fn reused_buffer_uploads_do_not_overtake_pending_reads() {
    // A buffer freed while a recorded (unsubmitted) kernel still reads it, then reused for an
    // upload, must not have the upload land before that kernel runs.
    let g = gpu();
    for i in 0..20 {
        let a = Tensor::full_on(&g, &[4096], i as f32).unwrap();
        let b = a.mul_scalar(2.0).unwrap(); // recorded, reads a
        drop(a); // a's buffer back in the pool
        let c = Tensor::from_slice_on(&g, &vec![-1.0f32; 4096], &[4096]).unwrap(); // may reuse it
        let bv = b.to_vec::<f32>().unwrap();
        assert!(
            bv.iter().all(|&v| v == 2.0 * i as f32),
            "iteration {i}: got {}",
            bv[0]
        );
        assert_eq!(c.to_vec::<f32>().unwrap()[0], -1.0);
    }
}

#[test]
fn launches_are_batched_not_synced_per_op() {
    let g = private_gpu();
    g.sync().unwrap();
    let s0 = g.encoder_stats();
    let mut x = Tensor::ones_on(&g, &[1024]).unwrap();
    for _ in 0..200 {
        x = x.mul_scalar(1.001).unwrap();
    }
    let s1 = g.encoder_stats();
    assert!(s1.total_dispatches - s0.total_dispatches >= 200);
    assert!(
        s1.submitted_batches - s0.submitted_batches <= 1,
        "200 ops caused {} submissions",
        s1.submitted_batches - s0.submitted_batches
    );
    let v = x.to_vec::<f32>().unwrap()[0];
    assert!((v - 1.001f32.powi(200)).abs() < 1e-3);
}

#[test]
fn pipelines_are_cached_by_specialisation() {
    let g = private_gpu();
    let x = Tensor::ones_on(&g, &[7]).unwrap();
    x.exp().unwrap();
    x.tanh().unwrap();
    let n = g.pipeline_count();
    for _ in 0..5 {
        x.exp().unwrap();
        x.tanh().unwrap();
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
    let x = Tensor::full_on(&g, &[n], 1.5).unwrap();
    let s = x.sum().unwrap().item().unwrap();
    assert!(
        (s - 1.5 * n as f32).abs() / (1.5 * n as f32) < 1e-4,
        "sum {s}"
    );
    let y = x.add_scalar(1.0).unwrap();
    let v = y.narrow(0, n - 3, 3).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(v, vec![2.5, 2.5, 2.5]);
}

#[test]
fn adapter_listing_and_bad_selector() {
    let list = kiln::Gpu::adapters().unwrap();
    assert!(!list.is_empty());
    let e = kiln::Gpu::with_selector(Some("no-such-gpu-xyz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-such-gpu-xyz") && e.contains("available adapters"),
        "{e}"
    );
    let e = kiln::Gpu::with_selector(Some("99"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("99"), "{e}");
    // Selecting by index 0 works.
    let g = kiln::Gpu::with_selector(Some("0")).unwrap();
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
