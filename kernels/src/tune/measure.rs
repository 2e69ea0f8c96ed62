//! Measuring candidates: GPU timestamp queries where the adapter has them (`crate::profile`),
//! else wall time around `Gpu::sync`; then one check of the winner against the CPU twin.

use std::path::Path;
use std::time::{Duration, Instant};

use super::cache::{Choice, TuneCache, default_path, driver_of, publish};
use super::{CACHE_ENV, MatmulBucket, dtype_tag, entry_key, layouts, matmul_default};
use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::attention::{self as ak, AttnConfig, AttnInputs, AttnShape, AttnVariant};
use crate::launch::matmul::{self as mk, MatRef, MatmulConfig, MatmulDims, MatmulVariant};
use crate::operand::Operand;
use crate::profile::{Profiler, TimeSource};
use crate::reference::Tolerance;

/// What tuning one shape found.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// The entry key (`kernel/bucket/dtype`).
    pub key: String,
    /// The winner's label.
    pub winner: String,
    /// The winner's speed, GFLOP/s (from the cache when `cached`).
    pub gflops: f64,
    /// The default's speed in the same run, GFLOP/s.
    pub default_gflops: f64,
    /// True when the entry was already cached and nothing was measured.
    pub cached: bool,
    /// Every candidate measured: (label, GFLOP/s, or why it was skipped or rejected).
    pub candidates: Vec<(String, std::result::Result<f64, String>)>,
}

impl TuneReport {
    /// Speed-up of the winner over the default.
    pub fn speedup(&self) -> f64 {
        self.gflops / self.default_gflops.max(f64::MIN_POSITIVE)
    }
}

/// Measures candidates and records winners in a [`TuneCache`].
pub struct Tuner<'g> {
    pub(super) gpu: &'g Gpu,
    pub(super) cache: TuneCache,
    /// Time to spend repeating one candidate (after its warm-up).
    pub budget: Duration,
    /// Re-measure shapes that are already cached.
    pub force: bool,
}

/// Seconds one call of `f` takes at best, repeating within `budget` (after a warm-up call),
/// syncing inside the timed region. `compile` runs first, untimed, to build the pipeline (a
/// tiny problem with the same specialisation). `give_up`: stop after two timed runs slower than
/// this, or after the warm-up alone when it took over 1.5 s and twice as long.
pub(super) fn time_best(
    gpu: &Gpu,
    budget: Duration,
    give_up: f64,
    compile: impl FnOnce() -> Result<()>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    compile()?;
    gpu.sync()?;
    let warm = Instant::now();
    f()?;
    gpu.sync()?;
    // A hopeless candidate is not repeated (naive and tiled take seconds at 1024^3 on lavapipe).
    let warm = warm.elapsed().as_secs_f64();
    if warm > 2.0 * give_up && warm > 1.5 {
        return Ok(warm);
    }
    // GPU timestamps where the adapter has them: the samples then hold the kernels' own time,
    // not the host's recording and sync latency (which dominates small shapes). `Profiler`
    // falls back to wall time by itself when a candidate submits on its own.
    let profiler = Profiler::new(gpu);
    if profiler.source() == TimeSource::GpuTimestamps {
        let iters = if warm > give_up {
            2
        } else {
            ((budget.as_secs_f64() / warm.max(1e-6)) as usize).clamp(2, 20)
        };
        let t = profiler.time(gpu, 1, iters, &mut f)?;
        return Ok(t.min_ms() / 1e3);
    }
    let start = Instant::now();
    let mut best = f64::INFINITY;
    for rep in 0..20 {
        let t = Instant::now();
        f()?;
        gpu.sync()?;
        best = best.min(t.elapsed().as_secs_f64());
        // Two runs before giving up: one stall on a shared machine must not drop a candidate.
        if (rep == 1 && best > give_up) || start.elapsed() >= budget {
            break;
        }
    }
    Ok(best)
}

/// Deterministic values in [-1, 1) (a small LCG; tuning needs no statistical quality).
pub(super) fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Upload `v` as f32, or as f16 when `f16` (returning the values as the GPU sees them).
fn upload(gpu: &Gpu, v: &[f32], f16: bool, what: &str) -> Result<(GpuBuffer, Vec<f64>)> {
    if f16 {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        // Whole 4-byte words, so the buffer binds as an array of f16 on any backend.
        let buf = gpu.alloc((2 * h.len() as u64).next_multiple_of(4), what)?;
        let mut bytes = bytemuck::cast_slice::<half::f16, u8>(&h).to_vec();
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        gpu.upload(&buf, 0, &bytes);
        Ok((buf, h.iter().map(|x| x.to_f64()).collect()))
    } else {
        let buf = gpu.alloc(4 * v.len() as u64, what)?;
        gpu.upload(&buf, 0, bytemuck::cast_slice(v));
        Ok((buf, v.iter().map(|&x| x as f64).collect()))
    }
}

impl<'g> Tuner<'g> {
    /// A tuner whose cache is `gpu`'s default file ([`default_path`]), loaded now.
    pub fn new(gpu: &'g Gpu) -> Result<Self> {
        let path = default_path(gpu).ok_or_else(|| {
            KernelError::Unavailable(format!(
                "no user cache directory is known; set {CACHE_ENV} to a folder"
            ))
        })?;
        Ok(Self::at(gpu, &path))
    }

    /// A tuner whose cache is the file `path`, loaded now (see [`TuneCache::load`]).
    pub fn at(gpu: &'g Gpu, path: &Path) -> Self {
        Tuner {
            gpu,
            cache: TuneCache::load(path, &gpu.info().name, &driver_of(gpu)),
            budget: Duration::from_millis(300),
            force: false,
        }
    }

    /// How candidates are timed on this adapter: GPU timestamps where it has
    /// `TIMESTAMP_QUERY`, else wall time around a sync.
    pub fn time_source(&self) -> TimeSource {
        Profiler::new(self.gpu).source()
    }

    /// The cache as it stands (not yet saved).
    pub fn cache(&self) -> &TuneCache {
        &self.cache
    }

    /// Write the cache to disk and make this process's lookups see it.
    pub fn save(&self) -> Result<()> {
        self.cache.save()?;
        publish(&self.cache);
        Ok(())
    }

    /// The cached entry `key` as a report, unless re-measuring was asked for (`force`).
    pub(super) fn cached_report(&self, key: &str) -> Option<TuneReport> {
        let c = self.cache.get(key).filter(|_| !self.force)?;
        Some(TuneReport {
            key: key.to_string(),
            winner: c.config.clone(),
            gflops: c.gflops,
            default_gflops: c.default_gflops,
            cached: true,
            candidates: Vec::new(),
        })
    }

    /// Record `winner` (label, GFLOP/s) for `key` in the cache and report it.
    pub(super) fn record_winner(
        &mut self,
        key: String,
        (winner, gflops): (String, f64),
        default_gflops: f64,
        candidates: Vec<(String, std::result::Result<f64, String>)>,
    ) -> TuneReport {
        self.cache.insert(
            key.clone(),
            Choice {
                config: winner.clone(),
                gflops,
                default_gflops,
            },
        );
        TuneReport {
            key,
            winner,
            gflops,
            default_gflops,
            cached: false,
            candidates,
        }
    }

    /// Tune the matmul bucket of `dims` with A transposed when `a_t`, B when `b_t`, operands in
    /// f16 when `f16`: time every candidate at `dims`, verify the winner, record it.
    pub fn tune_matmul(
        &mut self,
        dims: MatmulDims,
        a_t: bool,
        b_t: bool,
        f16: bool,
    ) -> Result<TuneReport> {
        let gpu = self.gpu;
        let (la, lb) = layouts(dims, a_t, b_t);
        let key = entry_key(
            "matmul",
            &MatmulBucket::of(dims, la, lb).key(),
            dtype_tag(f16),
        );
        if let Some(report) = self.cached_report(&key) {
            return Ok(report);
        }
        let MatmulDims { batch, m, n, k } = dims;
        let (a, _) = upload(gpu, &noise(batch * m * k, 1), f16, "tune A")?;
        let (b, _) = upload(gpu, &noise(batch * k * n, 2), f16, "tune B")?;
        let c = gpu.alloc(4 * (batch * m * n) as u64, "tune C")?;
        let flops = dims.flops() as f64;
        let default = matmul_default(f16);
        let mut results: Vec<(MatmulConfig, std::result::Result<f64, String>)> = Vec::new();
        let mut best = f64::INFINITY;
        // The default first, so that hopeless candidates can be cut short from the start.
        let mut configs = vec![default];
        for v in MatmulVariant::LADDER {
            if v.f16_operands() != f16 {
                continue;
            }
            // Feature rungs the adapter lacks are skipped here; on DX12 that always includes coop
            // (cooperative matrices have no HLSL path, MatmulVariant::Coop).
            if let Err(why) = v.available(gpu) {
                results.push((MatmulConfig::default_for(v), Err(why)));
                continue;
            }
            configs.extend(
                MatmulConfig::candidates(v)
                    .into_iter()
                    .filter(|c| *c != default),
            );
        }
        for cfg in configs {
            let run = || {
                let (ra, rb) = (MatRef::new(&a, la), MatRef::new(&b, lb));
                mk::matmul(gpu, cfg, ra, rb, &c, 0, dims)
            };
            // The same strides (hence the same vec4 modes) on at most 4 x 4 x 4: builds the
            // pipeline without the cost of a full product.
            let tiny = MatmulDims {
                batch: 1,
                m: m.min(4),
                n: n.min(4),
                k: k.min(4),
            };
            let compile = || {
                let (ra, rb) = (MatRef::new(&a, la), MatRef::new(&b, lb));
                mk::matmul(gpu, cfg, ra, rb, &c, 0, tiny)
            };
            let t = time_best(gpu, self.budget, 4.0 * best, compile, run);
            if let Ok(t) = t {
                best = best.min(t);
            }
            results.push((cfg, t.map(|t| flops / t / 1e9).map_err(|e| e.to_string())));
        }
        let default_gflops = results
            .iter()
            .find(|(c, _)| *c == default)
            .and_then(|(_, r)| r.as_ref().ok().copied())
            .unwrap_or(0.0);
        // Fastest first; the first that agrees with the CPU twin wins.
        let mut order: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].1.is_ok())
            .collect();
        order.sort_by(|&x, &y| {
            let g = |i: usize| *results[i].1.as_ref().unwrap_or(&0.0);
            g(y).total_cmp(&g(x))
        });
        let mut winner = None;
        for i in order {
            let cfg = results[i].0;
            match verify_matmul(gpu, cfg, dims, a_t, b_t) {
                Ok(()) => {
                    winner = Some((cfg, *results[i].1.as_ref().unwrap_or(&0.0)));
                    break;
                }
                Err(why) => results[i].1 = Err(format!("rejected: {why}")),
            }
        }
        let candidates = results
            .iter()
            .map(|(c, r)| (c.label(), r.clone()))
            .collect();
        let Some((cfg, gflops)) = winner else {
            return Err(KernelError::Unavailable(format!(
                "tuning {key}: no candidate ran and matched the CPU twin: {candidates:?}"
            )));
        };
        Ok(self.record_winner(key, (cfg.label(), gflops), default_gflops, candidates))
    }
}

impl Tuner<'_> {
    /// Tune the attention bucket of `s` ([`super::attention_bucket`]): time forward + backward
    /// (one training step's worth) for every [`AttnConfig::candidates`] that fits the adapter,
    /// check the fastest against the CPU twin ([`verify_attention`]; one that disagrees is
    /// dropped and the next checked), cache the winner.
    pub fn tune_attention(&mut self, s: &AttnShape) -> Result<TuneReport> {
        let gpu = self.gpu;
        let key = entry_key("attention", &super::attention_bucket(s), "f32");
        if let Some(report) = self.cached_report(&key) {
            return Ok(report);
        }
        let (nq, nk) = (
            s.batch * s.heads * s.tq * s.d,
            s.batch * s.heads * s.tk * s.d,
        );
        let (q, _) = upload(gpu, &noise(nq.max(1), 3), false, "tune q")?;
        let (k, _) = upload(gpu, &noise(nk.max(1), 4), false, "tune k")?;
        let (v, _) = upload(gpu, &noise(nk.max(1), 5), false, "tune v")?;
        let (dout, _) = upload(gpu, &noise(nq.max(1), 6), false, "tune dO")?;
        let alloc = |n: usize, what: &str| gpu.alloc(4 * n.max(1) as u64, what);
        let o = alloc(nq, "tune O")?;
        let lse = alloc(s.batch * s.heads * s.tq, "tune L")?;
        let (dq, dk, dv) = (
            alloc(nq, "tune dq")?,
            alloc(nk, "tune dk")?,
            alloc(nk, "tune dv")?,
        );
        let [q, k, v] = [&q, &k, &v].map(Operand::whole);
        let x = AttnInputs {
            q,
            k,
            v,
            keep: None,
        };
        let flops = 3.5 * 4.0 * (s.batch * s.heads * s.tq * s.tk * s.d) as f64;
        let mut results: Vec<(AttnConfig, std::result::Result<f64, String>)> = Vec::new();
        let mut best = f64::INFINITY;
        for cfg in AttnConfig::candidates() {
            if cfg.variant == AttnVariant::Tiled && cfg.tiles.fitted(gpu, s.d) != Some(cfg.tiles) {
                results.push((cfg, Err("tiles do not fit this adapter".into())));
                continue;
            }
            let run = || {
                ak::forward(gpu, s, cfg, x, (&o, &lse), 0)?;
                ak::backward(gpu, s, cfg, x, &dout, (&o, &lse), (&dq, &dk, &dv), 0)
            };
            let t = time_best(gpu, self.budget, 4.0 * best, run, run);
            if let Ok(t) = t {
                best = best.min(t);
            }
            results.push((cfg, t.map(|t| flops / t / 1e9).map_err(|e| e.to_string())));
        }
        let default = super::attention_default(s);
        let default_gflops = results
            .iter()
            .find(|(c, _)| *c == default)
            .and_then(|(_, r)| r.as_ref().ok().copied())
            .unwrap_or(0.0);
        let mut ranked: Vec<(AttnConfig, f64)> = results
            .iter()
            .filter_map(|(c, r)| r.as_ref().ok().map(|g| (*c, *g)))
            .collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        let mut candidates: Vec<(String, std::result::Result<f64, String>)> =
            results.iter().map(|(c, r)| (c.name(), r.clone())).collect();
        let mut winner = None;
        for (cfg, g) in ranked {
            match verify_attention(gpu, cfg, s) {
                Ok(()) => {
                    winner = Some((cfg, g));
                    break;
                }
                Err(why) => candidates.push((cfg.name(), Err(format!("rejected: {why}")))),
            }
        }
        let Some((cfg, gflops)) = winner else {
            return Err(KernelError::Unavailable(format!(
                "tuning {key}: no attention variant ran and verified: {candidates:?}"
            )));
        };
        Ok(self.record_winner(key, (cfg.name(), gflops), default_gflops, candidates))
    }
}

/// Run `cfg` forward and backward on small random inputs of `s`'s head size and mask (B 1, H 2,
/// Tq, Tk up to 37 / 41, key padding mask on) and compare O, L, dQ, dK, dV with the f64 CPU twin.
pub fn verify_attention(
    gpu: &Gpu,
    cfg: AttnConfig,
    s: &AttnShape,
) -> std::result::Result<(), String> {
    let t = AttnShape {
        batch: 1,
        heads: 2,
        tq: s.tq.clamp(1, 37),
        tk: s.tk.clamp(1, 41),
        ..*s
    };
    let e = |e: KernelError| e.to_string();
    let (nq, nk) = (2 * t.tq * t.d, 2 * t.tk * t.d);
    let (q, q64) = upload(gpu, &noise(nq, 7), false, "verify q").map_err(e)?;
    let (k, k64) = upload(gpu, &noise(nk, 8), false, "verify k").map_err(e)?;
    let (v, v64) = upload(gpu, &noise(nk, 9), false, "verify v").map_err(e)?;
    let (dout, d64) = upload(gpu, &noise(nq, 10), false, "verify dO").map_err(e)?;
    let keep: Vec<f32> = (0..t.tk).map(|j| f32::from(j % 5 != 3)).collect();
    let (m, m64) = upload(gpu, &keep, false, "verify keep").map_err(e)?;
    let alloc = |n: usize| gpu.alloc(4 * n as u64, "verify attention").map_err(e);
    let (o, lse) = (alloc(nq)?, alloc(2 * t.tq)?);
    let (dq, dk, dv) = (alloc(nq)?, alloc(nk)?, alloc(nk)?);
    let [qo, ko, vo, mo] = [&q, &k, &v, &m].map(Operand::whole);
    let x = AttnInputs {
        q: qo,
        k: ko,
        v: vo,
        keep: Some(mo),
    };
    ak::forward(gpu, &t, cfg, x, (&o, &lse), 0).map_err(e)?;
    let grads = (&dq, &dk, &dv);
    ak::backward(gpu, &t, cfg, x, &dout, (&o, &lse), grads, 0).map_err(e)?;
    let (wo, wl) = crate::reference::attention::forward(&t, &q64, &k64, &v64, Some(&m64));
    let (wq, wk, wv) =
        crate::reference::attention::backward(&t, &q64, &k64, &v64, Some(&m64), &d64);
    let read = |b: &GpuBuffer, n: usize| -> std::result::Result<Vec<f32>, String> {
        Ok(bytemuck::pod_collect_to_vec(
            &gpu.read(b, 0, 4 * n as u64).map_err(e)?,
        ))
    };
    // f32 sums over D and Tk of values in [-1, 1) against f64 (as kernels/tests/kernels/attention/case.rs).
    let tol = Tolerance::new(1e-3, 1e-4, "f32 fused attention vs f64, long sums");
    for (name, buf, want) in [
        ("O", &o, &wo),
        ("L", &lse, &wl),
        ("dQ", &dq, &wq),
        ("dK", &dk, &wk),
        ("dV", &dv, &wv),
    ] {
        let got = read(buf, want.len())?;
        tol.compare(&got, want)
            .map_err(|m| format!("{} {name} at {t:?}: {m}", cfg.name()))?;
    }
    Ok(())
}

/// Run `cfg` on small random operands with the bucket's layout (batch and transposes) and
/// compare with the CPU twin in f64 (on the operands as rounded for the GPU).
pub fn verify_matmul(
    gpu: &Gpu,
    cfg: MatmulConfig,
    dims: MatmulDims,
    a_t: bool,
    b_t: bool,
) -> std::result::Result<(), String> {
    let d = MatmulDims {
        batch: dims.batch.min(2),
        m: dims.m.min(67),
        n: dims.n.min(131),
        k: dims.k.min(133),
    };
    let (la, lb) = layouts(d, a_t, b_t);
    let f16 = cfg.variant.f16_operands();
    let e = |e: KernelError| e.to_string();
    let (a, a64) = upload(gpu, &noise(d.batch * d.m * d.k, 7), f16, "verify A").map_err(e)?;
    let (b, b64) = upload(gpu, &noise(d.batch * d.k * d.n, 8), f16, "verify B").map_err(e)?;
    let c = gpu
        .alloc(4 * (d.batch * d.m * d.n) as u64, "verify C")
        .map_err(e)?;
    mk::matmul(gpu, cfg, MatRef::new(&a, la), MatRef::new(&b, lb), &c, 0, d).map_err(e)?;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(
        &gpu.read(&c, 0, 4 * (d.batch * d.m * d.n) as u64)
            .map_err(e)?,
    );
    let want = crate::reference::matmul::matmul(&a64, la, &b64, lb, d);
    // f32 sums of K products of values in [-1, 1).
    Tolerance::f32_dot(d.k)
        .compare(&got, &want)
        .map_err(|m| format!("{} at {d:?}: {m}", cfg.label()))
}
