//! NF4 matmuls in the tuner: per adapter and shape bucket, the fastest correct [`Nf4Config`].
//!
//! The forward (`nf4`) and the input gradient (`nf4_grad`) are tuned separately: they are
//! different kernels and need not share a winner. Buckets round M, out and in up to powers of
//! two and keep whether the block rung can run (`:a`, in % 64 == 0 and x / dy at an offset that
//! is a multiple of 4) or not (`:u`); e.g. `nf4/m512o1024i1024:a/auto`. One tuning run times
//! every candidate that applies ([`Nf4Config::candidates`]: the simple rung in f32 and, with
//! `SHADER_F16`, f16; the block rung at 4, 8, 16 rows with both code-book lookups) and records
//! two entries: `.../f32`, the fastest f32 configuration (what [`Nf4Compute::F32`] uses), and
//! `.../auto`, the fastest of all (what [`Nf4Compute::Auto`] uses). Each winner is checked once
//! against the CPU twin (dequantise, then matmul in f64) before it is recorded.
//!
//! ```
//! use kiln_kernels::launch::nf4::Nf4Pass;
//! use kiln_kernels::tune::nf4_bucket;
//! assert_eq!(nf4_bucket((100, 1000, 4096), 0), "m128o1024i4096:a");
//! assert_eq!(nf4_bucket((1, 7, 17), 0), "m1o8i32:u");
//! assert_eq!(Nf4Pass::GradInput.name(), "nf4_grad");
//! ```

use super::cache::loaded;
use super::measure::{TuneReport, Tuner, noise, time_best};
use super::{entry_key, lookups_enabled};
use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::nf4::{Nf4Buffers, Nf4Compute, Nf4Config, Nf4Pass, Nf4Weight, matmul_nf4_pass};
use crate::reference::nf4 as cpu;

/// The bucket of an NF4 matmul with `dims` = (M, out, in) and x / dy at element `offset`.
pub fn nf4_bucket(dims: (usize, usize, usize), offset: usize) -> String {
    let p2 = |x: usize| x.max(1).next_power_of_two();
    let (m, o, i) = dims;
    let block = Nf4Config::DEFAULT_BLOCK.applies(Nf4Pass::Forward, i, offset);
    format!(
        "m{}o{}i{}:{}",
        p2(m),
        p2(o),
        p2(i),
        if block { 'a' } else { 'u' }
    )
}

fn tag(compute: Nf4Compute) -> &'static str {
    match compute {
        Nf4Compute::F32 => "f32",
        Nf4Compute::F16 => "f16",
        Nf4Compute::Auto => "auto",
    }
}

/// The configuration for `pass` with `dims` = (M, out, in), x / dy at element `offset`, and
/// `compute`: the cached choice for its bucket when there is one (and it runs here), else
/// [`Nf4Config::default_for`]. `F16` always gets the simple f16 rung (the only f16 one). Never
/// tunes.
pub fn nf4_choice(
    gpu: &Gpu,
    pass: Nf4Pass,
    dims: (usize, usize, usize),
    offset: usize,
    compute: Nf4Compute,
) -> Nf4Config {
    let in_f = dims.2;
    let fallback = Nf4Config::default_for(compute, in_f, offset, pass);
    if compute == Nf4Compute::F16 || !lookups_enabled() {
        return fallback;
    }
    let Some(cache) = loaded(gpu) else {
        return fallback;
    };
    cache
        .get(&entry_key(
            pass.name(),
            &nf4_bucket(dims, offset),
            tag(compute),
        ))
        .and_then(|c| Nf4Config::parse(&c.config))
        .filter(|c| c.applies(pass, in_f, offset))
        .filter(|c| !c.is_f16() || (gpu.has_f16() && compute == Nf4Compute::Auto))
        .unwrap_or(fallback)
}

/// W (out, in) quantised from deterministic noise, on the GPU, with its CPU form.
struct TestWeight {
    q: cpu::Nf4Quantized,
    w: Nf4Weight,
}

impl TestWeight {
    fn new(gpu: &Gpu, out_f: usize, in_f: usize, seed: u64) -> Result<Self> {
        let w: Vec<f32> = noise(out_f * in_f, seed).iter().map(|v| 0.1 * v).collect();
        let q = cpu::quantize(&w, out_f, in_f);
        let w = Nf4Weight::upload(gpu, &q)?;
        Ok(TestWeight { q, w })
    }

    fn buffers(&self) -> Nf4Buffers<'_> {
        self.w.buffers()
    }
}

fn upload(gpu: &Gpu, v: &[f32], what: &str) -> Result<GpuBuffer> {
    let b = gpu.alloc(4 * v.len() as u64, what)?;
    gpu.upload(&b, 0, bytemuck::cast_slice(v));
    Ok(b)
}

/// Run `cfg` on small random operands of the bucket's kind (in a multiple of 64 or not) and
/// compare with the CPU twin in f64: per output, `|err| <= rel * sum |x w| + abs` with rel
/// 4e-5 for f32 compute (sums in another order) and 2e-3 for f16 (see tests/nf4.rs).
pub fn verify_nf4(
    gpu: &Gpu,
    cfg: Nf4Config,
    pass: Nf4Pass,
    dims: (usize, usize, usize),
) -> std::result::Result<(), String> {
    let (m, o) = (dims.0.clamp(1, 37), dims.1.clamp(1, 67));
    let i = if dims.2.is_multiple_of(cpu::BLOCK) {
        dims.2.clamp(64, 192) / 64 * 64
    } else {
        dims.2.clamp(1, 133)
    };
    let e = |e: KernelError| e.to_string();
    let w = TestWeight::new(gpu, o, i, 11).map_err(e)?;
    let (d, _) = pass.dense(m, o, i);
    let (ilen, olen) = (m * d.k, m * d.n);
    let x = noise(ilen, 12);
    let xb = upload(gpu, &x, "verify nf4 in").map_err(e)?;
    let yb = gpu.alloc(4 * olen as u64, "verify nf4 out").map_err(e)?;
    matmul_nf4_pass(gpu, cfg, pass, w.buffers(), &xb, m, &yb).map_err(e)?;
    let got: Vec<f32> =
        bytemuck::pod_collect_to_vec(&gpu.read(&yb, 0, 4 * olen as u64).map_err(e)?);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let wd = cpu::dequantize::<f64>(&w.q);
    let abs_w: Vec<f64> = wd.iter().map(|v| v.abs()).collect();
    let abs_x: Vec<f64> = x64.iter().map(|v| v.abs()).collect();
    let (want, mag) = match pass {
        Nf4Pass::Forward => (
            cpu::matmul_nf4(&x64, m, &w.q, None),
            mat_abs(&abs_x, &abs_w, m, o, i, false),
        ),
        Nf4Pass::GradInput => (
            cpu::matmul_nf4_grad_input(&x64, m, &w.q),
            mat_abs(&abs_x, &abs_w, m, o, i, true),
        ),
    };
    let rel = if cfg.is_f16() { 2e-3 } else { 4e-5 };
    for (n, ((&g, &t), &s)) in got.iter().zip(&want).zip(&mag).enumerate() {
        let err = (g as f64 - t).abs();
        if err.is_nan() || err > rel * s + 1e-6 {
            return Err(format!(
                "{} {pass:?} at M={m} out={o} in={i}: element {n} is {g}, the CPU twin says {t}",
                cfg.label()
            ));
        }
    }
    Ok(())
}

/// `sum |x| |w|` per output: forward (M, out) = |x| (M, in) @ |W|^T, grad (M, in) = |dy| @ |W|.
fn mat_abs(x: &[f64], w: &[f64], m: usize, o: usize, i: usize, grad: bool) -> Vec<f64> {
    let mut v = Vec::new();
    for r in 0..m {
        if grad {
            v.extend((0..i).map(|c| (0..o).map(|p| x[r * o + p] * w[p * i + c]).sum::<f64>()));
        } else {
            v.extend((0..o).map(|c| (0..i).map(|p| x[r * i + p] * w[c * i + p]).sum::<f64>()));
        }
    }
    v
}

impl Tuner<'_> {
    /// Tune `pass` at `dims` = (M, out, in) (x / dy contiguous from element 0): time every
    /// candidate that applies, verify the winners, record the `f32` and `auto` entries of the
    /// bucket. Returns the report of the `auto` entry (the f32 winner is in the cache).
    pub fn tune_nf4(&mut self, pass: Nf4Pass, dims: (usize, usize, usize)) -> Result<TuneReport> {
        let gpu = self.gpu;
        let bucket = nf4_bucket(dims, 0);
        let key = entry_key(pass.name(), &bucket, "auto");
        let key32 = entry_key(pass.name(), &bucket, "f32");
        if let Some(report) = self.cached_report(&key) {
            return Ok(report);
        }
        let (m, o, i) = dims;
        let w = TestWeight::new(gpu, o, i, 21)?;
        let (d, _) = pass.dense(m, o, i);
        let (ilen, olen) = (m * d.k, m * d.n);
        let inp = upload(gpu, &noise(ilen, 22), "tune nf4 in")?;
        let out = gpu.alloc(4 * olen as u64, "tune nf4 out")?;
        // The pipeline is built on a 1 x 4 x in product (the same specialisation).
        let tiny = TestWeight::new(gpu, o.min(4), i, 23)?;
        let flops = 2.0 * (m * o * i) as f64;
        let default = Nf4Config::default_for(Nf4Compute::F32, i, 0, pass);
        let mut configs = vec![default];
        configs.extend(
            Nf4Config::candidates(gpu, pass)
                .into_iter()
                .filter(|c| *c != default && c.applies(pass, i, 0)),
        );
        let mut results: Vec<(Nf4Config, std::result::Result<f64, String>)> = Vec::new();
        let mut best = f64::INFINITY;
        for cfg in configs {
            let t = time_best(
                gpu,
                self.budget,
                4.0 * best,
                || matmul_nf4_pass(gpu, cfg, pass, tiny.buffers(), &inp, 1, &out),
                || matmul_nf4_pass(gpu, cfg, pass, w.buffers(), &inp, m, &out),
            );
            if let Ok(t) = t {
                best = best.min(t);
            }
            results.push((cfg, t.map(|t| flops / t / 1e9).map_err(|e| e.to_string())));
        }
        let gflops_of = |r: &std::result::Result<f64, String>| r.as_ref().ok().copied();
        let default_gflops = gflops_of(&results[0].1).unwrap_or(0.0);
        let mut order: Vec<usize> = (0..results.len())
            .filter(|&n| results[n].1.is_ok())
            .collect();
        order.sort_by(|&x, &y| {
            let g = |n: usize| gflops_of(&results[n].1).unwrap_or(0.0);
            g(y).total_cmp(&g(x))
        });
        // The fastest verified overall (auto) and the fastest verified f32 one.
        let mut auto = None;
        let mut f32_best = None;
        for n in order {
            if auto.is_some() && f32_best.is_some() {
                break;
            }
            let cfg = results[n].0;
            if auto.is_some() && cfg.is_f16() {
                continue;
            }
            match verify_nf4(gpu, cfg, pass, dims) {
                Ok(()) => {
                    let won = (cfg, gflops_of(&results[n].1).unwrap_or(0.0));
                    auto.get_or_insert(won);
                    if !cfg.is_f16() {
                        f32_best.get_or_insert(won);
                    }
                }
                Err(why) => results[n].1 = Err(format!("rejected: {why}")),
            }
        }
        let candidates = results
            .iter()
            .map(|(c, r)| (c.label(), r.clone()))
            .collect();
        let (Some((cfg, gflops)), Some((cfg32, gflops32))) = (auto, f32_best) else {
            return Err(KernelError::Unavailable(format!(
                "tuning {key}: no candidate ran and matched the CPU twin: {candidates:?}"
            )));
        };
        self.record_winner(key32, (cfg32.label(), gflops32), default_gflops, Vec::new());
        Ok(self.record_winner(key, (cfg.label(), gflops), default_gflops, candidates))
    }
}
