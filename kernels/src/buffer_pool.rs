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
//!
//! **The memory ledger.** Every buffer handed out carries a [`Category`] (weights, gradients,
//! optimizer state, activations, workspace; see [`crate::memory`] for how it is chosen and
//! changed), and the pool keeps live and peak bytes per category beside the totals
//! ([`BufferPool::stats`]). Bytes are size classes, what the device really holds.
//!
//! **The cap.** With a cap (`KILN_MAX_MEMORY`, [`crate::Gpu::set_max_memory`]) an allocation
//! that would take the live bytes over it fails with [`KernelError::OutOfMemory`], naming the
//! buffer, its size, the cap and what is live by category; cached buffers are released before
//! a fresh one would take live plus cached bytes over it. So a run under a cap never holds more
//! than the cap in pooled buffers, whatever the driver would have done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{KernelError, Result};
pub use crate::memory::{Category, MemoryStats};

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
    live_by: [AtomicU64; 5],
    peak_by: [AtomicU64; 5],
    cached: AtomicU64,
    allocations: AtomicU64,
    /// Cap on live + cached bytes; 0 = none.
    cap: AtomicU64,
    /// Dry run: account for buffers without creating them (see [`BufferPool::set_dry_run`]).
    dry: AtomicBool,
    /// The one small buffer every dry-run allocation stands on.
    dummy: OnceLock<wgpu::Buffer>,
}

impl PoolInner {
    fn add(&self, c: Category, bytes: u64) {
        let live = self.live_by[c as usize].fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_by[c as usize].fetch_max(live, Ordering::Relaxed);
    }

    fn sub(&self, c: Category, bytes: u64) {
        self.live_by[c as usize].fetch_sub(bytes, Ordering::Relaxed);
    }
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
    /// `Category as u8`; changed by [`GpuBuffer::set_category`].
    category: AtomicU8,
    /// Made in a dry run: a stand-in that never goes back to the free lists.
    dry: bool,
    pool: Arc<PoolInner>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuffer({} bytes, {})",
            self.class,
            self.category().name()
        )
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

    /// What the memory ledger counts this buffer as.
    pub fn category(&self) -> Category {
        Category::from_index(self.category.load(Ordering::Relaxed))
    }

    /// Count this buffer as `category` from now on (its bytes move between the counters).
    pub fn set_category(&self, category: Category) {
        let old = Category::from_index(self.category.swap(category as u8, Ordering::Relaxed));
        if old != category {
            self.pool.sub(old, self.class);
            self.pool.add(category, self.class);
        }
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.live.fetch_sub(self.class, Ordering::Relaxed);
            self.pool.sub(self.category(), self.class);
            if self.dry {
                return;
            }
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

    /// A buffer of at least `bytes` bytes (contents undefined), counted as `category`; `what`
    /// names it in the error when the cap ([`BufferPool::set_cap`]) would be exceeded.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        bytes: u64,
        what: &str,
        category: Category,
    ) -> Result<GpuBuffer> {
        let class = size_class(bytes);
        let inner = &self.inner;
        let cap = inner.cap.load(Ordering::Relaxed);
        let dry = inner.dry.load(Ordering::Relaxed);
        // A dry run measures what a run needs: it is not held to the cap (its plan says).
        if cap > 0 && !dry && self.live_bytes() + class > cap {
            let stats = self.stats();
            return Err(KernelError::OutOfMemory {
                what: what.to_string(),
                bytes: class,
                cap,
                live: stats.live_total,
                breakdown: stats.live_breakdown(),
            });
        }
        let buffer = if dry {
            inner.dummy.get_or_init(|| create(device, 256)).clone()
        } else {
            let reused = inner
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&class)
                .and_then(Vec::pop);
            match reused {
                Some(b) => {
                    inner.cached.fetch_sub(class, Ordering::Relaxed);
                    b
                }
                None => {
                    // Keep live + cached under the cap: give the cached buffers back first.
                    if cap > 0 && self.live_bytes() + self.cached_bytes() + class > cap {
                        self.trim();
                    }
                    inner.allocations.fetch_add(1, Ordering::Relaxed);
                    create(device, class)
                }
            }
        };
        let live = inner.live.fetch_add(class, Ordering::Relaxed) + class;
        inner.peak.fetch_max(live, Ordering::Relaxed);
        inner.add(category, class);
        Ok(GpuBuffer {
            buffer: Some(buffer),
            class,
            category: AtomicU8::new(category as u8),
            dry,
            pool: inner.clone(),
        })
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

    /// Every counter, by category.
    pub fn stats(&self) -> MemoryStats {
        let i = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cap = load(&i.cap);
        MemoryStats {
            live: std::array::from_fn(|k| load(&i.live_by[k])),
            peak: std::array::from_fn(|k| load(&i.peak_by[k])),
            live_total: load(&i.live),
            peak_total: load(&i.peak),
            cached: load(&i.cached),
            cap: (cap > 0).then_some(cap),
        }
    }

    /// Set every peak (the total's and each category's) to its live value.
    pub(crate) fn reset_peak(&self) {
        let i = &self.inner;
        i.peak.store(self.live_bytes(), Ordering::Relaxed);
        for k in 0..5 {
            let live = i.live_by[k].load(Ordering::Relaxed);
            i.peak_by[k].store(live, Ordering::Relaxed);
        }
    }

    /// Cap live plus cached bytes at `cap` (`None`: no cap). An allocation that would take the
    /// live bytes over it fails with [`KernelError::OutOfMemory`]; before a fresh buffer would
    /// take live plus cached bytes over it, the cached buffers are released.
    pub(crate) fn set_cap(&self, cap: Option<u64>) {
        self.inner.cap.store(cap.unwrap_or(0), Ordering::Relaxed);
        if cap.is_some_and(|c| self.live_bytes() + self.cached_bytes() > c) {
            self.trim();
        }
    }

    /// In a dry run the pool creates no buffers: every allocation is counted as usual (size
    /// class, category; the cap is not enforced) and stands on one shared 256-byte buffer, so a whole training
    /// step can be accounted for without the memory it needs. The [`crate::Gpu`] skips every
    /// dispatch, copy and upload meanwhile, and reads back zeros.
    pub(crate) fn set_dry_run(&self, on: bool) {
        self.inner.dry.store(on, Ordering::Relaxed);
    }

    /// True during a dry run.
    pub(crate) fn is_dry_run(&self) -> bool {
        self.inner.dry.load(Ordering::Relaxed)
    }

    /// Release every cached (free) buffer back to the driver.
    pub fn trim(&self) {
        let mut free = self.inner.free.lock().unwrap_or_else(|e| e.into_inner());
        free.clear();
        self.inner.cached.store(0, Ordering::Relaxed);
    }
}

fn create(device: &wgpu::Device, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("kiln.pool"),
        size,
        usage: USAGE,
        mapped_at_creation: false,
    })
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
