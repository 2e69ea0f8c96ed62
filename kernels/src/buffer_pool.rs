//! A caching pool of GPU storage buffers.
//!
//! Allocating a wgpu buffer is slow (a driver call, zero-fill); a training step frees and allocates
//! the same sizes again and again. Freed buffers go back to a free list keyed by *size class* and
//! are handed out again by the next request of that class.
//!
//! Size classes: at least 256 bytes; above that, the next value of the form `m * 2^e` with
//! `m` in {4, 5, 6, 7}, so at most 25 % of a buffer is slack.
//!
//! Reuse is safe without waiting for the GPU: every dispatch goes through one in-order queue, so a
//! reused buffer is written only by work recorded *after* the last reader of its old contents.
//! Host uploads (`queue.write_buffer`) run at the *start* of the next submission, so
//! [`crate::Gpu::upload`] flushes pending work first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Usage flags of every pooled buffer: kernels read and write them; copies go both ways.
pub(crate) const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// The size class a request of `bytes` is rounded up to.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    if b <= 256 {
        return 256;
    }
    // b in (2^(e+2), 2^(e+3)]: candidates 4*2^e, 5*2^e, 6*2^e, 7*2^e, 8*2^e.
    let top = 63 - (b - 1).leading_zeros() as u64; // floor(log2(b-1))
    let e = top.saturating_sub(2);
    for m in 4..=8u64 {
        let c = m << e;
        if c >= b {
            return c;
        }
    }
    8 << e
}

#[derive(Default)]
pub(crate) struct PoolInner {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    live: AtomicU64,
    peak: AtomicU64,
    cached: AtomicU64,
    allocations: AtomicU64,
}

/// The pool. Cloning shares it.
#[derive(Clone, Default)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

/// A storage buffer from the pool; returns itself to the pool when dropped.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    pool: Arc<PoolInner>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.class)
    }
}

impl GpuBuffer {
    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }

    /// Capacity in bytes (the size class, at least the requested size).
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.live.fetch_sub(self.class, Ordering::Relaxed);
            self.pool.cached.fetch_add(self.class, Ordering::Relaxed);
            self.pool
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(self.class)
                .or_default()
                .push(b);
        }
    }
}

impl BufferPool {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A buffer of at least `bytes` bytes (contents undefined).
    pub(crate) fn get(&self, device: &wgpu::Device, bytes: u64) -> GpuBuffer {
        let class = size_class(bytes);
        let reused = self
            .inner
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&class)
            .and_then(Vec::pop);
        let buffer = match reused {
            Some(b) => {
                self.inner.cached.fetch_sub(class, Ordering::Relaxed);
                b
            }
            None => {
                self.inner.allocations.fetch_add(1, Ordering::Relaxed);
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kiln.pool"),
                    size: class,
                    usage: USAGE,
                    mapped_at_creation: false,
                })
            }
        };
        let live = self.inner.live.fetch_add(class, Ordering::Relaxed) + class;
        self.inner.peak.fetch_max(live, Ordering::Relaxed);
        GpuBuffer {
            buffer: Some(buffer),
            class,
            pool: self.inner.clone(),
        }
    }

    /// Bytes in buffers currently handed out.
    pub fn live_bytes(&self) -> u64 {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Peak of [`BufferPool::live_bytes`].
    pub fn peak_bytes(&self) -> u64 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// Bytes parked in free lists, ready for reuse.
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cached.load(Ordering::Relaxed)
    }

    /// How many buffers were created from scratch (not reused).
    pub fn allocations(&self) -> u64 {
        self.inner.allocations.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_peak(&self) {
        self.inner.peak.store(self.live_bytes(), Ordering::Relaxed);
    }

    /// Release every cached (free) buffer back to the driver.
    pub fn trim(&self) {
        let mut free = self.inner.free.lock().unwrap_or_else(|e| e.into_inner());
        free.clear();
        self.inner.cached.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request_with_bounded_slack() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        for bytes in [
            257u64,
            300,
            1000,
            1023,
            1024,
            1025,
            4097,
            1 << 20,
            (1 << 20) + 1,
            3_000_001,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "class {c} < request {bytes}");
            assert!(
                c as f64 <= bytes as f64 * 1.25 + 1.0,
                "class {c} too loose for {bytes}"
            );
        }
    }
}
