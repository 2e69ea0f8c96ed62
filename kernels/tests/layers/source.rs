//! Reading a crate's sources for the layer tests (`kernels/tests/layers.rs` and the root crate's
//! `tests/layers.rs`, which includes this file by path): the `.rs` files under a folder and the
//! `crate::` paths on a line of code.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, at any depth, appended to `out`.
pub fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::` paths on a line of code, each as its first two segments (comments and doc
/// comments skipped; `crate::{a, b::c}` gives each item of the group).
pub fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let code = code.split("//").next().unwrap_or("");
    let segments = |path: &str| -> Vec<String> {
        path.split("::")
            .map(|s| {
                s.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|s| !s.is_empty())
            .take(2)
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + "crate::".len()..];
        if let Some(group) = tail.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let s = segments(item);
                if !s.is_empty() {
                    out.push(s);
                }
            }
        } else {
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            let s = segments(&tail[..end]);
            if !s.is_empty() {
                out.push(s);
            }
        }
        rest = tail;
    }
    out
}
