//! The memory ledger's accounting in the buffer pool: live and peak bytes per category, scopes
//! and retagging, the device-memory cap and its error, and dry runs (counted, never allocated).
//! Each test opens a private device so that counters are not shared with parallel tests.

use crate::common::*;
use kiln_kernels::KernelError;
use kiln_kernels::buffer_pool::size_class;
use kiln_kernels::memory::{self, Category};

#[test]
fn categories_count_live_and_peak_bytes_and_follow_retags() {
    let g = private_gpu();
    let s0 = g.memory_stats();
    assert_eq!(s0.live_total, 0, "a fresh device holds no pooled buffers");
    let w = {
        let _s = memory::scope(Category::Weights);
        g.alloc(10_000, "weights").unwrap()
    };
    let t = g.alloc(3_000, "temporary").unwrap();
    let a = g
        .alloc_as(5_000, "activation", Category::Activations)
        .unwrap();
    let (cw, ct, ca) = (size_class(10_000), size_class(3_000), size_class(5_000));
    let s = g.memory_stats();
    assert_eq!(s.live_of(Category::Weights), cw);
    assert_eq!(s.live_of(Category::Workspace), ct);
    assert_eq!(s.live_of(Category::Activations), ca);
    assert_eq!(s.live_total, cw + ct + ca);
    assert_eq!(s.live.iter().sum::<u64>(), s.live_total);
    assert_eq!(w.category(), Category::Weights);
    // A workspace buffer adopted as a gradient moves its bytes.
    t.set_category(Category::Gradients);
    let s = g.memory_stats();
    assert_eq!(s.live_of(Category::Workspace), 0);
    assert_eq!(s.live_of(Category::Gradients), ct);
    assert_eq!(s.peak_of(Category::Workspace), ct, "the peak remembers");
    drop(a);
    let s = g.memory_stats();
    assert_eq!(s.live_of(Category::Activations), 0);
    assert_eq!(s.peak_of(Category::Activations), ca);
    assert_eq!(s.peak_total, cw + ct + ca);
    g.reset_peak();
    let s = g.memory_stats();
    assert_eq!(s.peak_of(Category::Activations), 0);
    assert_eq!(s.peak_total, cw + ct);
    drop((w, t));
    assert_eq!(g.memory_stats().live_total, 0);
}

#[test]
fn the_cap_refuses_an_allocation_naming_it_and_what_is_live() {
    let g = private_gpu();
    g.set_max_memory(Some(64 << 10));
    let _w = g
        .alloc_as(40 << 10, "the weights", Category::Weights)
        .unwrap();
    let e = g
        .alloc(30 << 10, "tensor of shape [7680] (F32)")
        .expect_err("40 KiB + 30 KiB is over a 64 KiB cap");
    assert!(matches!(e, KernelError::OutOfMemory { .. }), "{e:?}");
    let msg = e.to_string();
    for says in [
        "tensor of shape [7680] (F32)",
        "32.00 KiB",
        "64.00 KiB cap",
        "weights 40.00 KiB",
        "--max-memory",
    ] {
        assert!(msg.contains(says), "the error should say {says:?}: {msg}");
    }
    // Under the cap still works; lifting the cap lets the big one through.
    drop(g.alloc(20 << 10, "fits").unwrap());
    g.set_max_memory(None);
    drop(g.alloc(30 << 10, "no cap").unwrap());
}

#[test]
fn the_cap_releases_cached_buffers_before_growing_past_it() {
    let g = private_gpu();
    let parked: Vec<_> = (0..4)
        .map(|_| g.alloc(10 << 10, "parked").unwrap())
        .collect();
    drop(parked);
    assert!(g.memory_stats().cached >= 40 << 10);
    g.set_max_memory(Some(48 << 10));
    let s = g.memory_stats();
    assert!(
        s.live_total + s.cached <= 48 << 10,
        "setting the cap trims the cache"
    );
    let _a = g.alloc(20 << 10, "a").unwrap();
    let _b = g.alloc(24 << 10, "b").unwrap();
    let s = g.memory_stats();
    assert!(s.live_total + s.cached <= 48 << 10, "{s:?}");
}

#[test]
fn a_dry_run_counts_allocations_without_making_them() {
    let g = private_gpu();
    let (_, _, _, fresh0) = g.pool_stats();
    g.set_dry_run(true);
    g.set_max_memory(Some(64 << 10));
    let x = g
        .alloc(1 << 20, "x")
        .expect("a dry run measures, it is not held to the cap");
    let y = g.alloc_as(3 << 20, "y", Category::Activations).unwrap();
    g.upload(&x, 0, &[1, 2, 3, 4]);
    assert_eq!(g.read(&x, 0, 8).unwrap(), vec![0; 8], "reads give zeros");
    let s = g.memory_stats();
    assert_eq!(s.live_total, size_class(1 << 20) + size_class(3 << 20));
    assert_eq!(s.live_of(Category::Activations), size_class(3 << 20));
    drop((x, y));
    let s = g.memory_stats();
    assert_eq!(
        (s.live_total, s.cached),
        (0, 0),
        "dry buffers are not cached"
    );
    g.set_dry_run(false);
    assert_eq!(g.memory_stats().cap, Some(64 << 10));
    let (_, _, _, fresh1) = g.pool_stats();
    assert!(
        fresh1 - fresh0 <= 1,
        "only the dry run's stand-in was created"
    );
}
