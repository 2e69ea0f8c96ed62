//! Compute pipelines cached by (shader, entry point, specialisation constants).
//!
//! Specialisation uses WGSL `override` constants (e.g. which unary function, which tile size):
//! every constant that changes the code is part of the cache key, so two specialisations never
//! share a pipeline by accident. Element types (`// #type` aliases, see [`crate::shaders`]) change
//! the module itself and are part of its key. Bind-group layouts come from the shader itself
//! (auto layout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::shaders::{self, Elem};

/// What identifies one compiled kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelKey {
    /// File under `shaders/`, e.g. `"elementwise/unary.wgsl"`.
    pub shader: &'static str,
    /// WGSL entry point.
    pub entry: &'static str,
    /// `override` constants, by name.
    pub constants: Vec<(&'static str, f64)>,
    /// `// #type` aliases set away from their defaults, by name (e.g. `("elem", Elem::F16)`).
    pub types: Vec<(&'static str, Elem)>,
}

impl KernelKey {
    /// A key with no specialisation constants.
    pub fn new(shader: &'static str, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            constants: Vec::new(),
            types: Vec::new(),
        }
    }

    /// Set the shader's `// #type` alias `alias` to `elem` (a different module, not a constant).
    pub fn typed(mut self, alias: &'static str, elem: Elem) -> Self {
        self.types.push((alias, elem));
        self
    }

    /// The module's name: the shader, then its types if any, e.g. `cast.wgsl<src=f32,dst=f16>`.
    pub fn module_label(&self) -> String {
        if self.types.is_empty() {
            return self.shader.to_string();
        }
        let t: Vec<String> = self
            .types
            .iter()
            .map(|(n, e)| format!("{n}={}", e.wgsl()))
            .collect();
        format!("{}<{}>", self.shader, t.join(","))
    }

    /// The shader's WGSL as this key compiles it: includes expanded, types set.
    pub fn source(&self) -> String {
        shaders::expand_typed(self.shader, &self.types)
    }

    /// Add one `override` constant.
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into()));
        self
    }

    /// The label used for every wgpu object of this kernel, e.g. `unary.wgsl:main[OP=3]` or
    /// `matmul/regblock.wgsl<elem=f16>:main[WG_X=16,WG_Y=16]`.
    pub fn label(&self) -> String {
        let mut s = format!("{}:{}", self.module_label(), self.entry);
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
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn get(&self, device: &wgpu::Device, key: &KernelKey) -> Arc<wgpu::ComputePipeline> {
        let label = key.label();
        if let Some(p) = self.lock_pipelines().get(&label) {
            return p.clone();
        }
        let module = self.module(device, key);
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

    fn module(&self, device: &wgpu::Device, key: &KernelKey) -> Arc<wgpu::ShaderModule> {
        let name = key.module_label();
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules
            .entry(name.clone())
            .or_insert_with(|| {
                let src = key.source();
                if let Ok(dir) = std::env::var("KILN_DUMP_WGSL") {
                    // e.g. matmul_regblock.wgsl, cast_src-f32_dst-f16.wgsl
                    let mut file = key.shader.trim_end_matches(".wgsl").replace('/', "_");
                    for (n, e) in &key.types {
                        file.push_str(&format!("_{n}-{}", e.wgsl()));
                    }
                    let path = std::path::Path::new(&dir).join(file + ".wgsl");
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(path, &src);
                }
                Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&name),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                }))
            })
            .clone()
    }
}
