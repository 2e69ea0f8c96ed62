//! Allocation, host upload and readback on [`Gpu`].

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::memory::{Category, MemoryStats};

impl Gpu {
    /// A pooled storage buffer of at least `bytes` bytes; `what` names it in errors. The memory
    /// ledger counts it in the current [`crate::memory::scope`]'s category, else as workspace.
    pub fn alloc(&self, bytes: u64, what: &str) -> Result<GpuBuffer> {
        self.alloc_as(bytes, what, Category::Workspace)
    }

    /// [`Gpu::alloc`] counted as `default` when no [`crate::memory::scope`] is open.
    pub fn alloc_as(&self, bytes: u64, what: &str, default: Category) -> Result<GpuBuffer> {
        let limit = self
            .limits()
            .max_storage_buffer_binding_size
            .min(self.limits().max_buffer_size);
        let class = crate::buffer_pool::size_class(bytes);
        if class > limit {
            return Err(KernelError::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
            });
        }
        let category = crate::memory::current().unwrap_or(default);
        self.pool.get(&self.device, bytes, what, category)
    }

    /// The pool's counters by category (live, peak, cached, the cap); no device sync.
    pub fn memory_stats(&self) -> MemoryStats {
        self.pool.stats()
    }

    /// Cap the pooled device memory at `bytes` (`None`: no cap; `KILN_MAX_MEMORY` sets it when
    /// the device opens). Allocations over it fail with [`KernelError::OutOfMemory`].
    pub fn set_max_memory(&self, bytes: Option<u64>) {
        self.pool.set_cap(bytes)
    }

    /// Start or end a dry run: allocations are counted (not held to the cap) but not made,
    /// dispatches, copies and
    /// uploads are skipped and reads return zeros, so a training step can be run to measure
    /// what it would allocate (`kiln train --dry-run`). Tensors made during a dry run hold no
    /// data; drop them before ending it.
    pub fn set_dry_run(&self, on: bool) {
        self.pool.set_dry_run(on)
    }

    /// True during a dry run ([`Gpu::set_dry_run`]).
    pub fn is_dry_run(&self) -> bool {
        self.pool.is_dry_run()
    }

    /// Copy host bytes into `dst` at byte `offset`.
    ///
    /// Pending dispatches are submitted first: `write_buffer` runs at the start of the next
    /// submission, and a pooled buffer may still be read by recorded work.
    pub fn upload(&self, dst: &GpuBuffer, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() || self.is_dry_run() {
            return;
        }
        if self.encoder.has_pending() {
            self.flush();
        }
        let t0 = std::time::Instant::now();
        let padded = bytes.len().div_ceil(4) * 4;
        if padded == bytes.len() {
            self.queue.write_buffer(dst.raw(), offset, bytes);
        } else {
            let mut v = bytes.to_vec();
            v.resize(padded, 0);
            self.queue.write_buffer(dst.raw(), offset, &v);
        }
        self.encoder.note_upload(t0, bytes.len() as u64);
    }

    /// Read `len` bytes at byte `offset` of `src` back to the host.
    ///
    /// This submits all pending work and waits for it: call it once per step, not per op.
    pub fn read(&self, src: &GpuBuffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 || self.is_dry_run() {
            return Ok(vec![0; len as usize]);
        }
        // Copies must start and end on 4-byte boundaries.
        let start = offset / 4 * 4;
        let end = (offset + len).div_ceil(4) * 4;
        let size = end - start;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln.readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.encoder
            .copy(&self.device, src.raw(), start, &staging, 0, size);
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| KernelError::Readback(e.to_string()))?
            .map_err(|e| KernelError::Readback(e.to_string()))?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| KernelError::Readback(format!("{e:?}")))?;
        let lo = (offset - start) as usize;
        let out = data[lo..lo + len as usize].to_vec();
        drop(data);
        staging.unmap();
        Ok(out)
    }

    /// Record a copy of `bytes` bytes between two pooled buffers (in queue order).
    pub fn copy(
        &self,
        src: &GpuBuffer,
        src_offset: u64,
        dst: &GpuBuffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        if bytes > 0 && !self.is_dry_run() {
            self.encoder.copy(
                &self.device,
                src.raw(),
                src_offset,
                dst.raw(),
                dst_offset,
                bytes,
            );
        }
    }

    /// Record one kernel dispatch (used by the launchers in [`crate::launch`]).
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        key: &crate::KernelKey,
        params: &P,
        buffers: &[&GpuBuffer],
        workgroups: [u32; 3],
    ) {
        if self.is_dry_run() {
            return;
        }
        let pipeline = self.pipelines.get(&self.device, key);
        let label = key.label();
        self.encoder.dispatch(
            &self.device,
            &self.queue,
            &pipeline,
            (key, &label),
            params,
            buffers,
            workgroups,
            &|| self.pool.live_bytes(),
        );
    }

    /// Batching counters.
    pub fn encoder_stats(&self) -> crate::encoder::EncoderStats {
        self.encoder.stats()
    }

    /// Number of compiled pipelines in the cache.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// Pool counters: (live bytes, peak bytes, cached bytes, fresh allocations).
    pub fn pool_stats(&self) -> (u64, u64, u64, u64) {
        (
            self.pool.live_bytes(),
            self.pool.peak_bytes(),
            self.pool.cached_bytes(),
            self.pool.allocations(),
        )
    }
}
