//! The device: adapter choice, limits, optional features, and the shared runtime state.
//!
//! Adapter choice, in order:
//! 1. `KILN_BACKEND` (vulkan | metal | dx12 | gl) restricts the backends searched;
//! 2. `KILN_DEVICE` picks one adapter by index (as listed by [`Gpu::adapters`]) or name substring;
//! 3. otherwise the best adapter wins: discrete > integrated > virtual > CPU > other, and
//!    Vulkan/Metal/DX12 before GL within a type.
//!
//! The device is created with the adapter's *real* limits (not WebGPU's defaults), so large
//! storage buffers work, and with the optional features kiln uses when the adapter has them:
//! `SHADER_F16`, `SUBGROUP` and `TIMESTAMP_QUERY`.
//!
//! `KILN_MAX_MEMORY` (like `2GiB`; see [`crate::memory::parse_size`]) caps the buffer pool of
//! every device opened ([`Gpu::set_max_memory`] changes it later).

use std::sync::{Arc, OnceLock};

use crate::buffer_pool::BufferPool;
use crate::encoder::Encoder;
use crate::error::{KernelError, Result};
use crate::pipeline::PipelineCache;

/// Features kiln uses when present.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// A description of one adapter, as `kiln devices` prints it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Position in the enumeration (what `KILN_DEVICE=<index>` selects).
    pub index: usize,
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend (Vulkan, Metal, Dx12, Gl).
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU, ...
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// Optional features of interest that it has.
    pub features: wgpu::Features,
    /// Its limits.
    pub limits: wgpu::Limits,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {} ({:?}, {:?}, driver {})",
            self.index, self.name, self.backend, self.device_type, self.driver
        )
    }
}

/// The GPU runtime: one wgpu device and queue plus kiln's caches.
///
/// Cheap to share: tensors hold an `Arc<Gpu>`. All kernel launches go through
/// `Gpu::dispatch`, which records into one pending command encoder and submits in batches.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: wgpu::Limits,
    pub(crate) pool: BufferPool,
    pub(crate) pipelines: PipelineCache,
    pub(crate) encoder: Encoder,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

static GLOBAL: OnceLock<std::result::Result<Arc<Gpu>, String>> = OnceLock::new();

/// The device-memory cap `KILN_MAX_MEMORY` sets (unset or empty: none).
fn cap_from_env() -> Result<Option<u64>> {
    const VAR: &str = "KILN_MAX_MEMORY";
    match std::env::var(VAR) {
        Ok(v) if !v.trim().is_empty() => crate::memory::parse_size(&v)
            .map(Some)
            .map_err(|reason| KernelError::BadSize { var: VAR, reason }),
        _ => Ok(None),
    }
}

fn backend_filter() -> Result<wgpu::Backends> {
    match std::env::var("KILN_BACKEND") {
        Err(_) => Ok(wgpu::Backends::all()),
        Ok(v) => match v.to_ascii_lowercase().as_str() {
            "" => Ok(wgpu::Backends::all()),
            "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
            "metal" => Ok(wgpu::Backends::METAL),
            "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
            "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
            _ => Err(KernelError::BadBackend {
                var: "KILN_BACKEND",
                value: v,
            }),
        },
    }
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn summarize(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: info.backend,
        device_type: info.device_type,
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        features: a.features() & OPTIONAL_FEATURES,
        limits: a.limits(),
    }
}

impl Gpu {
    /// Every adapter wgpu can see under the current `KILN_BACKEND` filter.
    pub fn adapters() -> Result<Vec<AdapterSummary>> {
        let inst = instance(backend_filter()?);
        let list = pollster::block_on(inst.enumerate_adapters(backend_filter()?));
        Ok(list
            .iter()
            .enumerate()
            .map(|(i, a)| summarize(i, a))
            .collect())
    }

    /// Open one device per item of `list` (comma-separated indices or name substrings as
    /// [`Gpu::adapters`] lists them, OpenGL included, or `all`): the devices of a data-parallel
    /// run (`kiln train --devices 0,1`). An adapter named twice is opened twice (two devices,
    /// two queues, no shared memory). Errors name the item that matches nothing.
    pub fn open_list(list: &str) -> Result<Vec<Arc<Gpu>>> {
        let backends = backend_filter()?;
        let enumerate = || pollster::block_on(instance(backends).enumerate_adapters(backends));
        let listed = enumerate();
        let available = || {
            let lines: Vec<String> = listed
                .iter()
                .enumerate()
                .map(|(i, a)| format!("  {}", summarize(i, a)))
                .collect();
            lines.join("\n")
        };
        let mut picks = Vec::new();
        for item in list.split(',').map(str::trim) {
            if item.eq_ignore_ascii_case("all") {
                picks.extend(0..listed.len());
                continue;
            }
            let pick = match item.parse::<usize>() {
                Ok(i) => (i < listed.len()).then_some(i),
                Err(_) if item.is_empty() => None,
                Err(_) => {
                    let needle = item.to_ascii_lowercase();
                    listed
                        .iter()
                        .position(|a| a.get_info().name.to_ascii_lowercase().contains(&needle))
                }
            };
            match pick {
                Some(i) => picks.push(i),
                None => {
                    return Err(KernelError::NoMatchingAdapter {
                        var: "--devices",
                        value: item.to_string(),
                        available: available(),
                    });
                }
            }
        }
        if picks.is_empty() {
            return Err(KernelError::NoAdapter {
                detail: format!(" for --devices {list:?}"),
            });
        }
        // A fresh enumeration per device: an adapter named twice becomes two devices.
        let open = |i: usize| {
            let mut fresh = enumerate();
            if i >= fresh.len() {
                return Err(KernelError::NoAdapter {
                    detail: format!(" (adapter {i} disappeared while --devices opened it)"),
                });
            }
            Self::from_adapter(fresh.swap_remove(i))
        };
        picks.into_iter().map(open).collect()
    }

    /// Open the adapter chosen by `KILN_BACKEND` / `KILN_DEVICE` (or the best one).
    pub fn new() -> Result<Arc<Gpu>> {
        Self::with_selector(std::env::var("KILN_DEVICE").ok().as_deref())
    }

    /// Open an adapter chosen by `selector` (index or name substring), or the best one if `None`.
    pub fn with_selector(selector: Option<&str>) -> Result<Arc<Gpu>> {
        let backends = backend_filter()?;
        // Native backends first; OpenGL only when asked for or when nothing else exists
        // (initialising EGL is slow and noisy on headless machines).
        let primary = backends & !wgpu::Backends::GL;
        let mut adapters = if primary.is_empty() {
            Vec::new()
        } else {
            let inst = instance(primary);
            pollster::block_on(inst.enumerate_adapters(primary))
        };
        if adapters.is_empty() && backends.contains(wgpu::Backends::GL) {
            let inst = instance(wgpu::Backends::GL);
            adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::GL));
        }
        if adapters.is_empty() {
            let detail = match std::env::var("KILN_BACKEND") {
                Ok(b) if !b.is_empty() => format!(" for KILN_BACKEND={b:?}"),
                _ => String::new(),
            };
            return Err(KernelError::NoAdapter { detail });
        }
        let available = || {
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("  {}", summarize(i, a)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let chosen = match selector.map(str::trim).filter(|s| !s.is_empty()) {
            Some(sel) => {
                let pick = if let Ok(i) = sel.parse::<usize>() {
                    (i < adapters.len()).then_some(i)
                } else {
                    let needle = sel.to_ascii_lowercase();
                    adapters
                        .iter()
                        .position(|a| a.get_info().name.to_ascii_lowercase().contains(&needle))
                };
                match pick {
                    Some(i) => i,
                    None => {
                        return Err(KernelError::NoMatchingAdapter {
                            var: "KILN_DEVICE",
                            value: sel.to_string(),
                            available: available(),
                        });
                    }
                }
            }
            None => {
                let mut best = 0;
                for (i, a) in adapters.iter().enumerate() {
                    let (ib, ia) = (adapters[best].get_info(), a.get_info());
                    let key =
                        |x: &wgpu::AdapterInfo| (type_rank(x.device_type), backend_rank(x.backend));
                    if key(&ia) < key(&ib) {
                        best = i;
                    }
                }
                best
            }
        };
        let adapter = adapters.swap_remove(chosen);
        Self::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Arc<Gpu>> {
        let info = adapter.get_info();
        let mut features = adapter.features() & OPTIONAL_FEATURES;
        // Cooperative matrices are experimental in wgpu: requested only when the adapter reports
        // the feature *and* the 16x16x16 f16 -> f32 shape the coop matmul rung uses.
        let coop = adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
            && adapter.cooperative_matrix_properties().iter().any(|p| {
                (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            });
        let experimental_features = if coop {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: only the cooperative-matrix feature is experimental here, and kiln uses it
            // in one shader (matmul/coop.wgsl) validated by naga in its tests.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|source| KernelError::RequestDevice {
            adapter: info.name.clone(),
            source,
        })?;
        let limits = device.limits();
        let encoder = Encoder::new(&device, &limits);
        let pool = BufferPool::new();
        pool.set_cap(cap_from_env()?);
        Ok(Arc::new(Gpu {
            pool,
            pipelines: PipelineCache::default(),
            encoder,
            device,
            queue,
            info,
            features,
            limits,
        }))
    }

    /// The process-wide default device, opened on first use with [`Gpu::new`].
    ///
    /// The error (for instance "no GPU adapter found ...") is remembered and returned again.
    pub fn global() -> Result<Arc<Gpu>> {
        match GLOBAL.get_or_init(|| Gpu::new().map_err(|e| e.to_string())) {
            Ok(g) => Ok(g.clone()),
            Err(msg) => Err(KernelError::Unavailable(msg.clone())),
        }
    }

    /// Adapter information (name, backend, driver).
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The optional features this device was created with.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// True when the device can compile `enable f16;` shaders.
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// True when subgroup operations are available.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// True when the device was created with cooperative matrices of the 16x16x16 f16 -> f32
    /// shape (`matmul/coop.wgsl`); wgpu calls the feature `EXPERIMENTAL_COOPERATIVE_MATRIX`.
    pub fn has_coop_matrix_f16(&self) -> bool {
        self.features
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    }

    /// True when GPU timestamps can be written.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The device limits (the adapter's real limits).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The raw wgpu device, for code inside `kiln-kernels` and for benchmarks.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The raw wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Bytes currently held by live buffers.
    pub fn live_bytes(&self) -> u64 {
        self.pool.live_bytes()
    }

    /// The largest value [`Gpu::live_bytes`] has reached.
    pub fn peak_bytes(&self) -> u64 {
        self.pool.peak_bytes()
    }

    /// Reset the peak counter to the current live bytes.
    pub fn reset_peak(&self) {
        self.pool.reset_peak()
    }

    /// Submit all recorded work and wait until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Device {
                context: "sync".into(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// Submit all recorded work without waiting for it.
    pub fn flush(&self) {
        self.encoder.flush(&self.queue);
    }
}
