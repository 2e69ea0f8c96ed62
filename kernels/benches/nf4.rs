//! NF4 (QLoRA) matmul benchmarks: every fused configuration (the simple rung, old; the block
//! rung, new; f16 where the adapter has it) beside dequantise-then-matmul and a plain f32
//! weight, in the same run, in GFLOP/s (criterion's "elem/s" with `Throughput::Elements(2 M out
//! in)`).
//!
//! Run with `cargo bench -p kiln-kernels --bench nf4` (add `-- nf4/forward` for one pass). Every timed iteration
//! records the kernels and waits for the device (`gpu.sync()`); weights and inputs are uploaded
//! once, outside the timing. The baselines use the tuned (or default) matmul configuration for
//! their layout: `dequant+matmul` is `dequantize_nf4` into a temporary f32 W, then `x @ W^T`
//! (forward) or `dy @ W` (grad-input); `f32-weight` skips the dequantisation (W kept in f32).
//!
//! Cases: M = 512 tokens through a 1024 x 1024 layer, and a LoRA-ish one, M = 128 tokens
//! through MiniLM's feed-forward up-projection (in 384, out 1536). Before the timings the
//! bench prints the quantisation error per layer and the GPU bytes each path holds and moves.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef};
use kiln_kernels::launch::nf4::{self as nk, Nf4Config, Nf4Pass, Nf4Weight};
use kiln_kernels::reference::nf4 as cpu;
use kiln_kernels::{Gpu, GpuBuffer, tune};

mod common;

use common::{filled, time};

/// Deterministic weights with a normal-ish spread (a sum of 4 uniforms), scale `sd`.
fn weights(n: usize, sd: f32) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut u = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|_| (u() + u() + u() + u()) * sd * 3f32.sqrt())
        .collect()
}

fn upload<T: bytemuck::Pod>(gpu: &Gpu, v: &[T], what: &str) -> GpuBuffer {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let buf = gpu.alloc(bytes.len() as u64, what).unwrap();
    gpu.upload(&buf, 0, bytes);
    buf
}

fn nf4(c: &mut Criterion) {
    let gpu = common::device(|| {
        format!(
            "untuned NF4 defaults: forward {}, grad-input {}",
            Nf4Config::DEFAULT_BLOCK.label(),
            Nf4Config::DEFAULT_BLOCK_GRAD.label()
        )
    });
    let mut group = common::group(c, "nf4");
    eprintln!("| layer (out x in) | mean abs err | max abs err | rel Frobenius |");
    for (name, m, o, i) in [
        ("m512_1024x1024", 512, 1024, 1024),
        ("lora_m128_1536x384", 128, 1536, 384),
    ] {
        let w = weights(o * i, 0.02);
        let q = cpu::quantize(&w, o, i);
        let e = cpu::quant_error(&w, &q);
        eprintln!(
            "| {o} x {i} (N(0, 0.02)-like) | {:.3e} | {:.3e} | {:.4} |",
            e.mean_abs, e.max_abs, e.rel_frobenius
        );
        let weight = Nf4Weight::upload(&gpu, &q).unwrap();
        let wb = weight.buffers();
        let wf32 = upload(&gpu, &w, "W f32");
        let wdq = gpu.alloc(4 * (o * i) as u64, "W dequantised").unwrap();
        let x = filled(&gpu, m * i.max(o));
        let y = gpu.alloc(4 * (m * i.max(o)) as u64, "y").unwrap();
        let (nf4_bytes, f32_bytes) = (q.bytes(), 4 * o * i);
        let act = 4 * m * (i + o);
        eprintln!(
            "{name}: GPU bytes moved per pass (weight + x + y): fused {} (NF4 W {nf4_bytes} B, \
             nothing extra held); dequant+matmul {} (+{f32_bytes} B temporary f32 W, written \
             then read); f32-weight {} (W held in f32: {:.2}x the NF4 bytes)",
            nf4_bytes + act,
            nf4_bytes + 2 * f32_bytes + act,
            f32_bytes + act,
            f32_bytes as f64 / nf4_bytes as f64
        );
        group.throughput(Throughput::Elements(2 * (m * o * i) as u64));
        for pass in [Nf4Pass::Forward, Nf4Pass::GradInput] {
            let pname = match pass {
                Nf4Pass::Forward => "forward",
                Nf4Pass::GradInput => "grad_input",
            };
            let id = |v: &str| BenchmarkId::new(format!("{pname}/{v}"), name);
            for cfg in Nf4Config::candidates(&gpu, pass) {
                if !cfg.applies(pass, i, 0) {
                    continue;
                }
                time(&mut group, id(&cfg.label()), &gpu, || {
                    nk::matmul_nf4_pass(&gpu, cfg, pass, wb, &x, m, &y)
                });
            }
            // The baselines: the same product with W dequantised to f32 first, or held in f32.
            let (dims, lw) = pass.dense(m, o, i);
            let la = MatLayout::contiguous(m, dims.k);
            let mcfg = tune::matmul_choice(&gpu, dims, la, lw, false);
            let product = |wbuf: &GpuBuffer| {
                let (a, b) = (MatRef::new(&x, la), MatRef::new(wbuf, lw));
                mk::matmul(&gpu, mcfg, a, b, &y, 0, dims)
            };
            time(&mut group, id("dequant+matmul"), &gpu, || {
                nk::dequantize_nf4(&gpu, wb, &wdq)?;
                product(&wdq)
            });
            time(&mut group, id("f32-weight"), &gpu, || product(&wf32));
        }
    }
    group.finish();
}

criterion_group!(benches, nf4);
criterion_main!(benches);
