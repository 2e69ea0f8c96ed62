//! Timing of GPU work: timestamp queries where the adapter has `TIMESTAMP_QUERY`, else wall time
//! around a device sync.
//!
//! ```no_run
//! use kiln_kernels::{Gpu, profile::Profiler, launch::bench};
//! let gpu = Gpu::new()?;
//! let (src, dst) = (gpu.alloc(1 << 24, "src")?, gpu.alloc(1 << 24, "dst")?);
//! let t = Profiler::new(&gpu).time(&gpu, 2, 10, || bench::copy_vec4(&gpu, &src, &dst, 1 << 20))?;
//! println!("copy 16 MiB: median {:.3} ms ({:?})", t.median_ms(), t.source);
//! # Ok::<(), kiln_kernels::KernelError>(())
//! ```
//!
//! How one GPU-timed sample is taken. The closure records its dispatches into the pending batch
//! (nothing is submitted yet); then a command buffer holding one empty compute pass that writes
//! timestamp `2i` is submitted, then the batch, then another empty pass writing `2i + 1`. wgpu
//! writes pass timestamps at the bottom of the pipe, so each is taken once all earlier work in
//! the queue has finished: the difference is the GPU time of the closure's work plus one
//! submission's latency, without the host-side recording. Samples are not separated by syncs,
//! so the GPU never idles waiting for the host between them.
//!
//! A closure that submits by itself (it records more than [`crate::encoder::MAX_DISPATCHES`]
//! dispatches, reads back or syncs) would put work before the first timestamp; the first warm-up
//! run detects that through the encoder counters and the measurement falls back to wall time.

use std::time::Instant;

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;

/// Where a [`Timing`]'s samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// GPU timestamp queries around the closure's submitted work.
    GpuTimestamps,
    /// Host wall time of recording the closure's work plus a device sync.
    WallClock,
}

impl TimeSource {
    /// Short name (`gpu` or `wall`), as `kiln bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::GpuTimestamps => "gpu",
            Self::WallClock => "wall",
        }
    }
}

/// The samples of one measurement, in milliseconds, in the order taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// One duration per timed iteration (ms).
    pub samples_ms: Vec<f64>,
    /// How the samples were taken.
    pub source: TimeSource,
}

impl Timing {
    /// The median sample (mean of the middle two for an even count); NaN when empty.
    pub fn median_ms(&self) -> f64 {
        let mut s = self.samples_ms.clone();
        if s.is_empty() {
            return f64::NAN;
        }
        s.sort_by(f64::total_cmp);
        let m = s.len() / 2;
        if s.len() % 2 == 1 {
            s[m]
        } else {
            0.5 * (s[m - 1] + s[m])
        }
    }

    /// The fastest sample; NaN when empty.
    pub fn min_ms(&self) -> f64 {
        self.samples_ms
            .iter()
            .copied()
            .min_by(f64::total_cmp)
            .unwrap_or(f64::NAN)
    }

    /// The mean sample; NaN when empty.
    pub fn mean_ms(&self) -> f64 {
        self.samples_ms.iter().sum::<f64>() / self.samples_ms.len() as f64
    }
}

/// Times closures that record GPU work. See the [module docs](self) for the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profiler {
    source: TimeSource,
}

/// Timestamps per query set: wgpu allows at most 4096 queries in one set.
const MAX_QUERIES: u32 = 4096;

impl Profiler {
    /// GPU timestamps when `gpu` has `TIMESTAMP_QUERY` and a non-zero timestamp period, else
    /// wall time.
    pub fn new(gpu: &Gpu) -> Profiler {
        let source = if gpu.has_timestamps() && gpu.queue().get_timestamp_period() > 0.0 {
            TimeSource::GpuTimestamps
        } else {
            TimeSource::WallClock
        };
        Profiler { source }
    }

    /// Always wall time around a device sync (for closures that sync by themselves, or to
    /// include host-side recording in the time).
    pub fn wall_clock() -> Profiler {
        Profiler {
            source: TimeSource::WallClock,
        }
    }

    /// The method this profiler uses when the closure allows it.
    pub fn source(&self) -> TimeSource {
        self.source
    }

    /// Run `launch` `max(warmup, 1)` times untimed (the first run also tells whether it submits
    /// by itself), then `iters` times timed (`iters >= 1`).
    ///
    /// `launch` records GPU work (launcher calls); it must not depend on earlier iterations'
    /// results being read back. Errors from `launch` or the device are returned as they are.
    pub fn time<F>(&self, gpu: &Gpu, warmup: usize, iters: usize, mut launch: F) -> Result<Timing>
    where
        F: FnMut() -> Result<()>,
    {
        if iters == 0 {
            return Err(KernelError::launch(
                "profile",
                "Profiler::time needs at least one timed iteration",
            ));
        }
        gpu.sync()?;
        // The first warm-up run also tells whether the closure submits work by itself.
        let before = gpu.encoder_stats().submitted_batches;
        launch()?;
        let submits_itself = gpu.encoder_stats().submitted_batches != before;
        gpu.sync()?;
        for _ in 1..warmup {
            launch()?;
        }
        gpu.sync()?;
        if self.source == TimeSource::GpuTimestamps && !submits_itself {
            time_gpu(gpu, iters, &mut launch)
        } else {
            time_wall(gpu, iters, &mut launch)
        }
    }
}

impl Gpu {
    /// Start capturing every dispatch of this device (see [`crate::capture`]): off by default,
    /// and free when off. GPU timestamps are written where the device has `TIMESTAMP_QUERY`.
    /// Work recorded before is submitted first.
    pub fn start_capture(&self) {
        self.start_capture_with(true);
    }

    /// [`Gpu::start_capture`], with `timestamps: false` timing as an adapter without
    /// `TIMESTAMP_QUERY` does (each submission waited for, its wall time split over its
    /// dispatches and marked estimated); `true` uses timestamps where the adapter has them.
    pub fn start_capture_with(&self, timestamps: bool) {
        let ts = timestamps && self.has_timestamps() && self.queue().get_timestamp_period() > 0.0;
        self.encoder.start_capture(self.device(), self.queue(), ts);
    }

    /// Stop capturing: submit pending work, wait for the device, and return every dispatch
    /// recorded since [`Gpu::start_capture`] with its times and costs (`None` when no capture
    /// ran).
    pub fn finish_capture(&self) -> Option<crate::capture::Capture> {
        let mut c = self.encoder.finish_capture(self.device(), self.queue())?;
        for r in &mut c.dispatches {
            r.cost = crate::launch::cost::of(r);
        }
        Some(c)
    }

    /// True while [`Gpu::start_capture`] is in effect.
    pub fn capturing(&self) -> bool {
        self.encoder.capturing()
    }
}

fn time_wall(gpu: &Gpu, iters: usize, launch: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
    let mut samples_ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        launch()?;
        gpu.sync()?;
        samples_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timing {
        samples_ms,
        source: TimeSource::WallClock,
    })
}

/// Submit a command buffer with one empty compute pass that writes timestamp `index`.
fn mark(gpu: &Gpu, set: &wgpu::QuerySet, index: u32) {
    let mut enc = gpu
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("kiln.profile.mark"),
        });
    drop(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("kiln.profile.mark"),
        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: None,
        }),
    }));
    gpu.queue().submit(Some(enc.finish()));
}

fn time_gpu(gpu: &Gpu, iters: usize, launch: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
    let period_ns = gpu.queue().get_timestamp_period() as f64;
    let per_set = (MAX_QUERIES / 2) as usize;
    let set_len = (2 * iters.min(per_set)) as u32;
    let device = gpu.device();
    let set = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kiln.profile"),
        ty: wgpu::QueryType::Timestamp,
        count: set_len,
    });
    let resolve_usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
    let resolve = ticks_buffer(gpu, "kiln.profile.resolve", set_len, resolve_usage);
    let mut samples_ms = Vec::with_capacity(iters);
    let mut done = 0;
    while done < iters {
        let chunk = (iters - done).min(per_set);
        for i in 0..chunk as u32 {
            launch()?;
            mark(gpu, &set, 2 * i);
            gpu.flush();
            mark(gpu, &set, 2 * i + 1);
        }
        let ticks = read_ticks(gpu, &set, &resolve, 2 * chunk as u32)?;
        for pair in ticks.chunks_exact(2) {
            let dt = pair[1].saturating_sub(pair[0]) as f64 * period_ns;
            samples_ms.push(dt * 1e-6);
        }
        done += chunk;
    }
    Ok(Timing {
        samples_ms,
        source: TimeSource::GpuTimestamps,
    })
}

/// A buffer of `count` timestamps (8 bytes each) with `usage`.
fn ticks_buffer(gpu: &Gpu, label: &str, count: u32, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: count as u64 * wgpu::QUERY_SIZE as u64,
        usage,
        mapped_at_creation: false,
    })
}

/// Resolve the first `count` timestamps of `set` and read them back.
fn read_ticks(
    gpu: &Gpu,
    set: &wgpu::QuerySet,
    resolve: &wgpu::Buffer,
    count: u32,
) -> Result<Vec<u64>> {
    let device = gpu.device();
    let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
    let staging_usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    let staging = ticks_buffer(gpu, "kiln.profile.readback", count, staging_usage);
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("kiln.profile.resolve"),
    });
    enc.resolve_query_set(set, 0..count, resolve, 0);
    enc.copy_buffer_to_buffer(resolve, 0, &staging, 0, bytes);
    gpu.queue().submit(Some(enc.finish()));
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    let fail = |e: String| KernelError::Device {
        context: "reading timestamp queries".into(),
        message: e,
    };
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| fail(e.to_string()))?;
    rx.recv()
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    let data = staging
        .get_mapped_range(..)
        .map_err(|e| fail(format!("{e:?}")))?;
    let ticks = bytemuck::cast_slice::<u8, u64>(&data).to_vec();
    drop(data);
    staging.unmap();
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::bench;

    #[test]
    fn median_min_mean() {
        let t = Timing {
            samples_ms: vec![3.0, 1.0, 2.0, 10.0],
            source: TimeSource::WallClock,
        };
        assert_eq!(t.median_ms(), 2.5);
        assert_eq!(t.min_ms(), 1.0);
        assert_eq!(t.mean_ms(), 4.0);
        let odd = Timing {
            samples_ms: vec![5.0, 1.0, 2.0],
            ..t
        };
        assert_eq!(odd.median_ms(), 2.0);
    }

    /// A copy of 8x the bytes must take clearly longer, with either time source.
    #[test]
    fn bigger_copy_takes_longer() {
        // A private device: work other tests submit on the shared one would look like this
        // closure submitting by itself and switch the profiler to wall time.
        let gpu = Gpu::new().expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
        let small = 1 << 17; // vec4 words: 2 MiB
        let big = 8 * small; // 16 MiB
        let src = gpu.alloc(16 * big as u64, "src").unwrap();
        let dst = gpu.alloc(16 * big as u64, "dst").unwrap();
        for profiler in [Profiler::new(&gpu), Profiler::wall_clock()] {
            let t = |n4: usize| {
                profiler
                    .time(&gpu, 2, 7, || bench::copy_vec4(&gpu, &src, &dst, n4))
                    .unwrap()
            };
            let (ts, tb) = (t(small), t(big));
            assert_eq!(ts.samples_ms.len(), 7);
            assert_eq!(ts.source, profiler.source());
            assert!(ts.min_ms() > 0.0, "{ts:?}");
            assert!(
                tb.median_ms() > 2.0 * ts.median_ms(),
                "{:?}: 16 MiB copy {:.4} ms vs 2 MiB {:.4} ms",
                profiler.source(),
                tb.median_ms(),
                ts.median_ms()
            );
        }
    }

    #[test]
    fn closure_that_syncs_falls_back_to_wall_time() {
        // A private device: work other tests submit on the shared one would look like this
        // closure submitting by itself and switch the profiler to wall time.
        let gpu = Gpu::new().expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
        let out = gpu.alloc(4 * 256, "out").unwrap();
        let t = Profiler::new(&gpu)
            .time(&gpu, 1, 3, || {
                bench::fma_chains(&gpu, &out, 256, 4, 0.5, 0.25)?;
                gpu.sync()
            })
            .unwrap();
        assert_eq!(t.source, TimeSource::WallClock);
        assert!(Profiler::new(&gpu).time(&gpu, 0, 0, || Ok(())).is_err());
    }
}
