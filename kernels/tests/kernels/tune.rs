//! The autotuner: cache round trip, keys per adapter and driver, verified winners, corrupted
//! files, `KILN_TUNE=0`, untuned shapes, the shape recorder, and conv tuning (every candidate
//! configuration against the CPU twin, tune -> cache -> lookup, old-format entries; each looked-up
//! configuration run through its launcher). The shape recorder, fed by the ops, is tested in the
//! root crate's tests/ops/tune.rs.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{Tolerance, f64s, gpu, rand_vec, read, upload};
use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvConfig, ConvVariant, MAX_QUADS};
use kiln_kernels::launch::matmul::{
    self as mk, MatLayout, MatRef, MatmulConfig, MatmulDims, MatmulVariant,
};
use kiln_kernels::reference::conv as cpu;
use kiln_kernels::tune::{self, Choice, MatmulBucket, TuneCache, Tuner};

/// Tests that set KILN_TUNE / KILN_TUNE_CACHE hold this (the environment is process-wide).
static ENV: Mutex<()> = Mutex::new(());

/// A fresh path under the system temp folder.
fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-tune-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn set_env(k: &str, v: Option<&str>) {
    // SAFETY: every test that touches these variables holds ENV, and nothing else in this test
    // binary reads them concurrently.
    unsafe {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
}

fn dims(batch: usize, m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims { batch, m, n, k }
}

#[test]
fn buckets_round_up_and_keep_batch_and_transposes() {
    let d = dims(3, 5, 129, 64);
    let b = MatmulBucket::of(
        d,
        MatLayout::transposed(5, 64),
        MatLayout::contiguous(64, 129),
    );
    assert_eq!(b.key(), "m8n256k64:b8:tn");
    let one = MatmulBucket::of(
        dims(1, 1, 1, 1),
        MatLayout::contiguous(1, 1),
        MatLayout::contiguous(1, 1),
    );
    assert_eq!(one.key(), "m1n1k1:b1:nn");
    assert_eq!(
        tune::entry_key("matmul", &one.key(), "f16"),
        "matmul/m1n1k1:b1:nn/f16"
    );
}

#[test]
fn cache_round_trips_through_disk_atomically() {
    let path = temp_file("roundtrip.json");
    let mut c = TuneCache::empty(&path, "Adapter X", "driver 1.2");
    let choice = Choice {
        config: "vec4:8x8:bm8".into(),
        gflops: 25.5,
        default_gflops: 20.0,
    };
    c.insert("matmul/m64n64k64:b1:nn/f32".into(), choice.clone());
    c.save().unwrap();
    let back = TuneCache::load(&path, "Adapter X", "driver 1.2");
    assert_eq!(back.warning(), None);
    assert_eq!(back.entries(), c.entries());
    assert_eq!(back.get("matmul/m64n64k64:b1:nn/f32"), Some(&choice));
    // No temporary file is left beside it.
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("roundtrip.json.tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn entries_of_another_adapter_or_driver_are_ignored() {
    let path = temp_file("other.json");
    let mut c = TuneCache::empty(&path, "Adapter X", "driver 1.2");
    c.insert(
        "k".into(),
        Choice {
            config: "naive:16x16".into(),
            gflops: 1.0,
            default_gflops: 1.0,
        },
    );
    c.save().unwrap();
    for (adapter, driver) in [("Adapter Y", "driver 1.2"), ("Adapter X", "driver 1.3")] {
        let other = TuneCache::load(&path, adapter, driver);
        assert!(other.entries().is_empty());
        let w = other.warning().expect("a warning");
        assert!(w.contains("Adapter X") && w.contains("driver 1.2"), "{w}");
    }
    // The default file name carries the adapter and driver too.
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_file("dir");
    set_env(tune::CACHE_ENV, Some(dir.to_str().unwrap()));
    let g = gpu();
    let p = tune::default_path(&g).unwrap();
    set_env(tune::CACHE_ENV, None);
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    assert!(p.starts_with(&dir), "{p:?}");
    let first_word: String = g
        .info()
        .name
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect();
    assert!(
        name.starts_with("tune-") && name.contains(&first_word),
        "{name}"
    );
}

#[test]
fn corrupted_cache_is_ignored_with_a_warning() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let g = gpu();
    for (i, text) in ["{ not json", "[1, 2]", "{\"format\": 1, \"adapter\": 3}"]
        .iter()
        .enumerate()
    {
        let path = temp_file(&format!("corrupt{i}.json"));
        std::fs::write(&path, text).unwrap();
        let c = TuneCache::load(&path, &g.info().name, &tune::driver_of(&g));
        assert!(c.entries().is_empty());
        assert!(
            c.warning().unwrap().contains("ignoring"),
            "{:?}",
            c.warning()
        );
        // Lookups through it fall back to the default instead of panicking.
        set_env(tune::CACHE_ENV, Some(path.to_str().unwrap()));
        let d = dims(1, 8, 8, 8);
        let (a, b) = (MatLayout::contiguous(8, 8), MatLayout::contiguous(8, 8));
        let got = tune::matmul_choice(&g, d, a, b, false);
        set_env(tune::CACHE_ENV, None);
        assert_eq!(got, tune::matmul_default(false));
    }
}

/// A cache at a fresh path for this adapter whose only entry sends (64, 64, 64) to `cfg`.
fn cache_with(name: &str, cfg: MatmulConfig) -> PathBuf {
    let (a, b) = (MatLayout::contiguous(64, 64), MatLayout::contiguous(64, 64));
    let key = MatmulBucket::of(dims(1, 64, 64, 64), a, b).key();
    cache_holding(name, tune::entry_key("matmul", &key, "f32"), cfg.label())
}

/// A cache at a fresh path for this adapter whose only entry is `key` -> `config` (measured 2
/// GFLOP/s against 1 for the default).
fn cache_holding(name: &str, key: String, config: String) -> PathBuf {
    let g = gpu();
    let path = temp_file(name);
    let mut c = TuneCache::empty(&path, &g.info().name, &tune::driver_of(&g));
    let choice = Choice {
        config,
        gflops: 2.0,
        default_gflops: 1.0,
    };
    c.insert(key, choice);
    c.save().unwrap();
    path
}

#[test]
fn lookups_use_the_cache_unless_disabled_and_default_when_untuned() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let g = gpu();
    let cfg = MatmulConfig {
        wg: (8, 8),
        ..MatmulConfig::default_for(MatmulVariant::RegBlock)
    };
    let path = cache_with("lookup.json", cfg);
    set_env(tune::CACHE_ENV, Some(path.to_str().unwrap()));
    let (a, b) = (MatLayout::contiguous(60, 50), MatLayout::contiguous(50, 33));
    // 60 x 33 x 50 falls in the (64, 64, 64) bucket.
    let tuned = tune::matmul_choice(&g, dims(1, 60, 33, 50), a, b, false);
    let untuned = tune::matmul_choice(&g, dims(1, 200, 33, 50), a, b, false);
    let f16 = tune::matmul_choice(&g, dims(1, 60, 33, 50), a, b, true);
    set_env(tune::ENABLE_ENV, Some("0"));
    let disabled = tune::matmul_choice(&g, dims(1, 60, 33, 50), a, b, false);
    set_env(tune::ENABLE_ENV, None);
    set_env(tune::CACHE_ENV, None);
    // The looked-up rung stays correct (the ops run what the lookup returns).
    let (x, y) = (
        upload(&g, &vec![0.5; 60 * 50]),
        upload(&g, &vec![2.0; 50 * 33]),
    );
    let out = upload(&g, &vec![0.0; 60 * 33]);
    let (xr, yr) = (MatRef::new(&x, a), MatRef::new(&y, b));
    mk::matmul(&g, tuned, xr, yr, &out, 0, dims(1, 60, 33, 50)).unwrap();
    let prod = read(&g, &out, 60 * 33);
    assert_eq!(tuned, cfg);
    assert_eq!(untuned, tune::matmul_default(false));
    assert_eq!(f16, tune::matmul_default(true));
    assert_eq!(disabled, tune::matmul_default(false));
    assert!(prod.iter().all(|&v| v == 50.0), "{:?}", &prod[..4]);
}

#[test]
fn tuner_measures_verifies_caches_and_reuses() {
    let g = gpu();
    let path = temp_file("tuner.json");
    let mut t = Tuner::at(&g, &path);
    t.budget = Duration::from_millis(20);
    let d = dims(2, 33, 65, 17);
    let r = t.tune_matmul(d, false, true, false).unwrap();
    assert!(!r.cached);
    assert_eq!(r.key, "matmul/m64n128k32:b8:nt/f32");
    let winner = MatmulConfig::parse(&r.winner).expect("winner label parses");
    assert!(!winner.variant.f16_operands());
    assert!(r.gflops > 0.0 && r.default_gflops > 0.0, "{r:?}");
    // Several rungs and tile configurations were measured; the winner is the fastest one that
    // passed verification, and it agrees with the CPU twin.
    let measured = r.candidates.iter().filter(|(_, x)| x.is_ok()).count();
    assert!(measured >= 10, "{:?}", r.candidates);
    let best = r
        .candidates
        .iter()
        .filter_map(|(_, x)| x.as_ref().ok())
        .fold(0.0f64, |a, &b| a.max(b));
    assert_eq!(r.gflops, best);
    tune::verify_matmul(&g, winner, d, false, true).unwrap();
    t.save().unwrap();
    // A second tuner reads it back and does not measure again, unless forced.
    let mut again = Tuner::at(&g, &path);
    let r2 = again
        .tune_matmul(dims(2, 40, 100, 20), false, true, false)
        .unwrap();
    assert!(r2.cached);
    assert_eq!(r2.winner, r.winner);
    again.force = true;
    again.budget = Duration::from_millis(5);
    assert!(!again.tune_matmul(d, false, true, false).unwrap().cached);
}

#[test]
fn f16_buckets_try_only_f16_rungs() {
    let g = gpu();
    if !crate::common::skip::has_f16(&g, "tuner f16 buckets") {
        return;
    }
    let mut t = Tuner::at(&g, &temp_file("f16.json"));
    t.budget = Duration::from_millis(5);
    let r = t
        .tune_matmul(dims(1, 17, 9, 33), true, false, true)
        .unwrap();
    assert!(r.key.ends_with("/f16"), "{}", r.key);
    let w = MatmulConfig::parse(&r.winner).unwrap();
    assert!(w.variant.f16_operands(), "{}", r.winner);
    assert!(
        r.candidates
            .iter()
            .all(|(l, _)| l.starts_with("f16") || l.starts_with("coop"))
    );
}

#[test]
fn verification_rejects_a_rung_that_cannot_run() {
    let g = gpu();
    if g.has_coop_matrix_f16() {
        return;
    }
    let coop = MatmulConfig::default_for(MatmulVariant::Coop);
    let err = tune::verify_matmul(&g, coop, dims(1, 16, 16, 16), false, false).unwrap_err();
    assert!(err.contains("COOPERATIVE_MATRIX"), "{err}");
}

#[test]
fn conv_tuning_and_lookup() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let g = gpu();
    // 3 -> 5 channels: 1 quad of input channels, up to 2 of output channels.
    let s = Conv2dShape::new(3, 3, 5, (9, 11), (3, 3)).padded((1, 1));
    let path = temp_file("conv.json");
    set_env(tune::CACHE_ENV, Some(path.to_str().unwrap()));
    let mut t = Tuner::new(&g).unwrap();
    t.budget = Duration::from_millis(10);
    let r = t.tune_conv(&s).unwrap();
    assert!(
        !r.cached && r.gflops > 0.0 && r.default_gflops > 0.0,
        "{r:?}"
    );
    let labels: Vec<&str> = r.candidates.iter().map(|(l, _)| l.as_str()).collect();
    // Both rungs, each quads count of the implicit-GEMM passes, several split counts.
    for want in [
        "forward direct",
        "forward implicit_gemm:fq1",
        "forward implicit_gemm:fq2",
        "grad_input implicit_gemm:iq1",
        "grad_input direct",
    ] {
        assert!(labels.contains(&want), "{want} not in {labels:?}");
    }
    assert!(!labels.contains(&"forward implicit_gemm:fq3"), "{labels:?}");
    let splits = |rung: &str| {
        labels
            .iter()
            .filter(|l| l.starts_with(&format!("grad_weight {rung}")))
            .count()
    };
    assert!(
        splits("implicit_gemm") >= 4 && splits("direct") >= 2,
        "{labels:?}"
    );
    // The winner names its quads and splits, parses, runs and agrees with the CPU twin.
    let cfg = ConvConfig::parse(&r.winner).expect("winner label parses");
    assert!(r.winner.contains(":s"), "{}", r.winner);
    if cfg.variant == ConvVariant::ImplicitGemm {
        assert!(
            r.winner.contains(":fq") && r.winner.contains(":wq"),
            "{}",
            r.winner
        );
    }
    tune::verify_conv(&g, cfg, &s).unwrap();
    t.save().unwrap();
    let got = tune::conv_choice(&g, &s);
    // Another batch and size of the same bucket gets the same configuration.
    let same_bucket = tune::conv_choice(&g, &Conv2dShape { n: 4, h: 16, ..s });
    let other = tune::conv_choice(&g, &Conv2dShape { c_out: 6, ..s });
    // A second tuner finds it cached.
    let again = Tuner::new(&g).unwrap().tune_conv(&s).unwrap();
    set_env(tune::CACHE_ENV, None);
    assert_eq!(got, cfg);
    assert_eq!(same_bucket, cfg);
    assert_eq!(other, ConvConfig::default());
    assert!(again.cached && again.winner == r.winner, "{again:?}");
}

/// A cache at a fresh path for this adapter holding `config` for the bucket of `s`.
fn conv_cache_with(name: &str, s: &Conv2dShape, config: &str) -> PathBuf {
    let key = tune::entry_key("conv2d", &tune::conv_bucket(s), "f32");
    cache_holding(name, key, config.into())
}

#[test]
fn old_and_hand_written_conv_entries_load() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let g = gpu();
    let s = Conv2dShape::new(3, 7, 5, (7, 17), (3, 3)).padded((1, 1));
    // (entry, what conv_choice must return): an entry of the format before quads and splits
    // were tuned names only the rung, and gets its heuristics; a bad one gets the default.
    let full = ConvConfig {
        variant: ConvVariant::ImplicitGemm,
        fwd_quads: Some(1),
        input_quads: Some(3),
        weight_quads: Some(4),
        splits: Some(5),
    };
    let cases = [
        ("direct", ConvConfig::of(ConvVariant::Direct)),
        ("implicit_gemm", ConvConfig::default()),
        ("implicit_gemm:fq1:iq3:wq4:s5", full),
        ("implicit_gemm:fq9", ConvConfig::default()),
        ("regblock", ConvConfig::default()),
    ];
    let (x, w) = (rand_f32(3 * 7 * 7 * 17, 21), rand_f32(5 * 7 * 9, 22));
    let want = cpu::conv2d_forward(&s, &f64s(&x), &f64s(&w), None);
    let (gx, gw) = (upload(&g, &x), upload(&g, &w));
    let out_len = s.output_shape().iter().product::<usize>();
    for (i, (entry, expect)) in cases.into_iter().enumerate() {
        let path = conv_cache_with(&format!("conv-old{i}.json"), &s, entry);
        set_env(tune::CACHE_ENV, Some(path.to_str().unwrap()));
        let got = tune::conv_choice(&g, &s);
        // The entry's configuration, as the op runs it, stays correct.
        let out = upload(&g, &vec![0.0; out_len]);
        let ran = ck::conv2d_forward(&g, got, &s, &gx, &gw, None, &out);
        let out = ran.map(|()| read(&g, &out, out_len));
        // The tuner reports the entry as cached instead of failing on it.
        let cached = Tuner::new(&g).unwrap().tune_conv(&s).map(|r| r.cached);
        set_env(tune::CACHE_ENV, None);
        assert_eq!(got, expect, "entry {entry:?}");
        Tolerance::f32_dot(7 * 9).assert_close(
            &format!("conv2d with {entry:?}"),
            &out.unwrap(),
            &want,
        );
        assert!(cached.unwrap(), "entry {entry:?}");
    }
}

fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    rand_vec(n, seed, -1.0, 1.0)
}

/// Every configuration the tuner could try for `s` (and quads past the layer's channels, which
/// are legal too): each quads count 1..=4 in all three passes, each split candidate, both rungs.
fn conv_candidates(s: &Conv2dShape) -> Vec<ConvConfig> {
    let mut v = Vec::new();
    for variant in ConvVariant::ALL {
        let base = ConvConfig::of(variant);
        let splits = base.split_candidates(s);
        for (i, &n) in splits.iter().enumerate() {
            v.push(ConvConfig {
                splits: Some(n),
                ..base
            });
            if variant == ConvVariant::Direct {
                continue;
            }
            // Quads per pass, paired with the split counts in turn (the search is pass by pass:
            // each pass is independent of the others' quads).
            for q in 1..=MAX_QUADS {
                let wq = ConvConfig {
                    weight_quads: Some(q),
                    ..base
                };
                let wsplits = wq.split_candidates(s);
                v.push(ConvConfig {
                    fwd_quads: Some(q),
                    input_quads: Some(q),
                    weight_quads: Some(q),
                    splits: Some(wsplits[(i + q) % wsplits.len()]),
                    ..base
                });
            }
        }
    }
    v.dedup();
    v
}

/// Run all three passes of `cfg` on `s` (outputs pre-filled with a sentinel) and compare with
/// the CPU twin; the weight gradient also with the fused bias gradient on the implicit rung.
fn check_config(cfg: ConvConfig, s: &Conv2dShape, tag: &str) {
    let g = gpu();
    let sd = crate::common::seed(tag);
    let (xl, wl, yl) = (
        s.input_shape().iter().product::<usize>(),
        s.weight_shape().iter().product::<usize>(),
        s.output_shape().iter().product::<usize>(),
    );
    let (x, w, b, dy) = (
        rand_f32(xl, sd),
        rand_f32(wl, sd ^ 1),
        rand_f32(s.c_out, sd ^ 2),
        rand_f32(yl, sd ^ 3),
    );
    let up = |v: &[f32]| upload(&g, v);
    let sentinel = |n: usize| up(&vec![12345.0; n]);
    let read = |b: &kiln_kernels::GpuBuffer, n: usize| read(&g, b, n);
    let (gx, gw, gb, gdy) = (up(&x), up(&w), up(&b), up(&dy));
    let (out, dx, dw, db) = (sentinel(yl), sentinel(xl), sentinel(wl), sentinel(s.c_out));
    let what = format!("{} {tag} {s:?}", cfg.label());
    ck::conv2d_forward(&g, cfg, s, &gx, &gw, Some(&gb), &out).unwrap();
    ck::conv2d_grad_input(&g, cfg, s, &gw, &gdy, &dx).unwrap();
    let fused = cfg.variant == ConvVariant::ImplicitGemm;
    ck::conv2d_grad_weight_bias(&g, cfg, s, &gx, &gdy, &dw, fused.then_some(&db)).unwrap();
    let (x64, w64, b64, dy64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
    let [n, _, oh, ow] = s.output_shape();
    Tolerance::f32_dot(s.k_len() + 1).assert_close(
        &format!("{what} forward"),
        &read(&out, yl),
        &cpu::conv2d_forward(s, &x64, &w64, Some(&b64)),
    );
    Tolerance::f32_dot(s.c_out / s.groups * s.kh * s.kw).assert_close(
        &format!("{what} grad input"),
        &read(&dx, xl),
        &cpu::conv2d_grad_input(s, &w64, &dy64),
    );
    Tolerance::f32_dot(n * oh * ow).assert_close(
        &format!("{what} grad weight"),
        &read(&dw, wl),
        &cpu::conv2d_grad_weight(s, &x64, &dy64),
    );
    if fused {
        Tolerance::f32_dot(n * oh * ow).assert_close(
            &format!("{what} bias gradient"),
            &read(&db, s.c_out),
            &cpu::conv2d_grad_bias(s, &dy64),
        );
    }
}

#[test]
fn every_conv_candidate_matches_cpu_twin_at_awkward_shapes() {
    // (N, C_in, (H, W), C_out, K, stride, pad, dilation, groups)
    let cases = [
        (1, 1, (7, 7), 1, 1, 1, 0, 1, 1),
        (3, 3, (7, 17), 7, 3, 1, 1, 1, 1),
        (1, 7, (17, 7), 3, 5, 2, 1, 1, 1),
        (3, 7, (17, 17), 7, 3, 2, 0, 1, 1),
        (1, 3, (7, 7), 17, 5, 1, 1, 1, 1), // 17 output channels: past 4 quads
        (3, 6, (17, 7), 6, 3, 1, 1, 2, 3), // grouped, dilated
    ];
    for (i, &(n, c_in, (h, w), c_out, k, st, p, d, groups)) in cases.iter().enumerate() {
        let s = Conv2dShape {
            stride: (st, st),
            padding: (p, p),
            dilation: (d, d),
            groups,
            ..Conv2dShape::new(n, c_in, c_out, (h, w), (k, k))
        };
        assert_eq!(s.problem(), None);
        let cands = conv_candidates(&s);
        // Several split counts, and splits > 1 somewhere, for all but the tiniest shape.
        if i > 0 {
            assert!(cands.iter().any(|c| c.grad_weight_split(&s).0 > 1), "{s:?}");
        }
        for cfg in cands {
            check_config(cfg, &s, &format!("case {i}"));
        }
    }
}

#[test]
fn a_tuned_split_count_stays_legal_past_the_loop_limit() {
    // A config tuned on a small batch of the bucket asks for 1 split; on this shape the weight
    // gradient reduces over 2 * 200 * 200 = 80,000 terms, more than the 65,535 loop iterations
    // lavapipe runs per invocation, so the launcher must split anyway (or the sums come back
    // short).
    let s = Conv2dShape::new(2, 1, 2, (200, 200), (1, 1));
    for variant in ConvVariant::ALL {
        let cfg = ConvConfig {
            splits: Some(1),
            ..ConvConfig::of(variant)
        };
        let (splits, chunk) = cfg.grad_weight_split(&s);
        assert!(splits > 1 && chunk <= ck::CHUNK_MAX && splits * chunk >= 80_000);
        check_config(cfg, &s, "one split");
    }
}
