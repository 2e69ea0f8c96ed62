//! Attention tests, continued: the later rungs and error cases.

use super::*;

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
        let keep = c.keep.as_deref().map(f64s);
        let (dq, dk, dv) = cpu::backward(
            &c.s,
            &f64s(&c.q),
            &f64s(&c.k),
            &f64s(&c.v),
            keep.as_deref(),
            &f64s(&dout),
        );
        let mut cases: Vec<(AttnConfig, usize)> = vec![
            (AttnConfig::of(AttnVariant::Row), 0),
            (AttnConfig::of(AttnVariant::Block), 0),
            (AttnConfig::of(AttnVariant::Row), 3),
            (AttnConfig::of(AttnVariant::Block), 4),
        ];
        cases.extend(configs()[2..].iter().flat_map(|&t| [(t, 0), (t, 9)]));
        for (cfg, chunk) in cases {
            let got = run_kernels(&c, cfg, chunk, &dout);
            for (n, want) in [dq.clone(), dk.clone(), dv.clone()].iter().enumerate() {
                GRAD.assert_close(
                    &format!(
                        "{} {} chunk {chunk} vs twin {}",
                        ["dq", "dk", "dv"][n],
                        cfg.name(),
                        c.name()
                    ),
                    &got[n + 2],
                    want,
                );
            }
        }
    }
}

#[test]
fn views_and_large_head_sizes() {
    // q, k, v as (B, T, H, D) transposed to (B, H, T, D): non-contiguous views, as a
    // multi-head layer makes them.
    let c = Case::new(2, 3, 7, 7, 16, true, false);
    let (q, k, v, opts) = c.tensors();
    let want = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let view = |t: &Tensor| {
        t.transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    };
    let (qv, kv, vv) = (view(&q), view(&k), view(&v));
    assert!(!qv.is_contiguous());
    let got = scaled_dot_product_attention(&qv, &kv, &vv, &opts).unwrap();
    FWD.assert_close("views", &got.to_vec::<f32>().unwrap(), &want);
    got.sum().unwrap().backward().unwrap();
    assert_eq!(q.grad().unwrap().shape(), [2, 3, 7, 16]);
    // D above the kernels' MAX_D goes through the composition.
    check_forward_op_only(&Case::new(1, 1, 5, 6, 130, true, true));
}

fn check_forward_op_only(c: &Case) {
    let (q, k, v, opts) = c.tensors();
    let o = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
    FWD.assert_close(&c.name(), &o.to_vec::<f32>().unwrap(), &c.cpu_forward().0);
}

#[test]
fn shape_errors_name_the_shapes() {
    let t = |s: &[usize]| Tensor::zeros_on(&gpu(), s).unwrap();
    let o = AttentionOptions::default();
    let q = t(&[2, 3, 4, 8]);
    let cases: Vec<(Tensor, Tensor, AttentionOptions, &str)> = vec![
        (
            t(&[1, 3, 5, 8]),
            t(&[1, 3, 5, 8]),
            o.clone(),
            "[1, 3, 5, 8]",
        ),
        (
            t(&[2, 2, 5, 8]),
            t(&[2, 2, 5, 8]),
            o.clone(),
            "[2, 2, 5, 8]",
        ),
        (
            t(&[2, 3, 5, 4]),
            t(&[2, 3, 5, 4]),
            o.clone(),
            "[2, 3, 5, 4]",
        ),
        (
            t(&[2, 3, 5, 8]),
            t(&[2, 3, 6, 8]),
            o.clone(),
            "[2, 3, 6, 8]",
        ),
        (t(&[2, 3, 5]), t(&[2, 3, 5]), o.clone(), "[2, 3, 5]"),
        (
            t(&[2, 3, 5, 8]),
            t(&[2, 3, 5, 8]),
            AttentionOptions {
                key_padding_mask: Some(t(&[2, 4])),
                ..Default::default()
            },
            "[2, 4]",
        ),
    ];
    for (k, v, opts, needle) in cases {
        for composed in [false, true] {
            let r = if composed {
                attention_composed(&q, &k, &v, &opts)
            } else {
                scaled_dot_product_attention(&q, &k, &v, &opts)
            };
            let e = r.expect_err("bad shapes must fail").to_string();
            assert!(e.contains(needle), "error {e:?} should name {needle}");
        }
    }
}

/// Peak device bytes above the inputs of one forward + backward at sequence length `t`.
fn peak_bytes(fused: bool, t: usize) -> u64 {
    let g = private_gpu();
    let mk = |s: u64| {
        Tensor::from_slice_on(&g, &rand_vec(2 * t * 16, s, -1.0, 1.0), &[1, 2, t, 16])
            .unwrap()
            .requires_grad()
    };
    let (q, k, v) = (mk(1), mk(2), mk(3));
    g.sync().unwrap();
    let base = g.live_bytes();
    g.reset_peak();
    let opts = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let o = if fused {
        scaled_dot_product_attention(&q, &k, &v, &opts)
    } else {
        attention_composed(&q, &k, &v, &opts)
    };
    o.unwrap().sum().unwrap().backward().unwrap();
    g.sync().unwrap();
    g.peak_bytes() - base
}

#[test]
fn memory_grows_linearly_in_t() {
    let (f1, f2) = (peak_bytes(true, 256), peak_bytes(true, 512));
    let (c1, c2) = (peak_bytes(false, 256), peak_bytes(false, 512));
    let (rf, rc) = (f2 as f64 / f1 as f64, c2 as f64 / c1 as f64);
    assert!(
        rf < 2.5,
        "fused peak grew {rf:.2}x from T 256 to 512 ({f1} -> {f2} bytes)"
    );
    assert!(
        rc > 3.0,
        "composed peak grew only {rc:.2}x ({c1} -> {c2} bytes)"
    );
    assert!(
        f2 * 4 < c2,
        "fused {f2} bytes should be far below composed {c2} at T 512"
    );
}

/// Forward (O, L) and backward (dQ, dK, dV) of `cfg` through the launchers against the f64 twin.
pub(crate) fn check_launcher_vs_twin(c: &Case, cfg: AttnConfig, chunk: usize) {
    let s = &c.s;
    let dout = rand_vec(
        s.batch * s.heads * s.tq * s.d,
        seed(&c.name()) ^ 11,
        -1.0,
        1.0,
    );
    let keep = c.keep.as_deref().map(f64s);
    let (o, l) = c.cpu_forward();
    let (dq, dk, dv) = cpu::backward(
        s,
        &f64s(&c.q),
        &f64s(&c.k),
        &f64s(&c.v),
        keep.as_deref(),
        &f64s(&dout),
    );
    let got = run_kernels(c, cfg, chunk, &dout);
    let name = format!("{} chunk {chunk} {}", cfg.name(), c.name());
    FWD.assert_close(&format!("O {name}"), &got[0], &o);
    FWD.assert_close(&format!("L {name}"), &got[1], &l);
    for (n, want) in [dq, dk, dv].iter().enumerate() {
        let which = ["dq", "dk", "dv"][n];
        GRAD.assert_close(&format!("{which} {name}"), &got[n + 2], want);
    }
}

#[test]
fn tiled_matches_cpu_twin_at_awkward_sizes() {
    // The panel rung and the flash-attention tiles (default and small) at T in {1, 7, 129, 257},
    // D in {16, 32, 64}, causal and key-masked, B and H > 1, forward and all three gradients.
    let grid = [
        (1, 1, 16),
        (7, 7, 32),
        (129, 129, 64),
        (257, 257, 16),
        (1, 257, 32),
        (7, 129, 64),
        (129, 7, 16),
        (257, 129, 32),
        (129, 257, 64),
        (257, 257, 64),
    ];
    for (n, &(tq, tk, d)) in grid.iter().enumerate() {
        let causal = n.is_multiple_of(2);
        let mask = n % 3 != 1;
        let c = Case::new(2, 2, tq, tk, d, causal, mask);
        for cfg in &configs()[2..] {
            check_launcher_vs_twin(&c, *cfg, 0);
        }
    }
}

#[test]
fn tiled_op_gradients_match_composed() {
    // The op with the tiled rung forced through the tuner's cache is covered by the launcher
    // tests; here the tiled launchers' gradients of sum(O * w) against the composed op's autograd.
    for &(tq, tk, d, causal, mask) in &[
        (7, 7, 16, true, true),
        (129, 129, 32, true, false),
        (257, 257, 32, false, true),
    ] {
        let c = Case::new(2, 2, tq, tk, d, causal, mask);
        let s = &c.s;
        let w = rand_vec(
            s.batch * s.heads * s.tq * s.d,
            seed(&c.name()) ^ 9,
            0.5,
            1.5,
        );
        let (q, k, v, opts) = c.tensors();
        let wt = tensor(&w, &[s.batch, s.heads, s.tq, s.d]);
        let o = attention_composed(&q, &k, &v, &opts).unwrap();
        o.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        let composed = [&q, &k, &v].map(|t| t.grad().unwrap().to_vec::<f32>().unwrap());
        let got = run_kernels(&c, AttnConfig::of(AttnVariant::Tiled), 0, &w);
        FWD.assert_close(
            &format!("O tiled vs composed {}", c.name()),
            &got[0],
            &f64s(&o.to_vec::<f32>().unwrap()),
        );
        for n in 0..3 {
            GRAD.assert_close(
                &format!("{} tiled vs composed {}", ["dq", "dk", "dv"][n], c.name()),
                &got[n + 2],
                &f64s(&composed[n]),
            );
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
    assert!(fitted.shared_bytes(128) <= g.limits().max_compute_workgroup_storage_size as u64);
    eprintln!(
        "workgroup memory limit {} bytes: tiles at D 128 shrink to BC {}",
        g.limits().max_compute_workgroup_storage_size,
        fitted.bc
    );
    check_launcher_vs_twin(
        &Case::new(1, 1, 33, 70, 128, false, true),
        AttnConfig {
            variant: AttnVariant::Tiled,
            tiles: huge,
        },
        0,
    );
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
