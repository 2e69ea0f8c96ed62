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

/// Dispatches per submitted batch.
pub const MAX_DISPATCHES: usize = 1024;
const ARENA_BYTES: u64 = 1 << 20;

struct State {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    dispatches: usize,
    submitted_batches: u64,
    total_dispatches: u64,
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

    /// Record one dispatch of `pipeline` (its wgpu objects labelled `label`, the kernel key) with
    /// `params` at binding 0 and `buffers` at bindings 1...
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch<P: Pod>(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        params: &P,
        buffers: &[&GpuBuffer],
        workgroups: [u32; 3],
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
        let enc = s.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln.batch"),
            })
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
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
        let Some(enc) = s.encoder.take() else {
            return;
        };
        if !s.params.is_empty() {
            queue.write_buffer(&self.arena, 0, &s.params);
        }
        queue.submit(Some(enc.finish()));
        s.params.clear();
        s.dispatches = 0;
        s.submitted_batches += 1;
    }
}
