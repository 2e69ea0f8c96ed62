//! The NF4 kernel ladder (simple and block rungs, every tuner candidate) against the CPU twin
//! (dequantise, then matmul in f64) at awkward sizes, its loop-limit chunking, its errors, and
//! the tuner's NF4 entries. The op-level tests (autograd, views, memory) are in the root crate's
//! tests/nf4.rs.

use crate::common::{gpu, rand_vec, read, seed, upload, upload_u32};
use kiln_kernels::launch::nf4::{
    Nf4Buffers, Nf4Compute, Nf4Config, Nf4Pass, matmul_nf4, matmul_nf4_grad_input,
};
use kiln_kernels::reference::nf4::{self as cpu, Nf4Quantized};
use kiln_kernels::tune::{self, Tuner};
use kiln_kernels::{Gpu, GpuBuffer};

/// W quantised on the CPU and uploaded.
struct Weight {
    q: Nf4Quantized,
    bufs: [GpuBuffer; 3],
}

impl Weight {
    fn new(g: &Gpu, o: usize, i: usize, tag: &str) -> Self {
        let w = rand_vec(o * i, seed(tag) ^ (o * 7919 + i) as u64, -0.2, 0.2);
        let q = cpu::quantize(&w, o, i);
        let bufs = [
            upload_u32(g, &q.codes),
            upload_u32(g, &q.scale_words()),
            upload(g, &q.stats),
        ];
        Weight { q, bufs }
    }

    fn buffers(&self) -> Nf4Buffers<'_> {
        Nf4Buffers {
            codes: &self.bufs[0],
            scales: &self.bufs[1],
            stats: &self.bufs[2],
            out_features: self.q.out_features,
            in_features: self.q.in_features,
        }
    }
}

/// Per-output bound: `rel * sum |x w| + 1e-6`, rel 4e-5 for f32 compute (f32 sums of up to 320
/// products in another order than the f64 twin: ~320 * 2^-24 * sum |x w| at worst) and 2e-3 for
/// f16 (x and W rounded to f16, products and short sums in f16; see tests/nf4.rs). Returns the
/// worst `|err| / sum |x w|`.
fn assert_within(what: &str, got: &[f32], want: &[f64], mag: &[f64], f16: bool) -> f64 {
    let rel = if f16 { 2e-3 } else { 4e-5 };
    let mut worst = 0.0f64;
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (n, ((&g, &w), &s)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - w).abs();
        worst = worst.max(err / s.max(1e-12));
        assert!(
            err <= rel * s + 1e-6,
            "{what}: element {n} is {g}, the CPU twin says {w} (|err| {err:e}, sum|xw| {s:e})"
        );
    }
    worst
}

/// Forward of `cfg` at (M, out, in) with x at element `off`, with a bias, against the twin.
fn check_forward(g: &Gpu, cfg: Nf4Config, m: usize, o: usize, i: usize, off: usize) -> f64 {
    let w = Weight::new(g, o, i, "rf-w");
    let x = rand_vec(off + m * i, seed("rf-x") ^ (m * 31 + i) as u64, -1.0, 1.0);
    let b = rand_vec(o, seed("rf-b") ^ o as u64, -0.5, 0.5);
    let (xb, bb) = (upload(g, &x), upload(g, &b));
    let y = g.alloc(4 * (m * o) as u64, "y").unwrap();
    matmul_nf4(g, cfg, w.buffers(), &xb, off, m, Some(&bb), &y).unwrap();
    let x64: Vec<f64> = x[off..].iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let want = cpu::matmul_nf4(&x64, m, &w.q, Some(&b64));
    let wd = cpu::dequantize::<f64>(&w.q);
    let mag: Vec<f64> = (0..m * o)
        .map(|e| {
            let (r, c) = (e / o, e % o);
            b64[c].abs()
                + (0..i)
                    .map(|p| (x64[r * i + p] * wd[c * i + p]).abs())
                    .sum::<f64>()
        })
        .collect();
    let what = format!("{} forward M={m} out={o} in={i} off={off}", cfg.label());
    assert_within(&what, &read(g, &y, m * o), &want, &mag, cfg.is_f16())
}

/// Input gradient of `cfg` at (M, out, in) with dy at element `off`, against the twin.
fn check_grad(g: &Gpu, cfg: Nf4Config, m: usize, o: usize, i: usize, off: usize) -> f64 {
    let w = Weight::new(g, o, i, "rg-w");
    let dy = rand_vec(off + m * o, seed("rg-dy") ^ (m * 31 + o) as u64, -1.0, 1.0);
    let dyb = upload(g, &dy);
    let dx = g.alloc(4 * (m * i) as u64, "dx").unwrap();
    matmul_nf4_grad_input(g, cfg, w.buffers(), &dyb, off, m, &dx).unwrap();
    let d64: Vec<f64> = dy[off..].iter().map(|&v| v as f64).collect();
    let want = cpu::matmul_nf4_grad_input(&d64, m, &w.q);
    let wd = cpu::dequantize::<f64>(&w.q);
    let mag: Vec<f64> = (0..m * i)
        .map(|e| {
            let (r, c) = (e / i, e % i);
            (0..o)
                .map(|p| (d64[r * o + p] * wd[p * i + c]).abs())
                .sum::<f64>()
        })
        .collect();
    let what = format!("{} grad-input M={m} out={o} in={i} off={off}", cfg.label());
    assert_within(&what, &read(g, &dx, m * i), &want, &mag, cfg.is_f16())
}

/// (M, out, in): M 1, 7, 129; out 1, 7, 17, 129 (and 20, a multiple of 4 for the vec4 dy
/// path); in 64, 192, 320 (the block rung needs multiples of the 64-value block).
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 64),
    (7, 7, 192),
    (129, 17, 320),
    (7, 129, 64),
    (129, 129, 192),
    (1, 17, 320),
    (7, 20, 64),
    (129, 1, 192),
];

/// Every configuration the tuner may pick, plus block shapes off the candidate list.
fn configs(g: &Gpu, pass: Nf4Pass) -> Vec<Nf4Config> {
    let mut v = Nf4Config::candidates(g, pass);
    v.push(Nf4Config::Block {
        tm: 1,
        tw: 1,
        select: false,
    });
    v.push(Nf4Config::Block {
        tm: 7,
        tw: if pass == Nf4Pass::Forward { 1 } else { 2 },
        select: true,
    });
    v
}

/// Check every configuration of `pass` on every shape with `check` (which returns its worst
/// error relative to the sum of |products|), then `offsets` of the input for the configuration;
/// print the worst errors of the f32 and the f16 configurations.
fn every_config(
    pass: Nf4Pass,
    check: fn(&Gpu, Nf4Config, usize, usize, usize, usize) -> f64,
    offsets: fn(&Gpu, Nf4Config),
) {
    let g = gpu();
    let mut worst = (0.0f64, 0.0f64);
    for cfg in configs(&g, pass) {
        for &(m, o, i) in SHAPES {
            let e = check(&g, cfg, m, o, i, 0);
            let w = if cfg.is_f16() {
                &mut worst.1
            } else {
                &mut worst.0
            };
            *w = w.max(e);
        }
        offsets(&g, cfg);
    }
    eprintln!(
        "{}: worst |err| / sum|input w|: f32 {:e}, f16 {:e}",
        pass.name(),
        worst.0,
        worst.1
    );
}

#[test]
fn every_forward_config_matches_cpu() {
    every_config(Nf4Pass::Forward, check_forward, |g, cfg| {
        // x at an offset: a multiple of 4 keeps the vec4 paths, 3 leaves only the simple rung.
        check_forward(g, cfg, 7, 17, 192, 8);
        if matches!(cfg, Nf4Config::Simple { .. }) {
            check_forward(g, cfg, 7, 17, 192, 3);
        }
    });
}

#[test]
fn every_grad_input_config_matches_cpu() {
    every_config(Nf4Pass::GradInput, check_grad, |g, cfg| {
        // dy at offsets: 4 keeps the vec4 dy path (out = 20), 3 takes the scalar one.
        check_grad(g, cfg, 7, 20, 128, 4);
        check_grad(g, cfg, 7, 20, 128, 3);
    });
}

#[test]
fn simple_rung_takes_any_in() {
    let g = gpu();
    for cfg in [
        Nf4Config::Simple { f16: false },
        Nf4Config::Simple { f16: true },
    ] {
        if cfg.is_f16() && !g.has_f16() {
            continue;
        }
        for &(m, o, i) in &[(1, 7, 17), (7, 17, 130), (129, 7, 1)] {
            check_forward(&g, cfg, m, o, i, 0);
            check_grad(&g, cfg, m, o, i, 0);
        }
    }
}

#[test]
fn block_rung_refuses_what_it_cannot_run() {
    let g = gpu();
    let w = Weight::new(&g, 7, 65, "refuse");
    let x = upload(&g, &[0.5; 8 * 65]);
    let y = g.alloc(4 * 8 * 65, "y").unwrap();
    let block = Nf4Config::DEFAULT_BLOCK;
    let e = matmul_nf4(&g, block, w.buffers(), &x, 0, 7, None, &y).unwrap_err();
    assert!(e.to_string().contains("in % 64"), "{e}");
    let e = matmul_nf4_grad_input(&g, block, w.buffers(), &x, 0, 7, &y).unwrap_err();
    assert!(e.to_string().contains("in % 64"), "{e}");
    let w = Weight::new(&g, 7, 64, "refuse2");
    let e = matmul_nf4(&g, block, w.buffers(), &x, 1, 7, None, &y).unwrap_err();
    assert!(e.to_string().contains("offset"), "{e}");
    let bad = Nf4Config::Block {
        tm: 17,
        tw: 1,
        select: false,
    };
    assert!(matmul_nf4(&g, bad, w.buffers(), &x, 0, 7, None, &y).is_err());
    // The tile rung is forward-only.
    let tile = Nf4Config::Tile {
        tm: 8,
        select: false,
    };
    assert!(matmul_nf4_grad_input(&g, tile, w.buffers(), &x, 0, 7, &y).is_err());
    // The untuned defaults: block where it applies, f32 for Auto, f16 only when forced.
    let d = |c, i, off, p| Nf4Config::default_for(c, i, off, p);
    assert_eq!(d(Nf4Compute::Auto, 1024, 0, Nf4Pass::Forward), block);
    assert_eq!(
        d(Nf4Compute::F32, 1024, 0, Nf4Pass::GradInput),
        Nf4Config::DEFAULT_BLOCK_GRAD
    );
    assert_eq!(
        d(Nf4Compute::Auto, 1000, 0, Nf4Pass::Forward),
        Nf4Config::Simple { f16: false }
    );
    assert_eq!(
        d(Nf4Compute::F16, 1024, 0, Nf4Pass::Forward),
        Nf4Config::Simple { f16: true }
    );
}

#[test]
fn labels_round_trip() {
    let g = gpu();
    for pass in [Nf4Pass::Forward, Nf4Pass::GradInput] {
        for cfg in configs(&g, pass) {
            assert_eq!(Nf4Config::parse(&cfg.label()), Some(cfg), "{}", cfg.label());
        }
    }
    for bad in [
        "block-tm0-tw1-lut",
        "block-tm8-tw3-sel",
        "block-tm8-tw1",
        "simple-bf16",
    ] {
        assert_eq!(Nf4Config::parse(bad), None, "{bad}");
    }
}

#[test]
fn block_reduction_past_lavapipe_loop_limit() {
    // Forward: in = 66,048 (a multiple of 64) is cut into chunks; grad-input: out = 66,001
    // (scalar dy) and 66,000 (vec4 dy). Without chunking lavapipe drops the tail silently.
    let g = gpu();
    let big = 66_048;
    for cfg in [
        Nf4Config::DEFAULT_BLOCK,
        Nf4Config::Block {
            tm: 16,
            tw: 1,
            select: false,
        },
        Nf4Config::Tile {
            tm: 8,
            select: true,
        },
    ] {
        assert!(cfg.chunk(Nf4Pass::Forward) < big);
        check_forward(&g, cfg, 2, 3, big, 0);
    }
    for o in [66_001, 66_000] {
        for cfg in [
            Nf4Config::DEFAULT_BLOCK_GRAD,
            Nf4Config::Block {
                tm: 8,
                tw: 1,
                select: false,
            },
        ] {
            assert!(cfg.chunk(Nf4Pass::GradInput) < o);
            check_grad(&g, cfg, 2, o, 64, 0);
        }
    }
}

#[test]
fn tuner_records_verified_nf4_choices() {
    let g = gpu();
    let dir = std::env::temp_dir().join(format!("kiln-nf4-tune-{}", std::process::id()));
    let path = dir.join("tune.json");
    // SAFETY: no other test in this binary reads the tuning variables (they launch configs
    // directly), so nothing reads KILN_TUNE_CACHE while it changes.
    unsafe { std::env::set_var(tune::CACHE_ENV, &path) };
    let mut t = Tuner::at(&g, &path);
    t.budget = std::time::Duration::from_millis(20);
    let dims = (16, 40, 128);
    for pass in [Nf4Pass::Forward, Nf4Pass::GradInput] {
        let r = t.tune_nf4(pass, dims).unwrap();
        assert!(!r.cached);
        assert_eq!(r.key, format!("{}/m16o64i128:a/auto", pass.name()));
        let n = Nf4Config::candidates(&g, pass).len();
        assert_eq!(r.candidates.len(), n, "{:?}", r.candidates);
        let won = Nf4Config::parse(&r.winner).expect("a known label");
        assert!(r.gflops > 0.0 && r.default_gflops > 0.0);
        let f32_key = format!("{}/m16o64i128:a/f32", pass.name());
        let c32 = t.cache().get(&f32_key).expect("an f32 entry");
        assert!(!Nf4Config::parse(&c32.config).unwrap().is_f16());
        // Cached now: no second measurement.
        assert!(t.tune_nf4(pass, dims).unwrap().cached);
        tune::verify_nf4(&g, won, pass, dims).unwrap();
    }
    t.save().unwrap();
    // Lookups in this process see the saved choices (same bucket, another shape in it).
    let auto = t
        .cache()
        .get("nf4/m16o64i128:a/auto")
        .unwrap()
        .config
        .clone();
    let got = tune::nf4_choice(&g, Nf4Pass::Forward, (9, 33, 128), 0, Nf4Compute::Auto);
    if tune::lookups_enabled() {
        assert_eq!(got.label(), auto);
    }
    // An unaligned offset cannot take a block winner: the lookup falls back to simple.
    let got = tune::nf4_choice(&g, Nf4Pass::Forward, (9, 33, 128), 3, Nf4Compute::F32);
    assert!(got.applies(Nf4Pass::Forward, 128, 3));
    let _ = std::fs::remove_dir_all(dir);
}
