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

use crate::common::{Tolerance, gpu, rand_vec, read, seed, skip};
use kiln_kernels::launch::matmul::{
    self as mk, MatLayout, MatRef, MatmulConfig, MatmulDims, MatmulVariant,
};
use kiln_kernels::reference::matmul as cpu;
use kiln_kernels::{Gpu, GpuBuffer};

const SENTINEL: f32 = 12345.0;

/// Upload `v` as f32, or rounded to f16 for f16 rungs; returns the buffer and the values the GPU
/// sees, in f64.
fn upload(g: &Gpu, v: &[f32], f16: bool) -> (GpuBuffer, Vec<f64>) {
    if f16 {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        let buf = g
            .alloc((2 * h.len() as u64).next_multiple_of(4), "test f16")
            .unwrap();
        let mut bytes = bytemuck::cast_slice::<half::f16, u8>(&h).to_vec();
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        g.upload(&buf, 0, &bytes);
        (buf, h.iter().map(|x| x.to_f64()).collect())
    } else {
        let buf = g.alloc(4 * v.len() as u64, "test f32").unwrap();
        g.upload(&buf, 0, bytemuck::cast_slice(v));
        (buf, v.iter().map(|&x| x as f64).collect())
    }
}

/// Storage of `len` elements with a random (batch, rows, cols) stack where `l` points and NaN
/// elsewhere (a kernel reading outside the view poisons its output).
fn operand(len: usize, l: MatLayout, (b, r, c): (usize, usize, usize), s: u64) -> Vec<f32> {
    let vals = rand_vec(b * r * c, s, -1.0, 1.0);
    let mut data = vec![f32::NAN; len];
    let mut it = vals.into_iter();
    for z in 0..b {
        for i in 0..r {
            for j in 0..c {
                data[l.offset + z * l.batch_stride + i * l.row_stride + j * l.col_stride] =
                    it.next().unwrap();
            }
        }
    }
    data
}

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

/// Run `cfg` on random operands laid out by `la` / `lb`, compare with the CPU twin on the values
/// the GPU saw, and check that nothing outside C was written.
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
    let ((ga, a64), (gb, b64)) = (upload(&g, &a, f16), upload(&g, &b, f16));
    let (off, len) = (3, batch * m * n);
    let total = off + len + 5;
    let (gc, _) = upload(&g, &vec![SENTINEL; total], false);
    mk::matmul_config(
        &g,
        cfg,
        MatRef::new(&ga, la),
        MatRef::new(&gb, lb),
        &gc,
        off,
        dims,
    )
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
        &format!("{what}: outside C"),
        &outside,
        &vec![SENTINEL; outside.len()],
    );
}

fn dims(batch: usize, m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims { batch, m, n, k }
}

fn plain(m: usize, n: usize, k: usize) -> (MatLayout, MatLayout) {
    (MatLayout::contiguous(m, k), MatLayout::contiguous(k, n))
}

/// Awkward sizes, transposes, padding and broadcast batches for one rung's default config.
fn ladder_cases(v: MatmulVariant) {
    let cfg = MatmulConfig::default_for(v);
    let sizes = [1, 7, 17, 129];
    for &m in &sizes {
        for &n in &sizes {
            for &k in &sizes {
                let (a, b) = plain(m, n, k);
                check(cfg, dims(1, m, n, k), a, b, &format!("plain {m}x{n}x{k}"));
            }
        }
    }
    for (m, n, k) in [(7, 17, 129), (129, 7, 17), (65, 66, 67), (257, 3, 100)] {
        let t = format!("{m}x{n}x{k}");
        let (at, bt) = (MatLayout::transposed(m, k), MatLayout::transposed(k, n));
        let (ac, bc) = plain(m, n, k);
        check(cfg, dims(1, m, n, k), at, bc, &format!("A^T {t}"));
        check(cfg, dims(1, m, n, k), ac, bt, &format!("B^T {t}"));
        check(cfg, dims(2, m, n, k), at, bt, &format!("A^T B^T {t}"));
        let ap = MatLayout {
            offset: 5,
            batch_stride: m * (k + 3) + 2,
            row_stride: k + 3,
            col_stride: 1,
        };
        let bp = MatLayout {
            offset: 11,
            batch_stride: 0,
            row_stride: 2,
            col_stride: 2 * k + 1,
        };
        check(cfg, dims(3, m, n, k), ap, bp, &format!("padded {t}"));
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
        let err = mk::matmul(
            &g,
            MatmulVariant::Coop,
            MatRef::new(&buf, a),
            MatRef::new(&buf, b),
            &buf,
            0,
            dims(1, 2, 2, 2),
        )
        .unwrap_err()
        .to_string();
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
        let ((ga, _), (gb, _)) = (upload(&g, &a, true), upload(&g, &b, true));
        let (gc, _) = upload(&g, &vec![0.0; m * n], false);
        let d = dims(1, m, n, k);
        mk::matmul_config(
            &g,
            cfg,
            MatRef::new(&ga, la),
            MatRef::new(&gb, lb),
            &gc,
            0,
            d,
        )
        .unwrap();
        let got = read(&g, &gc, m * n);
        let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
        let want = cpu::matmul(&a64, la, &b64, lb, d);
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
