//! The dependency order of the crate's folders (ARCHITECTURE.md): each folder of `src/` may use
//! only the folders below it, so there is no import cycle between folders. This test reads
//! every source file and fails naming the file, line and the offending `crate::` path.

use std::collections::BTreeMap;
use std::path::Path;

#[path = "../kernels/tests/layers/source.rs"]
mod source;
use source::files;

/// Top to bottom; a folder may import any folder on a later row. Folders on one row (autograd
/// and tensor: a tensor carries its graph node) may import each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["sweep"],
    &["unsupervised"],
    &["train"],
    &["models"],
    &["nn"],
    &["optim"],
    &["data"],
    &["ops"],
    &["autograd", "tensor"],
    &["io", "dist"],
];

/// The crate root's re-exports, by the folder they come from (so `crate::Tensor` counts as
/// `tensor`). Root files (`error.rs`, `dtype.rs`, `show.rs`, `lib.rs`) sit below every folder.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Tensor", "tensor"),
    ("DType", "tensor"),
    ("Element", "tensor"),
    ("no_grad", "autograd"),
    ("NoGradGuard", "autograd"),
    ("is_grad_enabled", "autograd"),
    ("Reduction", "ops"),
];

fn rank(folder: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&folder))
}

/// The first segment of each `crate::` path on a line of code (comments and doc comments
/// skipped): the folder or root item it names.
fn crate_paths(line: &str) -> Vec<String> {
    source::crate_paths(line)
        .into_iter()
        .map(|p| p[0].clone())
        .collect()
}

#[test]
fn folders_depend_only_on_the_folders_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let root: BTreeMap<&str, &str> = ROOT_ITEMS.iter().copied().collect();
    let mut bad = Vec::new();
    let mut seen_folders = std::collections::BTreeSet::new();
    for path in &all {
        let rel = path.strip_prefix(&src).unwrap();
        let Some(folder) = rel.iter().next().and_then(|f| f.to_str()) else {
            continue;
        };
        if rel.components().count() < 2 {
            continue; // a root file: below every folder
        }
        seen_folders.insert(folder.to_string());
        let Some(own) = rank(folder) else {
            bad.push(format!(
                "src/{folder}/ is not in LAYERS (add it to ARCHITECTURE.md and here)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for item in crate_paths(line) {
                let target = root.get(item.as_str()).copied().unwrap_or(item.as_str());
                let Some(r) = rank(target) else { continue }; // a root file or item
                if r < own {
                    bad.push(format!(
                        "{}:{}: `{folder}` uses `crate::{item}` ({target} is above {folder})",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layer order:\n{}",
        bad.join("\n")
    );
    assert!(
        seen_folders.contains("train") && seen_folders.contains("io"),
        "{seen_folders:?}"
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    assert_eq!(crate_paths("use crate::train::Trainer;"), ["train"]);
    assert_eq!(
        crate_paths("    let x = crate::nn::rng::next_key(); // crate::cli"),
        ["nn"]
    );
    assert_eq!(
        crate_paths("/// see [`crate::train`]"),
        Vec::<String>::new()
    );
    assert_eq!(
        crate_paths("use crate::{io::names, Tensor};"),
        ["io", "Tensor"]
    );
}

/// No source file in src/ or kernels/src/ over 600 lines (house style 12): split along the seams
/// first.
#[test]
fn no_source_file_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(&root.join("src"), &mut all);
    files(&root.join("kernels/src"), &mut all);
    let long: Vec<String> = all
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}
