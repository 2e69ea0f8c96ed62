//! The upper rungs of the matmul ladder (subgroup, f16, cooperative matrix) and every tile
//! configuration the autotuner may pick, against the CPU twin in f64: awkward sizes, transposed
//! and padded operands, broadcast batches, K past lavapipe's 65,535-iteration loop limit. (`Tensor::matmul`
//! on f16 tensors: the root crate's tests/ops/matmul.rs.) A rung the adapter cannot run is skipped with the reason
//! printed.
//!
//! f16 tolerance table (operands uniform in [-1, 1), M x N = 33 x 17, against f64; measured on
//! lavapipe by `f16_rung_error_table`, which prints the worst error):
//!
//! | f16 rung compared with            | rel  | abs           | worst measured (K = 7 / 129 / 1024) |
//! |-----------------------------------|------|---------------|-------------------------------------|
//! | f64 on the f16-rounded operands   | 1e-4 | 2e-6 * K      | as the f32 rungs (f32 accumulation) |
//! | f64 on the original f32 operands  | 2e-3 | 1e-3 * sqrt K | 6.3e-4 / 2.6e-3 / 9.0e-3 (~0.25x)   |
//!
//! The second row is the cost of f16 storage: each term carries two roundings of relative
//! 2^-11, with random signs, so the error grows like sqrt(K).

use super::{awkward_sizes, check, dims, layout_cases, plain, upload_as};
use crate::common::{Tolerance, err_text, f64s, gpu, rand_vec, read, seed, skip};
use kiln_kernels::Gpu;
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulConfig, MatmulVariant};
use kiln_kernels::reference::matmul as cpu;

/// Whether `v` runs here. A rung the adapter lacks is a loud skip ([`skip`]: a failure under CI,
/// whose lavapipe has SUBGROUP and SHADER_F16). The cooperative-matrix rung, which no CI adapter
/// has, returns false quietly: `coop_rung_matches_cpu_twin_where_the_adapter_has_it` then checks
/// the launcher's clear refusal instead.
fn runs(g: &Gpu, v: MatmulVariant) -> bool {
    match v.available(g) {
        Ok(()) => true,
        Err(_) if v == MatmulVariant::Coop => false,
        Err(why) => {
            skip(
                &format!("the matmul {} rung", v.name()),
                &why,
                "an adapter with the feature (lavapipe has it: apt-get install -y mesa-vulkan-drivers)",
            );
            false
        }
    }
}

/// Awkward sizes, transposes, padding and broadcast batches for one rung's default config.
fn ladder_cases(v: MatmulVariant) {
    let cfg = MatmulConfig::default_for(v);
    for (m, n, k) in awkward_sizes() {
        let (a, b) = plain(m, n, k);
        check(cfg, dims(1, m, n, k), a, b, &format!("plain {m}x{n}x{k}"));
    }
    for (m, n, k) in [(7, 17, 129), (129, 7, 17), (65, 66, 67), (257, 3, 100)] {
        for (d, la, lb, tag) in layout_cases(m, n, k) {
            check(cfg, d, la, lb, &tag);
        }
        let (ac, bc) = plain(m, n, k);
        let t = format!("{m}x{n}x{k}");
        check(
            cfg,
            dims(3, m, n, k),
            ac.broadcast(),
            bc,
            &format!("A bcast {t}"),
        );
    }
}

#[test]
fn subgroup_rung_matches_cpu_twin() {
    if runs(&gpu(), MatmulVariant::Subgroup) {
        ladder_cases(MatmulVariant::Subgroup);
    }
}

#[test]
fn f16_rung_matches_cpu_twin() {
    if runs(&gpu(), MatmulVariant::F16) {
        ladder_cases(MatmulVariant::F16);
    }
}

#[test]
fn coop_rung_matches_cpu_twin_where_the_adapter_has_it() {
    let g = gpu();
    if runs(&g, MatmulVariant::Coop) {
        ladder_cases(MatmulVariant::Coop);
    } else {
        // Not runnable here: the launcher must refuse it clearly rather than dispatch.
        let buf = g.alloc(64, "coop").unwrap();
        let (a, b) = plain(2, 2, 2);
        let (ra, rb) = (MatRef::new(&buf, a), MatRef::new(&buf, b));
        let coop = MatmulVariant::Coop;
        let err = err_text(mk::matmul(&g, coop, ra, rb, &buf, 0, dims(1, 2, 2, 2)));
        assert!(err.contains("COOPERATIVE_MATRIX"), "{err}");
    }
}

#[test]
fn every_tile_config_matches_cpu_twin() {
    let g = gpu();
    for v in MatmulVariant::LADDER {
        if !runs(&g, v) {
            continue;
        }
        for cfg in MatmulConfig::candidates(v) {
            // Sizes that are not multiples of any tile, a batch, and a transposed B.
            for (batch, m, n, k) in [(1, 33, 129, 17), (2, 67, 5, 131)] {
                let (a, _) = plain(m, n, k);
                let bt = MatLayout::transposed(k, n);
                check(cfg, dims(batch, m, n, k), a, bt, "tile config");
                let (a, b) = plain(m, n, k);
                check(cfg, dims(batch, m, n, k), a, b, "tile config plain");
            }
        }
    }
}

#[test]
fn loop_rungs_handle_k_past_the_loop_limit() {
    // K = 70,000 > 65,535: the launcher's K chunks keep each invocation under lavapipe's limit.
    let g = gpu();
    let vec4_bm8 = MatmulConfig {
        rows: 8,
        ..MatmulConfig::default_for(MatmulVariant::Vec4)
    };
    let cfgs = [
        MatmulConfig::default_for(MatmulVariant::Subgroup),
        MatmulConfig::default_for(MatmulVariant::F16),
        vec4_bm8,
    ];
    for cfg in cfgs {
        if runs(&g, cfg.variant) {
            let (m, n, k) = (3, 5, 70_000);
            let (a, b) = plain(m, n, k);
            check(cfg, dims(1, m, n, k), a, b, "long K");
            check(
                cfg,
                dims(1, m, n, k),
                MatLayout::transposed(m, k),
                b,
                "long K, A^T",
            );
        }
    }
}

#[test]
fn f16_rung_error_table() {
    // The error of the f16 rung against f64 on the *unrounded* f32 operands: the rounding of each
    // operand to f16 (relative 2^-11) dominates. Printed so the module table can be re-measured.
    let g = gpu();
    if !runs(&g, MatmulVariant::F16) {
        return;
    }
    let cfg = MatmulConfig::default_for(MatmulVariant::F16);
    for k in [7, 129, 1024] {
        let (m, n) = (33, 17);
        let (la, lb) = plain(m, n, k);
        let a = rand_vec(m * k, seed("f16 a") + k as u64, -1.0, 1.0);
        let b = rand_vec(k * n, seed("f16 b") + k as u64, -1.0, 1.0);
        let ((ga, _), (gb, _)) = (upload_as(&g, &a, true), upload_as(&g, &b, true));
        let (gc, _) = upload_as(&g, &vec![0.0; m * n], false);
        let d = dims(1, m, n, k);
        let (ra, rb) = (MatRef::new(&ga, la), MatRef::new(&gb, lb));
        mk::matmul(&g, cfg, ra, rb, &gc, 0, d).unwrap();
        let got = read(&g, &gc, m * n);
        let want = cpu::matmul(&f64s(&a), la, &f64s(&b), lb, d);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&x, &y)| (x as f64 - y).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "f16 rung, K = {k}: worst |error| {worst:.2e} = {:.2} * 1e-3 * sqrt(K)",
            worst / (1e-3 * (k as f64).sqrt())
        );
        let tol = Tolerance::new(
            2e-3,
            1e-3 * (k as f64).sqrt(),
            "f16 operands (2 roundings of 2^-11 per term, random signs: ~sqrt K growth)",
        );
        tol.assert_close(&format!("f16 rung vs f32 operands, K = {k}"), &got, &want);
    }
}
