//! `kiln bench` rows of the optimizer update over `n` values (2^20, `--quick` 2^18): the fused
//! 32-bit Adam kernel (the reference rung), the fused 8-bit Adam kernel (`optim8bit.wgsl`), and
//! on the host the 8-bit kernel's CPU twin and the f32 Adam twin that `--offload-optimizer`
//! runs. Bytes are what each must move: f32 Adam reads p, g, m, v and writes p, m, v (28 per
//! value); 8-bit Adam reads p, g and one byte per moment and writes p and the bytes (16 per
//! value, plus the block scales).

use kiln_kernels::launch::optim::{self as k, AdamStep, q8_blocks, q8_words};
use kiln_kernels::reference::optim as twin;
use kiln_kernels::{GpuBuffer, Operand};

use super::cases::wall_timing;
use super::{Bound, Case, Suite};
use crate::cli::Result;

/// Rows `adam_update n=<n> adam|adam8bit|adam8bit_cpu|adam_cpu_offload`.
pub(super) fn run(s: &mut Suite) -> Result<()> {
    let n: usize = if s.quick { 1 << 18 } else { 1 << 20 };
    let shape = format!("n={n}");
    let variants = ["adam", "adam8bit", "adam8bit_cpu", "adam_cpu_offload"];
    if !variants.iter().any(|v| s.wants("adam_update", &shape, v)) {
        return Ok(());
    }
    let gpu = s.gpu.clone();
    let (bc1, bc2) = AdamStep::bias_corrections(0.9, 0.999, 10);
    let h = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: true,
        bc1,
        bc2,
    };
    let host: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let f32s = |what| -> Result<GpuBuffer> {
        let b = gpu.alloc(4 * n as u64, what)?;
        gpu.upload(&b, 0, bytemuck::cast_slice(&host));
        Ok(b)
    };
    let (p, g, m, v) = (f32s("p")?, f32s("grad")?, f32s("m")?, f32s("v")?);
    let (words, blocks) = (q8_words(n), q8_blocks(n));
    let mq = gpu.alloc(4 * words as u64, "m codes")?;
    let vq = gpu.alloc(4 * words as u64, "v codes")?;
    let scales = gpu.alloc(8 * blocks as u64, "scales")?;
    gpu.upload(&mq, 0, &vec![0; 4 * words]);
    gpu.upload(&vq, 0, &vec![0; 4 * words]);
    gpu.upload(&scales, 0, &vec![0; 8 * blocks]);
    let code_host = twin::q8_code();
    let code = gpu.alloc(4 * code_host.len() as u64, "code books")?;
    gpu.upload(&code, 0, bytemuck::cast_slice(&code_host));
    let flops = 16 * n as u64;
    let (f32_bytes, q8_bytes) = (28 * n as u64, (16 * n + 16 * blocks) as u64);
    let w = Operand::whole;
    let case = |variant, bytes| {
        Case::new("adam_update", shape.clone(), variant)
            .work(flops, bytes, Bound::Memory)
            .grouped(variant == "adam")
    };
    s.run(case("adam", f32_bytes), || {
        k::adam(&gpu, &h, n, w(&p), w(&g), w(&m), w(&v))
    })?;
    s.run(case("adam8bit", q8_bytes), || {
        let state = k::Q8State {
            mq: w(&mq),
            vq: w(&vq),
            scales: w(&scales),
        };
        k::adam8bit(&gpu, &h, n, w(&p), w(&g), state, &code)
    })?;
    // The host twins, on host copies (no transfers), a few wall-clock samples each.
    let reps = if s.quick { 3 } else { 5 };
    let mut hp = host.clone();
    let (mut hm, mut hv) = (
        host.clone(),
        host.iter().map(|x| x.abs()).collect::<Vec<_>>(),
    );
    let (mut hmq, mut hvq, mut hs) = (vec![0u32; words], vec![0u32; words], vec![0.0; 2 * blocks]);
    let timed = |run: &mut dyn FnMut()| {
        let samples = (0..reps)
            .map(|_| {
                let t0 = std::time::Instant::now();
                run();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        wall_timing(samples)
    };
    if s.wants("adam_update", &shape, "adam8bit_cpu") {
        let t = timed(&mut || {
            twin::adam8bit(&h, &code_host, &mut hp, &host, &mut hmq, &mut hvq, &mut hs)
        });
        s.record(
            case("adam8bit_cpu", q8_bytes),
            &t,
            Some("CPU twin, 1 thread".into()),
        );
    }
    if s.wants("adam_update", &shape, "adam_cpu_offload") {
        let t = timed(&mut || twin::adam(&h, &mut hp, &host, &mut hm, &mut hv));
        let note = "f32 on the host, as --offload-optimizer (no transfers)";
        s.record(case("adam_cpu_offload", f32_bytes), &t, Some(note.into()));
    }
    Ok(())
}
