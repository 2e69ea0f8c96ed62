//! Fused scaled-dot-product attention launchers (`shaders/attention/`): every rung's forward
//! (O and the saved log-sum-exp rows) and backward against the f64 CPU twin at awkward Tq / Tk /
//! D, with causal (end-aligned) and key-padding masks, whole and chunked over dispatches (the
//! lavapipe loop limit), the tiled rung's fallbacks, and the tuner's check of every rung. The op
//! (autograd, the composed version, gradient checks, views, errors, memory) is the root crate's
//! `tests/ops/attention.rs`.

mod case;

use crate::common::*;
use AttnVariant::{Block, Panel, Row};
pub use case::*;
use kiln_kernels::launch::attention::{self as ak, AttnConfig, AttnTiles, AttnVariant};

/// Forward O and L of every rung in [`configs`] against the twin.
fn check_forward(c: &Case) {
    let (want_o, want_l) = c.cpu_forward();
    for cfg in configs() {
        let got = run_kernels(c, cfg, 0, None);
        let name = format!("{} {}", cfg.name(), c.name());
        FWD.assert_close(&format!("O {name}"), &got[0], &want_o);
        FWD.assert_close(&format!("L {name}"), &got[1], &want_l);
    }
}

/// `(rung, chunk)` pairs to run: the `plain` rungs at their chunk lengths, then each of
/// [`configs`] from `from` on whole (chunk 0) and at `chunk`.
fn chunked(plain: &[(AttnVariant, usize)], from: usize, chunk: usize) -> Vec<(AttnConfig, usize)> {
    let plain = plain.iter().map(|&(v, n)| (AttnConfig::of(v), n));
    let rest = configs().into_iter().skip(from);
    let rest = rest.flat_map(|t| [(t, 0), (t, chunk)]);
    plain.chain(rest).collect()
}

#[test]
fn forward_rungs_match_cpu_twin_at_awkward_sizes() {
    for c in grid_cases(9) {
        check_forward(&c);
    }
    // End-aligned causal masks: Tq = 3, Tk = 5 (query i sees keys j <= i + 2), and Tq > Tk (the
    // first Tq - Tk queries see nothing).
    check_forward(&Case::new(1, 1, 3, 5, 16, true, false));
    check_forward(&Case::new(1, 1, 5, 3, 16, true, false));
    // Batch 1 masks every key: its rows output 0.
    let mut c = Case::new(2, 2, 4, 6, 16, false, true);
    c.keep.as_mut().unwrap()[6..]
        .iter_mut()
        .for_each(|x| *x = 0.0);
    check_forward(&c);
}

#[test]
fn backward_rungs_match_cpu_twin() {
    // Every rung of the backward (row, block, panel, tiled kernels), whole and chunked, at sizes
    // that are not multiples of the block kernels' 4 rows nor the panel's 16.
    for &(b, h, tq, tk, d, causal, mask) in &[
        (1, 1, 1, 1, 4, false, false),
        (2, 1, 7, 5, 8, true, true),
        (1, 2, 5, 11, 12, false, true),
        (2, 2, 17, 9, 16, true, false),
        (1, 1, 9, 17, 32, true, true),
        (1, 3, 33, 30, 4, true, true),
    ] {
        let c = Case::new(b, h, tq, tk, d, causal, mask);
        let dout = rand_vec(b * h * tq * d, seed(&c.name()) ^ 7, -1.0, 1.0);
        let (dq, dk, dv) = c.cpu_backward(&dout);
        let plain = [(Row, 0), (Block, 0), (Row, 3), (Block, 4)];
        for (cfg, chunk) in chunked(&plain, 2, 9) {
            let got = run_kernels(&c, cfg, chunk, Some(&dout));
            for (n, want) in [&dq, &dk, &dv].iter().enumerate() {
                let which = ["dq", "dk", "dv"][n];
                let what = format!("{which} {} chunk {chunk} vs twin {}", cfg.name(), c.name());
                GRAD.assert_close(&what, &got[n + 2], want);
            }
        }
    }
}

#[test]
fn loop_limit_is_chunked_over_dispatches() {
    // D = 64: one key costs 129 loop iterations, so 1000 keys per invocation would pass
    // lavapipe's 65,535 and silently stop early; the launcher splits them into chunks.
    assert!(1000 * (2 * 64 + 1) > 65_535 && ak::chunk_len(64) < 1000);
    check_forward(&Case::new(1, 1, 3, 1000, 64, false, true));
    // The block backward walks 8 rows per step (2 D / 4 + 1 iterations unless the driver unrolls
    // the loops over D / 4): at D = 128 past ~8,000 rows.
    assert!(ak::chunk_len_block(128) < 9000 && 9000 / 8 * (2 * 128 / 4 + 1) > 65_535);
    // The tiled kernels: a tile of BC rows costs BC / 4 steps of 2 D / 4 + 12 iterations plus
    // its copy; 9000 rows at D = 128 are ~5x the budget in one dispatch, forward, dQ and dK / dV.
    let tiled = AttnConfig::of(AttnVariant::Tiled);
    assert!(ak::chunk_len_tiled(128, tiled.tiles) < 9000);
    let c = Case::new(1, 1, 5, 9000, 128, true, true);
    check_launcher_vs_twin(&c, tiled, 0);
    check_launcher_vs_twin(&Case::new(1, 1, 9000, 5, 128, false, true), tiled, 0);
    // The panel forward walks 16 keys per step within the block rung's chunk length.
    let panel = AttnConfig::of(AttnVariant::Panel);
    check_launcher_vs_twin(&Case::new(1, 1, 5, 9000, 128, true, true), panel, 0);
    // Many small chunks (forced) give the same result as one.
    let c = Case::new(1, 2, 17, 29, 32, true, true);
    let dout = rand_vec(2 * 17 * 32, 5, -1.0, 1.0);
    let run = |cfg: AttnConfig, chunk: usize| run_kernels(&c, cfg, chunk, Some(&dout));
    let one = run(AttnConfig::of(Row), 0);
    let plain = [(Row, 3), (Block, 0), (Block, 5), (Panel, 0), (Panel, 5)];
    for (cfg, chunk) in chunked(&plain, 3, 5) {
        let many = run(cfg, chunk);
        for n in 0..5 {
            let what = format!(
                "{} chunk {chunk} vs row in one chunk, output {n}",
                cfg.name()
            );
            FWD.assert_close(&what, &many[n], &one[n]);
        }
    }
}

#[test]
fn tiled_matches_cpu_twin_at_awkward_sizes() {
    // The panel rung and the flash-attention tiles (default and small) at T in {1, 7, 129, 257},
    // D in {16, 32, 64}, causal and key-masked, B and H > 1, forward and all three gradients.
    for c in grid_cases(10) {
        for cfg in &configs()[2..] {
            check_launcher_vs_twin(&c, *cfg, 0);
        }
    }
}

#[test]
fn tiled_falls_back_where_it_does_not_apply() {
    // D % 4 != 0 runs the row kernels; tiles too big for the workgroup memory shrink.
    let c = Case::new(1, 2, 9, 11, 6, true, true);
    check_launcher_vs_twin(&c, AttnConfig::of(AttnVariant::Tiled), 0);
    let g = gpu();
    let huge = AttnTiles {
        wg: 16,
        bc: 1 << 20,
    };
    let fitted = huge.fitted(&g, 128).expect("some tile fits");
    assert!(fitted.bc < huge.bc);
    let limit = g.limits().max_compute_workgroup_storage_size;
    assert!(fitted.shared_bytes(128) <= limit as u64);
    eprintln!(
        "workgroup memory limit {limit} bytes: tiles at D 128 shrink to BC {}",
        fitted.bc
    );
    let tiled = AttnConfig {
        variant: AttnVariant::Tiled,
        tiles: huge,
    };
    check_launcher_vs_twin(&Case::new(1, 1, 33, 70, 128, false, true), tiled, 0);
    // Parse and name round-trip, as the tuner's cache stores them.
    for cfg in AttnConfig::candidates() {
        assert_eq!(AttnConfig::parse(&cfg.name()), Some(cfg));
    }
    assert_eq!(AttnConfig::parse("tiled:wg16:bc3"), None);
}

#[test]
fn tuner_times_the_rungs_and_verifies_the_winner() {
    // Every rung passes the tuner's own check against the CPU twin (masked, causal, awkward T);
    // then one bucket is tuned into a private cache file: the winner is one of the candidates,
    // verified, and stored under the attention bucket key.
    let g = gpu();
    let s = Case::new(1, 2, 67, 67, 32, true, false).s;
    for cfg in AttnConfig::candidates() {
        kiln_kernels::tune::verify_attention(&g, cfg, &s)
            .unwrap_or_else(|e| panic!("{}: {e}", cfg.name()));
    }
    let path = std::env::temp_dir().join(format!("kiln-attn-tune-{}.json", std::process::id()));
    let mut t = kiln_kernels::tune::Tuner::at(&g, &path);
    t.budget = std::time::Duration::from_millis(5);
    let report = t.tune_attention(&s).unwrap();
    assert_eq!(report.key, "attention/t128d32c1/f32");
    let winner = AttnConfig::parse(&report.winner).expect("winner parses");
    assert!(AttnConfig::candidates().contains(&winner));
    assert!(report.gflops > 0.0 && report.default_gflops > 0.0);
    assert_eq!(report.candidates.len(), AttnConfig::candidates().len());
    t.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("attention/t128d32c1/f32"), "{text}");
    let _ = std::fs::remove_file(&path);
}
