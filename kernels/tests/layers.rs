//! No import cycle between the modules of kiln-kernels (house style 15; ARCHITECTURE.md). The
//! 600-line limit on its files is checked with the root crate's (`tests/layers.rs`).
//!
//! A module is a file of `src/`, or a folder with its `.rs` / `mod.rs` (`tune`, `launch`,
//! `reference`); under `launch/` and `reference/` each family (`launch/conv.rs` with
//! `launch/conv/`) is its own module. This test reads every source file, collects the
//! `crate::` paths of its code lines (comment and doc lines skipped, `use` lines and inline paths
//! alike), and fails on a cycle, naming each step with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "layers/source.rs"]
mod source;
use source::{crate_paths, files};

/// Folders whose children are modules of their own (one per kernel family).
const FAMILY_FOLDERS: &[&str] = &["launch", "reference"];

/// Items the crate root re-exports, by the module they come from.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("KernelError", "error"),
    ("Result", "error"),
    ("Gpu", "gpu"),
    ("AdapterSummary", "gpu"),
    ("KernelKey", "pipeline"),
    ("GpuBuffer", "buffer_pool"),
    ("Operand", "operand"),
    ("kernel_params", "launch"),
];

/// The module a file belongs to, from its path under `src/` (`launch/conv/config.rs` ->
/// `launch/conv`; `tune/measure.rs` -> `tune`; `lib.rs` -> `lib`).
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [top, rest @ ..] if FAMILY_FOLDERS.contains(&top.as_str()) && !rest.is_empty() => {
            if rest[0] == "mod" {
                top.clone()
            } else {
                format!("{top}/{}", rest[0])
            }
        }
        [top, ..] => top.clone(),
        [] => unreachable!(),
    }
}

/// The module a `crate::` path names, given the modules that exist.
fn target(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let first = path[0].as_str();
    if let Some((_, m)) = ROOT_ITEMS.iter().find(|(item, _)| *item == first) {
        return Some(m.to_string());
    }
    if let Some(second) = path.get(1) {
        let family = format!("{first}/{second}");
        if modules.contains(&family) {
            return Some(family);
        }
    }
    modules.contains(first).then(|| first.to_string())
}

/// Edges `from -> to`, each with the first place (file:line) that makes it.
fn edges() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let rels: Vec<PathBuf> = all
        .iter()
        .map(|p| p.strip_prefix(&src).unwrap().to_path_buf())
        .collect();
    let modules: BTreeSet<String> = rels.iter().map(|r| module_of(r)).collect();
    let mut out = BTreeMap::new();
    for (path, rel) in all.iter().zip(&rels) {
        let from = module_of(rel);
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for p in crate_paths(line) {
                let Some(to) = target(&p, &modules) else {
                    continue;
                };
                if to != from {
                    out.entry((from.clone(), to))
                        .or_insert_with(|| format!("{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    out
}

/// One cycle of the graph, as its modules in order, if there is one.
fn find_cycle(edges: &BTreeMap<(String, String), String>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first search; 1 = on the current path, 2 = done.
    fn visit<'a>(
        m: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(m, 1);
        path.push(m);
        for &n in next.get(m).into_iter().flatten() {
            match state.get(n) {
                Some(1) => {
                    let start = path.iter().position(|&p| p == n).unwrap();
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(n.to_string());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(n, next, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(m, 2);
        None
    }
    let mut state = BTreeMap::new();
    let starts: Vec<&str> = next.keys().copied().collect();
    for m in starts {
        if !state.contains_key(m) {
            if let Some(c) = visit(m, &next, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn kernel_modules_form_no_cycle() {
    let edges = edges();
    assert!(
        edges.contains_key(&("launch/matmul".to_string(), "gpu".to_string())),
        "the checker missed launch/matmul -> gpu: {:?}",
        edges.keys().collect::<Vec<_>>()
    );
    if let Some(cycle) = find_cycle(&edges) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let at = &edges[&(w[0].clone(), w[1].clone())];
                format!("  {} -> {} ({at})", w[0], w[1])
            })
            .collect();
        panic!(
            "import cycle between kernels/src modules:\n{}\nmove the shared item below both, or pass what the lower module needs as an argument",
            steps.join("\n")
        );
    }
}

#[test]
fn the_checker_sees_what_it_must() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        crate_paths("use crate::launch::attention::{AttnConfig, AttnShape};"),
        [s(&["launch", "attention"])]
    );
    assert_eq!(
        crate_paths(
            "        AttnVariant::Auto => crate::tune::attention_choice(gpu, s), // crate::gpu"
        ),
        [s(&["tune", "attention_choice"])]
    );
    assert!(crate_paths("/// see [`crate::tune::nf4_choice`]").is_empty());
    assert!(crate_paths("    //! crate::gpu").is_empty());
    assert_eq!(
        crate_paths("use crate::{gpu::Gpu, KernelError};"),
        [s(&["gpu", "Gpu"]), s(&["KernelError"])]
    );
    assert_eq!(module_of(Path::new("launch/conv/config.rs")), "launch/conv");
    assert_eq!(module_of(Path::new("launch/mod.rs")), "launch");
    assert_eq!(module_of(Path::new("tune/measure.rs")), "tune");
    let mut e = BTreeMap::new();
    e.insert(("a".to_string(), "b".to_string()), "a.rs:1".to_string());
    assert_eq!(find_cycle(&e), None);
    e.insert(("b".to_string(), "a".to_string()), "b.rs:2".to_string());
    assert_eq!(find_cycle(&e), Some(s(&["a", "b", "a"])));
}
