//! Every shader through every back end that runs it, so that a kernel which would break on Metal,
//! DX12 or OpenGL fails here, on a machine that has none of them.
//!
//! The kernels: every entry point of every file in `shaders/` at its defaults (override
//! constants and `// #type` aliases), plus the keys the launchers build themselves (every matmul
//! rung and tile configuration the tuner tries with the vec4 operand modes, every NF4
//! configuration, every cast). Each is parsed and validated by naga, specialised with
//! `process_overrides` as wgpu does, and translated to
//!
//! - SPIR-V (Vulkan), version 1.3;
//! - MSL (Metal), language 2.4;
//! - HLSL (DX12), shader model 5.1, or 6.2 where the kernel needs f16 or subgroups;
//! - GLSL ES 3.10 (OpenGL), for the kernels that need no optional capability (the GL backend
//!   offers neither f16 nor subgroups, and the launchers do not pick such rungs there).
//!
//! One failure is expected and asserted: `matmul/coop.wgsl` has no HLSL translation (naga has
//! no cooperative-matrix path for DX12), which is why `MatmulVariant::Coop` is never available
//! there. Any other failure, or this one disappearing, fails the test.

use std::collections::{BTreeSet, HashMap};

use kiln_kernels::KernelKey;
use kiln_kernels::launch::elementwise::{Cast, cast_key};
use kiln_kernels::launch::matmul::{MatmulConfig, MatmulVariant};
use kiln_kernels::launch::nf4::{Nf4Config, Nf4Pass};
use kiln_kernels::shaders::{Elem, SOURCES};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// The translations that are known not to exist: (module label, back end).
const EXPECTED_FAILURES: &[(&str, &str)] = &[("matmul/coop.wgsl", "hlsl")];

fn parse(key: &KernelKey) -> (Module, String) {
    let src = key.source();
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        let name = key.module_label();
        panic!("{name} does not parse:\n{}", e.emit_to_string(&src))
    });
    (module, src)
}

fn validator(caps: Capabilities) -> Validator {
    let mut v = Validator::new(ValidationFlags::all(), caps);
    v.subgroup_stages(naga::valid::ShaderStages::all())
        .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    v
}

/// Entry point `name` of `shader` at its defaults.
fn default_key(shader: &'static str, entry: &str) -> KernelKey {
    KernelKey::new(shader, Box::leak(entry.to_string().into_boxed_str()))
}

/// Every kernel key the test translates (see the module doc), without repeats.
fn keys() -> Vec<KernelKey> {
    let mut keys = Vec::new();
    for (shader, _) in SOURCES {
        let (module, _) = parse(&KernelKey::new(shader, ""));
        for ep in &module.entry_points {
            keys.push(default_key(shader, &ep.name));
        }
    }
    for v in MatmulVariant::LADDER {
        for cfg in MatmulConfig::candidates(v) {
            let key = cfg.key();
            if v != MatmulVariant::Vec4 {
                keys.push(key);
                continue;
            }
            // The launcher adds vec4's operand modes (0 scalar, 1 rows, 2 columns) and BIAS.
            for (am, bm, bias) in (0..27u32).map(|i| (i % 3, i / 3 % 3, i / 9 % 3)) {
                if bias < 2 {
                    keys.push(
                        key.clone()
                            .with("A_MODE", am)
                            .with("B_MODE", bm)
                            .with("BIAS", bias),
                    );
                }
            }
        }
    }
    for pass in [Nf4Pass::Forward, Nf4Pass::GradInput] {
        for cfg in Nf4Config::every(pass) {
            if cfg.applies(pass, 64, 0) {
                keys.extend([false, true].map(|aligned| cfg.key(pass, aligned)));
            }
        }
    }
    let casts = [
        Cast::CopyBits,
        Cast::F32ToI32,
        Cast::F32ToU32,
        Cast::I32ToF32,
        Cast::U32ToF32,
    ];
    keys.extend(casts.map(Cast::key));
    keys.push(cast_key(Elem::F32, Elem::F16));
    keys.push(cast_key(Elem::F16, Elem::F32));
    let mut seen = BTreeSet::new();
    keys.retain(|k| seen.insert(k.label()));
    keys
}

/// Translate one specialised module with every back end that runs it: `(back end, result)`.
fn translate(key: &KernelKey) -> Vec<(&'static str, Result<(), String>)> {
    let (module, src) = parse(key);
    let name = key.module_label();
    let info = validator(Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} fails validation:\n{}", e.emit_to_string(&src)));
    // What the GL backend (and DX12 without DXC) can run: no optional capability.
    let basic = validator(Capabilities::default()).validate(&module).is_ok();
    let constants: naga::back::PipelineConstants = key
        .constants
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    let entry = (ShaderStage::Compute, key.entry);
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, Some(entry), &constants)
            .unwrap_or_else(|e| panic!("{}: overrides: {e}", key.label()));
    let mut out = vec![
        ("spv", spirv(&module, &info, key.entry)),
        ("msl", metal(&module, &info, key.entry)),
        ("hlsl", dx12(&module, &info, key.entry, basic)),
    ];
    if basic {
        out.push(("glsl", gl(&module, &info, key.entry)));
    }
    out
}

fn spirv(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    spv::write_vec(module, info, &options, Some(&pipeline))
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

fn metal(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    msl::write_string(module, info, &options, &pipeline)
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

fn dx12(module: &Module, info: &ModuleInfo, entry: &str, basic: bool) -> Result<(), String> {
    let options = hlsl::Options {
        shader_model: if basic {
            hlsl::ShaderModel::V5_1
        } else {
            hlsl::ShaderModel::V6_2
        },
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
    };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &options, &pipeline)
        .write(module, info, None)
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

fn gl(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut out = String::new();
    glsl::Writer::new(
        &mut out,
        module,
        info,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map(drop)
    .map_err(|e| format!("{e:?}"))
}

#[test]
fn every_shader_translates_with_every_backend() {
    let keys = keys();
    let mut failures = BTreeSet::new();
    let mut report = Vec::new();
    let mut files = BTreeSet::new();
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    for key in &keys {
        files.insert(key.shader);
        for (backend, result) in translate(key) {
            *per_backend.entry(backend).or_default() += 1;
            if let Err(e) = result {
                failures.insert((key.module_label(), backend));
                report.push(format!("{} -> {backend}: {e}", key.label()));
            }
        }
    }
    let expected: BTreeSet<(String, &str)> = EXPECTED_FAILURES
        .iter()
        .map(|(m, b)| (m.to_string(), *b))
        .collect();
    assert_eq!(
        failures,
        expected,
        "translations that fail, against the known exceptions:\n{}",
        report.join("\n")
    );
    // Every file with an entry point took part (include-only files have none).
    let with_entries: BTreeSet<&str> = SOURCES
        .iter()
        .filter(|(n, _)| !parse(&KernelKey::new(n, "")).0.entry_points.is_empty())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(files, with_entries);
    assert!(
        with_entries.len() >= 30,
        "only {} kernel files",
        with_entries.len()
    );
    eprintln!(
        "{} kernels from {} files: {per_backend:?}",
        keys.len(),
        files.len()
    );
}

#[test]
fn typed_keys_compile_their_own_module() {
    // The f16 rungs share a source with their f32 twins but are separate modules.
    let f32_key = MatmulVariant::RegBlock.key();
    let f16_key = MatmulVariant::F16.key();
    assert_eq!(f32_key.shader, f16_key.shader);
    assert_ne!(f32_key.module_label(), f16_key.module_label());
    let src = f16_key.source();
    assert!(
        src.starts_with("enable f16;\nalias elem = f16;\n"),
        "{src:.80}"
    );
    assert!(f32_key.source().starts_with("alias elem = f32;\n"));
    let cast = cast_key(Elem::F16, Elem::F32).source();
    assert!(cast.contains("alias src = f16;") && cast.contains("alias dst = f32;"));
}
