//! The vec4 Adam entry (`optim.wgsl:adam4`, 4 elements per invocation) against the CPU twin:
//! sizes that are multiples of 4 but of no workgroup, at aligned non-zero offsets, plus the
//! sizes and offsets that must fall back to the scalar entry. (`tests/optim.rs` covers the
//! scalar entry with misaligned offsets.)

mod common;

use common::*;
use kiln::Tensor;
use kiln_kernels::Operand;
use kiln_kernels::launch::optim::{self as k, AdamStep};
use kiln_kernels::reference::optim as twin;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn adam_vec4_matches_cpu_twin() {
    let g = gpu();
    // (n, offsets of p, grad, m, v): aligned cases take adam4, the others adam.
    let cases: &[(usize, [usize; 4], bool)] = &[
        (4, [0, 4, 8, 12], true),
        (68, [4, 0, 12, 8], true),
        (516, [8, 4, 0, 4], true),
        (70_004, [4, 8, 12, 0], true),
        // 65,537 vec4 invocations: the last workgroup holds one.
        (262_148, [0, 0, 0, 0], true),
        (7, [0, 4, 8, 12], false),
        (129, [4, 0, 0, 0], false),
        (68, [2, 0, 0, 0], false),
    ];
    for &(n, offs, vec4) in cases {
        let s = seed(&format!("adam4 {n} {offs:?}"));
        let p0 = rand_vec(n, s, -1.0, 1.0);
        let gr = rand_signed_away_from_zero(n, s + 1, 0.05, 1.0);
        let m0 = rand_vec(n, s + 2, -0.5, 0.5);
        let v0 = rand_vec(n, s + 3, 0.01, 0.5);
        let at = |data: &[f32], pad: usize| {
            let mut v = rand_vec(pad, s + 9, -1.0, 1.0);
            v.extend_from_slice(data);
            v.extend(rand_vec(5, s + 10, -1.0, 1.0));
            tensor(&v, &[pad + n + 5])
        };
        let [po, go, mo, vo] = offs;
        let (p, gt, m, v) = (at(&p0, po), at(&gr, go), at(&m0, mo), at(&v0, vo));
        let spans = [(&p, po), (&gt, go), (&m, mo), (&v, vo)]
            .map(|(t, o)| Operand::new(t.kernel_view().buf, o));
        assert_eq!(
            k::adam_vec4_ok(n, &spans.iter().collect::<Vec<_>>()),
            vec4,
            "n {n} offsets {offs:?}"
        );
        for decoupled in [false, true] {
            let (bc1, bc2) = AdamStep::bias_corrections(0.9, 0.999, 2);
            let h = AdamStep {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05,
                decoupled,
                bc1,
                bc2,
            };
            let before: Vec<Vec<f32>> = [&p, &gt, &m, &v]
                .iter()
                .map(|t| t.to_vec::<f32>().unwrap())
                .collect();
            k::adam(&g, &h, n, spans[0], spans[1], spans[2], spans[3]).unwrap();
            let (mut wp, mut wm, mut wv) = (
                f64s(&before[0][po..po + n]),
                f64s(&before[2][mo..mo + n]),
                f64s(&before[3][vo..vo + n]),
            );
            twin::adam(&h, &mut wp, &f64s(&before[1][go..go + n]), &mut wm, &mut wv);
            let what = format!("adam n={n} offsets {offs:?} decoupled={decoupled}");
            let read = |t: &Tensor| t.to_vec::<f32>().unwrap();
            let (rp, rm, rv) = (read(&p), read(&m), read(&v));
            Tolerance::F32_TRANSCENDENTAL.assert_close(&what, &rp[po..po + n], &wp);
            let tol = Tolerance::F32_ELEMENTWISE;
            tol.assert_close(&format!("{what} exp_avg"), &rm[mo..mo + n], &wm);
            tol.assert_close(&format!("{what} exp_avg_sq"), &rv[vo..vo + n], &wv);
            // Nothing outside the spans moves.
            for (name, got, was, o) in [("p", &rp, &before[0], po), ("m", &rm, &before[2], mo)] {
                assert_eq!(got[..o], was[..o], "{what}: {name} before the span");
                assert_eq!(got[o + n..], was[o + n..], "{what}: {name} after the span");
            }
        }
    }
}
