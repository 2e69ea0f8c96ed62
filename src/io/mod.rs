//! Low-level file I/O, below everything else in the crate: nothing here knows tensors, modules
//! or training.
//!
//! - [`atomic`]: atomic writes (temporary file, fsync, rename) for everything kiln saves, and the
//!   rules for user-named outputs that are symlinks, devices or FIFOs;
//! - [`safetensors`]: host-side safetensors files (named little-endian arrays plus string
//!   metadata), kiln checkpoints and foreign weight files alike;
//! - [`names`]: the glob patterns that select parameters by name (`--freeze 'features.*'`);
//! - [`run_dir`]: the file names of a run directory and the lock that keeps one writer per run.
//!
//! `nn`, `models`, `train` and the CLI build on these; this module imports only [`crate::error`]
//! and [`crate::dtype`].

pub mod atomic;
pub mod names;
pub mod run_dir;
pub mod safetensors;

pub use atomic::{write_atomic, write_output};
pub use names::{glob_match, pattern_matches};
pub use safetensors::HostTensor;
