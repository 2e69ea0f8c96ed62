//! Compute pipelines cached by (shader, entry point, specialisation constants).
//!
//! Specialisation uses WGSL `override` constants (e.g. which unary function, which tile size):
//! every constant that changes the code is part of the cache key, so two specialisations never
//! share a pipeline by accident. Bind-group layouts come from the shader itself (auto layout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::shaders;

/// What identifies one compiled kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelKey {
    /// File under `shaders/`, e.g. `"unary.wgsl"`.
    pub shader: &'static str,
    /// WGSL entry point.
    pub entry: &'static str,
    /// `override` constants, by name.
    pub constants: Vec<(&'static str, f64)>,
}

impl KernelKey {
    /// A key with no specialisation constants.
    pub fn new(shader: &'static str, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            constants: Vec::new(),
        }
    }

    /// Add one `override` constant.
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into()));
        self
    }

    /// The label used for every wgpu object of this kernel, e.g. `unary.wgsl:main[OP=3]`.
    pub fn label(&self) -> String {
        let mut s = format!("{}:{}", self.shader, self.entry);
        if !self.constants.is_empty() {
            let c: Vec<String> = self
                .constants
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            s.push('[');
            s.push_str(&c.join(","));
            s.push(']');
        }
        s
    }
}

impl std::fmt::Display for KernelKey {
    /// The [label](KernelKey::label).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// The cache.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn get(&self, device: &wgpu::Device, key: &KernelKey) -> Arc<wgpu::ComputePipeline> {
        let label = key.label();
        if let Some(p) = self.lock_pipelines().get(&label) {
            return p.clone();
        }
        let module = self.module(device, key.shader);
        let pipeline = Arc::new(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &key.constants,
                    // Every kernel initialises the workgroup memory it reads.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            }),
        );
        self.lock_pipelines().insert(label, pipeline.clone());
        pipeline
    }

    /// Number of distinct pipelines compiled so far.
    pub(crate) fn len(&self) -> usize {
        self.lock_pipelines().len()
    }

    fn lock_pipelines(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<wgpu::ComputePipeline>>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn module(&self, device: &wgpu::Device, shader: &'static str) -> Arc<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules
            .entry(shader)
            .or_insert_with(|| {
                let src = shaders::expand(shader);
                if let Ok(dir) = std::env::var("KILN_DUMP_WGSL") {
                    let path = std::path::Path::new(&dir).join(shader.replace('/', "_"));
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(path, &src);
                }
                Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                }))
            })
            .clone()
    }
}
