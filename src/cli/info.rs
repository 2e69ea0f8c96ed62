//! `kiln info`: what a checkpoint holds.

use std::path::PathBuf;

use clap::Args;

use super::Result;
use super::saved::checkpoint_path;
use crate::show::digits;
use crate::train::checkpoint;

/// Flags of `kiln info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A run directory or a checkpoint file.
    pub checkpoint: PathBuf,
}

/// Run `kiln info`.
pub fn run(a: InfoArgs) -> Result<()> {
    let path = checkpoint_path(&a.checkpoint)?;
    let ck = checkpoint::load(&path)?;
    println!("{}", path.display());
    let mut params = 0usize;
    println!("\n{:<44} {:>6}  shape", "tensor", "dtype");
    for (name, t) in &ck.tensors {
        let n: usize = t.shape.iter().product();
        if name.starts_with("model.") {
            params += n;
        }
        println!("{name:<44} {:>6}  {:?}", t.dtype.name(), t.shape);
    }
    println!("\nparameters: {}", digits(params));
    for key in ["model_spec", "task", "progress", "train_config", "rng"] {
        if let Some(v) = ck.metadata.get(key) {
            println!("{key}: {v}");
        }
    }
    if let Some(spec) = ck.metadata.get("run_spec") {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(spec) {
            println!("data: {}", v["data"]);
        }
    }
    Ok(())
}
