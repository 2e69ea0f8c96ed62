//! The autotuner: cache round trip, keys per adapter and driver, verified winners, corrupted
//! files, `KILN_TUNE=0`, untuned shapes, the shape recorder, and conv tuning.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::gpu;
use kiln::Tensor;
use kiln_kernels::launch::conv::{Conv2dShape, ConvVariant};
use kiln_kernels::launch::matmul::{MatLayout, MatmulConfig, MatmulDims, MatmulVariant};
use kiln_kernels::tune::{self, Choice, MatmulBucket, SeenShape, TuneCache, Tuner};

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
    let g = gpu();
    let path = temp_file(name);
    let mut c = TuneCache::empty(&path, &g.info().name, &tune::driver_of(&g));
    let (a, b) = (MatLayout::contiguous(64, 64), MatLayout::contiguous(64, 64));
    let key = MatmulBucket::of(dims(1, 64, 64, 64), a, b).key();
    c.insert(
        tune::entry_key("matmul", &key, "f32"),
        Choice {
            config: cfg.label(),
            gflops: 2.0,
            default_gflops: 1.0,
        },
    );
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
    // Tensor::matmul goes through the lookup and stays correct with the tuned rung.
    let x = Tensor::from_slice(&vec![0.5f32; 60 * 50], &[60, 50]).unwrap();
    let y = Tensor::from_slice(&vec![2.0f32; 50 * 33], &[50, 33]).unwrap();
    let prod = x.matmul(&y).unwrap().to_vec::<f32>().unwrap();
    set_env(tune::CACHE_ENV, None);
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
    if !g.has_f16() {
        eprintln!("skipping: {} lacks SHADER_F16", g.info().name);
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
    let s = Conv2dShape::new(2, 3, 5, (9, 11), (3, 3)).padded((1, 1));
    let path = temp_file("conv.json");
    set_env(tune::CACHE_ENV, Some(path.to_str().unwrap()));
    let mut t = Tuner::new(&g).unwrap();
    t.budget = Duration::from_millis(10);
    let r = t.tune_conv(&s).unwrap();
    assert_eq!(r.candidates.len(), ConvVariant::ALL.len());
    let v = ConvVariant::ALL
        .into_iter()
        .find(|v| v.name() == r.winner)
        .expect("winner is a conv variant");
    t.save().unwrap();
    let got = tune::conv_choice(&g, &s);
    set_env(tune::CACHE_ENV, None);
    assert_eq!(got, v);
}

#[test]
fn recorder_lists_forward_and_backward_shapes() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let x = Tensor::from_slice(&[0.1f32; 6 * 5], &[6, 5]).unwrap();
    let w = Tensor::from_slice(&[0.2f32; 5 * 3], &[5, 3])
        .unwrap()
        .requires_grad();
    tune::start_recording();
    let y = x.matmul(&w).unwrap();
    y.sum().unwrap().backward().unwrap();
    let seen = tune::stop_recording();
    let has = |m, n, k, a_t| {
        seen.iter().any(|s| {
            matches!(*s, SeenShape::Matmul { dims: d, a_t: at, .. }
                if (d.m, d.n, d.k, at) == (m, n, k, a_t))
        })
    };
    // Forward (6, 5) @ (5, 3); backward dW = X^T (5, 6) @ g (6, 3).
    assert!(has(6, 3, 5, false), "{seen:?}");
    assert!(has(5, 3, 6, true), "{seen:?}");
    assert!(tune::stop_recording().is_empty());
}
