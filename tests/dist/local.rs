//! `dist::Local`: every collective against a plain sum on the host at awkward lengths, the byte
//! accounting of a ring, and failures (a stalled rank, a rank gone, mismatched calls) that end
//! in `Error::Distributed` instead of a hang.

use std::time::{Duration, Instant};

use crate::common::*;
use kiln::Error;
use kiln::dist::{Collective, Local};

/// Run `f(rank, handle)` on one thread per rank of a fresh group; results in rank order.
fn on_group<T: Send>(n: usize, timeout: Duration, f: impl Fn(usize, Local) -> T + Sync) -> Vec<T> {
    let group = Local::group(n, timeout).unwrap();
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = group
            .into_iter()
            .enumerate()
            .map(|(r, c)| s.spawn(move || f(r, c)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Rank `r`'s random input of `len` values.
fn input(r: usize, len: usize) -> Vec<f32> {
    rand_vec(len, seed(&format!("local-{r}-{len}")), -2.0, 2.0)
}

/// The plain elementwise sum of every rank's input.
fn host_sum(n: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    for r in 0..n {
        for (o, v) in out.iter_mut().zip(input(r, len)) {
            *o += v;
        }
    }
    out
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn every_collective_matches_the_host_sum_at_awkward_lengths() {
    for n in [1, 2, 3] {
        for len in [1, 7, 1000, 4099] {
            let out = on_group(n, LONG, |r, mut c| {
                let mut ar = input(r, len);
                c.all_reduce_sum(&mut ar).unwrap();
                let mut rs = vec![0.0; len];
                c.reduce_scatter_sum(&input(r, len * n), &mut rs).unwrap();
                let mut ag = vec![0.0; len * n];
                c.all_gather(&input(r, len), &mut ag).unwrap();
                let mut bc = input(r, len);
                c.broadcast(&mut bc, n - 1).unwrap();
                c.barrier().unwrap();
                (ar, rs, ag, bc, c.bytes_sent())
            });
            let full = host_sum(n, len * n);
            let gathered: Vec<f32> = (0..n).flat_map(|r| input(r, len)).collect();
            for (r, (ar, rs, ag, bc, _)) in out.iter().enumerate() {
                let at = format!("n {n} len {len} rank {r}");
                close(ar, &host_sum(n, len), &format!("all_reduce {at}"));
                close(
                    rs,
                    &full[r * len..(r + 1) * len],
                    &format!("reduce_scatter {at}"),
                );
                assert_eq!(ag, &gathered, "all_gather {at}");
                assert_eq!(bc, &input(n - 1, len), "broadcast {at}");
            }
            // Ring accounting: 2(N-1)/N of the all-reduced buffer, (N-1)/N of the scattered
            // one, (N-1) shards gathered, and the broadcast forwarded by all but the last.
            let (n64, b) = (n as u64, 4 * len as u64);
            for (r, o) in out.iter().enumerate() {
                let bcast = if r == (2 * n - 2) % n { 0 } else { b };
                let want = 2 * (n64 - 1) * b / n64 + (n64 - 1) * b + (n64 - 1) * b + bcast;
                assert_eq!(o.4, want, "bytes sent by rank {r} of {n}, len {len}");
            }
        }
    }
}

#[test]
fn a_stalled_rank_gives_the_others_an_error_naming_the_op() {
    let t0 = Instant::now();
    let out = on_group(3, Duration::from_millis(300), |r, mut c| {
        if r == 2 {
            std::thread::sleep(Duration::from_millis(1500)); // stalls past the timeout
            let mut v = vec![1.0; 5];
            return c.all_reduce_sum(&mut v).map_err(|e| e.to_string());
        }
        let mut v = vec![1.0; 5];
        c.all_reduce_sum(&mut v).map_err(|e| e.to_string())
    });
    assert!(t0.elapsed() < Duration::from_secs(10), "no hang");
    for (r, o) in out.iter().enumerate() {
        let msg = o.as_ref().expect_err("every rank fails");
        assert!(msg.contains("all_reduce_sum"), "rank {r}: {msg}");
    }
    assert!(out[0].as_ref().unwrap_err().contains("[2]"), "{:?}", out[0]);
}

#[test]
fn a_rank_that_leaves_breaks_the_group_at_once() {
    let t0 = Instant::now();
    let out = on_group(2, LONG, |r, mut c| {
        if r == 1 {
            std::thread::sleep(Duration::from_millis(100));
            drop(c); // its thread failed before the collective
            return Ok(());
        }
        c.barrier()
    });
    let err = out[0].as_ref().expect_err("rank 0 fails");
    assert!(matches!(err, Error::Distributed(_)), "{err}");
    assert!(err.to_string().contains("barrier"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "failed fast, not at the timeout"
    );
}

#[test]
fn mismatched_calls_are_errors_on_every_rank() {
    let out = on_group(2, LONG, |r, mut c| {
        let mut v = vec![0.0; 4 + r];
        c.all_reduce_sum(&mut v).map_err(|e| e.to_string())
    });
    for o in &out {
        let msg = o.as_ref().expect_err("mismatch");
        assert!(
            msg.contains("all_reduce_sum of 4 values") && msg.contains("5"),
            "{msg}"
        );
    }
    assert!(Local::group(0, LONG).is_err());
}
