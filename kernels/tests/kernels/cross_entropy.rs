//! The fused cross-entropy kernels (forward and backward, in `launch/softmax.rs`): both
//! strategies against the CPU twin at awkward sizes, with strided targets and upstream gradients.
//! The op against its composition, gradient checks and errors are the root crate's
//! tests/ops/cross_entropy.rs.

use crate::common::*;
use crate::softmax::{STRATEGIES, TOL};
use kiln_kernels::launch::cross_entropy as sk;
use kiln_kernels::launch::reduce::{ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::Vector;
use kiln_kernels::reference::cross_entropy as cpu;

#[test]
fn cross_entropy_kernels_match_cpu_in_both_strategies() {
    let g = gpu();
    for &n in &[1usize, 7, 17, 129] {
        for &c in &[1usize, 7, 17, 65, 257, 1000] {
            let x = rand_vec(n * c, seed(&format!("ce{n}x{c}")), -5.0, 5.0);
            let x64 = f64s(&x);
            let mut t = rand_indices(n, seed(&format!("cet{n}x{c}")), c as u32);
            // Targets stored at stride 2 after a 1-element gap; make sure both ends are used.
            t[0] = (c - 1) as u32;
            let mut ts = vec![u32::MAX; 1 + 2 * n];
            for (i, &v) in t.iter().enumerate() {
                ts[1 + 2 * i] = v;
            }
            let (xt, tt) = (upload(&g, &x), upload_u32(&g, &ts));
            let view = Rows::contiguous(&xt, n, c);
            let tv = Vector {
                buf: &tt,
                offset: 1,
                stride: 2,
            };
            let (want_loss, want_lse) = cpu::cross_entropy(&x64, &t, n, c);
            for strategy in STRATEGIES {
                let (loss, lse) = (
                    g.alloc(n as u64 * 4, "loss").unwrap(),
                    g.alloc(n as u64 * 4, "lse").unwrap(),
                );
                sk::cross_entropy_forward(&g, strategy, view, tv, &loss, &lse).unwrap();
                let what = format!("{strategy:?} ({n}, {c})");
                TOL.assert_close(&format!("loss {what}"), &read(&g, &loss, n), &want_loss);
                TOL.assert_close(&format!("lse {what}"), &read(&g, &lse, n), &want_lse);
            }
            // Backward with a per-row upstream gradient (stride 1) and a broadcast scalar (stride 0).
            let lse = g.alloc(n as u64 * 4, "lse").unwrap();
            let loss = g.alloc(n as u64 * 4, "loss").unwrap();
            sk::cross_entropy_forward(&g, ReduceStrategy::Auto, view, tv, &loss, &lse).unwrap();
            let gr = rand_vec(n, seed(&format!("ceg{n}x{c}")), 0.5, 1.5);
            let gt = upload(&g, &gr);
            for (stride, scale) in [(1usize, 1.0f32), (0, 1.0 / n as f32)] {
                let dx = g.alloc((n * c * 4) as u64, "dx").unwrap();
                let gv = Vector {
                    buf: &gt,
                    offset: 0,
                    stride,
                };
                sk::cross_entropy_backward(&g, view, tv, &lse, gv, scale, &dx).unwrap();
                let g64: Vec<f64> = (0..n).map(|i| gr[i * stride] as f64).collect();
                let want =
                    cpu::cross_entropy_backward(&x64, &t, &want_lse, &g64, scale as f64, n, c);
                TOL.assert_close(
                    &format!("dx stride {stride} ({n}, {c})"),
                    &read(&g, &dx, n * c),
                    &want,
                );
            }
        }
    }
}
