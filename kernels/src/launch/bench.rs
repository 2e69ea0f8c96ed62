//! Launchers for the ceiling kernels of `kiln bench`: an FMA-bound kernel (`bench/fma.wgsl`) and
//! a plain vec4 copy (`bench/copy.wgsl`).
//!
//! They measure what the adapter can do, not what kiln's kernels do: `kiln bench` reports every
//! other kernel as a percentage of these two measured ceilings (GFLOP/s and GB/s) and draws them
//! as the roofline's two lines.
//!
//! - [`fma_chains`]: `n` invocations each run `iters` loop iterations of [`FMA_PER_ITER`]
//!   independent-chain fmas, so the work is `2 * FMA_PER_ITER * iters * n` FLOPs
//!   ([`fma_flops`]) and the memory traffic (4 bytes per invocation) is negligible.
//! - [`copy_vec4`]: `dst = src` over `n4` vec4 words, `32 * n4` bytes moved.
//!
//! See also:
//! - shaders: `shaders/bench/`
//! - user: `kiln bench` (`src/cli/bench.rs`) and [`crate::profile`]; no CPU twin (tests check the closed forms)

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

/// Scalar fmas per loop iteration of `fma_chains` (its WGSL `UNROLL * CHAINS * 4`).
pub const FMA_PER_ITER: u64 = 8 * 4 * 4;

/// Most loop iterations one invocation may run: lavapipe stops an invocation's loops after
/// 65,535 iterations in total and silently returns partial results.
pub const MAX_ITERS: u32 = 65_535;

crate::kernel_params! {
    /// Params of `bench/fma.wgsl`.
    pub struct FmaParams in "bench/fma.wgsl" as "FmaParams" {
        /// Invocations doing work.
        pub n: u32,
        /// Loop iterations per invocation (at most [`MAX_ITERS`]).
        pub iters: u32,
        /// Multiplier of every chain, |a| < 1.
        pub a: f32,
        /// Addend of every chain.
        pub b: f32,
    }
}

crate::kernel_params! {
    /// Params of `bench/copy.wgsl`.
    pub struct CopyParams in "bench/copy.wgsl" as "CopyParams" {
        /// vec4 words to copy.
        pub n4: u32,
        /// Padding.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }
}

/// FLOPs of one [`fma_chains`] launch of `n` invocations and `iters` iterations.
pub fn fma_flops(n: usize, iters: u32) -> u64 {
    2 * FMA_PER_ITER * iters as u64 * n as u64
}

/// The value `out[i]` of [`fma_chains`] holds, computed on the CPU in f64 (the kernel's twin).
pub fn fma_reference(i: usize, iters: u32, a: f64, b: f64) -> f64 {
    let s = (i % 1024) as f64 * 1e-3;
    let mut total = 0.0;
    for chain in 0..4 {
        for lane in 0..4 {
            let mut x = s + 0.1 * lane as f64 + 0.01 * chain as f64;
            for _ in 0..iters * 8 {
                x = x * a + b;
            }
            total += x;
        }
    }
    total
}

/// `out[i] = ` the sum of 16 fma chains after `iters` iterations, for `i` in `0..n`
/// (`bench/fma.wgsl:fma_chains`).
///
/// - `out`: (n,) f32.
///
/// Errors when `iters` is 0 or above [`MAX_ITERS`], `|a| >= 1`, or `out` is too small.
pub fn fma_chains(gpu: &Gpu, out: &GpuBuffer, n: usize, iters: u32, a: f32, b: f32) -> Result<()> {
    let key = KernelKey::new("bench/fma.wgsl", "fma_chains");
    if iters == 0 || iters > MAX_ITERS {
        return Err(KernelError::launch(
            &key,
            format!("iters must be in 1..={MAX_ITERS} (lavapipe's loop limit), got {iters}"),
        ));
    }
    if a.abs() >= 1.0 || !a.is_finite() || !b.is_finite() {
        return Err(KernelError::launch(
            &key,
            format!("need |a| < 1 and finite b, got a={a}, b={b}"),
        ));
    }
    if n == 0 || n > u32::MAX as usize || (n as u64) * 4 > out.capacity() {
        return Err(KernelError::launch(
            &key,
            format!(
                "n={n} invocations need {} bytes of output, buffer holds {}",
                n as u64 * 4,
                out.capacity()
            ),
        ));
    }
    let p = FmaParams {
        n: n as u32,
        iters,
        a,
        b,
    };
    gpu.dispatch(&key, &p, &[out], grid_1d(n, WG));
    Ok(())
}

/// `dst[i] = src[i]` for `i` in `0..n4` vec4 words (`bench/copy.wgsl:copy_vec4`).
///
/// - `src`, `dst`: (n4 * 4,) f32, at least `16 * n4` bytes each.
pub fn copy_vec4(gpu: &Gpu, src: &GpuBuffer, dst: &GpuBuffer, n4: usize) -> Result<()> {
    let key = KernelKey::new("bench/copy.wgsl", "copy_vec4");
    let bytes = 16 * n4 as u64;
    if n4 == 0 || n4 > u32::MAX as usize || bytes > src.capacity() || bytes > dst.capacity() {
        return Err(KernelError::launch(
            key,
            format!(
                "n4={n4} vec4 words ({bytes} bytes) do not fit src ({} bytes) and dst ({} bytes)",
                src.capacity(),
                dst.capacity()
            ),
        ));
    }
    let p = CopyParams {
        n4: n4 as u32,
        ..Default::default()
    };
    gpu.dispatch(&key, &p, &[src, dst], grid_1d(n4, WG));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaders::wgsl_const;

    #[test]
    fn fma_per_iter_matches_shader() {
        let f = "bench/fma.wgsl";
        let per = wgsl_const(f, "UNROLL") * wgsl_const(f, "CHAINS") * 4;
        assert_eq!(per as u64, FMA_PER_ITER);
        // The unrolled body really holds UNROLL * CHAINS vec4 fmas.
        let body = crate::shaders::raw(f).unwrap();
        let fmas = body.matches("= fma(").count() as u64;
        assert_eq!(fmas * 4, FMA_PER_ITER);
    }

    #[test]
    fn fma_and_copy_match_cpu() {
        let gpu = Gpu::global().expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
        let n = 1029;
        let out = gpu.alloc(4 * n as u64, "fma out").unwrap();
        let (a, b) = (0.75f32, 0.125f32);
        for iters in [1u32, 3] {
            fma_chains(&gpu, &out, n, iters, a, b).unwrap();
            let got: Vec<f32> =
                bytemuck::cast_slice(&gpu.read(&out, 0, 4 * n as u64).unwrap()).to_vec();
            for i in [0, 1, 7, 17, 129, n - 1] {
                let want = fma_reference(i, iters, a as f64, b as f64);
                assert!(
                    (got[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "fma_chains iters {iters} out[{i}] = {} want {want}",
                    got[i]
                );
            }
        }
        assert!(fma_chains(&gpu, &out, n, MAX_ITERS + 1, a, b).is_err());
        let too_many = (out.capacity() / 4) as usize + 1;
        assert!(fma_chains(&gpu, &out, too_many, 1, a, b).is_err());

        let n4 = 1031;
        let data: Vec<f32> = (0..4 * n4).map(|i| i as f32 * 0.5 - 7.0).collect();
        let src = gpu.alloc(16 * n4 as u64, "copy src").unwrap();
        gpu.upload(&src, 0, bytemuck::cast_slice(&data));
        let dst = gpu.alloc(16 * n4 as u64, "copy dst").unwrap();
        copy_vec4(&gpu, &src, &dst, n4).unwrap();
        let got: Vec<f32> =
            bytemuck::cast_slice(&gpu.read(&dst, 0, 16 * n4 as u64).unwrap()).to_vec();
        assert_eq!(got, data);
        let too_many = (src.capacity() / 16) as usize + 1;
        assert!(copy_vec4(&gpu, &src, &dst, too_many).is_err());
    }
}
