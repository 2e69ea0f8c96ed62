//! `kiln explain --graph FILE`: the step's autograd graph as DOT text (`.dot`, for Graphviz).

use std::path::Path;

use super::{Error, Result};

/// Write `dot` to `path` in the format its extension names.
pub(super) fn write(path: &Path, dot: &str) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "dot" | "gv" => Ok(crate::io::write_output(path, dot.as_bytes(), "--graph")?),
        _ => Err(Error(format!(
            "--graph {}: the file must end in .dot, .svg or .png",
            path.display()
        ))),
    }
}
