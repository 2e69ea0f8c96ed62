//! Batched recording of dispatches.
//!
//! Every launch is recorded into one pending `CommandEncoder` (a compute pass per dispatch) and
//! its params struct is appended to a host-side byte arena. Nothing reaches the GPU until
//! `Gpu::flush`: on readback, before a host upload, or when the batch is full
//! ([`MAX_DISPATCHES`] dispatches or a full arena). At flush the arena is written to one uniform
//! buffer with a single `write_buffer` (which the queue runs before the batch), then the batch is
//! submitted. No launch waits for the device.

use std::sync::Mutex;

use bytemuck::Pod;

use crate::buffer_pool::GpuBuffer;
use crate::capture::{BatchTimes, Capture, RecordExtra, Recorder};
use crate::pipeline::KernelKey;

/// Dispatches per submitted batch.
pub const MAX_DISPATCHES: usize = 1024;
const ARENA_BYTES: u64 = 1 << 20;

struct State {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    dispatches: usize,
    submitted_batches: u64,
    total_dispatches: u64,
    /// The capture in progress, if any ([`crate::capture`]).
    capture: Option<Recorder>,
}

pub(crate) struct Encoder {
    state: Mutex<State>,
    arena: wgpu::Buffer,
    align: usize,
}

/// Counters of the batching machinery (for `kiln bench` and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderStats {
    /// Batches submitted so far.
    pub submitted_batches: u64,
    /// Dispatches recorded so far.
    pub total_dispatches: u64,
    /// Dispatches waiting in the pending batch.
    pub pending: usize,
}

impl Encoder {
    pub(crate) fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Self {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln.params_arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Encoder {
            state: Mutex::new(State {
                encoder: None,
                params: Vec::with_capacity(64 << 10),
                dispatches: 0,
                submitted_batches: 0,
                total_dispatches: 0,
                capture: None,
            }),
            arena,
            align: limits.min_uniform_buffer_offset_alignment.max(16) as usize,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> EncoderStats {
        let s = self.lock();
        EncoderStats {
            submitted_batches: s.submitted_batches,
            total_dispatches: s.total_dispatches,
            pending: s.dispatches,
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        let s = self.lock();
        s.encoder.is_some()
    }

    /// Start capturing (see [`crate::capture`]); a capture already running goes on.
    pub(crate) fn start_capture(&self, device: &wgpu::Device, queue: &wgpu::Queue, ts: bool) {
        let mut s = self.lock();
        if s.capture.is_none() {
            // Timestamp slots count from the start of a batch: begin with an empty one.
            self.submit(queue, &mut s);
            s.capture = Some(Recorder::new(device, ts, MAX_DISPATCHES));
        }
    }

    /// Stop capturing: submit what is pending, wait for the device and return what was seen.
    pub(crate) fn finish_capture(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
    ) -> Option<Capture> {
        let rec = {
            let mut s = self.lock();
            self.submit(queue, &mut s);
            s.capture.take()?
        };
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
        Some(rec.finish(device, queue.get_timestamp_period() as f64))
    }

    /// True while a capture runs.
    pub(crate) fn capturing(&self) -> bool {
        self.lock().capture.is_some()
    }

    /// Note a host upload of `bytes` that took from `t0` until now, while capturing.
    pub(crate) fn note_upload(&self, t0: std::time::Instant, bytes: u64) {
        let mut s = self.lock();
        if let Some(rec) = s.capture.as_mut() {
            let since = |t: std::time::Instant| t.duration_since(rec.start).as_nanos() as u64;
            let host_ns = (since(t0), rec.now_ns());
            rec.uploads
                .push(crate::capture::UploadRecord { host_ns, bytes });
        }
    }

    /// Record one dispatch of `pipeline` (its wgpu objects labelled `label`, the label of `key`)
    /// with `params` at binding 0 and `buffers` at bindings 1...; `live_bytes` is asked only
    /// while capturing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch<P: Pod>(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pipeline: &wgpu::ComputePipeline,
        (key, label): (&KernelKey, &str),
        params: &P,
        buffers: &[&GpuBuffer],
        workgroups: [u32; 3],
        live_bytes: &dyn Fn() -> u64,
    ) {
        let bytes = bytemuck::bytes_of(params);
        let size = bytes.len().div_ceil(16) * 16;
        let mut s = self.lock();
        let start = s.params.len().div_ceil(self.align) * self.align;
        if start + size > ARENA_BYTES as usize || s.dispatches >= MAX_DISPATCHES {
            self.submit(queue, &mut s);
        }
        let start = s.params.len().div_ceil(self.align) * self.align;
        s.params.resize(start, 0);
        s.params.extend_from_slice(bytes);
        s.params.resize(start + size, 0);

        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset: start as u64,
                size: std::num::NonZeroU64::new(size as u64),
            }),
        });
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.raw().as_entire_binding(),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &layout,
            entries: &entries,
        });
        let slot = 2 * s.dispatches as u32;
        let state = &mut *s;
        let mut timestamp_writes = None;
        if let Some(rec) = state.capture.as_mut() {
            let extra = RecordExtra {
                workgroups,
                bytes_bound: buffers.iter().map(|b| b.capacity()).sum(),
                params: bytes,
                live_bytes: live_bytes(),
            };
            rec.push(key, label, extra);
            timestamp_writes = rec
                .timestamps
                .as_ref()
                .map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.set,
                    beginning_of_pass_write_index: Some(slot),
                    end_of_pass_write_index: Some(slot + 1),
                });
        }
        let enc = state.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln.batch"),
            })
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        s.dispatches += 1;
        s.total_dispatches += 1;
    }

    /// Record a buffer-to-buffer copy into the pending batch.
    pub(crate) fn copy(
        &self,
        device: &wgpu::Device,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        let mut s = self.lock();
        let enc = s.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln.batch"),
            })
        });
        enc.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    pub(crate) fn flush(&self, queue: &wgpu::Queue) {
        let mut s = self.lock();
        self.submit(queue, &mut s);
    }

    fn submit(&self, queue: &wgpu::Queue, s: &mut State) {
        let Some(mut enc) = s.encoder.take() else {
            return;
        };
        if !s.params.is_empty() {
            queue.write_buffer(&self.arena, 0, &s.params);
        }
        let ticks = s
            .capture
            .as_ref()
            .and_then(|rec| resolve_ticks(rec, &mut enc, s.dispatches));
        let t0 = s.capture.as_ref().map(|rec| rec.now_ns());
        queue.submit(Some(enc.finish()));
        if let (Some(rec), Some(t0)) = (s.capture.as_mut(), t0) {
            let first = std::mem::replace(&mut rec.batch_first, rec.records.len());
            let times = match ticks {
                Some(buf) => BatchTimes::Ticks(buf, t0),
                None => {
                    // No timestamps: wait for this batch (capture only) and time it.
                    let _ = rec.device.poll(wgpu::PollType::wait_indefinitely());
                    BatchTimes::Wall(t0, rec.now_ns())
                }
            };
            if first < rec.records.len() {
                rec.batches.push((first, times));
            }
        }
        s.params.clear();
        s.dispatches = 0;
        s.submitted_batches += 1;
    }
}

/// Record the resolve of a batch's `dispatches` timestamp pairs into a fresh readable buffer
/// (read at the end of the capture); `None` without timestamps or dispatches.
fn resolve_ticks(
    rec: &Recorder,
    enc: &mut wgpu::CommandEncoder,
    dispatches: usize,
) -> Option<wgpu::Buffer> {
    let t = rec.timestamps.as_ref()?;
    if dispatches == 0 {
        return None;
    }
    let count = 2 * dispatches as u32;
    let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
    let out = rec.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("kiln.capture.ticks"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    enc.resolve_query_set(&t.set, 0..count, &t.resolve, 0);
    enc.copy_buffer_to_buffer(&t.resolve, 0, &out, 0, bytes);
    Some(out)
}
