//! The cases of `kiln bench`, one function per family. Work is counted as each op's FLOPs and the
//! minimal bytes it must move (every input read once, every output written once), so the rates
//! are comparable across rungs and with the ceilings.

use kiln_kernels::launch::bench as bk;
use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvVariant};
use kiln_kernels::launch::elementwise::{self as ew, BinaryOp, Strided, UnaryOp};
use kiln_kernels::launch::matmul::{self as mk, MatLayout, MatRef, MatmulDims, MatmulVariant};
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode};
use kiln_kernels::profile::{TimeSource, Timing};
use kiln_kernels::{Gpu, GpuBuffer};

use super::{Bound, Case, Suite, kerr};
use crate::cli::Result;

/// A buffer of `n` f32 with a cheap non-zero pattern.
fn filled(gpu: &Gpu, n: usize) -> Result<GpuBuffer> {
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let buf = gpu.alloc(4 * n as u64, "bench input")?;
    gpu.upload(&buf, 0, bytemuck::cast_slice(&data));
    Ok(buf)
}

/// The compute and memory ceilings: each problem grows until one launch takes `target` ms (or a
/// size cap), and the best rate seen is kept.
pub(super) fn ceilings(s: &mut Suite) -> Result<()> {
    let gpu = s.gpu.clone();
    let target = if s.quick { 3.0 } else { 20.0 };
    s.bar.set_message("ceiling: fma");
    // FMA: 16K invocations x 64 iterations to start; iterations grow first (up to 4096, far
    // below lavapipe's 65,535), then invocations (up to 1M).
    let max_n = 1 << 20;
    let out = gpu.alloc(4 * max_n as u64, "fma out")?;
    let (mut n, mut iters) = (1usize << 14, 64u32);
    let mut best: Option<(f64, Case, Timing)> = None;
    loop {
        let flops = bk::fma_flops(n, iters);
        let t = s.time(|| bk::fma_chains(&gpu, &out, n, iters, 0.999, 1e-3))?;
        let rate = flops as f64 / (t.median_ms() * 1e6);
        let case = Case::new("ceiling", format!("{n} inv x {iters} it"), "fma").work(
            flops,
            4 * n as u64,
            Bound::Compute,
        );
        if best.as_ref().is_none_or(|b| rate > b.0) {
            best = Some((rate, case, t.clone()));
        }
        if t.median_ms() >= target || (iters >= 4096 && n >= max_n) {
            break;
        }
        if iters < 4096 {
            iters *= 4;
        } else {
            n *= 4;
        }
    }
    let (gflops, fma_case, fma_t) = best.expect("one fma size was measured");
    drop(out);

    s.bar.set_message("ceiling: copy");
    let limits = gpu.limits();
    let cap = (256u64 << 20)
        .min(limits.max_storage_buffer_binding_size)
        .min(limits.max_buffer_size);
    // Large enough to miss every cache (an H100's L2 holds 50 MB); it grows until a launch
    // takes `target` ms, and the largest size measured gives the ceiling.
    let mut bytes = (if s.quick { 32u64 << 20 } else { 64 << 20 }).min(cap);
    let (copy_case, copy_t) = loop {
        let (src, dst) = (gpu.alloc(bytes, "copy src")?, gpu.alloc(bytes, "copy dst")?);
        let n4 = (bytes / 16) as usize;
        let t = s.time(|| bk::copy_vec4(&gpu, &src, &dst, n4))?;
        if t.median_ms() >= target || bytes * 2 > cap {
            let case = Case::new("ceiling", format!("{} MiB", bytes >> 20), "copy").work(
                0,
                2 * bytes,
                Bound::Memory,
            );
            break (case, t);
        }
        bytes *= 2;
    };
    let gbps = copy_case.bytes as f64 / (copy_t.median_ms() * 1e6);
    s.ceilings = (gflops, gbps);
    s.record(fma_case, &fma_t, Some("compute ceiling".into()));
    s.record(copy_case, &copy_t, Some("memory ceiling".into()));
    Ok(())
}

/// A buffer of `n` f16 with the same pattern as [`filled`] (operands of the f16 matmul rungs).
fn filled_f16(gpu: &Gpu, n: usize) -> Result<GpuBuffer> {
    let data: Vec<half::f16> = (0..n)
        .map(|i| half::f16::from_f32(((i * 7919) % 1000) as f32 * 1e-3 - 0.5))
        .collect();
    let buf = gpu.alloc((2 * n).max(4) as u64, "bench input f16")?;
    let mut bytes = bytemuck::cast_slice::<half::f16, u8>(&data).to_vec();
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    gpu.upload(&buf, 0, &bytes);
    Ok(buf)
}

/// The matmul rungs this adapter can run (the others are named on stderr once).
fn matmul_rungs(s: &Suite) -> Vec<MatmulVariant> {
    MatmulVariant::LADDER
        .into_iter()
        .filter(|v| match v.available(&s.gpu) {
            Ok(()) => true,
            Err(why) => {
                if s.wants("matmul", "", v.name()) {
                    s.bar
                        .suspend(|| eprintln!("matmul {}: not run ({why})", v.name()));
                }
                false
            }
        })
        .collect()
}

/// Matmul: every rung on square products, a batched product and `A @ B^T`; naive is the baseline.
pub(super) fn matmul(s: &mut Suite) -> Result<()> {
    let gpu = s.gpu.clone();
    let rungs = matmul_rungs(s);
    let sq = |n| MatmulDims {
        batch: 1,
        m: n,
        n,
        k: n,
    };
    let mut cases: Vec<(String, MatmulDims, bool)> = vec![];
    let sizes: &[usize] = if s.quick {
        &[256, 512, 1024]
    } else {
        &[256, 512, 1024, 2048]
    };
    for &n in sizes {
        cases.push((format!("{n}x{n}x{n}"), sq(n), false));
    }
    let batched = MatmulDims {
        batch: 8,
        m: 128,
        n: 128,
        k: 64,
    };
    cases.push(("8x(128x64@64x128)".into(), batched, false));
    cases.push(("512x512x512 B^T".into(), sq(512), true));
    for (shape, d, transposed) in cases {
        let any = rungs.iter().any(|v| s.wants("matmul", &shape, v.name()));
        if !any {
            continue;
        }
        let (na, nb) = (d.batch * d.m * d.k, d.batch * d.k * d.n);
        let (a, b) = (filled(&gpu, na)?, filled(&gpu, nb)?);
        let half = rungs.iter().any(|v| v.f16_operands());
        let (a16, b16) = if half {
            (Some(filled_f16(&gpu, na)?), Some(filled_f16(&gpu, nb)?))
        } else {
            (None, None)
        };
        let out = gpu.alloc(4 * (d.batch * d.m * d.n) as u64, "c")?;
        let la = MatLayout::contiguous(d.m, d.k);
        let lb = if transposed {
            MatLayout::transposed(d.k, d.n)
        } else {
            MatLayout::contiguous(d.k, d.n)
        };
        for &v in &rungs {
            // f16 rungs read f16 operands (and accumulate and write f32).
            let (ab, dtype, a, b) = match (&a16, &b16) {
                (Some(a16), Some(b16)) if v.f16_operands() => (2, "f16", a16, b16),
                _ => (4, "f32", &a, &b),
            };
            let bytes = (ab * (na + nb) + 4 * d.batch * d.m * d.n) as u64;
            let mut case = Case::new("matmul", shape.clone(), v.name())
                .work(d.flops(), bytes, Bound::Compute)
                .grouped(v == MatmulVariant::Naive);
            case.dtype = dtype;
            s.run(case, || {
                mk::matmul(&gpu, v, MatRef::new(a, la), MatRef::new(b, lb), &out, 0, d)
            })?;
        }
    }
    Ok(())
}

/// Elementwise add (contiguous vs a transposed operand), relu, row sums (workgroup vs serial)
/// and softmax rows (workgroup vs serial).
pub(super) fn elementwise(s: &mut Suite) -> Result<()> {
    let gpu = s.gpu.clone();
    let side = if s.quick { 1024 } else { 2048 };
    let n = side * side;
    let shape = [side, side];
    let label = format!("{side}x{side}");
    let names = [
        ("add", "b_transposed"),
        ("add", "contiguous"),
        ("relu", "contiguous"),
        ("sum", "serial"),
        ("sum", "workgroup"),
        ("softmax", "serial"),
        ("softmax", "workgroup"),
    ];
    if !names.iter().any(|(op, v)| s.wants(op, &label, v)) {
        return Ok(());
    }
    let (a, b) = (filled(&gpu, n)?, filled(&gpu, n)?);
    let out = gpu.alloc(4 * n as u64, "out")?;
    let f = 4 * n as u64;
    // The strided view of b is the baseline: index arithmetic and uncoalesced reads.
    for (variant, b_strides, base) in [
        ("b_transposed", [1, side], true),
        ("contiguous", [side, 1], false),
    ] {
        let case = Case::new("add", label.clone(), variant)
            .work(n as u64, 3 * f, Bound::Memory)
            .grouped(base);
        let (va, vb) = (
            Strided::contiguous(&a, &shape),
            Strided::new(&b, 0, &b_strides),
        );
        let vo = Strided::contiguous(&out, &shape);
        s.run(case, || {
            let (va, vb, vo) = (va.clone(), vb.clone(), vo.clone());
            ew::binary(&gpu, BinaryOp::Add, &shape, va, vb, vo, 0.0)
        })?;
    }
    let case = Case::new("relu", label.clone(), "contiguous").work(n as u64, 2 * f, Bound::Memory);
    let (va, vo) = (
        Strided::contiguous(&a, &shape),
        Strided::contiguous(&out, &shape),
    );
    s.run(case, || {
        let (va, vo) = (va.clone(), vo.clone());
        ew::unary(&gpu, UnaryOp::Relu, &shape, va, vo, 0.0, 0.0)
    })?;
    // Rows of `side`: the serial strategy (one invocation per row) is the baseline.
    let rows = Rows {
        buf: &a,
        offset: 0,
        rows: side,
        len: side,
        row_stride: side,
        col_stride: 1,
    };
    for (variant, strategy, base) in [
        ("serial", ReduceStrategy::Serial, true),
        ("workgroup", ReduceStrategy::Workgroup, false),
    ] {
        let case = Case::new("sum", label.clone(), variant)
            .work(n as u64, f + 4 * side as u64, Bound::Memory)
            .grouped(base);
        s.run(case, || {
            rk::reduce_rows(&gpu, ReduceOp::Sum, strategy, rows, &out, 0, 1.0)
        })?;
        // max, subtract, exp, sum, divide: about 5 FLOPs per element.
        let case = Case::new("softmax", label.clone(), variant)
            .work(5 * n as u64, 2 * f, Bound::Memory)
            .grouped(base);
        s.run(case, || {
            sk::softmax_rows(&gpu, SoftmaxMode::Softmax, strategy, rows, &out, 0)
        })?;
    }
    Ok(())
}

/// Conv2d forward, grad-input and grad-weight at LeNet and ResNet layer shapes; direct is the
/// baseline (the reference rung).
pub(super) fn conv(s: &mut Suite) -> Result<()> {
    let gpu = s.gpu.clone();
    let k3 = |c_in, c_out, hw| Conv2dShape::new(32, c_in, c_out, (hw, hw), (3, 3)).padded((1, 1));
    let lenet1 = Conv2dShape::new(32, 1, 6, (28, 28), (5, 5));
    let shapes = [
        ("b32 1->6 28x28 k5", lenet1),
        ("b32 16->32 14x14 k3", k3(16, 32, 14)),
        ("b32 64->64 8x8 k3", k3(64, 64, 8)),
    ];
    for (name, sh) in shapes {
        let numel = |d: [usize; 4]| d.iter().product::<usize>();
        let (xn, wn, yn) = (
            numel(sh.input_shape()),
            numel(sh.weight_shape()),
            numel(sh.output_shape()),
        );
        let passes = ["conv2d_fwd", "conv2d_grad_input", "conv2d_grad_weight"];
        let any = passes
            .iter()
            .any(|op| ConvVariant::ALL.iter().any(|v| s.wants(op, name, v.name())));
        if !any {
            continue;
        }
        let x = filled(&gpu, xn)?;
        let w = filled(&gpu, wn)?;
        let bias = filled(&gpu, sh.c_out)?;
        let y = filled(&gpu, yn)?;
        let (out, dx, dw) = (filled(&gpu, yn)?, filled(&gpu, xn)?, filled(&gpu, wn)?);
        let bytes = 4 * (xn + wn + yn) as u64;
        for (pass, op) in passes.iter().enumerate() {
            for v in ConvVariant::ALL {
                let case = Case::new(op, name, v.name())
                    .work(sh.flops(), bytes, Bound::Compute)
                    .grouped(v == ConvVariant::Direct);
                s.run(case, || match pass {
                    0 => ck::conv2d_forward(&gpu, v, &sh, &x, &w, Some(&bias), &out),
                    1 => ck::conv2d_grad_input(&gpu, v, &sh, &w, &y, &dx),
                    _ => ck::conv2d_grad_weight(&gpu, v, &sh, &x, &y, &dw),
                })?;
            }
        }
    }
    Ok(())
}

/// Scaled dot-product attention through `kiln::ops` (inference: no graph is recorded), plain
/// and causal: B4 H4 T128 D32 (the shape of the Burn comparison in BENCHMARKS.md) and B4 H8
/// T256 D64 (`--quick`: B2 H4 T64 D32 only).
pub(super) fn attention(s: &mut Suite) -> Result<()> {
    use crate::Tensor;
    use crate::ops::{AttentionOptions, scaled_dot_product_attention};
    let shapes: &[(usize, usize, usize, usize)] = if s.quick {
        &[(2, 4, 64, 32)]
    } else {
        &[(4, 4, 128, 32), (4, 8, 256, 64)]
    };
    for &(b, h, t, d) in shapes {
        let shape = format!("b{b} h{h} t{t} d{d}");
        if !s.wants("attention", &shape, "sdpa") && !s.wants("attention", &shape, "sdpa causal") {
            continue;
        }
        let gpu = s.gpu.clone();
        let q = Tensor::randn_on(&gpu, &[b, h, t, d], 1)?;
        let k = Tensor::randn_on(&gpu, &[b, h, t, d], 2)?;
        let v = Tensor::randn_on(&gpu, &[b, h, t, d], 3)?;
        let _g = crate::no_grad();
        // Q K^T and P V: 2 * 2 * B H T T D; the minimal traffic is q, k, v and the output.
        let flops = 4 * (b * h * t * t * d) as u64;
        let bytes = 4 * 4 * (b * h * t * d) as u64;
        for (variant, causal) in [("sdpa", false), ("sdpa causal", true)] {
            let opts = AttentionOptions {
                causal,
                ..Default::default()
            };
            let case =
                Case::new("attention", shape.clone(), variant).work(flops, bytes, Bound::Compute);
            s.run(case, || {
                scaled_dot_product_attention(&q, &k, &v, &opts)
                    .map(drop)
                    .map_err(kerr)
            })?;
        }
    }
    Ok(())
}

/// NF4 (QLoRA) matmul, forward and input gradient of M = 512 tokens through a 1024 x 1024
/// layer: every fused configuration against dequantise-then-matmul (the baseline: W expanded
/// to f32 in a temporary buffer, then the tuned matmul). Bytes count the NF4 weight once.
pub(super) fn nf4(s: &mut Suite) -> Result<()> {
    use kiln_kernels::launch::nf4::{self as nk, Nf4Config, Nf4Pass};
    let (m, o, i) = if s.quick {
        (128, 1024, 1024)
    } else {
        (512, 1024, 1024)
    };
    let shape = format!("{m}x{i}->{o}");
    if !s.wants("nf4", &shape, "") && !s.wants("nf4_grad", &shape, "") {
        return Ok(());
    }
    let gpu = s.gpu.clone();
    let w: Vec<f32> = (0..o * i)
        .map(|e| ((e * 7919) % 1000) as f32 * 4e-5 - 0.02)
        .collect();
    let q = kiln_kernels::reference::nf4::quantize(&w, o, i);
    let weight = nk::Nf4Weight::upload(&gpu, &q)?;
    let wb = weight.buffers();
    let x = filled(&gpu, m * i.max(o))?;
    let y = gpu.alloc(4 * (m * i.max(o)) as u64, "y")?;
    let wdq = gpu.alloc(4 * (o * i) as u64, "W dequantised")?;
    let flops = 2 * (m * o * i) as u64;
    let bytes = (q.bytes() + 4 * m * (i + o)) as u64;
    for (op, pass) in [("nf4", Nf4Pass::Forward), ("nf4_grad", Nf4Pass::GradInput)] {
        let (dims, lw) = pass.dense(m, o, i);
        let la = MatLayout::contiguous(m, dims.k);
        let mcfg = kiln_kernels::tune::matmul_choice(&gpu, dims, la, lw, false);
        let case = Case::new(op, shape.clone(), "dequant+matmul")
            .work(flops, bytes, Bound::Compute)
            .grouped(true);
        s.run(case, || {
            nk::dequantize_nf4(&gpu, wb, &wdq)?;
            let (a, b) = (MatRef::new(&x, la), MatRef::new(&wdq, lw));
            mk::matmul(&gpu, mcfg, a, b, &y, 0, dims)
        })?;
        for cfg in Nf4Config::candidates(&gpu, pass) {
            let mut case = Case::new(op, shape.clone(), &cfg.label())
                .work(flops, bytes, Bound::Compute)
                .grouped(false);
            if cfg.is_f16() {
                case.dtype = "f16";
            }
            s.run(case, || nk::matmul_nf4_pass(&gpu, cfg, pass, wb, &x, m, &y))?;
        }
    }
    Ok(())
}

/// Per-dispatch overhead: `count` tiny adds recorded into one batch and synced once, against
/// the same adds each followed by a device sync. Wall time, so host recording counts.
pub(super) fn dispatch_overhead(s: &mut Suite) -> Result<()> {
    let count = if s.quick { 200 } else { 1000 };
    let len = 256;
    let shape = format!("{count}x add {len}");
    if !s.wants("dispatch", &shape, "sync_each") && !s.wants("dispatch", &shape, "batched") {
        return Ok(());
    }
    let gpu = s.gpu.clone();
    let (a, b) = (filled(&gpu, len)?, filled(&gpu, len)?);
    let out = gpu.alloc(4 * len as u64, "out")?;
    let add = || {
        ew::binary(
            &gpu,
            BinaryOp::Add,
            &[len],
            Strided::contiguous(&a, &[len]),
            Strided::contiguous(&b, &[len]),
            Strided::contiguous(&out, &[len]),
            0.0,
        )
    };
    let wall = kiln_kernels::profile::Profiler::wall_clock();
    for (variant, sync_each, base) in [("sync_each", true, true), ("batched", false, false)] {
        if !s.wants("dispatch", &shape, variant) {
            continue;
        }
        s.bar.set_message(format!("dispatch {shape} {variant}"));
        let iters = if s.quick { 3 } else { 5 };
        let t = wall.time(&gpu, 1, iters, || {
            for _ in 0..count {
                add()?;
                if sync_each {
                    gpu.sync()?;
                }
            }
            Ok(())
        })?;
        let us = t.median_ms() * 1e3 / count as f64;
        let case = Case::new("dispatch", shape.clone(), variant)
            .work(
                (count * len) as u64,
                (count * 3 * 4 * len) as u64,
                Bound::Memory,
            )
            .grouped(base);
        s.record(case, &t, Some(format!("{us:.1} us per dispatch")));
    }
    Ok(())
}

/// One Adam training step of the default MLP and small CNN, split into forward (loss),
/// backward and optimizer (step + zero_grad) with a device sync between phases, and unsplit.
pub(super) fn train_steps(s: &mut Suite) -> Result<()> {
    super::train_step::run(s)
}

/// Re-exported for [`super::train_step`]: a timing from wall-clock samples.
pub(super) fn wall_timing(samples_ms: Vec<f64>) -> Timing {
    Timing {
        samples_ms,
        source: TimeSource::WallClock,
    }
}
