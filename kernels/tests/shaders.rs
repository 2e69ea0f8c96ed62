//! Every WGSL file parses and validates with naga (after `// #include` expansion), and every
//! `#[repr(C)]` params struct has exactly the layout of its WGSL twin.

use kiln_kernels::launch::all_params;
use kiln_kernels::shaders::{SOURCES, expand};

fn parse(name: &str) -> (naga::Module, String) {
    let src = expand(name);
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "{name} does not parse:\n{}",
            e.emit_to_string_with_path(&src, name)
        )
    });
    (module, src)
}

#[test]
fn every_shader_file_is_listed() {
    // Every .wgsl under shaders/ is embedded, and every embedded name exists on disk.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "wgsl") {
                on_disk.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = SOURCES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "shaders/ and kernels/src/shaders.rs::SOURCES disagree"
    );
    for (name, src) in SOURCES {
        let disk = std::fs::read_to_string(root.join(name)).unwrap();
        assert_eq!(&disk, src, "{name}: embedded text differs from the file");
    }
}

#[test]
fn every_shader_validates_with_naga() {
    let mut validated = 0;
    for (name, _) in SOURCES {
        let (module, src) = parse(name);
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        v.validate(&module).unwrap_or_else(|e| {
            panic!(
                "{name} fails validation:\n{}",
                e.emit_to_string_with_path(&src, name)
            )
        });
        validated += 1;
    }
    assert!(validated >= 10, "only {validated} shaders found");
}

#[test]
fn include_directive_expands_once() {
    let src = expand("elementwise/unary.wgsl");
    assert!(!src.contains("// #include"));
    assert_eq!(src.matches("struct ElementwiseParams").count(), 1);
    assert!(src.contains("fn erf_approx"));
}

#[test]
fn params_structs_match_wgsl_layout() {
    let layouts = all_params();
    assert!(layouts.len() >= 2);
    for l in &layouts {
        let (module, _) = parse(l.shader);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(l.wgsl_struct))
            .unwrap_or_else(|| panic!("{}: no WGSL struct {}", l.shader, l.wgsl_struct));
        let naga::TypeInner::Struct { members, .. } = &ty.inner else {
            panic!("{} is not a struct", l.wgsl_struct)
        };
        let wgsl_size = layouter[handle].size as usize;
        assert_eq!(
            l.size, wgsl_size,
            "{}: Rust size {} != WGSL size {wgsl_size}",
            l.wgsl_struct, l.size
        );
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let rust: Vec<(String, usize)> =
            l.fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(
            rust, wgsl,
            "{}: field names/offsets differ (Rust vs WGSL)",
            l.wgsl_struct
        );
    }
}
